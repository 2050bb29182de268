//! --trusted-proxy: connections from a trusted proxy open with a PROXY protocol header whose
//! client address pop3d then uses for its log and its per-address cap.

use crate::support;

use std::io::Read;
use support::{mbox_message, Client, Server, ServerBuilder};

fn server(extra: &[&str]) -> Server {
    let mut b = ServerBuilder::new("proxy")
        .user("alice", "secret")
        .mbox("alice", &mbox_message("a@x", "Subject: one\n\nhello\n"))
        .arg("--trusted-proxy")
        .arg("127.0.0.1");
    for a in extra {
        b = b.arg(a);
    }
    b.start()
}

fn proxied(s: &Server, source: &str) -> Client {
    let mut c = s.connect();
    c.send_raw(format!("PROXY TCP4 {source} 127.0.0.1 40000 110\r\n").as_bytes());
    c
}

#[test]
fn v1_header_names_the_client_in_the_log() {
    // 192.0.2.7 is off this host: only --plaintext-auth always lets it use USER/PASS.
    let s = server(&["--plaintext-auth", "always"]);
    let mut c = proxied(&s, "192.0.2.7");
    c.greeting();
    c.ok("USER alice");
    c.err("PASS wrong");
    c.ok("USER alice");
    c.ok("PASS secret");
    c.ok("QUIT");
    c.expect_closed();
    let log = s.log_text();
    assert!(log.contains("192.0.2.7:40000: connected"), "{log}");
    // The failed login names the client, not the proxy (fail2ban bans rhost).
    assert!(
        log.contains(
            r#"192.0.2.7:40000: auth failed: rhost=192.0.2.7 mechanism=PASS user="alice""#
        ),
        "{log}"
    );
    assert!(
        log.contains("192.0.2.7:40000: USER/PASS login as alice"),
        "{log}"
    );
}

#[test]
fn v2_header_is_accepted() {
    let s = server(&[]);
    let mut c = s.connect();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
    header.extend_from_slice(&4242u16.to_be_bytes());
    header.extend_from_slice(&110u16.to_be_bytes());
    c.send_raw(&header);
    c.greeting();
    c.ok("QUIT");
    assert!(
        s.log_text().contains("198.51.100.9:4242: connected"),
        "{}",
        s.log_text()
    );
}

#[test]
fn trusted_peer_without_header_gets_no_greeting() {
    let s = server(&[]);
    let mut c = s.connect();
    c.send("USER alice");
    let mut rest = Vec::new();
    let _ = c.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        s.log_text().contains("no valid PROXY header"),
        "{}",
        s.log_text()
    );
}

#[test]
fn proxy_line_from_an_untrusted_peer_is_a_bad_command() {
    let s = ServerBuilder::new("untrusted")
        .user("alice", "secret")
        .start();
    let mut c = s.connect();
    c.greeting();
    c.err("PROXY TCP4 192.0.2.7 127.0.0.1 40000 110");
    c.ok("USER alice");
}

#[test]
fn per_address_cap_counts_the_proxied_client() {
    let s = server(&["--max-per-ip", "1"]);
    let mut a = proxied(&s, "192.0.2.1");
    a.greeting();
    // Another client through the same proxy is a different address: admitted.
    let mut b = proxied(&s, "192.0.2.2");
    b.greeting();
    // The same client again is over its cap.
    let mut c = proxied(&s, "192.0.2.1");
    let r = c.line();
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    a.ok("QUIT");
    b.ok("QUIT");
}

/// v1 "PROXY UNKNOWN" from a trusted proxy on loopback names no client: the connection's own
/// loopback address is the proxy's, so it says nothing of where the client is. Not secure:
/// clear-text logins are neither offered nor taken (a health check never logs in).
#[test]
fn unknown_header_from_a_loopback_proxy_is_insecure() {
    let s = server(&[]);
    let mut c = s.connect();
    c.send_raw(b"PROXY UNKNOWN\r\n");
    c.greeting();
    let capa = c.multi("CAPA");
    assert!(!capa.iter().any(|l| l == "USER"), "{capa:?}");
    c.err("USER alice");
    c.ok("QUIT");
    let log = s.log_text();
    assert!(log.contains("connected, insecure"), "{log}");
}

/// The same from v2's LOCAL command.
#[test]
fn v2_local_header_from_a_loopback_proxy_is_insecure() {
    let s = server(&[]);
    let mut c = s.connect();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    c.send_raw(&header);
    c.greeting();
    let capa = c.multi("CAPA");
    assert!(!capa.iter().any(|l| l == "USER"), "{capa:?}");
    c.ok("QUIT");
}
