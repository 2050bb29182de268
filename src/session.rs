//! The POP3 state machine: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939), with CAPA and
//! response codes (RFC 2449, RFC 3206) and SASL (RFC 5034).
//!
//! A session reads command lines from a `BufReader` and writes replies to any `Write`; it never
//! sees a socket, a path or a lock. Users come from a `UserSource` and maildrops from a
//! `MaildropSource`, so the whole machine runs in tests over byte slices and in-memory mboxes.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth;
use crate::bytes::find_byte;
use crate::maildrop::{CommitStats, MaildropError, MessageInfo};
use crate::protocol::command::{self, Command, LineError, MsgNum, ParseError};
use crate::protocol::reply::{self, Code, DotWriter};
use crate::security::{PlaintextAuth, Security};
use crate::users::{User, UsersDb};

/// Replies are collected and sent once the client has nothing more queued (PIPELINING).
const OUTPUT_BUFFER: usize = 64 * 1024;

/// A client that sends this many unknown, malformed or out-of-state commands is a robot or a
/// scanner, not a mail client: the session ends (Dovecot uses 20 as well).
pub const MAX_BAD_COMMANDS: u32 = 20;

/// A failed authentication is answered this late, so guessing passwords is slow.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Failed PASS / APOP / AUTH attempts before the connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

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
}

/// Where users come from: the users file (re-read when it changes), or memory in tests.
pub trait UserSource: Send + Sync {
    fn current(&self) -> Arc<UsersDb>;
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
}

/// What the session knows of its connection: a name for the log, and whether it is secure
/// (decided by whoever holds the socket, see security.rs).
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub peer: &'a str,
    pub security: Security,
}

/// What a client reads when it offers a clear-text password on an insecure connection;
/// Dovecot's words, so that users and their search engines recognise it.
const PLAINTEXT_REFUSED: &str =
    "plaintext authentication disallowed on non-secure (SSL/TLS) connections, use TLS";

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
            Ending::Dropped { user } => write!(f, "connection dropped, user {}", who(user)),
            Ending::Autologout { user } => write!(f, "autologout, user {}", who(user)),
            Ending::TooManyBadCommands => f.write_str("too many bad commands"),
            Ending::TooManyAuthFailures => f.write_str("too many authentication failures"),
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
            let mechanisms = mechanisms(self.plaintext);
            reply::line(out, format_args!("SASL {}", mechanisms.join(" ")))?;
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
                reply::err(
                    &mut self.output,
                    Some(Code::SysTemp),
                    format_args!("could not finish removing deleted messages, no message was lost"),
                )?;
                Ok(Next::End(Ending::UpdateFailed { user: t.user }))
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
                let users = self.ctx.users.current();
                let user = users
                    .checked_user(&name, |secret| auth::check_password(secret, &password))
                    .cloned();
                self.authenticated(&name, user, "USER/PASS")
            }
            Command::Apop { name, digest } => {
                let users = self.ctx.users.current();
                let user = users
                    .checked_user(&name, |secret| {
                        auth::check_apop(&self.timestamp, secret, &digest)
                    })
                    .cloned();
                self.authenticated(&name, user, "APOP")
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
            for m in mechanisms(self.plaintext) {
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
                let users = self.ctx.users.current();
                // No proxy authorization: an authzid must name the user itself.
                let authz_ok = plain.authzid.is_empty() || plain.authzid == plain.authcid;
                let user = users
                    .checked_user(&plain.authcid, |secret| {
                        auth::check_password(secret, &plain.password) && authz_ok
                    })
                    .cloned();
                self.authenticated(&plain.authcid, user, "AUTH PLAIN")
            }
            "CRAM-MD5" => {
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
                let users = self.ctx.users.current();
                let user = users
                    .checked_user(&name, |secret| {
                        auth::check_cram_md5(&challenge, secret, &digest)
                    })
                    .cloned();
                self.authenticated(&name, user, "AUTH CRAM-MD5")
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
        reply::err(
            &mut self.output,
            Some(Code::Auth),
            format_args!("{PLAINTEXT_REFUSED}"),
        )?;
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

    /// The end of every login: refuses after the failure delay, or opens the maildrop.
    fn authenticated(&mut self, name: &str, user: Option<User>, method: &str) -> io::Result<Next> {
        let Some(user) = user else {
            self.auth_failures += 1;
            // The name as the client gave it, escaped: it may hold anything a stranger typed.
            log::info!(
                "{}: {method} login failed for user {}",
                self.peer,
                name.escape_default()
            );
            // Answer late so guessing is slow; the thread sleeps cheaply meanwhile.
            self.output.flush()?;
            std::thread::sleep(self.ctx.failure_delay);
            reply::err(
                &mut self.output,
                Some(Code::Auth),
                format_args!("invalid user name or password"),
            )?;
            if self.auth_failures >= MAX_AUTH_FAILURES {
                return Ok(Next::End(Ending::TooManyAuthFailures));
            }
            return Ok(Next::Continue);
        };
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
            return Ok(Next::Continue);
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
            MaildropError::NotAFile(_) | MaildropError::TooLarge { .. } => (
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
        Ok(Next::Continue)
    }

    fn transaction(&mut self, command: Command) -> io::Result<Next> {
        let State::Transaction(t) = &mut self.state else {
            return Ok(Next::Continue);
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
            return Ok(Next::Continue);
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
        // Once "+OK" is out, a failure cannot be signalled in-band: the error ends the session.
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
        }
        body.finish()?;
        Ok(Next::Continue)
    }
}

/// SASL mechanisms offered (CAPA "SASL ..." and bare "AUTH").
pub const MECHANISMS: [&str; 2] = ["PLAIN", "CRAM-MD5"];

/// The SASL mechanisms offered: all of them, or those that never send the password.
fn mechanisms(plaintext: bool) -> Vec<&'static str> {
    MECHANISMS
        .into_iter()
        .filter(|&m| plaintext || m != "PLAIN")
        .collect()
}

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
mod tests {
    //! The state machine over byte slices: client lines in, transcript out, no sockets.

    use super::*;
    use crate::backend::FixedUsers;
    use crate::maildrop::scan::scan;
    use std::sync::Mutex;

    /// An mbox in memory, scanned with the real scanner; commit rewrites the bytes.
    struct MemoryMailbox {
        store: Arc<Mutex<Vec<u8>>>,
        bytes: Vec<u8>,
        messages: Vec<MessageInfo>,
        scanned_len: u64,
    }

    impl Mailbox for MemoryMailbox {
        fn messages(&self) -> &[MessageInfo] {
            &self.messages
        }

        fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError> {
            let m = &self.messages[index];
            let start = m.content_start as usize;
            Ok(Box::new(&self.bytes[start..start + m.content_len as usize]))
        }

        fn commit(&mut self, deleted: &[bool]) -> Result<CommitStats, MaildropError> {
            let mut kept = Vec::new();
            let mut stats = CommitStats {
                deleted: 0,
                octets_removed: 0,
            };
            for (i, m) in self.messages.iter().enumerate() {
                let end = self
                    .messages
                    .get(i + 1)
                    .map_or(self.scanned_len, |next| next.record_start);
                if deleted[i] {
                    stats.deleted += 1;
                    stats.octets_removed += end - m.record_start;
                } else {
                    kept.extend_from_slice(&self.bytes[m.record_start as usize..end as usize]);
                }
            }
            kept.extend_from_slice(&self.bytes[self.scanned_len as usize..]);
            *self.store.lock().unwrap() = kept;
            Ok(stats)
        }
    }

    struct MemoryLocked {
        store: Arc<Mutex<Vec<u8>>>,
        previous: Option<SystemTime>,
    }

    impl LockedMaildrop for MemoryLocked {
        fn previous_login(&self) -> Option<SystemTime> {
            self.previous
        }

        fn open(self: Box<Self>) -> Result<Box<dyn Mailbox>, MaildropError> {
            let bytes = self.store.lock().unwrap().clone();
            let scanned = scan(&bytes[..]).unwrap();
            Ok(Box::new(MemoryMailbox {
                store: self.store,
                bytes,
                messages: scanned.messages,
                scanned_len: scanned.scanned_len,
            }))
        }
    }

    struct MemoryMaildrops {
        store: Arc<Mutex<Vec<u8>>>,
        in_use: bool,
        previous: Option<SystemTime>,
    }

    impl MaildropSource for MemoryMaildrops {
        fn lock(&self, _user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
            if self.in_use {
                return Err(MaildropError::InUse);
            }
            Ok(Box::new(MemoryLocked {
                store: Arc::clone(&self.store),
                previous: self.previous,
            }))
        }
    }

    const MBOX: &str = "From a@x Sat Jan  3 01:05:34 1996\n\
        Subject: one\n\n\
        first body\n.dotted\n\n\
        From b@x Sat Jan  3 01:05:34 1996\n\
        Subject: two\n\n\
        line 1\nline 2\nline 3\n\n";

    struct Setup {
        store: Arc<Mutex<Vec<u8>>>,
        ctx: Context,
    }

    fn setup(mbox: &str) -> Setup {
        let store = Arc::new(Mutex::new(mbox.as_bytes().to_vec()));
        let users = crate::users::UsersDb::parse("alice:secret\nbob:hunter 2\n").unwrap();
        let ctx = Context {
            hostname: "test.example".into(),
            users: Arc::new(FixedUsers(Arc::new(users))),
            maildrops: Arc::new(MemoryMaildrops {
                store: Arc::clone(&store),
                in_use: false,
                previous: None,
            }),
            login_delay: Duration::ZERO,
            failure_delay: Duration::ZERO,
            plaintext_auth: PlaintextAuth::Secure,
        };
        Setup { store, ctx }
    }

    /// A session on a loopback connection, where every login method is open.
    fn transcript(ctx: &Context, input: &str) -> (String, Ending) {
        transcript_on(Security::Loopback, ctx, input)
    }

    fn transcript_on(security: Security, ctx: &Context, input: &str) -> (String, Ending) {
        let mut out = Vec::new();
        let connection = Connection {
            peer: "test",
            security,
        };
        let ending = run(BufReader::new(input.as_bytes()), &mut out, ctx, connection);
        let text = String::from_utf8(out).unwrap();
        for line in text.split_inclusive('\n') {
            assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
            assert!(line.len() <= 512);
        }
        (text, ending)
    }

    /// The replies after the greeting, as lines without CRLF.
    fn replies(ctx: &Context, input: &str) -> Vec<String> {
        replies_on(Security::Loopback, ctx, input)
    }

    fn replies_on(security: Security, ctx: &Context, input: &str) -> Vec<String> {
        let (text, _) = transcript_on(security, ctx, input);
        text.split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn greeting_carries_a_fresh_apop_timestamp() {
        let s = setup(MBOX);
        let (a, _) = transcript(&s.ctx, "");
        let (b, _) = transcript(&s.ctx, "");
        assert!(a.starts_with("+OK pop3d ready <") && a.ends_with("@test.example>\r\n"));
        assert_ne!(a, b);
    }

    #[test]
    fn user_pass_stat_list_quit() {
        let s = setup(MBOX);
        let r = replies(
            &s.ctx,
            "USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nQUIT\r\n",
        );
        // Sizes are octets with CRLF: "Subject: one\r\n\r\nfirst body\r\n.dotted\r\n" = 37
        // (the stuffed dot is not counted), "Subject: two\r\n\r\n" + 3 * "line n\r\n" = 40.
        assert_eq!(
            r,
            [
                "+OK send PASS",
                "+OK alice has 2 messages (77 octets)",
                "+OK 2 77",
                "+OK 2 messages (77 octets)",
                "1 37",
                "2 40",
                ".",
                "+OK 2 40",
                "+OK pop3d signing off (0 messages deleted)",
            ]
        );
    }

    #[test]
    fn retr_stuffs_dots_and_sends_crlf() {
        let s = setup(MBOX);
        let (t, _) = transcript(&s.ctx, "USER alice\nPASS secret\nRETR 1\nQUIT\n");
        assert!(
            t.contains("+OK 37 octets\r\nSubject: one\r\n\r\nfirst body\r\n..dotted\r\n.\r\n+OK")
        );
    }

    #[test]
    fn top_zero_sends_headers_only() {
        let s = setup(MBOX);
        let (t, _) = transcript(&s.ctx, "USER alice\nPASS secret\nTOP 2 0\nTOP 2 2\nQUIT\n");
        assert!(t.contains("Subject: two\r\n\r\n.\r\n"), "{t}");
        assert!(
            t.contains("Subject: two\r\n\r\nline 1\r\nline 2\r\n.\r\n"),
            "{t}"
        );
    }

    #[test]
    fn deleted_messages_keep_their_number_and_answer_err() {
        let s = setup(MBOX);
        let r = replies(
            &s.ctx,
            "USER alice\nPASS secret\nDELE 1\nDELE 1\nRETR 1\nLIST 1\nTOP 1 0\nUIDL 1\nSTAT\nLIST\nRSET\nSTAT\nQUIT\n",
        );
        assert_eq!(r[2], "+OK message 1 deleted");
        for reply in &r[3..8] {
            assert!(reply.starts_with("-ERR"), "{reply}");
        }
        assert_eq!(r[8], "+OK 1 40");
        assert_eq!(&r[9..12], ["+OK 1 messages (40 octets)", "2 40", "."]);
        assert_eq!(r[12], "+OK maildrop has 2 messages (77 octets)");
        assert_eq!(r[13], "+OK 2 77");
    }

    #[test]
    fn quit_in_transaction_removes_deleted_messages() {
        let s = setup(MBOX);
        let (_, ending) = transcript(&s.ctx, "USER alice\nPASS secret\nDELE 1\nQUIT\n");
        assert_eq!(
            ending,
            Ending::Quit {
                user: Some("alice".into()),
                deleted: 1
            }
        );
        let left = String::from_utf8(s.store.lock().unwrap().clone()).unwrap();
        assert!(left.starts_with("From b@x") && !left.contains("Subject: one"));
    }

    #[test]
    fn dropped_connection_deletes_nothing() {
        let s = setup(MBOX);
        let (_, ending) = transcript(&s.ctx, "USER alice\nPASS secret\nDELE 1\n");
        assert_eq!(
            ending,
            Ending::Dropped {
                user: Some("alice".into())
            }
        );
        assert_eq!(*s.store.lock().unwrap(), MBOX.as_bytes());
    }

    #[test]
    fn wrong_password_and_unknown_user_answer_alike() {
        let s = setup(MBOX);
        let a = replies(&s.ctx, "USER alice\nPASS wrong\nQUIT\n");
        let b = replies(&s.ctx, "USER nobody\nPASS wrong\nQUIT\n");
        assert_eq!(a, b);
        assert_eq!(a[1], "-ERR [AUTH] invalid user name or password");
    }

    #[test]
    fn three_failures_close_the_session() {
        let s = setup(MBOX);
        let (_, ending) = transcript(
            &s.ctx,
            "USER a\nPASS x\nUSER a\nPASS x\nUSER a\nPASS x\nUSER alice\nPASS secret\n",
        );
        assert_eq!(ending, Ending::TooManyAuthFailures);
    }

    #[test]
    fn pass_keeps_spaces() {
        let s = setup(MBOX);
        let r = replies(&s.ctx, "USER bob\nPASS hunter 2\nQUIT\n");
        assert!(r[1].starts_with("+OK bob has 2 messages"), "{r:?}");
    }

    #[test]
    fn pass_without_user_is_refused() {
        let s = setup(MBOX);
        let r = replies(&s.ctx, "PASS secret\nSTAT\nQUIT\n");
        assert!(
            r[0].starts_with("-ERR") && r[1].starts_with("-ERR"),
            "{r:?}"
        );
    }

    #[test]
    fn apop_with_a_wrong_digest_is_refused() {
        let s = setup(MBOX);
        // A digest made for another timestamp is refused; tests/pop3.rs logs in with a real
        // one over TCP, where the greeting can be read first.
        let (t, _) = transcript(&s.ctx, "APOP alice 00000000000000000000000000000000\n");
        assert!(t.contains("-ERR [AUTH]"), "{t}");
    }

    #[test]
    fn commands_in_the_wrong_state_are_refused() {
        let s = setup(MBOX);
        let r = replies(
            &s.ctx,
            "STAT\nLIST\nRETR 1\nDELE 1\nRSET\nNOOP\nUIDL\nTOP 1 1\nUSER alice\nPASS secret\nUSER alice\nPASS secret\nAPOP alice x\nAUTH PLAIN\nQUIT\n",
        );
        for reply in &r[..8] {
            assert!(reply.starts_with("-ERR"), "{reply}");
        }
        assert!(r[9].starts_with("+OK alice"));
        for reply in &r[10..14] {
            assert!(reply.starts_with("-ERR"), "{reply}");
        }
    }

    #[test]
    fn uidl_is_stable_and_listed() {
        let s = setup(MBOX);
        let a = replies(&s.ctx, "USER alice\nPASS secret\nUIDL\nQUIT\n");
        let b = replies(&s.ctx, "USER alice\nPASS secret\nUIDL\nQUIT\n");
        assert_eq!(a, b);
        let uid1 = a[3].split(' ').nth(1).unwrap();
        let uid2 = a[4].split(' ').nth(1).unwrap();
        assert_ne!(uid1, uid2);
        for uid in [uid1, uid2] {
            assert!((1..=70).contains(&uid.len()));
            assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
    }

    #[test]
    fn capa_differs_before_and_after_login() {
        let s = setup(MBOX);
        let r = replies(&s.ctx, "CAPA\nUSER alice\nPASS secret\nCAPA\nQUIT\n");
        let end = r.iter().position(|l| l == ".").unwrap();
        let before = &r[1..end];
        for cap in [
            "TOP",
            "UIDL",
            "USER",
            "RESP-CODES",
            "PIPELINING",
            "SASL PLAIN CRAM-MD5",
        ] {
            assert!(before.iter().any(|l| l == cap), "{cap} missing: {before:?}");
        }
        assert!(before.iter().any(|l| l.starts_with("IMPLEMENTATION pop3d")));
        let after = &r[end + 4..r.len() - 2];
        assert!(!after.iter().any(|l| l == "USER"), "{after:?}");
        assert!(after.iter().any(|l| l == "TOP"));
    }

    /// The capability lines of one CAPA reply starting at `r[at]`, and where it ends.
    fn capabilities(r: &[String], at: usize) -> (Vec<String>, usize) {
        assert_eq!(r[at], "+OK capability list follows", "{r:?}");
        let end = at + r[at..].iter().position(|l| l == ".").unwrap();
        (r[at + 1..end].to_vec(), end)
    }

    #[test]
    fn capa_offers_clear_text_logins_only_where_they_are_taken() {
        use Security::*;
        // (security, policy, USER and PLAIN offered before login)
        let table = [
            (Loopback, PlaintextAuth::Secure, true),
            (SecureListener, PlaintextAuth::Secure, true),
            (ProxyTls, PlaintextAuth::Secure, true),
            (LocalStream, PlaintextAuth::Secure, true),
            (Open, PlaintextAuth::Secure, false),
            (Open, PlaintextAuth::Always, true),
            (Loopback, PlaintextAuth::Always, true),
        ];
        for (security, policy, offered) in table {
            let mut s = setup(MBOX);
            s.ctx.plaintext_auth = policy;
            let login = if offered {
                "USER alice\nPASS secret\n"
            } else {
                ""
            };
            let r = replies_on(
                security,
                &s.ctx,
                &format!("CAPA\nAUTH\n{login}CAPA\nQUIT\n"),
            );
            let (before, end) = capabilities(&r, 0);
            let case = format!("{security:?} {policy:?}");
            assert_eq!(
                before.iter().any(|l| l == "USER"),
                offered,
                "{case}: {before:?}"
            );
            let sasl = if offered {
                "SASL PLAIN CRAM-MD5"
            } else {
                "SASL CRAM-MD5"
            };
            assert!(before.iter().any(|l| l == sasl), "{case}: {before:?}");
            // AUTH without a mechanism lists the same mechanisms (RFC 5034 section 4).
            assert_eq!(r[end + 1], "+OK supported mechanisms follow", "{case}");
            assert_eq!(r[end + 2] == "PLAIN", offered, "{case}: {r:?}");
            if offered {
                // In TRANSACTION neither USER nor SASL is listed, whatever the connection.
                let at = r
                    .iter()
                    .rposition(|l| l.starts_with("+OK capability"))
                    .unwrap();
                let (after, _) = capabilities(&r, at);
                assert!(
                    !after.iter().any(|l| l == "USER" || l.starts_with("SASL")),
                    "{case}"
                );
                assert!(after.iter().any(|l| l == "TOP"), "{case}");
            }
        }
    }

    #[test]
    fn clear_text_logins_are_refused_on_an_insecure_connection() {
        let s = setup(MBOX);
        let creds = auth::base64_encode(b"\0alice\0secret");
        let r = replies_on(
            Security::Open,
            &s.ctx,
            &format!("USER alice\nPASS secret\nAUTH PLAIN {creds}\nAUTH PLAIN\nSTAT\nQUIT\n"),
        );
        let refused = format!("-ERR [AUTH] {PLAINTEXT_REFUSED}");
        // AUTH PLAIN without an initial response gets no "+ " challenge to send one in.
        assert_eq!(r[..4], [&*refused; 4], "{r:?}");
        assert!(
            r[4].starts_with("-ERR"),
            "STAT must not be logged in: {r:?}"
        );
        assert!(PLAINTEXT_REFUSED.contains("TLS"));
    }

    #[test]
    fn refused_clear_text_logins_are_not_login_failures() {
        // Three failed logins close the connection; refusals before any check must not.
        let s = setup(MBOX);
        let (t, ending) = transcript_on(
            Security::Open,
            &s.ctx,
            "USER a\nUSER b\nUSER c\nUSER d\nNOOP\n",
        );
        assert_eq!(t.matches("-ERR [AUTH] plaintext").count(), 4, "{t}");
        assert!(matches!(ending, Ending::Dropped { .. }), "{ending:?}");
    }

    #[test]
    fn apop_and_cram_md5_are_checked_on_an_insecure_connection() {
        let s = setup(MBOX);
        let r = replies_on(
            Security::Open,
            &s.ctx,
            "APOP alice 00000000000000000000000000000000\nAUTH CRAM-MD5\n*\nQUIT\n",
        );
        // APOP reaches the digest check (a wrong digest, not a refusal); CRAM-MD5 challenges.
        assert_eq!(r[0], "-ERR [AUTH] invalid user name or password", "{r:?}");
        assert!(r[1].starts_with("+ "), "{r:?}");
    }

    #[test]
    fn plaintext_always_takes_passwords_on_an_insecure_connection() {
        let mut s = setup(MBOX);
        s.ctx.plaintext_auth = PlaintextAuth::Always;
        let r = replies_on(Security::Open, &s.ctx, "USER alice\nPASS secret\nQUIT\n");
        assert!(r[1].starts_with("+OK alice"), "{r:?}");
    }

    #[test]
    fn auth_plain_with_and_without_initial_response() {
        let s = setup(MBOX);
        let creds = auth::base64_encode(b"\0alice\0secret");
        let r = replies(&s.ctx, &format!("AUTH PLAIN {creds}\nQUIT\n"));
        assert!(r[0].starts_with("+OK alice has"), "{r:?}");
        let r = replies(&s.ctx, &format!("AUTH PLAIN\n{creds}\nQUIT\n"));
        assert_eq!(r[0], "+ ");
        assert!(r[1].starts_with("+OK alice has"), "{r:?}");
    }

    #[test]
    fn auth_cancel_and_bad_base64_keep_the_session() {
        let s = setup(MBOX);
        let r = replies(&s.ctx, "AUTH PLAIN\n*\nAUTH PLAIN !!!\nAUTH\nQUIT\n");
        assert_eq!(r[0], "+ ");
        assert!(r[1].starts_with("-ERR"));
        assert!(r[2].starts_with("-ERR"));
        assert_eq!(
            &r[3..7],
            ["+OK supported mechanisms follow", "PLAIN", "CRAM-MD5", "."]
        );
        assert!(r[7].starts_with("+OK"));
    }

    #[test]
    fn cram_md5_challenge_is_a_base64_timestamp_and_star_cancels() {
        // The full round trip needs the challenge first: tests/extensions.rs does it over TCP.
        let s = setup(MBOX);
        let r = replies(&s.ctx, "AUTH CRAM-MD5\n*\nQUIT\n");
        let challenge = r[0].strip_prefix("+ ").unwrap();
        let decoded = auth::base64_decode(challenge).unwrap();
        let text = String::from_utf8(decoded).unwrap();
        assert!(
            text.starts_with('<') && text.ends_with("@test.example>"),
            "{text}"
        );
        assert!(r[1].starts_with("-ERR"));
    }

    #[test]
    fn maildrop_in_use_answers_in_use() {
        let mut s = setup(MBOX);
        s.ctx.maildrops = Arc::new(MemoryMaildrops {
            store: Arc::clone(&s.store),
            in_use: true,
            previous: None,
        });
        let r = replies(&s.ctx, "USER alice\nPASS secret\nSTAT\nQUIT\n");
        assert!(r[1].starts_with("-ERR [IN-USE]"), "{r:?}");
        assert!(r[2].starts_with("-ERR"));
    }

    #[test]
    fn login_delay_refuses_an_early_login() {
        let mut s = setup(MBOX);
        s.ctx.login_delay = Duration::from_secs(60);
        s.ctx.maildrops = Arc::new(MemoryMaildrops {
            store: Arc::clone(&s.store),
            in_use: false,
            previous: Some(SystemTime::now()),
        });
        let r = replies(&s.ctx, "CAPA\nUSER alice\nPASS secret\nQUIT\n");
        assert!(r.iter().any(|l| l == "LOGIN-DELAY 60"));
        assert!(
            r.iter().any(|l| l.starts_with("-ERR [LOGIN-DELAY]")),
            "{r:?}"
        );
    }

    #[test]
    fn too_many_bad_commands_end_the_session() {
        let s = setup(MBOX);
        let input = "BOGUS\n".repeat(MAX_BAD_COMMANDS as usize + 5);
        let (t, ending) = transcript(&s.ctx, &input);
        assert_eq!(ending, Ending::TooManyBadCommands);
        assert_eq!(t.matches("-ERR").count(), MAX_BAD_COMMANDS as usize);
    }

    #[test]
    fn pipelined_commands_are_answered_in_order() {
        let s = setup(MBOX);
        let r = replies(
            &s.ctx,
            "USER alice\r\nPASS secret\r\nNOOP\r\nSTAT\r\nLIST 1\r\nQUIT\r\n",
        );
        assert_eq!(r[2], "+OK");
        assert_eq!(r[3], "+OK 2 77");
        assert_eq!(r[4], "+OK 1 37");
    }

    /// Counts the writes that reach the connection.
    struct CountingWriter {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn pipelined_replies_leave_in_one_write() {
        let s = setup(MBOX);
        let mut out = CountingWriter {
            bytes: Vec::new(),
            writes: 0,
        };
        let input = "USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n";
        let connection = Connection {
            peer: "test",
            security: Security::Loopback,
        };
        run(
            BufReader::new(input.as_bytes()),
            &mut out,
            &s.ctx,
            connection,
        );
        // The greeting goes out before the first read; every reply to the commands that
        // arrived together leaves in one write at the end.
        assert_eq!(out.writes, 2, "{}", String::from_utf8_lossy(&out.bytes));
        assert!(String::from_utf8_lossy(&out.bytes).ends_with("(0 messages deleted)\r\n"));
    }

    #[test]
    fn long_line_is_one_error() {
        let s = setup(MBOX);
        let input = format!("{}\r\nNOOP\r\nQUIT\r\n", "X".repeat(10_000));
        let r = replies(&s.ctx, &input);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].starts_with("-ERR line too long"));
    }

    /// A tiny deterministic PRNG (xorshift64*), so a failure can be replayed from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn random_line(rng: &mut Rng) -> Vec<u8> {
        const WORDS: [&str; 22] = [
            "USER",
            "PASS",
            "APOP",
            "AUTH",
            "STAT",
            "LIST",
            "RETR",
            "DELE",
            "RSET",
            "TOP",
            "UIDL",
            "CAPA",
            "NOOP",
            "QUIT",
            "user",
            "Retr",
            "XTND",
            "PROXY",
            "",
            "AUTH PLAIN",
            "AUTH CRAM-MD5",
            "*",
        ];
        const ARGS: [&str; 16] = [
            "1",
            "2",
            "3",
            "0",
            "4294967295",
            "4294967296",
            "-1",
            "alice",
            "secret",
            "bob",
            "AGFsaWNlAHNlY3JldA==",
            "=",
            "!!",
            "99999999999999999999",
            "",
            "1 0",
        ];
        let mut line = rng.pick(&WORDS).as_bytes().to_vec();
        for _ in 0..rng.below(3) {
            line.push(b' ');
            line.extend_from_slice(rng.pick(&ARGS).as_bytes());
        }
        // Mutations: byte flips, NUL and control bytes, invalid UTF-8, long runs.
        for _ in 0..rng.below(4) {
            match rng.below(6) {
                0 if !line.is_empty() => {
                    let at = rng.below(line.len());
                    line[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(line.len() + 1);
                    line.insert(at, 0);
                }
                2 => line.extend_from_slice(&[0xff, 0xfe, 0xc3]),
                3 => line.extend(std::iter::repeat_n(b'A', rng.below(600))),
                4 => line.push(rng.below(32) as u8),
                _ => line.push(b' '),
            }
        }
        line.retain(|&b| b != b'\n');
        line
    }

    /// Feeds one line per read and checks, before each new line, the replies to the previous
    /// one: a status line or a SASL challenge, or a status line, body lines and ".".
    struct Stepper {
        lines: std::collections::VecDeque<Vec<u8>>,
        output: Arc<Mutex<Vec<u8>>>,
        consumed: usize,
    }

    fn check_response(bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        assert!(bytes.ends_with(b"\r\n"), "unterminated: {bytes:?}");
        let lines: Vec<&[u8]> = bytes[..bytes.len() - 2].split(|&b| b == b'\n').collect();
        for l in &lines {
            assert!(l.len() < 511, "line over 512 octets");
        }
        let lines: Vec<Vec<u8>> = bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|l| {
                assert!(l.ends_with(b"\r\n"), "line without CRLF: {l:?}");
                l[..l.len() - 2].to_vec()
            })
            .collect();
        // Several replies may be present (a status after a body, or a cancelled SASL step).
        let mut i = 0;
        while i < lines.len() {
            let first = &lines[i];
            let is_status =
                first.starts_with(b"+OK") || first.starts_with(b"-ERR") || first.starts_with(b"+ ");
            assert!(
                is_status,
                "not a status line: {:?}",
                String::from_utf8_lossy(first)
            );
            i += 1;
            if first.starts_with(b"+OK") {
                // A body follows a +OK if the next line is not itself a status line.
                let mut j = i;
                while j < lines.len()
                    && !(lines[j].starts_with(b"+OK") || lines[j].starts_with(b"-ERR"))
                    && lines[j] != b"."
                {
                    j += 1;
                }
                if j < lines.len() && lines[j] == b"." {
                    i = j + 1;
                } else {
                    assert_eq!(j, i, "body without terminator: {lines:?}");
                }
            }
        }
    }

    impl Read for Stepper {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let produced = std::mem::take(&mut *self.output.lock().unwrap());
            check_response(&produced);
            let Some(mut line) = self.lines.pop_front() else {
                return Ok(0);
            };
            self.consumed += 1;
            line.extend_from_slice(b"\r\n");
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line[..n]);
            if n < line.len() {
                self.lines.push_front(line[n..line.len() - 2].to_vec());
                self.consumed -= 1;
            }
            Ok(n)
        }
    }

    impl Autologout for Stepper {}

    struct SharedOut(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedOut {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn random_command_lines_get_well_formed_replies() {
        let s = setup(MBOX);
        let seed = 0x5eed_1939_2449_5034;
        let mut rng = Rng(seed);
        let mut total = 0usize;
        let mut sessions = 0usize;
        while total < 100_000 {
            let mut lines = std::collections::VecDeque::new();
            if rng.below(3) > 0 {
                lines.push_back(b"USER alice".to_vec());
                lines.push_back(b"PASS secret".to_vec());
            }
            for _ in 0..60 {
                lines.push_back(random_line(&mut rng));
            }
            let output = Arc::new(Mutex::new(Vec::new()));
            let mut stepper = Stepper {
                lines,
                output: Arc::clone(&output),
                consumed: 0,
            };
            let ending = run(
                BufReader::new(&mut stepper),
                SharedOut(Arc::clone(&output)),
                &s.ctx,
                Connection {
                    peer: "fuzz",
                    security: Security::Loopback,
                },
            );
            check_response(&output.lock().unwrap());
            let _ = ending;
            total += stepper.consumed;
            sessions += 1;
            // Keep the shared maildrop the same for every session.
            *s.store.lock().unwrap() = MBOX.as_bytes().to_vec();
        }
        assert!(sessions > 100, "seed {seed:#x}: {sessions} sessions");
    }
}
