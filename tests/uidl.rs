//! `--uidl` over TCP (issue 15): the ids another server gave, read from the mbox's headers,
//! with pop3d's own ids for what the first scheme cannot name; the users file's per-user
//! list; and `--uidl-report`, the dry run.

use crate::support;

use std::process::Command;
use support::{mbox_message, ServerBuilder};

/// UIDVALIDITY 1700000000 = 0x6553f100, as Dovecot writes it at the first sync.
fn dovecot_mbox() -> String {
    [
        mbox_message(
            "a@x",
            "X-IMAPbase: 1700000000 0000000006\nX-UID: 1\nStatus: RO\nSubject: one\n\nfirst\n",
        ),
        mbox_message("b@x", "X-UID: 2\nSubject: two\n\nsecond\n"),
        // Delivered after the switch: no X-UID.
        mbox_message("c@x", "Subject: new mail\n\nthird\n"),
        // Mail from outside with a forged copy of message 2's X-UID.
        mbox_message("evil@x", "X-UID: 2\nSubject: forged\n\nfourth\n"),
        // Not a number.
        mbox_message("d@x", "X-UID: 12abc\nSubject: malformed\n\nfifth\n"),
    ]
    .concat()
}

/// UIDL's lines as (number, id).
fn uidl(server: &support::Server, user: &str, password: &str) -> Vec<(String, String)> {
    let mut c = server.login(user, password);
    let lines = c.multi("UIDL");
    c.ok("QUIT");
    lines
        .iter()
        .map(|l| {
            let (n, id) = l.split_once(' ').expect("N ID");
            (n.to_owned(), id.to_owned())
        })
        .collect()
}

fn ids_only(lines: &[(String, String)]) -> Vec<String> {
    lines.iter().map(|(_, id)| id.clone()).collect()
}

/// alice's UIDL ids alone, in message order.
fn alice_ids(server: &support::Server) -> Vec<String> {
    ids_only(&uidl(server, "alice", "secret"))
}

/// A server whose one user, alice, has `mbox` and whose `--uidl` is `schemes`.
fn uidl_server(name: &str, mbox: &str, schemes: &str) -> support::Server {
    ServerBuilder::new(name)
        .user("alice", "secret")
        .mbox("alice", mbox)
        .arg("--uidl")
        .arg(schemes)
        .start()
}

/// Deletes alice's message `n` in a session of its own.
fn delete_alice(server: &support::Server, n: usize) {
    let mut c = server.login("alice", "secret");
    c.ok(&format!("DELE {n}"));
    c.ok("QUIT");
}

/// Runs the dry run `--uidl-report SCHEMES MBOX`.
fn uidl_report(schemes: &str, mbox: &std::path::Path) -> std::process::Output {
    Command::new(support::binary())
        .arg("--uidl-report")
        .arg(schemes)
        .arg(mbox)
        .output()
        .expect("run pop3d")
}

#[test]
fn dovecot_ids_then_pop3d_ids_for_messages_without_a_usable_x_uid() {
    let mbox = dovecot_mbox();
    let plain = ServerBuilder::new("uidl-plain")
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .start();
    let own = ids_only(&uidl(&plain, "alice", "secret"));
    let server = uidl_server("uidl-dovecot", &mbox, "dovecot,pop3d");
    let got = uidl(&server, "alice", "secret");
    let numbers: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5"]);
    let ids = ids_only(&got);
    assert_eq!(ids[0], "000000016553f100", "Dovecot's %08Xu%08Xv");
    assert_eq!(ids[1], "000000026553f100");
    assert_eq!(ids[2], own[2], "no X-UID: pop3d's own id");
    assert_eq!(ids[3], own[3], "forged duplicate X-UID: pop3d's own id");
    assert_eq!(ids[4], own[4], "malformed X-UID: pop3d's own id");
    assert_ne!(ids[0], own[0]);

    // UIDL n agrees, and the ids are the same in the next session.
    let mut c = server.login("alice", "secret");
    assert_eq!(c.ok("UIDL 2"), "2 000000026553f100");
    assert_eq!(c.ok("UIDL 4"), format!("4 {}", own[3]));
    c.ok("QUIT");
    assert_eq!(uidl(&server, "alice", "secret"), got);

    // Nothing was written into the mbox, and the log says why, once per session.
    assert_eq!(server.mbox("alice"), mbox.as_bytes());
    let log = server.log_text();
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("--uidl dovecot,pop3d: unique ids of 5 messages"))
        .collect();
    assert_eq!(why.len(), 3, "one line per session: {log}");
    assert!(
        why[0].contains("dovecot named 2, passed on 1 without its header, passed on 1 with an invalid id, passed on 1 with an id taken before; pop3d named 3"),
        "{}",
        why[0]
    );
}

#[test]
fn dovecot_ids_survive_deleting_the_message_that_held_x_imapbase() {
    let server = uidl_server("uidl-dele-first", &dovecot_mbox(), "dovecot,pop3d");
    let before = alice_ids(&server);
    delete_alice(&server, 1);
    assert!(
        !String::from_utf8_lossy(&server.mbox("alice")).contains("X-IMAPbase"),
        "the header left with its message"
    );
    let after = alice_ids(&server);
    assert_eq!(after, before[1..], "every other message keeps its id");
    assert_eq!(after[0], "000000026553f100");
    // The dry run reads the same remembered UIDVALIDITY.
    let out = uidl_report("dovecot,pop3d", &server.mbox_path("alice"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("1 000000026553f100 dovecot\n"),
        "{stdout}"
    );
}

#[test]
fn a_users_file_field_sets_a_users_own_schemes() {
    let mbox = [
        mbox_message(
            "a@x",
            "X-UIDL: 4f1a2b3c.1700000000.1\nSubject: one\n\nfirst\n",
        ),
        mbox_message("b@x", "Subject: two\n\nsecond\n"),
    ]
    .concat();
    let server = ServerBuilder::new("uidl-per-user")
        .user("alice", "secret")
        .user("bob", "pw:with colon:uidl=x-uidl,pop3d")
        .mbox("alice", &mbox)
        .mbox("bob", &mbox)
        .start();
    let alice = alice_ids(&server);
    let bob = ids_only(&uidl(&server, "bob", "pw:with colon"));
    assert_eq!(bob[0], "4f1a2b3c.1700000000.1", "bob's list reads X-UIDL");
    assert_eq!(bob[1], alice[1], "and falls back to pop3d's id");
    assert_ne!(alice[0], bob[0], "alice keeps the server's default");
    assert_eq!(alice[0].len(), 32);
}

#[test]
fn uidl_report_prints_each_id_and_who_named_it() {
    let server = uidl_server("uidl-report", &dovecot_mbox(), "dovecot,pop3d");
    let served = uidl(&server, "alice", "secret");
    let out = uidl_report("dovecot,pop3d", &server.mbox_path("alice"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    for (row, (n, id)) in rows.iter().zip(&served) {
        assert_eq!(
            (row[0], row[1]),
            (n.as_str(), id.as_str()),
            "the session's ids"
        );
    }
    let named: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(named, ["dovecot", "dovecot", "pop3d", "pop3d", "pop3d"]);
    // Why the first scheme passed: no header, an id taken before, an invalid header.
    assert_eq!(rows[0].len(), 3);
    assert_eq!(rows[2][3], "-absent");
    assert_eq!(rows[3][3], "000000026553f100");
    assert_eq!(rows[4][3], "-invalid");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unique ids of 5 messages"), "{stderr}");

    let missing = uidl_report("dovecot", std::path::Path::new("/nonexistent/mbox"));
    assert!(!missing.status.success(), "a missing mbox is an error");
}

/// Appends `text` to `user`'s mbox, as a delivery agent would between sessions.
fn deliver(server: &support::Server, user: &str, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(server.mbox_path(user))
        .expect("open mbox");
    f.write_all(text.as_bytes()).expect("append");
}

#[test]
fn a_deleted_messages_dovecot_id_never_passes_to_a_forged_x_uid() {
    let server = uidl_server("uidl-retire-dovecot", &dovecot_mbox(), "dovecot,pop3d");
    let before = alice_ids(&server);
    assert_eq!(before[1], "000000026553f100");
    delete_alice(&server, 2);
    // The forgery beside it keeps the id it had; one delivered later does not get it either.
    deliver(
        &server,
        "alice",
        &mbox_message("late@x", "X-UID: 2\nSubject: forged later\n\nsixth\n"),
    );
    let after = alice_ids(&server);
    assert_eq!(after.len(), 5);
    assert_eq!(after[..4], [&before[..1], &before[2..]].concat()[..]);
    assert!(
        !after.iter().any(|id| id == "000000026553f100"),
        "a deleted message's id named another message: {after:?}"
    );
    assert_eq!(after[4].len(), 32, "the later forgery: pop3d's own id");
    let log = server.log_text();
    assert!(
        log.contains("passed on 2 with an id of a deleted message"),
        "{log}"
    );
}

#[test]
fn a_deleted_messages_x_uidl_never_passes_to_a_forged_x_uidl() {
    let mbox = [
        mbox_message("a@x", "X-UIDL: one.1\nSubject: one\n\nfirst\n"),
        mbox_message("b@x", "X-UIDL: two.2\nSubject: two\n\nsecond\n"),
        mbox_message("evil@x", "X-UIDL: two.2\nSubject: forged\n\nthird\n"),
    ]
    .concat();
    let server = uidl_server("uidl-retire-xuidl", &mbox, "x-uidl,pop3d");
    let before = alice_ids(&server);
    assert_eq!(before[..2], ["one.1", "two.2"]);
    delete_alice(&server, 2);
    deliver(
        &server,
        "alice",
        &mbox_message("late@x", "X-UIDL: two.2\nSubject: forged later\n\nfourth\n"),
    );
    let after = alice_ids(&server);
    assert_eq!(after[0], "one.1");
    assert_eq!(after[1], before[2], "the forgery keeps its own id");
    assert!(
        !after.iter().any(|id| id == "two.2"),
        "a deleted message's id named another message: {after:?}"
    );
    // And in every later session.
    assert_eq!(alice_ids(&server), after);
}

/// A FIFO given to the dry run by mistake is refused at once, not waited on.
#[test]
fn uidl_report_refuses_a_fifo_without_blocking() {
    let dir = support::TempDir::new("uidl-fifo");
    let fifo = dir.path().join("alice");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    let mut child = Command::new(support::binary())
        .arg("--uidl-report")
        .arg("pop3d")
        .arg(&fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pop3d");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--uidl-report blocked on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success(), "a FIFO is no mbox");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    // The file is named once, whichever error names it.
    let named = format!("{}", fifo.display());
    assert_eq!(stderr.matches(&named).count(), 1, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}
