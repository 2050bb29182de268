//! Whether a connection may carry a clear-text password (USER/PASS, AUTH PLAIN): the
//! `--plaintext-auth` policy and what makes one connection secure. Pure: the listener and the
//! --inetd path find out the facts (client address, listener, PROXY header) and the session
//! only asks `allows_plaintext`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `--plaintext-auth`: Dovecot's `disable_plaintext_auth`, spelled as what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextAuth {
    /// Clear-text passwords on every connection (what pop3d did before the option existed).
    Always,
    /// Clear-text passwords only on secure connections; APOP and CRAM-MD5 everywhere.
    Secure,
}

/// A `--plaintext-auth` value that is neither word.
#[derive(Debug, PartialEq, Eq)]
pub struct BadPolicy(pub String);

impl fmt::Display for BadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: must be always or secure", self.0)
    }
}

impl std::error::Error for BadPolicy {}

impl FromStr for PlaintextAuth {
    type Err = BadPolicy;

    fn from_str(text: &str) -> Result<PlaintextAuth, BadPolicy> {
        match text {
            "always" => Ok(PlaintextAuth::Always),
            "secure" => Ok(PlaintextAuth::Secure),
            _ => Err(BadPolicy(text.to_owned())),
        }
    }
}

/// Why a connection is secure, or that it is not; the connection's log line prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// The client (after a PROXY header, if any) is on this host: nothing crosses a network.
    Loopback,
    /// Accepted on a `--secure-listen` address, which only a TLS front on this host reaches.
    SecureListener,
    /// A trusted proxy's PROXY v2 header says the client reached it over TLS.
    ProxyTls,
    /// --inetd on a pipe or a Unix socket: the other end is on this host (a terminal, or an
    /// ssh command such as fetchmail's `plugin`), never a network peer.
    LocalStream,
    /// None of the above: anyone on the path could read a password.
    Open,
}

impl Security {
    /// Judges a TCP connection. `client` is the address after a PROXY header, if one named it.
    pub fn of(client: IpAddr, secure_listener: bool, proxy_tls: bool) -> Security {
        if client.to_canonical().is_loopback() {
            Security::Loopback
        } else if secure_listener {
            Security::SecureListener
        } else if proxy_tls {
            Security::ProxyTls
        } else {
            Security::Open
        }
    }

    /// Judges a connection whose trusted proxy named no client (PROXY UNKNOWN, v2 LOCAL): the
    /// proxy's own address (loopback, often) says nothing of where the client is.
    pub fn unnamed(secure_listener: bool) -> Security {
        if secure_listener {
            Security::SecureListener
        } else {
            Security::Open
        }
    }

    pub fn is_secure(self) -> bool {
        self != Security::Open
    }

    /// Whether a clear-text password may be taken on this connection under `policy`.
    pub fn allows_plaintext(self, policy: PlaintextAuth) -> bool {
        policy == PlaintextAuth::Always || self.is_secure()
    }
}

impl Security {
    /// Every kind, for tests of the tokens.
    pub const ALL: [Security; 5] = [
        Security::Loopback,
        Security::SecureListener,
        Security::ProxyTls,
        Security::LocalStream,
        Security::Open,
    ];

    /// One word for the command line of a session process (session_process.rs).
    pub fn token(self) -> &'static str {
        match self {
            Security::Loopback => "loopback",
            Security::SecureListener => "secure-listener",
            Security::ProxyTls => "proxy-tls",
            Security::LocalStream => "local-stream",
            Security::Open => "open",
        }
    }

    /// The kind `token` names; None for any other word.
    pub fn from_token(token: &str) -> Option<Security> {
        Security::ALL.into_iter().find(|s| s.token() == token)
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Loopback => "secure (loopback)",
            Security::SecureListener => "secure (secure listener)",
            Security::ProxyTls => "secure (tls at the proxy)",
            Security::LocalStream => "secure (local stream)",
            Security::Open => "insecure",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_token_and_back() {
        for security in Security::ALL {
            assert_eq!(Security::from_token(security.token()), Some(security));
        }
        assert_eq!(Security::from_token("secure"), None);
        assert_eq!(Security::from_token(""), None);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_connection_is_secure_for_each_reason_and_open_otherwise() {
        use Security::*;
        let table = [
            ("127.0.0.1", false, false, Loopback),
            ("127.3.2.1", false, false, Loopback),
            ("::1", false, false, Loopback),
            ("::ffff:127.0.0.1", false, false, Loopback),
            ("192.0.2.7", true, false, SecureListener),
            ("192.0.2.7", false, true, ProxyTls),
            ("192.0.2.7", false, false, Open),
            ("2001:db8::7", false, false, Open),
            ("::ffff:192.0.2.7", false, false, Open),
            ("0.0.0.0", false, false, Open),
        ];
        for (client, listener, tls, expected) in table {
            assert_eq!(
                Security::of(ip(client), listener, tls),
                expected,
                "{client} {listener} {tls}"
            );
        }
    }

    #[test]
    fn only_an_open_connection_refuses_plaintext_and_only_under_secure() {
        for s in [
            Security::Loopback,
            Security::SecureListener,
            Security::ProxyTls,
            Security::LocalStream,
        ] {
            assert!(s.allows_plaintext(PlaintextAuth::Secure), "{s}");
            assert!(s.allows_plaintext(PlaintextAuth::Always), "{s}");
        }
        assert!(!Security::Open.allows_plaintext(PlaintextAuth::Secure));
        assert!(Security::Open.allows_plaintext(PlaintextAuth::Always));
    }

    #[test]
    fn the_log_tells_secure_from_insecure() {
        assert_eq!(Security::Open.to_string(), "insecure");
        assert!(Security::SecureListener.to_string().starts_with("secure "));
    }

    #[test]
    fn policy_parses_its_two_words_only() {
        assert_eq!("always".parse(), Ok(PlaintextAuth::Always));
        assert_eq!("secure".parse(), Ok(PlaintextAuth::Secure));
        for bad in ["", "Always", "never", "yes", "secure "] {
            assert!(bad.parse::<PlaintextAuth>().is_err(), "{bad:?}");
        }
    }
}
