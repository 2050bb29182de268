//! pop3d: command line -> Config, logging, then standalone (listener) or one --inetd session.
//! `main` calls `try_main` and is the only place that exits the process.

#![forbid(unsafe_code)]

use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pop3d::backend::MboxFiles;
use pop3d::config::{self, Action, Config};
use pop3d::listener::{self, Limits, Server, TimedStream};
use pop3d::logging::{self, Destination};
use pop3d::maildrop::OpenOptions;
use pop3d::security::Security;
use pop3d::session::{self, Connection, Context};
use pop3d::users::{UsersError, UsersFile};

/// Start-up failures; each is one line for stderr or the log.
#[derive(Debug)]
enum Error {
    Usage(config::ConfigError),
    Logging(logging::LoggingError),
    Users {
        path: PathBuf,
        error: UsersError,
    },
    Bind {
        addr: std::net::SocketAddr,
        error: io::Error,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(e) => write!(f, "{e}"),
            Error::Logging(e) => write!(f, "{e}"),
            Error::Users { path, error } => write!(f, "{}: {error}", path.display()),
            Error::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(e) => Some(e),
            Error::Logging(e) => Some(e),
            Error::Users { error, .. } => Some(error),
            Error::Bind { error, .. } => Some(error),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inetd = args.iter().any(|a| a == "-i" || a == "--inetd");
    match try_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if inetd {
                // fds 0-2 are the client's socket: the reason goes to the log, the client
                // gets a well-formed refusal.
                start_fallback_logging(&args);
                log::error!("cannot start: {e}");
                let _ = io::stdout().write_all(b"-ERR [SYS/PERM] server misconfigured\r\n");
            } else {
                eprintln!("pop3d: {e}");
                if let Error::Usage(_) = e {
                    eprintln!("{}", config::usage());
                }
            }
            match e {
                Error::Usage(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

fn try_main(args: &[String]) -> Result<(), Error> {
    let config = match config::parse(args).map_err(Error::Usage)? {
        Action::Help(text) => {
            println!("{text}");
            return Ok(());
        }
        Action::Version => {
            println!("pop3d {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Action::Run(config) => config,
    };
    let destination = match (&config.log_file, config.inetd) {
        (Some(path), _) => Destination::File(path.clone()),
        (None, true) => Destination::Syslog,
        (None, false) => Destination::Stderr,
    };
    logging::init(destination).map_err(Error::Logging)?;
    install_panic_hook();
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let users = UsersFile::load(&config.users).map_err(|error| Error::Users {
        path: config.users.clone(),
        error,
    })?;
    let ctx = Context {
        hostname: config.hostname.clone(),
        users: Arc::new(users),
        maildrops: Arc::new(MboxFiles {
            pattern: config.maildrop.clone(),
            options: OpenOptions::default(),
        }),
        login_delay: config.login_delay,
        failure_delay: session::FAILURE_DELAY,
        plaintext_auth: config.plaintext_auth,
    };
    if config.inetd {
        serve_stdio(&config, &ctx);
        return Ok(());
    }
    let listeners = bind(&config.listen, "")?;
    let secure_listeners = bind(&config.secure_listen, " (secure)")?;
    let limits = Limits {
        timeout: config.timeout,
        max_sessions: config.max_sessions,
        max_per_ip: config.max_per_ip,
        trusted_proxies: config.trusted_proxies.clone(),
    };
    Server::new(Arc::new(ctx), limits).serve(listeners, secure_listeners);
    Ok(())
}

/// Binds every address; `kind` tells the log line which sort of listener it is.
fn bind(addrs: &[std::net::SocketAddr], kind: &str) -> Result<Vec<TcpListener>, Error> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener =
            TcpListener::bind(addr).map_err(|error| Error::Bind { addr: *addr, error })?;
        let local = listener.local_addr().unwrap_or(*addr);
        log::info!("listening on {local}{kind}");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// One session on stdin/stdout. When stdin is a socket (inetd, xinetd, systemd Accept=yes)
/// the autologout and write timeout work through it and the peer is logged; on a pipe (a
/// person trying it in a terminal) the session runs without them.
///
/// Security as standalone: a TCP peer is judged by its address (after a PROXY header when
/// it is a trusted proxy); a pipe or a Unix socket has its other end on this host.
fn serve_stdio(config: &Config, ctx: &Context) {
    let socket = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(TcpStream::from)
        .ok();
    if let Some(stream) = socket {
        let (peer, security) = match stream.peer_addr() {
            Ok(peer) => match stdio_client(config, &stream, peer) {
                Some((client, tls)) => (client.to_string(), Security::of(client.ip(), false, tls)),
                None => return,
            },
            Err(_) => ("inetd-peer".to_string(), Security::LocalStream),
        };
        if let Ok(input) = TimedStream::new(&stream, config.timeout) {
            log::info!("{peer}: connected (inetd), {security}");
            let connection = Connection {
                peer: &peer,
                security,
            };
            let ending = session::run(BufReader::new(input), &stream, ctx, connection);
            log::info!("{peer}: session ended: {ending}");
            return;
        }
    }
    let security = Security::LocalStream;
    log::info!("stdio: connected (not a socket, no autologout), {security}");
    let connection = Connection {
        peer: "stdio",
        security,
    };
    let ending = session::run(BufReader::new(io::stdin()), io::stdout(), ctx, connection);
    log::info!("stdio: session ended: {ending}");
}

/// The client of an --inetd session on a TCP socket: the peer, or the client a trusted
/// proxy's PROXY header names (with its TLS flag). None if a trusted proxy sent no header.
fn stdio_client(
    config: &Config,
    stream: &TcpStream,
    peer: std::net::SocketAddr,
) -> Option<(std::net::SocketAddr, bool)> {
    let trusted = config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(peer.ip()));
    if !trusted {
        return Some((peer, false));
    }
    listener::read_proxy_header(stream, peer)
}

/// Panics go to the log, never to stderr (the client's socket under inetd); the unwinding
/// that follows ends only the panicking session's thread.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!(
            "panic in thread {}: {info}",
            thread.name().unwrap_or("unnamed")
        );
    }));
}

/// Logging for a start-up error under --inetd, when the options themselves may be wrong.
fn start_fallback_logging(args: &[String]) {
    let mut log_file = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(path) = a.strip_prefix("--log-file=") {
            log_file = Some(PathBuf::from(path));
        } else if a == "--log-file" {
            log_file = args.get(i + 1).map(PathBuf::from);
        }
    }
    let destination = log_file.map_or(Destination::Syslog, Destination::File);
    if logging::init(destination).is_err() {
        let _ = logging::init(Destination::Syslog);
    }
}
