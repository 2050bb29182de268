//! --inetd: the session runs on stdin/stdout, which inetd makes the client's socket (and
//! stderr too, so nothing but protocol may ever be written there).

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{mbox_message, TempDir};

struct Setup {
    dir: TempDir,
}

fn setup() -> Setup {
    let dir = TempDir::new("inetd");
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    std::fs::write(dir.path().join("users"), "alice:secret\n").unwrap();
    let mbox = [
        mbox_message("a@x", "Subject: one\n\nhello\n"),
        mbox_message("b@x", "Subject: two\n\n.dot\n"),
    ]
    .concat();
    std::fs::write(dir.path().join("mail/alice"), mbox).unwrap();
    Setup { dir }
}

/// Starts pop3d --inetd with `fd` as its stdin, stdout and stderr, as inetd does.
fn spawn_on(s: &Setup, fd: OwnedFd, extra: &[&str]) -> Child {
    let out = fd.try_clone().unwrap();
    let err = fd.try_clone().unwrap();
    Command::new(support::binary())
        .arg("--inetd")
        .arg("--users")
        .arg(s.dir.path().join("users"))
        .arg("--maildrop")
        .arg(s.dir.path().join("mail/%u"))
        .args(extra)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::from(fd))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

/// Reads everything the server sends until it closes, with a bound.
fn transcript(mut reader: impl Read, writer: &mut impl Write, input: &str) -> String {
    writer.write_all(input.as_bytes()).unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The log file a test's session writes, and that path as an argument to `--log-file`.
fn log_file(s: &Setup) -> (std::path::PathBuf, String) {
    let log = s.dir.path().join("log");
    let arg = log.to_string_lossy().into_owned();
    (log, arg)
}

/// Runs pop3d --inetd on one end of a Unix socket pair, sends `input` from the other and
/// reads all it answers up to the close; the child is left to be waited for.
fn session_on_unix_socket(s: &Setup, extra: &[&str], input: &str) -> (Child, String) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = spawn_on(s, theirs.into(), extra);
    let mut writer = ours.try_clone().unwrap();
    let text = transcript(&ours, &mut writer, input);
    (child, text)
}

fn assert_only_protocol(text: &str) {
    for line in text.split_inclusive('\n') {
        assert!(line.ends_with("\r\n"), "not a protocol line: {line:?}");
    }
    // Status lines, body lines of the two messages, and terminators: no log text.
    assert!(
        !text.contains("INFO") && !text.contains("DEBUG") && !text.contains("connected"),
        "{text}"
    );
}

#[test]
fn session_over_a_socket_pair_with_stderr_on_the_socket() {
    let s = setup();
    let (mut child, text) = session_on_unix_socket(
        &s,
        &[],
        "USER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n",
    );
    assert!(child.wait().unwrap().success());
    assert_only_protocol(&text);
    assert!(text.starts_with("+OK pop3d ready <"), "{text}");
    assert!(text.contains("+OK 2 "), "{text}");
    assert!(text.contains("\r\n..dot\r\n.\r\n"), "{text}");
    assert!(
        text.ends_with("+OK pop3d signing off (1 messages deleted)\r\n"),
        "{text}"
    );
    let left = std::fs::read_to_string(s.dir.path().join("mail/alice")).unwrap();
    assert!(!left.contains("Subject: one") && left.contains("Subject: two"));
}

#[test]
fn autologout_works_when_stdin_is_a_socket() {
    let s = setup();
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let start = Instant::now();
    let mut child = spawn_on(&s, theirs.into(), &["--timeout", "1"]);
    let mut reader = BufReader::new(&ours);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("+OK"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_only_protocol(&String::from_utf8_lossy(&rest));
}

#[test]
fn peer_address_is_logged_for_a_tcp_client() {
    let s = setup();
    let (log, log_arg) = log_file(&s);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let mut child = spawn_on(&s, accepted.into(), &["--log-file", &log_arg]);
    let mut writer = client.try_clone().unwrap();
    let text = transcript(&client, &mut writer, "USER alice\r\nPASS wrong\r\nQUIT\r\n");
    assert!(child.wait().unwrap().success());
    assert_only_protocol(&text);
    let logged = std::fs::read_to_string(&log).unwrap();
    let me = client.local_addr().unwrap().to_string();
    assert!(logged.contains(&me), "peer {me} not in log: {logged}");
    let failed = format!(
        r#"{me}: auth failed: rhost={} mechanism=PASS user="alice""#,
        client.local_addr().unwrap().ip()
    );
    assert!(logged.contains(&failed), "{logged}");
    assert!(!logged.contains("wrong"), "password in the log: {logged}");
}

#[test]
fn startup_error_under_inetd_answers_err_and_logs() {
    let s = setup();
    let (log, log_arg) = log_file(&s);
    let (mut child, text) =
        session_on_unix_socket(&s, &["--timeout", "never", "--log-file", &log_arg], "");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert_eq!(text, "-ERR [SYS/PERM] server misconfigured\r\n");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("--timeout"), "{logged}");
}

/// A TCP socket whose peer cannot be read (getpeername fails with ENOTCONN: here a socket
/// that never connected) has its other end somewhere on the network, not on this host: the
/// session must count as insecure, never as a local stream.
#[test]
fn a_tcp_socket_without_a_readable_peer_is_insecure() {
    let s = setup();
    let (log, log_arg) = log_file(&s);
    let unconnected = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = spawn_on(&s, unconnected.into(), &["--log-file", &log_arg]);
    // Nothing can be said to a socket without a peer: the session ends at once.
    let status = child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("connected (inetd), insecure"),
        "status {status:?}, log: {logged}"
    );
    assert!(!logged.contains("secure (local stream)"), "{logged}");
}

/// A Unix socket's other end is on this host (an ssh command, a local tool): secure.
#[test]
fn a_unix_socket_is_a_local_stream() {
    let s = setup();
    let (log, log_arg) = log_file(&s);
    let (mut child, text) =
        session_on_unix_socket(&s, &["--log-file", &log_arg], "CAPA\r\nQUIT\r\n");
    assert!(child.wait().unwrap().success());
    assert!(text.contains("\r\nUSER\r\n"), "{text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("connected (inetd), secure (local stream)"),
        "{logged}"
    );
}
