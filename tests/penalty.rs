//! Failed logins slowed per client address, across connections (src/penalty.rs): ten
//! parallel connections from one address guess about one password per turn of the address,
//! not ten, while a client from another address logs in at once. The addresses come in PROXY
//! headers from a trusted proxy (std cannot bind a client socket to 127.0.0.2 before it
//! connects), which is also how pop3d learns them behind nginx or stunnel.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{mbox_message, Server, ServerBuilder};

/// Parallel guessing connections from the one address.
const CONNECTIONS: usize = 10;

/// How long the guessing goes on in all.
const ATTACK: Duration = Duration::from_secs(8);

/// The first few failures, which come before the address has a penalty to queue for...
const FIRST_FEW: usize = 2;

/// ...then the failures in this window after them...
const WINDOW: Duration = Duration::from_secs(4);

/// ...may be at most this many: about one a second, with a margin (the turns are 2 s apart
/// and more). A penalty kept per connection lets each of the ten guess again within the
/// window (2 s wait + 1 s answer); without a penalty each guesses once a second.
const MAX_IN_WINDOW: usize = 5;

fn server() -> Server {
    ServerBuilder::new("penalty")
        .user("alice", "secret")
        .user("bob", "bob-pw")
        .mbox("bob", &mbox_message("a@x", "Subject: one\n\nhello\n"))
        .arg("--trusted-proxy")
        .arg("127.0.0.1")
        .arg("--max-per-ip")
        .arg("0")
        .start()
}

/// A connection through the "proxy" for `client`, its greeting read; reads end at `until`.
fn connect(server: SocketAddr, client: &str, until: Instant) -> Option<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(server).ok()?;
    stream
        .set_read_timeout(Some(until.checked_duration_since(Instant::now())?))
        .ok()?;
    let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 110\r\n");
    stream.write_all(header.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let greeting = read_line(&mut reader)?;
    assert!(greeting.starts_with("+OK"), "{greeting}");
    Some(reader)
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

/// Sends `line` and reads the reply, waiting no later than `until`.
fn command(reader: &mut BufReader<TcpStream>, line: &str, until: Instant) -> Option<String> {
    let left = until.checked_duration_since(Instant::now())?;
    let stream = reader.get_mut();
    stream.set_read_timeout(Some(left)).ok()?;
    stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    read_line(reader)
}

/// One guessing connection after another from `client` until `until`; the time of each
/// refused guess (since `start`) goes to `failures`.
fn guess(
    server: SocketAddr,
    client: &str,
    start: Instant,
    until: Instant,
    failures: &Mutex<Vec<Duration>>,
) {
    let mut n = 0;
    while Instant::now() < until {
        let Some(mut c) = connect(server, client, until) else {
            return;
        };
        loop {
            n += 1;
            if command(&mut c, "USER alice", until).is_none() {
                break;
            }
            match command(&mut c, &format!("PASS guess-{n}"), until) {
                Some(reply) if reply.starts_with("-ERR [AUTH]") => {
                    failures.lock().unwrap().push(start.elapsed());
                }
                // Closed after the third failure: a new connection; or the attack is over.
                _ => break,
            }
        }
    }
}

#[test]
fn parallel_connections_from_one_address_share_its_slow_turns() {
    let s = server();
    let addr = s.addr;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let until = start + ATTACK;
    let guessers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let failures = Arc::clone(&failures);
            thread::spawn(move || guess(addr, "127.0.0.2", start, until, &failures))
        })
        .collect();

    // Once a guess has failed and the other connections queue for their turns (2 s apart,
    // the last about 20 s away), a client from another address logs in at once.
    while failures.lock().unwrap().is_empty() && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let patience = asked + Duration::from_secs(20);
    let mut other = connect(addr, "127.0.0.3", patience).unwrap();
    assert!(command(&mut other, "USER bob", patience)
        .unwrap()
        .starts_with("+OK"));
    let reply = command(&mut other, "PASS bob-pw", patience).unwrap();
    let took = asked.elapsed();
    assert!(reply.starts_with("+OK bob has 1 messages"), "{reply}");
    assert!(took < Duration::from_secs(10), "127.0.0.3 waited {took:?}");
    command(&mut other, "QUIT", patience);

    for g in guessers {
        g.join().unwrap();
    }
    let mut times = failures.lock().unwrap().clone();
    times.sort();
    assert!(
        times.len() >= FIRST_FEW,
        "only {} guesses failed in {ATTACK:?}: {times:?}",
        times.len()
    );
    let first_few = times[FIRST_FEW - 1];
    let later = times
        .iter()
        .filter(|&&t| t > first_few && t <= first_few + WINDOW)
        .count();
    assert!(
        later <= MAX_IN_WINDOW,
        "{later} failed guesses in the {WINDOW:?} after the first few ({first_few:?}): {times:?}"
    );
    let log = s.log_text();
    assert!(
        log.contains(r#"auth failed: rhost=127.0.0.2 mechanism=PASS user="alice""#),
        "{log}"
    );
}

/// A connection for `client` through the "proxy" over IPv6 PROXY v1, its greeting read.
fn connect_v6(server: SocketAddr, client: &str, until: Instant) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .write_all(format!("PROXY TCP6 {client} 2001:db8:ffff::1 40000 110\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let greeting = command_greeting(&mut reader, until);
    assert!(greeting.starts_with("+OK"), "{greeting}");
    reader
}

fn command_greeting(reader: &mut BufReader<TcpStream>, until: Instant) -> String {
    let left = until.saturating_duration_since(Instant::now());
    reader.get_mut().set_read_timeout(Some(left)).unwrap();
    read_line(reader).unwrap_or_default()
}

/// Another address of the same IPv6 /64 is the same client: a failure from 2001:db8::1 makes
/// the next check from 2001:db8::2 wait its turn (the log says so). Counted per /128, the
/// second address would have no failures and be checked at once.
#[test]
fn the_addresses_of_one_ipv6_network_share_a_penalty() {
    let s = ServerBuilder::new("penalty-v6")
        .user("alice", "secret")
        .arg("--trusted-proxy")
        .arg("127.0.0.1")
        .arg("--plaintext-auth")
        .arg("always")
        .start();
    let until = Instant::now() + Duration::from_secs(30);
    let mut first = connect_v6(s.addr, "2001:db8::1", until);
    assert!(command(&mut first, "USER alice", until)
        .unwrap()
        .starts_with("+OK"));
    let reply = command(&mut first, "PASS guess-1", until).unwrap();
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");

    let mut second = connect_v6(s.addr, "2001:db8::2", until);
    assert!(command(&mut second, "USER alice", until)
        .unwrap()
        .starts_with("+OK"));
    let reply = command(&mut second, "PASS guess-2", until).unwrap();
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    let log = s.log_text();
    assert!(
        log.lines().any(|l| l.contains("[2001:db8::2]:40000")
            && l.contains("earlier failed logins from 2001:db8::2")),
        "{log}"
    );
}

/// The longest penalty in `a_right_password_waits_at_most_the_longest_penalty`, seconds.
const SHORT_PENALTY: u64 = 4;

/// Connections that take a turn and hang up before it comes.
const ABANDONED: usize = 10;

/// A right password from a penalised address, after connections from it took turns and hung
/// up, is answered within the longest penalty (plus the failure delay and a generous margin),
/// however many turns they took: it either waits at most that long or is refused unchecked
/// ("[SYS/TEMP]", never "[AUTH]") while the queue is full, and gets in a few tries later. With turns queued without a cap it
/// waited for all of them, 2 s each (about 20 s here).
#[test]
fn a_right_password_waits_at_most_the_longest_penalty() {
    let s = ServerBuilder::new("penalty-cap")
        .user("alice", "secret")
        .mbox("alice", &mbox_message("a@x", "Subject: one\n\nhello\n"))
        .arg("--trusted-proxy")
        .arg("127.0.0.1")
        .arg("--max-per-ip")
        .arg("0")
        .arg("--login-penalty")
        .arg(&SHORT_PENALTY.to_string())
        .start();
    let client = "127.0.0.4";
    let until = Instant::now() + Duration::from_secs(120);
    let mut first = connect(s.addr, client, until).unwrap();
    assert!(command(&mut first, "USER alice", until)
        .unwrap()
        .starts_with("+OK"));
    let reply = command(&mut first, "PASS guess-0", until).unwrap();
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");

    for n in 1..=ABANDONED {
        let mut c = connect(s.addr, client, until).unwrap();
        assert!(command(&mut c, "USER alice", until)
            .unwrap()
            .starts_with("+OK"));
        let stream = c.get_mut();
        stream
            .write_all(format!("PASS guess-{n}\r\n").as_bytes())
            .unwrap();
        // Hung up without waiting for the answer.
    }
    // Every abandoned PASS has been given a turn or refused before the right one comes.
    let handled = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains(&format!("from {client}"))
                    && (l.contains(": check in ") || l.contains("login refused unchecked"))
            })
            .count()
    };
    while handled(&s.log_text()) < ABANDONED && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }

    let bound = Duration::from_secs(SHORT_PENALTY + 1 + 4);
    let mut tries = Vec::new();
    'login: for _ in 0..4 {
        let mut c = connect(s.addr, client, until).unwrap();
        for _ in 0..3 {
            assert!(command(&mut c, "USER alice", until)
                .unwrap()
                .starts_with("+OK"));
            let asked = Instant::now();
            let reply = command(&mut c, "PASS secret", until).unwrap_or_default();
            let took = asked.elapsed();
            tries.push((took, reply.clone()));
            assert!(took <= bound, "answered after {took:?}: {tries:?}");
            if reply.starts_with("+OK") {
                break 'login;
            }
            // Refused unchecked while the queue is full; never refused as a wrong password.
            assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{tries:?}");
        }
    }
    assert!(
        tries.last().is_some_and(|(_, r)| r.starts_with("+OK")),
        "{tries:?}"
    );
}
