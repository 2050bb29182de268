//! The one log line of a failed login, in a fixed shape for fail2ban
//! (scripts/deploy/fail2ban/pop3d.conf matches it):
//!
//! ```text
//! auth failed: rhost=192.0.2.7 mechanism=PASS user="alice"
//! ```
//!
//! `rhost` is the client's address: behind a trusted proxy the one its PROXY header names,
//! never the proxy's; an IPv4 client of a dual-stack socket as IPv4; `-` when there is none
//! (a session on a pipe). `mechanism` is PASS (USER/PASS), APOP, PLAIN, CRAM-MD5, or (from
//! pop3d-router, which cannot tell USER/PASS from AUTH PLAIN behind nginx) LOGIN. `user`
//! is the name as the client sent it, escaped as Rust's `escape_default` does (`"`, `\` and
//! everything outside printable ASCII become escapes), so it can neither close its quotes
//! nor start a line. What a client chose comes last, after the fields a filter keys on, so
//! no user name can pose as an address. The session puts its usual "PEER: " before the line.

use std::fmt;
use std::net::IpAddr;

/// How a client tried to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// USER and PASS (RFC 1939).
    Pass,
    Apop,
    /// AUTH PLAIN (RFC 4616).
    Plain,
    /// AUTH CRAM-MD5 (RFC 2195).
    CramMd5,
    /// AUTH LOGIN, which nginx offers in front of pop3d-router.
    Login,
}

impl Mechanism {
    /// The word on a failure line.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pass => "PASS",
            Mechanism::Apop => "APOP",
            Mechanism::Plain => "PLAIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The commands as a client sends them, for the other log lines.
    pub fn commands(self) -> &'static str {
        match self {
            Mechanism::Pass => "USER/PASS",
            Mechanism::Apop => "APOP",
            Mechanism::Plain => "AUTH PLAIN",
            Mechanism::CramMd5 => "AUTH CRAM-MD5",
            Mechanism::Login => "AUTH LOGIN",
        }
    }
}

/// A failed login, displayed as the line above.
pub struct FailedLogin<'a> {
    pub address: Option<IpAddr>,
    pub mechanism: Mechanism,
    /// The name as the client gave it.
    pub user: &'a str,
}

impl fmt::Display for FailedLogin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("auth failed: rhost=")?;
        match self.address {
            Some(address) => write!(f, "{}", address.to_canonical())?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            " mechanism={} user=\"{}\"",
            self.mechanism.name(),
            self.user.escape_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(address: Option<&str>, mechanism: Mechanism, user: &str) -> String {
        let address = address.map(|a| a.parse().unwrap());
        FailedLogin {
            address,
            mechanism,
            user,
        }
        .to_string()
    }

    #[test]
    fn failed_login_lines_have_one_fixed_shape() {
        let cases = [
            (
                Some("192.0.2.7"),
                Mechanism::Pass,
                "alice",
                r#"auth failed: rhost=192.0.2.7 mechanism=PASS user="alice""#,
            ),
            (
                Some("2001:db8::1"),
                Mechanism::CramMd5,
                "bob",
                r#"auth failed: rhost=2001:db8::1 mechanism=CRAM-MD5 user="bob""#,
            ),
            // A dual-stack socket's IPv4 client is logged as IPv4, as fail2ban bans it.
            (
                Some("::ffff:192.0.2.8"),
                Mechanism::Apop,
                "carol",
                r#"auth failed: rhost=192.0.2.8 mechanism=APOP user="carol""#,
            ),
            (
                None,
                Mechanism::Plain,
                "",
                r#"auth failed: rhost=- mechanism=PLAIN user="""#,
            ),
        ];
        for (address, mechanism, user, want) in cases {
            assert_eq!(line(address, mechanism, user), want);
        }
    }

    #[test]
    fn a_user_name_cannot_close_its_quotes_or_break_the_line() {
        let forged = r#"x" rhost=198.51.100.1 mechanism=PASS user="y"#;
        assert_eq!(
            line(Some("192.0.2.7"), Mechanism::Pass, forged),
            r#"auth failed: rhost=192.0.2.7 mechanism=PASS user="x\" rhost=198.51.100.1 mechanism=PASS user=\"y""#
        );
        assert_eq!(
            line(Some("192.0.2.7"), Mechanism::Plain, "a\\b\nc\u{e9}"),
            r#"auth failed: rhost=192.0.2.7 mechanism=PLAIN user="a\\b\nc\u{e9}""#
        );
    }
}
