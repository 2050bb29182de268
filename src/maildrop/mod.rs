//! A user's mbox maildrop: open (session lock, delivery locks, recovery, scan), read one
//! message, commit deletions crash-safely. Owns every byte pop3d reads from or writes to an
//! mbox; knows nothing of the POP3 protocol (the session maps its errors to replies).
//!
//! Delivery locks are held while UPDATE rewrites the mbox; at login the scan runs without
//! them, and they are taken only for an instant to check that no delivery wrote meanwhile
//! (see `scan_without_holding_up_delivery`: procmail sleeps LOCKSLEEP seconds, 8 by default,
//! whenever it finds the dotlock taken); only when that check fails are they held for
//! recovery and scan. A slow client never holds up delivery: in between, the session lock
//! keeps other POP3 sessions away, and every read checks that the bytes are still those
//! scanned. The mbox is read without advancing its access time (see `open_without_atime`).

mod checked_read;
pub mod companion;
mod fault;
mod fletcher;
pub mod from_line;
pub mod ids;
pub mod journal;
pub mod lock;
mod open_flags;
pub mod private;
pub mod scan;
pub mod uid_owners;

use std::error::Error;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use checked_read::{CheckedRead, ContentDigest};
#[cfg(test)]
pub(crate) use fault::crash;
use fault::fault_point;
use journal::{CompactError, JournalError, Plan};
use lock::{DeliveryLocks, LockError};
use open_flags::O_NOATIME;
use scan::ScanError;
use uid_owners::{Claims, Owners};

use crate::uidl::{self, UidlSpec};

pub use lock::SessionLock;
pub use scan::{MessageInfo, Uid};

/// How long open and UPDATE wait for the delivery locks before answering "in use": a
/// delivery holds them for milliseconds, a client should not wait much longer than a few
/// seconds for its answer.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-ahead of a message reader: RETR streams in blocks of this size.
const READ_BUFFER: usize = 64 * 1024;

/// Buffer for re-scanning one record: big enough for most messages in one read.
const RECHECK_BUFFER: u64 = 256 * 1024;

/// How the maildrop is opened.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// How long to wait for the delivery locks.
    pub lock_timeout: Duration,
    /// Whose unique ids the messages get (`--uidl`, or the user's own list).
    pub uidl: UidlSpec,
    /// The uid the mbox must belong to (--system-users: the user it is served to), checked
    /// on the opened file; None when any owner will do (a users file's virtual users).
    pub owner: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            uidl: UidlSpec::default(),
            owner: None,
        }
    }
}

/// Why a maildrop operation failed.
#[derive(Debug)]
pub enum MaildropError {
    /// The session lock is held by another POP3 session.
    InUse,
    /// The delivery locks were not obtained within the lock timeout.
    Locked,
    /// The dotlock (or the session lock file) cannot be created at all, for example because
    /// the spool directory is not writable: pop3d never goes on without it.
    LockDenied(io::Error),
    /// The mbox (or a lock file) is not a regular file.
    NotAFile(PathBuf),
    /// The mbox was rewritten by another program since the scan.
    Changed,
    /// The mbox holds more messages than pop3d serves.
    TooLarge { messages: usize },
    /// The mbox belongs to someone other than the user it is served to (--system-users).
    NotOwned(PathBuf),
    /// A file under the name of pop3d's session lock or journal is not pop3d's (another
    /// user's, writable by others, a symlink): it was neither used nor removed.
    Untrusted(private::Untrusted),
    /// The file ended at `at`, before the end of the message being read (`end`): it was cut
    /// or rewritten while the message streamed. Comes back inside an `io::Error` of kind
    /// `UnexpectedEof` from a message reader.
    Truncated { at: u64, end: u64 },
    /// UPDATE failed after it began rewriting the mbox: its journal stays, and the next open
    /// completes the deletions (no message is lost, none comes back).
    Interrupted(io::Error),
    /// UPDATE removed the deleted messages (by truncating the mbox) but could not make that
    /// durable: a crash now may bring them back, nothing else.
    Unsynced(io::Error),
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for MaildropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildropError::InUse => f.write_str(lock::text::IN_USE),
            MaildropError::Locked => f.write_str(lock::text::TIMED_OUT),
            MaildropError::LockDenied(e) => write!(f, "{}: {e}", lock::text::DENIED),
            MaildropError::NotAFile(p) => write!(f, "{}: {}", p.display(), lock::text::NOT_A_FILE),
            MaildropError::Changed => write!(f, "mbox was changed by another program"),
            MaildropError::TooLarge { messages } => {
                write!(f, "maildrop holds more than {messages} messages")
            }
            MaildropError::NotOwned(p) => {
                write!(f, "{}: not owned by the mailbox's user", p.display())
            }
            MaildropError::Untrusted(u) => u.fmt(f),
            MaildropError::Truncated { at, end } => {
                write!(
                    f,
                    "mbox ends at byte {at}, before the message's end at {end}"
                )
            }
            MaildropError::Interrupted(e) => {
                write!(f, "update interrupted, the next login completes it: {e}")
            }
            MaildropError::Unsynced(e) => {
                write!(f, "deleted messages removed but not synced to disk: {e}")
            }
            MaildropError::Io(e) => write!(f, "maildrop i/o error: {e}"),
        }
    }
}

impl Error for MaildropError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            MaildropError::LockDenied(e)
            | MaildropError::Interrupted(e)
            | MaildropError::Unsynced(e)
            | MaildropError::Io(e) => Some(e),
            MaildropError::Untrusted(u) => Some(u),
            _ => None,
        }
    }
}

impl From<io::Error> for MaildropError {
    fn from(e: io::Error) -> Self {
        MaildropError::Io(e)
    }
}

impl From<LockError> for MaildropError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::InUse => MaildropError::InUse,
            LockError::TimedOut => MaildropError::Locked,
            LockError::Denied(e) => MaildropError::LockDenied(e),
            LockError::Untrusted(u) => MaildropError::Untrusted(u),
            LockError::Io(e) => MaildropError::Io(e),
        }
    }
}

impl From<ScanError> for MaildropError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Io(e) => MaildropError::Io(e),
            ScanError::TooManyMessages { messages } => MaildropError::TooLarge { messages },
        }
    }
}

impl From<JournalError> for MaildropError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io(e) => MaildropError::Io(e),
            JournalError::Untrusted(u) => MaildropError::Untrusted(u),
            JournalError::Mismatch(why) => MaildropError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("journal does not fit the mbox: {why}"),
            )),
        }
    }
}

/// What an UPDATE removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitStats {
    /// Messages removed.
    pub deleted: usize,
    /// Their size as the session reported it.
    pub octets_removed: u64,
}

/// An open maildrop: the scan of the mbox and the session lock, without delivery locks.
#[derive(Debug)]
pub struct Maildrop {
    path: PathBuf,
    /// None when the mbox does not exist (an empty maildrop).
    file: Option<File>,
    lock_timeout: Duration,
    messages: Vec<MessageInfo>,
    /// How many bytes of the mbox the scan covered; UPDATE keeps everything after them.
    scanned_len: u64,
    /// Set once UPDATE has rewritten (or begun rewriting) the mbox: the scan is stale.
    stale: bool,
    /// Held until the maildrop is dropped; records the login once the open succeeded.
    session: SessionLock,
    /// Who owns the plain unique ids (uid_owners.rs), as written at open: UPDATE adds the
    /// ids of the messages it deletes.
    owners: Owners,
}

impl Maildrop {
    /// Recovers an interrupted UPDATE if a journal exists, takes the delivery locks, scans,
    /// releases the delivery locks. A missing mbox file is an empty maildrop.
    pub fn open(
        path: &Path,
        session: SessionLock,
        opts: &OpenOptions,
    ) -> Result<Maildrop, MaildropError> {
        if session.mbox() != path {
            return Err(MaildropError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "session lock belongs to another mbox",
            )));
        }
        let file = open_mbox(path, opts.owner)?;
        // Under the session lock, which every writer of the record holds.
        let mut owners = uid_owners::load(path, &private::Owners::of(opts.owner, file.as_ref()));
        let now = uid_owners::now();
        let want = WantedIds {
            spec: &opts.uidl,
            remembered: if opts.uidl.needs_headers() {
                session.remembered_uid_validity()
            } else {
                None
            },
            owners: &owners,
        };
        let optimistic = match &file {
            Some(f) => scan_without_holding_up_delivery(f, path, opts.lock_timeout, &want)?,
            None => None,
        };
        let Scanned {
            scan,
            chosen,
            claims,
        } = if let Some(scanned) = optimistic {
            scanned
        } else {
            let locks = DeliveryLocks::acquire(file.as_ref(), path, opts.lock_timeout)?;
            let keepalive = || refresh(&locks);
            // Before anything else reads the mbox: it may be half rewritten.
            let owners = private::Owners::of(opts.owner, file.as_ref());
            journal::recover(path, file.as_ref(), &owners, &keepalive)?;
            match &file {
                // Under the delivery locks: the bodies read are the ones scanned.
                Some(f) => scan_file(f, f.metadata()?.len(), u64::MAX, &want)?,
                None => Scanned {
                    scan: scan::Scan {
                        messages: Vec::new(),
                        scanned_len: 0,
                        preamble_len: 0,
                    },
                    chosen: None,
                    claims: Vec::new(),
                },
            }
        };
        let remembered = want.remembered;
        for (digest, body) in claims {
            owners.claim(digest, body, now);
        }
        save_owners(path, file.as_ref(), &mut owners, &scan.messages, now);
        if let Some(chosen) = chosen {
            log_ids(path, &opts.uidl, &chosen.report);
            if let Some(v) = chosen.uid_validity.filter(|v| Some(*v) != remembered) {
                if let Err(e) = session.remember_uid_validity(v) {
                    log::warn!("{}: cannot remember UIDVALIDITY {v}: {e}", path.display());
                }
            }
        }
        if scan.preamble_len > 0 {
            log::warn!(
                "{}: {} bytes before the first \"From \" line belong to no message",
                path.display(),
                scan.preamble_len
            );
        }
        Ok(Maildrop {
            path: path.to_owned(),
            file,
            lock_timeout: opts.lock_timeout,
            messages: scan.messages,
            scanned_len: scan.scanned_len,
            stale: false,
            session,
            owners,
        })
    }

    /// Records this login as successful (the session lock file's mtime, for LOGIN-DELAY):
    /// called once the maildrop is open, so a login that failed to open it does not count.
    pub fn record_login(&self) -> Result<(), MaildropError> {
        Ok(self.session.record_login()?)
    }

    /// The messages as scanned at open, in file order.
    pub fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    /// The mbox's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw on-disk content of message `index` (0-based): exactly content_len bytes,
    /// streamed from the file (never read whole into memory). Before returning, checks that
    /// the file still holds what the scan saw at that place (else MaildropError::Changed).
    /// If another program writes to the file while the message streams (a rewrite, a cut, an
    /// append), the reader fails with an error holding `MaildropError::Changed` instead of
    /// handing out the block it read after the write (see `checked_read`); beneath that, a
    /// file that ends before the message does fails the read with an
    /// `io::ErrorKind::UnexpectedEof` error holding `MaildropError::Truncated`. Either way a
    /// short or rewritten message never looks complete.
    pub fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError> {
        let info = self
            .messages
            .get(index)
            .ok_or_else(|| no_such_message(index))?;
        let file = self.current_file()?;
        // Before the record is checked: a write after it, while the message streams, shows.
        let fingerprint = Fingerprint::of(file)?;
        let mut content = ContentDigest::default();
        self.check_record_through(file, index, Some(&mut content))?;
        let end = self.record_end(index);
        if end < self.scanned_len && !from_line_at(file, end)? {
            return Err(MaildropError::Changed);
        }
        let reader = ReadAt::new(file, info.content_start, info.content_len).exact();
        let reader = CheckedRead::new(reader, file, fingerprint, content.finish());
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, reader)))
    }

    /// UPDATE: removes the records of the messages whose `deleted[i]` is true, keeps every
    /// other byte (including mail appended after open), crash-safely. Ok only once durable.
    ///
    /// When Err comes back, nothing was removed, except in two cases the error names:
    /// `Interrupted` (an I/O error in the middle of the rewrite: the journal stays and the next
    /// open completes the deletions) and `Unsynced` (removed, but not durably).
    pub fn commit(&mut self, deleted: &[bool]) -> Result<CommitStats, MaildropError> {
        if deleted.len() != self.messages.len() {
            return Err(MaildropError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "deletion flags do not match the maildrop",
            )));
        }
        let stats = CommitStats {
            deleted: deleted.iter().filter(|&&d| d).count(),
            octets_removed: self
                .messages
                .iter()
                .zip(deleted)
                .filter(|(_, &d)| d)
                .map(|(m, _)| m.octets)
                .sum(),
        };
        let Some(first) = deleted.iter().position(|&d| d) else {
            return Ok(stats);
        };
        // The deleted messages' ids pass to nobody else: recorded, synced, before the
        // rewrite starts, so that no crash during it loses them (an interrupted rewrite is
        // completed at the next login).
        let before = self.owners.clone();
        let now = uid_owners::now();
        for (m, _) in self.messages.iter().zip(deleted).filter(|(_, &d)| d) {
            self.owners.retire(*m.uid.digest(), now);
            if let Some(id) = m.uid.chosen() {
                // Owned by the message's header digest: should it stay after all, it keeps it.
                self.owners.retire_id(id, *m.uid.digest(), now);
            }
        }
        self.save_owners(now);
        let result = self.rewrite(deleted, first);
        // After a rewrite, or an interrupted one, the scan no longer describes the file.
        let touched = match &result {
            Ok(()) => true,
            Err((_, touched)) => *touched,
        };
        self.stale = touched;
        if !touched {
            // Nothing was removed: a message that stays keeps its plain id. Only a crash
            // before this point leaves those ids retired; each such message then shows
            // another pop3d id once (fetched once more), while a `--uidl` id stays its own.
            self.owners = before;
            self.owners.mark_changed();
            self.save_owners(now);
        }
        result.map(|()| stats).map_err(|(e, _)| e)
    }

    /// Writes the unique-id record if it changed (see `save_owners`).
    fn save_owners(&mut self, now: u64) {
        save_owners(
            &self.path,
            self.file.as_ref(),
            &mut self.owners,
            &self.messages,
            now,
        );
    }

    /// The locked part of UPDATE. The error says whether the mbox was touched.
    fn rewrite(&self, deleted: &[bool], first: usize) -> Result<(), (MaildropError, bool)> {
        let untouched = |e: MaildropError| (e, false);
        let file = self.current_file().map_err(untouched)?;
        let locks = DeliveryLocks::acquire(Some(file), &self.path, self.lock_timeout)
            .map_err(|e| untouched(e.into()))?;
        fault_point("commit-locked").map_err(|e| untouched(e.into()))?;
        self.check_unchanged(file, deleted, first)
            .map_err(untouched)?;
        let skip = self
            .separator_after_scan(file, deleted)
            .map_err(|e| untouched(e.into()))?;
        let plan = self.plan(deleted, first, skip);
        let eof = file.metadata().map_err(|e| untouched(e.into()))?.len();
        if plan.kept.is_empty() && eof == plan.tail_src {
            // Everything from the first deleted message to the end goes: a truncate, which
            // a crash leaves either undone or done.
            fault_point("truncate").map_err(|e| untouched(e.into()))?;
            file.set_len(plan.first_dst)
                .map_err(|e| untouched(e.into()))?;
            fault_point("truncate-sync")
                .and_then(|()| file.sync_all())
                .map_err(|e| (MaildropError::Unsynced(e), true))?;
            return Ok(());
        }
        let keepalive = || refresh(&locks);
        match journal::compact(&self.path, file, plan, &keepalive) {
            Ok(_) => Ok(()),
            Err(CompactError::Untouched(e)) => {
                log::error!(
                    "{}: update failed, nothing removed: {e}",
                    self.path.display()
                );
                Err(untouched(e.into()))
            }
            Err(CompactError::Interrupted(e)) => {
                log::error!(
                    "{}: update interrupted, the next login completes it: {e}",
                    self.path.display()
                );
                let e = match MaildropError::from(e) {
                    MaildropError::Io(e) => e,
                    other => io::Error::other(other),
                };
                Err((MaildropError::Interrupted(e), true))
            }
        }
    }

    fn current_file(&self) -> Result<&File, MaildropError> {
        match (&self.file, self.stale) {
            (Some(f), false) => Ok(f),
            _ => Err(MaildropError::Changed),
        }
    }

    /// Where record `index` ends: the next message's "From " line, or the end of the scan.
    fn record_end(&self, index: usize) -> u64 {
        self.messages
            .get(index + 1)
            .map_or(self.scanned_len, |m| m.record_start)
    }

    /// Re-scans record `index` alone; it must be one message with the same layout, size and
    /// digest as at open, or another program has rewritten the mbox.
    fn check_record(&self, file: &File, index: usize) -> Result<(), MaildropError> {
        self.check_record_through(file, index, None)
    }

    /// `check_record`, handing the record's content to `content` as the re-scan reads it
    /// (one pass over the file for both).
    fn check_record_through(
        &self,
        file: &File,
        index: usize,
        content: Option<&mut ContentDigest>,
    ) -> Result<(), MaildropError> {
        let info = &self.messages[index];
        let len = self.record_end(index) - info.record_start;
        let mut reader = ReadAt::new(file, info.record_start, len);
        let again = match content {
            Some(digest) => {
                let skip = info.content_start - info.record_start;
                let tee = digest.tee(&mut reader, skip, info.content_len);
                scan::scan_with_buffer(tee, len.min(RECHECK_BUFFER) as usize)?
            }
            None => scan::scan_with_buffer(reader, len.min(RECHECK_BUFFER) as usize)?,
        };
        let same = match again.messages.as_slice() {
            [m] => {
                m.record_start == 0
                    && m.content_start == info.content_start - info.record_start
                    && m.content_len == info.content_len
                    && m.octets == info.octets
                    && m.uid.digest() == info.uid.digest()
            }
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(MaildropError::Changed)
        }
    }

    /// UPDATE's consistency check, under the delivery locks: the same file, no shorter than
    /// scanned, every message to delete still exactly where it was, and every kept message
    /// from there on (the ones the rewrite moves) still starting where it did.
    fn check_unchanged(
        &self,
        file: &File,
        deleted: &[bool],
        first: usize,
    ) -> Result<(), MaildropError> {
        let open = file.metadata()?;
        let now = match fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MaildropError::Changed),
            Err(e) => return Err(e.into()),
        };
        if !now.is_file() || (now.dev(), now.ino()) != (open.dev(), open.ino()) {
            return Err(MaildropError::Changed);
        }
        if open.len() < self.scanned_len {
            return Err(MaildropError::Changed);
        }
        for (index, &gone) in deleted.iter().enumerate().skip(first) {
            if gone {
                self.check_record(file, index)?;
            } else if !from_line_at(file, self.messages[index].record_start)? {
                return Err(MaildropError::Changed);
            }
        }
        Ok(())
    }

    /// Bytes at the start of the mail appended since the scan that belong to the last
    /// scanned message: an agent that finds no blank line at the end of the mbox writes one
    /// before its "From " line, and that separator goes with the message it ends. Only when
    /// that message is deleted does this matter: kept, it stays in front of the new mail;
    /// deleted, the line break would otherwise join the message before it.
    fn separator_after_scan(&self, file: &File, deleted: &[bool]) -> io::Result<u64> {
        if deleted.last() != Some(&true) {
            return Ok(0);
        }
        let mut head = [0u8; 2];
        let n = file.read_at(&mut head, self.scanned_len)?;
        let sep = match &head[..n] {
            [b'\n', ..] => 1,
            [b'\r', b'\n'] => 2,
            _ => return Ok(0),
        };
        Ok(if separator_at(file, self.scanned_len + sep)? {
            sep
        } else {
            0
        })
    }

    /// The rewrite: from the first deleted record on, the kept records (merged where they
    /// touch) and the tail past the scan, less `skip` bytes of separator at its start.
    fn plan(&self, deleted: &[bool], first: usize, skip: u64) -> Plan {
        let mut kept: Vec<(u64, u64)> = Vec::new();
        for (index, _) in deleted.iter().enumerate().skip(first).filter(|(_, &d)| !d) {
            let start = self.messages[index].record_start;
            let len = self.record_end(index) - start;
            match kept.last_mut() {
                Some(last) if last.0 + last.1 == start => last.1 += len,
                _ => kept.push((start, len)),
            }
        }
        Plan {
            first_dst: self.messages[first].record_start,
            kept,
            tail_src: self.scanned_len + skip,
        }
    }
}

/// What tells whether a file was written to between two looks at it: any write changes its
/// ctime, an append its length too.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How long ago a file must have been last written for a fingerprint to tell a later write
/// of the same length from none: file systems keep times in clock ticks (ext3, HFS+ and
/// some network file systems in whole seconds), and a write within the tick of the last one
/// leaves them as they were.
const TIMESTAMP_TICK: Duration = Duration::from_secs(1);

impl Fingerprint {
    /// Whether a write after this fingerprint, at `now`, must change it: its last write (or
    /// change of times, as a program that restores the mtime makes) is at least a clock
    /// tick old. A time in the future (a clock stepped back) counts as recent.
    fn settled(&self, now: SystemTime) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let Ok(secs) = u64::try_from(latest.0) else {
            // Before 1970: long settled.
            return true;
        };
        let nanos = u32::try_from(latest.1).unwrap_or(0);
        now.checked_sub(Duration::new(secs, nanos))
            .is_some_and(|age| age >= TIMESTAMP_TICK)
    }

    fn of(file: &File) -> io::Result<Fingerprint> {
        let m = file.metadata()?;
        Ok(Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The scan at open without holding up delivery: the mbox is scanned without the delivery
/// locks, which are then taken (waiting as always) only for the instant it takes to compare
/// the file's fingerprint with the one before the scan and to look for a journal. An agent
/// that was writing while the scan ran has finished once its locks are free, and its write
/// changed the file's length and ctime; a write that starts later lands past the scanned
/// bytes, as mail that arrives during a session always does. Taking the dotlock also proves,
/// as before, that pop3d may create it (else the login is refused, not the UPDATE). None when
/// the file changed, a journal waits for recovery or the unlocked scan failed: then the caller
/// takes the locks again, recovers and scans under them; so too when the file was written
/// within the last tick of the file system's clock (`TIMESTAMP_TICK`), where a rewrite of
/// the same length could leave the fingerprint as it was.
fn scan_without_holding_up_delivery(
    file: &File,
    path: &Path,
    timeout: Duration,
    want: &WantedIds,
) -> Result<Option<Scanned>, MaildropError> {
    if journal_pending(path)? {
        return Ok(None);
    }
    let before = Fingerprint::of(file)?;
    if !before.settled(SystemTime::now()) {
        // Written within the last clock tick: a same-length rewrite could leave the
        // fingerprint as it is, so only the locked scan is sure.
        return Ok(None);
    }
    // The bodies that `distinguish` reads, and the header lines of another server's scheme,
    // are checked by the same fingerprint as the scan.
    let Ok(scan) = scan_file(file, before.len, before.len, want) else {
        // Perhaps a half-written delivery: the locked scan says what is really there.
        return Ok(None);
    };
    let locks = DeliveryLocks::acquire(Some(file), path, timeout)?;
    let unchanged = Fingerprint::of(file)? == before && !journal_pending(path)?;
    drop(locks);
    Ok(unchanged.then_some(scan))
}

/// The unique ids a scan is to give: the `--uidl` list, and the UIDVALIDITY the session
/// lock remembers (read only when the list needs headers).
struct WantedIds<'a> {
    spec: &'a UidlSpec,
    remembered: Option<u32>,
    /// Who owns the plain ids of pop3d's own scheme (uid_owners.rs).
    owners: &'a Owners,
}

/// A scan, with what `maildrop::ids` did when the list names another server's scheme.
struct Scanned {
    scan: scan::Scan,
    chosen: Option<ids::Chosen>,
    /// Owners of plain ids whose collision this scan saw first.
    claims: Claims,
}

/// Scans `file` (`octets` long, read up to `limit`), then tells apart messages whose header
/// digests collide, or are in the recorded owners, by their bodies, so their unique ids
/// never pass from one to another; then, only if `want` names another server's scheme, gives
/// the messages its ids. The owners of collisions first seen come back as claims, recorded
/// only once a scan is the one kept.
fn scan_file(
    file: &File,
    octets: u64,
    limit: u64,
    want: &WantedIds,
) -> Result<Scanned, scan::ScanError> {
    let mut scan = scan::scan_sized(BufReader::new(ReadAt::new(file, 0, limit)), octets)?;
    let claims = scan::distinguish(&mut scan.messages, want.owners, |m| {
        scan::body_digest(ReadAt::new(file, m.content_start, m.content_len))
    })?;
    let chosen = if want.spec.needs_headers() {
        Some(ids::choose(
            &mut scan.messages,
            want.spec,
            want.remembered,
            want.owners,
            |m| Ok(ReadAt::new(file, m.content_start, m.content_len)),
        )?)
    } else {
        None
    };
    Ok(Scanned {
        scan,
        chosen,
        claims,
    })
}

/// Drops the old entries of `owners` and writes the record of `mbox` if it changed, under
/// the session lock. Failing to is logged, not an error: the record holds only ids, and
/// without it they follow the stateless rule (a re-download, never lost mail).
fn save_owners(
    mbox: &Path,
    file: Option<&File>,
    owners: &mut Owners,
    messages: &[MessageInfo],
    now: u64,
) {
    if owners.is_empty() && !owners.is_changed() {
        // The common case: no collision ever, nothing deleted yet; no work at all.
        return;
    }
    // Only whether a recorded digest is present matters: no set of every message's digest.
    let present = messages
        .iter()
        .map(|m| *m.uid.digest())
        .filter(|d| owners.owner(d).is_some())
        .collect();
    owners.prune(&present, now);
    let like = file.and_then(|f| f.metadata().ok());
    if let Err(e) = uid_owners::save(mbox, owners, like.as_ref()) {
        log::warn!(
            "{}: cannot write the unique id record, ids of colliding messages may change: {e}",
            mbox.display()
        );
    }
}

/// Whether an interrupted UPDATE left a journal beside the mbox.
fn journal_pending(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(journal::journal_path(path)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn no_such_message(index: usize) -> MaildropError {
    MaildropError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no message with index {index}"),
    ))
}

/// Opens the mbox read-write (the OFD write lock needs it). None if it does not exist; a
/// symlink, directory or device is refused, so that nobody can point pop3d's rewrite at
/// another file, and so is a file not owned by `owner` when one is expected: the owner is
/// checked on the opened file, since in a world-writable spool another user may create the
/// mbox after any earlier look at the path.
fn open_mbox(path: &Path, owner: Option<u32>) -> Result<Option<File>, MaildropError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        return Err(MaildropError::NotAFile(path.to_owned()));
    }
    let file = match open_without_atime(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        // Replaced between lstat and open: whatever is there now was not checked.
        return Err(MaildropError::NotAFile(path.to_owned()));
    }
    if owner.is_some_and(|uid| opened.uid() != uid) {
        return Err(MaildropError::NotOwned(path.to_owned()));
    }
    Ok(Some(file))
}

/// Opens the mbox read-write so that pop3d's reads do not advance its access time. procmail
/// (and other agents with the same "new mail" rule) sleeps a second before it writes to an
/// mbox read within the current second, so that the new mtime is later than the atime; with
/// a session every second, nearly every delivery slept. Reading without touching the atime,
/// as Dovecot restores it, also keeps "new mail" notices (mtime > atime) as they were.
/// O_NOATIME needs the file's owner (or CAP_FOWNER); otherwise the mbox is opened plainly.
fn open_without_atime(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = fs::OpenOptions::new();
    opts.read(true).write(true);
    if O_NOATIME != 0 {
        match opts.clone().custom_flags(O_NOATIME).open(path) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            other => return other,
        }
    }
    opts.open(path)
}

/// Whether a separator line starts at `at`: at the file's start or after a LF, and parsing as
/// one by the scanner's rule (`from_line::is_separator`).
fn from_line_at(file: &File, at: u64) -> io::Result<bool> {
    if at > 0 {
        let mut before = [0u8; 1];
        match file.read_exact_at(&mut before, at - 1) {
            Ok(()) if before[0] == b'\n' => {}
            Ok(()) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    separator_at(file, at)
}

/// Whether the line at `at` (known to start a line) is a separator: reads at most a
/// separator line's length, and decides as the scanner does at that place.
fn separator_at(file: &File, at: u64) -> io::Result<bool> {
    let mut line = vec![0u8; from_line::MAX_SEPARATOR_LINE];
    let mut got = 0;
    while got < line.len() {
        match file.read_at(&mut line[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let line = &line[..got];
    Ok(match line.iter().position(|&b| b == b'\n') {
        Some(i) => from_line::is_separator(&line[..i]),
        // No LF within the limit: text, unless the file ends first (as at the scan's end).
        None => got < from_line::MAX_SEPARATOR_LINE && from_line::is_separator(line),
    })
}

/// Keeps a long rewrite's dotlock fresh, so no agent takes it for stale.
fn refresh(locks: &DeliveryLocks<'_>) {
    if let Some(d) = locks.dotlock() {
        if let Err(e) = d.touch() {
            log::warn!("cannot refresh dotlock {}: {e}", d.path().display());
        }
    }
}

/// The dry run of `--uidl-report`: the messages of the mbox at `path` with the ids `spec`
/// gives them, who named each, and what the list's first scheme gave each. Reads the file
/// as it is, without the delivery locks and without replaying a crash journal, and never
/// writes: an admin runs it on a live spool, perhaps as another user than pop3d's.
pub fn dry_run(path: &Path, spec: &UidlSpec) -> Result<DryRun, MaildropError> {
    // A missing file is an error here, not an empty maildrop: it is likely a typo. Opened
    // without blocking, so that a FIFO given by mistake is refused below instead of waited on.
    let f = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(open_flags::O_NONBLOCK)
            .open(path)?
    };
    if !f.metadata()?.is_file() {
        return Err(MaildropError::NotAFile(path.to_owned()));
    }
    let octets = f.metadata()?.len();
    let pop3d_only = UidlSpec::default();
    // The record of id owners as it is (never written here): unreadable or untrusted (logged),
    // the ids shown for colliding messages are those of the stateless rule. Its companions
    // are trusted as a session trusts them: the mbox owner's or this process's.
    let files = private::Owners::of(None, Some(&f));
    let owners = uid_owners::load(path, &files);
    let want = WantedIds {
        spec: &pop3d_only,
        remembered: None,
        owners: &owners,
    };
    let Scanned { mut scan, .. } = scan_file(&f, octets, octets, &want)?;
    let remembered = lock::remembered_uid_validity(path, &files);
    let (chosen, first) =
        ids::choose_with_first(&mut scan.messages, spec, remembered, &owners, |m| {
            Ok(ReadAt::new(&f, m.content_start, m.content_len))
        })?;
    Ok(DryRun {
        messages: scan.messages,
        chosen,
        first,
    })
}

/// What `dry_run` found.
#[derive(Debug)]
pub struct DryRun {
    pub messages: Vec<MessageInfo>,
    pub chosen: ids::Chosen,
    /// Per message, what the list's first scheme gave.
    pub first: Vec<Result<String, uidl::Unnamed>>,
}

/// The session's one log line on the ids of another server's scheme: a warning when a
/// header was invalid or taken before (a forged X-UID or X-UIDL, a popa3d id shared by two
/// messages), since those messages get ids their old server did not give.
fn log_ids(path: &Path, spec: &UidlSpec, report: &uidl::AssignReport) {
    if report.unusual() {
        log::warn!("{}: --uidl {spec}: {report}", path.display());
    } else {
        log::info!("{}: --uidl {spec}: {report}", path.display());
    }
}

/// Reads bytes [pos, pos + len) of a file by offset, leaving the file position alone.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    /// Whether the file ending before `end` is an error rather than the end of the data.
    exact: bool,
}

impl<'a> ReadAt<'a> {
    /// Up to `len` bytes: the file may end sooner (a scan reads to the end of the file).
    fn new(file: &'a File, pos: u64, len: u64) -> Self {
        ReadAt {
            file,
            pos,
            end: pos.saturating_add(len),
            exact: false,
        }
    }

    /// Exactly the range: a message of known length, whose sender must never take a short
    /// read for its end (the client would store a cut message as complete).
    fn exact(self) -> Self {
        ReadAt {
            exact: true,
            ..self
        }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 && self.exact {
            let truncated = MaildropError::Truncated {
                at: self.pos,
                end: self.end,
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, truncated));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::SystemTime;

    use super::scan::model::{self, Rng};
    use super::*;
    use crate::testing::TempDir;

    /// The date delivery agents write on the separator line.
    const DATE: &str = "Mon Jan  1 00:00:00 2024";

    const TWO: &[u8] = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nfirst body\n\n\
From b@x Mon Jan  1 00:00:01 2024\nSubject: two\n\nsecond body\n";

    fn second_start() -> usize {
        TWO.windows(8)
            .position(|w| w == b"From b@x")
            .expect("second message")
    }

    /// Opens `path` as a session does, with a short lock timeout; the maildrop's submodules'
    /// tests use it too.
    pub(super) fn open(path: &Path) -> Result<Maildrop, MaildropError> {
        open_with(path, "pop3d")
    }

    fn mbox(dir: &TempDir, data: &[u8]) -> PathBuf {
        let path = dir.path().join("mbox");
        fs::write(&path, data).expect("write mbox");
        path
    }

    fn read(maildrop: &mut Maildrop, index: usize) -> Result<Vec<u8>, MaildropError> {
        let mut out = Vec::new();
        maildrop.message_reader(index)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn append(path: &Path, bytes: &[u8]) {
        fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("append");
    }

    #[test]
    fn missing_mbox_is_an_empty_maildrop() {
        let dir = TempDir::new("md-missing");
        let path = dir.path().join("mbox");
        let mut md = open(&path).expect("open");
        assert!(md.messages().is_empty());
        assert_eq!(md.commit(&[]).expect("commit").deleted, 0);
        assert!(!path.exists(), "open must not create the mbox");
    }

    /// --system-users: an mbox that another user made (in a world-writable spool, after the
    /// login's own check found none) is refused by the open itself, from the opened file.
    #[test]
    fn open_refuses_an_mbox_of_another_owner_than_expected() {
        let dir = TempDir::new("md-owner");
        let path = mbox(&dir, TWO);
        let me = crate::sys::effective_uid();
        let opened = |owner| {
            let lock = SessionLock::try_acquire(&path).expect("session lock");
            let opts = OpenOptions {
                owner: Some(owner),
                ..OpenOptions::default()
            };
            Maildrop::open(&path, lock, &opts)
        };
        assert!(matches!(
            opened(me.wrapping_add(1)),
            Err(MaildropError::NotOwned(p)) if p == path
        ));
        assert_eq!(fs::read(&path).expect("read"), TWO);
        assert_eq!(opened(me).expect("own mbox").messages().len(), 2);
    }

    #[test]
    fn open_refuses_symlinks_and_directories() {
        let dir = TempDir::new("md-notafile");
        let real = mbox(&dir, TWO);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(matches!(open(&link), Err(MaildropError::NotAFile(_))));
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");
        assert!(matches!(open(&sub), Err(MaildropError::NotAFile(_))));
    }

    /// A journal planted beside the mbox by another user (in a world-writable spool) or one
    /// others may write refuses the login; the mbox and the file stay as they are.
    #[test]
    fn open_refuses_a_journal_that_is_not_pop3ds() {
        let dir = TempDir::new("md-planted-journal");
        let path = mbox(&dir, TWO);
        let jpath = journal::journal_path(&path);
        fs::write(&jpath, b"P3DJRNL2 whatever follows").expect("plant");
        fs::set_permissions(&jpath, std::os::unix::fs::PermissionsExt::from_mode(0o646))
            .expect("chmod");
        assert!(matches!(open(&path), Err(MaildropError::Untrusted(_))));
        if crate::sys::effective_uid() == 0 {
            fs::set_permissions(&jpath, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            std::os::unix::fs::chown(&jpath, Some(65534), Some(65534)).expect("chown");
            assert!(matches!(open(&path), Err(MaildropError::Untrusted(_))));
        }
        assert_eq!(fs::read(&path).expect("read"), TWO);
        assert_eq!(
            fs::read(&jpath).expect("journal"),
            b"P3DJRNL2 whatever follows"
        );
    }

    #[test]
    fn lock_failures_read_alike_after_becoming_maildrop_errors() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        for e in [
            LockError::InUse,
            LockError::TimedOut,
            LockError::Denied(denied()),
            LockError::Untrusted(private::Untrusted {
                path: PathBuf::from("/m.pop3d"),
                why: private::Why::Owner(65534),
            }),
        ] {
            let text = e.to_string();
            assert_eq!(MaildropError::from(e).to_string(), text);
        }
    }

    #[test]
    fn second_session_on_one_maildrop_is_in_use() {
        let dir = TempDir::new("md-inuse");
        let path = mbox(&dir, TWO);
        let first = open(&path).expect("first");
        assert!(matches!(open(&path), Err(MaildropError::InUse)));
        drop(first);
        assert!(open(&path).is_ok());
    }

    #[test]
    fn open_times_out_while_an_agent_holds_the_dotlock() {
        let dir = TempDir::new("md-locked");
        let path = mbox(&dir, TWO);
        fs::write(
            lock::sibling(&path, ".lock"),
            format!("{}\n", std::process::id()),
        )
        .expect("agent dotlock");
        assert!(matches!(open(&path), Err(MaildropError::Locked)));
    }

    #[test]
    fn open_leaves_no_delivery_lock_behind() {
        let dir = TempDir::new("md-released");
        let path = mbox(&dir, TWO);
        let _md = open(&path).expect("open");
        assert!(!lock::sibling(&path, ".lock").exists());
        let agent = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("agent open");
        assert!(lock::try_lock_ofd(&agent).expect("ofd"));
        assert!(fs2::FileExt::try_lock_exclusive(&agent).is_ok());
    }

    /// The scan at open runs without the delivery locks; a delivery that is half written when
    /// it runs, under any one kind of lock, must not leave a half message in the maildrop: the
    /// check sees the lock busy (or the file changed), and the maildrop is scanned again under
    /// all the locks once the agent is through.
    #[test]
    fn open_during_a_delivery_sees_the_whole_delivered_message() {
        for kind in ["flock", "fcntl", "dotlock"] {
            let dir = TempDir::new("md-open-delivery");
            let path = mbox(&dir, TWO);
            let agent = fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .expect("agent open");
            let dotlock = lock::sibling(&path, companion::DOTLOCK);
            match kind {
                "flock" => fs2::FileExt::try_lock_exclusive(&agent).expect("agent flock"),
                "fcntl" => assert!(lock::try_lock_ofd(&agent).expect("agent fcntl")),
                _ => fs::write(&dotlock, format!("{}\n", std::process::id())).expect("dotlock"),
            }
            let late = b"From c@x Mon Jan  1 00:00:02 2024\nSubject: three\n\nlate body\n";
            let (head, rest) = late.split_at(40);
            (&agent).write_all(head).expect("first half");
            let finisher = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                (&agent).write_all(rest).expect("second half");
                let _ = fs::remove_file(&dotlock);
                drop(agent);
            });
            let lock = SessionLock::try_acquire(&path).expect("session lock");
            let md = Maildrop::open(
                &path,
                lock,
                &OpenOptions {
                    lock_timeout: Duration::from_secs(5),
                    ..OpenOptions::default()
                },
            );
            finisher.join().expect("agent");
            let mut md = md.expect("open");
            assert_eq!(md.messages().len(), 3, "{kind}");
            assert_eq!(
                read(&mut md, 2).expect("read"),
                b"Subject: three\n\nlate body\n",
                "{kind}"
            );
            assert_eq!(md.scanned_len, (TWO.len() + late.len()) as u64, "{kind}");
        }
    }

    /// Sets the file's atime well before its mtime, as after a delivery nobody has read.
    fn age_atime(path: &Path) -> SystemTime {
        let mtime = fs::metadata(path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let atime = mtime - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(atime)))
            .expect("set atime");
        atime
    }

    /// procmail sleeps a second before writing to an mbox read within the current second;
    /// pop3d's scan and reads must leave the access time as it was (as Dovecot does).
    #[test]
    fn open_and_read_leave_the_access_time_alone() {
        let dir = TempDir::new("md-atime");
        let path = mbox(&dir, TWO);
        // Only where reads update the atime at all (not on a noatime mount).
        let before = age_atime(&path);
        fs::read(&path).expect("plain read");
        let plain = fs::metadata(&path)
            .and_then(|m| m.accessed())
            .expect("atime");
        if plain == before {
            crate::testing::skip("reads do not update the atime here");
            return;
        }
        let before = age_atime(&path);
        let mut md = open(&path).expect("open");
        read(&mut md, 0).expect("read");
        read(&mut md, 1).expect("read");
        drop(md);
        let after = fs::metadata(&path)
            .and_then(|m| m.accessed())
            .expect("atime");
        assert_eq!(after, before, "the access time moved");
    }

    fn written_at(mtime: (i64, i64), ctime: (i64, i64)) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino: 2,
            len: 3,
            mtime,
            ctime,
        }
    }

    #[test]
    fn a_fingerprint_is_trusted_only_a_clock_tick_after_the_last_write() {
        let now = UNIX_EPOCH + Duration::new(1_000_000, 500_000_000);
        // Written 1.5 s ago: any later write moves the times.
        assert!(written_at((999_999, 0), (999_999, 0)).settled(now));
        // Within the last second (the tick of a coarse file system): a same-length rewrite
        // in the same tick would leave the fingerprint as it is.
        assert!(!written_at((1_000_000, 0), (1_000_000, 0)).settled(now));
        assert!(!written_at((999_999, 600_000_000), (999_999, 600_000_000)).settled(now));
        // A program that restores the mtime after its rewrite still moved the ctime.
        assert!(!written_at((500_000, 0), (1_000_000, 0)).settled(now));
        // In the future (the clock was stepped back): not to be trusted.
        assert!(!written_at((2_000_000, 0), (2_000_000, 0)).settled(now));
        assert!(!written_at((0, 0), (0, 0)).settled(UNIX_EPOCH - Duration::from_secs(1)));
        assert!(written_at((-5, 0), (-5, 0)).settled(now));
    }

    #[test]
    fn a_file_just_written_is_not_settled_until_a_tick_later() {
        let dir = TempDir::new("md-settled");
        let path = mbox(&dir, TWO);
        let file = File::open(&path).expect("open");
        let fingerprint = Fingerprint::of(&file).expect("fingerprint");
        assert!(!fingerprint.settled(SystemTime::now()));
        assert!(fingerprint.settled(SystemTime::now() + TIMESTAMP_TICK));
    }

    #[test]
    fn message_reader_streams_exactly_the_content() {
        let dir = TempDir::new("md-read");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        assert_eq!(md.messages().len(), 2);
        assert_eq!(
            read(&mut md, 0).expect("read"),
            b"Subject: one\n\nfirst body\n"
        );
        assert_eq!(
            read(&mut md, 1).expect("read"),
            b"Subject: two\n\nsecond body\n"
        );
        assert!(md.message_reader(2).is_err());
    }

    #[test]
    fn message_reader_refuses_a_rewritten_mbox() {
        let dir = TempDir::new("md-read-changed");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        // Same length, other headers at the same place: another message now.
        let rewritten = String::from_utf8_lossy(TWO).replace("Subject: two", "Subject: 2wo");
        fs::write(&path, rewritten).expect("rewrite");
        assert!(read(&mut md, 0).is_ok());
        assert!(matches!(read(&mut md, 1), Err(MaildropError::Changed)));
        // The first record's bytes as scanned, but no "From " line after them: the message
        // there now is longer than the one listed, and a part of it is not to be sent.
        let joined = String::from_utf8_lossy(TWO).replace("\nFrom b@x", "\nfrom b@x");
        fs::write(&path, joined).expect("rewrite");
        assert!(matches!(read(&mut md, 0), Err(MaildropError::Changed)));
    }

    #[test]
    fn message_reader_fails_when_the_file_is_cut_while_it_streams() {
        let dir = TempDir::new("md-read-cut");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        let mut reader = md.message_reader(1).expect("reader");
        // Cut inside the second message's body, after the reader's checks.
        let cut = TWO.len() as u64 - 5;
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(cut))
            .expect("cut");
        let mut out = Vec::new();
        let e = reader
            .read_to_end(&mut out)
            .expect_err("a short read is an error");
        // The file's fingerprint shows the cut before the short read does.
        assert!(matches!(
            e.get_ref().and_then(|e| e.downcast_ref::<MaildropError>()),
            Some(MaildropError::Changed)
        ));
        drop(reader);
        // Beneath it, an exact read never takes the file's end for the message's end.
        let file = md.current_file().expect("file");
        let start = second_start() as u64;
        let mut exact = ReadAt::new(file, start, TWO.len() as u64 - start).exact();
        let e = exact
            .read_to_end(&mut Vec::new())
            .expect_err("a short read is an error");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            e.get_ref().and_then(|e| e.downcast_ref::<MaildropError>()),
            Some(MaildropError::Truncated { at, end }) if *at == cut && *end == TWO.len() as u64
        ));
    }

    #[test]
    fn commit_removes_deleted_messages_and_keeps_mail_that_arrived() {
        let dir = TempDir::new("md-commit");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        let late = b"From c@x Mon Jan  1 00:00:02 2024\nSubject: three\n\nlate\n";
        append(&path, late);
        let stats = md.commit(&[true, false]).expect("commit");
        assert_eq!(stats.deleted, 1);
        assert_eq!(stats.octets_removed, md.messages()[0].octets);
        drop(md);
        let mut want = TWO[second_start()..].to_vec();
        want.extend_from_slice(late);
        assert_eq!(fs::read(&path).expect("read"), want);
        assert!(!journal::journal_path(&path).exists());
        assert!(!lock::sibling(&path, ".lock").exists());
    }

    #[test]
    fn deleting_to_the_end_truncates_in_place() {
        let dir = TempDir::new("md-truncate");
        let path = mbox(&dir, TWO);
        let ino = fs::metadata(&path).expect("meta").ino();
        let mut md = open(&path).expect("open");
        md.commit(&[false, true]).expect("commit");
        assert_eq!(fs::read(&path).expect("read"), &TWO[..second_start()]);
        assert_eq!(fs::metadata(&path).expect("meta").ino(), ino, "same inode");
    }

    #[test]
    fn commit_without_deletions_touches_nothing() {
        let dir = TempDir::new("md-noop");
        let path = mbox(&dir, TWO);
        let before = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let mut md = open(&path).expect("open");
        assert_eq!(md.commit(&[false, false]).expect("commit").deleted, 0);
        assert_eq!(
            fs::metadata(&path)
                .expect("meta")
                .modified()
                .expect("mtime"),
            before
        );
        assert!(
            md.commit(&[false]).is_err(),
            "flags must match the messages"
        );
    }

    #[test]
    fn commit_refuses_a_rewritten_mbox_and_deletes_nothing() {
        let dir = TempDir::new("md-commit-changed");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        // Another program removed the first message in place.
        let rest = TWO[second_start()..].to_vec();
        fs::write(&path, &rest).expect("rewrite");
        assert!(matches!(
            md.commit(&[false, true]),
            Err(MaildropError::Changed)
        ));
        assert_eq!(fs::read(&path).expect("read"), rest);
    }

    #[test]
    fn commit_refuses_a_replaced_mbox() {
        let dir = TempDir::new("md-commit-replaced");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        let new = dir.path().join("new");
        fs::write(&new, TWO).expect("write");
        fs::rename(&new, &path).expect("rename");
        assert!(matches!(
            md.commit(&[true, false]),
            Err(MaildropError::Changed)
        ));
        assert_eq!(fs::read(&path).expect("read"), TWO);
    }

    #[test]
    fn maildrop_is_stale_after_commit() {
        let dir = TempDir::new("md-stale");
        let path = mbox(&dir, TWO);
        let mut md = open(&path).expect("open");
        md.commit(&[true, false]).expect("commit");
        assert!(matches!(read(&mut md, 1), Err(MaildropError::Changed)));
        assert!(matches!(
            md.commit(&[false, true]),
            Err(MaildropError::Changed)
        ));
    }

    #[test]
    fn open_completes_an_interrupted_update() {
        let dir = TempDir::new("md-recover");
        let mut data = Vec::new();
        for i in 0..50 {
            data.extend_from_slice(
                format!(
                    "From s{i}@x {DATE}\nSubject: {i}\n\n{}\n\n",
                    "body ".repeat(i)
                )
                .as_bytes(),
            );
        }
        let path = mbox(&dir, &data);
        let mut md = open(&path).expect("open");
        let deleted: Vec<bool> = (0..50).map(|i| i % 3 == 0).collect();
        let kept: Vec<Vec<u8>> = (0..50)
            .filter(|i| i % 3 != 0)
            .map(|i| read(&mut md, i).expect("read"))
            .collect();
        let crashed = crash::during("moves-done", 1, || md.commit(&deleted));
        assert!(crashed, "the simulated crash must fire");
        drop(md);
        // The unwinding dropped the maildrop and with it every lock, as a crash would.
        assert!(journal::journal_path(&path).exists());
        let mut md = open(&path).expect("open recovers");
        assert!(!journal::journal_path(&path).exists());
        let got: Vec<Vec<u8>> = (0..md.messages().len())
            .map(|i| read(&mut md, i).expect("read"))
            .collect();
        assert_eq!(got, kept);
    }

    #[test]
    fn body_line_beginning_from_is_read_with_its_message_and_kept_by_update() {
        let dir = TempDir::new("md-bodyfrom");
        let data = format!(
            "From a@x {DATE}\nSubject: one\n\nFrom here on, a body line\nend\n\n\
             From b@x {DATE}\nSubject: two\n\nFrom me to you\n"
        );
        let path = mbox(&dir, data.as_bytes());
        let mut md = open(&path).expect("open");
        assert_eq!(md.messages().len(), 2);
        assert_eq!(
            read(&mut md, 0).expect("read"),
            b"Subject: one\n\nFrom here on, a body line\nend\n"
        );
        md.commit(&[true, false]).expect("commit");
        drop(md);
        let mut md = open(&path).expect("reopen");
        assert_eq!(md.messages().len(), 1);
        assert_eq!(
            read(&mut md, 0).expect("read"),
            b"Subject: two\n\nFrom me to you\n"
        );
    }

    /// Two messages that differ only in their bodies (same "From " line, headers and size).
    fn colliding_pair() -> Vec<u8> {
        format!(
            "From r@x {DATE}\nSubject: report\n\ndisk 41%\n\n\
             From r@x {DATE}\nSubject: report\n\ndisk 97%\n"
        )
        .into_bytes()
    }

    fn uids(md: &Maildrop) -> Vec<String> {
        md.messages().iter().map(|m| m.uid.to_string()).collect()
    }

    #[test]
    fn a_collision_is_recorded_once_and_a_damaged_record_is_rebuilt() {
        let dir = TempDir::new("md-uidl-record");
        let path = mbox(&dir, &colliding_pair());
        let record = companion::path(&path, companion::UIDL);
        let first = uids(&open(&path).expect("open"));
        assert_ne!(first[0], first[1]);
        let ino = fs::metadata(&record).expect("recorded").ino();
        assert_eq!(uids(&open(&path).expect("open")), first);
        assert_eq!(
            fs::metadata(&record).expect("record").ino(),
            ino,
            "an unchanged record is not rewritten"
        );
        // Damaged: the ids follow the file order again, and the record is whole again.
        fs::write(&record, b"pop3d-uidl 1\ngarbage\n").expect("damage");
        assert_eq!(uids(&open(&path).expect("open")), first);
        assert!(owners_record(&path).is_some());
    }

    #[test]
    fn ids_survive_deleting_either_of_a_colliding_pair() {
        for gone in 0..2 {
            let dir = TempDir::new("md-uidl-keep");
            let path = mbox(&dir, &colliding_pair());
            let mut md = open(&path).expect("open");
            let first = uids(&md);
            let mut deleted = [false; 2];
            deleted[gone] = true;
            md.commit(&deleted).expect("commit");
            drop(md);
            let kept = first[1 - gone].clone();
            assert_eq!(
                uids(&open(&path).expect("reopen")),
                [kept],
                "deleted {gone}"
            );
        }
    }

    fn open_with(path: &Path, uidl: &str) -> Result<Maildrop, MaildropError> {
        let lock = SessionLock::try_acquire(path)?;
        Maildrop::open(
            path,
            lock,
            &OpenOptions {
                lock_timeout: Duration::from_millis(300),
                uidl: UidlSpec::parse(uidl).expect("spec"),
                ..OpenOptions::default()
            },
        )
    }

    /// Two messages whose X-UIDL headers name them one.1 and two.2, in a fresh mbox opened
    /// with `--uidl x-uidl,pop3d`: the directory, the mbox's path, its text and the maildrop.
    fn x_uidl_pair(name: &str) -> (TempDir, PathBuf, String, Maildrop) {
        let dir = TempDir::new(name);
        let data = format!(
            "From a@x {DATE}\nX-UIDL: one.1\n\nfirst\n\nFrom b@x {DATE}\nX-UIDL: two.2\n\nsecond\n"
        );
        let path = mbox(&dir, data.as_bytes());
        let md = open_with(&path, "x-uidl,pop3d").expect("open");
        (dir, path, data, md)
    }

    /// The record of id owners beside the mbox at `path`, if there is one.
    fn owners_record(path: &Path) -> Option<uid_owners::Owners> {
        uid_owners::read(path, &private::Owners::of(None, None)).expect("read")
    }

    #[test]
    fn a_crash_during_the_rewrite_keeps_the_deleted_ids_retired() {
        let (_dir, path, data, mut md) = x_uidl_pair("md-retire-crash");
        assert_eq!(uids(&md), ["one.1", "two.2"]);
        // The last message goes by a truncate; the crash comes after it, before its sync.
        assert!(crash::during("truncate-sync", 1, || md.commit(&[false, true])));
        drop(md);
        assert_eq!(
            fs::read(&path).expect("mbox").len(),
            data.find("From b").expect("b")
        );
        let forged = format!("From evil@x {DATE}\nX-UIDL: two.2\n\nforged\n");
        append(&path, forged.as_bytes());
        let after = uids(&open_with(&path, "x-uidl,pop3d").expect("reopen"));
        assert_eq!(after[0], "one.1");
        assert_ne!(after[1], "two.2", "the deleted message's id passed on");
    }

    #[test]
    fn a_message_whose_deletion_crashed_before_the_rewrite_keeps_its_uidl_id() {
        let (_dir, path, data, mut md) = x_uidl_pair("md-retire-kept");
        // The retirements are on disk; the crash comes before anything is removed.
        assert!(crash::during("commit-locked", 1, || md.commit(&[false, true])));
        drop(md);
        assert_eq!(fs::read(&path).expect("mbox"), data.as_bytes());
        let record = owners_record(&path).expect("record");
        assert!(!record.may_take("two.2", &[0; 16]), "retired for others");
        assert_eq!(
            uids(&open_with(&path, "x-uidl,pop3d").expect("reopen")),
            ["one.1", "two.2"],
            "the message that stayed keeps its id"
        );
    }

    #[test]
    fn an_update_that_removed_nothing_leaves_every_id_as_it_was() {
        let dir = TempDir::new("md-retire-undo");
        let path = mbox(&dir, TWO);
        let plain = uids(&open(&path).expect("open"));
        let mut md = open_with(&path, "pop3d").expect("open");
        // A delivery agent holds its lock past the timeout: UPDATE removes nothing.
        let agent = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("agent open");
        fs2::FileExt::try_lock_exclusive(&agent).expect("agent flock");
        assert!(md.commit(&[true, false]).is_err());
        drop(agent);
        drop(md);
        assert_eq!(fs::read(&path).expect("mbox"), TWO);
        assert_eq!(uids(&open(&path).expect("reopen")), plain);
        assert!(
            owners_record(&path).is_none(),
            "the retirements were put back: {plain:?}"
        );
    }

    #[test]
    fn too_many_messages_is_too_large() {
        let dir = TempDir::new("md-toolarge");
        let one = format!("From a {DATE}\n");
        let path = mbox(&dir, &one.as_bytes().repeat(scan::MAX_MESSAGES + 1));
        assert!(matches!(
            open(&path),
            Err(MaildropError::TooLarge { messages }) if messages == scan::MAX_MESSAGES
        ));
    }

    /// Random mboxes and random DELE / RSET sequences, with mail arriving during the
    /// session, against the model: the file afterwards is the kept records in order plus
    /// everything past the scan, and every kept message reads and identifies as before.
    #[test]
    fn random_sessions_match_the_model() {
        let seed = 0x00dd_5eed_u64;
        let mut rng = Rng(seed);
        for round in 0..120 {
            let ctx = format!("seed {seed:#x} round {round}");
            let dir = TempDir::new("md-model");
            let pieces = 1 + rng.below(50);
            let data = model::random_mbox(&mut rng, pieces);
            let path = mbox(&dir, &data);
            let (preamble, want) = model::parse(&data);
            let mut md = open(&path).expect("open");
            assert_eq!(md.messages().len(), want.len(), "{ctx}");
            // The record of id owners as the model keeps it: a fresh maildrop has none.
            let mut owners = std::collections::HashMap::new();
            let first_ids = model::uids(&want, &mut owners);
            for (i, m) in want.iter().enumerate() {
                assert_eq!(read(&mut md, i).expect("read"), m.content, "{ctx}");
                assert_eq!(md.messages()[i].uid.to_string(), first_ids[i], "{ctx}");
            }
            // The session: DELE and RSET in random order.
            let mut deleted = vec![false; want.len()];
            for _ in 0..rng.below(12) {
                if !want.is_empty() && rng.below(8) > 0 {
                    deleted[rng.below(want.len())] = true;
                } else {
                    deleted.iter_mut().for_each(|d| *d = false);
                }
            }
            let late: &[u8] = match rng.below(4) {
                0 => b"",
                1 => b"From late@x Mon Jan  1 00:00:00 2024\nSubject: late\n\nlate body\n",
                2 => b"\nFrom late@x Mon Jan  1 00:00:00 2024\nSubject: lf\n\n",
                _ => b"\r\nFrom late@x Mon Jan  1 00:00:00 2024\r\nSubject: crlf\r\n\r\n",
            };
            append(&path, late);
            md.commit(&deleted).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            drop(md);
            // A deleted message's plain id passes to nobody, unless an owner is recorded.
            for (m, _) in want.iter().zip(&deleted).filter(|(_, &d)| d) {
                owners.entry(m.digest).or_insert(None);
            }

            let mut expect = data[..preamble].to_vec();
            for (m, &gone) in want.iter().zip(&deleted) {
                if !gone {
                    expect.extend_from_slice(&data[m.record_start..m.record_end]);
                }
            }
            // A line break in front of the new mail went with a deleted last message.
            let skip = match (deleted.last(), late.first()) {
                (Some(true), Some(b'\n')) => 1,
                (Some(true), Some(b'\r')) => 2,
                _ => 0,
            };
            expect.extend_from_slice(&late[skip..]);
            assert_eq!(fs::read(&path).expect("read"), expect, "{ctx}: {deleted:?}");

            // The maildrop now is what the model makes of the file now.
            let mut md = open(&path).expect("reopen");
            let (_, now) = model::parse(&expect);
            assert_eq!(md.messages().len(), now.len(), "{ctx}");
            let ids = model::uids(&now, &mut owners);
            for (i, m) in now.iter().enumerate() {
                assert_eq!(read(&mut md, i).expect("read"), m.content, "{ctx}");
                let uid = &md.messages()[i].uid;
                assert_eq!(uid.digest(), &m.digest, "{ctx}");
                assert_eq!(uid.to_string(), ids[i], "{ctx}");
            }
            // And every kept message is the same message with the same id, except that new
            // mail may change how the last scanned one ends (a line break completing its
            // last line, or one more blank line), which it would without any deletion too.
            let kept = (0..want.len()).filter(|&i| !deleted[i]);
            for (new, old) in kept.enumerate() {
                if old + 1 < want.len() || late.is_empty() {
                    assert_eq!(now[new].content, want[old].content, "{ctx}");
                    assert_eq!(
                        now[new].digest, want[old].digest,
                        "{ctx}: id must be stable"
                    );
                    // Exactly the same id; only a suffix among identical copies may move.
                    if !first_ids[old].contains('-') {
                        assert_eq!(ids[new], first_ids[old], "{ctx}: id changed");
                    }
                }
            }
        }
    }
}
