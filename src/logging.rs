//! Where log lines go, for pop3d and pop3d-router alike: stderr when standalone; under
//! --inetd never stderr (inetd hands the client socket as fds 0, 1 and 2) but syslog over
//! /dev/log; `--log-file` overrides both. On stderr and in a file a line reads
//! "TIME PROGRAM[PID] LEVEL text": both programs' lines often end up side by side (a terminal,
//! a supervisor's log), and the pid tells a restarted process from its predecessor.
//! Levels come from RUST_LOG through env_logger, default info.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use env_logger::{Builder, Env, Target};

/// Syslog facility "mail" (RFC 3164 section 4.1.1).
const FACILITY_MAIL: u8 = 2;

/// The local syslog socket.
const SYSLOG_SOCKET: &str = "/dev/log";

/// Longest syslog datagram we send; the rest of a (very unusual) long line is cut.
const MAX_DATAGRAM: usize = 2048;

pub enum Destination {
    Stderr,
    Syslog,
    File(PathBuf),
}

#[derive(Debug)]
pub enum LoggingError {
    Open { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for LoggingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoggingError::Open { path, error } => {
                write!(f, "cannot open log file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LoggingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoggingError::Open { error, .. } => Some(error),
        }
    }
}

/// Installs the global logger for `program` (the name its lines carry). Call once, early.
pub fn init(program: &'static str, destination: Destination) -> Result<(), LoggingError> {
    let mut builder = Builder::from_env(Env::default().default_filter_or("info"));
    // Once, not per line: getpid is a system call.
    let pid = std::process::id();
    let line = move |buf: &mut env_logger::fmt::Formatter, record: &log::Record<'_>| {
        writeln!(
            buf,
            "{} {program}[{pid}] {:<5} {}",
            timestamp(),
            record.level(),
            record.args()
        )
    };
    match destination {
        Destination::Stderr => {
            builder.format(line);
            builder.target(Target::Stderr);
        }
        Destination::File(path) => {
            let file = open_log(&path)?;
            builder.format(line);
            builder.target(Target::Pipe(Box::new(file)));
        }
        Destination::Syslog => {
            builder.format(move |buf, record| {
                let severity = match record.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                writeln!(
                    buf,
                    "<{}>{program}[{pid}]: {}",
                    FACILITY_MAIL * 8 + severity,
                    record.args()
                )
            });
            builder.target(Target::Pipe(Box::new(Syslog::new())));
        }
    }
    // A second init (tests) is harmless: the first logger stays.
    let _ = builder.try_init();
    Ok(())
}

fn open_log(path: &Path) -> Result<File, LoggingError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| LoggingError::Open {
            path: path.to_path_buf(),
            error,
        })
}

/// Sends each complete line as one datagram to /dev/log; if there is no syslog, lines are
/// dropped (never redirected to stderr, which may be the client's socket).
struct Syslog {
    socket: Option<UnixDatagram>,
    pending: Vec<u8>,
}

impl Syslog {
    fn new() -> Syslog {
        Syslog {
            socket: None,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, line: &[u8]) {
        if self.socket.is_none() {
            self.socket = UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect(SYSLOG_SOCKET).is_ok());
        }
        let line = &line[..line.len().min(MAX_DATAGRAM)];
        if let Some(socket) = &self.socket {
            if socket.send(line).is_err() {
                // syslogd may have restarted: reconnect on the next line.
                self.socket = None;
            }
        }
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            self.send(&line[..line.len() - 1]);
        }
        if self.pending.len() > MAX_DATAGRAM {
            let line = std::mem::take(&mut self.pending);
            self.send(&line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// UTC time as "YYYY-MM-DDTHH:MM:SSZ", without a date crate.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_996_800 + 3661), "2026-11-30T01:01:01Z");
    }

    #[test]
    fn syslog_writer_splits_lines() {
        let mut s = Syslog::new();
        // No /dev/log needed: lines are consumed either way and nothing stays pending.
        s.write_all(b"<22>pop3d[1]: a\n<22>pop3d[1]: b").unwrap();
        assert_eq!(s.pending, b"<22>pop3d[1]: b");
        s.write_all(b"\n").unwrap();
        assert!(s.pending.is_empty());
    }
}
