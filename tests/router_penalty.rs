//! pop3d-router --users slows failed logins per client address (nginx's Client-IP) as pop3d
//! does: after a failure the address's next check waits its turn, a request whose turn lies
//! beyond --login-penalty is refused unchecked, and another address is not held up. The
//! requests are nginx's auth_http ones, sent straight to the router binary.

use crate::support::{self, TempDir};

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

struct Router {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Router {
    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(penalty: &str) -> Router {
    let dir = TempDir::new("router-penalty");
    let users = dir.path().join("users");
    let routes = dir.path().join("routes");
    fs::write(&users, "alice:wonderland\n").unwrap();
    fs::write(&routes, "*:127.0.0.1:1101\n").unwrap();
    let addr = support::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_pop3d-router"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--users")
        .arg(&users)
        .arg("--routes")
        .arg(&routes)
        .args(["--login-penalty", penalty])
        .arg("--log-file")
        .arg(dir.path().join("log"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pop3d-router");
    let router = Router { child, addr, dir };
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "router did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    router
}

/// One auth_http request as nginx sends it; the answer and how long it took.
fn ask(router: SocketAddr, client: &str, user: &str, pass: &str) -> (String, Duration) {
    let asked = Instant::now();
    let mut stream = TcpStream::connect(router).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: plain\r\nAuth-User: {user}\r\n\
         Auth-Pass: {pass}\r\nAuth-Protocol: pop3\r\nAuth-Login-Attempt: 1\r\n\
         Client-IP: {client}\r\nAuth-SSL: on\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    (answer, asked.elapsed())
}

const FAILED: &str = "Auth-Status: [AUTH] invalid user name or password\r\n";
const TURN_REFUSED: &str =
    "Auth-Status: [SYS/TEMP] too many logins from your address, try again later\r\n";

#[test]
fn failed_logins_through_the_router_wait_for_their_address_turn() {
    let router = start("2");
    let (answer, _) = ask(router.addr, "192.0.2.7", "alice", "guess-1");
    assert!(answer.contains(FAILED), "{answer}");
    // Two more guesses at once from the same address: the first turn comes 2 s after the
    // failure; the next one 2 s after that, beyond --login-penalty 2, so it is refused
    // without a check.
    let guesses: Vec<_> = (2..4)
        .map(|n| {
            let addr = router.addr;
            thread::spawn(move || ask(addr, "192.0.2.7", "alice", &format!("guess-{n}")))
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    // Meanwhile another address logs in without waiting for anyone's turn.
    let (answer, took) = ask(router.addr, "198.51.100.1", "alice", "wonderland");
    assert!(answer.contains("Auth-Status: OK\r\n"), "{answer}");
    assert!(
        took < Duration::from_millis(1500),
        "198.51.100.1 waited {took:?}"
    );
    let mut answers: Vec<(String, Duration)> =
        guesses.into_iter().map(|g| g.join().unwrap()).collect();
    answers.sort_by_key(|(answer, _)| answer.contains(TURN_REFUSED));
    let (checked, waited) = &answers[0];
    assert!(checked.contains(FAILED), "{answers:?}");
    assert!(*waited >= Duration::from_millis(1500), "{answers:?}");
    let (refused, _) = &answers[1];
    assert!(refused.contains(TURN_REFUSED), "{answers:?}");
    // nginx lets the client try again later on the same connection.
    assert!(refused.contains("Auth-Wait: 1\r\n"), "{refused}");
    let log = router.log();
    assert!(
        log.contains("192.0.2.7: earlier failed logins from 192.0.2.7: check in"),
        "{log}"
    );
    assert!(!log.contains("from 198.51.100.1: check in"), "{log}");
}

#[test]
fn without_a_penalty_failures_do_not_wait() {
    let router = start("0");
    for n in 0..3 {
        let (answer, took) = ask(router.addr, "192.0.2.7", "alice", &format!("guess-{n}"));
        assert!(answer.contains(FAILED), "{answer}");
        assert!(
            took < Duration::from_millis(1500),
            "guess {n} took {took:?}"
        );
    }
}
