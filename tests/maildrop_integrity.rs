//! What a client sees when the maildrop goes wrong under a running session, over the real
//! binary: a message cut short while RETR streams it ends the connection without the
//! terminating "." line, and an UPDATE that fails halfway says what became of the deletions
//! (the latter with `--features fault-injection`).

use crate::support;

use std::fs::OpenOptions;
use std::io::{BufRead, Read};

use support::ServerBuilder;

/// Big enough that the message cannot sit whole in the socket buffers and the server's
/// read-ahead (a few MB on loopback) when the file is cut: pop3d is still reading it.
const BIG_MESSAGE_LINES: usize = 400_000;

/// Where the file is cut, as a share of the message: well past what can be in flight.
const CUT_AT_PERCENT: u64 = 60;

/// A session in the middle of RETR of one big message: the +OK line read and checked, and
/// a little of the body, so that pop3d is still reading the file.
struct BigRetr {
    mbox: String,
    server: support::Server,
    c: support::Client,
    /// The +OK line.
    first: String,
    /// Octets of the body read so far.
    received: u64,
}

/// Starts a server whose alice has one message of BIG_MESSAGE_LINES lines and reads the
/// start of its RETR.
fn retr_a_big_message(name: &str) -> BigRetr {
    let mut mbox = String::from("From big@example Mon Jan  1 00:00:00 2024\nSubject: big\n\n");
    for i in 0..BIG_MESSAGE_LINES {
        mbox.push_str(&format!(
            "line {i:08} of a long message body, padded out a bit\n"
        ));
    }
    let server = ServerBuilder::new(name)
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .start();
    let mut c = server.login("alice", "secret");
    c.send("RETR 1");
    let first = c.line();
    assert!(first.starts_with("+OK "), "{first:?}");
    let mut head = vec![0u8; 64 * 1024];
    c.reader.read_exact(&mut head).expect("start of the body");
    BigRetr {
        mbox,
        server,
        c,
        first,
        received: head.len() as u64,
    }
}

/// Reads the rest of a RETR line by line up to the close, `received` octets in, failing on a
/// terminating "." line; `announced` is the size the +OK line gave, where known. Returns the
/// octets read in all.
fn read_to_the_close_without_a_dot(
    c: &mut support::Client,
    mut received: u64,
    announced: Option<u64>,
) -> u64 {
    let of = announced.map(|a| format!(" of {a}")).unwrap_or_default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = c.reader.read_until(b'\n', &mut line).unwrap_or_else(|e| {
            panic!("connection neither closed nor ended the body: {e} after {received} octets")
        });
        if n == 0 {
            break;
        }
        assert_ne!(
            line, b".\r\n",
            "terminating dot after {received}{of} octets"
        );
        received += n as u64;
    }
    received
}

#[test]
fn retr_of_a_message_cut_while_it_streams_ends_without_the_final_dot() {
    let BigRetr {
        mbox,
        server,
        mut c,
        first,
        received,
    } = retr_a_big_message("retr-cut");
    let announced: u64 = first[4..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("octets in the +OK line");
    // A little of the body was read, so the transfer is under way; now another program cuts
    // the file (an admin's script, a broken rewrite) while pop3d is still reading it.
    let cut = mbox.len() as u64 * CUT_AT_PERCENT / 100;
    OpenOptions::new()
        .write(true)
        .open(server.mbox_path("alice"))
        .and_then(|f| f.set_len(cut))
        .expect("cut the mbox");
    // The rest, line by line, up to the close: a ".\r\n" line would tell the client that
    // the short message is complete.
    let received = read_to_the_close_without_a_dot(&mut c, received, Some(announced));
    assert!(received < announced, "{received} of {announced} octets");
    drop(c);
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("read of message 1 failed")),
        "no error logged:\n{log}"
    );
}

/// An I/O error in the middle of UPDATE (injected after the first batch of the rewrite reached
/// the mbox): the QUIT reply and the log say that the next login completes the deletions, not
/// that nothing was deleted, and the next open does complete them.
#[cfg(feature = "fault-injection")]
#[test]
fn io_error_in_the_middle_of_update_is_reported_as_completed_at_the_next_login() {
    use pop3d::maildrop::{Maildrop, OpenOptions as MaildropOptions, SessionLock};

    let mut mbox = String::new();
    for i in 0..6 {
        mbox.push_str(&support::mbox_message(
            &format!("m{i}@example"),
            &format!("Subject: m{i}\n\nbody {i} {}\n", "x".repeat(2000)),
        ));
    }
    let server = ServerBuilder::new("update-interrupted")
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .env("POP3D_FAULT_ERROR", "batch-written")
        .env("POP3D_FAULT_BATCH", "512")
        .start();
    let mut c = server.login("alice", "secret");
    c.ok("DELE 1");
    c.ok("DELE 3");
    let reply = c.err("QUIT");
    assert!(reply.contains("next login completes"), "{reply:?}");
    assert!(!reply.contains("none was removed"), "{reply:?}");
    c.expect_closed();
    drop(c);
    // The session's end is logged once its connection is closed: wait for that line.
    let log = wait_for_log(&server, "deletions completed at the next login");
    assert!(
        log.contains("update interrupted, the next login completes it"),
        "{log}"
    );
    assert!(
        log.contains("2 deletions completed at the next login"),
        "{log}"
    );
    assert!(!log.contains("nothing deleted"), "{log}");

    // The next open (here in this process, without injected faults) completes them.
    let path = server.mbox_path("alice");
    let lock = SessionLock::try_acquire(&path).expect("session lock");
    let md = Maildrop::open(&path, lock, &MaildropOptions::default()).expect("open recovers");
    assert_eq!(md.messages().len(), 4);
}

/// Deleting the last messages truncates the mbox; when the sync after the truncate fails,
/// the messages are gone but not durably so, and that is what QUIT and the log say.
#[cfg(feature = "fault-injection")]
#[test]
fn failed_sync_after_a_truncating_update_is_reported_as_removed_but_unsynced() {
    let mbox = support::mbox_message("a@example", "Subject: a\n\nkept\n")
        + &support::mbox_message("b@example", "Subject: b\n\ndeleted\n");
    let server = ServerBuilder::new("update-unsynced")
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .env("POP3D_FAULT_ERROR", "truncate-sync")
        .start();
    let mut c = server.login("alice", "secret");
    c.ok("DELE 2");
    let reply = c.err("QUIT");
    assert!(reply.contains("removed but not confirmed"), "{reply:?}");
    c.expect_closed();
    drop(c);
    let log = wait_for_log(&server, "deleted but not synced");
    assert!(log.contains("1 deleted but not synced to disk"), "{log}");
    assert!(!log.contains("nothing deleted"), "{log}");
    let left = String::from_utf8_lossy(&server.mbox("alice")).into_owned();
    assert!(left.contains("kept") && !left.contains("deleted"), "{left}");
}

/// The server's log once it holds `needle`, or after a few seconds as it is.
#[cfg(feature = "fault-injection")]
fn wait_for_log(server: &support::Server, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let log = server.log_text();
        if log.contains(needle) || start.elapsed() > std::time::Duration::from_secs(10) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Another program rewrites the message in place while RETR streams it: the same length,
/// other bytes past what can be in flight. The client must not get the final "." line, as
/// it would store a message that never was in the mbox as complete.
#[test]
fn retr_of_a_message_rewritten_while_it_streams_ends_without_the_final_dot() {
    let BigRetr {
        mbox,
        server,
        mut c,
        received,
        ..
    } = retr_a_big_message("retr-rewrite");
    // Same length: only the bytes differ, from CUT_AT_PERCENT of the file on.
    let at = mbox.len() as u64 * CUT_AT_PERCENT / 100;
    let other = vec![b'X'; 4096];
    OpenOptions::new()
        .write(true)
        .open(server.mbox_path("alice"))
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &other, at))
        .expect("rewrite the mbox in place");
    read_to_the_close_without_a_dot(&mut c, received, None);
    drop(c);
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("read of message 1 failed")
            && l.contains("changed")),
        "no error logged:\n{log}"
    );
}
