//! Hostile input and abusive clients against the real binary: each abuse runs while a
//! well-behaved client logs in and fetches in parallel, and that client must keep succeeding.
//! Each test prints the good client's success rate and the server's peak memory (VmHWM).

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{mbox_message, Server, ServerBuilder};

fn big_message(octets: usize) -> String {
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n";
    let body = line.repeat(octets / line.len() + 1);
    mbox_message("big@x", &format!("Subject: big\n\n{body}"))
}

fn server(extra: &[&str]) -> Server {
    let mut b = ServerBuilder::new("hard")
        .user("good", "pw")
        .user("victim", "pw")
        .mbox("good", &mbox_message("a@x", "Subject: hello\n\nbody\n"))
        .mbox("victim", &big_message(8 << 20));
    for a in extra {
        b = b.arg(a);
    }
    b.start()
}

/// Runs login + RETR + QUIT in a loop until stopped; returns (successes, attempts).
fn good_client(s: &Server, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u32, u32)> {
    let addr = s.addr;
    thread::spawn(move || {
        let (mut ok, mut tries) = (0, 0);
        while !stop.load(Ordering::SeqCst) || tries == 0 {
            tries += 1;
            let result = std::panic::catch_unwind(|| {
                let mut c = support::Client::connect(addr);
                c.greeting();
                c.ok("USER good");
                c.ok("PASS pw");
                let body = c.retr(1);
                assert!(String::from_utf8_lossy(&body).contains("body"));
                c.ok("QUIT");
            });
            if result.is_ok() {
                ok += 1;
            }
            thread::sleep(Duration::from_millis(20));
        }
        (ok, tries)
    })
}

fn peak_memory_kb(s: &Server) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `abuse` while the good client loops; asserts every good attempt succeeded.
fn with_good_client(name: &str, s: &Server, abuse: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_client(s, Arc::clone(&stop));
    abuse();
    stop.store(true, Ordering::SeqCst);
    let (ok, tries) = good.join().unwrap();
    eprintln!(
        "{name}: good client {ok}/{tries} succeeded, server peak memory {} kB",
        peak_memory_kb(s)
    );
    assert!(tries > 0);
    assert_eq!(ok, tries, "{name}: the good client failed during the abuse");
}

#[test]
fn one_megabyte_line_is_one_error() {
    let s = server(&[]);
    with_good_client("1 MB line", &s, || {
        // Repeated for a second, so the good client runs many times meanwhile.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            let mut c = s.connect();
            c.greeting();
            let line = vec![b'A'; 1 << 20];
            c.send_raw(&line);
            c.send_raw(b"\r\nNOOP\r\n");
            let r = c.line();
            assert!(r.starts_with("-ERR"), "{r}");
            // NOOP before login is out of state: another -ERR, and the session is still there.
            assert!(c.line().starts_with("-ERR"));
            c.ok("CAPA");
        }
    });
}

#[test]
fn nul_flood_is_cut_off() {
    let s = server(&[]);
    with_good_client("NUL flood", &s, || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            let mut c = s.connect();
            c.greeting();
            let flood = b"\0\0\0\0\0\0\0\0\r\n".repeat(10_000);
            // The server hangs up after a bounded number of bad lines; writing may then fail.
            let _ = c.stream.write_all(&flood);
            let mut seen = Vec::new();
            let _ = c.reader.read_to_end(&mut seen);
            let text = String::from_utf8_lossy(&seen);
            let errors = text.matches("-ERR").count();
            assert!(
                errors > 0 && errors <= 20,
                "{errors} errors before the hang-up"
            );
            assert!(text.contains("too many bad commands"), "{text}");
        }
    });
}

#[test]
fn slow_trickler_is_logged_out() {
    let s = server(&["--timeout", "2"]);
    with_good_client("trickler", &s, || {
        let mut c = s.connect();
        c.greeting();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(8) {
            if c.stream.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
            let mut probe = [0u8; 64];
            c.stream.set_nonblocking(true).unwrap();
            let gone = matches!(c.stream.read(&mut probe), Ok(0));
            c.stream.set_nonblocking(false).unwrap();
            if gone {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "trickler kept for {:?}",
            start.elapsed()
        );
    });
}

#[test]
fn client_that_never_reads_a_large_retr_is_dropped() {
    let s = server(&["--timeout", "2"]);
    with_good_client("never reads RETR", &s, || {
        let mut c = s.login("victim", "pw");
        c.send("RETR 1");
        // Do not read: the server's writes block, then its write timeout lets the client go.
        let start = Instant::now();
        let ended = loop {
            if s.log_text()
                .contains("session ended: i/o error, user victim")
            {
                break true;
            }
            if start.elapsed() > Duration::from_secs(15) {
                break false;
            }
            thread::sleep(Duration::from_millis(100));
        };
        assert!(ended, "log: {}", s.log_text());
        // Its session lock is free again.
        let mut again = s.login("victim", "pw");
        again.ok("QUIT");
    });
}

#[test]
fn three_hundred_connections_at_once() {
    let s = server(&["--max-sessions", "400", "--max-per-ip", "0"]);
    with_good_client("300 connections", &s, || {
        let mut held = Vec::new();
        for _ in 0..300 {
            let mut c = s.connect();
            c.greeting();
            held.push(c);
        }
        for c in held.iter_mut().step_by(10) {
            c.ok("CAPA");
        }
        drop(held);
    });
}

#[test]
fn abrupt_resets_do_not_stop_the_accept_loop() {
    let s = server(&["--max-per-ip", "0"]);
    with_good_client("resets", &s, || {
        for _ in 0..200 {
            if let Ok(c) = TcpStream::connect(s.addr) {
                // Closing a socket whose greeting sits unread in its receive queue makes the
                // kernel answer with a reset (RST), not a normal close: wait for the greeting
                // to arrive, then drop the socket without reading it.
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut probe = [0u8; 1];
                let _ = c.peek(&mut probe);
            }
        }
        let mut c = s.connect();
        c.greeting();
    });
}

#[test]
fn per_address_cap_refuses_the_next_connection() {
    let s = server(&["--max-per-ip", "2"]);
    let mut a = s.connect();
    a.greeting();
    let mut b = s.connect();
    b.greeting();
    let mut c = s.connect();
    let r = c.line();
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    c.expect_closed();
    // The place is free as soon as the client has read "+OK" to QUIT.
    a.ok("QUIT");
    let mut d = s.connect();
    d.greeting();
}

#[test]
fn failed_logins_are_slow_and_three_close_the_connection() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    let mut timings = Vec::new();
    for user in ["good", "nosuchuser", "good"] {
        c.ok(&format!("USER {user}"));
        let start = Instant::now();
        let r = c.err("PASS wrong");
        timings.push(start.elapsed());
        assert_eq!(r, "-ERR [AUTH] invalid user name or password");
    }
    c.expect_closed();
    for t in &timings {
        assert!(*t >= Duration::from_millis(900), "{timings:?}");
    }
}

/// Every path under `dir`, recursively, except the server's log.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            if !path.ends_with("pop3d.log") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn unsafe_user_names_fail_like_wrong_passwords_and_open_nothing() {
    // Seven failures from one address: without --login-penalty 0 they would wait 2, 4, 8
    // and 15 s for their turns (tests/penalty.rs checks those).
    let s = server(&["--login-penalty", "0"]);
    let parent = s.dir.path().parent().unwrap().to_path_buf();
    let before = tree(s.dir.path());
    let wrong_password = {
        let mut c = s.connect();
        c.greeting();
        c.ok("USER good");
        c.err("PASS wrong")
    };
    for name in [
        "../escape",
        "../../etc/passwd",
        ".hidden",
        "a/b",
        "good.lock",
        "good.pop3d",
    ] {
        let mut c = s.connect();
        c.greeting();
        c.ok(&format!("USER {name}"));
        let r = c.err("PASS pw");
        assert_eq!(r, wrong_password, "{name}");
    }
    // No file was created anywhere in the server's directory (the lock files of a real
    // login would be), nor beside it.
    assert_eq!(tree(s.dir.path()), before);
    assert!(!parent.join("escape").exists() && !parent.join("escape.pop3d").exists());
    assert!(s
        .log_text()
        .contains(r#"auth failed: rhost=127.0.0.1 mechanism=PASS user="../escape""#));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_panicking_session_ends_alone_and_frees_its_locks() {
    let s = ServerBuilder::new("panic")
        .user("good", "pw")
        .mbox("good", &mbox_message("a@x", "Subject: hello\n\nbody\n"))
        .env("POP3D_PANIC_ON_NOOP", "1")
        .start();
    let mut c = s.login("good", "pw");
    c.send("NOOP");
    c.expect_closed();
    // The server goes on, and the panicked session's maildrop lock is free.
    let mut again = s.login("good", "pw");
    assert!(again.ok("STAT").starts_with("1 "));
    again.ok("QUIT");
    assert!(s.log_text().contains("panic"), "{}", s.log_text());
}
