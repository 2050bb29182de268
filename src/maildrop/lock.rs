//! Locks on a maildrop: the delivery locks (OFD fcntl, dotlock, flock) that pop3d shares with
//! delivery agents while it scans or rewrites an mbox, and the session lock that keeps two
//! POP3 sessions off one maildrop. Every guard releases its locks on Drop. The OFD `fcntl`
//! call and the `kill(pid, 0)` probe of a dotlock's holder are in `sys`, with the crate's other
//! FFI.

use std::error::Error;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fs2::FileExt;

use super::companion;
use super::private::{self, Owners, PrivateError, Untrusted};
use crate::sys;

/// A dotlock older than this (by its mtime) is stale even if its holder seems alive:
/// liblockfile and postfix (`stale_lock_time`) also give up on a dotlock after about five
/// minutes, and pop3d refreshes its own while a long UPDATE runs. A younger dotlock is broken
/// only when its holder is provably gone (see `holder`).
pub const STALE_DOTLOCK_AGE: Duration = Duration::from_secs(300);

/// Pause between two attempts at the whole set of delivery locks: short enough that a
/// delivery's few milliseconds of locking cost little, long enough not to spin.
pub const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Most bytes read from someone else's dotlock: a pid and a newline fit easily.
const MAX_DOTLOCK_CONTENT: u64 = 64;

/// The words for a lock not obtained, shared with `MaildropError`, which carries the same
/// failures once a `LockError` has passed through `?`: one wording in the log either way.
pub(super) mod text {
    pub const IN_USE: &str = "maildrop is in use by another session";
    pub const TIMED_OUT: &str = "maildrop is locked by another program";
    /// Followed by ": " and the system's reason.
    pub const DENIED: &str = "cannot create lock file";
    /// After the path and ": ".
    pub const NOT_A_FILE: &str = "not a regular file";
}

/// Why a lock was not obtained.
#[derive(Debug)]
pub enum LockError {
    /// Another POP3 session holds the session lock.
    InUse,
    /// The delivery locks were not all free within the timeout.
    TimedOut,
    /// A lock file cannot be created at all (no permission, read-only file system).
    Denied(io::Error),
    /// The session lock's file is not pop3d's to use (see `private`): left as it is.
    Untrusted(Untrusted),
    /// Any other failure.
    Io(io::Error),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InUse => f.write_str(text::IN_USE),
            LockError::TimedOut => f.write_str(text::TIMED_OUT),
            LockError::Denied(e) => write!(f, "{}: {e}", text::DENIED),
            LockError::Untrusted(u) => u.fmt(f),
            LockError::Io(e) => write!(f, "cannot lock maildrop: {e}"),
        }
    }
}

impl Error for LockError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LockError::Denied(e) | LockError::Io(e) => Some(e),
            LockError::Untrusted(u) => Some(u),
            _ => None,
        }
    }
}

impl From<PrivateError> for LockError {
    fn from(e: PrivateError) -> Self {
        match e {
            PrivateError::Untrusted(u) => LockError::Untrusted(u),
            PrivateError::Io(e) => e.into(),
        }
    }
}

impl From<io::Error> for LockError {
    fn from(e: io::Error) -> Self {
        if is_denied(&e) {
            LockError::Denied(e)
        } else {
            LockError::Io(e)
        }
    }
}

/// Errors that mean "this process may not create files here", as opposed to a lock held by
/// someone else: pop3d refuses the login instead of going on without the lock.
fn is_denied(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Errors that mean the file system has no room left.
fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// `path` with `suffix` appended to its file name ("/var/mail/alice" -> "/var/mail/alice.lock");
/// the suffixes are those of `companion`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    companion::path(path, suffix)
}

/// Takes a non-blocking OFD write lock on all of `file`; Ok(false) if another open file
/// description (or a classic fcntl lock of another process) holds a conflicting lock. On
/// platforms without OFD locks this always succeeds without locking (and logs that once).
pub fn try_lock_ofd(file: &File) -> io::Result<bool> {
    crate::sys::try_lock_ofd(file)
}

/// Releases an OFD lock taken by `try_lock_ofd` through the same open file description.
pub fn unlock_ofd(file: &File) -> io::Result<()> {
    crate::sys::unlock_ofd(file)
}

/// A dotlock `PATH.lock`, created exclusively and holding our pid; removed on Drop.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
    file: File,
}

impl DotLock {
    /// Tries once to create the dotlock of `mbox`, breaking a stale one (its pid is provably
    /// gone, or it is older than `STALE_DOTLOCK_AGE`) and saying so in the log. Ok(None):
    /// held by a holder that may be alive.
    pub fn try_acquire(mbox: &Path) -> io::Result<Option<DotLock>> {
        let path = sibling(mbox, companion::DOTLOCK);
        // Two rounds: the second one follows the removal of a stale lock.
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(mut file) => {
                    match writeln!(file, "{}", std::process::id()) {
                        Ok(()) => {}
                        // On a full disk the lock is still ours (create_new made it), only
                        // without a pid; keeping it lets an UPDATE that frees space run.
                        Err(e) if is_full(&e) => {
                            log::warn!("dotlock {} holds no pid: {e}", path.display())
                        }
                        Err(e) => {
                            let _ = fs::remove_file(&path);
                            return Err(e);
                        }
                    }
                    return Ok(Some(DotLock { path, file }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !break_if_stale(&path)? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Refreshes the dotlock's mtime, so that a long UPDATE is not taken for a dead holder.
    pub fn touch(&self) -> io::Result<()> {
        self.file.set_modified(SystemTime::now())
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Remove only our own file: if another program broke our lock as stale and made its
        // own, removing that one would let a third program in.
        let ours = match (self.file.metadata(), fs::symlink_metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                log::error!("cannot remove dotlock {}: {e}", self.path.display());
            }
        } else {
            log::warn!(
                "dotlock {} was replaced by another program",
                self.path.display()
            );
        }
    }
}

/// Removes the dotlock at `path` if it is stale. Ok(true) when the path is free now.
fn break_if_stale(path: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    let age = SystemTime::now()
        .duration_since(meta.modified()?)
        .unwrap_or(Duration::ZERO);
    let pid = if meta.is_file() { read_pid(path) } else { None };
    let reason = match pid.map(holder) {
        Some(Holder::Gone(pid)) => format!("its process {pid} is gone"),
        _ if age > STALE_DOTLOCK_AGE => format!("it is {} s old", age.as_secs()),
        _ => return Ok(false),
    };
    log::warn!("breaking stale dotlock {}: {reason}", path.display());
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// The pid written in a dotlock ("1234\n"), if it holds one.
fn read_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(MAX_DOTLOCK_CONTENT)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

/// What pop3d can tell about the process named in a dotlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// Provably gone: the dotlock is stale whatever its age.
    Gone(u32),
    /// Alive, or nothing can be proven: only the age rule may break the dotlock.
    NotProvenGone,
}

/// Whether the process `pid` of a dotlock is provably gone. The proof is ESRCH from
/// `kill(pid, 0)`, trusted only when pop3d runs in the initial pid namespace, where every
/// process of the host has its own number: in a container an agent outside it has a pid
/// pop3d cannot see, and `/proc/PID` proves nothing anywhere (a `hidepid=2` mount hides
/// other users' processes). EPERM means the process exists. A delivery agent that runs in a
/// container of its own writes pids of its namespace, which nothing outside can check: like
/// liblockfile, pop3d cannot tell those apart from dead ones (such agents are better set to
/// write no pid, or to use fcntl/flock locks only).
fn holder(pid: u32) -> Holder {
    match sys::signal_zero(pid) {
        Some(sys::Probe::NoSuchProcess) if in_initial_pid_namespace() => Holder::Gone(pid),
        _ => Holder::NotProvenGone,
    }
}

/// The inode number of the initial pid namespace (Linux `PROC_PID_INIT_INO`), as
/// `/proc/self/ns/pid` names it.
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

/// Whether this process sees every process of the host by its own pid. Without /proc (or
/// off Linux) this cannot be told, and the answer is no, so only the age rule breaks locks.
fn in_initial_pid_namespace() -> bool {
    fs::read_link("/proc/self/ns/pid").is_ok_and(|ns| ns == Path::new(INITIAL_PID_NAMESPACE))
}

/// The delivery locks of one mbox, held while pop3d scans or rewrites it; released on Drop in
/// the reverse order of taking: flock, dotlock, OFD lock.
#[derive(Debug)]
pub struct DeliveryLocks<'a> {
    file: Option<&'a File>,
    ofd: bool,
    dotlock: Option<DotLock>,
    flock: bool,
    /// When the set was complete: how long delivery was held up is logged on Drop.
    taken: Instant,
}

impl<'a> DeliveryLocks<'a> {
    /// Takes the OFD write lock on `file`, the dotlock of `mbox`, then an fs2 exclusive lock
    /// on `file`, each without blocking; when one is busy, releases those taken, pauses and
    /// tries the set again, until `timeout` has passed (`LockError::TimedOut`). `file` is
    /// None when the mbox does not exist: then only the dotlock is taken.
    pub fn acquire(
        file: Option<&'a File>,
        mbox: &Path,
        timeout: Duration,
    ) -> Result<DeliveryLocks<'a>, LockError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(locks) = Self::try_acquire(file, mbox)? {
                return Ok(locks);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LockError::TimedOut);
            }
            thread::sleep(LOCK_RETRY_PAUSE.min(deadline - now));
        }
    }

    /// One attempt at the whole set, in Debian policy's order (fcntl, dotlock, flock).
    /// Ok(None): one of them is busy and all that were taken are released again.
    fn try_acquire(file: Option<&'a File>, mbox: &Path) -> Result<Option<Self>, LockError> {
        let mut locks = DeliveryLocks {
            file,
            ofd: false,
            dotlock: None,
            flock: false,
            taken: Instant::now(),
        };
        if let Some(f) = file {
            if !try_lock_ofd(f).map_err(LockError::Io)? {
                return Ok(None);
            }
            locks.ofd = crate::sys::OFD_SUPPORTED;
        }
        match DotLock::try_acquire(mbox)? {
            Some(d) => locks.dotlock = Some(d),
            None => return Ok(None),
        }
        if let Some(f) = file {
            match FileExt::try_lock_exclusive(f) {
                Ok(()) => locks.flock = true,
                Err(e) if is_contended(&e) => return Ok(None),
                Err(e) => return Err(LockError::Io(e)),
            }
        }
        locks.taken = Instant::now();
        Ok(Some(locks))
    }

    /// The dotlock, to refresh it during a long rewrite.
    pub fn dotlock(&self) -> Option<&DotLock> {
        self.dotlock.as_ref()
    }
}

impl Drop for DeliveryLocks<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.file {
            if self.flock {
                if let Err(e) = FileExt::unlock(f) {
                    log::error!("cannot release flock: {e}");
                }
            }
        }
        if let Some(d) = self.dotlock.take() {
            // Delivery agents wait for these; procmail sleeps LOCKSLEEP (8 s) whenever it
            // finds the dotlock taken, so every millisecond here is worth knowing.
            log::debug!(
                "delivery locks of {} held {} us",
                d.path().display(),
                self.taken.elapsed().as_micros()
            );
        }
        if let Some(f) = self.file {
            if self.ofd {
                if let Err(e) = unlock_ofd(f) {
                    log::error!("cannot release fcntl lock: {e}");
                }
            }
        }
    }
}

fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// Gives `file` the owner of `like` when they differ (pop3d running as root creates files
/// beside a user's mbox). Not being allowed to is no error: then pop3d runs as some user
/// who can read the mbox anyway.
pub fn match_owner(file: &File, like: &fs::Metadata) -> io::Result<()> {
    let meta = file.metadata()?;
    if meta.uid() == like.uid() && meta.gid() == like.gid() {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            log::debug!("cannot give a maildrop file its mbox's owner: {e}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The session lock: an fs2 exclusive lock on the companion file "<mbox>.pop3d", which
/// delivery agents never touch, held for the whole POP3 session and released on Drop. The
/// companion's mtime records the last successful login (the Unix epoch: none yet); its
/// content, when not empty, is one line "uidvalidity N": the UIDVALIDITY that `--uidl
/// dovecot` or `uw` last read in the mbox's first message (see `MboxContext`).
#[derive(Debug)]
pub struct SessionLock {
    mbox: PathBuf,
    file: File,
    /// The companion's mtime when the lock was taken, before this session's login.
    previous: Option<SystemTime>,
}

impl SessionLock {
    /// Takes the session lock of `mbox` without blocking (creating the companion file, mode
    /// 0600, if missing). `LockError::InUse` if another session, in this process or another
    /// one, holds it; `LockError::Denied` if the companion cannot be created or opened;
    /// `LockError::Untrusted` if the file there is not pop3d's (see `private`).
    pub fn try_acquire(mbox: &Path) -> Result<SessionLock, LockError> {
        Self::try_acquire_as(mbox, None)
    }

    /// As `try_acquire`, for an mbox that must belong to `owner` (--system-users): the
    /// companion must then be that user's (or pop3d's) too, whoever owns the mbox now.
    pub fn try_acquire_as(mbox: &Path, owner: Option<u32>) -> Result<SessionLock, LockError> {
        let path = sibling(mbox, companion::SESSION);
        // Another user's file under this name, with their flock on it, would keep the
        // mailbox's owner out for good: it is refused, never locked or removed.
        let (file, created) = private::open_or_create(&path, &Owners::of_path(owner, mbox))?;
        if created {
            // A fresh companion has never seen a login.
            file.set_modified(UNIX_EPOCH)?;
            if let Ok(meta) = fs::symlink_metadata(mbox) {
                match_owner(&file, &meta)?;
            }
        }
        match FileExt::try_lock_exclusive(&file) {
            Ok(()) => {}
            Err(e) if is_contended(&e) => return Err(LockError::InUse),
            Err(e) => return Err(LockError::Io(e)),
        }
        let when = file.metadata()?.modified()?;
        Ok(SessionLock {
            mbox: mbox.to_owned(),
            file,
            previous: (when != UNIX_EPOCH).then_some(when),
        })
    }

    /// The mbox this lock is for.
    pub fn mbox(&self) -> &Path {
        &self.mbox
    }

    /// When the previous successful login happened (as of taking the lock, so not this
    /// session's own), None if never: what RFC 2449 LOGIN-DELAY counts from.
    pub fn previous_login(&self) -> Option<SystemTime> {
        self.previous
    }

    /// Records this session's login as successful: sets the companion's mtime to now.
    pub fn record_login(&self) -> io::Result<()> {
        self.file.set_modified(SystemTime::now())
    }

    /// The UIDVALIDITY remembered in the companion, if any (see the type's doc).
    pub fn remembered_uid_validity(&self) -> Option<u32> {
        read_uid_validity(&self.file)
    }

    /// Remembers `value` in the companion, keeping its mtime (the last login's). Written
    /// under the session lock, so no other pop3d reads it meanwhile; a torn write reads as
    /// nothing remembered, and the next session with the header writes it again.
    pub fn remember_uid_validity(&self, value: u32) -> io::Result<()> {
        let mtime = self.file.metadata()?.modified()?;
        let line = format!("{UID_VALIDITY_KEY}{value}\n");
        std::os::unix::fs::FileExt::write_all_at(&self.file, line.as_bytes(), 0)?;
        self.file.set_len(line.len() as u64)?;
        self.file.set_modified(mtime)
    }
}

/// The remembered UIDVALIDITY of `mbox`, read from its session-lock companion without taking
/// the lock (for the dry run, which never writes, perhaps as root); None if there is none.
/// The companion is opened as the session opens it (private.rs): no symlink, no FIFO, and
/// only a file of `owners` that nobody else may write (an untrusted one is logged).
pub fn remembered_uid_validity(mbox: &Path, owners: &Owners) -> Option<u32> {
    match private::read_existing(&sibling(mbox, companion::SESSION), owners) {
        Ok(file) => read_uid_validity(&file?),
        Err(PrivateError::Untrusted(u)) => {
            log::error!("{u}: no remembered UIDVALIDITY read from it");
            None
        }
        Err(PrivateError::Io(_)) => None,
    }
}

/// The companion's line: "uidvalidity N\n".
const UID_VALIDITY_KEY: &str = "uidvalidity ";

/// More than the line ever holds: a companion grown by something else is not read whole.
const MAX_COMPANION_READ: u64 = 64;

fn read_uid_validity(file: &File) -> Option<u32> {
    let mut text = String::new();
    io::Read::take(file, MAX_COMPANION_READ)
        .read_to_string(&mut text)
        .ok()?;
    let digits = text.strip_prefix(UID_VALIDITY_KEY)?.strip_suffix('\n')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Err(e) = FileExt::unlock(&self.file) {
            log::error!(
                "cannot release session lock of {}: {e}",
                self.mbox.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn the_companion_remembers_a_uid_validity_and_keeps_the_login_time() {
        let dir = TempDir::new("lock-uidvalidity");
        let path = mbox(&dir);
        let lock = SessionLock::try_acquire(&path).expect("lock");
        assert_eq!(lock.remembered_uid_validity(), None);
        lock.record_login().expect("record");
        let companion = sibling(&path, ".pop3d");
        let login = fs::metadata(&companion).unwrap().modified().unwrap();
        lock.remember_uid_validity(4_000_000_000).expect("remember");
        lock.remember_uid_validity(1_700_000_000).expect("remember");
        assert_eq!(lock.remembered_uid_validity(), Some(1_700_000_000));
        assert_eq!(
            remembered_uid_validity(&path, &Owners::of(None, None)),
            Some(1_700_000_000)
        );
        assert_eq!(fs::read(&companion).unwrap(), b"uidvalidity 1700000000\n");
        assert_eq!(fs::metadata(&companion).unwrap().modified().unwrap(), login);
        drop(lock);
        for junk in [
            &b"uidvalidity \n"[..],
            b"uidvalidity 99999999999\n",
            b"uidvalidity 12",
            b"x",
        ] {
            fs::write(&companion, junk).unwrap();
            assert_eq!(
                remembered_uid_validity(&path, &Owners::of(None, None)),
                None,
                "{junk:?}"
            );
        }
    }

    /// The dry run reads the session lock without taking it, perhaps as root: a FIFO
    /// planted under its name must neither block it nor be read.
    #[test]
    fn a_fifo_session_lock_does_not_block_the_dry_runs_read() {
        let dir = TempDir::new("lock-fifo");
        let path = mbox(&dir);
        let companion = sibling(&path, companion::SESSION);
        let made = std::process::Command::new("mkfifo")
            .arg(&companion)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            crate::testing::skip("no mkfifo");
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let mbox = path.clone();
        thread::spawn(move || {
            let _ = tx.send(remembered_uid_validity(&mbox, &Owners::of(None, None)));
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) => assert_eq!(v, None),
            Err(_) => {
                // Lets the blocked open return, so the thread ends.
                let _ = OpenOptions::new()
                    .write(true)
                    .custom_flags(0o4_000)
                    .open(&companion);
                panic!("blocked on the FIFO {}", companion.display());
            }
        }
    }

    fn mbox(dir: &TempDir) -> PathBuf {
        let path = dir.path().join("mbox");
        fs::write(&path, b"From a\nx\n").expect("write mbox");
        path
    }

    fn open_rw(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open")
    }

    fn flock_held_elsewhere(path: &Path) -> bool {
        let other = open_rw(path);
        match FileExt::try_lock_exclusive(&other) {
            Ok(()) => {
                FileExt::unlock(&other).expect("unlock");
                false
            }
            Err(_) => true,
        }
    }

    fn ofd_held_elsewhere(path: &Path) -> bool {
        let other = open_rw(path);
        let free = try_lock_ofd(&other).expect("ofd");
        if free {
            unlock_ofd(&other).expect("unlock");
        }
        !free
    }

    /// Whether this process may ignore file permissions (root): then permission tests
    /// cannot fail the way they would for a mail user.
    fn privileged(dir: &TempDir) -> bool {
        let probe = dir.path().join("probe");
        fs::write(&probe, b"").expect("probe");
        fs::metadata(&probe).expect("probe").uid() == 0
    }

    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn ofd_locks_of_two_descriptions_in_one_process_conflict() {
        let dir = TempDir::new("ofd");
        let path = mbox(&dir);
        let (a, b) = (open_rw(&path), open_rw(&path));
        assert!(try_lock_ofd(&a).expect("lock a"));
        assert!(!try_lock_ofd(&b).expect("try b"), "b must see a's lock");
        // The same description may take it again (OFD locks belong to the description).
        assert!(try_lock_ofd(&a).expect("relock a"));
        unlock_ofd(&a).expect("unlock a");
        assert!(try_lock_ofd(&b).expect("lock b"));
        unlock_ofd(&b).expect("unlock b");
    }

    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn ofd_lock_survives_closing_another_descriptor_of_the_file() {
        // The reason for OFD locks: a classic lock would vanish here.
        let dir = TempDir::new("ofd-close");
        let path = mbox(&dir);
        let a = open_rw(&path);
        assert!(try_lock_ofd(&a).expect("lock"));
        drop(File::open(&path).expect("open and close"));
        assert!(ofd_held_elsewhere(&path));
        unlock_ofd(&a).expect("unlock");
        assert!(!ofd_held_elsewhere(&path));
    }

    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn ofd_write_lock_needs_a_writable_descriptor() {
        let dir = TempDir::new("ofd-ro");
        let path = mbox(&dir);
        let ro = File::open(&path).expect("open");
        assert!(try_lock_ofd(&ro).is_err());
    }

    #[test]
    fn dotlock_holds_our_pid_is_exclusive_and_goes_on_drop() {
        let dir = TempDir::new("dotlock");
        let path = mbox(&dir);
        let lock = DotLock::try_acquire(&path).expect("acquire").expect("free");
        let lock_path = sibling(&path, ".lock");
        assert_eq!(lock.path(), lock_path);
        let text = fs::read_to_string(&lock_path).expect("read");
        assert_eq!(text.trim(), std::process::id().to_string());
        assert!(DotLock::try_acquire(&path).expect("second").is_none());
        drop(lock);
        assert!(!lock_path.exists());
    }

    #[test]
    fn dotlock_of_a_dead_process_is_broken() {
        let dir = TempDir::new("dotlock-dead");
        let path = mbox(&dir);
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        fs::write(sibling(&path, ".lock"), format!("{dead}\n")).expect("write");
        let lock = DotLock::try_acquire(&path).expect("acquire");
        assert!(lock.is_some(), "stale lock of pid {dead} must be broken");
    }

    /// Sets a dotlock's mtime a minute past the stale age.
    fn age_past_stale(lock_path: &Path) {
        let old = SystemTime::now() - STALE_DOTLOCK_AGE - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(lock_path)
            .and_then(|f| f.set_modified(old))
            .expect("age");
    }

    #[test]
    fn old_dotlock_is_broken_even_if_its_process_lives() {
        let dir = TempDir::new("dotlock-old");
        let path = mbox(&dir);
        let lock_path = sibling(&path, ".lock");
        fs::write(&lock_path, format!("{}\n", std::process::id())).expect("write");
        age_past_stale(&lock_path);
        assert!(DotLock::try_acquire(&path).expect("acquire").is_some());
    }

    #[test]
    fn fresh_dotlock_of_a_live_process_is_respected() {
        let dir = TempDir::new("dotlock-live");
        let path = mbox(&dir);
        let lock_path = sibling(&path, ".lock");
        fs::write(&lock_path, format!("{}\n", std::process::id())).expect("write");
        assert!(DotLock::try_acquire(&path).expect("acquire").is_none());
        // An agent that writes no pid: only the age decides.
        fs::write(&lock_path, b"").expect("write");
        assert!(DotLock::try_acquire(&path).expect("acquire").is_none());
        assert!(lock_path.exists());
    }

    /// Set in the child that `fresh_dotlock_of_a_process_in_another_pid_namespace_is_respected`
    /// starts in a pid namespace of its own: the mbox whose dotlock holds a pid it cannot see.
    const CHILD_MBOX: &str = "POP3D_TEST_UNSEEN_HOLDER_MBOX";

    /// An agent outside pop3d's pid namespace (pop3d in a container, the agent on the host)
    /// holds the dotlock: pop3d sees neither its /proc entry nor, by kill, the process. A fresh
    /// lock must still hold; only its age may break it.
    #[test]
    fn fresh_dotlock_of_a_process_in_another_pid_namespace_is_respected() {
        if let Some(mbox) = std::env::var_os(CHILD_MBOX) {
            // In the child namespace: the holder (our parent test process) is invisible.
            let path = PathBuf::from(mbox);
            assert!(
                DotLock::try_acquire(&path).expect("acquire").is_none(),
                "a fresh dotlock of an unseen holder was broken"
            );
            let lock_path = sibling(&path, companion::DOTLOCK);
            age_past_stale(&lock_path);
            assert!(DotLock::try_acquire(&path).expect("acquire").is_some());
            return;
        }
        let dir = TempDir::new("dotlock-unseen");
        if !privileged(&dir) {
            crate::testing::skip("a pid namespace needs root");
            return;
        }
        let path = mbox(&dir);
        let lock_path = sibling(&path, companion::DOTLOCK);
        fs::write(&lock_path, format!("{}\n", std::process::id())).expect("write");
        let exe = std::env::current_exe().expect("test binary");
        let ran = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(exe)
            .args([
                "--exact",
                "maildrop::lock::tests::fresh_dotlock_of_a_process_in_another_pid_namespace_is_respected",
                "--nocapture",
            ])
            .env(CHILD_MBOX, &path)
            .output();
        let out = match ran {
            Ok(out) => out,
            Err(e) => {
                crate::testing::skip(&format!("cannot run unshare: {e}"));
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && text.contains("unshare failed") {
            crate::testing::skip(&format!("no pid namespaces here: {text}"));
            return;
        }
        assert!(out.status.success(), "child: {text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    #[test]
    fn dotlock_drop_leaves_someone_elses_lock_alone() {
        let dir = TempDir::new("dotlock-replaced");
        let path = mbox(&dir);
        let lock = DotLock::try_acquire(&path).expect("acquire").expect("free");
        let lock_path = sibling(&path, ".lock");
        fs::remove_file(&lock_path).expect("break");
        fs::write(&lock_path, b"1\n").expect("other agent's lock");
        drop(lock);
        assert_eq!(fs::read(&lock_path).expect("still there"), b"1\n");
    }

    #[test]
    fn delivery_locks_take_all_three_and_release_them_on_drop() {
        let dir = TempDir::new("delivery");
        let path = mbox(&dir);
        let file = open_rw(&path);
        let locks =
            DeliveryLocks::acquire(Some(&file), &path, Duration::from_secs(1)).expect("locks");
        assert!(sibling(&path, ".lock").exists());
        assert!(flock_held_elsewhere(&path));
        if crate::sys::OFD_SUPPORTED {
            assert!(ofd_held_elsewhere(&path));
        }
        drop(locks);
        assert!(!sibling(&path, ".lock").exists());
        assert!(!flock_held_elsewhere(&path));
        assert!(!ofd_held_elsewhere(&path));
    }

    /// Each kind of lock held by an "agent" alone makes the set time out, and a failed
    /// attempt leaves none of the others behind.
    #[test]
    fn delivery_locks_wait_for_each_agent_lock_then_time_out() {
        for kind in ["flock", "fcntl", "dotlock"] {
            let dir = TempDir::new("delivery-busy");
            let path = mbox(&dir);
            let agent = open_rw(&path);
            match kind {
                "flock" => FileExt::try_lock_exclusive(&agent).expect("agent flock"),
                "fcntl" => assert!(try_lock_ofd(&agent).expect("agent fcntl")),
                _ => fs::write(sibling(&path, ".lock"), format!("{}\n", std::process::id()))
                    .expect("agent dotlock"),
            }
            let file = open_rw(&path);
            let started = Instant::now();
            let got = DeliveryLocks::acquire(Some(&file), &path, Duration::from_millis(200));
            assert!(matches!(got, Err(LockError::TimedOut)), "{kind}: {got:?}");
            assert!(started.elapsed() >= Duration::from_millis(200), "{kind}");
            if kind != "dotlock" {
                assert!(
                    !sibling(&path, ".lock").exists(),
                    "{kind}: dotlock left behind"
                );
            }
            if kind != "fcntl" {
                assert!(
                    try_lock_ofd(&file).expect("ofd"),
                    "{kind}: fcntl lock left behind"
                );
                unlock_ofd(&file).expect("unlock");
            }
        }
    }

    #[test]
    fn delivery_locks_go_on_when_the_agent_lets_go() {
        let dir = TempDir::new("delivery-wait");
        let path = mbox(&dir);
        let agent = open_rw(&path);
        FileExt::try_lock_exclusive(&agent).expect("agent flock");
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            drop(agent);
        });
        let file = open_rw(&path);
        let got = DeliveryLocks::acquire(Some(&file), &path, Duration::from_secs(5));
        assert!(got.is_ok(), "{got:?}");
        releaser.join().expect("join");
    }

    #[test]
    fn missing_mbox_still_takes_the_dotlock() {
        let dir = TempDir::new("delivery-missing");
        let path = dir.path().join("nobox");
        let locks = DeliveryLocks::acquire(None, &path, Duration::from_secs(1)).expect("locks");
        assert!(sibling(&path, ".lock").exists());
        drop(locks);
        assert!(!sibling(&path, ".lock").exists());
    }

    #[test]
    fn unwritable_spool_directory_denies_the_lock() {
        let dir = TempDir::new("denied");
        if privileged(&dir) {
            // Root ignores directory permissions; tests/maildrop_locks.rs checks this case
            // as user nobody.
            eprintln!("skipped: running as root");
            return;
        }
        let path = mbox(&dir);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).expect("chmod");
        let file = File::open(&path).expect("open");
        let got = DeliveryLocks::acquire(Some(&file), &path, Duration::from_secs(1));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(matches!(got, Err(LockError::Denied(_))), "{got:?}");
    }

    #[test]
    fn session_lock_is_exclusive_within_one_process() {
        let dir = TempDir::new("session");
        let path = mbox(&dir);
        let first = SessionLock::try_acquire(&path).expect("first");
        assert!(matches!(
            SessionLock::try_acquire(&path),
            Err(LockError::InUse)
        ));
        // Delivery agents do not use it: the delivery locks are still free.
        let file = open_rw(&path);
        assert!(DeliveryLocks::acquire(Some(&file), &path, Duration::from_secs(1)).is_ok());
        drop(first);
        assert!(SessionLock::try_acquire(&path).is_ok());
    }

    #[test]
    fn session_companion_is_private_and_remembers_the_last_login() {
        let dir = TempDir::new("session-login");
        let path = mbox(&dir);
        let lock = SessionLock::try_acquire(&path).expect("lock");
        let companion = sibling(&path, ".pop3d");
        assert_eq!(
            fs::metadata(&companion).expect("meta").mode() & 0o777,
            0o600
        );
        assert_eq!(lock.previous_login(), None);
        lock.record_login().expect("record");
        // The previous login is the one before this session, not this one.
        assert_eq!(lock.previous_login(), None);
        drop(lock);
        let again = SessionLock::try_acquire(&path).expect("again");
        let when = again.previous_login().expect("a login was recorded");
        let age = SystemTime::now()
            .duration_since(when)
            .unwrap_or(Duration::ZERO);
        assert!(age < Duration::from_secs(60), "{age:?}");
    }

    /// Another user's file under the session lock's name (any mode, their flock on it) or a
    /// file others may write: refused, never locked, never removed.
    #[test]
    fn session_lock_refuses_a_file_of_another_user_or_one_others_may_write() {
        let dir = TempDir::new("session-planted");
        let path = mbox(&dir);
        let companion = sibling(&path, companion::SESSION);
        fs::write(&companion, b"").expect("plant");
        fs::set_permissions(&companion, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            SessionLock::try_acquire(&path),
            Err(LockError::Untrusted(_))
        ));
        if privileged(&dir) {
            fs::set_permissions(&companion, fs::Permissions::from_mode(0o600)).expect("chmod");
            std::os::unix::fs::chown(&companion, Some(65534), Some(65534)).expect("chown");
            let planter = open_rw(&companion);
            FileExt::try_lock_exclusive(&planter).expect("the planter's flock");
            assert!(matches!(
                SessionLock::try_acquire(&path),
                Err(LockError::Untrusted(_))
            ));
        }
        assert!(
            companion.exists(),
            "the planted file must stay for the admin"
        );
    }

    #[test]
    fn session_lock_refuses_a_planted_symlink() {
        let dir = TempDir::new("session-symlink");
        let path = mbox(&dir);
        let target = dir.path().join("target");
        fs::write(&target, b"precious").expect("write");
        std::os::unix::fs::symlink(&target, sibling(&path, ".pop3d")).expect("symlink");
        assert!(matches!(
            SessionLock::try_acquire(&path),
            Err(LockError::Untrusted(_))
        ));
        assert_eq!(fs::read(&target).expect("read"), b"precious");
        // A dangling symlink must not make pop3d create its target either.
        let dangling = dir.path().join("dangling");
        let other = dir.path().join("other");
        std::os::unix::fs::symlink(&dangling, sibling(&other, ".pop3d")).expect("symlink");
        assert!(SessionLock::try_acquire(&other).is_err());
        assert!(!dangling.exists());
    }
}
