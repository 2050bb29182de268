//! Hashed passwords in the users file (Dovecot's `{CRYPT}` notation) end to end, and
//! `pop3d --hash-password`, which makes them.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::{base64, hmac_md5_hex, mbox_message, unbase64, Server, ServerBuilder};

/// `pop3d --hash-password` with `input` on stdin: (exit code, stdout, stderr).
fn hash_password(input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(support::binary())
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pop3d --hash-password");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `{CRYPT}` field for `password`, made by the binary as an admin would.
fn crypt_field(password: &str) -> String {
    let (code, stdout, stderr) = hash_password(format!("{password}\n").as_bytes());
    assert_eq!(code, Some(0), "{stderr}");
    stdout.trim_end().to_owned()
}

fn server() -> Server {
    ServerBuilder::new("hashed")
        .user("dora", &crypt_field("explorer pass"))
        .user("eve", "{PLAIN}{CRYPT}not-a-hash")
        .user("fred", "clear")
        .mbox("dora", &mbox_message("a@x", "Subject: one\n\nhello\n"))
        .start()
}

#[test]
fn hash_password_prints_a_crypt_field_of_the_default_kind() {
    let field = crypt_field("explorer pass");
    let hash = field.strip_prefix("{CRYPT}").expect(&field);
    assert!(hash.starts_with('$'), "{hash}");
    assert_eq!(pop3d::sys::crypt("explorer pass", hash).unwrap(), hash);
    // A fresh salt every time.
    assert_ne!(crypt_field("explorer pass"), field);
    // CRLF from a Windows editor is a line end too, not part of the password.
    let (_, crlf, _) = hash_password(b"explorer pass\r\n");
    let crlf_hash = crlf.trim_end().strip_prefix("{CRYPT}").unwrap();
    assert_eq!(
        pop3d::sys::crypt("explorer pass", crlf_hash).unwrap(),
        crlf_hash
    );
}

#[test]
fn hash_password_refuses_empty_or_several_lines() {
    for input in [&b""[..], b"\n", b"one\ntwo\n", b"\xff\n"] {
        let (code, stdout, stderr) = hash_password(input);
        assert_eq!(code, Some(1), "{input:?}");
        assert!(stdout.is_empty(), "{input:?}: {stdout}");
        assert!(stderr.contains("--hash-password"), "{input:?}: {stderr}");
    }
}

#[test]
fn a_crypt_user_logs_in_with_pass_and_auth_plain() {
    let s = server();
    let mut c = s.login("dora", "explorer pass");
    assert!(c.ok("STAT").starts_with("1 "));
    c.ok("QUIT");
    let mut c = s.connect();
    c.greeting();
    let r = c.ok(&format!("AUTH PLAIN {}", base64(b"\0dora\0explorer pass")));
    assert!(r.starts_with("dora has 1 messages"), "{r}");
    // {PLAIN} is clear text even when it looks like a scheme.
    s.login("eve", "{CRYPT}not-a-hash").ok("QUIT");
    s.login("fred", "clear").ok("QUIT");
}

#[test]
fn a_crypt_user_gets_the_failure_reply_for_the_hash_apop_and_cram_md5() {
    let s = server();
    let field = std::fs::read_to_string(s.dir.path().join("users")).unwrap();
    let hash = field
        .lines()
        .find_map(|l| l.strip_prefix("dora:{CRYPT}"))
        .unwrap()
        .to_owned();
    let mut c = s.connect();
    let greeting = c.greeting();
    c.ok("USER dora");
    let wrong = c.err(&format!("PASS {hash}"));
    assert_eq!(wrong, "-ERR [AUTH] invalid user name or password");
    // APOP keyed with the password or the hash: refused with the same reply.
    let timestamp = &greeting[greeting.find('<').unwrap()..];
    for secret in ["explorer pass", hash.as_str()] {
        let digest = support::md5_hex(format!("{timestamp}{secret}").as_bytes());
        assert_eq!(c.err(&format!("APOP dora {digest}")), wrong);
    }
    c.expect_closed();
    let mut c = s.connect();
    c.greeting();
    c.send("AUTH CRAM-MD5");
    let challenge_line = c.line();
    let challenge = unbase64(challenge_line.strip_prefix("+ ").unwrap());
    let digest = hmac_md5_hex(b"explorer pass", &challenge);
    assert_eq!(c.err(&base64(format!("dora {digest}").as_bytes())), wrong);
    // A clear-text user of the same file still has APOP.
    let mut d = s.connect();
    let greeting = d.greeting();
    let timestamp = &greeting[greeting.find('<').unwrap()..];
    let digest = support::md5_hex(format!("{timestamp}clear").as_bytes());
    assert!(d.ok(&format!("APOP fred {digest}")).starts_with("fred has"));
}
