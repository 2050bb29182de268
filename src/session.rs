//! The POP3 state machine: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939), with CAPA and
//! response codes (RFC 2449, RFC 3206) and SASL (RFC 5034).
//!
//! A session reads command lines from a `BufReader` and writes replies to any `Write`; it never
//! sees a socket, a path or a lock. Users come from a `UserSource` and maildrops from a
//! `MaildropSource`, so the whole machine runs in tests over byte slices and in-memory mboxes.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth;
use crate::bytes::find_byte;
use crate::failed_login::{FailedLogin, Mechanism};
use crate::maildrop::{CommitStats, MaildropError, MessageInfo};
use crate::penalty::{PenaltyBook, Turn};
use crate::protocol::command::{self, Command, LineError, MsgNum, ParseError};
use crate::protocol::reply::{self, Code, DotWriter};
use crate::security::{PlaintextAuth, Security};
use crate::users::{Password, User, UsersDb};

/// Replies are collected and sent once the client has nothing more queued (PIPELINING).
const OUTPUT_BUFFER: usize = 64 * 1024;

/// A client that sends this many unknown, malformed or out-of-state commands is a robot or a
/// scanner, not a mail client: the session ends (Dovecot uses 20 as well).
const MAX_BAD_COMMANDS: u32 = 20;

/// A failed authentication is answered this long after its check began, so guessing
/// passwords is slow, and so the check's own time (which differs with the kind and cost of the
/// stored hash, and between an account and the dummy hash of an unknown name) does not show.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Failed PASS / APOP / AUTH attempts before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// What a client reads after "-ERR " for a wrong password and for an unknown user alike
/// (DESIGN: PASS fails alike). pop3d-router hands nginx these same words, so a client sees
/// one refusal whether it logs in directly or through the proxy.
pub const LOGIN_FAILED: &str = "[AUTH] invalid user name or password";

/// The answer to a login refused unchecked because its address's queue of turns was full
/// (penalty.rs), after "-ERR ". pop3d-router hands nginx the same words, like `LOGIN_FAILED`.
pub const TURN_REFUSED: &str = "[SYS/TEMP] too many logins from your address, try again later";

/// The connection's autologout clock: the session restarts it whenever it begins to wait for
/// a command, and the connection bounds every read by the time left (see listener.rs).
pub trait Autologout {
    fn restart(&mut self) {}
}

impl Autologout for &[u8] {}
impl Autologout for io::Stdin {}

impl<T: Autologout + ?Sized> Autologout for &mut T {
    fn restart(&mut self) {
        (**self).restart()
    }
}

/// What the session needs of an open maildrop.
pub trait Mailbox {
    fn messages(&self) -> &[MessageInfo];
    fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError>;
    fn commit(&mut self, deleted: &[bool]) -> Result<CommitStats, MaildropError>;
}

/// A maildrop whose session lock is held but which is not yet scanned.
pub trait LockedMaildrop {
    /// When the user last logged in successfully (for LOGIN-DELAY).
    fn previous_login(&self) -> Option<SystemTime>;
    /// Opens (recovers, locks, scans) the maildrop, then records this login as successful.
    fn open(self: Box<Self>) -> Result<Box<dyn Mailbox>, MaildropError>;
}

/// Where maildrops come from: the mbox files, or memory in tests.
pub trait MaildropSource: Send + Sync {
    /// Takes the session lock of the user's maildrop.
    fn lock(&self, user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError>;

    /// Whether the session may try another login after a maildrop that was not opened
    /// (in use, login delay). False once `lock` has switched the process to the user for
    /// good (system users): it could no longer check a password.
    fn allows_another_login(&self) -> bool {
        true
    }
}

/// Where users come from: the users file (re-read when it changes), the system's accounts,
/// or memory in tests.
pub trait UserSource: Send + Sync {
    /// The user named `name` if `check` accepts their stored password. An unknown name (or
    /// one that may not log in) still runs `check` on a dummy password of the same kind, and
    /// gets None, so that a stranger cannot tell it from a wrong password by the time taken.
    fn checked_user(&self, name: &str, check: &dyn Fn(&Password) -> bool) -> Option<User>;

    /// Whether users can have a shared secret. If not, CRAM-MD5 is not offered.
    fn has_shared_secrets(&self) -> bool {
        true
    }
}

/// Users from a parsed users file, as it stands when asked.
pub trait UsersDbSource: Send + Sync {
    fn current(&self) -> Arc<UsersDb>;
}

impl<T: UsersDbSource> UserSource for T {
    fn checked_user(&self, name: &str, check: &dyn Fn(&Password) -> bool) -> Option<User> {
        self.current().checked_user(name, check).cloned()
    }
}

/// Everything a session needs besides its connection.
pub struct Context {
    pub hostname: String,
    pub users: Arc<dyn UserSource>,
    pub maildrops: Arc<dyn MaildropSource>,
    /// RFC 2449 LOGIN-DELAY; zero turns it off.
    pub login_delay: Duration,
    /// How long a failed authentication waits before its answer.
    pub failure_delay: Duration,
    /// Where clear-text passwords (USER/PASS, AUTH PLAIN) are taken.
    pub plaintext_auth: PlaintextAuth,
    /// Failed logins per client address, shared by every session (penalty.rs).
    pub penalties: Arc<dyn PenaltyBook>,
}

/// What the session knows of its connection: a name for the log, and whether it is secure
/// (decided by whoever holds the socket, see security.rs).
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub peer: &'a str,
    /// The client's address (behind a trusted proxy, the one its header names); None on a
    /// pipe. Failed logins are logged and slowed by it.
    pub address: Option<IpAddr>,
    pub security: Security,
}

/// What a client reads after "-ERR " when it offers a clear-text password on an insecure
/// connection; Dovecot's words, so that users and their search engines recognise it.
/// pop3d-router hands nginx the same words, like `LOGIN_FAILED`.
pub const PLAINTEXT_REFUSED: &str =
    "[AUTH] plaintext authentication disallowed on non-secure (SSL/TLS) connections, use TLS";

/// How a session ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// QUIT; `deleted` messages were removed in UPDATE.
    Quit {
        user: Option<String>,
        deleted: usize,
    },
    /// QUIT in TRANSACTION, but UPDATE failed and nothing was removed.
    UpdateFailed {
        user: String,
    },
    /// QUIT in TRANSACTION; UPDATE failed halfway and the next login completes its
    /// `deleted` removals.
    UpdateInterrupted {
        user: String,
        deleted: usize,
    },
    /// QUIT in TRANSACTION; UPDATE removed `deleted` messages but could not sync that to disk.
    UpdateUnsynced {
        user: String,
        deleted: usize,
    },
    /// The peer closed the connection (no UPDATE).
    Dropped {
        user: Option<String>,
    },
    /// The autologout timer fired (no UPDATE).
    Autologout {
        user: Option<String>,
    },
    TooManyBadCommands,
    TooManyAuthFailures,
    /// A right password whose maildrop was not opened (in use, login delay), where no
    /// further login can follow (`MaildropSource::allows_another_login`).
    NotOpened {
        user: String,
    },
    /// Reading or writing the connection failed (no UPDATE).
    Io {
        user: Option<String>,
        error: String,
    },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn who(user: &Option<String>) -> &str {
            user.as_deref().unwrap_or("-")
        }
        match self {
            Ending::Quit { user, deleted } => {
                write!(f, "quit, user {}, {deleted} deleted", who(user))
            }
            Ending::UpdateFailed { user } => {
                write!(f, "quit but update failed, user {user}, nothing deleted")
            }
            Ending::UpdateInterrupted { user, deleted } => write!(
                f,
                "quit but update interrupted, user {user}, {deleted} deletions completed at the next login"
            ),
            Ending::UpdateUnsynced { user, deleted } => write!(
                f,
                "quit, user {user}, {deleted} deleted but not synced to disk"
            ),
            Ending::Dropped { user } => write!(f, "connection dropped, user {}", who(user)),
            Ending::Autologout { user } => write!(f, "autologout, user {}", who(user)),
            Ending::TooManyBadCommands => f.write_str("too many bad commands"),
            Ending::TooManyAuthFailures => f.write_str("too many authentication failures"),
            Ending::NotOpened { user } => write!(
                f,
                "maildrop not opened, user {user}; no second login once running as the user"
            ),
            Ending::Io { user, error } => write!(f, "i/o error, user {}: {error}", who(user)),
        }
    }
}

/// Runs one session to its end. `connection.peer` names the client in the log.
pub fn run<R: Read + Autologout, W: Write>(
    input: BufReader<R>,
    output: W,
    ctx: &Context,
    connection: Connection<'_>,
) -> Ending {
    run_then(input, output, ctx, connection, || {})
}

/// Like `run`, and calls `release` once the session's maildrop is closed but before its last
/// reply leaves: a client that has read "+OK" to QUIT finds its maildrop and its place under
/// the connection caps free again when it reconnects at once.
pub fn run_then<R: Read + Autologout, W: Write>(
    input: BufReader<R>,
    output: W,
    ctx: &Context,
    connection: Connection<'_>,
    release: impl FnOnce(),
) -> Ending {
    let mut session = Session {
        input,
        output: BufWriter::with_capacity(OUTPUT_BUFFER, output),
        ctx,
        peer: connection.peer,
        address: connection.address,
        plaintext: connection.security.allows_plaintext(ctx.plaintext_auth),
        timestamp: unique_timestamp(&ctx.hostname),
        state: State::Authorization { user: None },
        bad_commands: 0,
        auth_failures: 0,
        line: Vec::with_capacity(command::MAX_LINE),
    };
    let ending = session.serve();
    let Session {
        mut output, state, ..
    } = session;
    // Dropping the state closes the maildrop and its session lock.
    drop(state);
    release();
    // Whatever happened, what was answered should reach the client if it still listens.
    let _ = output.flush();
    ending
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Transaction>),
}

struct Transaction {
    user: String,
    mailbox: Box<dyn Mailbox>,
    deleted: Vec<bool>,
}

impl Transaction {
    /// The one place a client's message number becomes an index; deleted messages are refused.
    fn index(&self, n: MsgNum) -> Result<usize, String> {
        let index = n.index();
        let count = self.deleted.len();
        if index >= count {
            return Err(format!(
                "no such message, only {count} messages in maildrop"
            ));
        }
        if self.deleted[index] {
            return Err(format!("message {n} already deleted"));
        }
        Ok(index)
    }

    fn totals(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, o), (_, m)| (n + 1, o + m.octets))
    }

    fn live(&self) -> impl Iterator<Item = (usize, &MessageInfo)> {
        self.mailbox
            .messages()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }
}

/// What a handler wants to happen next.
enum Next {
    Continue,
    End(Ending),
}

struct Session<'a, R: Read + Autologout, W: Write> {
    input: BufReader<R>,
    output: BufWriter<W>,
    ctx: &'a Context,
    peer: &'a str,
    address: Option<IpAddr>,
    /// Whether USER/PASS and AUTH PLAIN are offered and taken on this connection.
    plaintext: bool,
    /// The APOP timestamp of the greeting (RFC 1939 section 7).
    timestamp: String,
    state: State,
    bad_commands: u32,
    auth_failures: u32,
    line: Vec<u8>,
}

impl<R: Read + Autologout, W: Write> Session<'_, R, W> {
    fn serve(&mut self) -> Ending {
        let greeting = format_args!("pop3d ready {}", self.timestamp);
        if let Err(e) = reply::ok(&mut self.output, greeting) {
            return self.io_ending(e);
        }
        loop {
            let line = match self.read_line() {
                Ok(()) => command::parse(&self.line),
                Err(LineError::TooLong) => Err(ParseError::TooLong),
                Err(LineError::Closed) => return Ending::Dropped { user: self.user() },
                Err(LineError::Io(e)) => return self.read_ending(e),
            };
            let next = match line {
                Ok(command) => self.dispatch(command),
                Err(e) => self.bad_command(format_args!("{e}")),
            };
            match next {
                Ok(Next::Continue) => {}
                Ok(Next::End(ending)) => return ending,
                Err(e) => return self.io_ending(e),
            }
        }
    }

    /// Reads the next line, flushing replies first unless a whole command is already
    /// queued, so pipelined commands are answered in one write (RFC 2449 PIPELINING) and a
    /// client whose last packet ended inside a line still gets every answer it waits for.
    fn read_line(&mut self) -> Result<(), LineError> {
        if find_byte(self.input.buffer(), b'\n').is_none() {
            self.output.flush()?;
        }
        self.input.get_mut().restart();
        command::read_line(&mut self.input, &mut self.line)
    }

    fn user(&self) -> Option<String> {
        match &self.state {
            State::Authorization { .. } => None,
            State::Transaction(t) => Some(t.user.clone()),
        }
    }

    fn read_ending(&self, e: io::Error) -> Ending {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Ending::Autologout { user: self.user() }
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                Ending::Dropped { user: self.user() }
            }
            _ => self.io_ending(e),
        }
    }

    fn io_ending(&self, e: io::Error) -> Ending {
        Ending::Io {
            user: self.user(),
            error: e.to_string(),
        }
    }

    fn bad_command(&mut self, why: std::fmt::Arguments<'_>) -> io::Result<Next> {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            reply::err(
                &mut self.output,
                None,
                format_args!("too many bad commands"),
            )?;
            return Ok(Next::End(Ending::TooManyBadCommands));
        }
        reply::err(&mut self.output, None, why)?;
        Ok(Next::Continue)
    }

    fn dispatch(&mut self, command: Command) -> io::Result<Next> {
        if let Command::Capa = command {
            self.capa()?;
            return Ok(Next::Continue);
        }
        if let Command::Quit = command {
            return self.quit();
        }
        match self.state {
            State::Authorization { .. } => self.authorization(command),
            State::Transaction(_) => self.transaction(command),
        }
    }

    fn capa(&mut self) -> io::Result<()> {
        let mechanisms = self.mechanisms();
        let out = &mut self.output;
        reply::ok(out, format_args!("capability list follows"))?;
        let authorized = matches!(self.state, State::Transaction(_));
        for cap in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            reply::line(out, format_args!("{cap}"))?;
        }
        // RFC 2449 section 6: USER and SASL only matter before authentication; where a
        // clear-text password would be refused, neither USER nor PLAIN is offered, so a client
        // picks APOP or CRAM-MD5 or tells its user to turn on TLS.
        if !authorized {
            if self.plaintext {
                reply::line(out, format_args!("USER"))?;
            }
            // With neither (system users on an insecure connection) no SASL line at all:
            // RFC 2449 gives SASL one or more mechanisms.
            if !mechanisms.is_empty() {
                reply::line(out, format_args!("SASL {}", mechanisms.join(" ")))?;
            }
        }
        let delay = self.ctx.login_delay.as_secs();
        if delay > 0 {
            reply::line(out, format_args!("LOGIN-DELAY {delay}"))?;
        }
        reply::line(out, format_args!("EXPIRE NEVER"))?;
        reply::line(
            out,
            format_args!("IMPLEMENTATION pop3d-{}", env!("CARGO_PKG_VERSION")),
        )?;
        reply::end(out)
    }

    /// The SASL mechanisms this session offers: PLAIN only where a clear-text password is
    /// taken, CRAM-MD5 only where users have a shared secret.
    fn mechanisms(&self) -> Vec<&'static str> {
        let shared_secrets = self.ctx.users.has_shared_secrets();
        MECHANISMS
            .into_iter()
            .filter(|&m| match m {
                "PLAIN" => self.plaintext,
                "CRAM-MD5" => shared_secrets,
                _ => true,
            })
            .collect()
    }

    fn quit(&mut self) -> io::Result<Next> {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        let State::Transaction(mut t) = state else {
            reply::ok(&mut self.output, format_args!("pop3d signing off"))?;
            return Ok(Next::End(Ending::Quit {
                user: None,
                deleted: 0,
            }));
        };
        // UPDATE (RFC 1939 section 6): "+OK" only once the removal is durable. With nothing
        // deleted the maildrop's commit writes nothing.
        match t.mailbox.commit(&t.deleted) {
            Ok(stats) => {
                reply::ok(
                    &mut self.output,
                    format_args!("pop3d signing off ({} messages deleted)", stats.deleted),
                )?;
                Ok(Next::End(Ending::Quit {
                    user: Some(t.user),
                    deleted: stats.deleted,
                }))
            }
            Err(e) => {
                log::error!("{}: update of {}'s maildrop failed: {e}", self.peer, t.user);
                // Say what became of the deletions: none, done at the next login, or done
                // but not yet durable. No message is lost in any case.
                let user = t.user;
                let deleted = t.deleted.iter().filter(|&&d| d).count();
                let (text, ending) = match e {
                    MaildropError::Interrupted(_) => (
                        "removing deleted messages was interrupted, the next login completes it",
                        Ending::UpdateInterrupted { user, deleted },
                    ),
                    MaildropError::Unsynced(_) => (
                        "deleted messages removed but not confirmed on disk",
                        Ending::UpdateUnsynced { user, deleted },
                    ),
                    _ => (
                        "could not remove deleted messages, none was removed",
                        Ending::UpdateFailed { user },
                    ),
                };
                reply::err(
                    &mut self.output,
                    Some(Code::SysTemp),
                    format_args!("{text}; no message was lost"),
                )?;
                Ok(Next::End(ending))
            }
        }
    }

    fn authorization(&mut self, command: Command) -> io::Result<Next> {
        match command {
            Command::User(_) | Command::Pass(_) if !self.plaintext => self.plaintext_refused(),
            Command::User(name) => {
                // The same answer for every name: USER tells a stranger nothing.
                self.state = State::Authorization { user: Some(name) };
                reply::ok(&mut self.output, format_args!("send PASS"))?;
                Ok(Next::Continue)
            }
            Command::Pass(password) => {
                let State::Authorization { user: Some(name) } = &mut self.state else {
                    return self.bad_command(format_args!("USER first"));
                };
                let name = std::mem::take(name);
                self.state = State::Authorization { user: None };
                if !self.wait_turn()? {
                    return self.turn_refused();
                }
                let user = self.check(&name, &|stored| stored.check(&password));
                self.authenticated(&name, user, Mechanism::Pass)
            }
            Command::Apop { name, digest } => {
                // A hashed password is no shared secret: APOP fails for its user.
                if !self.wait_turn()? {
                    return self.turn_refused();
                }
                let user = self.check(&name, &|stored| {
                    stored
                        .shared_secret()
                        .is_some_and(|secret| auth::check_apop(&self.timestamp, secret, &digest))
                });
                self.authenticated(&name, user, Mechanism::Apop)
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            _ => self.bad_command(format_args!("not allowed before login")),
        }
    }

    /// RFC 5034 AUTH.
    fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> io::Result<Next> {
        let Some(mechanism) = mechanism else {
            reply::ok(
                &mut self.output,
                format_args!("supported mechanisms follow"),
            )?;
            for m in self.mechanisms() {
                reply::line(&mut self.output, format_args!("{m}"))?;
            }
            reply::end(&mut self.output)?;
            return Ok(Next::Continue);
        };
        match mechanism.as_str() {
            // Refused before any challenge, so a client without an initial response is never
            // asked for the password.
            "PLAIN" if !self.plaintext => self.plaintext_refused(),
            "PLAIN" => {
                let response = match initial {
                    // RFC 5034 section 4: "=" is an empty initial response.
                    Some(text) if text == "=" => String::new(),
                    Some(text) => text,
                    None => match self.challenge("")? {
                        Some(text) => text,
                        None => return self.auth_cancelled(),
                    },
                };
                let Ok(decoded) = auth::base64_decode(&response) else {
                    return self.bad_command(format_args!("invalid base64"));
                };
                let Ok(plain) = auth::parse_plain(&decoded) else {
                    return self.bad_command(format_args!("malformed PLAIN response"));
                };
                // No proxy authorization: an authzid must name the user itself.
                let authz_ok = plain.authzid.is_empty() || plain.authzid == plain.authcid;
                if !self.wait_turn()? {
                    return self.turn_refused();
                }
                let user = self.check(&plain.authcid, &|stored| {
                    stored.check(&plain.password) && authz_ok
                });
                self.authenticated(&plain.authcid, user, Mechanism::Plain)
            }
            "CRAM-MD5" if self.ctx.users.has_shared_secrets() => {
                if initial.is_some() {
                    // RFC 2195: the server speaks first, so there is no initial response.
                    return self.bad_command(format_args!("CRAM-MD5 takes no initial response"));
                }
                let challenge = unique_timestamp(&self.ctx.hostname);
                let Some(response) = self.challenge(&auth::base64_encode(challenge.as_bytes()))?
                else {
                    return self.auth_cancelled();
                };
                let Ok(decoded) = auth::base64_decode(&response) else {
                    return self.bad_command(format_args!("invalid base64"));
                };
                let Ok((name, digest)) = auth::parse_cram_md5_response(&decoded) else {
                    return self.bad_command(format_args!("malformed CRAM-MD5 response"));
                };
                if !self.wait_turn()? {
                    return self.turn_refused();
                }
                let user = self.check(&name, &|stored| {
                    stored
                        .shared_secret()
                        .is_some_and(|secret| auth::check_cram_md5(&challenge, secret, &digest))
                });
                self.authenticated(&name, user, Mechanism::CramMd5)
            }
            _ => self.bad_command(format_args!("unsupported authentication mechanism")),
        }
    }

    /// Sends a SASL challenge and reads the client's line; None if the client cancelled.
    fn challenge(&mut self, challenge: &str) -> io::Result<Option<String>> {
        reply::challenge(&mut self.output, challenge)?;
        match self.read_line() {
            Ok(()) => {}
            // An over-long line is no valid response; an empty one fails base64 below.
            Err(LineError::TooLong) => return Ok(Some("!".into())),
            Err(LineError::Closed) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during authentication",
                ))
            }
            Err(LineError::Io(e)) => return Err(e),
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if text == "*" {
            return Ok(None);
        }
        Ok(Some(text))
    }

    /// USER, PASS or AUTH PLAIN on a connection where clear-text passwords are refused. It
    /// counts as a bad command, not as a failed login: no password was checked.
    fn plaintext_refused(&mut self) -> io::Result<Next> {
        log::info!(
            "{}: clear-text login refused, connection is insecure",
            self.peer
        );
        self.bad_commands += 1;
        // The code is part of PLAINTEXT_REFUSED, which the router shares.
        reply::err(&mut self.output, None, format_args!("{PLAINTEXT_REFUSED}"))?;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            return Ok(Next::End(Ending::TooManyBadCommands));
        }
        Ok(Next::Continue)
    }

    fn auth_cancelled(&mut self) -> io::Result<Next> {
        reply::err(
            &mut self.output,
            None,
            format_args!("authentication cancelled"),
        )?;
        Ok(Next::Continue)
    }

    /// Waits for this client address's turn to have a password checked (penalty.rs): none
    /// while it has no failures, at most the longest penalty. Replies already queued go out
    /// first, and nothing is held meanwhile (no lock, no maildrop: this session is still in
    /// AUTHORIZATION). False if the address's queue is full: the login fails unchecked.
    fn wait_turn(&mut self) -> io::Result<bool> {
        let Some(address) = self.address else {
            return Ok(true);
        };
        match self.ctx.penalties.turn(address, Instant::now()) {
            Turn::Wait(wait) if wait.is_zero() => {}
            Turn::Wait(wait) => {
                self.output.flush()?;
                log::debug!(
                    "{}: earlier failed logins from {address}: check in {} ms",
                    self.peer,
                    wait.as_millis()
                );
                std::thread::sleep(wait);
            }
            Turn::Refused => {
                log::info!(
                    "{}: too many password checks queued from {address}: login refused unchecked",
                    self.peer
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A login whose address had no turn to give (penalty.rs): refused without a password
    /// check, so it costs no hash and tells nothing of the password. It is answered after the
    /// failure delay like a failure (a client that hammers is not answered faster) and counts
    /// towards the connection's limit, but it is no failed login: the reply says to come back
    /// later (a right password was perhaps sent), the penalty's count stays, and no
    /// "auth failed" line is logged (the checks that do fail, one per turn, are).
    fn turn_refused(&mut self) -> io::Result<Next> {
        self.auth_failures += 1;
        self.output.flush()?;
        std::thread::sleep(self.ctx.failure_delay);
        // The code is part of TURN_REFUSED, which the router shares.
        reply::err(&mut self.output, None, format_args!("{TURN_REFUSED}"))?;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            return Ok(Next::End(Ending::TooManyAuthFailures));
        }
        Ok(Next::Continue)
    }

    /// Every login's check of a name and password, noting when it began.
    fn check(&self, name: &str, check: &dyn Fn(&Password) -> bool) -> Checked {
        let started = Instant::now();
        let user = self.ctx.users.checked_user(name, check);
        Checked { user, started }
    }

    /// The end of every login: refuses after the failure delay, or opens the maildrop.
    fn authenticated(
        &mut self,
        name: &str,
        checked: Checked,
        mechanism: Mechanism,
    ) -> io::Result<Next> {
        let method = mechanism.commands();
        let Some(user) = checked.user else {
            self.auth_failures += 1;
            // One line of a fixed shape, for fail2ban (failed_login.rs).
            let failed = FailedLogin {
                address: self.address,
                mechanism,
                user: name,
            };
            log::info!("{}: {failed}", self.peer);
            if let Some(address) = self.address {
                self.ctx.penalties.failed(address, name, Instant::now());
            }
            // Answer late so guessing is slow; the thread sleeps cheaply meanwhile. The check
            // is timed before the flush, which a slow reader may hold up.
            check_too_slow(checked.started.elapsed(), self.ctx.failure_delay);
            self.output.flush()?;
            if let Some(wait) = failure_wait(checked.started.elapsed(), self.ctx.failure_delay) {
                std::thread::sleep(wait);
            }
            // The code is part of LOGIN_FAILED, which the router shares.
            reply::err(&mut self.output, None, format_args!("{LOGIN_FAILED}"))?;
            if self.auth_failures >= MAX_AUTH_FAILURES {
                return Ok(Next::End(Ending::TooManyAuthFailures));
            }
            return Ok(Next::Continue);
        };
        // The password was right: this user's own failures from here count no more (and no
        // other user's are touched, penalty.rs).
        if let Some(address) = self.address {
            self.ctx.penalties.succeeded(address, &user.name);
        }
        let locked = match self.ctx.maildrops.lock(&user) {
            Ok(locked) => locked,
            Err(e) => return self.open_failed(&user.name, e),
        };
        if let Some(wait) = self.too_soon(locked.previous_login()) {
            log::info!(
                "{}: login of {} refused by login delay ({}s left)",
                self.peer,
                user.name,
                wait.as_secs()
            );
            reply::err(
                &mut self.output,
                Some(Code::LoginDelay),
                format_args!(
                    "minimum time between logins is {} seconds",
                    self.ctx.login_delay.as_secs()
                ),
            )?;
            return Ok(self.after_not_opened(&user.name));
        }
        let mailbox = match locked.open() {
            Ok(mailbox) => mailbox,
            Err(e) => return self.open_failed(&user.name, e),
        };
        let count = mailbox.messages().len();
        let transaction = Transaction {
            user: user.name.clone(),
            mailbox,
            deleted: vec![false; count],
        };
        let (n, octets) = transaction.totals();
        log::info!(
            "{}: {method} login as {}, {n} messages",
            self.peer,
            user.name
        );
        self.state = State::Transaction(Box::new(transaction));
        reply::ok(
            &mut self.output,
            format_args!("{} has {n} messages ({octets} octets)", user.name),
        )?;
        Ok(Next::Continue)
    }

    fn too_soon(&self, previous: Option<SystemTime>) -> Option<Duration> {
        let delay = self.ctx.login_delay;
        if delay.is_zero() {
            return None;
        }
        // A previous login "in the future" (the clock was stepped back) counts as none: it
        // must not lock the user out until the clock catches up.
        let elapsed = previous?.elapsed().ok()?;
        delay.checked_sub(elapsed).filter(|left| !left.is_zero())
    }

    /// The reply for a maildrop that cannot be opened is chosen here, never printed from the
    /// error itself.
    fn open_failed(&mut self, user: &str, e: MaildropError) -> io::Result<Next> {
        let (code, text) = match &e {
            MaildropError::InUse => (Code::InUse, "maildrop already in use by another session"),
            MaildropError::Locked => (
                Code::InUse,
                "maildrop locked by the delivery program, try again later",
            ),
            // Not something a retry fixes: the admin has to look (RFC 3206 SYS/PERM).
            MaildropError::NotAFile(_)
            | MaildropError::NotOwned(_)
            | MaildropError::Untrusted(_)
            | MaildropError::TooLarge { .. } => (
                Code::SysPerm,
                "cannot open maildrop, contact the administrator",
            ),
            _ => (Code::SysTemp, "cannot open maildrop, try again later"),
        };
        match e {
            MaildropError::InUse | MaildropError::Locked => {
                log::info!("{}: maildrop of {user} busy: {e}", self.peer)
            }
            _ => log::error!("{}: cannot open maildrop of {user}: {e}", self.peer),
        }
        reply::err(&mut self.output, Some(code), format_args!("{text}"))?;
        Ok(self.after_not_opened(user))
    }

    /// After a right password whose maildrop was not opened: back to AUTHORIZATION, where
    /// the client may log in again (RFC 1939, 4) or, where no further login can be checked,
    /// the end of the session (which RFC 1939 also allows).
    fn after_not_opened(&self, user: &str) -> Next {
        if self.ctx.maildrops.allows_another_login() {
            return Next::Continue;
        }
        Next::End(Ending::NotOpened {
            user: user.to_owned(),
        })
    }

    fn transaction(&mut self, command: Command) -> io::Result<Next> {
        let State::Transaction(t) = &mut self.state else {
            unreachable!("dispatch calls transaction only in the TRANSACTION state");
        };
        let out = &mut self.output;
        match command {
            Command::Stat => {
                let (n, octets) = t.totals();
                reply::ok(out, format_args!("{n} {octets}"))?;
            }
            Command::List(None) => {
                let (n, octets) = t.totals();
                reply::ok(out, format_args!("{n} messages ({octets} octets)"))?;
                for (i, m) in t.live() {
                    reply::line(out, format_args!("{} {}", i + 1, m.octets))?;
                }
                reply::end(out)?;
            }
            Command::List(Some(n)) => match t.index(n) {
                Ok(i) => reply::ok(out, format_args!("{n} {}", t.mailbox.messages()[i].octets))?,
                Err(why) => reply::err(out, None, format_args!("{why}"))?,
            },
            Command::Uidl(None) => {
                reply::ok(out, format_args!("unique-id listing follows"))?;
                for (i, m) in t.live() {
                    reply::line(out, format_args!("{} {}", i + 1, m.uid))?;
                }
                reply::end(out)?;
            }
            Command::Uidl(Some(n)) => match t.index(n) {
                Ok(i) => reply::ok(out, format_args!("{n} {}", t.mailbox.messages()[i].uid))?,
                Err(why) => reply::err(out, None, format_args!("{why}"))?,
            },
            Command::Retr(n) => return self.send_message(n, None),
            Command::Top { msg, lines } => return self.send_message(msg, Some(lines)),
            Command::Dele(n) => match t.index(n) {
                Ok(i) => {
                    t.deleted[i] = true;
                    reply::ok(out, format_args!("message {n} deleted"))?;
                }
                Err(why) => reply::err(out, None, format_args!("{why}"))?,
            },
            Command::Rset => {
                t.deleted.iter_mut().for_each(|d| *d = false);
                let (n, octets) = t.totals();
                reply::ok(
                    out,
                    format_args!("maildrop has {n} messages ({octets} octets)"),
                )?;
            }
            Command::Noop => {
                #[cfg(feature = "fault-injection")]
                if std::env::var_os("POP3D_PANIC_ON_NOOP").is_some() {
                    panic!("forced by POP3D_PANIC_ON_NOOP");
                }
                reply::ok(out, format_args!(""))?;
            }
            _ => return self.bad_command(format_args!("not allowed after login")),
        }
        Ok(Next::Continue)
    }

    /// RETR (no limit) and TOP (a body-line limit), streamed from the maildrop.
    fn send_message(&mut self, n: MsgNum, body_lines: Option<u32>) -> io::Result<Next> {
        let State::Transaction(t) = &mut self.state else {
            unreachable!("only transaction, in the TRANSACTION state, calls send_message");
        };
        let index = match t.index(n) {
            Ok(i) => i,
            Err(why) => {
                reply::err(&mut self.output, None, format_args!("{why}"))?;
                return Ok(Next::Continue);
            }
        };
        let octets = t.mailbox.messages()[index].octets;
        let mut reader = match t.mailbox.message_reader(index) {
            Ok(reader) => reader,
            Err(e) => {
                log::error!("{}: cannot read message {n} of {}: {e}", self.peer, t.user);
                reply::err(
                    &mut self.output,
                    Some(Code::SysTemp),
                    format_args!("cannot read message {n}, try again later"),
                )?;
                return Ok(Next::Continue);
            }
        };
        let mut body = match body_lines {
            None => {
                reply::ok(&mut self.output, format_args!("{octets} octets"))?;
                DotWriter::new(&mut self.output)
            }
            Some(lines) => {
                reply::ok(&mut self.output, format_args!("top of message follows"))?;
                DotWriter::with_body_lines(&mut self.output, lines)
            }
        };
        // Once "+OK" is out, a failure cannot be signalled in-band: the error (a file cut
        // short while it streams is one) ends the session without the terminating line.
        loop {
            let block = match reader.fill_buf() {
                Ok([]) => break,
                Ok(block) => block,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("{}: read of message {n} failed: {e}", self.peer);
                    return Err(e);
                }
            };
            body.write_all(block)?;
            let used = block.len();
            reader.consume(used);
            // TOP: past its line limit the rest of the message is not sent, nor read.
            if body.done() {
                break;
            }
        }
        body.finish()?;
        Ok(Next::Continue)
    }
}

/// A login check's outcome, and when the check began: a failure is answered from then.
struct Checked {
    user: Option<User>,
    started: Instant,
}

/// How much longer a failed authentication waits for its answer, `elapsed` after its check
/// began: the answer comes at one deadline, the start plus `delay`, however long the check
/// took, so its time never tells a known name from an unknown one. None once the deadline
/// has passed (the check took longer than the delay, and showed).
fn failure_wait(elapsed: Duration, delay: Duration) -> Option<Duration> {
    delay.checked_sub(elapsed).filter(|wait| !wait.is_zero())
}

/// Warns (once per process) that a password check outlasted the failure delay: its time
/// then shows in the answer, and the delay should be longer than the slowest hash.
fn check_too_slow(elapsed: Duration, delay: Duration) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if elapsed > delay && !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "a password check took {} ms, longer than the failure delay ({} ms): \
             its time can tell accounts apart",
            elapsed.as_millis(),
            delay.as_millis()
        );
    }
}

/// SASL mechanisms offered (CAPA "SASL ..." and bare "AUTH"); PLAIN first, since it is
/// all that is offered when users have no shared secrets.
const MECHANISMS: [&str; 2] = ["PLAIN", "CRAM-MD5"];

/// A `<pid.seq.nanos@host>` string, different for every call in every process, for the APOP
/// timestamp and CRAM-MD5 challenges (replaying an old digest must not work).
fn unique_timestamp(hostname: &str) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("<{}.{seq}.{nanos}@{hostname}>", std::process::id())
}

#[cfg(test)]
mod tests;
