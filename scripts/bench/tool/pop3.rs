//! A minimal POP3 client (RFC 1939) for load: status lines, multi-line responses read without
//! copying, dot-unstuffing and octet counting at memory speed, and a separate write half so a
//! scenario can pipeline commands from another thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use pop3d::bytes::find_byte;

use crate::{fail, Outcome};

/// Large enough that a 10 MB RETR is read in few system calls.
const READ_BUFFER: usize = 256 * 1024;

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
}

pub fn resolve(addr: &str) -> Outcome<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| fail!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| fail!("{addr}: no address"))
}

impl Conn {
    /// Connects and reads the greeting, which must be +OK.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Outcome<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut conn = Conn {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            writer,
            line: Vec::with_capacity(512),
        };
        conn.status().map_err(|e| fail!("greeting: {e}"))?;
        Ok(conn)
    }

    /// A second handle on the socket for pipelined writes.
    pub fn write_half(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    pub fn send(&mut self, command: &str) -> io::Result<()> {
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.writer.write_all(&line)
    }

    /// Reads one status line; +OK gives its text, anything else fails.
    pub fn status(&mut self) -> Outcome<String> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Err(fail!("connection closed"));
        }
        let text = String::from_utf8_lossy(&self.line).trim_end().to_string();
        match text.strip_prefix("+OK") {
            Some(rest) => Ok(rest.trim_start().to_string()),
            None => Err(fail!("{text}")),
        }
    }

    /// Sends a command and reads its status line.
    pub fn command(&mut self, command: &str) -> Outcome<String> {
        self.send(command)?;
        self.status().map_err(|e| fail!("{}: {e}", verb(command)))
    }

    pub fn login(&mut self, user: &str, password: &str) -> Outcome<String> {
        self.command(&format!("USER {user}"))?;
        self.command(&format!("PASS {password}"))
    }

    /// STAT: (messages, octets).
    pub fn stat(&mut self) -> Outcome<(u64, u64)> {
        let reply = self.command("STAT")?;
        let mut words = reply.split_whitespace().map(|w| w.parse::<u64>());
        match (words.next(), words.next()) {
            (Some(Ok(n)), Some(Ok(octets))) => Ok((n, octets)),
            _ => Err(fail!("STAT: unexpected reply {reply:?}")),
        }
    }

    /// The lines of a multi-line response, unstuffed, without the final ".".
    pub fn lines(&mut self) -> Outcome<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            if self.reader.read_until(b'\n', &mut self.line)? == 0 {
                return Err(fail!("connection closed in a multi-line response"));
            }
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text == "." {
                return Ok(lines);
            }
            lines.push(text.strip_prefix('.').unwrap_or(text).to_string());
        }
    }

    /// QUIT, then waits for the server to close, so that TIME_WAIT stays on its side and a
    /// long run does not use up the client's ports.
    pub fn quit(mut self) -> Outcome<()> {
        self.command("QUIT")?;
        self.wait_closed();
        Ok(())
    }

    pub fn wait_closed(&mut self) {
        let mut sink = [0u8; 512];
        while matches!(self.reader.read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Reads a multi-line body to its final "." and returns its octets as the server counts
    /// them: CRLF line ends, before byte-stuffing (RFC 1939 section 11).
    pub fn body(&mut self) -> Outcome<u64> {
        let mut counter = BodyCounter::default();
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(fail!("connection closed in a message body"));
            }
            let (used, done) = counter.feed(buf);
            self.reader.consume(used);
            if done {
                return Ok(counter.octets);
            }
        }
    }
}

fn verb(command: &str) -> &str {
    let verb = command.split(' ').next().unwrap_or(command);
    if verb.eq_ignore_ascii_case("PASS") {
        "PASS"
    } else {
        command
    }
}

/// Where the counter stands relative to line starts, where stuffing and the end are decided.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum At {
    #[default]
    LineStart,
    Dot,
    DotCr,
    MidLine,
}

/// Counts body octets across buffer boundaries.
#[derive(Default)]
struct BodyCounter {
    at: At,
    octets: u64,
}

impl BodyCounter {
    /// Consumes bytes of `buf`; returns how many were used and whether the final ".\r\n" was.
    fn feed(&mut self, buf: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < buf.len() {
            match self.at {
                At::MidLine => match find_byte(&buf[i..], b'\n') {
                    Some(p) => {
                        self.octets += p as u64 + 1;
                        i += p + 1;
                        self.at = At::LineStart;
                    }
                    None => {
                        self.octets += (buf.len() - i) as u64;
                        i = buf.len();
                    }
                },
                At::LineStart => {
                    if buf[i] == b'.' {
                        self.at = At::Dot;
                        i += 1;
                    } else {
                        self.at = At::MidLine;
                    }
                }
                At::Dot => match buf[i] {
                    b'\r' => {
                        self.at = At::DotCr;
                        i += 1;
                    }
                    // ".." is a stuffed "."; the first dot is not message data.
                    b'.' => {
                        self.octets += 1;
                        self.at = At::MidLine;
                        i += 1;
                    }
                    // A lone dot the server failed to stuff: count it as data.
                    _ => {
                        self.octets += 1;
                        self.at = At::MidLine;
                    }
                },
                At::DotCr => {
                    if buf[i] == b'\n' {
                        return (i + 1, true);
                    }
                    self.octets += 2;
                    self.at = At::MidLine;
                }
            }
        }
        (i, false)
    }
}
