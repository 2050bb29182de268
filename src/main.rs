//! pop3d: command line -> Config, logging, then standalone (listener) or one --inetd session.
//! `main` calls `try_main` and is the only place that exits the process.

#![forbid(unsafe_code)]

use std::error::Error;
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pop3d::cli::{self, StartError};
use pop3d::config::{self, Action, Config};
use pop3d::listener::{self, Limits, Server, StdioStream, TimedStream};
use pop3d::logging::{self, Destination};
use pop3d::maildrop::{self, MaildropError, OpenOptions};
use pop3d::owner::OwnerMaildrops;
use pop3d::penalty::{Penalties, PenaltyBook};
use pop3d::security::Security;
use pop3d::session::{self, Connection, Context, MaildropSource, UserSource};
use pop3d::session_process::{self, Daemon, Spawner};
use pop3d::sources::MboxFiles;
use pop3d::sys::{self, CryptError};
use pop3d::system_users::{SystemUsers, SystemUsersError};
use pop3d::uidl::{Named, UidlSpec, Unnamed};
use pop3d::users::UsersFile;

/// The name on log lines, messages and --version.
const PROGRAM: &str = "pop3d";

/// --hash-password reads at most this much: libxcrypt refuses longer passphrases anyway.
const MAX_PASSWORD_INPUT_OCTETS: u64 = sys::MAX_PASSPHRASE_OCTETS as u64 + 2;

/// Start-up failures of pop3d's own (the shared ones are `StartError`'s).
#[derive(Debug)]
enum SetupError {
    /// --system-users without root: /etc/shadow and the credential switch need it.
    NotRoot,
    SystemUsers(SystemUsersError),
    /// --hash-password: no usable password on stdin.
    HashPassword(String),
    /// --hash-password: libcrypt refused.
    Hash(CryptError),
    /// --uidl-report: the mbox cannot be read.
    UidlReport(PathBuf, MaildropError),
    /// A session process's hand-over from the daemon is unusable.
    SessionProcess(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NotRoot => f.write_str(
                "--system-users needs root: to read /etc/shadow and to switch each session to its user",
            ),
            SetupError::SystemUsers(e) => write!(f, "{e}"),
            SetupError::HashPassword(why) => write!(f, "--hash-password: {why}"),
            SetupError::Hash(e) => write!(f, "--hash-password: {e}"),
            // These two errors name the file themselves.
            SetupError::UidlReport(_, e @ (MaildropError::NotAFile(_) | MaildropError::NotOwned(_))) => {
                write!(f, "--uidl-report: {e}")
            }
            SetupError::UidlReport(path, e) => {
                write!(f, "--uidl-report: {}: {e}", path.display())
            }
            SetupError::SessionProcess(why) => write!(f, "{why}"),
        }
    }
}

impl Error for SetupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SetupError::SystemUsers(e) => Some(e),
            SetupError::Hash(e) => Some(e),
            SetupError::UidlReport(_, e) => Some(e),
            SetupError::NotRoot | SetupError::HashPassword(_) | SetupError::SessionProcess(_) => {
                None
            }
        }
    }
}

impl From<SetupError> for StartError {
    fn from(e: SetupError) -> StartError {
        StartError::Setup(Box::new(e))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let session_process = args.first().is_some_and(|a| a == session_process::FLAG);
    let inetd = args.iter().any(|a| a == "-i" || a == "--inetd");
    match try_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if session_process {
                // stdout is the client's socket, stderr the daemon's.
                eprintln!("{PROGRAM}: session process cannot start: {e}");
                let _ = io::stdout().write_all(b"-ERR [SYS/TEMP] cannot start a session\r\n");
                return cli::exit_status(&e);
            }
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
    let session = session_process::session_args(args);
    let config = match config::parse(session.unwrap_or(args)).map_err(StartError::Usage)? {
        Action::Help(text) => {
            println!("{text}");
            return Ok(());
        }
        Action::Version => {
            cli::print_version(PROGRAM);
            return Ok(());
        }
        Action::HashPassword => return Ok(hash_password()?),
        Action::UidlReport { uidl, mbox } => return Ok(uidl_report(&uidl, &mbox)?),
        Action::Run(config) => config,
    };
    if config.system_users && sys::effective_uid() != 0 {
        return Err(SetupError::NotRoot.into());
    }
    if session.is_some() {
        return run_session_process(&config);
    }
    init_logging(&config)?;
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    log::info!("unique ids: --uidl {}", config.uidl);
    let mut spawner = None;
    let (users, maildrops): (Arc<dyn UserSource>, Arc<dyn MaildropSource>) = if config.system_users
    {
        let users = SystemUsers::new(config.first_uid).map_err(SetupError::SystemUsers)?;
        let how = if config.inetd {
            "the process switches to its user"
        } else {
            "each session runs in a process that switches to its user"
        };
        log::info!("system users with uid {} and up; {how}", config.first_uid);
        if !config.inetd {
            spawner = Some(session_spawner(args, &config, &users)?);
        }
        (Arc::new(users), Arc::new(owner_maildrops(&config)))
    } else {
        let users = UsersFile::load(&config.users)
            .map_err(|error| StartError::file(&config.users, error))?;
        (Arc::new(users), Arc::new(mbox_files(&config)))
    };
    let penalties = Arc::new(Penalties::new(config.login_penalty));
    let ctx = context(&config, users, maildrops, penalties);
    if config.inetd {
        serve_stdio(&config, &ctx);
        return Ok(());
    }
    let listeners = cli::bind(&config.listen, None)?;
    let secure_listeners = cli::bind(&config.secure_listen, Some("secure"))?;
    let limits = Limits {
        timeout: config.timeout,
        max_sessions: config.max_sessions,
        max_per_ip: config.max_per_ip,
        trusted_proxies: config.trusted_proxies.clone(),
    };
    let mut server = Server::new(Arc::new(ctx), limits);
    if let Some(spawner) = spawner {
        server = server.with_session_processes(spawner);
    }
    server.serve(listeners, secure_listeners);
    Ok(())
}

/// The log of every mode: `--log-file`, else syslog under --inetd (stderr is the client's
/// socket there) and stderr standalone (a session process shares its daemon's).
fn init_logging(config: &Config) -> Result<(), StartError> {
    let destination = match (&config.log_file, config.inetd) {
        (Some(path), _) => Destination::File(path.clone()),
        (None, true) => Destination::Syslog,
        (None, false) => Destination::Stderr,
    };
    logging::init(PROGRAM, destination).map_err(StartError::Logging)?;
    install_panic_hook();
    Ok(())
}

fn mbox_files(config: &Config) -> MboxFiles {
    MboxFiles {
        pattern: config.maildrop.clone(),
        options: OpenOptions {
            uidl: config.uidl.clone(),
            ..OpenOptions::default()
        },
    }
}

/// --system-users: the mbox files, opened as their owner.
fn owner_maildrops(config: &Config) -> OwnerMaildrops {
    let mail_gid = sys::group_id("mail").unwrap_or_else(|e| {
        log::warn!("cannot look up group mail: {e}");
        None
    });
    OwnerMaildrops {
        files: mbox_files(config),
        mail_gid,
    }
}

fn context(
    config: &Config,
    users: Arc<dyn UserSource>,
    maildrops: Arc<dyn MaildropSource>,
    penalties: Arc<dyn PenaltyBook>,
) -> Context {
    Context {
        hostname: config.hostname.clone(),
        users,
        maildrops,
        login_delay: config.login_delay,
        failure_delay: session::FAILURE_DELAY,
        plaintext_auth: config.plaintext_auth,
        penalties,
    }
}

/// Standalone --system-users: what starts the session processes. Descriptors the daemon
/// inherited open across exec (from a careless parent) are closed to them first: they run
/// as users.
fn session_spawner(
    args: &[String],
    config: &Config,
    users: &SystemUsers,
) -> Result<Spawner, SetupError> {
    match sys::close_inherited_on_exec() {
        Ok(0) => {}
        Ok(n) => log::info!("{n} inherited descriptors kept from session processes"),
        Err(e) => log::warn!("cannot list inherited descriptors: {e}"),
    }
    Spawner::new(args.to_vec(), users.dummy_hash().to_owned(), config.timeout)
        .map_err(|e| SetupError::SessionProcess(format!("cannot run session processes: {e}")))
}

/// A session process of standalone --system-users (session_process.rs): stdin is the channel
/// to the daemon, which first hands over the client, stdout the client's socket. The
/// daemon has logged the start-up lines already.
fn run_session_process(config: &Config) -> Result<(), StartError> {
    let broken = |why: String| StartError::from(SetupError::SessionProcess(why));
    if !config.system_users || config.inetd {
        let why = "only standalone --system-users runs session processes";
        return Err(broken(why.into()));
    }
    session_process::name_process();
    init_logging(config)?;
    let daemon = Daemon::from_stdin()
        .map_err(|e| broken(format!("no channel to the daemon on stdin: {e}")))?;
    let daemon = Arc::new(daemon);
    let handoff = daemon
        .handoff()
        .map_err(|e| broken(format!("no hand-over from the daemon: {e}")))?;
    let stream = session_process::client_socket()
        .map_err(|e| broken(format!("no client socket on stdout: {e}")))?;
    let users = SystemUsers::with_dummy(config.first_uid, handoff.dummy);
    let ctx = context(
        config,
        Arc::new(users),
        Arc::new(owner_maildrops(config)),
        Arc::clone(&daemon) as Arc<dyn PenaltyBook>,
    );
    listener::serve_connection(
        stream,
        handoff.client,
        handoff.security,
        &ctx,
        config.timeout,
        move || daemon.release(),
    );
    Ok(())
}

/// `--hash-password`: one password on stdin (one line, its line end dropped) -> a `{CRYPT}`
/// field of the host's default method and cost on stdout, for a users file.
fn hash_password() -> Result<(), SetupError> {
    let mut input = Vec::new();
    io::stdin()
        .take(MAX_PASSWORD_INPUT_OCTETS + 1)
        .read_to_end(&mut input)
        .map_err(|e| SetupError::HashPassword(format!("cannot read stdin: {e}")))?;
    if input.len() as u64 > MAX_PASSWORD_INPUT_OCTETS {
        return Err(SetupError::HashPassword("password too long".into()));
    }
    let text = String::from_utf8(input)
        .map_err(|_| SetupError::HashPassword("password is not utf-8".into()))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let password = line.strip_suffix('\r').unwrap_or(line);
    if password.is_empty() || password.contains('\n') {
        return Err(SetupError::HashPassword(
            "expected one non-empty line on stdin".into(),
        ));
    }
    let setting = sys::default_setting().map_err(SetupError::Hash)?;
    let hash = sys::crypt(password, &setting).map_err(SetupError::Hash)?;
    println!("{{CRYPT}}{hash}");
    Ok(())
}

/// `--uidl-report SCHEMES MBOX`: per message "N ID NAMED-BY", NAMED-BY being the scheme
/// that named it or "fallback"; a message the list's first scheme did not name gets a fourth
/// column with what that scheme gave: its id (taken by an earlier message), "-absent" (no
/// header) or "-invalid". Then the summary a session would log, on stderr.
fn uidl_report(uidl: &UidlSpec, mbox: &std::path::Path) -> Result<(), SetupError> {
    let report =
        maildrop::dry_run(mbox, uidl).map_err(|e| SetupError::UidlReport(mbox.into(), e))?;
    let first_scheme = uidl.schemes().first().copied().map(Named::Scheme);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let rows = report.messages.iter().zip(&report.chosen.named);
    for (i, (m, named)) in rows.enumerate() {
        let by = match named {
            Named::Scheme(s) => s.name(),
            Named::Fallback => "fallback",
        };
        // Output errors (a closed pipe) end the listing quietly, as for any filter.
        let _ = write!(out, "{} {} {by}", i + 1, m.uid);
        if Some(*named) != first_scheme {
            let first = match report.first.get(i) {
                Some(Ok(id)) => id.as_str(),
                Some(Err(Unnamed::Invalid)) => "-invalid",
                Some(Err(Unnamed::Absent)) | None => "-absent",
            };
            let _ = write!(out, " {first}");
        }
        let _ = writeln!(out);
    }
    let _ = out.flush();
    eprintln!("{}", report.chosen.report);
    Ok(())
}

/// One session on stdin/stdout. When stdin is a socket (inetd, xinetd, systemd Accept=yes)
/// the autologout and write timeout work through it and the peer is logged; on a pipe (a
/// person trying it in a terminal) the session runs without them.
///
/// Security as standalone: a TCP peer is judged by its address (after a PROXY header when
/// it is a trusted proxy); a pipe or a Unix socket has its other end on this host. What stdin
/// is comes from its type: a network socket whose peer cannot be read is insecure.
fn serve_stdio(config: &Config, ctx: &Context) {
    let kind = listener::stdio_stream(io::stdin().as_fd()).unwrap_or_else(|e| {
        log::warn!("cannot tell what stdin is, taking it for a network socket: {e}");
        StdioStream::Network(None)
    });
    let socket = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(TcpStream::from)
        .ok();
    if let Some(stream) = socket {
        let (peer, address, security) = match &kind {
            StdioStream::Network(Some(peer)) => match stdio_client(config, &stream, *peer) {
                Some((client, security)) => (client.to_string(), Some(client.ip()), security),
                None => return,
            },
            StdioStream::Network(None) => ("inetd-peer".to_string(), None, Security::Open),
            StdioStream::Local => ("inetd-peer".to_string(), None, Security::LocalStream),
        };
        if let Ok(input) = TimedStream::new(&stream, config.timeout) {
            log::info!("{peer}: connected (inetd), {security}");
            let connection = Connection {
                peer: &peer,
                address,
                security,
            };
            let ending = session::run(BufReader::new(input), &stream, ctx, connection);
            log::info!("{peer}: session ended: {ending}");
            return;
        }
    }
    // Only a descriptor positively local is secure, even here.
    let security = match kind {
        StdioStream::Local => Security::LocalStream,
        StdioStream::Network(_) => Security::Open,
    };
    log::info!("stdio: connected (not a socket, no autologout), {security}");
    let connection = Connection {
        peer: "stdio",
        address: None,
        security,
    };
    let ending = session::run(BufReader::new(io::stdin()), io::stdout(), ctx, connection);
    log::info!("stdio: session ended: {ending}");
}

/// The client of an --inetd session on a TCP socket and its security: the peer, or the
/// client a trusted proxy's PROXY header names. None if a trusted proxy sent no header.
fn stdio_client(
    config: &Config,
    stream: &TcpStream,
    peer: std::net::SocketAddr,
) -> Option<(std::net::SocketAddr, Security)> {
    let trusted = config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(peer.ip()));
    if !trusted {
        return Some((peer, Security::of(peer.ip(), false, false)));
    }
    Some(listener::read_proxy_header(stream, peer)?.judge(peer, false))
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
