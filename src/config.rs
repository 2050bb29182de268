//! pop3d's command line: its options and defaults, each option's validation, -> a `Config`.
//! The conventions it shares with pop3d-router (numbers, --listen, caps, --help) are in `cli`.
//! Pure apart from resolving listen addresses and reading the host name for the default; the
//! caller decides what to do with errors (exit 2 standalone, `-ERR` to the client under --inetd).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use getopts::{Matches, Options};

use crate::cli::{self, Parsed, UsageError};
use crate::proxy::TrustedNet;
use crate::security::PlaintextAuth;
use crate::uidl::UidlSpec;

/// RFC 1939 section 3: the autologout timer "MUST be of at least 10 minutes' duration".
const RFC_MIN_TIMEOUT: u64 = 600;

/// Longest autologout accepted: a day is already far past any client's patience, and a bound
/// keeps every deadline computation (now + timeout) far from overflowing.
const MAX_TIMEOUT: u64 = 86_400;

/// Longest --login-delay accepted (a week), for the same reason.
const MAX_LOGIN_DELAY: u64 = 7 * 86_400;

/// Longest --login-penalty accepted: an hour between two password checks of one address
/// already stops guessing; longer would only lock out the users behind it.
const MAX_LOGIN_PENALTY: u64 = 3600;

/// RFC 1035: a host name is at most 253 octets; it keeps the greeting and the CRAM-MD5
/// challenge, which both carry it, under RFC 2449's 512-octet reply limit.
const MAX_HOSTNAME: usize = 253;

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
    /// The longest wait between two password checks of one client address with failed
    /// logins (penalty.rs); zero turns the per-address penalty off.
    pub login_penalty: Duration,
    /// Peers that must open with a PROXY protocol header naming the real client.
    pub trusted_proxies: Vec<TrustedNet>,
    /// Authenticate against the system's accounts instead of a users file.
    pub system_users: bool,
    /// With --system-users: the lowest uid that may log in.
    pub first_uid: u32,
    /// Whose unique ids the messages get, unless the users file sets a user's own.
    pub uidl: UidlSpec,
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
    /// `--hash-password`: read a password on stdin, print a `{CRYPT}` users file field.
    HashPassword,
    /// `--uidl-report SCHEMES MBOX`: print the ids the list gives each message of MBOX.
    UidlReport {
        uidl: UidlSpec,
        mbox: PathBuf,
    },
}

/// pop3d's command-line errors are the shared ones (`cli`), printed before the usage.
pub type ConfigError = UsageError;

/// Default of --listen: every IPv4 address, POP3's port (RFC 1939).
const DEFAULT_LISTEN: &str = "0.0.0.0:110";

fn options() -> Options {
    let mut o = Options::new();
    cli::add_listen(&mut o, DEFAULT_LISTEN);
    o.optmulti(
        "",
        "secure-listen",
        "also listen on ADDR for a TLS front on this host (stunnel, nginx): connections there are secure and may send clear-text passwords; may be repeated; given alone, pop3d listens only there",
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
        "each user's mbox path, %u = user name, %h = home directory (--system-users only); default /var/mail/%u",
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
    cli::add_login_penalty(&mut o);
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
    o.optflag(
        "",
        "system-users",
        "authenticate the system's accounts (passwd, shadow) instead of a users file; each session works on the maildrop as its owner; needs root",
    );
    o.optopt(
        "",
        "first-uid",
        "with --system-users, the lowest uid that may log in; default 1000 (uid 0 never)",
        "N",
    );
    o.optopt(
        "",
        "uidl",
        "unique ids (UIDL) as another server gave them, schemes in order of preference: pop3d, popa3d, solid-pop3d, dovecot, dovecot-md5, uw, x-uidl; a message the first cannot name takes the next; default pop3d",
        "SCHEME[,SCHEME...]",
    );
    o.optopt(
        "",
        "uidl-report",
        "pop3d --uidl-report SCHEMES MBOX: print, per message of MBOX, its number, the id SCHEMES give it and the scheme that named it, and exit (a dry run before switching servers)",
        "SCHEMES",
    );
    o.optflag(
        "",
        "hash-password",
        "read a password on stdin, print it as a {CRYPT} users file field, and exit",
    );
    cli::add_help_and_version(&mut o);
    o
}

/// The usage text, listing every option with its default.
pub fn usage() -> String {
    options().usage("Usage: pop3d [options]\n\nA POP3 server (RFC 1939) for mbox maildrops.")
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Action, ConfigError> {
    if let Some(report) = uidl_report(args) {
        return report;
    }
    let m = match cli::parse(&options(), args)? {
        Parsed::Help => return Ok(Action::Help(usage())),
        Parsed::Version => return Ok(Action::Version),
        Parsed::Run(m) => m,
    };
    if m.opt_present("hash-password") {
        return Ok(Action::HashPassword);
    }
    let system_users = system_users(&m)?;
    let mut warnings = Vec::new();
    let inetd = m.opt_present("inetd");
    let secure_listen = cli::addresses(&m, "secure-listen", None)?;
    // The default applies only when nothing is given: a host where a TLS front is the only
    // way in runs with --secure-listen alone.
    let default_listen = secure_listen.is_empty().then_some(DEFAULT_LISTEN);
    let listen = cli::addresses(&m, "listen", default_listen)?;
    let plaintext_auth = cli::plaintext_auth(&m)?;
    if let Some(warning) = plaintext_warning(plaintext_auth, inetd, &listen) {
        warnings.push(warning);
    }
    Ok(Action::Run(Config {
        listen,
        secure_listen,
        plaintext_auth,
        inetd,
        users: PathBuf::from(
            m.opt_str("users")
                .unwrap_or_else(|| "/etc/pop3d/users".into()),
        ),
        maildrop: maildrop(&m, system_users)?,
        first_uid: first_uid(&m, system_users)?,
        system_users,
        timeout: timeout(&m, &mut warnings)?,
        max_sessions: cli::cap(&m, "max-sessions", 100)?,
        max_per_ip: usize::try_from(cli::number(&m, "max-per-ip", 10)?).unwrap_or(usize::MAX),
        login_delay: login_delay(&m)?,
        login_penalty: cli::login_penalty(&m, MAX_LOGIN_PENALTY)?,
        hostname: hostname(&m)?,
        log_file: m.opt_str("log-file").map(PathBuf::from),
        trusted_proxies: trusted_proxies(&m)?,
        uidl: uidl(m.opt_str("uidl").as_deref())?,
        warnings,
    }))
}

/// `--uidl SCHEME[,SCHEME...]`: known schemes, none twice; default `pop3d`.
fn uidl(value: Option<&str>) -> Result<UidlSpec, ConfigError> {
    match value {
        None => Ok(UidlSpec::default()),
        Some(list) => UidlSpec::parse(list).map_err(|e| cli::bad("uidl", e.to_string())),
    }
}

/// `pop3d --uidl-report SCHEMES MBOX`, a command of its own (the mbox is a plain argument,
/// which the server's options refuse): None if the arguments do not ask for it.
fn uidl_report(args: &[String]) -> Option<Result<Action, ConfigError>> {
    let at = args
        .iter()
        .position(|a| a == "--uidl-report" || a.starts_with("--uidl-report="))?;
    let report = match (at, &args[at..]) {
        (0, [flag, schemes, mbox]) if flag == "--uidl-report" => {
            uidl(Some(schemes)).map(|uidl| Action::UidlReport {
                uidl,
                mbox: PathBuf::from(mbox),
            })
        }
        _ => Err(cli::bad(
            "uidl-report",
            "usage: pop3d --uidl-report SCHEMES MBOX (nothing else)",
        )),
    };
    Some(report)
}

/// `--maildrop PATTERN`: one file per user, so the pattern names the user: %u, or with
/// --system-users %h (each account has its own home).
fn maildrop(m: &Matches, system_users: bool) -> Result<String, ConfigError> {
    let pattern = m
        .opt_str("maildrop")
        .unwrap_or_else(|| "/var/mail/%u".into());
    if pattern.contains("%u") || (system_users && pattern.contains("%h")) {
        return Ok(pattern);
    }
    let why = if pattern.contains("%h") {
        "%h (the home directory) needs --system-users"
    } else {
        "the pattern must contain %u"
    };
    Err(cli::bad("maildrop", why))
}

/// `--system-users`, which replaces the users file and so cannot go with `--users`.
fn system_users(m: &Matches) -> Result<bool, ConfigError> {
    let system = m.opt_present("system-users");
    if system && m.opt_present("users") {
        return Err(cli::bad("system-users", "cannot be used with --users"));
    }
    Ok(system)
}

/// `--first-uid N`: only with --system-users, and never 0 (root never logs in anyway; 0 would
/// let every system account, daemon and nobody included, log in).
fn first_uid(m: &Matches, system_users: bool) -> Result<u32, ConfigError> {
    let default = u64::from(crate::system_users::DEFAULT_FIRST_UID);
    if m.opt_present("first-uid") && !system_users {
        return Err(cli::bad("first-uid", "only with --system-users"));
    }
    let uid = cli::number(m, "first-uid", default)?;
    match u32::try_from(uid) {
        Ok(uid) if uid > 0 && uid != u32::MAX => Ok(uid),
        _ => Err(cli::bad(
            "first-uid",
            format!("must be 1 to {}", u32::MAX - 1),
        )),
    }
}

/// --timeout: 1 to `MAX_TIMEOUT` seconds; below the RFC's minimum only with a warning.
fn timeout(m: &Matches, warnings: &mut Vec<String>) -> Result<Duration, ConfigError> {
    let timeout = cli::number(m, "timeout", RFC_MIN_TIMEOUT)?;
    if timeout == 0 || timeout > MAX_TIMEOUT {
        return Err(cli::bad(
            "timeout",
            format!("must be 1 to {MAX_TIMEOUT} seconds"),
        ));
    }
    if timeout < RFC_MIN_TIMEOUT {
        warnings.push(format!(
            "--timeout {timeout} is below the RFC 1939 minimum of {RFC_MIN_TIMEOUT} seconds"
        ));
    }
    Ok(Duration::from_secs(timeout))
}

/// --login-delay: 0 (off) to `MAX_LOGIN_DELAY` seconds.
fn login_delay(m: &Matches) -> Result<Duration, ConfigError> {
    let delay = cli::number(m, "login-delay", 0)?;
    if delay > MAX_LOGIN_DELAY {
        return Err(cli::bad(
            "login-delay",
            format!("at most {MAX_LOGIN_DELAY} seconds"),
        ));
    }
    Ok(Duration::from_secs(delay))
}

/// --hostname, checked to fit the APOP timestamp; else the system's own name.
fn hostname(m: &Matches) -> Result<String, ConfigError> {
    match m.opt_str("hostname") {
        Some(name) if valid_hostname(&name) => Ok(name),
        Some(_) => Err(cli::bad(
            "hostname",
            format!("must be 1 to {MAX_HOSTNAME} printable ASCII characters without <, > or @"),
        )),
        None => Ok(system_hostname()),
    }
}

/// Every --trusted-proxy network.
fn trusted_proxies(m: &Matches) -> Result<Vec<TrustedNet>, ConfigError> {
    m.opt_strs("trusted-proxy")
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|e| cli::bad("trusted-proxy", format!("{e}")))
        })
        .collect()
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
        assert_eq!(c.login_penalty, Duration::from_secs(15));
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
            "--login-penalty",
            "0",
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
        assert_eq!(c.login_penalty, Duration::ZERO);
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
            &["--login-penalty", "3601"],
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
    fn uidl_takes_a_preference_list_and_defaults_to_pop3d() {
        assert_eq!(run(&[]).unwrap().uidl, UidlSpec::default());
        let c = run(&["--uidl", "dovecot,pop3d"]).unwrap();
        assert_eq!(c.uidl.to_string(), "dovecot,pop3d");
        for bad in ["", "qpopper", "pop3d,pop3d", "dovecot, pop3d", "Dovecot"] {
            match run(&["--uidl", bad]) {
                Err(UsageError::BadValue { option, .. }) => assert_eq!(option, "uidl", "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn uidl_report_is_a_command_of_its_own() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match parse(&args(&["--uidl-report", "popa3d,pop3d", "/var/mail/x"])) {
            Ok(Action::UidlReport { uidl, mbox }) => {
                assert_eq!(uidl.to_string(), "popa3d,pop3d");
                assert_eq!(mbox, PathBuf::from("/var/mail/x"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["--uidl-report", "popa3d"][..],
            &["--uidl-report", "bogus", "/m"],
            &["--uidl-report", "popa3d", "/m", "extra"],
            &["-i", "--uidl-report", "popa3d", "/m"],
            &["--uidl-report=popa3d", "/m"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
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
    fn system_users_take_the_first_uid_and_exclude_a_users_file() {
        let c = run(&[]).unwrap();
        assert!(!c.system_users);
        assert_eq!(c.first_uid, 1000);
        let c = run(&["--system-users"]).unwrap();
        assert!(c.system_users);
        assert_eq!(c.first_uid, 1000);
        let c = run(&["--system-users", "--first-uid", "500"]).unwrap();
        assert_eq!(c.first_uid, 500);
        let c = run(&["--system-users", "-m", "%h/mbox"]).unwrap();
        assert_eq!(c.maildrop, "%h/mbox");
        assert!(matches!(
            run(&["-m", "%h/mbox"]),
            Err(ConfigError::BadValue {
                option: "maildrop",
                ..
            })
        ));
        for (args, option) in [
            (
                &["--system-users", "-u", "/etc/pop3d/users"][..],
                "system-users",
            ),
            (&["--users=/x", "--system-users"], "system-users"),
            (&["--first-uid", "500"], "first-uid"),
            (&["--system-users", "--first-uid", "0"], "first-uid"),
            (
                &["--system-users", "--first-uid", "4294967295"],
                "first-uid",
            ),
            (
                &["--system-users", "--first-uid", "4294967296"],
                "first-uid",
            ),
            (&["--system-users", "--first-uid", "x"], "first-uid"),
        ] {
            match run(args) {
                Err(ConfigError::BadValue { option: o, .. }) => assert_eq!(o, option, "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn hash_password_is_an_action_of_its_own() {
        let args = vec!["--hash-password".to_string()];
        assert!(matches!(parse(&args), Ok(Action::HashPassword)));
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
            "--system-users",
            "--first-uid",
            "1000",
            "--hash-password",
            "--secure-listen",
            "--plaintext-auth",
            "default secure",
        ] {
            assert!(text.contains(needle), "{needle} missing from usage");
        }
    }
}
