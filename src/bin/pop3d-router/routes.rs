//! The routes file: which backend (address and port) holds each user's maildrop, plus the
//! default route for everyone else, re-read when it changes as the users file is. Parsing is
//! pure and unit-tested; `RoutesFile` adds the file and the reload.
//!
//! Format, one route a line:
//!
//! ```text
//! # user:address:port
//! alice:10.0.0.2:110
//! bob:fd00::3:110
//! *:10.0.0.1:110
//! ```
//!
//! - Lines end in LF or CRLF. Blank lines and lines whose first non-blank character is '#' are
//!   ignored, as in the users file.
//! - The user is everything before the first ':' and must pass `auth::valid_user_name`, or be
//!   `*`, the default route, which every file must have exactly once (so a user the router
//!   does not know still gets an answer from a backend, the same one a wrong password gets).
//! - The port is everything after the last ':', 1 to 65535; the address is what lies between,
//!   an IPv4 or IPv6 address, optionally in brackets. It must be an address, not a host name:
//!   nginx connects to `Auth-Server` as given and never resolves it.
//! - Malformed: any other shape, a duplicate user, a second default, no default, text that is
//!   not UTF-8. One malformed line rejects the whole file.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use pop3d::auth::valid_user_name;
use pop3d::bytes::is_digits;
use pop3d::watched::{Format, WatchError, WatchedFile};

/// A routes file names each user once; a few megabytes is far beyond any site this serves,
/// and the bound keeps a wrong --routes path (a log, /dev/zero) out of memory.
pub const MAX_ROUTES_FILE_OCTETS: u64 = 4 * 1024 * 1024;

/// The user name that stands for "everyone without a route of their own".
pub const DEFAULT_ROUTE: &str = "*";

/// The parsed routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    users: HashMap<String, SocketAddr>,
    default: SocketAddr,
}

impl Routes {
    /// Parses the routes file's octets (format in the module doc).
    pub fn parse(octets: &[u8]) -> Result<Routes, RoutesError> {
        let mut users = HashMap::new();
        let mut default = None;
        for (index, line) in octets.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line =
                std::str::from_utf8(line).map_err(|_| RoutesError::NotUtf8 { line: number })?;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let content = line.trim_start_matches([' ', '\t']);
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let malformed = |reason| RoutesError::Malformed {
                line: number,
                reason,
            };
            let (user, backend) = parse_route(line).map_err(malformed)?;
            if user == DEFAULT_ROUTE {
                if default.replace(backend).is_some() {
                    return Err(malformed("a second default route"));
                }
            } else if users.insert(user.to_owned(), backend).is_some() {
                return Err(malformed("duplicate user name"));
            }
        }
        let default = default.ok_or(RoutesError::NoDefault)?;
        Ok(Routes { users, default })
    }

    /// The backend that holds `user`'s maildrop: their own route, else the default.
    pub fn route(&self, user: &str) -> SocketAddr {
        self.users.get(user).copied().unwrap_or(self.default)
    }

    /// Routes of named users (the default not counted).
    pub fn len(&self) -> usize {
        self.users.len()
    }
}

/// One non-comment line -> (user, backend), or why not.
fn parse_route(line: &str) -> Result<(&str, SocketAddr), &'static str> {
    let (user, rest) = line.split_once(':').ok_or("expected user:address:port")?;
    let (address, port) = rest.rsplit_once(':').ok_or("expected user:address:port")?;
    if user != DEFAULT_ROUTE && !valid_user_name(user) {
        return Err("invalid user name");
    }
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let ip: IpAddr = address
        .parse()
        .map_err(|_| "not an ip address (nginx does not resolve host names)")?;
    let port = Some(port)
        .filter(|p| p.len() <= 5 && is_digits(p))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p != 0)
        .ok_or("bad port")?;
    Ok((user, SocketAddr::new(ip, port)))
}

/// Why a version of the routes file does not parse. Reading the file fails with the
/// `WatchError` that carries this one: see `LoadError`.
#[derive(Debug)]
pub enum RoutesError {
    Malformed { line: usize, reason: &'static str },
    NotUtf8 { line: usize },
    NoDefault,
}

/// Why `RoutesFile::load` failed: the file's own errors, or `Parse` with a `RoutesError`.
pub type LoadError = WatchError<RoutesError>;

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutesError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            RoutesError::NotUtf8 { line } => write!(f, "line {line}: not utf-8"),
            RoutesError::NoDefault => write!(f, "no default route ({DEFAULT_ROUTE}:address:port)"),
        }
    }
}

impl Error for RoutesError {}

/// How `watched` reads the routes file.
const FORMAT: Format<Routes, RoutesError> = Format {
    what: "routes",
    max_octets: MAX_ROUTES_FILE_OCTETS,
    parse: Routes::parse,
    summary: |routes| format!("{} routes and a default", routes.len()),
    inspect: None,
};

/// The routes file on disk, re-read when it changes (see `pop3d::watched`: a stat at most once
/// a second, from `current()`). A malformed new version leaves the previous routes in force,
/// with one warning in the log per change.
#[derive(Debug)]
pub struct RoutesFile {
    file: WatchedFile<Routes>,
}

impl RoutesFile {
    /// Loads it at start-up; Err if unreadable or malformed (the router then does not start).
    pub fn load(path: &Path) -> Result<RoutesFile, LoadError> {
        Ok(RoutesFile {
            file: WatchedFile::load(path, FORMAT)?,
        })
    }

    /// The routes in force now, re-reading the file if it changed.
    pub fn current(&self) -> Arc<Routes> {
        self.file.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::fs;
    use std::io;
    use std::time::Duration;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn users_go_to_their_route_and_others_to_the_default() {
        let routes = Routes::parse(
            b"# user:address:port\n\
              alice:10.0.0.2:110\r\n\
              \n   # indented comment\n\
              bob:fd00::3:1100\n\
              carol:[fd00::4]:1101\n\
              *:10.0.0.1:110\n",
        )
        .unwrap();
        assert_eq!(routes.route("alice"), addr("10.0.0.2:110"));
        assert_eq!(routes.route("bob"), addr("[fd00::3]:1100"));
        assert_eq!(routes.route("carol"), addr("[fd00::4]:1101"));
        assert_eq!(routes.route("dave"), addr("10.0.0.1:110"));
        assert_eq!(routes.route("Alice"), addr("10.0.0.1:110"));
        assert_eq!(routes.route(""), addr("10.0.0.1:110"));
        assert_eq!(routes.len(), 3);
    }

    #[test]
    fn the_default_may_come_first_and_be_ipv6() {
        let routes = Routes::parse(b"*:::1:110\nalice:127.0.0.1:111").unwrap();
        assert_eq!(routes.route("x"), addr("[::1]:110"));
        assert_eq!(routes.route("alice"), addr("127.0.0.1:111"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let table: [(&[u8], usize); 14] = [
            (b"*:127.0.0.1:110\nalice\n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1\n", 2),
            (b"*:127.0.0.1:110\nalice:localhost:110\n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1:0\n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1:65536\n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1:+110\n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1:110 \n", 2),
            (b"*:127.0.0.1:110\nalice:127.0.0.1:\n", 2),
            (b"*:127.0.0.1:110\n.alice:127.0.0.1:110\n", 2),
            (b"*:127.0.0.1:110\n:127.0.0.1:110\n", 2),
            (b"*:127.0.0.1:110\nal ice:127.0.0.1:110\n", 2),
            (b"*:127.0.0.1:110\na:1.1.1.1:1\na:2.2.2.2:2\n", 3),
            (b"*:127.0.0.1:110\n*:127.0.0.2:110\n", 2),
            (b"*:127.0.0.1:110\n# ok\n\nbob:[127.0.0.1:110\n", 4),
        ];
        for (text, line) in table {
            match Routes::parse(text) {
                Err(RoutesError::Malformed { line: got, .. }) => {
                    assert_eq!(got, line, "{}", String::from_utf8_lossy(text))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(text)),
            }
        }
    }

    #[test]
    fn a_file_without_a_default_is_refused() {
        assert!(matches!(
            Routes::parse(b"alice:127.0.0.1:110\n"),
            Err(RoutesError::NoDefault)
        ));
        assert!(matches!(Routes::parse(b""), Err(RoutesError::NoDefault)));
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_line() {
        assert!(matches!(
            Routes::parse(b"*:127.0.0.1:110\n\xff:127.0.0.1:110\n"),
            Err(RoutesError::NotUtf8 { line: 2 })
        ));
    }

    /// The reload itself is tested in `pop3d::watched`; this checks that it reads the routes
    /// format, and that a route is moved by renaming a new file over the old.
    #[test]
    fn the_file_is_reread_when_it_changes_and_kept_when_broken() {
        let temp = TempDir::new("router-routes");
        let dir = temp.path();
        let path = dir.join("routes");
        fs::write(&path, "*:127.0.0.1:110\n").unwrap();
        let file = RoutesFile {
            file: WatchedFile::load_with_recheck_interval(&path, FORMAT, Duration::ZERO).unwrap(),
        };
        assert_eq!(file.current().route("alice"), addr("127.0.0.1:110"));

        // Replaced by rename, as an admin moving a user would.
        let next = dir.join("routes.new");
        fs::write(&next, "alice:127.0.0.2:111\n*:127.0.0.1:110\n").unwrap();
        fs::rename(&next, &path).unwrap();
        assert_eq!(file.current().route("alice"), addr("127.0.0.2:111"));

        fs::write(&next, "alice:nowhere\n").unwrap();
        fs::rename(&next, &path).unwrap();
        assert_eq!(file.current().route("alice"), addr("127.0.0.2:111"));
    }

    #[test]
    fn load_maps_file_errors_to_routes_errors() {
        let temp = TempDir::new("router-load");
        let dir = temp.path();
        let path = dir.join("routes");
        assert!(matches!(
            RoutesFile::load(&path),
            Err(WatchError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(RoutesFile::load(dir), Err(WatchError::NotAFile)));
        fs::write(&path, "alice:127.0.0.1:110\n").unwrap();
        assert!(matches!(
            RoutesFile::load(&path),
            Err(WatchError::Parse(RoutesError::NoDefault))
        ));
        fs::File::create(&path)
            .unwrap()
            .set_len(MAX_ROUTES_FILE_OCTETS + 1)
            .unwrap();
        let error = RoutesFile::load(&path).unwrap_err();
        assert!(matches!(error, WatchError::TooLarge { .. }), "{error:?}");
        assert_eq!(error.to_string(), "larger than 4194304 octets");
    }
}
