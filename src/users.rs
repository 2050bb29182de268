//! The users file: parsing it, re-reading it when it changes, and turning a user into the path
//! of their mbox. Password and digest checks live in `auth`; the session decides what the
//! client is told.
//!
//! Format, one user a line:
//!
//! ```text
//! # comment
//! name:password
//! name:password:/absolute/path/to/mbox
//! name:{CRYPT}$y$j9T$...
//! name:{PLAIN}password
//! name:password:uidl=dovecot,pop3d
//! name:password:/absolute/path/to/mbox:uidl=popa3d
//! ```
//!
//! - The password field follows Dovecot's passwd-file notation, so files move between the
//!   two: `{CRYPT}` (or Dovecot's crypt-based `{SHA512-CRYPT}`, `{SHA256-CRYPT}`,
//!   `{MD5-CRYPT}`, `{BLF-CRYPT}`, `{DES-CRYPT}`; the scheme in any case) before a crypt(5)
//!   hash, checked through libcrypt; `{PLAIN}` before explicit clear text; anything else is
//!   clear text. A hashed password is no shared secret, so APOP and CRAM-MD5 fail for its
//!   user.
//! - Lines end in LF or CRLF. Blank lines (nothing but spaces and tabs) and lines whose first
//!   non-blank character is '#' are ignored. There are no comments after a user, since '#' may
//!   be part of a password; a user name cannot start with '#' (it would be read as a comment).
//! - The name is everything before the first ':' and must pass `auth::valid_user_name`.
//! - The password is everything after the first ':', spaces and further ':' included, nothing
//!   trimmed, except when the line holds a third field: if the text after the LAST ':'
//!   contains a '/', it is the user's mbox path (overriding `--maildrop`) and the password is
//!   what lies between the first and the last ':'. That path must be absolute. So
//!   `alice:a:b c` has the password "a:b c"; `alice:a:b:/var/mail/x` has the password "a:b"
//!   and the mbox /var/mail/x; `alice:pw:mail/alice` is refused (relative mbox path) rather
//!   than taken as the password "pw:mail/alice". Consequences: a password containing ':'
//!   cannot have a '/' after its last ':', and an mbox path cannot contain ':'.
//! - A last field `uidl=LIST` sets the user's unique-id schemes (a `--uidl` list such as
//!   `uidl=dovecot,pop3d`), overriding `--uidl`, for sites that move users from another
//!   server in steps: `name:password:uidl=LIST` or `name:password:/path:uidl=LIST`. It is taken
//!   off first (text after the last ':' that begins "uidl="), then the path rule applies to
//!   the rest. A key is used, not a fourth positional field, because the password may hold
//!   ':' and the path is optional: only a key tells the field apart from a password's tail.
//!   Dovecot's positional passwd-file fields (uid:gid:gecos:home:shell:extra) are not
//!   emulated, since the third field here is already the mbox path. So a password cannot
//!   have "uidl=" after its last ':', and a bad list is refused, never taken as a password.
//! - Malformed: no ':', empty name, invalid name, duplicate name, empty password, relative mbox
//!   path, unknown uidl scheme, text that is not UTF-8. One malformed line rejects the whole
//!   file.

use std::collections::HashMap;
use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::fs::Metadata;
use std::hint::black_box;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::warn;

use crate::auth::{self, valid_user_name};
use crate::sys::{self, Account};
use crate::uidl::UidlSpec;
use crate::watched::{Format, WatchError, WatchedFile};

/// How often `UsersFile::current` may stat the file (the reload lives in `watched`).
pub use crate::watched::RECHECK_INTERVAL;

/// A users file for a small host is a few kilobytes; the bound stops a wrong --users path
/// (a log file, /dev/zero) from being read into memory without end.
const MAX_USERS_FILE_OCTETS: u64 = 4 * 1024 * 1024;

/// Permission bits that let the group or others read the file, and so every password in it.
const EXPOSING_MODE_BITS: u32 = 0o044;

/// Dovecot password schemes that are crypt(5) hashes, checked alike through libcrypt.
const CRYPT_SCHEMES: [&str; 6] = [
    "CRYPT",
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "MD5-CRYPT",
    "BLF-CRYPT",
    "DES-CRYPT",
];

/// A user's password as stored: clear text, or a crypt(5) hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// Clear text: checked by comparison, and the shared secret of APOP and CRAM-MD5.
    Clear(String),
    /// A crypt(5) hash (`$y$...`, `$6$...`): checked through libcrypt's crypt_rn.
    Crypt(String),
}

impl Password {
    /// The password field of a users file line, in Dovecot's notation (see the module doc).
    pub fn parse(field: &str) -> Password {
        if let Some((scheme, rest)) = field.strip_prefix('{').and_then(|f| f.split_once('}')) {
            if scheme.eq_ignore_ascii_case("PLAIN") {
                return Password::Clear(rest.to_owned());
            }
            if CRYPT_SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
                return Password::Crypt(rest.to_owned());
            }
        }
        Password::Clear(field.to_owned())
    }

    /// Whether the stored password is empty (a users file refuses such a line).
    pub fn is_empty(&self) -> bool {
        match self {
            Password::Clear(text) | Password::Crypt(text) => text.is_empty(),
        }
    }

    /// The clear password as the shared secret of APOP and CRAM-MD5; None for a hash.
    pub fn shared_secret(&self) -> Option<&str> {
        match self {
            Password::Clear(text) => Some(text),
            Password::Crypt(_) => None,
        }
    }

    /// Whether `given` (what the client sent with PASS or AUTH PLAIN) is this password. A
    /// hash that libcrypt cannot use (locked `!...`, `*`, unknown method) matches nothing.
    pub fn check(&self, given: &str) -> bool {
        match self {
            Password::Clear(expected) => auth::check_password(expected, given),
            Password::Crypt(hash) => match sys::crypt(given, hash) {
                Ok(computed) => auth::constant_time_eq(computed.as_bytes(), hash.as_bytes()),
                Err(_) => false,
            },
        }
    }
}

impl fmt::Debug for Password {
    // Neither a password nor a hash may reach a log through a stray {:?}.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Clear(_) => f.write_str("Clear(<redacted>)"),
            Password::Crypt(_) => f.write_str("Crypt(<redacted>)"),
        }
    }
}

/// One line of the users file, or one system account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Password,
    /// An absolute mbox path that overrides the --maildrop pattern for this user.
    pub maildrop: Option<PathBuf>,
    /// The system account behind the user (`--system-users`); None for the users file.
    pub account: Option<Account>,
    /// The user's own `--uidl` list (`uidl=` in the users file); None = the server's.
    pub uidl: Option<UidlSpec>,
}

impl fmt::Debug for User {
    // The password must not reach a log through a stray {:?}.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("maildrop", &self.maildrop)
            .field("account", &self.account)
            .field("uidl", &self.uidl)
            .finish()
    }
}

/// The parsed users file: users by name (names compare exactly, case included).
#[derive(Debug, Clone, Default)]
pub struct UsersDb {
    users: HashMap<String, User>,
    /// Checked for an unknown name: one of the file's hashes if it holds any, so that an
    /// unknown name costs a crypt as a hashed user does.
    dummy: Option<Password>,
}

impl UsersDb {
    /// Parses the users file text (format in the module doc). A malformed line gives
    /// `UsersError::Malformed` with its 1-based line number.
    pub fn parse(text: &str) -> Result<UsersDb, UsersError> {
        Self::parse_lines(text.split('\n').map(Ok::<_, std::convert::Infallible>))
    }

    /// Like `parse`, for the file's raw octets: a line that is not UTF-8 gives
    /// `UsersError::NotUtf8` with its line number.
    fn parse_octets(octets: &[u8]) -> Result<UsersDb, UsersError> {
        Self::parse_lines(octets.split(|&b| b == b'\n').map(std::str::from_utf8))
    }

    fn parse_lines<'a, E>(
        lines: impl Iterator<Item = Result<&'a str, E>>,
    ) -> Result<UsersDb, UsersError> {
        let mut users = HashMap::new();
        for (index, line) in lines.enumerate() {
            let number = index + 1;
            let line = line.map_err(|_| UsersError::NotUtf8 { line: number })?;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let malformed = |reason| UsersError::Malformed {
                line: number,
                reason,
            };
            let content = line.trim_start_matches([' ', '\t']);
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let user = parse_user(line).map_err(malformed)?;
            if users.contains_key(&user.name) {
                return Err(malformed("duplicate user name"));
            }
            users.insert(user.name.clone(), user);
        }
        let dummy = users
            .values()
            .map(|user| &user.password)
            .find(|password| matches!(password, Password::Crypt(_)))
            .cloned();
        Ok(UsersDb { users, dummy })
    }

    /// The user of that name, if any.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The user of that name if `check` accepts their password. An unknown or invalid name
    /// still runs `check`, against a dummy password (a hash of the file's if it has any), so
    /// that the work, and so the time to answer, is the same whether the user exists or not.
    pub fn checked_user(&self, name: &str, check: impl Fn(&Password) -> bool) -> Option<&User> {
        const DUMMY_SECRET: &str = "pop3d-no-such-user-dummy-secret";
        match self.get(name).filter(|_| valid_user_name(name)) {
            Some(user) if check(&user.password) => Some(user),
            Some(_) => None,
            None => {
                let dummy = match &self.dummy {
                    Some(hash) => check(hash),
                    None => check(&Password::Clear(DUMMY_SECRET.to_owned())),
                };
                black_box(dummy);
                None
            }
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// One non-blank, non-comment line (without its line end) -> a User, or why it is malformed.
fn parse_user(line: &str) -> Result<User, &'static str> {
    let (name, rest) = line.split_once(':').ok_or("no ':' after the user name")?;
    if name.is_empty() {
        return Err("empty user name");
    }
    if !valid_user_name(name) {
        return Err("invalid user name");
    }
    let (rest, uidl) = match rest.rsplit_once(':') {
        Some((before, field)) if field.starts_with(UIDL_KEY) => {
            let spec = UidlSpec::parse(&field[UIDL_KEY.len()..]).map_err(|_| {
                "bad uidl= list (scheme names as for --uidl, comma-separated, none twice)"
            })?;
            (before, Some(spec))
        }
        _ => (rest, None),
    };
    let (password, maildrop) = match rest.rsplit_once(':') {
        Some((password, path)) if path.contains('/') => {
            if !path.starts_with('/') {
                return Err("mbox path is not absolute");
            }
            (password, Some(PathBuf::from(path)))
        }
        _ => (rest, None),
    };
    let password = Password::parse(password);
    if password.is_empty() {
        return Err("empty password");
    }
    Ok(User {
        name: name.to_owned(),
        password,
        maildrop,
        account: None,
        uidl,
    })
}

/// The key of the users file's optional last field: the user's `--uidl` list.
const UIDL_KEY: &str = "uidl=";

/// Why a version of the users file does not parse. Reading the file (missing, too large, not
/// a regular file) fails with the `WatchError` that carries this one: see `LoadError`.
#[derive(Debug)]
pub enum UsersError {
    /// A line that does not follow the format; `line` counts from 1.
    Malformed {
        line: usize,
        reason: &'static str,
    },
    NotUtf8 {
        line: usize,
    },
}

/// Why `UsersFile::load` failed: the file's own errors, or `Parse` with a `UsersError`.
pub type LoadError = WatchError<UsersError>;

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsersError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            UsersError::NotUtf8 { line } => write!(f, "line {line}: not valid utf-8"),
        }
    }
}

impl Error for UsersError {}

/// How `watched` reads the users file.
const FORMAT: Format<UsersDb, UsersError> = Format {
    what: "users",
    max_octets: MAX_USERS_FILE_OCTETS,
    parse: UsersDb::parse_octets,
    summary: |users| format!("{} users", users.len()),
    inspect: Some(warn_if_exposed),
};

/// Every version read is checked, since a replacement may come with looser permissions.
fn warn_if_exposed(path: &Path, metadata: &Metadata) {
    if metadata.permissions().mode() & EXPOSING_MODE_BITS != 0 {
        warn!(
            "{}: readable by group or others, who can read every password in it",
            path.display()
        );
    }
}

/// The users file on disk, re-read when it changes, without a restart (see `watched` for when
/// and how). If the new version is malformed the previous one stays in force and a log::warn!
/// says which line is wrong (once per change).
#[derive(Debug)]
pub struct UsersFile {
    file: WatchedFile<UsersDb>,
}

impl UsersFile {
    /// Loads it at start-up; Err if unreadable or malformed (the server then refuses to start).
    /// Logs a warning if the file is readable by group or others (mode & 0o044).
    pub fn load(path: &Path) -> Result<UsersFile, LoadError> {
        let file = WatchedFile::load(path, FORMAT)?;
        if file.current().is_empty() {
            warn!("{}: no users; every login will fail", path.display());
        }
        Ok(UsersFile { file })
    }

    /// The path the users are read from.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The users in force now (re-reading if the file changed).
    pub fn current(&self) -> Arc<UsersDb> {
        self.file.current()
    }
}

/// Builds a user's mbox path from the --maildrop pattern: every "%u" is the user name, "%h"
/// the home directory of a system user (--system-users), "%%" is a literal '%'. Only called
/// with names that passed valid_user_name.
///
/// `user.maildrop` overrides the pattern. Any other '%' (a '%' before another character, at
/// the end, or "%h" for a user without an account) is kept as it is; refusing such patterns
/// is the configuration's job.
pub fn maildrop_path(pattern: &str, user: &User) -> PathBuf {
    if let Some(path) = &user.maildrop {
        return path.clone();
    }
    let mut path = OsString::with_capacity(pattern.len() + user.name.len());
    let mut chars = pattern.chars();
    let mut buffer = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '%' {
            path.push(c.encode_utf8(&mut buffer));
            continue;
        }
        match (chars.clone().next(), &user.account) {
            (Some('u'), _) => {
                chars.next();
                path.push(&user.name);
            }
            (Some('h'), Some(account)) => {
                chars.next();
                path.push(account.home.as_os_str());
            }
            (Some('%'), _) => {
                chars.next();
                path.push("%");
            }
            _ => path.push("%"),
        }
    }
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::fs::{self, File};
    use std::io;
    use std::time::Duration;

    fn user(name: &str, password: &str, maildrop: Option<&str>) -> User {
        User {
            name: name.to_owned(),
            password: Password::Clear(password.to_owned()),
            maildrop: maildrop.map(PathBuf::from),
            account: None,
            uidl: None,
        }
    }

    /// Users sorted by name, to compare a whole parse result.
    fn users_of(db: &UsersDb) -> Vec<User> {
        let mut users: Vec<User> = db.users.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    fn malformed_line(result: Result<UsersDb, UsersError>) -> (usize, &'static str) {
        match result {
            Err(UsersError::Malformed { line, reason }) => (line, reason),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn parse_reads_users_and_skips_comments_and_blank_lines() {
        let text = "# pop3d users\n\nalice:secret\n   \n\t# indented comment\nbob:hunter2\n";
        let db = UsersDb::parse(text).unwrap();
        assert_eq!(
            users_of(&db),
            [user("alice", "secret", None), user("bob", "hunter2", None)]
        );
        assert_eq!(db.len(), 2);
        assert!(!db.is_empty());
        assert_eq!(
            db.get("alice").map(|u| u.password.shared_secret()),
            Some(Some("secret"))
        );
        assert!(db.get("carol").is_none());
    }

    #[test]
    fn parse_looks_names_up_exactly() {
        let db = UsersDb::parse("alice:secret\n").unwrap();
        assert!(db.get("Alice").is_none());
        assert!(db.get("alice ").is_none());
        assert!(db.get("alice").is_some());
    }

    #[test]
    fn checked_user_runs_the_check_once_whether_or_not_the_user_exists() {
        let db = UsersDb::parse("alice:secret\n").unwrap();
        for (name, password, found) in [
            ("alice", "secret", true),
            ("alice", "wrong", false),
            ("nobody", "secret", false),
            ("Alice", "secret", false),
            ("", "secret", false),
            ("../alice", "secret", false),
        ] {
            let secrets = std::cell::RefCell::new(Vec::new());
            let user = db.checked_user(name, |stored| {
                secrets.borrow_mut().push(stored.clone());
                stored.check(password)
            });
            assert_eq!(
                user.map(|u| u.name.as_str()),
                found.then_some(name),
                "{name}"
            );
            let secrets = secrets.into_inner();
            assert_eq!(secrets.len(), 1, "{name}: {secrets:?}");
            if db.get(name).is_none() {
                assert_ne!(
                    secrets[0],
                    Password::Clear("secret".into()),
                    "{name}: checked against a real password"
                );
            }
        }
    }

    #[test]
    fn parse_accepts_empty_and_comment_only_files() {
        for text in ["", "\n", "# nobody yet\n", "\r\n\r\n", "#a:b\n"] {
            let db = UsersDb::parse(text).unwrap();
            assert!(db.is_empty(), "{text:?}");
            assert_eq!(db.len(), 0);
        }
    }

    #[test]
    fn parse_tolerates_crlf_and_a_missing_final_line_end() {
        let db = UsersDb::parse("alice:secret\r\nbob:pw:/var/mail/bob\r\ncarol:x").unwrap();
        assert_eq!(
            users_of(&db),
            [
                user("alice", "secret", None),
                user("bob", "pw", Some("/var/mail/bob")),
                user("carol", "x", None),
            ]
        );
    }

    #[test]
    fn parse_reads_the_mbox_override() {
        let db = UsersDb::parse("alice:secret:/srv/mail/alice.mbox\n").unwrap();
        assert_eq!(
            db.get("alice").and_then(|u| u.maildrop.as_deref()),
            Some(Path::new("/srv/mail/alice.mbox"))
        );
    }

    #[test]
    fn parse_reads_a_users_uidl_list_after_the_password_or_the_path() {
        let text = "alice:a:b:uidl=dovecot,pop3d\nbob:pw:/srv/bob:uidl=popa3d\n\
carol:uidl=x-uidl\ndave:pw:uidl\n";
        let db = UsersDb::parse(text).unwrap();
        let spec = |name: &str| {
            db.get(name)
                .and_then(|u| u.uidl.as_ref())
                .map(|s| s.to_string())
        };
        let alice = db.get("alice").unwrap();
        assert_eq!(alice.password.shared_secret(), Some("a:b"));
        assert_eq!(spec("alice").as_deref(), Some("dovecot,pop3d"));
        let bob = db.get("bob").unwrap();
        assert_eq!(bob.maildrop.as_deref(), Some(Path::new("/srv/bob")));
        assert_eq!(bob.password.shared_secret(), Some("pw"));
        assert_eq!(spec("bob").as_deref(), Some("popa3d"));
        // "uidl=" right after the name is the password: a user needs one.
        let carol = db.get("carol").unwrap();
        assert_eq!(carol.password.shared_secret(), Some("uidl=x-uidl"));
        assert_eq!(spec("carol"), None);
        // Without '=' it is part of the password, as before.
        assert_eq!(
            db.get("dave").unwrap().password.shared_secret(),
            Some("pw:uidl")
        );
        assert_eq!(spec("dave"), None);
    }

    #[test]
    fn parse_refuses_a_bad_uidl_list() {
        for text in [
            "alice:pw:uidl=qpopper\n",
            "alice:pw:uidl=\n",
            "alice:pw:uidl=pop3d,pop3d\n",
            "alice:pw:/srv/a:uidl=Dovecot\n",
            "alice:uidl=x:uidl=pop3d,\n",
        ] {
            let (line, reason) = malformed_line(UsersDb::parse(text));
            assert_eq!(line, 1, "{text:?}");
            assert!(reason.contains("uidl"), "{text:?}: {reason}");
        }
        let (_, reason) = malformed_line(UsersDb::parse("alice::uidl=pop3d\n"));
        assert_eq!(reason, "empty password");
    }

    #[test]
    fn parse_keeps_spaces_and_colons_in_passwords() {
        let cases = [
            ("u:with space", "with space", None),
            ("u: leading and trailing ", " leading and trailing ", None),
            ("u:a:b", "a:b", None),
            ("u:a:b c", "a:b c", None),
            ("u:trailing:", "trailing:", None),
            ("u::", ":", None),
            ("u:a:b:c", "a:b:c", None),
            ("u:#not a comment", "#not a comment", None),
            ("u:slash/inside", "slash/inside", None),
            ("u:a:b:/var/mail/u", "a:b", Some("/var/mail/u")),
            ("u:a b::/var/mail/u", "a b:", Some("/var/mail/u")),
            ("u::x:/m", ":x", Some("/m")),
            ("u:pw\r", "pw", None),
        ];
        for (line, password, maildrop) in cases {
            let db = UsersDb::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(users_of(&db), [user("u", password, maildrop)], "{line:?}");
        }
    }

    #[test]
    fn parse_reports_each_malformed_line_with_its_number() {
        let cases = [
            ("alice\n", 1, "no ':' after the user name"),
            ("# c\n\nalice secret\n", 3, "no ':' after the user name"),
            ("a:b\n:secret\n", 2, "empty user name"),
            ("a:b\nc:d\n../x:secret\n", 3, "invalid user name"),
            (".hidden:secret\n", 1, "invalid user name"),
            ("a/b:secret\n", 1, "invalid user name"),
            ("bob.lock:secret\n", 1, "invalid user name"),
            (" alice:secret\n", 1, "invalid user name"),
            ("al ice:secret\n", 1, "invalid user name"),
            ("j\u{fc}rgen:secret\n", 1, "invalid user name"),
            ("alice:one\nbob:x\r\nalice:two\n", 3, "duplicate user name"),
            ("alice:\n", 1, "empty password"),
            ("alice:\r\n", 1, "empty password"),
            ("x:y\nalice::/var/mail/alice\n", 2, "empty password"),
            ("alice:pw:mail/alice\n", 1, "mbox path is not absolute"),
            (
                "a:b\r\nalice:pw:./alice\r\n",
                2,
                "mbox path is not absolute",
            ),
            ("alice:pw:~/mbox\n", 1, "mbox path is not absolute"),
        ];
        let long_name = format!("{}:secret\n", "n".repeat(41));
        for (text, line, reason) in
            cases
                .into_iter()
                .chain([(long_name.as_str(), 1, "invalid user name")])
        {
            assert_eq!(
                malformed_line(UsersDb::parse(text)),
                (line, reason),
                "{text:?}"
            );
        }
    }

    #[test]
    fn parse_octets_reports_the_line_that_is_not_utf8() {
        let octets = b"alice:secret\n# \xe9t\xe9\nbob:pass\xff\n";
        match UsersDb::parse_octets(octets) {
            Err(UsersError::NotUtf8 { line }) => assert_eq!(line, 2),
            other => panic!("expected NotUtf8, got {other:?}"),
        }
        let db = UsersDb::parse_octets("alice:p\u{e4}ss\n".as_bytes()).unwrap();
        assert_eq!(
            db.get("alice").and_then(|u| u.password.shared_secret()),
            Some("p\u{e4}ss")
        );
    }

    #[test]
    fn password_field_follows_dovecot_notation() {
        let crypt = |h: &str| Password::Crypt(h.to_owned());
        let clear = |t: &str| Password::Clear(t.to_owned());
        let cases = [
            ("{CRYPT}$y$j9T$abc", crypt("$y$j9T$abc")),
            ("{crypt}$6$salt$hash", crypt("$6$salt$hash")),
            ("{SHA512-CRYPT}$6$salt$hash", crypt("$6$salt$hash")),
            ("{BLF-CRYPT}$2y$05$x", crypt("$2y$05$x")),
            ("{PLAIN}secret", clear("secret")),
            ("{plain}{CRYPT}x", clear("{CRYPT}x")),
            ("{PLAIN}", clear("")),
            ("{CRYPT}", crypt("")),
            ("secret", clear("secret")),
            ("{SSHA}abc", clear("{SSHA}abc")),
            ("{CRYPT", clear("{CRYPT")),
            (" {CRYPT}x", clear(" {CRYPT}x")),
            ("$6$salt$hash", clear("$6$salt$hash")),
        ];
        for (field, expected) in cases {
            assert_eq!(Password::parse(field), expected, "{field:?}");
        }
    }

    #[test]
    fn parse_reads_hashed_and_explicit_clear_passwords() {
        let db = UsersDb::parse(
            "alice:{CRYPT}$6$saltsalt$h:/var/mail/a\nbob:{PLAIN}a:b\ncarol:{PLAIN}{x}\n",
        )
        .unwrap();
        let alice = db.get("alice").unwrap();
        assert_eq!(alice.password, Password::Crypt("$6$saltsalt$h".into()));
        assert_eq!(alice.maildrop.as_deref(), Some(Path::new("/var/mail/a")));
        assert_eq!(
            db.get("bob").unwrap().password,
            Password::Clear("a:b".into())
        );
        assert_eq!(
            db.get("carol").unwrap().password,
            Password::Clear("{x}".into())
        );
        for text in ["alice:{CRYPT}\n", "alice:{PLAIN}\n", "alice:{crypt}:/m\n"] {
            assert_eq!(
                malformed_line(UsersDb::parse(text)),
                (1, "empty password"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn crypt_password_checks_through_libcrypt_and_has_no_shared_secret() {
        let hash = sys::crypt("tanstaaf", "$6$saltsalt$").unwrap();
        let password = Password::Crypt(hash.clone());
        assert!(password.check("tanstaaf"));
        assert!(!password.check("tanstaaF"));
        assert!(!password.check(""));
        assert!(!password.check(&hash), "the hash itself is no password");
        assert_eq!(password.shared_secret(), None);
        for unusable in ["!", "*", "!$6$saltsalt$x", "not a hash"] {
            assert!(
                !Password::Crypt(unusable.into()).check("tanstaaf"),
                "{unusable}"
            );
        }
        let clear = Password::Clear("tanstaaf".into());
        assert!(clear.check("tanstaaf"));
        assert_eq!(clear.shared_secret(), Some("tanstaaf"));
    }

    #[test]
    fn unknown_user_costs_a_crypt_when_the_file_holds_hashes() {
        let hash = sys::crypt("pw", "$6$saltsalt$").unwrap();
        let db = UsersDb::parse(&format!("alice:{{CRYPT}}{hash}\nbob:clear\n")).unwrap();
        let checked = std::cell::RefCell::new(Vec::new());
        assert!(db
            .checked_user("nobody", |stored| {
                checked.borrow_mut().push(stored.clone());
                false
            })
            .is_none());
        assert_eq!(checked.into_inner(), [Password::Crypt(hash)]);
    }

    #[test]
    fn password_debug_hides_clear_text_and_hashes() {
        let shown = format!(
            "{:?} {:?}",
            Password::Clear("tanstaaf".into()),
            Password::Crypt("$6$salt$hashhash".into())
        );
        assert!(
            !shown.contains("tanstaaf") && !shown.contains("hashhash"),
            "{shown}"
        );
    }

    #[test]
    fn user_debug_hides_the_password() {
        let shown = format!("{:?}", user("alice", "tanstaaf", Some("/m")));
        assert!(shown.contains("alice"));
        assert!(!shown.contains("tanstaaf"));
    }

    #[test]
    fn users_error_messages_name_the_line_in_lowercase() {
        let cases = [
            (
                UsersError::Malformed {
                    line: 7,
                    reason: "empty password",
                },
                "line 7: empty password",
            ),
            (UsersError::NotUtf8 { line: 3 }, "line 3: not valid utf-8"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert!(error.source().is_none());
        }
    }

    #[test]
    fn maildrop_path_expands_the_pattern() {
        let alice = user("alice", "pw", None);
        let cases = [
            ("/var/mail/%u", "/var/mail/alice"),
            ("/home/%u/Mail/%u.mbox", "/home/alice/Mail/alice.mbox"),
            ("/var/mail/%%u", "/var/mail/%u"),
            ("/var/mail/%%%u", "/var/mail/%alice"),
            ("/srv/100%%/%u", "/srv/100%/alice"),
            ("/var/mail/%x/%u", "/var/mail/%x/alice"),
            ("/var/mail/%u%", "/var/mail/alice%"),
            ("/var/mail/fixed", "/var/mail/fixed"),
            ("%u", "alice"),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                maildrop_path(pattern, &alice),
                PathBuf::from(expected),
                "{pattern}"
            );
        }
    }

    #[test]
    fn maildrop_path_does_not_expand_percent_signs_in_the_name() {
        let odd = user("50%u", "pw", None);
        assert_eq!(
            maildrop_path("/var/mail/%u", &odd),
            PathBuf::from("/var/mail/50%u")
        );
    }

    #[test]
    fn maildrop_path_puts_a_system_users_home_for_percent_h() {
        let mut dave = user("dave", "pw", None);
        assert_eq!(
            maildrop_path("%h/mbox", &dave),
            PathBuf::from("%h/mbox"),
            "no account, no home"
        );
        dave.account = Some(Account {
            name: "dave".into(),
            uid: 1001,
            gid: 1001,
            home: PathBuf::from("/home/dave"),
            shell: PathBuf::from("/bin/sh"),
        });
        for (pattern, expected) in [
            ("%h/mbox", "/home/dave/mbox"),
            ("%h/Mail/%u", "/home/dave/Mail/dave"),
            ("/var/mail/%u", "/var/mail/dave"),
            ("%%h/%u", "%h/dave"),
        ] {
            assert_eq!(
                maildrop_path(pattern, &dave),
                PathBuf::from(expected),
                "{pattern}"
            );
        }
    }

    #[test]
    fn maildrop_path_prefers_the_users_own_mbox() {
        let bob = user("bob", "pw", Some("/srv/bob/inbox"));
        assert_eq!(
            maildrop_path("/var/mail/%u", &bob),
            PathBuf::from("/srv/bob/inbox")
        );
    }

    /// Writes a users file readable by its owner only, as an admin should.
    fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn names(db: &UsersDb) -> Vec<String> {
        users_of(db).into_iter().map(|u| u.name).collect()
    }

    #[test]
    fn load_reads_the_file() {
        let dir = TempDir::new("load");
        let path = write(&dir, "users", "alice:secret\nbob:pw:/var/mail/bob\n");
        let file = UsersFile::load(&path).unwrap();
        assert_eq!(file.path(), path);
        assert_eq!(names(&file.current()), ["alice", "bob"]);
    }

    #[test]
    fn load_refuses_a_missing_malformed_or_non_regular_file() {
        let dir = TempDir::new("load-refuses");
        assert!(matches!(
            UsersFile::load(&dir.path().join("absent")),
            Err(WatchError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        let malformed = write(&dir, "malformed", "alice:secret\nbob\n");
        assert!(matches!(
            UsersFile::load(&malformed),
            Err(WatchError::Parse(UsersError::Malformed { line: 2, .. }))
        ));
        let not_utf8 = dir.path().join("latin1");
        fs::write(&not_utf8, b"alice:s\xe9cret\n").unwrap();
        assert!(matches!(
            UsersFile::load(&not_utf8),
            Err(WatchError::Parse(UsersError::NotUtf8 { line: 1 }))
        ));
        assert!(matches!(
            UsersFile::load(dir.path()),
            Err(WatchError::NotAFile)
        ));
    }

    #[test]
    fn load_refuses_a_file_over_the_size_limit() {
        let dir = TempDir::new("too-large");
        let path = dir.path().join("users");
        let file = File::create(&path).unwrap();
        // Sparse: the size is all that matters, and it costs no disk space.
        file.set_len(MAX_USERS_FILE_OCTETS + 1).unwrap();
        let error = UsersFile::load(&path).unwrap_err();
        assert!(matches!(error, WatchError::TooLarge { .. }), "{error:?}");
        assert_eq!(error.to_string(), "larger than 4194304 octets");
        let comment = format!("#{}\n", "x".repeat(MAX_USERS_FILE_OCTETS as usize - 2));
        fs::write(&path, comment).unwrap();
        assert!(UsersFile::load(&path).unwrap().current().is_empty());
    }

    /// The reload itself is tested in `watched`; this checks that it reads the users format.
    #[test]
    fn current_rereads_the_users_and_keeps_them_when_a_line_is_malformed() {
        let dir = TempDir::new("reload");
        let path = write(&dir, "users", "alice:secret\n");
        let file = UsersFile {
            file: WatchedFile::load_with_recheck_interval(&path, FORMAT, Duration::ZERO).unwrap(),
        };
        // Longer each time, so the size differs whatever the mtime granularity.
        write(&dir, "users", "alice:secret\ncarol:newpass\n");
        let users = file.current();
        assert_eq!(names(&users), ["alice", "carol"]);
        assert_eq!(
            users.get("carol").and_then(|u| u.password.shared_secret()),
            Some("newpass")
        );
        write(&dir, "users", "alice:secret\ncarol:newpass\nbroken line\n");
        assert_eq!(names(&file.current()), ["alice", "carol"]);
    }

    #[test]
    fn users_file_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<UsersFile>();
    }
}
