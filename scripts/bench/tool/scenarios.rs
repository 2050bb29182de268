//! The scenarios. Each talks POP3 to a server given by address, user and password, checks
//! every reply it relies on (counts, octets, Message-IDs), records its figures, and fails,
//! after recording, when anything went wrong: a scenario never reports a time for lost mail.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::pop3::{resolve, Conn};
use crate::procfs::{self, Memory};
use crate::{fail, mbox, Args, Outcome, Results};

/// Bound on any one read in the short scenarios.
const SHORT: Duration = Duration::from_secs(30);

/// Bound on any one read where a peer may rewrite a gigabyte (Dovecot's first open of a big
/// mbox adds a header to every message).
const LONG: Duration = Duration::from_secs(600);

/// How often the server's memory is sampled while a big session is open.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// How long a server is given to settle before its memory is read.
const SETTLE: Duration = Duration::from_millis(1000);

const MIB: f64 = 1024.0 * 1024.0;

/// The shortest scenario, in seconds, whose CPU use is worth recording.
const MIN_CPU_WINDOW: f64 = 0.1;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The CPU the server (when its pid is given) and the load generator use during a scenario,
/// as a percentage of one core: on a small host the two share the cores, and a server
/// figure means little without knowing which side was busy.
struct CpuMeter {
    server: Option<u32>,
    server_start: f64,
    own_start: f64,
    start: Instant,
}

impl CpuMeter {
    fn start(args: &Args) -> Outcome<CpuMeter> {
        let server = match args.opt("pid") {
            Some(_) => Some(args.number("pid")? as u32),
            None => None,
        };
        Ok(CpuMeter {
            server,
            server_start: server.map_or(0.0, procfs::cpu_seconds),
            own_start: procfs::own_cpu_seconds(),
            start: Instant::now(),
        })
    }

    fn record(self, results: &mut Results, name: &str) {
        let wall = secs(self.start.elapsed());
        // CPU times come in 10 ms ticks: a shorter window would show noise.
        if wall < MIN_CPU_WINDOW {
            return;
        }
        if let Some(pid) = self.server {
            let used = procfs::cpu_seconds(pid) - self.server_start;
            results.record(&format!("{name}_server_cpu_pct"), 100.0 * used / wall);
        }
        let own = procfs::own_cpu_seconds() - self.own_start;
        results.record(&format!("{name}_client_cpu_pct"), 100.0 * own / wall);
    }
}

/// `sessions`: `clients` threads each loop connect, greeting, USER, PASS, STAT, QUIT for
/// `seconds`; client c only uses users c, c + clients, ... so no two clients ever want the
/// same maildrop at once (that would be a correct -ERR [IN-USE], not load).
pub fn sessions(args: &Args, results: &mut Results) -> Outcome<()> {
    let addr = resolve(args.text("addr")?)?;
    let prefix = args.text("prefix")?.to_string();
    let users = args.number("users")?;
    let password = args.text("password")?.to_string();
    let clients = args.number("clients")?;
    let seconds: f64 = args
        .text("seconds")?
        .parse()
        .map_err(|_| fail!("--seconds: not a number"))?;
    let expect = args.number("expect")?;
    if clients == 0 || users < clients || users % clients != 0 {
        return Err(fail!("--users must be a multiple of --clients"));
    }
    let per_client = users / clients;
    let cpu = CpuMeter::start(args)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let mut threads = Vec::new();
    for c in 0..clients {
        let prefix = prefix.clone();
        let password = password.clone();
        let first_error = Arc::clone(&first_error);
        threads.push(thread::spawn(move || {
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut k = 0;
            while Instant::now() < deadline {
                let user = format!("{prefix}{}", c + clients * (k % per_client));
                k += 1;
                match one_session(addr, &user, &password, expect) {
                    Ok(latency) => latencies.push(latency.as_micros() as u32),
                    Err(e) => {
                        errors += 1;
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| format!("{user}: {e}"));
                        // A refused connection fails at once; do not spin on it.
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            (latencies, errors, Instant::now())
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut end = start;
    for t in threads {
        let (l, e, finished) = t.join().map_err(|_| fail!("a client thread panicked"))?;
        latencies.extend(l);
        errors += e;
        end = end.max(finished);
    }
    latencies.sort_unstable();
    let elapsed = secs(end - start);
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
        f64::from(latencies[rank - 1]) / 1000.0
    };
    results.record("sessions_per_s", latencies.len() as f64 / elapsed);
    results.record("sessions_p50_ms", percentile(0.50));
    results.record("sessions_p99_ms", percentile(0.99));
    results.record("sessions_errors", errors as f64);
    cpu.record(results, "sessions");
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    match first_error {
        Some(e) => Err(fail!("{errors} sessions failed; the first: {e}")),
        None if latencies.is_empty() => Err(fail!("no session completed")),
        None => Ok(()),
    }
}

fn one_session(addr: SocketAddr, user: &str, password: &str, expect: u64) -> Outcome<Duration> {
    let start = Instant::now();
    let mut conn = Conn::connect(addr, SHORT)?;
    conn.login(user, password)?;
    let (messages, _) = conn.stat()?;
    if messages != expect {
        return Err(fail!("STAT says {messages} messages, expected {expect}"));
    }
    conn.command("QUIT")?;
    let latency = start.elapsed();
    conn.wait_closed();
    Ok(latency)
}

/// LIST as (number, octets) pairs, checked to be 1..=n in order.
fn list(conn: &mut Conn) -> Outcome<Vec<u64>> {
    conn.command("LIST")?;
    let mut sizes = Vec::new();
    for (i, line) in conn.lines()?.iter().enumerate() {
        let mut words = line.split(' ');
        let n: Option<u64> = words.next().and_then(|w| w.parse().ok());
        let octets: Option<u64> = words.next().and_then(|w| w.parse().ok());
        match (n, octets) {
            (Some(n), Some(octets)) if n == i as u64 + 1 => sizes.push(octets),
            _ => return Err(fail!("LIST: unexpected line {line:?}")),
        }
    }
    Ok(sizes)
}

/// Reads one RETR reply and checks its octets against LIST and the "+OK n octets" line.
fn read_message(conn: &mut Conn, n: usize, listed: u64) -> Outcome<u64> {
    let status = conn.status().map_err(|e| fail!("RETR {n}: {e}"))?;
    let announced: Option<u64> = status
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok());
    let octets = conn.body()?;
    if octets != listed || announced.is_some_and(|a| a != octets) {
        return Err(fail!(
            "RETR {n}: received {octets} octets, LIST said {listed}, +OK said {announced:?}"
        ));
    }
    Ok(octets)
}

/// Writes `commands` from another thread while the caller reads the replies, so a long
/// pipeline cannot deadlock on full socket buffers in both directions.
fn pipeline(conn: &Conn, commands: String) -> Outcome<thread::JoinHandle<std::io::Result<()>>> {
    let mut writer = conn.write_half()?;
    Ok(thread::spawn(move || writer.write_all(commands.as_bytes())))
}

fn join_writer(writer: thread::JoinHandle<std::io::Result<()>>) -> Outcome<()> {
    writer
        .join()
        .map_err(|_| fail!("the writer thread panicked"))?
        .map_err(|e| fail!("pipelined write: {e}"))
}

/// RETR of every message, one after the other (`pipelined` false) or all sent at once.
fn retr_all(args: &Args, pipelined: bool) -> Outcome<(usize, u64, Duration, CpuMeter)> {
    let addr = resolve(args.text("addr")?)?;
    let expect = args.number("expect")? as usize;
    let mut conn = Conn::connect(addr, LONG)?;
    conn.login(args.text("user")?, args.text("password")?)?;
    let sizes = list(&mut conn)?;
    if sizes.len() != expect {
        return Err(fail!(
            "LIST has {} messages, expected {expect}",
            sizes.len()
        ));
    }
    let cpu = CpuMeter::start(args)?;
    let start = Instant::now();
    let mut octets = 0;
    if pipelined {
        let commands: String = (1..=sizes.len()).map(|n| format!("RETR {n}\r\n")).collect();
        let writer = pipeline(&conn, commands)?;
        for (i, &listed) in sizes.iter().enumerate() {
            octets += read_message(&mut conn, i + 1, listed)?;
        }
        join_writer(writer)?;
    } else {
        for (i, &listed) in sizes.iter().enumerate() {
            conn.send(&format!("RETR {}", i + 1))?;
            octets += read_message(&mut conn, i + 1, listed)?;
        }
    }
    let elapsed = start.elapsed();
    conn.quit()?;
    Ok((sizes.len(), octets, elapsed, cpu))
}

/// `retr-big`: big messages one RETR at a time; MB/s (MB = 2^20 octets as sent).
pub fn retr_big(args: &Args, results: &mut Results) -> Outcome<()> {
    let (_, octets, elapsed, cpu) = retr_all(args, false)?;
    results.record("retr_big_mb_s", octets as f64 / MIB / secs(elapsed));
    cpu.record(results, "retr_big");
    Ok(())
}

/// `retr-small`: every RETR pipelined on one connection; messages per second.
pub fn retr_small(args: &Args, results: &mut Results) -> Outcome<()> {
    let (messages, _, elapsed, cpu) = retr_all(args, true)?;
    results.record("retr_small_msgs_s", messages as f64 / secs(elapsed));
    cpu.record(results, "retr_small");
    Ok(())
}

/// Samples a server's memory in the background and keeps the peak.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Memory>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut peak = Memory::default();
            while !flag.load(Ordering::Relaxed) {
                peak = max_memory(peak, procfs::measure(pid));
                thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        Sampler { stop, thread }
    }

    fn finish(self, pid: u32) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.join().unwrap_or_default();
        max_memory(peak, procfs::measure(pid))
    }
}

fn max_memory(a: Memory, b: Memory) -> Memory {
    Memory {
        rss_kb: a.rss_kb.max(b.rss_kb),
        pss_kb: a.pss_kb.max(b.pss_kb),
        processes: a.processes.max(b.processes),
    }
}

/// Runs `step` and times it in seconds.
fn timed<T>(step: impl FnOnce() -> Outcome<T>) -> Outcome<(T, f64)> {
    let start = Instant::now();
    let value = step()?;
    Ok((value, secs(start.elapsed())))
}

/// `open-huge`: a first session (PASS, STAT, QUIT) and a later one (PASS, STAT, LIST, UIDL)
/// on a big mbox, with the server's peak memory while the later one is open.
pub fn open_huge(args: &Args, results: &mut Results) -> Outcome<()> {
    let addr = resolve(args.text("addr")?)?;
    let user = args.text("user")?;
    let password = args.text("password")?;
    let expect = args.number("expect")?;
    let pid = args.number("pid")? as u32;

    let mut conn = Conn::connect(addr, LONG)?;
    conn.command(&format!("USER {user}"))?;
    let (_, pass1) = timed(|| conn.command(&format!("PASS {password}")))?;
    let ((messages, octets), stat1) = timed(|| conn.stat())?;
    if messages != expect {
        return Err(fail!("STAT says {messages} messages, expected {expect}"));
    }
    let (_, quit1) = timed(|| conn.command("QUIT"))?;
    conn.wait_closed();
    results.record("huge_pass1_s", pass1);
    results.record("huge_stat1_s", stat1);
    results.record("huge_first_s", pass1 + stat1);
    results.record("huge_quit1_s", quit1);

    let sampler = Sampler::start(pid);
    let mut conn = Conn::connect(addr, LONG)?;
    conn.command(&format!("USER {user}"))?;
    let (_, pass2) = timed(|| conn.command(&format!("PASS {password}")))?;
    let ((messages2, octets2), stat2) = timed(|| conn.stat())?;
    if (messages2, octets2) != (messages, octets) {
        return Err(fail!(
            "STAT changed between sessions: {messages} {octets}, then {messages2} {octets2}"
        ));
    }
    let (sizes, list_s) = timed(|| list(&mut conn))?;
    if sizes.len() as u64 != messages || sizes.iter().sum::<u64>() != octets {
        return Err(fail!("LIST does not add up to STAT"));
    }
    let (uidl, uidl_s) = timed(|| {
        conn.command("UIDL")?;
        conn.lines()
    })?;
    check_uidl(&uidl, messages)?;
    let peak = sampler.finish(pid);
    conn.quit()?;
    results.record("huge_pass2_s", pass2);
    results.record("huge_stat2_s", stat2);
    results.record("huge_list_s", list_s);
    results.record("huge_uidl_s", uidl_s);
    results.record("huge_later_s", stat2 + list_s + uidl_s);
    results.record("huge_rss_kb", peak.rss_kb as f64);
    results.record("huge_pss_kb", peak.pss_kb as f64);
    Ok(())
}

/// RFC 1939 section 7: one line per message, ids of 1 to 70 characters in 0x21..0x7E, no
/// two alike.
fn check_uidl(lines: &[String], messages: u64) -> Outcome<()> {
    if lines.len() as u64 != messages {
        return Err(fail!("UIDL has {} lines, expected {messages}", lines.len()));
    }
    let mut seen = HashSet::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let (n, id) = line.split_once(' ').unwrap_or((line, ""));
        let valid = (1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if n != (i + 1).to_string() || !valid || !seen.insert(id) {
            return Err(fail!("UIDL: bad or repeated line {line:?}"));
        }
    }
    Ok(())
}

/// One logged-in session on `user` for `update`, checked to hold `expect` messages.
fn update_session(addr: SocketAddr, args: &Args, expect: usize) -> Outcome<Conn> {
    let mut conn = Conn::connect(addr, LONG)?;
    conn.login(args.text("user")?, args.text("password")?)?;
    let (messages, _) = conn.stat()?;
    if messages != expect as u64 {
        return Err(fail!("STAT says {messages} messages, expected {expect}"));
    }
    Ok(conn)
}

/// `update`: on the big mbox, DELE 1 + QUIT, DELE of the last message + QUIT, then DELE of
/// `dele-many` messages spread over the mbox (pipelined) + QUIT; then the file itself must
/// hold exactly the messages that were not deleted, each whole, in their order.
pub fn update(args: &Args, results: &mut Results) -> Outcome<()> {
    let addr = resolve(args.text("addr")?)?;
    let path = args.text("mbox")?;
    let tag = args.opt("tag").unwrap_or("bench");
    let many = args.number("dele-many")? as usize;

    let mut conn = Conn::connect(addr, LONG)?;
    conn.login(args.text("user")?, args.text("password")?)?;
    let (messages, _) = conn.stat()?;
    // The generator numbers Message-IDs 1..=n in file order.
    let mut expected: Vec<u64> = (1..=messages).collect();
    let (_, dele) = timed(|| conn.command("DELE 1"))?;
    let (_, quit) = timed(|| conn.command("QUIT"))?;
    conn.wait_closed();
    expected.remove(0);
    results.record("upd_dele1_s", dele);
    results.record("upd_dele1_quit_s", quit);
    results.record("upd_dele1_total_s", dele + quit);

    let mut conn = update_session(addr, args, expected.len())?;
    let (_, dele) = timed(|| conn.command(&format!("DELE {}", expected.len())))?;
    let (_, quit) = timed(|| conn.command("QUIT"))?;
    conn.wait_closed();
    expected.pop();
    results.record("upd_last_total_s", dele + quit);

    let mut conn = update_session(addr, args, expected.len())?;
    let count = expected.len();
    let many = many.min(count).max(1);
    // Spread over the whole mbox, so the rewrite moves nearly all of it.
    let doomed: Vec<usize> = (0..many).map(|k| k * count / many).collect();
    let commands: String = doomed
        .iter()
        .map(|i| format!("DELE {}\r\n", i + 1))
        .collect();
    let (_, dele) = timed(|| {
        let writer = pipeline(&conn, commands)?;
        for i in &doomed {
            conn.status().map_err(|e| fail!("DELE {}: {e}", i + 1))?;
        }
        join_writer(writer)
    })?;
    let (_, quit) = timed(|| conn.command("QUIT"))?;
    conn.wait_closed();
    for &i in doomed.iter().rev() {
        expected.remove(i);
    }
    results.record("upd_many_dele_s", dele);
    results.record("upd_many_quit_s", quit);

    update_session(addr, args, expected.len())?.quit()?;
    let file = File::open(path).map_err(|e| fail!("{path}: {e}"))?;
    let census = mbox::census(BufReader::with_capacity(1 << 20, file), tag)
        .map_err(|e| fail!("{path}: {e}"))?;
    let present: HashSet<u64> = census.ids.iter().copied().collect();
    let wanted: HashSet<u64> = expected.iter().copied().collect();
    let missing = wanted.difference(&present).count();
    let extra = census.ids.len() - wanted.intersection(&present).count();
    let lost = missing + extra + census.damaged.len();
    results.record("upd_lost", lost as f64);
    if lost > 0 {
        return Err(fail!(
            "{path}: {missing} messages missing, {extra} unexpected or repeated, {} damaged",
            census.damaged.len()
        ));
    }
    if census.ids != expected {
        return Err(fail!("{path}: the messages are out of order"));
    }
    Ok(())
}

/// `memory --pid PID --figure NAME`: the server's memory now, as NAME_rss_kb and NAME_pss_kb.
pub fn memory(args: &Args, results: &mut Results) -> Outcome<()> {
    let pid = args.number("pid")? as u32;
    let figure = args.text("figure")?;
    thread::sleep(SETTLE);
    let now = procfs::measure(pid);
    results.record(&format!("{figure}_rss_kb"), now.rss_kb as f64);
    results.record(&format!("{figure}_pss_kb"), now.pss_kb as f64);
    Ok(())
}

/// `idle`: the server's memory at rest, then per unauthenticated connection held open.
pub fn idle(args: &Args, results: &mut Results) -> Outcome<()> {
    let addr = resolve(args.text("addr")?)?;
    let pid = args.number("pid")? as u32;
    let n = args.number("connections")? as usize;
    thread::sleep(SETTLE);
    let base = procfs::measure(pid);
    results.record("idle_server_rss_kb", base.rss_kb as f64);
    results.record("idle_server_pss_kb", base.pss_kb as f64);
    results.record("idle_server_processes", base.processes as f64);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(Conn::connect(addr, SHORT).map_err(|e| fail!("connection {i}: {e}"))?);
    }
    thread::sleep(SETTLE);
    let held = procfs::measure(pid);
    record_per(results, "idle_unauth", base, held, n);
    Ok(())
}

/// `idle-auth`: per logged-in session held open (each on its own user).
pub fn idle_auth(args: &Args, results: &mut Results) -> Outcome<()> {
    let addr = resolve(args.text("addr")?)?;
    let pid = args.number("pid")? as u32;
    let prefix = args.text("prefix")?;
    let users = args.number("users")? as usize;
    let password = args.text("password")?;
    let n = args.number("sessions")? as usize;
    if n > users {
        return Err(fail!(
            "--sessions above --users: sessions would share a maildrop"
        ));
    }
    thread::sleep(SETTLE);
    let base = procfs::measure(pid);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut conn = Conn::connect(addr, SHORT)?;
        conn.login(&format!("{prefix}{i}"), password)
            .map_err(|e| fail!("session {i}: {e}"))?;
        conn.stat()?;
        conns.push(conn);
    }
    thread::sleep(SETTLE);
    let held = procfs::measure(pid);
    record_per(results, "idle_auth", base, held, n);
    Ok(())
}

fn record_per(results: &mut Results, name: &str, base: Memory, held: Memory, n: usize) {
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n.max(1) as f64;
    results.record(&format!("{name}_rss_kb"), per(base.rss_kb, held.rss_kb));
    results.record(&format!("{name}_pss_kb"), per(base.pss_kb, held.pss_kb));
}

pub fn free_port() -> Outcome<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `startup`: exec of the server binary to its greeting being readable, the median over
/// `runs`; and its memory at rest after the first run's connection closed.
pub fn startup(args: &Args, results: &mut Results) -> Outcome<()> {
    let bin = args.text("bin")?;
    let runs = args.number_or("runs", 21)?.max(1);
    let mut times = Vec::new();
    for run in 0..runs {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args(&args.rest)
            .arg("--listen")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail!("{bin}: {e}"))?;
        let greeted = greeting(addr, start).map(drop);
        let elapsed = start.elapsed();
        if greeted.is_ok() {
            times.push(secs(elapsed) * 1000.0);
            if run == 0 {
                thread::sleep(SETTLE / 2);
                let rest = procfs::measure(child.id());
                results.record("startup_rss_kb", rest.rss_kb as f64);
                results.record("startup_pss_kb", rest.pss_kb as f64);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        greeted?;
    }
    times.sort_by(f64::total_cmp);
    results.record("startup_ms", times[times.len() / 2]);
    Ok(())
}

/// Connects as soon as the port accepts and reads the greeting line.
fn greeting(addr: SocketAddr, start: Instant) -> Outcome<TcpStream> {
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_read_timeout(Some(SHORT))?;
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line)?;
                if !line.starts_with("+OK") {
                    return Err(fail!("greeting: {line:?}"));
                }
                return Ok(stream);
            }
            Err(_) if start.elapsed() < SHORT => thread::yield_now(),
            Err(e) => return Err(fail!("the server never accepted: {e}")),
        }
    }
}

/// `tcp`: loopback TCP throughput with the same read buffer as the client, a reference for
/// retr-big.
pub fn tcp(args: &Args, results: &mut Results) -> Outcome<()> {
    let total = args.number("megabytes")? * 1024 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        let block = vec![b'x'; 256 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            stream.write_all(&block[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let mut got = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let elapsed = start.elapsed();
    sender
        .join()
        .map_err(|_| fail!("sender panicked"))?
        .map_err(|e| fail!("sender: {e}"))?;
    if got != total {
        return Err(fail!("received {got} of {total} octets"));
    }
    results.record("ref_tcp_mb_s", got as f64 / MIB / secs(elapsed));
    Ok(())
}

/// `cat`: `cat FILE > /dev/null` from the page cache (one untimed run warms it).
pub fn cat(args: &Args, results: &mut Results) -> Outcome<()> {
    let file = args.text("file")?;
    let run = || -> Outcome<f64> {
        let start = Instant::now();
        let status = Command::new("cat")
            .arg(file)
            .stdout(File::create("/dev/null")?)
            .status()?;
        if !status.success() {
            return Err(fail!("cat {file}: {status}"));
        }
        Ok(secs(start.elapsed()))
    };
    run()?;
    results.record("ref_cat_s", run()?);
    Ok(())
}
