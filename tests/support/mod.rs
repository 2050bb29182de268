//! Test support: starts the real pop3d binary on a free loopback port with a fresh directory
//! holding a users file and mboxes, and a telnet-like client whose every read has a timeout.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

/// No test read may hang the suite.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pop3d")
}

/// The package's one set of test helpers (TempDir, Rng, OneByte), shared with the library's
/// unit tests and pop3d-router's: see its doc.
#[path = "../../src/testing.rs"]
mod testing;
#[allow(unused_imports)] // Not every test uses every helper.
pub(crate) use testing::{OneByte, Rng, TempDir};

/// An mbox message as a delivery agent writes it: From line, text, separator blank line.
pub fn mbox_message(from: &str, body: &str) -> String {
    format!("From {from} Sat Jan  3 01:05:34 1996\n{body}\n")
}

/// A server on a private directory: users file `users`, mboxes `mail/<user>`.
pub struct Server {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub child: Child,
    pub log: PathBuf,
}

pub struct ServerBuilder {
    dir: TempDir,
    users: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl ServerBuilder {
    pub fn new(tag: &str) -> ServerBuilder {
        let dir = TempDir::new(tag);
        fs::create_dir_all(dir.path().join("mail")).unwrap();
        ServerBuilder {
            dir,
            users: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push_str(&format!("{name}:{password}\n"));
        self
    }

    pub fn mbox(self, user: &str, content: &str) -> Self {
        self.mbox_bytes(user, content.as_bytes())
    }

    pub fn mbox_bytes(self, user: &str, content: &[u8]) -> Self {
        fs::write(self.dir.path().join("mail").join(user), content).unwrap();
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the server through a wrapper command (e.g. setpriv to drop privileges).
    pub fn wrapper(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Where the server writes its log (the directory must be writable by the server).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pop3d.log")
    }

    pub fn start(self) -> Server {
        let users = self.dir.path().join("users");
        fs::write(&users, &self.users).unwrap();
        let log = self.dir.path().join("pop3d.log");
        let addr = free_port();
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--users")
            .arg(&users)
            .arg("--maildrop")
            .arg(self.dir.path().join("mail/%u"))
            .arg("--hostname")
            .arg("test.example")
            .arg("--log-file")
            .arg(&log)
            .args(&self.args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pop3d");
        let server = Server {
            dir: self.dir,
            addr,
            child,
            log,
        };
        server.wait_ready();
        server
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Server {
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(self.addr).is_ok() {
                // That probe was a session too: let it end, so tests of the caps start from
                // zero sessions (its slot is freed just after its socket closes).
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("pop3d did not start listening on {}", self.addr);
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects, reads the greeting and logs in with USER/PASS.
    pub fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.connect();
        c.greeting();
        c.ok(&format!("USER {user}"));
        c.ok(&format!("PASS {password}"));
        c
    }

    pub fn mbox_path(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    pub fn mbox(&self, user: &str) -> Vec<u8> {
        fs::read(self.mbox_path(user)).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A telnet-like client.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Reads the greeting, which must be +OK; returns it.
    pub fn greeting(&mut self) -> String {
        let g = self.line();
        assert!(g.starts_with("+OK "), "greeting: {g:?}");
        g
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One response line, which must end in CRLF; returned without it.
    pub fn line(&mut self) -> String {
        let raw = self.raw_line();
        assert!(raw.ends_with(b"\r\n"), "line without CRLF: {raw:?}");
        assert!(raw.len() <= 512, "line over 512 octets");
        String::from_utf8_lossy(&raw[..raw.len() - 2]).into_owned()
    }

    pub fn raw_line(&mut self) -> Vec<u8> {
        let mut raw = Vec::new();
        let n = self.reader.read_until(b'\n', &mut raw).expect("read");
        assert!(n > 0, "connection closed");
        raw
    }

    /// Sends a command that must answer +OK; returns the text after "+OK".
    pub fn ok(&mut self, command: &str) -> String {
        self.send(command);
        let reply = self.line();
        assert!(reply.starts_with("+OK"), "{command:?} -> {reply:?}");
        reply[3..].trim_start().to_string()
    }

    /// Sends a command that must answer -ERR; returns the whole reply line.
    pub fn err(&mut self, command: &str) -> String {
        self.send(command);
        let reply = self.line();
        assert!(reply.starts_with("-ERR"), "{command:?} -> {reply:?}");
        reply
    }

    /// A multi-line command: +OK then lines up to ".", unstuffed, as strings.
    pub fn multi(&mut self, command: &str) -> Vec<String> {
        self.multi_raw(command)
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect()
    }

    /// A multi-line command; body lines without CRLF and with dot-stuffing removed.
    pub fn multi_raw(&mut self, command: &str) -> Vec<Vec<u8>> {
        self.send(command);
        let first = self.line();
        assert!(first.starts_with("+OK"), "{command:?} -> {first:?}");
        self.body_lines()
    }

    pub fn body_lines(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        loop {
            let raw = self.raw_line();
            assert!(raw.ends_with(b"\r\n"), "body line without CRLF: {raw:?}");
            let content = &raw[..raw.len() - 2];
            if content == b"." {
                return lines;
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            lines.push(content.to_vec());
        }
    }

    /// RETR n: the message exactly as sent (CRLF lines joined), unstuffed.
    pub fn retr(&mut self, n: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for l in self.multi_raw(&format!("RETR {n}")) {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Expects the server to close the connection (EOF), within the read timeout.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected close, got {e} after {rest:?}"),
        }
    }
}

/// MD5 (RFC 1321) from the md-5 crate, as a client computes APOP and CRAM-MD5 digests:
/// independent of pop3d::auth, so a bug there cannot hide in the tests' own digests.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5(data))
}

/// RFC 2104 HMAC-MD5, for CRAM-MD5 on the client side.
pub fn hmac_md5_hex(key: &[u8], message: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&md5(&inner));
    md5_hex(&outer)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unbase64(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
