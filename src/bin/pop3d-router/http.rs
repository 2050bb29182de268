//! nginx's `auth_http` protocol on the wire: one bounded HTTP/1.0 request head in, an
//! `AuthRequest` out; an `Answer` out as the response nginx reads. Pure (any `BufRead`, any
//! `Write`), unit-tested; deciding the answer is the router's job.
//!
//! What nginx 1.22's mail module sends, as seen on the wire (one request per connection):
//!
//! ```text
//! GET /auth HTTP/1.0
//! Host: 127.0.0.1
//! Auth-Method: plain | apop | cram-md5 | login
//! Auth-User: alice               (percent-escaped: "%" and space at least)
//! Auth-Pass: s3cr%25t%20x        (the password, or the APOP / CRAM-MD5 digest in hex)
//! Auth-Salt: <1846935721.1795964470@vm>   (apop and cram-md5 only: nginx's own challenge)
//! Auth-Protocol: pop3
//! Auth-Login-Attempt: 1
//! Client-IP: 127.0.0.2
//! Auth-SSL: on                   (only when the client's connection to nginx uses TLS)
//! ```
//!
//! and what it reads back: `Auth-Status: OK` with `Auth-Server` (an address, never resolved)
//! and `Auth-Port`, and `Auth-Pass` when the backend is to get a different password than the
//! client typed (nginx copies it as it is, without unescaping, minus surrounding blanks); or
//! any other `Auth-Status` text, which the client reads after "-ERR ", with `Auth-Wait: N` to
//! let the client try again after N seconds (without it nginx closes the connection).

use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};

use pop3d::bytes::is_digits;

/// The whole request head. nginx's is a few hundred octets: an escaped password of 255
/// octets (the POP3 line limit) is at most 765, and `auth_http_header` adds a line or two.
pub const MAX_HEAD_OCTETS: usize = 8 * 1024;

/// Header lines in one request; nginx sends about ten.
pub const MAX_HEADER_LINES: usize = 64;

/// How a client logged in to nginx (`Auth-Method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// USER + PASS, or AUTH PLAIN: `Auth-Pass` is the password.
    Plain,
    /// AUTH LOGIN (nginx offers it with `pop3_auth plain`): `Auth-Pass` is the password.
    Login,
    /// APOP: `Auth-Pass` is md5(salt + password) in hex.
    Apop,
    /// AUTH CRAM-MD5: `Auth-Pass` is HMAC-MD5(password, salt) in hex.
    CramMd5,
    /// Anything else nginx may send (external, none: SMTP's); refused.
    Other(String),
}

impl Method {
    fn parse(text: &str) -> Method {
        match text.to_ascii_lowercase().as_str() {
            "plain" => Method::Plain,
            "login" => Method::Login,
            "apop" => Method::Apop,
            "cram-md5" => Method::CramMd5,
            _ => Method::Other(text.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Plain => f.write_str("plain"),
            Method::Login => f.write_str("login"),
            Method::Apop => f.write_str("apop"),
            Method::CramMd5 => f.write_str("cram-md5"),
            Method::Other(text) => write!(f, "{}", text.escape_debug()),
        }
    }
}

/// One auth_http request, the fields the router uses.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub method: Method,
    /// `Auth-Protocol`: "pop3" (nginx also sends "imap" and "smtp").
    pub protocol: String,
    /// `Auth-User` unescaped; octets, since nothing made the client send UTF-8.
    pub user: Vec<u8>,
    /// `Auth-Pass` unescaped: a password or a hex digest.
    pub pass: Vec<u8>,
    /// `Auth-Salt` as sent: the APOP timestamp or CRAM-MD5 challenge, brackets included.
    pub salt: Option<String>,
    /// `Client-IP`: the real client, once nginx has it from a PROXY header or the socket.
    pub client: Option<IpAddr>,
    /// `Auth-Login-Attempt`: 1 for the first try on this connection.
    pub attempt: u32,
    /// `Auth-SSL: on`: the client reached nginx over TLS (POP3S, or after STLS). nginx's mail
    /// auth_http module sends it whenever the client connection has TLS, and omits it else.
    pub ssl: bool,
}

impl fmt::Debug for AuthRequest {
    // The password must not reach a log through a stray {:?}.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("method", &self.method)
            .field("protocol", &self.protocol)
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("pass", &"<redacted>")
            .field("salt", &self.salt)
            .field("client", &self.client)
            .field("attempt", &self.attempt)
            .field("ssl", &self.ssl)
            .finish()
    }
}

#[derive(Debug)]
pub enum HttpError {
    /// The connection ended before its first octet.
    Empty,
    /// The head is longer than `MAX_HEAD_OCTETS` or has too many lines.
    TooLarge,
    /// The connection ended before the blank line that ends the head.
    Truncated,
    /// Not a request nginx would send (what, in a few words).
    Malformed(&'static str),
    Io(io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Empty => f.write_str("connection closed without a request"),
            HttpError::TooLarge => f.write_str("request head too large"),
            HttpError::Truncated => f.write_str("connection closed inside the request head"),
            HttpError::Malformed(why) => write!(f, "malformed request: {why}"),
            HttpError::Io(e) => write!(f, "reading the request: {e}"),
        }
    }
}

impl Error for HttpError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            HttpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(error: io::Error) -> Self {
        HttpError::Io(error)
    }
}

/// Reads one request head (request line, header lines, blank line) within `MAX_HEAD_OCTETS`
/// and picks out the auth_http fields. Header names are case-insensitive; a field the router
/// uses may appear only once; unknown headers are ignored.
pub fn read_request<R: BufRead>(input: &mut R) -> Result<AuthRequest, HttpError> {
    let mut budget = MAX_HEAD_OCTETS;
    if input.fill_buf()?.is_empty() {
        return Err(HttpError::Empty);
    }
    let request_line = read_line(input, &mut budget)?;
    let request_line =
        std::str::from_utf8(&request_line).map_err(|_| HttpError::Malformed("request line"))?;
    let mut words = request_line.split(' ');
    let (Some("GET"), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(HttpError::Malformed(
            "request line is not get target http/1.x",
        ));
    };
    if target.is_empty() || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(HttpError::Malformed(
            "request line is not get target http/1.x",
        ));
    }

    let mut fields = Fields::default();
    let mut lines = 0;
    loop {
        let line = read_line(input, &mut budget)?;
        if line.is_empty() {
            break;
        }
        lines += 1;
        if lines > MAX_HEADER_LINES {
            return Err(HttpError::TooLarge);
        }
        fields.take(&line)?;
    }
    fields.into_request()
}

/// One line without its CRLF (or bare LF), charged to the head's budget.
fn read_line<R: BufRead>(input: &mut R, budget: &mut usize) -> Result<Vec<u8>, HttpError> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX);
    input.take(limit).read_until(b'\n', &mut line)?;
    *budget -= line.len();
    match line.last() {
        Some(b'\n') => {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(line)
        }
        _ if *budget == 0 => Err(HttpError::TooLarge),
        _ => Err(HttpError::Truncated),
    }
}

/// The headers the router uses, as they arrive.
#[derive(Default)]
struct Fields {
    method: Option<String>,
    protocol: Option<String>,
    user: Option<Vec<u8>>,
    pass: Option<Vec<u8>>,
    salt: Option<String>,
    client: Option<String>,
    attempt: Option<String>,
    ssl: Option<String>,
}

impl Fields {
    fn take(&mut self, line: &[u8]) -> Result<(), HttpError> {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
            return Err(HttpError::Malformed("bad header name"));
        }
        let value = value.trim_ascii();
        let text = || {
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| HttpError::Malformed("header value is not utf-8"))
        };
        let slot_name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let duplicate = match slot_name.as_str() {
            "auth-method" => self.method.replace(text()?).is_some(),
            "auth-protocol" => self.protocol.replace(text()?).is_some(),
            "auth-user" => self.user.replace(unescape(value)?).is_some(),
            "auth-pass" => self.pass.replace(unescape(value)?).is_some(),
            "auth-salt" => self.salt.replace(text()?).is_some(),
            "client-ip" => self.client.replace(text()?).is_some(),
            "auth-login-attempt" => self.attempt.replace(text()?).is_some(),
            "auth-ssl" => self.ssl.replace(text()?).is_some(),
            _ => false,
        };
        if duplicate {
            return Err(HttpError::Malformed("a header given twice"));
        }
        Ok(())
    }

    fn into_request(self) -> Result<AuthRequest, HttpError> {
        let missing = HttpError::Malformed;
        let attempt = match self.attempt {
            None => 1,
            Some(text) => Some(text.as_str())
                .filter(|t| t.len() <= 9 && is_digits(t))
                .and_then(|t| t.parse().ok())
                .ok_or(HttpError::Malformed("bad auth-login-attempt"))?,
        };
        let client = match self.client {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|_| HttpError::Malformed("bad client-ip"))?,
            ),
        };
        Ok(AuthRequest {
            method: Method::parse(&self.method.ok_or(missing("no auth-method"))?),
            protocol: self.protocol.ok_or(missing("no auth-protocol"))?,
            user: self.user.ok_or(missing("no auth-user"))?,
            pass: self.pass.ok_or(missing("no auth-pass"))?,
            salt: self.salt,
            client,
            attempt,
            // Only nginx's exact word counts: anything else is not a claim of TLS.
            ssl: self.ssl.as_deref() == Some("on"),
        })
    }
}

/// Undoes nginx's escaping of Auth-User and Auth-Pass (`%XX`, either case; nothing else,
/// "+" included, is special). A "%" without two hex digits is malformed: nginx always
/// escapes "%" itself.
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut octets = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'%' {
            octets.push(first);
            rest = tail;
            continue;
        }
        let escaped = tail
            .get(..2)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or(HttpError::Malformed("bad percent escape"))?;
        octets.push(escaped);
        rest = &tail[2..];
    }
    Ok(octets)
}

/// The router's answer, as nginx reads it.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// Proxy the client to `backend`; `pass` replaces the password nginx logs in with (the
    /// clear password, for APOP and CRAM-MD5 logins, whose digest the backend cannot use).
    Route {
        backend: SocketAddr,
        pass: Option<String>,
    },
    /// Refuse: the client reads "-ERR {status}"; with `wait`, after that many seconds, and
    /// may try again; without it nginx closes the connection.
    Refuse {
        status: &'static str,
        wait: Option<u64>,
    },
    /// The request was not one nginx sends.
    BadRequest,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Route { backend, pass } => f
                .debug_struct("Route")
                .field("backend", backend)
                .field("pass", &pass.as_ref().map(|_| "<redacted>"))
                .finish(),
            Answer::Refuse { status, wait } => f
                .debug_struct("Refuse")
                .field("status", status)
                .field("wait", wait)
                .finish(),
            Answer::BadRequest => f.write_str("BadRequest"),
        }
    }
}

/// Writes the whole response. Every answer to a well-formed request is "200 OK": nginx reads
/// the Auth-* headers, not the status code.
pub fn write_answer<W: Write>(output: &mut W, answer: &Answer) -> io::Result<()> {
    let mut response = String::with_capacity(256);
    match answer {
        Answer::Route { backend, pass } => {
            response.push_str("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n");
            // Auth-Server is an address without brackets, even for IPv6.
            response.push_str(&format!(
                "Auth-Server: {}\r\nAuth-Port: {}\r\n",
                backend.ip(),
                backend.port()
            ));
            if let Some(pass) = pass {
                response.push_str(&format!("Auth-Pass: {pass}\r\n"));
            }
        }
        Answer::Refuse { status, wait } => {
            response.push_str(&format!("HTTP/1.0 200 OK\r\nAuth-Status: {status}\r\n"));
            if let Some(seconds) = wait {
                response.push_str(&format!("Auth-Wait: {seconds}\r\n"));
            }
        }
        Answer::BadRequest => response.push_str("HTTP/1.0 400 Bad Request\r\n"),
    }
    response.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    output.write_all(response.as_bytes())?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::OneByte;

    const NGINX_PLAIN: &str = "GET /auth HTTP/1.0\r\n\
        Host: 127.0.0.1\r\n\
        Auth-Method: plain\r\n\
        Auth-User: alice\r\n\
        Auth-Pass: s3cr%25t%20x\r\n\
        Auth-Protocol: pop3\r\n\
        Auth-Login-Attempt: 1\r\n\
        Client-IP: 127.0.0.2\r\n\
        Proxy-Protocol-Addr: 127.0.0.2\r\n\
        Proxy-Protocol-Port: 39851\r\n\
        \r\n";

    const NGINX_APOP: &str = "GET /auth HTTP/1.0\r\n\
        Host: 127.0.0.1\r\n\
        Auth-Method: apop\r\n\
        Auth-User: alice\r\n\
        Auth-Pass: 11b933409d21319094d7ef2bf6c7fca8\r\n\
        Auth-Salt: <409752864.1795964470@vm>\r\n\
        Auth-Protocol: pop3\r\n\
        Auth-Login-Attempt: 2\r\n\
        Client-IP: ::1\r\n\
        \r\n";

    #[test]
    fn auth_ssl_on_and_only_on_says_the_client_used_tls() {
        let with = |line: &str| NGINX_PLAIN.replace("Client-IP", &format!("{line}\r\nClient-IP"));
        // What nginx 1.22 sends for a POP3S client (header names in nginx's own case).
        let tls = with("Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nAuth-SSL-Verify: NONE");
        assert!(parse(tls.as_bytes()).unwrap().ssl);
        assert!(parse(with("auth-ssl: on").as_bytes()).unwrap().ssl);
        for value in ["off", "yes", "On", ""] {
            let text = with(&format!("Auth-SSL: {value}"));
            assert!(!parse(text.as_bytes()).unwrap().ssl, "{value:?}");
        }
        assert!(parse(with("Auth-SSL: on\r\nAuth-SSL: on").as_bytes()).is_err());
    }

    fn parse(text: &[u8]) -> Result<AuthRequest, HttpError> {
        read_request(&mut &text[..])
    }

    fn parse_one_byte_at_a_time(text: &[u8]) -> Result<AuthRequest, HttpError> {
        read_request(&mut io::BufReader::with_capacity(1, OneByte(text)))
    }

    #[test]
    fn nginx_requests_parse() {
        for parse in [parse, parse_one_byte_at_a_time] {
            let r = parse(NGINX_PLAIN.as_bytes()).unwrap();
            assert_eq!(r.method, Method::Plain);
            assert_eq!(r.protocol, "pop3");
            assert_eq!(r.user, b"alice");
            assert_eq!(r.pass, b"s3cr%t x");
            assert_eq!(r.salt, None);
            assert_eq!(r.client, Some("127.0.0.2".parse().unwrap()));
            assert_eq!(r.attempt, 1);
            assert!(!r.ssl);

            let r = parse(NGINX_APOP.as_bytes()).unwrap();
            assert_eq!(r.method, Method::Apop);
            assert_eq!(r.pass, b"11b933409d21319094d7ef2bf6c7fca8");
            assert_eq!(r.salt.as_deref(), Some("<409752864.1795964470@vm>"));
            assert_eq!(r.client, Some("::1".parse().unwrap()));
            assert_eq!(r.attempt, 2);
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_lf_alone_ends_a_line() {
        let r = parse(
            b"GET / HTTP/1.1\nauth-method: CRAM-MD5\nAUTH-USER: bob\nauth-pass: x\n\
              Auth-Protocol: pop3\n\n",
        )
        .unwrap();
        assert_eq!(r.method, Method::CramMd5);
        assert_eq!(r.user, b"bob");
        assert_eq!(r.client, None);
        assert_eq!(r.attempt, 1);
    }

    #[test]
    fn the_request_is_read_to_its_blank_line_and_no_further() {
        let mut input = NGINX_PLAIN.as_bytes().to_vec();
        input.extend_from_slice(b"trailing");
        let mut reader = &input[..];
        read_request(&mut reader).unwrap();
        assert_eq!(reader, b"trailing");
    }

    #[test]
    fn bad_requests_are_refused() {
        let with = |from: &str, to: &str| NGINX_PLAIN.replacen(from, to, 1).into_bytes();
        let table: Vec<(&str, Vec<u8>)> = vec![
            ("post", with("GET ", "POST ")),
            ("http/2", with("HTTP/1.0", "HTTP/2")),
            ("no target", with("GET /auth HTTP/1.0", "GET  HTTP/1.0")),
            ("extra word", with("HTTP/1.0", "HTTP/1.0 x")),
            ("no auth-user", with("Auth-User: alice\r\n", "")),
            ("no auth-pass", with("Auth-Pass: s3cr%25t%20x\r\n", "")),
            ("no auth-method", with("Auth-Method: plain\r\n", "")),
            ("no auth-protocol", with("Auth-Protocol: pop3\r\n", "")),
            (
                "two users",
                with("Auth-User: alice\r\n", "Auth-User: a\r\nauth-user: b\r\n"),
            ),
            ("bad escape", with("%25t", "%2")),
            ("bad hex escape", with("%25t", "%zzt")),
            ("bad attempt", with("Attempt: 1", "Attempt: one")),
            (
                "bad client",
                with("Client-IP: 127.0.0.2", "Client-IP: somewhere"),
            ),
            ("no colon", with("Host: 127.0.0.1", "Host 127.0.0.1")),
            ("space in name", with("Host:", "Ho st:")),
        ];
        let mut not_utf8 = NGINX_PLAIN.as_bytes().to_vec();
        let at = NGINX_PLAIN.find("pop3").unwrap();
        not_utf8[at] = 0xff;
        let table = table.into_iter().chain([("not utf-8", not_utf8)]);
        for (name, bytes) in table {
            let result = parse(&bytes);
            assert!(
                matches!(result, Err(HttpError::Malformed(_))),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn a_head_cut_short_is_truncated() {
        assert!(matches!(parse(b""), Err(HttpError::Empty)));
        for cut in 1..NGINX_PLAIN.len() {
            let result = parse(&NGINX_PLAIN.as_bytes()[..cut]);
            assert!(
                matches!(result, Err(HttpError::Truncated)),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[test]
    fn an_oversize_head_is_refused_without_reading_it_all() {
        let mut text = b"GET /auth HTTP/1.0\r\nX: ".to_vec();
        text.resize(MAX_HEAD_OCTETS * 4, b'a');
        let mut reader = &text[..];
        assert!(matches!(
            read_request(&mut reader),
            Err(HttpError::TooLarge)
        ));
        assert_eq!(reader.len(), text.len() - MAX_HEAD_OCTETS);

        let mut many = b"GET /auth HTTP/1.0\r\n".to_vec();
        for _ in 0..=MAX_HEADER_LINES {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many), Err(HttpError::TooLarge)));
    }

    #[test]
    fn unescape_decodes_percent_escapes_only() {
        let table: [(&[u8], &[u8]); 6] = [
            (b"plain", b"plain"),
            (b"a%20b", b"a b"),
            (b"%25%3a%3A", b"%::"),
            (b"a+b", b"a+b"),
            (b"%ff%00", b"\xff\x00"),
            (b"", b""),
        ];
        for (escaped, octets) in table {
            assert_eq!(unescape(escaped).unwrap(), octets);
        }
        for bad in [&b"%"[..], b"%2", b"%g0", b"a%", b"%+1"] {
            assert!(unescape(bad).is_err(), "{bad:?}");
        }
    }

    fn written(answer: &Answer) -> String {
        let mut out = Vec::new();
        write_answer(&mut out, answer).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn answers_are_written_as_nginx_reads_them() {
        assert_eq!(
            written(&Answer::Route {
                backend: "127.0.0.1:1101".parse().unwrap(),
                pass: None
            }),
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1101\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            written(&Answer::Route {
                backend: "[fd00::1]:110".parse().unwrap(),
                pass: Some("pw with: colon".into())
            }),
            "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: fd00::1\r\nAuth-Port: 110\r\n\
             Auth-Pass: pw with: colon\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            written(&Answer::Refuse {
                status: "[AUTH] invalid user name or password",
                wait: Some(1)
            }),
            "HTTP/1.0 200 OK\r\nAuth-Status: [AUTH] invalid user name or password\r\n\
             Auth-Wait: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            written(&Answer::Refuse {
                status: "x",
                wait: None
            }),
            "HTTP/1.0 200 OK\r\nAuth-Status: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert!(written(&Answer::BadRequest).starts_with("HTTP/1.0 400 "));
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let r = parse(NGINX_PLAIN.as_bytes()).unwrap();
        assert!(!format!("{r:?}").contains("s3cr"));
        let a = Answer::Route {
            backend: "127.0.0.1:1".parse().unwrap(),
            pass: Some("hunter2".into()),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
