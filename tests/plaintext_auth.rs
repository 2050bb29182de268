//! --plaintext-auth and --secure-listen over TCP: a client that is not on this host gets no
//! USER or PLAIN and is refused clear-text logins, unless it came through a secure listener
//! or a PROXY v2 header says it used TLS. Non-loopback clients are played by a PROXY header
//! from 127.0.0.1, a trusted proxy, naming 192.0.2.7 (TEST-NET-1).

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    base64, hmac_md5_hex, mbox_message, md5_hex, unbase64, Client, Server, ServerBuilder,
};

const REFUSED: &str =
    "-ERR [AUTH] plaintext authentication disallowed on non-secure (SSL/TLS) connections, use TLS";

struct Site {
    server: Server,
    secure: SocketAddr,
}

fn site(extra: &[&str]) -> Site {
    let secure = support::free_port();
    let mut b = ServerBuilder::new("plaintext")
        .user("alice", "secret")
        .mbox("alice", &mbox_message("a@x", "Subject: one\n\nhello\n"))
        .arg("--trusted-proxy")
        .arg("127.0.0.1")
        .arg("--secure-listen")
        .arg(&secure.to_string());
    for a in extra {
        b = b.arg(a);
    }
    // Both listeners are bound before either accepts, so the first being ready is enough.
    Site {
        server: b.start(),
        secure,
    }
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 110\r\n").into_bytes()
}

/// A v2 PROXY header for 192.0.2.7:40000, with the SSL TLV if `client_bits` is given.
fn v2(client_bits: Option<u8>) -> Vec<u8> {
    let mut payload = vec![192, 0, 2, 7, 127, 0, 0, 1];
    payload.extend_from_slice(&40000u16.to_be_bytes());
    payload.extend_from_slice(&110u16.to_be_bytes());
    if let Some(bits) = client_bits {
        // PP2_TYPE_SSL: client, verify (0 = ok), then a PP2_SUBTYPE_SSL_VERSION sub-TLV.
        let mut value = vec![bits, 0, 0, 0, 0, 0x21, 0, 7];
        value.extend_from_slice(b"TLSv1.3");
        payload.push(0x20);
        payload.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        payload.extend_from_slice(&value);
    }
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&payload);
    header
}

fn proxied(addr: SocketAddr, header: &[u8]) -> (Client, String) {
    let mut c = Client::connect(addr);
    c.send_raw(header);
    let greeting = c.greeting();
    (c, greeting)
}

fn capabilities(c: &mut Client) -> Vec<String> {
    c.multi("CAPA")
}

fn assert_insecure(c: &mut Client) {
    let caps = capabilities(c);
    assert!(!caps.iter().any(|l| l == "USER"), "{caps:?}");
    assert!(caps.iter().any(|l| l == "SASL CRAM-MD5"), "{caps:?}");
    assert_eq!(c.err("USER alice"), REFUSED);
    assert_eq!(c.err("PASS secret"), REFUSED);
    let plain = base64(b"\0alice\0secret");
    assert_eq!(c.err(&format!("AUTH PLAIN {plain}")), REFUSED);
    assert_eq!(c.err("AUTH PLAIN"), REFUSED);
    assert!(!c.multi("AUTH").iter().any(|l| l == "PLAIN"));
}

fn assert_takes_user_pass(c: &mut Client) {
    let caps = capabilities(c);
    assert!(caps.iter().any(|l| l == "USER"), "{caps:?}");
    assert!(caps.iter().any(|l| l == "SASL PLAIN CRAM-MD5"), "{caps:?}");
    c.ok("USER alice");
    assert!(c.ok("PASS secret").starts_with("alice"));
    c.ok("QUIT");
}

fn apop(c: &mut Client, greeting: &str) {
    let start = greeting.find('<').unwrap();
    let timestamp = &greeting[start..];
    let digest = md5_hex(format!("{timestamp}secret").as_bytes());
    assert!(c.ok(&format!("APOP alice {digest}")).starts_with("alice"));
    assert_eq!(c.retr(1), b"Subject: one\r\n\r\nhello\r\n");
    c.ok("QUIT");
}

#[test]
fn v1_client_off_this_host_is_refused_clear_text_and_logs_in_with_apop() {
    let s = site(&[]);
    let (mut c, greeting) = proxied(s.server.addr, &v1("192.0.2.7"));
    assert_insecure(&mut c);
    apop(&mut c, &greeting);
    let log = s.server.log_text();
    assert!(
        log.contains("192.0.2.7:40000: connected, insecure"),
        "{log}"
    );
    assert!(log.contains("clear-text login refused"), "{log}");
    assert!(!log.contains("secret"), "password in the log: {log}");
}

#[test]
fn cram_md5_works_on_an_insecure_connection() {
    let s = site(&[]);
    let (mut c, _) = proxied(s.server.addr, &v1("192.0.2.7"));
    c.send("AUTH CRAM-MD5");
    let challenge = c.line();
    let challenge = unbase64(challenge.strip_prefix("+ ").unwrap());
    let digest = hmac_md5_hex(b"secret", &challenge);
    assert!(c
        .ok(&base64(format!("alice {digest}").as_bytes()))
        .contains("alice"));
    c.ok("QUIT");
}

#[test]
fn v2_without_the_ssl_tlv_is_insecure() {
    let s = site(&[]);
    let (mut c, _) = proxied(s.server.addr, &v2(None));
    assert_insecure(&mut c);
    // The SSL TLV without the PP2_CLIENT_SSL bit says the client did not use TLS.
    let (mut c, _) = proxied(s.server.addr, &v2(Some(0x00)));
    assert_insecure(&mut c);
    assert!(s
        .server
        .log_text()
        .contains("192.0.2.7:40000: connected, insecure"));
}

#[test]
fn v2_with_the_client_ssl_bit_takes_user_pass() {
    let s = site(&[]);
    let (mut c, _) = proxied(s.server.addr, &v2(Some(0x01)));
    assert_takes_user_pass(&mut c);
    let log = s.server.log_text();
    assert!(
        log.contains("192.0.2.7:40000: connected, secure (tls at the proxy)"),
        "{log}"
    );
}

#[test]
fn secure_listener_takes_user_pass_from_a_client_off_this_host() {
    let s = site(&[]);
    let (mut c, _) = proxied(s.secure, &v1("192.0.2.7"));
    assert_takes_user_pass(&mut c);
    let (mut c, _) = proxied(s.secure, &v2(None));
    assert_takes_user_pass(&mut c);
    let log = s.server.log_text();
    assert!(
        log.contains("192.0.2.7:40000: connected, secure (secure listener)"),
        "{log}"
    );
    assert!(
        log.contains(&format!("listening on {}, secure", s.secure)),
        "the secure listener is not logged: {log}"
    );
}

#[test]
fn loopback_client_is_secure() {
    let s = site(&[]);
    let (mut c, _) = proxied(s.server.addr, &v1("127.0.0.1"));
    assert_takes_user_pass(&mut c);
    assert!(s
        .server
        .log_text()
        .contains("127.0.0.1:40000: connected, secure (loopback)"));
}

#[test]
fn plaintext_always_takes_user_pass_from_anywhere() {
    let s = site(&["--plaintext-auth", "always"]);
    let (mut c, _) = proxied(s.server.addr, &v1("192.0.2.7"));
    assert_takes_user_pass(&mut c);
}

#[test]
fn plaintext_always_on_an_open_address_warns_at_start() {
    // A --secure-listen only server bound to 127.0.0.1 does not warn; one that also listens on
    // every address (reached here only over loopback) does.
    let s = site(&["--plaintext-auth", "always"]);
    assert!(
        !s.server.log_text().contains("in the clear"),
        "{}",
        s.server.log_text()
    );
    let open = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = site(&["--plaintext-auth", "always", "--listen", &open.to_string()]);
    let log = s.server.log_text();
    assert!(
        log.contains("--plaintext-auth always") && log.contains("in the clear"),
        "{log}"
    );
}

#[test]
fn inetd_judges_the_client_named_by_a_trusted_proxy() {
    let dir = support::TempDir::new("plaintext-inetd");
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    std::fs::write(dir.path().join("users"), "alice:secret\n").unwrap();
    let log = dir.path().join("log");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let fd: OwnedFd = accepted.into();
    let mut child = Command::new(support::binary())
        .args(["--inetd", "--trusted-proxy", "127.0.0.1", "--log-file"])
        .arg(&log)
        .arg("--users")
        .arg(dir.path().join("users"))
        .arg("--maildrop")
        .arg(dir.path().join("mail/%u"))
        .stdin(Stdio::from(fd.try_clone().unwrap()))
        .stdout(Stdio::from(fd.try_clone().unwrap()))
        .stderr(Stdio::from(fd))
        .spawn()
        .unwrap();
    client.write_all(&v1("192.0.2.7")).unwrap();
    client.write_all(b"USER alice\r\nQUIT\r\n").unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(text.contains(REFUSED), "{text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("192.0.2.7:40000: connected (inetd), insecure"),
        "{logged}"
    );
}
