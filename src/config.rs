//! The command line: getopts options -> a validated `Config`. Pure apart from resolving listen
//! addresses and reading the host name for the default; the caller decides what to do with
//! errors (exit 2 standalone, `-ERR` to the client under --inetd).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

use crate::bytes::is_digits;
use crate::proxy::TrustedNet;
use crate::security::PlaintextAuth;

/// RFC 1939 section 3: the autologout timer "MUST be of at least 10 minutes' duration".
pub const RFC_MIN_TIMEOUT: u64 = 600;

/// Longest autologout accepted: a day is already far past any client's patience, and a bound
/// keeps every deadline computation (now + timeout) far from overflowing.
pub const MAX_TIMEOUT: u64 = 86_400;

/// Longest --login-delay accepted (a week), for the same reason.
pub const MAX_LOGIN_DELAY: u64 = 7 * 86_400;

/// RFC 1035: a host name is at most 253 octets; it keeps the greeting and the CRAM-MD5
/// challenge, which both carry it, under RFC 2449's 512-octet reply limit.
pub const MAX_HOSTNAME: usize = 253;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    /// Addresses only a TLS front on this host reaches: their connections are secure.
    pub secure_listen: Vec<SocketAddr>,
    /// Where clear-text passwords are taken.
    pub plaintext_auth: PlaintextAuth,
    pub inetd: bool,
    pub users: PathBuf,
    pub maildrop: String,
    pub timeout: Duration,
    pub max_sessions: usize,
    /// 0 = no limit.
    pub max_per_ip: usize,
    pub hostname: String,
    pub log_file: Option<PathBuf>,
    /// 0 = LOGIN-DELAY off.
    pub login_delay: Duration,
    /// Peers that must open with a PROXY protocol header naming the real client.
    pub trusted_proxies: Vec<TrustedNet>,
    /// Things worth a log line once logging is set up.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
// Made once per process and matched at once: boxing the config would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    Run(Config),
    Help(String),
    Version,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    Options(String),
    BadValue { option: &'static str, why: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Options(why) => f.write_str(why),
            ConfigError::BadValue { option, why } => write!(f, "--{option}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn options() -> Options {
    let mut o = Options::new();
    o.optmulti(
        "l",
        "listen",
        "listen on ADDR (host:port); may be repeated; default 0.0.0.0:110",
        "ADDR",
    );
    o.optmulti(
        "",
        "secure-listen",
        "also listen on ADDR for a TLS front on this host (stunnel, nginx): connections there are secure and may send clear-text passwords; may be repeated",
        "ADDR",
    );
    o.optopt(
        "",
        "plaintext-auth",
        "where USER/PASS and AUTH PLAIN are taken: secure (loopback, --secure-listen, TLS at a trusted proxy) or always; default secure",
        "always|secure",
    );
    o.optflag("i", "inetd", "serve one session on stdin/stdout, then exit");
    o.optopt(
        "u",
        "users",
        "user database; default /etc/pop3d/users",
        "FILE",
    );
    o.optopt(
        "m",
        "maildrop",
        "each user's mbox path, %u = user name; default /var/mail/%u",
        "PATTERN",
    );
    o.optopt(
        "t",
        "timeout",
        "inactivity autologout; default 600 (the RFC 1939 minimum); lower values are accepted with a warning in the log",
        "SECONDS",
    );
    o.optopt("c", "max-sessions", "concurrent sessions; default 100", "N");
    o.optopt(
        "",
        "max-per-ip",
        "concurrent sessions from one client address; default 10, 0 = no limit",
        "N",
    );
    o.optopt(
        "",
        "login-delay",
        "refuse a user's login sooner than SECONDS after their previous one (RFC 2449 LOGIN-DELAY); default 0 = off",
        "SECONDS",
    );
    o.optopt(
        "n",
        "hostname",
        "name used in the greeting and APOP timestamp; default: host name",
        "NAME",
    );
    o.optopt(
        "",
        "log-file",
        "append the log to FILE instead of the default (stderr standalone, syslog under --inetd)",
        "FILE",
    );
    o.optmulti(
        "",
        "trusted-proxy",
        "a proxy (nginx, haproxy) whose connections begin with a PROXY protocol v1 or v2 header naming the real client; may be repeated; default: none",
        "ADDR[/PREFIX]",
    );
    o.optflag("h", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
    o
}

/// The usage text, listing every option with its default.
pub fn usage() -> String {
    options().usage("Usage: pop3d [options]\n\nA POP3 server (RFC 1939) for mbox maildrops.")
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Action, ConfigError> {
    let m = options()
        .parse(args)
        .map_err(|e| ConfigError::Options(e.to_string()))?;
    if m.opt_present("h") {
        return Ok(Action::Help(usage()));
    }
    if m.opt_present("V") {
        return Ok(Action::Version);
    }
    if let Some(extra) = m.free.first() {
        return Err(ConfigError::Options(format!(
            "unexpected argument: {extra}"
        )));
    }
    let mut warnings = Vec::new();
    let inetd = m.opt_present("i");
    let secure_listen = resolve("secure-listen", &m.opt_strs("secure-listen"))?;
    let addrs = m.opt_strs("l");
    // The default applies only when nothing is given: a host where a TLS front is the only
    // way in runs with --secure-listen alone.
    let addrs = if addrs.is_empty() && secure_listen.is_empty() {
        vec!["0.0.0.0:110".to_string()]
    } else {
        addrs
    };
    let listen = resolve("listen", &addrs)?;
    let plaintext_auth = plaintext_auth(&m)?;
    if let Some(warning) = plaintext_warning(plaintext_auth, inetd, &listen) {
        warnings.push(warning);
    }
    let users = PathBuf::from(m.opt_str("u").unwrap_or_else(|| "/etc/pop3d/users".into()));
    let maildrop = m.opt_str("m").unwrap_or_else(|| "/var/mail/%u".into());
    if !maildrop.contains("%u") {
        return Err(bad("maildrop", "the pattern must contain %u".into()));
    }
    let timeout = number(&m, "t", "timeout", RFC_MIN_TIMEOUT)?;
    if timeout == 0 || timeout > MAX_TIMEOUT {
        return Err(bad(
            "timeout",
            format!("must be 1 to {MAX_TIMEOUT} seconds"),
        ));
    }
    if timeout < RFC_MIN_TIMEOUT {
        warnings.push(format!(
            "--timeout {timeout} is below the RFC 1939 minimum of {RFC_MIN_TIMEOUT} seconds"
        ));
    }
    let max_sessions = number(&m, "c", "max-sessions", 100)?;
    if max_sessions == 0 {
        return Err(bad("max-sessions", "must be at least 1".into()));
    }
    let max_per_ip = number(&m, "max-per-ip", "max-per-ip", 10)?;
    let login_delay = number(&m, "login-delay", "login-delay", 0)?;
    if login_delay > MAX_LOGIN_DELAY {
        return Err(bad(
            "login-delay",
            format!("at most {MAX_LOGIN_DELAY} seconds"),
        ));
    }
    let hostname = match m.opt_str("n") {
        Some(name) => {
            if !valid_hostname(&name) {
                return Err(bad(
                    "hostname",
                    format!(
                        "must be 1 to {MAX_HOSTNAME} printable ASCII characters without <, > or @"
                    ),
                ));
            }
            name
        }
        None => system_hostname(),
    };
    let mut trusted_proxies = Vec::new();
    for text in m.opt_strs("trusted-proxy") {
        let net: TrustedNet = text
            .parse()
            .map_err(|e| bad("trusted-proxy", format!("{e}")))?;
        trusted_proxies.push(net);
    }
    Ok(Action::Run(Config {
        listen,
        secure_listen,
        plaintext_auth,
        inetd,
        users,
        maildrop,
        timeout: Duration::from_secs(timeout),
        max_sessions: usize::try_from(max_sessions).unwrap_or(usize::MAX),
        max_per_ip: usize::try_from(max_per_ip).unwrap_or(usize::MAX),
        hostname,
        log_file: m.opt_str("log-file").map(PathBuf::from),
        login_delay: Duration::from_secs(login_delay),
        trusted_proxies,
        warnings,
    }))
}

/// Resolves --listen or --secure-listen values, each host:port, without duplicates.
fn resolve(option: &'static str, addrs: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut listen = Vec::new();
    for a in addrs {
        let resolved: Vec<SocketAddr> = a
            .to_socket_addrs()
            .map_err(|e| bad(option, format!("{a}: {e}")))?
            .collect();
        // One host name may stand for several addresses (localhost: 127.0.0.1 and ::1).
        for r in resolved {
            if !listen.contains(&r) {
                listen.push(r);
            }
        }
    }
    Ok(listen)
}

fn plaintext_auth(m: &getopts::Matches) -> Result<PlaintextAuth, ConfigError> {
    match m.opt_str("plaintext-auth") {
        None => Ok(PlaintextAuth::Secure),
        Some(text) => text
            .parse()
            .map_err(|e| bad("plaintext-auth", format!("{e}"))),
    }
}

/// `--plaintext-auth always` on an address other hosts reach lets passwords cross the
/// network in the clear: allowed (a trusted LAN, an old client), but said at start-up.
fn plaintext_warning(policy: PlaintextAuth, inetd: bool, listen: &[SocketAddr]) -> Option<String> {
    if policy != PlaintextAuth::Always || inetd {
        return None;
    }
    let open = listen
        .iter()
        .find(|a| !a.ip().to_canonical().is_loopback())?;
    Some(format!(
        "--plaintext-auth always: passwords sent with USER/PASS or AUTH PLAIN to {open} cross the network in the clear"
    ))
}

fn bad(option: &'static str, why: String) -> ConfigError {
    ConfigError::BadValue { option, why }
}

fn number(
    m: &getopts::Matches,
    short: &str,
    option: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match m.opt_str(short) {
        None => Ok(default),
        Some(text) if is_digits(&text) => text
            .parse()
            .map_err(|_| bad(option, format!("{text}: too large"))),
        Some(text) => Err(bad(option, format!("{text}: not a number"))),
    }
}

/// The kernel's host name, for the greeting; "localhost" if it cannot be read or used.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| valid_hostname(s))
        .unwrap_or_else(|| "localhost".into())
}

/// A name that fits in `<...@NAME>` (the APOP timestamp) and keeps replies short.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'>' && b != b'<' && b != b'@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Action::Run(c) => Ok(c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:110".parse().unwrap()]);
        assert!(!c.inetd);
        assert_eq!(c.users, PathBuf::from("/etc/pop3d/users"));
        assert_eq!(c.maildrop, "/var/mail/%u");
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(c.max_sessions, 100);
        assert_eq!(c.max_per_ip, 10);
        assert_eq!(c.login_delay, Duration::ZERO);
        assert!(c.log_file.is_none());
        assert!(c.warnings.is_empty());
        assert!(c.secure_listen.is_empty());
        assert_eq!(c.plaintext_auth, PlaintextAuth::Secure);
    }

    #[test]
    fn secure_listen_is_read_and_alone_replaces_the_default_listen() {
        let c = run(&[
            "--secure-listen",
            "127.0.0.1:1995",
            "--secure-listen",
            "127.0.0.1:1996",
        ])
        .unwrap();
        assert!(c.listen.is_empty());
        assert_eq!(
            c.secure_listen,
            vec![
                "127.0.0.1:1995".parse().unwrap(),
                "127.0.0.1:1996".parse().unwrap()
            ]
        );
        let c = run(&["-l", "127.0.0.1:110", "--secure-listen", "127.0.0.1:1995"]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:110".parse().unwrap()]);
        assert_eq!(c.secure_listen, vec!["127.0.0.1:1995".parse().unwrap()]);
    }

    #[test]
    fn plaintext_auth_is_read() {
        let c = run(&["--plaintext-auth", "always", "-l", "127.0.0.1:110"]).unwrap();
        assert_eq!(c.plaintext_auth, PlaintextAuth::Always);
        let c = run(&["--plaintext-auth", "secure"]).unwrap();
        assert_eq!(c.plaintext_auth, PlaintextAuth::Secure);
    }

    #[test]
    fn plaintext_always_warns_only_on_an_address_others_reach() {
        let warned = |args: &[&str]| !run(args).unwrap().warnings.is_empty();
        assert!(warned(&["--plaintext-auth", "always"]));
        assert!(warned(&[
            "--plaintext-auth",
            "always",
            "-l",
            "127.0.0.1:110",
            "-l",
            "0.0.0.0:1110"
        ]));
        assert!(!warned(&[
            "--plaintext-auth",
            "always",
            "-l",
            "127.0.0.1:110",
            "-l",
            "[::1]:110"
        ]));
        assert!(!warned(&["--plaintext-auth", "always", "-i"]));
        assert!(!warned(&[
            "--plaintext-auth",
            "secure",
            "-l",
            "0.0.0.0:110"
        ]));
        assert!(!warned(&["-l", "0.0.0.0:110"]));
    }

    #[test]
    fn every_option_is_read() {
        let c = run(&[
            "-l",
            "127.0.0.1:1100",
            "--listen",
            "[::1]:1101",
            "-i",
            "-u",
            "/u",
            "-m",
            "/m/%u",
            "-t",
            "700",
            "-c",
            "5",
            "-n",
            "mail.example",
            "--log-file",
            "/l",
            "--max-per-ip",
            "0",
            "--login-delay",
            "60",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap();
        assert_eq!(
            c.listen,
            vec![
                "127.0.0.1:1100".parse().unwrap(),
                "[::1]:1101".parse().unwrap()
            ]
        );
        assert!(c.inetd);
        assert_eq!(c.users, PathBuf::from("/u"));
        assert_eq!(c.maildrop, "/m/%u");
        assert_eq!(c.timeout, Duration::from_secs(700));
        assert_eq!(c.max_sessions, 5);
        assert_eq!(c.max_per_ip, 0);
        assert_eq!(c.hostname, "mail.example");
        assert_eq!(c.log_file, Some(PathBuf::from("/l")));
        assert_eq!(c.login_delay, Duration::from_secs(60));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies[1].contains("::1".parse().unwrap()));
    }

    #[test]
    fn low_timeout_is_accepted_with_a_warning() {
        let c = run(&["-t", "1"]).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["-t", "0"][..],
            &["-t", "x"],
            &["-t", "-5"],
            &["-c", "0"],
            &["-c", "99999999999999999999999"],
            &["-m", "/var/mail/all"],
            &["-l", "nonsense"],
            &["-l", "127.0.0.1"],
            &["--bogus"],
            &["-t"],
            &["stray"],
            &["-n", "a<b"],
            &["--trusted-proxy", "10.0.0.5/8"],
            &["--trusted-proxy", "nginx"],
            &["-t", "18446744073709551615"],
            &["-t", "86401"],
            &["--login-delay", "99999999999"],
            &["--plaintext-auth", "never"],
            &["--plaintext-auth", ""],
            &["--plaintext-auth"],
            &["--secure-listen", "127.0.0.1"],
            &["--secure-listen", "nonsense"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn hostname_is_bounded() {
        let ok = "h".repeat(MAX_HOSTNAME);
        assert_eq!(run(&["-n", &ok]).unwrap().hostname, ok);
        let long = "h".repeat(MAX_HOSTNAME + 1);
        assert!(run(&["-n", &long]).is_err());
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let text = usage();
        for needle in [
            "--listen",
            "0.0.0.0:110",
            "--inetd",
            "--users",
            "/etc/pop3d/users",
            "--maildrop",
            "/var/mail/%u",
            "--timeout",
            "600",
            "--max-sessions",
            "100",
            "--hostname",
            "--log-file",
            "--help",
            "--version",
            "--max-per-ip",
            "--login-delay",
            "--secure-listen",
            "--plaintext-auth",
            "default secure",
        ] {
            assert!(text.contains(needle), "{needle} missing from usage");
        }
    }
}
