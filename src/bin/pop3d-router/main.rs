//! pop3d-router: the `auth_http` service behind nginx's mail proxy. For each POP3 login nginx
//! asks it over HTTP which backend pop3d holds the user's maildrop; it answers from the routes
//! file, and with `--users` it checks the password (plain, APOP, CRAM-MD5) itself first.
//!
//! Command line -> Config (getopts), logging, then one accept loop per listener and one
//! short-lived thread per request, with a cap on them. The wire format is in `http`, the
//! routes file in `routes`, the decision in `decide`; `main` is the only place that exits.

#![forbid(unsafe_code)]

mod decide;
mod http;
mod routes;
/// The package's one set of test helpers (see its doc), compiled into this binary's tests.
#[cfg(test)]
#[path = "../../testing.rs"]
#[allow(dead_code)]
mod testing;

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use getopts::Options;
use pop3d::cli::{self, Parsed, StartError, UsageError};
use pop3d::failed_login::{FailedLogin, Mechanism};
use pop3d::listener;
use pop3d::logging::{self, Destination};
use pop3d::penalty::{Penalties, Turn};
use pop3d::security::PlaintextAuth;
use pop3d::users::UsersFile;

use crate::decide::Verdict;
use crate::http::{Answer, Method};
use crate::routes::RoutesFile;

/// The name on log lines, messages and --version.
const PROGRAM: &str = "pop3d-router";

/// Default of --listen: loopback, where nginx on the same host reaches it.
const DEFAULT_LISTEN: &str = "127.0.0.1:9110";

/// nginx writes its request at once on a fresh connection and reads the answer at once: a
/// peer slower than this is not nginx, and must not hold a thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest --login-penalty and --wait accepted. A request may wait for its turn and then,
/// on the last attempt, for --wait before it is answered, and nginx gives up on an answer
/// after its auth_http_timeout (60 s by default): 40 + 15 leaves it 5 s.
const MAX_LOGIN_PENALTY: u64 = 40;
const MAX_WAIT: u64 = 15;

/// Request threads need little stack: the deepest path is parsing one small head.
const REQUEST_STACK: usize = 128 * 1024;

/// Reads per request come from a buffer of this size; a head is at most `MAX_HEAD_OCTETS`.
const INPUT_BUFFER: usize = 2 * 1024;

#[derive(Debug, Clone, PartialEq)]
struct Config {
    listen: Vec<SocketAddr>,
    routes: PathBuf,
    users: Option<PathBuf>,
    wait: Duration,
    max_connections: usize,
    log_file: Option<PathBuf>,
    plaintext_auth: PlaintextAuth,
    login_penalty: Duration,
}

#[derive(Debug)]
enum Action {
    Run(Config),
    Help,
    Version,
}

fn options() -> Options {
    let mut o = Options::new();
    cli::add_listen(&mut o, DEFAULT_LISTEN);
    o.optopt(
        "r",
        "routes",
        "routes file (user:address:port lines and a *:address:port default); default /etc/pop3d/routes",
        "FILE",
    );
    o.optopt(
        "u",
        "users",
        "check passwords (plain, apop, cram-md5) against this pop3d users file; default: route only, the backend checks",
        "FILE",
    );
    o.optopt(
        "w",
        "wait",
        "seconds nginx waits before passing on a refused login (Auth-Wait), 1 to 15; default 1",
        "SECONDS",
    );
    o.optopt(
        "c",
        "max-connections",
        "concurrent requests; default 100",
        "N",
    );
    o.optopt(
        "",
        "log-file",
        "append the log to FILE instead of stderr",
        "FILE",
    );
    o.optopt(
        "",
        "plaintext-auth",
        "where clear-text logins (plain, login) are routed: secure (client on TLS, Auth-SSL: on, or on loopback) or always; default secure",
        "always|secure",
    );
    cli::add_login_penalty(&mut o);
    cli::add_help_and_version(&mut o);
    o
}

fn usage() -> String {
    options().usage(
        "Usage: pop3d-router [options]\n\n\
         The auth_http service for nginx's mail proxy in front of pop3d backends.",
    )
}

fn parse_args(args: &[String]) -> Result<Action, UsageError> {
    let m = match cli::parse(&options(), args)? {
        Parsed::Help => return Ok(Action::Help),
        Parsed::Version => return Ok(Action::Version),
        Parsed::Run(m) => m,
    };
    Ok(Action::Run(Config {
        listen: cli::listen(&m, DEFAULT_LISTEN)?,
        routes: PathBuf::from(
            m.opt_str("routes")
                .unwrap_or_else(|| "/etc/pop3d/routes".into()),
        ),
        users: m.opt_str("users").map(PathBuf::from),
        wait: wait(&m)?,
        max_connections: cli::cap(&m, "max-connections", 100)?,
        log_file: m.opt_str("log-file").map(PathBuf::from),
        plaintext_auth: cli::plaintext_auth(&m)?,
        login_penalty: cli::login_penalty(&m, MAX_LOGIN_PENALTY)?,
    }))
}

/// --wait: at least a second, since without Auth-Wait nginx closes the connection, and with 0
/// it would answer at once; at most `MAX_WAIT`.
fn wait(m: &getopts::Matches) -> Result<Duration, UsageError> {
    let wait = cli::number(m, "wait", 1)?;
    if wait == 0 {
        return Err(cli::bad("wait", "must be at least 1 second"));
    }
    if wait > MAX_WAIT {
        return Err(cli::bad("wait", format!("at most {MAX_WAIT} seconds")));
    }
    Ok(Duration::from_secs(wait))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match try_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(PROGRAM, &e, usage),
    }
}

fn try_main(args: &[String]) -> Result<(), StartError> {
    let config = match parse_args(args).map_err(StartError::Usage)? {
        Action::Help => {
            println!("{}", usage());
            return Ok(());
        }
        Action::Version => {
            cli::print_version(PROGRAM);
            return Ok(());
        }
        Action::Run(config) => config,
    };
    let destination = config
        .log_file
        .clone()
        .map_or(Destination::Stderr, Destination::File);
    logging::init(PROGRAM, destination).map_err(StartError::Logging)?;
    let routes = RoutesFile::load(&config.routes)
        .map_err(|error| StartError::file(&config.routes, error))?;
    let users = match &config.users {
        Some(path) => Some(UsersFile::load(path).map_err(|error| StartError::file(path, error))?),
        None => None,
    };
    let mode = match &config.users {
        Some(path) => format!("checking passwords against {}", path.display()),
        None => "route only (the backends check passwords)".into(),
    };
    let listeners = cli::bind(&config.listen, Some(&mode))?;
    let router = Arc::new(Router {
        routes,
        users,
        wait: config.wait,
        max_connections: config.max_connections,
        open: AtomicUsize::new(0),
        plaintext_auth: config.plaintext_auth,
        penalties: Penalties::new(config.login_penalty),
    });
    listener::accept_forever(listeners, "router-accept", move |stream, peer| {
        router.admit(stream, peer)
    });
    Ok(())
}

struct Router {
    routes: RoutesFile,
    users: Option<UsersFile>,
    wait: Duration,
    max_connections: usize,
    open: AtomicUsize,
    plaintext_auth: PlaintextAuth,
    /// Failed checks per client address, as in pop3d (penalty.rs): with --users the router
    /// checks the passwords, so it slows the guessing.
    penalties: Penalties,
}

/// A request's place under the cap, given back on Drop (a panicking thread included).
struct Slot(Arc<Router>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Router {
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::SeqCst);
            // nginx tells its client "internal server error" and logs why; better than a
            // queue of threads that outlives the logins waiting on it.
            log::warn!("{peer}: refused, {} requests open", self.max_connections);
            return;
        }
        let slot = Slot(Arc::clone(self));
        let spawned = thread::Builder::new()
            .name("router-request".into())
            .stack_size(REQUEST_STACK)
            .spawn(move || {
                let router = Arc::clone(&slot.0);
                router.serve(&stream, peer);
                drop(slot);
            });
        if let Err(e) = spawned {
            log::error!("{peer}: cannot start a request thread: {e}");
        }
    }

    /// Answers one request on one connection.
    fn serve(&self, stream: &TcpStream, peer: SocketAddr) {
        if let Err(e) = stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        {
            log::warn!("{peer}: cannot set up the connection: {e}");
            return;
        }
        let mut input = BufReader::with_capacity(INPUT_BUFFER, stream);
        let request = match http::read_request(&mut input) {
            Ok(request) => request,
            // A port probe or health check that connects and leaves is no news.
            Err(http::HttpError::Empty) => {
                log::debug!("{peer}: closed without a request");
                return;
            }
            Err(e) => {
                log::warn!("{peer}: {e}");
                if !matches!(e, http::HttpError::Io(_) | http::HttpError::Truncated) {
                    let _ = http::write_answer(&mut &*stream, &Answer::BadRequest);
                }
                return;
            }
        };
        let client = request
            .client
            .map_or_else(|| format!("{peer} (no client-ip)"), |ip| ip.to_string());
        let verdict = decide::decide(
            &request,
            &self.routes.current(),
            self.users.as_ref(),
            self.plaintext_auth,
            || self.wait_turn(request.client, &client),
        );
        if let Some(address) = request.client {
            match &verdict {
                Verdict::LoginFailed => {
                    let user = String::from_utf8_lossy(&request.user);
                    self.penalties.failed(address, &user, Instant::now());
                }
                Verdict::Routed { user, .. } if self.users.is_some() => {
                    self.penalties.succeeded(address, user)
                }
                _ => {}
            }
        }
        let method = &request.method;
        match &verdict {
            Verdict::Routed { user, backend, .. } => {
                log::info!(
                    "{client}: {method} login as {} routed to {backend}",
                    user.escape_debug()
                )
            }
            Verdict::LoginFailed => {
                // The line of pop3d's own failed logins, for the same fail2ban filter.
                let failed = FailedLogin {
                    address: request.client,
                    mechanism: mechanism(method),
                    user: &String::from_utf8_lossy(&request.user),
                };
                log::info!("{client}: {failed}");
                log::debug!("{client}: attempt {} on its connection", request.attempt);
            }
            Verdict::NotPop3 => log::warn!(
                "{client}: refused, protocol {} is not pop3",
                request.protocol.escape_debug()
            ),
            Verdict::MethodUnavailable => log::warn!(
                "{client}: refused, {method} login {}",
                if self.users.is_some() {
                    "is not a pop3 method"
                } else {
                    "needs the router's --users (nginx's pop3_auth should be plain only)"
                }
            ),
            Verdict::PlaintextRefused => log::info!(
                "{client}: refused {method} login: clear text without tls (no auth-ssl: on)"
            ),
            Verdict::TurnRefused => log::info!(
                "{client}: too many password checks queued from the address: login refused unchecked"
            ),
            Verdict::PasswordNotPassable { user } => log::warn!(
                "{client}: refused {method} login as {}: the password has a control character \
                 or a blank at an end, which nginx cannot pass to the backend",
                user.escape_debug()
            ),
        }
        let (answer, delay) = decide::answer(&verdict, request.attempt, self.wait);
        // The last refused attempt is answered late by the router itself, since nginx only
        // waits when told to with Auth-Wait, and then it keeps the connection open.
        thread::sleep(delay);
        if let Err(e) = http::write_answer(&mut &*stream, &answer) {
            log::warn!("{peer}: cannot answer: {e}");
        }
    }
}

impl Router {
    /// Waits for `address`'s turn to have a password checked (penalty.rs), as a pop3d
    /// session does; false if its queue is full. Without a Client-IP (nginx always sends
    /// one) there is no address to count against.
    fn wait_turn(&self, address: Option<IpAddr>, client: &str) -> bool {
        let Some(address) = address else {
            return true;
        };
        match self.penalties.turn(address, Instant::now()) {
            Turn::Wait(wait) if wait.is_zero() => true,
            Turn::Wait(wait) => {
                log::debug!(
                    "{client}: earlier failed logins from {address}: check in {} ms",
                    wait.as_millis()
                );
                thread::sleep(wait);
                true
            }
            Turn::Refused => false,
        }
    }
}

/// The mechanism word of a failed login's line. nginx reports USER/PASS and AUTH PLAIN alike
/// as "plain". Other methods never get to a password check (decide refuses them first); they
/// would count as PLAIN.
fn mechanism(method: &Method) -> Mechanism {
    match method {
        Method::Plain | Method::Other(_) => Mechanism::Plain,
        Method::Login => Mechanism::Login,
        Method::Apop => Mechanism::Apop,
        Method::CramMd5 => Mechanism::CramMd5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, UsageError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse_args(&args)? {
            Action::Run(c) => Ok(c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:9110".parse().unwrap()]);
        assert_eq!(c.routes, PathBuf::from("/etc/pop3d/routes"));
        assert_eq!(c.users, None);
        assert_eq!(c.wait, Duration::from_secs(1));
        assert_eq!(c.login_penalty, Duration::from_secs(15));
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.log_file, None);
        assert_eq!(c.plaintext_auth, PlaintextAuth::Secure);
    }

    #[test]
    fn every_option_is_read() {
        let c = run(&[
            "-l",
            "127.0.0.1:1",
            "--listen",
            "[::1]:2",
            "-r",
            "/r",
            "-u",
            "/u",
            "-w",
            "3",
            "-c",
            "7",
            "--log-file",
            "/l",
            "--plaintext-auth",
            "always",
        ])
        .unwrap();
        assert_eq!(
            c.listen,
            vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()]
        );
        assert_eq!(c.routes, PathBuf::from("/r"));
        assert_eq!(c.users, Some(PathBuf::from("/u")));
        assert_eq!(c.wait, Duration::from_secs(3));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.log_file, Some(PathBuf::from("/l")));
        assert_eq!(c.plaintext_auth, PlaintextAuth::Always);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["-w", "0"][..],
            &["-w", "16"],
            &["-w", "x"],
            &["--login-penalty", "41"],
            &["-c", "0"],
            &["-c", "-1"],
            &["-l", "nonsense"],
            &["--bogus"],
            &["stray"],
            &["--plaintext-auth", "never"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn help_lists_every_option() {
        let text = usage();
        for needle in [
            "--listen",
            "--routes",
            "--users",
            "--wait",
            "--max-connections",
            "--log-file",
            "--plaintext-auth",
            "--login-penalty",
            "--help",
            "--version",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
    }
}
