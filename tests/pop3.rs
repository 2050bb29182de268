//! The real binary over TCP, as telnet and nc would talk to it: every command in its right and
//! wrong state, sizes, byte-stuffing, TOP, UIDL stability, UPDATE only on QUIT, autologout,
//! the session lock, the session cap, a missing mbox and a malformed users file.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{mbox_message, Server, ServerBuilder};

fn three_messages() -> String {
    [
        mbox_message("a@x", "Subject: one\nMessage-ID: <1@x>\n\nfirst body\n"),
        mbox_message(
            "b@x",
            "Subject: two\nMessage-ID: <2@x>\n\n.starts with a dot\n..two dots\n.\nend\n",
        ),
        mbox_message(
            "c@x",
            "Subject: three\nMessage-ID: <3@x>\n\n>From quoted\nline 2\nline 3\n",
        ),
    ]
    .concat()
}

fn server() -> Server {
    ServerBuilder::new("pop3")
        .user("alice", "secret")
        .user("bob", "pass with spaces")
        .mbox("alice", &three_messages())
        .start()
}

#[test]
fn greeting_has_an_apop_timestamp_that_changes() {
    let s = server();
    let a = s.connect().greeting();
    let b = s.connect().greeting();
    assert!(a.contains('<') && a.ends_with("@test.example>"), "{a}");
    assert_ne!(a, b);
}

#[test]
fn stat_and_list_count_octets_with_crlf() {
    let s = server();
    let mut c = s.login("alice", "secret");
    // "Subject: one\r\nMessage-ID: <1@x>\r\n\r\nfirst body\r\n" = 14 + 19 + 2 + 12 = 47
    assert_eq!(c.multi("LIST")[0], "1 47");
    let list = c.multi("LIST");
    let total: u64 = list
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(c.ok("STAT"), format!("3 {total}"));
    assert_eq!(c.ok("LIST 1"), "1 47");
    c.err("LIST 4");
    c.ok("QUIT");
}

#[test]
fn retr_size_matches_the_bytes_sent() {
    let s = server();
    let mut c = s.login("alice", "secret");
    for n in 1..=3 {
        let size: usize = c
            .ok(&format!("LIST {n}"))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let body = c.retr(n);
        assert_eq!(body.len(), size, "message {n}");
    }
}

#[test]
fn retr_byte_stuffs_leading_dots() {
    let s = server();
    let mut c = s.login("alice", "secret");
    c.send("RETR 2");
    let first = c.line();
    assert!(first.starts_with("+OK"), "{first}");
    let mut raw = Vec::new();
    loop {
        let l = c.raw_line();
        let end = l == b".\r\n";
        raw.extend_from_slice(&l);
        if end {
            break;
        }
    }
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.contains("\r\n..starts with a dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"),
        "{text}"
    );
}

#[test]
fn from_quoted_lines_are_sent_as_they_are() {
    let s = server();
    let mut c = s.login("alice", "secret");
    let body = String::from_utf8(c.retr(3)).unwrap();
    assert!(body.contains("\r\n>From quoted\r\n"), "{body}");
}

#[test]
fn body_lines_beginning_from_stay_in_their_message() {
    // Written by a tool that does not quote: "From " body lines, and the next separator
    // straight after a last line, with no empty line before it.
    let mbox = "From a@x Sat Jan  3 01:05:34 1996\n\
                Subject: one\n\n\
                From here on, we use the new server.\n\
                From me to you on Monday\n\
                From: not a header here\n\
                end\n\
                From MAILER-DAEMON  Sat Jan  3 01:05:35 1996\n\
                Subject: two\n\n\
                bounce\n";
    let s = ServerBuilder::new("bodyfrom")
        .user("alice", "secret")
        .mbox("alice", mbox)
        .start();
    let mut c = s.login("alice", "secret");
    assert!(c.ok("STAT").starts_with("2 "));
    assert_eq!(c.multi("UIDL").len(), 2);
    let one = String::from_utf8(c.retr(1)).unwrap();
    assert_eq!(
        one,
        "Subject: one\r\n\r\nFrom here on, we use the new server.\r\n\
         From me to you on Monday\r\nFrom: not a header here\r\nend\r\n"
    );
    let size: usize = c.ok("LIST 1").split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(one.len(), size);
    assert_eq!(c.retr(2), b"Subject: two\r\n\r\nbounce\r\n");
    c.ok("DELE 2");
    c.ok("QUIT");

    let mut c = s.login("alice", "secret");
    assert!(c.ok("STAT").starts_with("1 "));
    assert_eq!(String::from_utf8(c.retr(1)).unwrap(), one);
}

#[test]
fn top_zero_sends_headers_and_blank_line() {
    let s = server();
    let mut c = s.login("alice", "secret");
    assert_eq!(
        c.multi("TOP 3 0"),
        ["Subject: three", "Message-ID: <3@x>", ""]
    );
    assert_eq!(
        c.multi("TOP 3 2"),
        [
            "Subject: three",
            "Message-ID: <3@x>",
            "",
            ">From quoted",
            "line 2"
        ]
    );
    let all = c.multi("TOP 3 100");
    assert_eq!(all.last().unwrap(), "line 3");
    c.err("TOP 4 0");
    c.err("TOP 1");
}

#[test]
fn uidl_is_stable_across_sessions_and_after_deletion() {
    let s = server();
    let mut c = s.login("alice", "secret");
    let before = c.multi("UIDL");
    assert_eq!(before.len(), 3);
    let uid = |l: &String| l.split(' ').nth(1).unwrap().to_string();
    assert_eq!(c.ok("UIDL 2"), before[1]);
    c.ok("QUIT");

    let mut c = s.login("alice", "secret");
    assert_eq!(c.multi("UIDL"), before);
    c.ok("DELE 1");
    c.ok("QUIT");

    let mut c = s.login("alice", "secret");
    let after = c.multi("UIDL");
    assert_eq!(after.len(), 2);
    assert_eq!(uid(&after[0]), uid(&before[1]));
    assert_eq!(uid(&after[1]), uid(&before[2]));
}

#[test]
fn uidl_of_a_deleted_message_is_never_handed_to_one_with_the_same_headers() {
    // Same "From " line, headers and size; only the bodies differ (a mailing list's copies,
    // automated reports).
    let headers = "Subject: daily report\nMessage-ID: <report@x>\n\n";
    let mbox = [
        mbox_message("cron@x", &format!("{headers}disk 41% full\n")),
        mbox_message("cron@x", &format!("{headers}disk 97% full\n")),
    ]
    .concat();
    let s = ServerBuilder::new("uidl-collide")
        .user("alice", "secret")
        .mbox("alice", &mbox)
        .start();
    let uid = |l: &String| l.split(' ').nth(1).unwrap().to_string();
    let mut c = s.login("alice", "secret");
    let first: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    assert!(first.iter().all(|id| !id.contains('-')), "{first:?}");
    assert_eq!(c.ok("UIDL 2"), format!("2 {}", first[1]));
    c.ok("QUIT");

    // The ids do not depend on file order between sessions either.
    let mut c = s.login("alice", "secret");
    let again: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(again, first);
    c.ok("DELE 1");
    c.ok("QUIT");

    // A client that fetched message 1 under its id must not take message 2 for it, and
    // one that fetched message 2 must not fetch it again: it keeps exactly its id.
    let mut c = s.login("alice", "secret");
    let after: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(after.len(), 1);
    assert_ne!(after[0], first[0], "message 1's id was handed to message 2");
    assert_eq!(after[0], first[1], "message 2 changed its id");
    assert!(String::from_utf8(c.retr(1)).unwrap().contains("97%"));
}

#[test]
fn uidl_of_a_deleted_message_is_not_handed_to_one_delivered_after_it() {
    // A alone, fetched under its id; deleted; then B arrives with the same "From " line,
    // headers and size, and no session ever saw both.
    let headers = "Subject: daily report\nMessage-ID: <report@x>\n\n";
    let a = mbox_message("cron@x", &format!("{headers}disk 41% full\n"));
    let b = mbox_message("cron@x", &format!("{headers}disk 97% full\n"));
    let s = ServerBuilder::new("uidl-retired")
        .user("alice", "secret")
        .mbox("alice", &a)
        .start();
    let uid = |l: &String| l.split(' ').nth(1).unwrap().to_string();
    let record = s.mbox_path("alice").with_file_name("alice.pop3d-uidl");
    let mut c = s.login("alice", "secret");
    let seen: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(seen.len(), 1);
    c.ok("QUIT");
    assert!(!record.exists(), "no collision, no deletion: no record");
    let mut c = s.login("alice", "secret");
    c.ok("DELE 1");
    c.ok("QUIT");
    assert!(s.mbox("alice").is_empty(), "message A was not deleted");
    assert!(record.exists(), "the deleted message's id is recorded");

    std::fs::OpenOptions::new()
        .append(true)
        .open(s.mbox_path("alice"))
        .and_then(|mut f| f.write_all(b.as_bytes()))
        .unwrap();
    let mut c = s.login("alice", "secret");
    let now: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], seen[0], "message A's id was handed to message B");
    assert!(String::from_utf8(c.retr(1)).unwrap().contains("97%"));
    c.ok("QUIT");
    // And B keeps its id from then on.
    let mut c = s.login("alice", "secret");
    let again: Vec<String> = c.multi("UIDL").iter().map(uid).collect();
    assert_eq!(again, now);
}

#[test]
fn dele_takes_effect_on_quit_only() {
    let s = server();
    let original = s.mbox("alice");
    let mut c = s.login("alice", "secret");
    c.ok("DELE 2");
    c.err("DELE 2");
    c.err("RETR 2");
    assert_eq!(s.mbox("alice"), original, "nothing changes before QUIT");
    assert!(c.ok("QUIT").contains("1 messages deleted"));
    let after = String::from_utf8(s.mbox("alice")).unwrap();
    assert!(!after.contains("Subject: two"));
    assert!(after.contains("Subject: one") && after.contains("Subject: three"));
}

#[test]
fn rset_undeletes() {
    let s = server();
    let original = s.mbox("alice");
    let mut c = s.login("alice", "secret");
    c.ok("DELE 1");
    c.ok("DELE 3");
    assert!(c.ok("STAT").starts_with("1 "));
    c.ok("RSET");
    assert!(c.ok("STAT").starts_with("3 "));
    c.ok("QUIT");
    assert_eq!(s.mbox("alice"), original);
}

#[test]
fn dropped_connection_deletes_nothing() {
    let s = server();
    let original = s.mbox("alice");
    let mut c = s.login("alice", "secret");
    c.ok("DELE 1");
    drop(c);
    // The next login must wait for the old session's end; then nothing is gone.
    let start = Instant::now();
    loop {
        let mut c = s.connect();
        c.greeting();
        c.ok("USER alice");
        c.send("PASS secret");
        let r = c.line();
        if r.starts_with("+OK") {
            assert!(c.ok("STAT").starts_with("3 "));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.mbox("alice"), original);
}

#[test]
fn autologout_closes_without_update() {
    let s = ServerBuilder::new("autologout")
        .user("alice", "secret")
        .mbox("alice", &three_messages())
        .arg("--timeout")
        .arg("1")
        .start();
    let original = s.mbox("alice");
    let mut c = s.login("alice", "secret");
    c.ok("DELE 1");
    let start = Instant::now();
    c.expect_closed();
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(s.mbox("alice"), original);
    assert!(s.log_text().contains("autologout"), "{}", s.log_text());
}

#[test]
fn trickling_bytes_do_not_extend_the_autologout() {
    let s = ServerBuilder::new("trickle")
        .user("alice", "secret")
        .arg("--timeout")
        .arg("2")
        .start();
    let mut c = s.connect();
    c.greeting();
    let start = Instant::now();
    // One byte every 300 ms never completes a line; the session must end after about 2 s.
    let mut closed = false;
    for _ in 0..30 {
        if c.stream.write_all(b"N").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        c.expect_closed();
    }
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn second_login_to_a_locked_maildrop_is_in_use() {
    let s = server();
    let mut first = s.login("alice", "secret");
    let mut second = s.connect();
    second.greeting();
    second.ok("USER alice");
    let r = second.err("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    first.ok("QUIT");
}

#[test]
fn session_cap_refuses_and_frees_up() {
    let s = ServerBuilder::new("cap")
        .user("alice", "secret")
        .arg("--max-sessions")
        .arg("2")
        .start();
    let mut a = s.connect();
    a.greeting();
    let mut b = s.connect();
    b.greeting();
    let mut c = s.connect();
    assert_eq!(
        c.line(),
        "-ERR [SYS/TEMP] too many sessions, try again later"
    );
    c.expect_closed();
    // The place is free as soon as the client has read "+OK" to QUIT.
    a.ok("QUIT");
    let mut d = s.connect();
    d.greeting();
    b.ok("QUIT");
}

#[test]
fn missing_mbox_is_an_empty_maildrop() {
    let s = ServerBuilder::new("missing").user("carol", "pw").start();
    let mut c = s.login("carol", "pw");
    assert_eq!(c.ok("STAT"), "0 0");
    assert!(c.multi("LIST").is_empty());
    c.err("RETR 1");
    c.ok("QUIT");
}

#[test]
fn pass_keeps_spaces_in_the_password() {
    let s = server();
    let mut c = s.login("bob", "pass with spaces");
    assert_eq!(c.ok("STAT"), "0 0");
}

#[test]
fn bare_lf_and_lowercase_work_like_telnet() {
    let s = server();
    let mut c = s.connect();
    c.greeting();
    c.send_raw(b"user alice\npass secret\nstat\n");
    assert!(c.line().starts_with("+OK"));
    assert!(c.line().starts_with("+OK alice has 3"));
    assert!(c.line().starts_with("+OK 3 "));
}

#[test]
fn nul_in_user_is_refused_not_truncated() {
    let s = server();
    let mut c = s.connect();
    c.greeting();
    c.send_raw(b"USER alice\0x\r\n");
    assert!(c.line().starts_with("-ERR"));
    c.send_raw(b"PASS secret\r\n");
    assert!(c.line().starts_with("-ERR"));
}

#[test]
fn every_command_in_the_wrong_state_is_refused() {
    let s = server();
    let mut c = s.connect();
    c.greeting();
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "RSET", "NOOP", "TOP 1 0", "UIDL", "PASS x",
    ] {
        c.err(cmd);
    }
    c.ok("USER alice");
    c.ok("PASS secret");
    for cmd in ["USER alice", "PASS secret", "APOP alice 0123", "AUTH PLAIN"] {
        c.err(cmd);
    }
    c.ok("NOOP");
    c.err("XTND");
    c.ok("QUIT");
}

#[test]
fn apop_logs_in_with_the_greeting_timestamp() {
    let s = server();
    let mut c = s.connect();
    let greeting = c.greeting();
    let timestamp = &greeting[greeting.find('<').unwrap()..];
    let digest = support::md5_hex(format!("{timestamp}secret").as_bytes());
    assert!(c
        .ok(&format!("APOP alice {digest}"))
        .starts_with("alice has 3"));
    // The same digest is useless in another session: its timestamp differs.
    let mut d = s.connect();
    d.greeting();
    let r = d.err(&format!("APOP alice {digest}"));
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
}

#[test]
fn malformed_users_file_refuses_to_start() {
    let dir = support::TempDir::new("badusers");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n# fine\nnocolon\n").unwrap();
    let mut child = Command::new(support::binary())
        .args(["--listen", "127.0.0.1:0", "--users"])
        .arg(&users)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that wrongly started would run forever: bound the wait.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("pop3d started with a malformed users file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn bad_option_exits_2_with_usage() {
    let out = Command::new(support::binary())
        .args(["--timeout", "soon"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--timeout") && err.contains("Usage"), "{err}");
}

#[test]
fn help_lists_options() {
    let out = Command::new(support::binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--inetd",
        "--users",
        "--maildrop",
        "--timeout",
        "--max-sessions",
        "--hostname",
        "--log-file",
        "--version",
    ] {
        assert!(text.contains(opt), "{opt}");
    }
}

#[test]
fn hmac_md5_helper_matches_rfc_2202() {
    // RFC 2202 section 2, test cases 1 and 6 (a key longer than the block).
    assert_eq!(
        support::hmac_md5_hex(&[0x0b; 16], b"Hi There"),
        "9294727a3638bb1c13f48ef8158bfc9d"
    );
    assert_eq!(
        support::hmac_md5_hex(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        ),
        "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
    );
}

#[test]
fn users_file_is_reread_and_a_bad_version_keeps_the_old_one() {
    let s = server();
    let users = s.dir.path().join("users");
    std::fs::write(&users, "alice:secret\ncarol:newpw\n").unwrap();
    // The file is checked at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = s.login("carol", "newpw");
    c.ok("QUIT");
    // A malformed version that would also change carol's password is refused whole.
    std::fs::write(
        &users,
        "alice:secret\ncarol:changed\nbroken line without colon\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = s.login("carol", "newpw");
    c.ok("QUIT");
    let mut d = s.connect();
    d.greeting();
    d.ok("USER carol");
    d.err("PASS changed");
    let log = s.log_text();
    assert!(log.contains("line 3"), "{log}");
}
