//! Standalone `--system-users`: each session in a process of its own. A session thread that
//! switched to its user could be signalled (kill, stop) and prlimited by that user, and Linux
//! applies both to the whole process: any user with a shell and a POP3 session could stop or
//! kill the daemon and every other session. So the connection's thread (still one per
//! connection, in the daemon, as root) starts `/proc/self/exe --session-process ...`, which
//! serves the session and switches to the mailbox owner for good, as under --inetd (popa3d
//! and Dovecot also give each session its own process).
//!
//! The daemon keeps what spans sessions: the session caps (the thread holds the session's
//! place until the process says it is done or ends) and the per-address penalty table, which
//! the process asks over a socket pair on its stdin; its stdout is the client's socket. This
//! module owns both ends and the few lines they exchange, one request per line:
//! `turn` (answered `wait MILLIS` or `refused`), `failed HEXUSER`, `succeeded HEXUSER` and
//! `release`. The daemon applies them to the client address it handed over, never to one the
//! process names, so a session process can only ever touch its own client's count.

use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::penalty::{PenaltyBook, Turn};
use crate::security::Security;

/// The first argument of a session process: what follows is the hand-over, then the
/// daemon's own arguments. Not in --help: only the daemon starts it.
pub const FLAG: &str = "--session-process";

/// The binary the daemon runs: its own, even if the file was replaced since (an upgrade),
/// so a session never runs code of another version than the daemon that counts for it.
const SELF_EXE: &str = "/proc/self/exe";

/// The longest request line: "succeeded " and a 40-octet name in hex, with room to spare.
const MAX_LINE: usize = 128;

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
    /// The arguments after FLAG: which one is wrong.
    Handoff(&'static str),
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
            WireError::Handoff(what) => write!(f, "{FLAG}: bad or missing {what}"),
        }
    }
}

impl Error for WireError {}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
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
    /// The autologout: a session process stopped for longer is ended.
    timeout: Duration,
}

impl Spawner {
    pub fn new(args: Vec<String>, dummy: String, timeout: Duration) -> Spawner {
        Spawner {
            args,
            dummy,
            timeout,
        }
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
        let socket = stream.as_fd().try_clone_to_owned()?;
        let mut command = Command::new(SELF_EXE);
        command
            .arg(FLAG)
            .arg(client.to_string())
            .arg(security.token())
            .arg(&self.dummy)
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
        let mut stopped_since = None;
        let mut watch = || {
            if !is_stopped(pid) {
                stopped_since = None;
                return;
            }
            let since = *stopped_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.timeout {
                log::warn!(
                    "{client}: session process {pid} stopped for over {} s: ended",
                    self.timeout.as_secs()
                );
                if let Err(e) = child.kill() {
                    log::warn!("{client}: cannot end session process {pid}: {e}");
                }
            }
        };
        let mut release_once = || {
            if let Some(release) = release.take() {
                release();
            }
        };
        answer(&ours, client, pid, penalties, &mut release_once, &mut watch);
        // Requests after a bad line are not answered: the process's turns are refused.
        drop(ours);
        match child.wait() {
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

/// How often the daemon looks whether a quiet session process is stopped.
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

/// Answers the requests of session process `pid` until its end of `channel` closes or it
/// sends a line that is no request; `watch` runs whenever the channel has been quiet for a
/// read timeout.
fn answer(
    channel: &UnixStream,
    client: SocketAddr,
    pid: u32,
    penalties: &dyn PenaltyBook,
    release: &mut dyn FnMut(),
    watch: &mut dyn FnMut(),
) {
    let address = client.ip();
    let mut reader = BufReader::new(channel);
    let mut writer = channel;
    let mut line = Vec::new();
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
                watch();
                continue;
            }
            Err(e) => {
                log::warn!("{client}: session process {pid}: {e}");
                return;
            }
        }
        let request = match Request::decode(&line) {
            Ok(request) => request,
            Err(e) => {
                log::warn!("{client}: session process {pid}: {e}; no more answers");
                return;
            }
        };
        line.clear();
        match request {
            Request::Turn => {
                let turn = penalties.turn(address, Instant::now());
                if let Err(e) = writer.write_all(encode_turn(turn).as_bytes()) {
                    log::warn!("{client}: session process {pid} takes no answer: {e}");
                    return;
                }
            }
            Request::Failed(user) => penalties.failed(address, &user, Instant::now()),
            Request::Succeeded(user) => penalties.succeeded(address, &user),
            Request::Release => release(),
        }
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

/// A session process's arguments: the hand-over, and the daemon's arguments after it. None
/// if `args` are not a session process's.
pub fn handoff(args: &[String]) -> Option<Result<(Handoff, &[String]), WireError>> {
    let (first, rest) = args.split_first()?;
    if first != FLAG {
        return None;
    }
    Some(read_handoff(rest))
}

fn read_handoff(args: &[String]) -> Result<(Handoff, &[String]), WireError> {
    let [client, security, dummy, rest @ ..] = args else {
        return Err(WireError::Handoff("arguments"));
    };
    let handoff = Handoff {
        client: client
            .parse()
            .map_err(|_| WireError::Handoff("client address"))?,
        security: Security::from_token(security).ok_or(WireError::Handoff("security"))?,
        dummy: dummy.clone(),
    };
    Ok((handoff, rest))
}

/// The client's socket: the process's stdout.
pub fn client_socket() -> io::Result<TcpStream> {
    Ok(TcpStream::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// The session process's channel to the daemon (its stdin), through which it takes turns
/// and reports checks. Any failure to ask refuses the turn: without the daemon's table, no
/// password is checked.
#[derive(Debug)]
pub struct Daemon {
    channel: Mutex<BufReader<UnixStream>>,
}

impl Daemon {
    /// The channel on stdin.
    pub fn from_stdin() -> io::Result<Daemon> {
        let channel = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
        Daemon::new(channel)
    }

    pub fn new(channel: UnixStream) -> io::Result<Daemon> {
        channel.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        channel.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Daemon {
            channel: Mutex::new(BufReader::new(channel)),
        })
    }

    /// A poisoned lock only means the session panicked mid-request; the channel stays.
    fn channel(&self) -> MutexGuard<'_, BufReader<UnixStream>> {
        self.channel.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tell(&self, request: &Request) {
        let mut channel = self.channel();
        if let Err(e) = channel.get_mut().write_all(request.encode().as_bytes()) {
            log::warn!("cannot tell the daemon ({request:?}): {e}");
        }
    }

    fn ask_turn(&self) -> Result<Turn, Box<dyn Error>> {
        let mut channel = self.channel();
        channel
            .get_mut()
            .write_all(Request::Turn.encode().as_bytes())?;
        let mut line = String::new();
        (&mut *channel).take(MAX_LINE as u64).read_line(&mut line)?;
        Ok(decode_turn(&line)?)
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
        for request in [
            Request::Turn,
            Request::Release,
            Request::Failed("alice".into()),
            Request::Succeeded("a b\r\nc".into()),
            Request::Failed(String::new()),
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
    fn a_handoff_is_read_only_behind_its_flag() {
        assert_eq!(handoff(&args(&["--system-users"])), None);
        assert_eq!(handoff(&[]), None);
        let all = args(&[FLAG, "192.0.2.7:4000", "open", "$y$dummy", "--system-users"]);
        let (h, rest) = handoff(&all).unwrap().unwrap();
        assert_eq!(h.client, "192.0.2.7:4000".parse().unwrap());
        assert_eq!(h.security, Security::Open);
        assert_eq!(h.dummy, "$y$dummy");
        assert_eq!(rest, &args(&["--system-users"])[..]);
        for bad in [
            args(&[FLAG, "192.0.2.7:4000", "open"]),
            args(&[FLAG, "192.0.2.7", "open", "x"]),
            args(&[FLAG, "192.0.2.7:4000", "secure", "x"]),
        ] {
            assert!(matches!(handoff(&bad), Some(Err(_))), "{bad:?}");
        }
    }

    /// The daemon's loop against a session process's `Daemon`, over a real socket pair: the
    /// counts land on the handed-over client's address, whatever address the session names.
    #[test]
    fn the_daemon_counts_a_session_process_against_its_own_client() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let table = Penalties::new(Duration::from_secs(15));
        let client: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
        let mut released = 0;
        std::thread::scope(|scope| {
            let session = scope.spawn(move || {
                let daemon = Daemon::new(theirs).unwrap();
                let first = daemon.turn(elsewhere, Instant::now());
                daemon.failed(elsewhere, "bob", Instant::now());
                let second = daemon.turn(elsewhere, Instant::now());
                daemon.release();
                (first, second)
            });
            answer(&ours, client, 1, &table, &mut || released += 1, &mut || {});
            let (first, second) = session.join().unwrap();
            assert_eq!(first, Turn::Wait(Duration::ZERO));
            assert!(matches!(second, Turn::Wait(w) if w > Duration::from_secs(1)));
        });
        assert_eq!(released, 1);
        assert_eq!(table.failures(client.ip()), 1);
        assert_eq!(table.failures(elsewhere), 0);
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
        let mut watched = 0;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut writer = &theirs;
                writer.write_all(b"fai").unwrap();
                std::thread::sleep(Duration::from_millis(150));
                writer.write_all(b"led 626f62\n").unwrap();
                std::thread::sleep(Duration::from_millis(150));
            });
            answer(&ours, client, 1, &table, &mut || {}, &mut || watched += 1);
        });
        assert!(watched >= 4, "watched {watched} times");
        assert_eq!(table.failures(client.ip()), 1);
    }

    #[test]
    fn a_running_process_is_not_stopped() {
        assert!(!is_stopped(std::process::id()));
        assert!(!is_stopped(u32::MAX));
    }

    #[test]
    fn a_daemon_that_does_not_answer_refuses_the_turn() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(ours);
        let daemon = Daemon::new(theirs).unwrap();
        assert_eq!(
            daemon.turn("192.0.2.7".parse().unwrap(), Instant::now()),
            Turn::Refused
        );
    }

    #[test]
    fn a_bad_line_ends_the_answers() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let table = Penalties::default();
        let mut writer = &theirs;
        writer.write_all(b"nonsense\nturn\n").unwrap();
        let client = "192.0.2.7:1".parse().unwrap();
        answer(&ours, client, 1, &table, &mut || {}, &mut || {});
        // Nothing was answered to the turn after the bad line.
        theirs.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!((&theirs).read(&mut buf).is_err());
    }
}
