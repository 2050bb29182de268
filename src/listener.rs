//! The standalone server: accept loops over bound `TcpListener`s, the session caps (in all and
//! per client address), one named OS thread per admitted connection, and the socket-level
//! timeouts (autologout on reads, a write timeout for clients that stop reading), and the facts
//! that make a connection secure (its client address, its listener, its PROXY header).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::proxy::{self, ProxyHeader, TrustedNet};
use crate::security::Security;
use crate::session::{self, Autologout, Connection, Context};
use crate::session_process::Spawner;

/// Session threads need little stack: the deepest path is a reply being formatted.
const SESSION_STACK: usize = 256 * 1024;

/// Input buffer per connection: enough for many pipelined commands at once.
const INPUT_BUFFER: usize = 4 * 1024;

/// After an accept error (e.g. out of file descriptors), pause before trying again rather than
/// spinning; sessions ending meanwhile free descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub max_sessions: usize,
    /// 0 = no per-address limit.
    pub max_per_ip: usize,
    /// Peers whose connections start with a PROXY header naming the real client.
    pub trusted_proxies: Vec<TrustedNet>,
}

/// Counts of live sessions, shared by every accept loop.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A live session's place in the counts; giving it back is tied to Drop so that a session
/// thread that panics still frees its place.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    /// The client address counted against --max-per-ip, once known (for a proxied
    /// connection, only after its PROXY header).
    ip: Option<IpAddr>,
}

impl Slot {
    /// Counts this session against its client address; false if that address is at its cap.
    fn claim_ip(&mut self, ip: IpAddr, max_per_ip: usize) -> bool {
        // ::ffff:a.b.c.d (a dual-stack socket, or a proxy's TCP6 line) is the IPv4 client.
        let ip = ip.to_canonical();
        let mut counts = lock(&self.counts);
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip > 0 && from_ip >= max_per_ip {
            return false;
        }
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        self.ip = Some(ip);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A poisoned lock only means a thread panicked while counting; the counts stay usable.
fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Server {
    ctx: Arc<Context>,
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
    /// Standalone --system-users: each session in a process of its own (session_process.rs).
    processes: Option<Arc<Spawner>>,
}

impl Server {
    pub fn new(ctx: Arc<Context>, limits: Limits) -> Server {
        Server {
            ctx,
            limits,
            counts: Arc::new(Mutex::new(Counts::default())),
            processes: None,
        }
    }

    /// Runs each session in a process `spawner` starts; the connection's thread stays, to
    /// hold the session's place under the caps and answer its penalty requests.
    pub fn with_session_processes(mut self, spawner: Spawner) -> Server {
        self.processes = Some(Arc::new(spawner));
        self
    }

    /// Serves every listener until the process ends. Connections accepted on
    /// `secure_listeners` (--secure-listen) are secure whatever their client's address.
    pub fn serve(self, listeners: Vec<TcpListener>, secure_listeners: Vec<TcpListener>) {
        let server = Arc::new(self);
        let secure_server = Arc::clone(&server);
        let secure = thread::Builder::new()
            .name("pop3d-secure".into())
            .spawn(move || {
                accept_forever(secure_listeners, "pop3d-accept", move |stream, peer| {
                    secure_server.admit(stream, peer, true)
                })
            });
        if let Err(e) = &secure {
            log::error!("cannot start the secure listeners: {e}");
        }
        accept_forever(listeners, "pop3d-accept", move |stream, peer| {
            server.admit(stream, peer, false)
        });
        if let Ok(handle) = secure {
            let _ = handle.join();
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr, secure_listener: bool) {
        let mut slot = {
            let mut counts = lock(&self.counts);
            if counts.total >= self.limits.max_sessions {
                drop(counts);
                log::warn!(
                    "{peer}: refused, {} sessions open",
                    self.limits.max_sessions
                );
                refuse(&stream, "too many sessions, try again later");
                return;
            }
            counts.total += 1;
            Slot {
                counts: Arc::clone(&self.counts),
                ip: None,
            }
        };
        let proxied = self
            .limits
            .trusted_proxies
            .iter()
            .any(|net| net.contains(peer.ip()));
        // A direct client is counted here, so a flood from one address never gets threads;
        // a proxied one only once its header has named the real client.
        let max_per_ip = self.limits.max_per_ip;
        if !proxied && !claim(&mut slot, &stream, peer, max_per_ip) {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let timeout = self.limits.timeout;
        let processes = self.processes.clone();
        let spawned = thread::Builder::new()
            .name("pop3d-session".into())
            .stack_size(SESSION_STACK)
            .spawn(move || {
                let mut slot = slot;
                let (client, security) = if proxied {
                    let Some(header) = read_proxy_header(&stream, peer) else {
                        return;
                    };
                    let (client, security) = header.judge(peer, secure_listener);
                    if !claim(&mut slot, &stream, client, max_per_ip) {
                        return;
                    }
                    (client, security)
                } else {
                    (peer, Security::of(peer.ip(), secure_listener, false))
                };
                let release = move || drop(slot);
                let Some(spawner) = processes else {
                    serve_connection(stream, client, security, &ctx, timeout, release);
                    return;
                };
                let served = spawner.serve(&stream, client, security, &*ctx.penalties, release);
                if let Err(e) = served {
                    log::error!("{client}: cannot start a session process: {e}");
                    refuse(&stream, "cannot start a session, try again later");
                }
            });
        if let Err(e) = spawned {
            log::error!("{peer}: cannot start a session thread: {e}");
        }
    }
}

/// Hands every connection accepted on any of `listeners` to `admit`, with one accept thread
/// per listener, until the process ends. `admit` runs on the accept thread, so it must only
/// decide and hand off. An error that concerns one client (it reset before we accepted it) is
/// skipped; others (out of file descriptors) are logged and retried after a pause.
pub fn accept_forever(
    listeners: Vec<TcpListener>,
    thread_name: &str,
    admit: impl Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
) {
    let admit = Arc::new(admit);
    let mut loops = Vec::new();
    for listener in listeners {
        let admit = Arc::clone(&admit);
        let spawned = thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || loop {
                match listener.accept() {
                    Ok((stream, peer)) => admit(stream, peer),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        log::warn!("accept failed: {e}");
                        thread::sleep(ACCEPT_BACKOFF);
                    }
                }
            });
        match spawned {
            Ok(handle) => loops.push(handle),
            Err(e) => log::error!("cannot start an accept loop: {e}"),
        }
    }
    for handle in loops {
        let _ = handle.join();
    }
}

/// Applies --max-per-ip to the client's address; refuses the connection when it is over.
fn claim(slot: &mut Slot, stream: &TcpStream, client: SocketAddr, max_per_ip: usize) -> bool {
    if slot.claim_ip(client.ip(), max_per_ip) {
        return true;
    }
    log::warn!(
        "{client}: refused, {max_per_ip} sessions open from {}",
        client.ip()
    );
    refuse(
        stream,
        "too many sessions from your address, try again later",
    );
    false
}

/// The client a trusted proxy's header speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxiedClient {
    /// The header names the client, and whether its SSL TLV says the client used TLS.
    Named { client: SocketAddr, tls: bool },
    /// v1 UNKNOWN, v2 LOCAL (or v2 without IP addresses): no client named. The connection
    /// is the proxy's own (a health check) or comes from a client it cannot name; either
    /// way the proxy's address says nothing of where the client is.
    Unnamed,
}

impl ProxiedClient {
    /// The address for the log and the per-address cap (the proxy's own for an unnamed
    /// client), and the connection's security.
    pub fn judge(self, proxy: SocketAddr, secure_listener: bool) -> (SocketAddr, Security) {
        match self {
            ProxiedClient::Named { client, tls } => {
                (client, Security::of(client.ip(), secure_listener, tls))
            }
            ProxiedClient::Unnamed => (proxy, Security::unnamed(secure_listener)),
        }
    }
}

/// Reads the PROXY header a trusted proxy sends first: the client it names, if any. None
/// (and the connection closed without a greeting) if there is none or it is malformed.
pub fn read_proxy_header(stream: &TcpStream, peer: SocketAddr) -> Option<ProxiedClient> {
    if let Err(e) = stream.set_read_timeout(Some(proxy::HEADER_TIMEOUT)) {
        log::warn!("{peer}: cannot set up the connection: {e}");
        return None;
    }
    match proxy::read_header(&mut &*stream) {
        Ok(ProxyHeader::Proxied {
            source, client_tls, ..
        }) => {
            log::debug!("{peer}: proxied for {source}");
            Some(ProxiedClient::Named {
                client: source,
                tls: client_tls,
            })
        }
        Ok(ProxyHeader::Local) => {
            log::debug!("{peer}: proxy named no client");
            Some(ProxiedClient::Unnamed)
        }
        Err(e) => {
            log::warn!("{peer}: trusted proxy sent no valid PROXY header: {e}");
            None
        }
    }
}

/// What an --inetd session's stdin is, as far as its security goes.
#[derive(Debug, PartialEq, Eq)]
pub enum StdioStream {
    /// A pipe, a terminal, a file or a Unix socket: its other end is on this host.
    Local,
    /// A network socket, and its peer if that can be read (a TCP socket whose peer cannot
    /// be read still has its other end somewhere on the network).
    Network(Option<SocketAddr>),
}

/// Tells what `fd` is from its type, never from a failure to read its peer: only a
/// descriptor that is positively no socket, or positively a Unix socket, is local.
pub fn stdio_stream(fd: BorrowedFd<'_>) -> io::Result<StdioStream> {
    let file = File::from(fd.try_clone_to_owned()?);
    if !file.metadata()?.file_type().is_socket() {
        return Ok(StdioStream::Local);
    }
    // getsockname answers for a Unix socket alone with an AF_UNIX address.
    let unix = UnixStream::from(OwnedFd::from(file));
    if unix.local_addr().is_ok() {
        return Ok(StdioStream::Local);
    }
    let tcp = TcpStream::from(OwnedFd::from(unix));
    Ok(StdioStream::Network(tcp.peer_addr().ok()))
}

/// Tells a client over the caps why it goes, without letting a client that does not read
/// stall the accept loop.
fn refuse(stream: &TcpStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    let mut stream = stream;
    let _ = stream.write_all(format!("-ERR [SYS/TEMP] {why}\r\n").as_bytes());
    // Closing with unread input makes the kernel send a reset, which can destroy the reply
    // before the client reads it: take what has already arrived (never waiting for more).
    let mut discard = [0u8; 512];
    let _ = stream.read(&mut discard);
}

/// Runs one session on an accepted connection (or, in a session process, on the one the
/// daemon accepted); `release` frees its place under the caps before the last reply is sent.
pub fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    security: Security,
    ctx: &Context,
    timeout: Duration,
    release: impl FnOnce(),
) {
    log::info!("{peer}: connected, {security}");
    let peer_name = peer.to_string();
    let connection = Connection {
        peer: &peer_name,
        address: Some(peer.ip()),
        security,
    };
    let ending = match TimedStream::new(&stream, timeout) {
        Ok(input) => session::run_then(
            BufReader::with_capacity(INPUT_BUFFER, input),
            &stream,
            ctx,
            connection,
            release,
        ),
        Err(e) => {
            log::warn!("{peer}: cannot set up the connection: {e}");
            return;
        }
    };
    log::info!("{peer}: session ended: {ending}");
}

/// A socket read side whose every read is bounded by the time left until the autologout
/// deadline, so bytes that never complete a command cannot keep the session alive.
pub struct TimedStream<'a> {
    stream: &'a TcpStream,
    timeout: Duration,
    deadline: Instant,
}

impl<'a> TimedStream<'a> {
    /// Also sets the write timeout: a client that stops reading a long reply is let go after
    /// the same time as an idle one.
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> io::Result<TimedStream<'a>> {
        stream.set_write_timeout(Some(timeout))?;
        // Replies are already batched by the session; Nagle would only delay the last piece.
        // Best effort: under inetd the socket may be a Unix one, which has no Nagle.
        let _ = stream.set_nodelay(true);
        Ok(TimedStream {
            stream,
            timeout,
            deadline: Instant::now() + timeout,
        })
    }
}

impl Read for TimedStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "autologout"));
        }
        let mut stream = self.stream;
        stream.set_read_timeout(Some(left))?;
        stream.read(buf)
    }
}

impl Autologout for TimedStream<'_> {
    fn restart(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_proxy_that_names_no_client_is_secure_only_on_a_secure_listener() {
        let proxy: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let unnamed = ProxiedClient::Unnamed;
        assert_eq!(unnamed.judge(proxy, false), (proxy, Security::Open));
        assert_eq!(
            unnamed.judge(proxy, true),
            (proxy, Security::SecureListener)
        );
        let named = |tls| ProxiedClient::Named { client, tls };
        assert_eq!(named(false).judge(proxy, false), (client, Security::Open));
        assert_eq!(
            named(true).judge(proxy, false),
            (client, Security::ProxyTls)
        );
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let named_local = ProxiedClient::Named {
            client: local,
            tls: false,
        };
        assert_eq!(named_local.judge(proxy, false), (local, Security::Loopback));
    }

    #[test]
    fn stdio_is_local_only_when_its_type_says_so() {
        let (reader, writer) = io::pipe().expect("pipe");
        assert_eq!(stdio_stream(reader.as_fd()).unwrap(), StdioStream::Local);
        assert_eq!(stdio_stream(writer.as_fd()).unwrap(), StdioStream::Local);
        let (unix, _other) = UnixStream::pair().expect("socket pair");
        assert_eq!(stdio_stream(unix.as_fd()).unwrap(), StdioStream::Local);
        // A TCP socket whose peer cannot be read (getpeername: ENOTCONN) is on the network.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        assert_eq!(
            stdio_stream(listener.as_fd()).unwrap(),
            StdioStream::Network(None)
        );
        let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        assert_eq!(
            stdio_stream(accepted.as_fd()).unwrap(),
            StdioStream::Network(Some(peer))
        );
        drop(client);
    }
}
