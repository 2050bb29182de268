//! Standalone `--system-users`: each session in a process of its own. A session thread that
//! switched to its user could be signalled (kill, stop) and prlimited by that user, and Linux
//! applies both to the whole process: any user with a shell and a POP3 session could stop or
//! kill the daemon and every other session. So the connection's thread (still one per
//! connection, in the daemon, as root) starts `/proc/self/exe --session-process ARGS`, which
//! serves the session and switches to the mailbox owner for good, as under --inetd (popa3d
//! and Dovecot also give each session its own process).
//!
//! The daemon keeps what spans sessions: the session caps (the thread holds the session's
//! place until the process says it is done or ends) and the per-address penalty table, which
//! the process asks over a socket pair on its stdin; its stdout is the client's socket. This
//! module owns both ends and the lines they exchange. First the daemon hands over
//! `handoff CLIENT SECURITY DUMMYHASH` (on the channel, not the command line, which every
//! local user can read). Then the process asks, one request per line: `turn` (answered
//! `wait MILLIS` or `refused`), then `failed HEXUSER` or `succeeded HEXUSER` for the check
//! that turn allowed, and `release` at the end. The daemon applies them to the client
//! address it handed over, never to one the process names, takes a result only for a turn it
//! gave, and answers nothing after `release` or a line out of place: a session process can
//! only ever touch its own client's count, one check at a time. It also ends a process that
//! stays stopped, or that lingers after `release`, for longer than the autologout.

use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::penalty::{PenaltyBook, Turn};
use crate::security::Security;

/// The first argument of a session process, before the daemon's own arguments. Not in
/// --help: only the daemon starts it.
pub const FLAG: &str = "--session-process";

/// The process's name in `ps` and `pgrep` (exec through /proc/self/exe would show "exe").
pub const NAME: &str = "pop3d";

/// The binary the daemon runs: its own, even if the file was replaced since (an upgrade),
/// so a session never runs code of another version than the daemon that counts for it.
const SELF_EXE: &str = "/proc/self/exe";

/// The longest line either way: "succeeded " and a 255-octet name (AUTH PLAIN's longest) in
/// hex is 521 octets; a hand-over carries a crypt hash of at most 384 (CRYPT_OUTPUT_SIZE).
const MAX_LINE: usize = 1024;

/// How long a session process waits for the daemon's answer. The daemon answers at once;
/// past this the turn is refused (no password is checked without the penalty's say).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session process asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The client's next turn for a password check.
    Turn,
    /// A failed check of this user name.
    Failed(String),
    /// A successful login of this user name.
    Succeeded(String),
    /// The session is ending: its place under the caps is free.
    Release,
}

/// A line that is no request, or a hand-over that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    TooLong,
    Unknown(String),
    BadName,
    BadAnswer(String),
    /// The hand-over line: which part is wrong.
    Handoff(&'static str),
    /// A result without a turn given for it, or anything after `release`.
    OutOfPlace,
    /// The answer could not be sent.
    Answer(io::ErrorKind),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLong => write!(f, "request longer than {MAX_LINE} octets"),
            WireError::Unknown(line) => write!(f, "unknown request {:?}", line.escape_default()),
            WireError::BadName => f.write_str("user name not in hex"),
            WireError::BadAnswer(line) => {
                write!(f, "unknown answer {:?}", line.escape_default())
            }
            WireError::Handoff(what) => write!(f, "hand-over: bad or missing {what}"),
            WireError::OutOfPlace => f.write_str("request out of place"),
            WireError::Answer(kind) => write!(f, "cannot answer: {kind}"),
        }
    }
}

impl Error for WireError {}

fn hex(text: &str) -> String {
    crate::bytes::hex(text.as_bytes())
}

fn unhex(text: &str) -> Option<String> {
    String::from_utf8(crate::bytes::unhex(text.as_bytes())?).ok()
}

impl Request {
    /// The request's line, its end included. Names go in hex: a name may hold any octet
    /// the session accepted, a space or a line end among them.
    pub fn encode(&self) -> String {
        match self {
            Request::Turn => "turn\n".into(),
            Request::Failed(user) => format!("failed {}\n", hex(user)),
            Request::Succeeded(user) => format!("succeeded {}\n", hex(user)),
            Request::Release => "release\n".into(),
        }
    }

    /// Reads one line (its end included or not).
    pub fn decode(line: &[u8]) -> Result<Request, WireError> {
        if line.len() > MAX_LINE {
            return Err(WireError::TooLong);
        }
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let name = |hexed: &str| unhex(hexed).ok_or(WireError::BadName);
        match text.split_once(' ') {
            None if text == "turn" => Ok(Request::Turn),
            None if text == "release" => Ok(Request::Release),
            Some(("failed", user)) => Ok(Request::Failed(name(user)?)),
            Some(("succeeded", user)) => Ok(Request::Succeeded(name(user)?)),
            _ => Err(WireError::Unknown(text.to_owned())),
        }
    }
}

/// The daemon's answer to `turn`.
pub fn encode_turn(turn: Turn) -> String {
    match turn {
        Turn::Wait(wait) => format!("wait {}\n", wait.as_millis()),
        Turn::Refused => "refused\n".into(),
    }
}

pub fn decode_turn(line: &str) -> Result<Turn, WireError> {
    let text = line.strip_suffix('\n').unwrap_or(line);
    if text == "refused" {
        return Ok(Turn::Refused);
    }
    text.strip_prefix("wait ")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| Turn::Wait(Duration::from_millis(ms)))
        .ok_or_else(|| WireError::BadAnswer(text.to_owned()))
}

// ---------------------------------------------------------------------------------------
// The daemon's end.

/// Starts session processes: the daemon's arguments, and the dummy hash its system users
/// check unknown names against (made once, at the daemon's start, not in every session).
#[derive(Debug, Clone)]
pub struct Spawner {
    args: Vec<String>,
    dummy: String,
    /// The autologout: a session process stopped, or lingering after `release`, for longer
    /// is ended.
    timeout: Duration,
}

impl Spawner {
    /// Err if this system cannot run session processes (no /proc).
    pub fn new(args: Vec<String>, dummy: String, timeout: Duration) -> io::Result<Spawner> {
        std::fs::metadata(SELF_EXE)?;
        Ok(Spawner {
            args,
            dummy,
            timeout,
        })
    }

    /// Runs the session of `stream` in a process of its own and answers its requests until
    /// it ends; `release` frees the session's place under the caps. Err (the client not yet
    /// greeted) if the process cannot be started.
    pub fn serve(
        &self,
        stream: &TcpStream,
        client: SocketAddr,
        security: Security,
        penalties: &dyn PenaltyBook,
        release: impl FnOnce(),
    ) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_read_timeout(Some(WATCH_INTERVAL))?;
        ours.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        let handoff = Handoff {
            client,
            security,
            dummy: self.dummy.clone(),
        };
        // Written before the process starts: the pair's buffer holds it.
        (&ours).write_all(handoff.encode().as_bytes())?;
        let socket = stream.as_fd().try_clone_to_owned()?;
        let mut command = Command::new(SELF_EXE);
        command
            .arg0(NAME)
            .arg(FLAG)
            .args(&self.args)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(socket))
            .stderr(Stdio::inherit());
        let mut child = command.spawn()?;
        // The command holds the process's ends of the pair and the socket: closed here, so
        // the daemon sees the pair's end when the process ends.
        drop(command);
        let pid = child.id();
        log::debug!("{client}: session process {pid} started");
        let mut release = Some(release);
        let mut release_once = || {
            if let Some(release) = release.take() {
                release();
            }
        };
        let mut watchman = Watchman::new(client, pid, self.timeout);
        let ends = Ends {
            client,
            pid,
            penalties,
        };
        ends.answer(&ours, &mut release_once, &mut |released| {
            watchman.look(&mut child, released)
        });
        drop(ours);
        match watchman.reap(&mut child) {
            Ok(status) if !status.success() => {
                log::warn!("{client}: session process {pid} ended: {status}")
            }
            Ok(_) => {}
            Err(e) => log::warn!("{client}: cannot wait for session process {pid}: {e}"),
        }
        release_once();
        Ok(())
    }
}

/// Ends a session process that would otherwise hold its place (and its maildrop's lock) for
/// good: one stopped for longer than the autologout, or one still running that long after
/// its session ended (`release`, or its end of the channel closed).
struct Watchman {
    client: SocketAddr,
    pid: u32,
    timeout: Duration,
    /// How long after its session's end a process may still run.
    linger: Duration,
    stopped_since: Option<Instant>,
    kill_failed: bool,
}

impl Watchman {
    fn new(client: SocketAddr, pid: u32, timeout: Duration) -> Watchman {
        Watchman {
            client,
            pid,
            timeout,
            linger: timeout + WATCH_INTERVAL,
            stopped_since: None,
            kill_failed: false,
        }
    }

    /// One look at `child`, whose session ended at `ended` if it has.
    fn look(&mut self, child: &mut Child, ended: Option<Instant>) {
        let (client, pid) = (self.client, self.pid);
        let why = if is_stopped(pid) {
            let since = *self.stopped_since.get_or_insert_with(Instant::now);
            (since.elapsed() >= self.timeout).then_some("stopped")
        } else {
            self.stopped_since = None;
            ended
                .filter(|at| at.elapsed() >= self.linger)
                .map(|_| "still running after its session ended")
        };
        let Some(why) = why else {
            return;
        };
        match child.kill() {
            Ok(()) => log::warn!(
                "{client}: session process {pid} {why} for over {} s: ended",
                self.timeout.as_secs()
            ),
            // Once: it is tried again at every look.
            Err(e) if !self.kill_failed => {
                self.kill_failed = true;
                log::error!(
                    "{client}: session process {pid} {why}, cannot end it (CAP_KILL?): {e}"
                );
            }
            Err(_) => {}
        }
    }

    /// Waits for `child` to end once its channel is closed, which it normally does at once;
    /// one that closed the channel and runs on is looked at as one whose session ended.
    fn reap(&mut self, child: &mut Child) -> io::Result<std::process::ExitStatus> {
        let ended = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            self.look(child, Some(ended));
            std::thread::sleep(pause);
            pause = (pause * 2).min(WATCH_INTERVAL);
        }
    }
}

/// How often the daemon looks whether a quiet session process is stopped or lingering.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Whether process `pid` is stopped (a SIGSTOP from its user, say): it would hold its place
/// under the caps and its maildrop's lock for good, since its autologout cannot run.
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": the name may hold anything, so the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "T" || state == "t")
}

/// What the daemon answers one session process with.
struct Ends<'a> {
    client: SocketAddr,
    pid: u32,
    penalties: &'a dyn PenaltyBook,
}

impl Ends<'_> {
    /// Answers the process's requests until its end of `channel` closes. `release` runs at
    /// its `release`; `watch` whenever the channel has been quiet for a read timeout, with
    /// the time of the `release` if there was one. After a line out of place the daemon
    /// answers nothing more (the process's turns are then refused), but still reads on, to
    /// watch the process and see its end.
    fn answer(
        &self,
        channel: &UnixStream,
        release: &mut dyn FnMut(),
        watch: &mut dyn FnMut(Option<Instant>),
    ) {
        let (client, pid) = (self.client, self.pid);
        let mut reader = BufReader::new(channel);
        let mut line = Vec::new();
        let mut turn_given = false;
        let mut released = None;
        let mut deaf = false;
        loop {
            // A timeout may come in the middle of a line: what was read of it stays in `line`.
            let room = (MAX_LINE + 1).saturating_sub(line.len()) as u64;
            match (&mut reader).take(room).read_until(b'\n', &mut line) {
                Ok(0) if line.is_empty() => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    watch(released);
                    continue;
                }
                Err(e) => {
                    log::warn!("{client}: session process {pid}: {e}");
                    return;
                }
            }
            let request = Request::decode(&line);
            line.clear();
            if deaf {
                continue;
            }
            let result = request.and_then(|request| {
                self.apply(request, channel, &mut turn_given, &mut released, release)
            });
            if let Err(e) = result {
                log::warn!("{client}: session process {pid}: {e}; no more answers");
                deaf = true;
            }
        }
    }

    /// Carries out one request, if it comes in its place.
    fn apply(
        &self,
        request: Request,
        channel: &UnixStream,
        turn_given: &mut bool,
        released: &mut Option<Instant>,
        release: &mut dyn FnMut(),
    ) -> Result<(), WireError> {
        let address = self.client.ip();
        if released.is_some() {
            return Err(WireError::OutOfPlace);
        }
        match request {
            Request::Turn => {
                let turn = self.penalties.turn(address, Instant::now());
                *turn_given = turn != Turn::Refused;
                let mut writer = channel;
                writer
                    .write_all(encode_turn(turn).as_bytes())
                    .map_err(|e| WireError::Answer(e.kind()))?;
            }
            Request::Failed(user) if *turn_given => {
                *turn_given = false;
                self.penalties.failed(address, &user, Instant::now());
            }
            Request::Succeeded(user) if *turn_given => {
                *turn_given = false;
                self.penalties.succeeded(address, &user);
            }
            Request::Failed(_) | Request::Succeeded(_) => return Err(WireError::OutOfPlace),
            Request::Release => {
                *released = Some(Instant::now());
                release();
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The session process's end.

/// What the daemon hands a session process besides the client's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub client: SocketAddr,
    pub security: Security,
    /// The dummy hash for `SystemUsers::with_dummy`.
    pub dummy: String,
}

impl Handoff {
    /// The hand-over line. A crypt hash holds no blank (crypt(5): `[./0-9A-Za-z$]`, plus
    /// `,` and `=` in some settings).
    pub fn encode(&self) -> String {
        format!(
            "handoff {} {} {}\n",
            self.client,
            self.security.token(),
            self.dummy
        )
    }

    pub fn decode(line: &str) -> Result<Handoff, WireError> {
        let text = line.strip_suffix('\n').unwrap_or(line);
        let mut words = text.split(' ');
        if words.next() != Some("handoff") {
            return Err(WireError::Handoff("line"));
        }
        let mut next = |what| {
            words
                .next()
                .filter(|w| !w.is_empty())
                .ok_or(WireError::Handoff(what))
        };
        let client = next("client address")?
            .parse()
            .map_err(|_| WireError::Handoff("client address"))?;
        let security =
            Security::from_token(next("security")?).ok_or(WireError::Handoff("security"))?;
        let dummy = next("dummy hash")?.to_owned();
        if words.next().is_some() {
            return Err(WireError::Handoff("line end"));
        }
        Ok(Handoff {
            client,
            security,
            dummy,
        })
    }
}

/// The daemon's arguments if `args` are a session process's; None otherwise.
pub fn session_args(args: &[String]) -> Option<&[String]> {
    match args.split_first() {
        Some((first, rest)) if first == FLAG => Some(rest),
        _ => None,
    }
}

/// Names the calling process as `ps` and `pgrep` show it (best effort: cosmetic).
pub fn name_process() {
    let _ = std::fs::write("/proc/self/comm", NAME);
}

/// The client's socket: the process's stdout.
pub fn client_socket() -> io::Result<TcpStream> {
    Ok(TcpStream::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// The session process's channel to the daemon (its stdin), through which it takes turns
/// and reports checks. Any failure to ask refuses the turn, and every later one: without the
/// daemon's table no password is checked, and an answer that came late must not be taken
/// for the next one's.
#[derive(Debug)]
pub struct Daemon {
    channel: Mutex<BufReader<UnixStream>>,
    broken: AtomicBool,
}

impl Daemon {
    /// The channel on stdin.
    pub fn from_stdin() -> io::Result<Daemon> {
        let channel = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
        Daemon::new(channel, ANSWER_TIMEOUT)
    }

    /// The channel `channel`, whose every answer must come within `timeout`.
    pub fn new(channel: UnixStream, timeout: Duration) -> io::Result<Daemon> {
        channel.set_read_timeout(Some(timeout))?;
        channel.set_write_timeout(Some(timeout))?;
        Ok(Daemon {
            channel: Mutex::new(BufReader::new(channel)),
            broken: AtomicBool::new(false),
        })
    }

    /// A poisoned lock only means the session panicked mid-request; the channel stays.
    fn channel(&self) -> MutexGuard<'_, BufReader<UnixStream>> {
        self.channel.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_line(&self) -> Result<String, Box<dyn Error>> {
        let mut line = String::new();
        (&mut *self.channel())
            .take(MAX_LINE as u64)
            .read_line(&mut line)?;
        Ok(line)
    }

    /// The hand-over, the first line the daemon sends.
    pub fn handoff(&self) -> Result<Handoff, Box<dyn Error>> {
        Ok(Handoff::decode(&self.read_line()?)?)
    }

    fn tell(&self, request: &Request) {
        let mut channel = self.channel();
        if let Err(e) = channel.get_mut().write_all(request.encode().as_bytes()) {
            log::warn!("cannot tell the daemon ({request:?}): {e}");
        }
    }

    fn ask_turn(&self) -> Result<Turn, Box<dyn Error>> {
        if self.broken.load(Ordering::Relaxed) {
            return Err("an earlier request went unanswered".into());
        }
        self.channel()
            .get_mut()
            .write_all(Request::Turn.encode().as_bytes())?;
        Ok(decode_turn(&self.read_line()?)?)
    }

    /// The session is ending: the daemon frees its place under the caps.
    pub fn release(&self) {
        self.tell(&Request::Release);
    }
}

/// The daemon applies every request to the client it handed over: `address` is not sent.
impl PenaltyBook for Daemon {
    fn turn(&self, _address: IpAddr, _now: Instant) -> Turn {
        self.ask_turn().unwrap_or_else(|e| {
            self.broken.store(true, Ordering::Relaxed);
            log::warn!("cannot ask the daemon for a turn, login refused: {e}");
            Turn::Refused
        })
    }

    fn failed(&self, _address: IpAddr, user: &str, _now: Instant) {
        self.tell(&Request::Failed(user.to_owned()));
    }

    fn succeeded(&self, _address: IpAddr, user: &str) {
        self.tell(&Request::Succeeded(user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::penalty::Penalties;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_survive_the_wire_whatever_the_name() {
        // AUTH PLAIN takes names of up to 255 octets.
        let longest = "\u{e9}".repeat(127) + "x";
        assert_eq!(longest.len(), 255);
        for request in [
            Request::Turn,
            Request::Release,
            Request::Failed("alice".into()),
            Request::Succeeded("a b\r\nc".into()),
            Request::Failed(String::new()),
            Request::Failed(longest),
        ] {
            let line = request.encode();
            assert!(line.ends_with('\n') && line.len() <= MAX_LINE, "{line:?}");
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert_eq!(Request::decode(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn anything_else_on_the_wire_is_refused() {
        for line in [
            "",
            "\n",
            "turn now\n",
            "failed zz\n",
            "failed 616\n",
            "TURN\n",
        ] {
            assert!(Request::decode(line.as_bytes()).is_err(), "{line:?}");
        }
        let long = format!("failed {}\n", "61".repeat(MAX_LINE));
        assert_eq!(Request::decode(long.as_bytes()), Err(WireError::TooLong));
        assert_eq!(
            decode_turn(&encode_turn(Turn::Wait(Duration::from_millis(1500)))),
            Ok(Turn::Wait(Duration::from_millis(1500)))
        );
        assert_eq!(decode_turn(&encode_turn(Turn::Refused)), Ok(Turn::Refused));
        assert!(decode_turn("wait\n").is_err());
        assert!(decode_turn("").is_err());
    }

    #[test]
    fn a_handoff_survives_the_wire_and_nothing_else_passes_for_one() {
        let handoff = Handoff {
            client: "[2001:db8::7]:4000".parse().unwrap(),
            security: Security::ProxyTls,
            dummy: "$y$j9T$salt$hash".into(),
        };
        let line = handoff.encode();
        assert!(line.len() <= MAX_LINE);
        assert_eq!(Handoff::decode(&line), Ok(handoff));
        for bad in [
            "",
            "handoff\n",
            "handoff 192.0.2.7:4000 open\n",
            "handoff 192.0.2.7 open x\n",
            "handoff 192.0.2.7:4000 secure x\n",
            "handoff 192.0.2.7:4000 open x y\n",
            "turn 192.0.2.7:4000 open x\n",
        ] {
            assert!(Handoff::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(session_args(&args(&["--system-users"])), None);
        assert_eq!(session_args(&[]), None);
        let all = args(&[FLAG, "--system-users"]);
        assert_eq!(session_args(&all), Some(&all[1..]));
    }

    /// Runs the daemon's end over `ours` with `table`, counting releases and watches.
    fn serve_ends(ours: &UnixStream, client: SocketAddr, table: &Penalties) -> (u32, u32) {
        let ends = Ends {
            client,
            pid: 1,
            penalties: table,
        };
        let (mut released, mut watched) = (0, 0);
        ends.answer(ours, &mut || released += 1, &mut |_| watched += 1);
        (released, watched)
    }

    /// The daemon's loop against a session process's `Daemon`, over a real socket pair: the
    /// hand-over arrives, and the counts land on the handed-over client's address, whatever
    /// address the session names.
    #[test]
    fn the_daemon_counts_a_session_process_against_its_own_client() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let table = Penalties::new(Duration::from_secs(15));
        let client: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
        let handoff = Handoff {
            client,
            security: Security::Open,
            dummy: "$6$x$y".into(),
        };
        (&ours).write_all(handoff.encode().as_bytes()).unwrap();
        std::thread::scope(|scope| {
            let session = scope.spawn(move || {
                let daemon = Daemon::new(theirs, ANSWER_TIMEOUT).unwrap();
                let handed = daemon.handoff().unwrap();
                let first = daemon.turn(elsewhere, Instant::now());
                daemon.failed(elsewhere, "bob", Instant::now());
                let second = daemon.turn(elsewhere, Instant::now());
                daemon.release();
                (handed, first, second)
            });
            let (released, _) = serve_ends(&ours, client, &table);
            let (handed, first, second) = session.join().unwrap();
            assert_eq!(handed, handoff);
            assert_eq!(first, Turn::Wait(Duration::ZERO));
            assert!(matches!(second, Turn::Wait(w) if w > Duration::from_secs(1)));
            assert_eq!(released, 1);
        });
        assert_eq!(table.failures(client.ip()), 1);
        assert_eq!(table.failures(elsewhere), 0);
    }

    /// Results count only for a turn the daemon gave, one each, and nothing after `release`;
    /// after a line out of place nothing is answered or counted any more.
    #[test]
    fn requests_out_of_place_are_not_counted() {
        let table = Penalties::new(Duration::from_secs(15));
        let client: SocketAddr = "192.0.2.7:1".parse().unwrap();
        for (script, failures) in [
            ("failed 62\n", 0),
            ("turn\nfailed 62\nfailed 62\nturn\nfailed 62\n", 1),
            ("release\nturn\nfailed 62\n", 0),
            ("bogus\nturn\nfailed 62\n", 0),
        ] {
            let table = Penalties::new(Duration::from_millis(1));
            let (ours, theirs) = UnixStream::pair().unwrap();
            (&theirs).write_all(script.as_bytes()).unwrap();
            theirs.shutdown(std::net::Shutdown::Write).unwrap();
            serve_ends(&ours, client, &table);
            assert_eq!(table.failures(client.ip()), failures, "{script:?}");
        }
        // Each failure needs its own turn: two turns, two failures.
        let (ours, theirs) = UnixStream::pair().unwrap();
        (&theirs)
            .write_all(b"turn\nfailed 62\nturn\nfailed 62\nrelease\n")
            .unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(serve_ends(&ours, client, &table).0, 1);
        assert_eq!(table.failures(client.ip()), 2);
    }

    /// A quiet channel has the daemon look at the process at each read timeout, and a line
    /// cut by a timeout is read whole afterwards.
    #[test]
    fn a_quiet_session_process_is_watched_and_a_cut_line_survives() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let table = Penalties::default();
        let client: SocketAddr = "192.0.2.7:1".parse().unwrap();
        let watched = std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut writer = &theirs;
                writer.write_all(b"turn\nfai").unwrap();
                std::thread::sleep(Duration::from_millis(150));
                writer.write_all(b"led 626f62\n").unwrap();
                std::thread::sleep(Duration::from_millis(150));
            });
            serve_ends(&ours, client, &table).1
        });
        assert!(watched >= 4, "watched {watched} times");
        assert_eq!(table.failures(client.ip()), 1);
    }

    fn watchman(child: &Child, timeout: Duration, linger: Duration) -> Watchman {
        Watchman {
            linger,
            ..Watchman::new("192.0.2.7:1".parse().unwrap(), child.id(), timeout)
        }
    }

    /// A process that closed its channel and runs on is ended once it has lingered.
    #[test]
    fn a_process_that_outlives_its_channel_is_ended() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut w = watchman(&child, Duration::ZERO, Duration::from_millis(50));
        let status = w.reap(&mut child).unwrap();
        assert!(!status.success(), "{status}");
        // One that ends by itself is reaped as it is.
        let mut child = Command::new("true").spawn().unwrap();
        let mut w = watchman(&child, Duration::from_secs(60), Duration::from_secs(60));
        assert!(w.reap(&mut child).unwrap().success());
    }

    #[test]
    fn a_stopped_process_is_ended_after_the_timeout_only() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let stopped = Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        while !is_stopped(child.id()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut patient = watchman(&child, Duration::from_secs(60), Duration::from_secs(60));
        patient.look(&mut child, None);
        assert!(child.try_wait().unwrap().is_none(), "ended before its time");
        let mut w = watchman(&child, Duration::ZERO, Duration::from_secs(60));
        w.look(&mut child, None);
        assert!(!child.wait().unwrap().success());
    }

    #[test]
    fn a_running_process_is_not_stopped() {
        assert!(!is_stopped(std::process::id()));
        assert!(!is_stopped(u32::MAX));
    }

    #[test]
    fn a_daemon_that_does_not_answer_refuses_the_turn_and_every_later_one() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let timeout = Duration::from_millis(200);
        let daemon = Daemon::new(theirs, timeout).unwrap();
        let address = "192.0.2.7".parse().unwrap();
        // The answer comes too late (here: never), then arrives: it is not taken for the
        // next turn's.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut request = [0u8; 5];
                (&ours).read_exact(&mut request).unwrap();
                std::thread::sleep(timeout * 2);
                (&ours).write_all(b"wait 0\n").unwrap();
            });
            assert_eq!(daemon.turn(address, Instant::now()), Turn::Refused);
        });
        assert_eq!(daemon.turn(address, Instant::now()), Turn::Refused);
    }
}
