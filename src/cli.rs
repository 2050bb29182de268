//! The command-line conventions pop3d and pop3d-router share: --help and --version, no stray
//! arguments, whole numbers of digits only, listen addresses resolved once, a connection cap of
//! at least 1, the --plaintext-auth value, binding the listeners, the start-up errors, and a
//! usage error that prints the usage and exits 2. Each binary declares its own options and
//! defaults; the option texts and checks that must read alike live here.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use getopts::{Matches, Options};

use crate::bytes::is_digits;
use crate::logging::LoggingError;
use crate::security::PlaintextAuth;

/// Exit status of a command line that cannot be used (as getopts-based tools and BSD's
/// sysexits-free utilities do): the caller's mistake, not a failure of the program.
pub const USAGE_EXIT: u8 = 2;

/// A command line that cannot be used; the binary prints it, then its usage, and exits 2.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    /// getopts refused the arguments (an unknown option, a missing value), or a stray one.
    Options(String),
    /// An option's value is wrong: "--{option}: {why}".
    BadValue { option: &'static str, why: String },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Options(why) => f.write_str(why),
            UsageError::BadValue { option, why } => write!(f, "--{option}: {why}"),
        }
    }
}

impl Error for UsageError {}

/// Why a binary did not start; each is one line for stderr or the log.
#[derive(Debug)]
pub enum StartError {
    Usage(UsageError),
    Logging(LoggingError),
    /// A file read at start-up (users, routes) cannot be used.
    File {
        path: PathBuf,
        error: Box<dyn Error + Send + Sync>,
    },
    Bind {
        addr: SocketAddr,
        error: io::Error,
    },
    /// The binary's own set-up failed (its typed error, shown as it is).
    Setup(Box<dyn Error + Send + Sync>),
}

impl StartError {
    /// `StartError::File` for `path`.
    pub fn file(path: &std::path::Path, error: impl Error + Send + Sync + 'static) -> StartError {
        StartError::File {
            path: path.to_owned(),
            error: Box::new(error),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Usage(e) => write!(f, "{e}"),
            StartError::Logging(e) => write!(f, "{e}"),
            StartError::File { path, error } => write!(f, "{}: {error}", path.display()),
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Setup(e) => write!(f, "{e}"),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartError::Usage(e) => Some(e),
            StartError::Logging(e) => Some(e),
            StartError::File { error, .. } => Some(&**error),
            StartError::Bind { error, .. } => Some(error),
            StartError::Setup(e) => Some(&**e),
        }
    }
}

/// `UsageError::BadValue` for `--option`.
pub fn bad(option: &'static str, why: impl Into<String>) -> UsageError {
    UsageError::BadValue {
        option,
        why: why.into(),
    }
}

/// What a command line asks for, before the binary reads its own options.
pub enum Parsed {
    Run(Matches),
    Help,
    Version,
}

/// Adds the options every binary has: --help and --version.
pub fn add_help_and_version(o: &mut Options) {
    o.optflag("h", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
}

/// Adds `-l, --listen ADDR` with the binary's default address.
pub fn add_listen(o: &mut Options, default: &str) {
    o.optmulti(
        "l",
        "listen",
        &format!("listen on ADDR (host:port); may be repeated; default {default}"),
        "ADDR",
    );
}

/// Parses the arguments after the program name: --help and --version first, then no
/// argument may be left over.
pub fn parse(options: &Options, args: &[String]) -> Result<Parsed, UsageError> {
    let m = options
        .parse(args)
        .map_err(|e| UsageError::Options(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Parsed::Help);
    }
    if m.opt_present("version") {
        return Ok(Parsed::Version);
    }
    if let Some(extra) = m.free.first() {
        return Err(UsageError::Options(format!("unexpected argument: {extra}")));
    }
    Ok(Parsed::Run(m))
}

/// The value of `--option` as a whole number, or `default` when it is absent. Digits only:
/// str::parse alone would take "+5".
pub fn number(m: &Matches, option: &'static str, default: u64) -> Result<u64, UsageError> {
    match m.opt_str(option) {
        None => Ok(default),
        Some(text) if is_digits(&text) => text
            .parse()
            .map_err(|_| bad(option, format!("{text}: too large"))),
        Some(text) => Err(bad(option, format!("{text}: not a number"))),
    }
}

/// `--plaintext-auth always|secure`, default secure. Each binary says in its own help what
/// the policy covers (pop3d's connections, the router's nginx clients); the value reads alike.
pub fn plaintext_auth(m: &Matches) -> Result<PlaintextAuth, UsageError> {
    match m.opt_str("plaintext-auth") {
        None => Ok(PlaintextAuth::Secure),
        Some(text) => text
            .parse()
            .map_err(|e| bad("plaintext-auth", format!("{e}"))),
    }
}

/// Adds `--login-penalty SECONDS` (penalty.rs), each binary with its own longest value.
pub fn add_login_penalty(o: &mut Options) {
    o.optopt(
        "",
        "login-penalty",
        "after failed logins from an address, its password checks wait 2 s, doubling per failure up to SECONDS; default 15, 0 = off",
        "SECONDS",
    );
}

/// `--login-penalty`: 0 (off) to `max` seconds; default `penalty::MAX_DELAY`.
pub fn login_penalty(m: &Matches, max: u64) -> Result<Duration, UsageError> {
    let seconds = number(m, "login-penalty", crate::penalty::MAX_DELAY.as_secs())?;
    if seconds > max {
        return Err(bad("login-penalty", format!("at most {max} seconds")));
    }
    Ok(Duration::from_secs(seconds))
}

/// A cap on concurrent connections (`--max-sessions`, `--max-connections`): at least 1, since
/// 0 would refuse everyone.
pub fn cap(m: &Matches, option: &'static str, default: u64) -> Result<usize, UsageError> {
    let n = number(m, option, default)?;
    if n == 0 {
        return Err(bad(option, "must be at least 1"));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Every `--listen` address resolved, or `default` when none is given.
pub fn listen(m: &Matches, default: &str) -> Result<Vec<SocketAddr>, UsageError> {
    addresses(m, "listen", Some(default))
}

/// Every address given with `--option` (host:port, repeatable) resolved, or `default` when
/// none is given; one host name may stand for several addresses (localhost: 127.0.0.1 and
/// ::1), each listened on once.
pub fn addresses(
    m: &Matches,
    option: &'static str,
    default: Option<&str>,
) -> Result<Vec<SocketAddr>, UsageError> {
    let mut texts = m.opt_strs(option);
    if texts.is_empty() {
        texts.extend(default.map(str::to_string));
    }
    let mut addrs = Vec::new();
    for text in &texts {
        let resolved = text
            .to_socket_addrs()
            .map_err(|e| bad(option, format!("{text}: {e}")))?;
        for addr in resolved {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

/// Binds a listener to every address, logging "listening on ADDR" (and `note` after a comma).
pub fn bind(addrs: &[SocketAddr], note: Option<&str>) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener =
            TcpListener::bind(addr).map_err(|error| StartError::Bind { addr: *addr, error })?;
        let local = listener.local_addr().unwrap_or(*addr);
        match note {
            Some(note) => log::info!("listening on {local}, {note}"),
            None => log::info!("listening on {local}"),
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Prints `--version`'s line for `program`.
pub fn print_version(program: &str) {
    println!("{program} {}", env!("CARGO_PKG_VERSION"));
}

/// The exit status for a start-up failure: 2 for a command line that cannot be used, else 1.
pub fn exit_status(error: &StartError) -> ExitCode {
    match error {
        StartError::Usage(_) => ExitCode::from(USAGE_EXIT),
        _ => ExitCode::from(1),
    }
}

/// Reports a start-up failure on stderr as "program: error", followed by `usage` when the
/// command line was wrong, and gives the exit status.
pub fn fail(program: &str, error: &StartError, usage: impl FnOnce() -> String) -> ExitCode {
    eprintln!("{program}: {error}");
    if let StartError::Usage(_) = error {
        eprintln!("{}", usage());
    }
    exit_status(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(args: &[&str]) -> Result<Parsed, UsageError> {
        let mut o = Options::new();
        add_listen(&mut o, "127.0.0.1:1");
        o.optopt("c", "cap", "a cap", "N");
        add_help_and_version(&mut o);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&o, &args)
    }

    fn run(args: &[&str]) -> Matches {
        match matches(args) {
            Ok(Parsed::Run(m)) => m,
            _ => panic!("{args:?}: not a run"),
        }
    }

    #[test]
    fn help_and_version_come_before_anything_else() {
        assert!(matches!(matches(&["-h", "stray"]), Ok(Parsed::Help)));
        assert!(matches!(matches(&["--version"]), Ok(Parsed::Version)));
        assert_eq!(
            matches(&["stray"]).err(),
            Some(UsageError::Options("unexpected argument: stray".into()))
        );
        assert!(matches!(matches(&["--bogus"]), Err(UsageError::Options(_))));
    }

    #[test]
    fn numbers_are_digits_only_and_bounded() {
        assert_eq!(number(&run(&[]), "cap", 7), Ok(7));
        assert_eq!(number(&run(&["-c", "12"]), "cap", 7), Ok(12));
        for (text, why) in [
            ("+5", "+5: not a number"),
            ("-1", "-1: not a number"),
            ("x", "x: not a number"),
            ("99999999999999999999", "99999999999999999999: too large"),
        ] {
            let error = number(&run(&[&format!("--cap={text}")]), "cap", 7).unwrap_err();
            assert_eq!(error.to_string(), format!("--cap: {why}"));
        }
    }

    #[test]
    fn a_cap_is_at_least_one() {
        assert_eq!(cap(&run(&["-c", "1"]), "cap", 100), Ok(1));
        assert_eq!(
            cap(&run(&["-c", "0"]), "cap", 100).unwrap_err().to_string(),
            "--cap: must be at least 1"
        );
    }

    #[test]
    fn listen_addresses_default_resolve_and_deduplicate() {
        let one: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(listen(&run(&[]), "127.0.0.1:1"), Ok(vec![one]));
        let twice = run(&["-l", "127.0.0.1:2", "--listen", "127.0.0.1:2"]);
        assert_eq!(listen(&twice, "127.0.0.1:1").unwrap().len(), 1);
        let error = listen(&run(&["-l", "nonsense"]), "127.0.0.1:1").unwrap_err();
        assert!(
            error.to_string().starts_with("--listen: nonsense: "),
            "{error}"
        );
    }
}
