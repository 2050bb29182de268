//! RFC 2449 and RFC 5034 over TCP: CAPA in both states, response codes, real pipelining,
//! LOGIN-DELAY across sessions, SASL PLAIN and CRAM-MD5 end to end.

use crate::support;

use std::io::Read;
use support::{base64, hmac_md5_hex, mbox_message, unbase64, Server, ServerBuilder};

fn server(extra: &[&str]) -> Server {
    let mut b = ServerBuilder::new("ext")
        .user("alice", "secret")
        .user("tim", "tanstaaftanstaaf")
        .mbox(
            "alice",
            &[
                mbox_message("a@x", "Subject: one\n\nhello\n"),
                mbox_message("b@x", "Subject: two\n\nworld\n"),
            ]
            .concat(),
        );
    for a in extra {
        b = b.arg(a);
    }
    b.start()
}

#[test]
fn capa_before_and_after_login() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    let before = c.multi("CAPA");
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "SASL PLAIN CRAM-MD5",
        "EXPIRE NEVER",
    ] {
        assert!(
            before.iter().any(|l| l == cap),
            "{cap} missing from {before:?}"
        );
    }
    let implementation = before
        .iter()
        .find(|l| l.starts_with("IMPLEMENTATION "))
        .unwrap();
    assert!(implementation.contains("pop3d"), "{implementation}");
    c.ok("USER alice");
    c.ok("PASS secret");
    let after = c.multi("CAPA");
    assert!(
        !after.iter().any(|l| l == "USER" || l.starts_with("SASL")),
        "{after:?}"
    );
    assert!(after.iter().any(|l| l == "PIPELINING"));
}

#[test]
fn pipelined_commands_come_back_in_order_in_one_go() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    c.send_raw(
        b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nNOOP\r\nQUIT\r\n",
    );
    let mut all = Vec::new();
    c.reader.read_to_end(&mut all).unwrap();
    let text = String::from_utf8(all).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "+OK send PASS");
    assert!(lines[1].starts_with("+OK alice has 2 messages"));
    assert!(lines[2].starts_with("+OK 2 "));
    assert!(lines[3].starts_with("+OK 2 messages"));
    assert_eq!(&lines[6..7], ["."]);
    assert!(lines[7].starts_with("+OK 2 "));
    assert!(lines[8].starts_with("+OK") && lines[8].ends_with("octets"));
    assert!(
        text.ends_with("+OK\r\n+OK pop3d signing off (0 messages deleted)\r\n"),
        "{text}"
    );
}

#[test]
fn login_delay_is_announced_and_enforced_across_sessions() {
    let s = server(&["--login-delay", "300"]);
    let mut c = s.connect();
    c.greeting();
    assert!(c.multi("CAPA").iter().any(|l| l == "LOGIN-DELAY 300"));
    c.ok("USER alice");
    c.ok("PASS secret");
    c.ok("QUIT");
    let mut d = s.connect();
    d.greeting();
    d.ok("USER alice");
    let r = d.err("PASS secret");
    assert!(r.starts_with("-ERR [LOGIN-DELAY]"), "{r}");
    // A wrong password is refused as such: the delay tells a stranger nothing.
    d.ok("USER alice");
    assert!(d.err("PASS wrong").starts_with("-ERR [AUTH]"));
    // Another user is not held up.
    let mut e = s.login("tim", "tanstaaftanstaaf");
    e.ok("QUIT");
}

#[test]
fn auth_plain_with_initial_response() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    let r = c.ok(&format!("AUTH PLAIN {}", base64(b"\0alice\0secret")));
    assert!(r.starts_with("alice has 2"), "{r}");
}

#[test]
fn auth_plain_without_initial_response() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    c.send("AUTH PLAIN");
    assert_eq!(c.line(), "+ ");
    let r = c.ok(&base64(b"alice\0alice\0secret"));
    assert!(r.starts_with("alice has 2"), "{r}");
}

#[test]
fn auth_plain_wrong_password_is_an_auth_error() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    let r = c.err(&format!("AUTH PLAIN {}", base64(b"\0alice\0nope")));
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    // The session goes on.
    let r = c.ok(&format!("AUTH PLAIN {}", base64(b"\0alice\0secret")));
    assert!(r.starts_with("alice has"), "{r}");
}

#[test]
fn auth_cram_md5_round_trip() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    c.send("AUTH CRAM-MD5");
    let challenge_line = c.line();
    let challenge = unbase64(challenge_line.strip_prefix("+ ").unwrap());
    assert!(challenge.starts_with(b"<") && challenge.ends_with(b">"));
    let digest = hmac_md5_hex(b"tanstaaftanstaaf", &challenge);
    let r = c.ok(&base64(format!("tim {digest}").as_bytes()));
    assert!(r.starts_with("tim has 0 messages"), "{r}");
}

#[test]
fn auth_cancel_bad_base64_and_unknown_mechanism_keep_the_session() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    c.send("AUTH CRAM-MD5");
    assert!(c.line().starts_with("+ "));
    c.err("*");
    c.err("AUTH PLAIN %%%");
    c.err("AUTH GSSAPI");
    assert_eq!(c.multi("AUTH"), ["PLAIN", "CRAM-MD5"]);
    c.ok("USER alice");
    c.ok("PASS secret");
}

#[test]
fn auth_initial_response_may_fill_the_line() {
    let s = server(&[]);
    let mut c = s.connect();
    c.greeting();
    // A long authzid makes the line long (but under 255 octets); it must parse, then fail
    // because pop3d does not let one user act as another.
    let authzid = "z".repeat(150);
    let initial = base64(format!("{authzid}\0alice\0secret").as_bytes());
    assert!(initial.len() > 40 && initial.len() < 240);
    let r = c.err(&format!("AUTH PLAIN {initial}"));
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
}

#[test]
fn mbox_that_is_a_directory_answers_sys_perm() {
    let b = ServerBuilder::new("notafile").user("dora", "pw");
    std::fs::create_dir_all(b.dir().join("mail/dora")).unwrap();
    let s = b.start();
    let mut c = s.connect();
    c.greeting();
    c.ok("USER dora");
    let r = c.err("PASS pw");
    assert!(r.starts_with("-ERR [SYS/PERM]"), "{r}");
}

#[test]
fn replies_are_sent_when_the_last_packet_ends_inside_a_line() {
    let s = server(&[]);
    let mut c = s.login("alice", "secret");
    // The answer to STAT must not wait for the rest of the next command.
    c.send_raw(b"STAT\r\nST");
    assert!(c.line().starts_with("+OK 2 "));
    c.send_raw(b"AT\r\n");
    assert!(c.line().starts_with("+OK 2 "));
}
