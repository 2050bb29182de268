//! pop3d: command line -> Config, logging, then standalone (listener) or one --inetd session.
//! `main` calls `try_main` and is the only place that exits the process.

#![forbid(unsafe_code)]

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pop3d::cli::{self, StartError};
use pop3d::config::{self, Action, Config};
use pop3d::listener::{Limits, Server, TimedStream};
use pop3d::logging::{self, Destination};
use pop3d::maildrop::OpenOptions;
use pop3d::session::{self, Context};
use pop3d::sources::MboxFiles;
use pop3d::users::UsersFile;

/// The name on log lines, messages and --version.
const PROGRAM: &str = "pop3d";

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
                return cli::exit_status(&e);
            }
            cli::fail(PROGRAM, &e, config::usage)
        }
    }
}

fn try_main(args: &[String]) -> Result<(), StartError> {
    let config = match config::parse(args).map_err(StartError::Usage)? {
        Action::Help(text) => {
            println!("{text}");
            return Ok(());
        }
        Action::Version => {
            cli::print_version(PROGRAM);
            return Ok(());
        }
        Action::Run(config) => config,
    };
    let destination = match (&config.log_file, config.inetd) {
        (Some(path), _) => Destination::File(path.clone()),
        (None, true) => Destination::Syslog,
        (None, false) => Destination::Stderr,
    };
    logging::init(PROGRAM, destination).map_err(StartError::Logging)?;
    install_panic_hook();
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let users =
        UsersFile::load(&config.users).map_err(|error| StartError::file(&config.users, error))?;
    let ctx = Context {
        hostname: config.hostname.clone(),
        users: Arc::new(users),
        maildrops: Arc::new(MboxFiles {
            pattern: config.maildrop.clone(),
            options: OpenOptions::default(),
        }),
        login_delay: config.login_delay,
        failure_delay: session::FAILURE_DELAY,
    };
    if config.inetd {
        serve_stdio(&config, &ctx);
        return Ok(());
    }
    let listeners = cli::bind(&config.listen, None)?;
    let limits = Limits {
        timeout: config.timeout,
        max_sessions: config.max_sessions,
        max_per_ip: config.max_per_ip,
        trusted_proxies: config.trusted_proxies.clone(),
    };
    Server::new(Arc::new(ctx), limits).serve(listeners);
    Ok(())
}

/// One session on stdin/stdout. When stdin is a socket (inetd, xinetd, systemd Accept=yes)
/// the autologout and write timeout work through it and the peer is logged; on a pipe (a
/// person trying it in a terminal) the session runs without them.
fn serve_stdio(config: &Config, ctx: &Context) {
    let socket = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(TcpStream::from)
        .ok();
    if let Some(stream) = socket {
        if let Ok(input) = TimedStream::new(&stream, config.timeout) {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "inetd-peer".into());
            log::info!("{peer}: connected (inetd)");
            let ending = session::run(BufReader::new(input), &stream, ctx, &peer);
            log::info!("{peer}: session ended: {ending}");
            return;
        }
    }
    log::info!("stdio: connected (not a socket, no autologout)");
    let ending = session::run(BufReader::new(io::stdin()), io::stdout(), ctx, "stdio");
    log::info!("stdio: session ended: {ending}");
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
    if logging::init(PROGRAM, destination).is_err() {
        let _ = logging::init(PROGRAM, Destination::Syslog);
    }
}
