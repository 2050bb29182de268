//! The record of who owns a plain unique id: the companion file "MBOX.pop3d-uidl", which
//! keeps a unique id from passing to a different message across sessions (`scan::distinguish`
//! applies it). No stateless rule can do that: a message alone gets its header digest D as
//! its id, and when a message with the same D but another body is there instead (after the
//! first was deleted, or beside it), only memory of who had D tells the two apart.
//!
//! For each header digest D that has collided (two messages with the same D in one scan) or
//! whose message was deleted, the record holds the body digest of the message that owns the
//! plain id D, or "nobody" once that message was deleted while alone. It is read at every
//! open (a missing file costs one failed open) and written, only when it changed, under the
//! session lock: at open when a collision is first seen, and when an UPDATE deletes messages
//! (before the mbox is rewritten, and again as it was if nothing was removed). A write goes to a new file "MBOX.pop3d-uidl.new-PID-NANOS" (created exclusively,
//! so nobody can plant it beforehand; owner like the mbox, mode 0600), is synced, renamed
//! over the record and the directory synced, and the file ends in an md-5 of its text: a
//! torn, damaged or missing record reads as empty (logged) and is rebuilt, which costs
//! clients re-downloads, never mail. What is lost with it is said in scan.rs's module doc.
//!
//! In a world-writable spool another user can plant a file under the record's name. The
//! record is opened as pop3d's other private companions are (private.rs: no symlink, no
//! blocking on a FIFO, only a regular file of the mbox's owner or pop3d's that nobody else
//! may write); one that is not trusted, or that cannot be read, is logged and the session
//! goes on without it and writes none (it would replace what it could not see).
//!
//! Bounds: an entry whose D no longer appears in the mbox is dropped `RETAIN_SECS` after it
//! was last seen there (by then a client that fetched the message under D has checked the
//! maildrop again and forgotten the id); beyond `MAX_ENTRIES` the entries seen longest ago go
//! first. An entry whose D is present is stamped at every write, and causes a write itself
//! when its stamp is older than `REFRESH_SECS`, so a long-kept message is never dropped by age.
//!
//! Under a `--uidl` list the record also holds the ids a list chose for deleted messages
//! (another server's X-UID or X-UIDL, a fallback), so a forged header copying one never
//! names another message: the entry's key is `id_key` of the id (md-5 of a prefix no header
//! digest input starts with, and the id), its owner the header digest of the message that
//! held it, which alone may take that id again (it is still there when the UPDATE that was
//! to delete it failed or was cut short). These are written before the mbox is rewritten;
//! they expire like the others, `RETAIN_SECS` after the deletion.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use super::companion::{self, sync_dir};
use super::lock::match_owner;
use super::private::{self, PrivateError};

/// Most entries the record holds: an entry is a collision or a deleted message's id, so ten
/// thousand cover a month of heavy mail; at the bound the file is under a megabyte.
pub const MAX_ENTRIES: usize = 10_000;

/// How long an entry outlives its message in the mbox: thirty days, longer than a client
/// that leaves mail on the server plausibly goes without checking the maildrop.
pub const RETAIN_SECS: u64 = 30 * 24 * 3600;

/// How old a present entry's stamp may grow before an open rewrites the record to renew it:
/// half the retention, so it never expires while its message is there.
const REFRESH_SECS: u64 = RETAIN_SECS / 2;

/// First line of the record: the format and its version.
const MAGIC: &[u8] = b"pop3d-uidl 1\n";

/// Start of the record's last line, followed by the hex md-5 of every byte before it.
const CHECKSUM: &[u8] = b"md5 ";

/// Longest line the record holds: two hex digests, a 20-digit stamp, spaces and the LF.
const LINE_MAX: u64 = 32 + 1 + 32 + 1 + 20 + 1;

/// Shortest entry line: two fields of hex digest and nobody's "-", a one-digit stamp.
const LINE_MIN: usize = 32 + 1 + 1 + 1 + 1 + 1;

/// Largest record file read: `MAX_ENTRIES` full lines and the first and last lines. A
/// larger file is not one pop3d wrote, and is not read into memory.
const MAX_RECORD_BYTES: u64 = (MAX_ENTRIES as u64 + 2) * LINE_MAX;

/// The text of an entry without an owner.
const NOBODY: &str = "-";

/// Who owns the plain id D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The message with this body digest (and its byte-identical copies, with suffixes).
    Body([u8; 16]),
    /// Nobody: the owner was deleted; every message with D gets an id from its body.
    Nobody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    owner: Owner,
    /// Seconds since the Unix epoch when D was last seen in the mbox at a write.
    seen: u64,
}

/// New owners of plain unique ids that a scan found (`scan::distinguish`): (header digest,
/// body digest) pairs, to `claim` once the scan is the one kept.
pub type Claims = Vec<([u8; 16], [u8; 16])>;

/// The record in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    entries: HashMap<[u8; 16], Entry>,
    /// Whether it differs from the file (or the file must be rewritten).
    changed: bool,
    /// Who may own the record's file (as for the other private companions); None for a
    /// record not loaded from a mailbox, whose file only pop3d's own uid may own.
    files: Option<private::Owners>,
    /// Set when the file was there but could not be read or was not trusted: this session
    /// then never writes the record, which would replace what it could not see.
    hands_off: bool,
}

/// Why the record could not be read.
#[derive(Debug)]
pub enum RecordError {
    /// Reading failed.
    Io(io::Error),
    /// The file is not pop3d's to trust (a symlink, a FIFO, another user's, shared).
    Untrusted(private::Untrusted),
    /// The file is larger than any record pop3d writes.
    TooLarge(u64),
    /// The text is not a whole record (torn, damaged or another program's).
    Malformed(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Io(e) => write!(f, "cannot read: {e}"),
            RecordError::Untrusted(u) => u.fmt(f),
            RecordError::TooLarge(n) => write!(f, "{n} bytes, more than a record holds"),
            RecordError::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

impl Error for RecordError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RecordError::Io(e) => Some(e),
            RecordError::Untrusted(u) => Some(u),
            _ => None,
        }
    }
}

impl From<io::Error> for RecordError {
    fn from(e: io::Error) -> Self {
        RecordError::Io(e)
    }
}

impl Owners {
    /// An empty record: what a missing file reads as.
    pub fn new() -> Owners {
        Owners::default()
    }

    /// Whether no entry is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the record must be written.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Who owns the plain id `digest`; None when it is not recorded.
    pub fn owner(&self, digest: &[u8; 16]) -> Option<Owner> {
        self.entries.get(digest).map(|e| e.owner)
    }

    /// Records the message with body digest `body` as the owner of `digest`, unless an
    /// owner is recorded already.
    pub fn claim(&mut self, digest: [u8; 16], body: [u8; 16], now: u64) {
        self.insert(digest, Owner::Body(body), now);
    }

    /// Records that the message holding the plain id `digest` was deleted: unless an owner
    /// is recorded already (whose copies may remain), nobody gets it again.
    pub fn retire(&mut self, digest: [u8; 16], now: u64) {
        self.insert(digest, Owner::Nobody, now);
    }

    /// Records that the message with header digest `holder` showed the id `id` (chosen by a
    /// `--uidl` list) and is being deleted: no other message takes `id` again.
    pub fn retire_id(&mut self, id: &str, holder: [u8; 16], now: u64) {
        self.insert(id_key(id), Owner::Body(holder), now);
    }

    /// Whether the message with header digest `holder` may show the id `id`: no, when `id`
    /// is a deleted message's (`retire_id`) and that message had other headers.
    pub fn may_take(&self, id: &str, holder: &[u8; 16]) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        match self.owner(&id_key(id)) {
            None => true,
            Some(Owner::Body(b)) => b == *holder,
            Some(Owner::Nobody) => false,
        }
    }

    /// Marks the record as to be written: it replaces one already saved (an UPDATE that
    /// removed nothing puts back the record as it was before).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    fn insert(&mut self, digest: [u8; 16], owner: Owner, now: u64) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.entries.entry(digest) {
            v.insert(Entry { owner, seen: now });
            self.changed = true;
        }
    }

    /// Stamps the entries whose digest is `present` in the mbox with `now`, drops the others
    /// seen more than `RETAIN_SECS` ago, then the ones seen longest ago beyond `MAX_ENTRIES`.
    pub fn prune(&mut self, present: &HashSet<[u8; 16]>, now: u64) {
        let before = self.entries.len();
        let mut stale_stamp = false;
        self.entries.retain(|digest, entry| {
            if present.contains(digest) {
                stale_stamp |= now.saturating_sub(entry.seen) > REFRESH_SECS;
                entry.seen = now;
                true
            } else {
                now.saturating_sub(entry.seen) <= RETAIN_SECS
            }
        });
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<([u8; 16], u64)> =
                self.entries.iter().map(|(d, e)| (*d, e.seen)).collect();
            by_age.sort_by_key(|&(d, seen)| (seen, d));
            let excess = self.entries.len() - MAX_ENTRIES;
            for (digest, _) in by_age.into_iter().take(excess) {
                self.entries.remove(&digest);
            }
        }
        if stale_stamp || self.entries.len() != before {
            self.changed = true;
        }
    }

    /// The record's text: the magic line, one line per entry (sorted, so equal records are
    /// equal files), and the checksum line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted: Vec<(&[u8; 16], &Entry)> = self.entries.iter().collect();
        sorted.sort_by_key(|&(d, _)| *d);
        let mut out = MAGIC.to_vec();
        for (digest, entry) in sorted {
            let owner = match entry.owner {
                Owner::Body(b) => hex(&b),
                Owner::Nobody => NOBODY.to_string(),
            };
            out.extend_from_slice(format!("{} {owner} {}\n", hex(digest), entry.seen).as_bytes());
        }
        let sum = hex(&Md5::digest(&out).into());
        out.extend_from_slice(CHECKSUM);
        out.extend_from_slice(sum.as_bytes());
        out.push(b'\n');
        out
    }

    /// Parses a whole record, checksum first: anything else is `Malformed`.
    pub fn parse(bytes: &[u8]) -> Result<Owners, RecordError> {
        let body = bytes
            .strip_suffix(b"\n")
            .ok_or(RecordError::Malformed("no final line break"))?;
        let at = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let (text, last) = body.split_at(at);
        let sum = last
            .strip_prefix(CHECKSUM)
            .ok_or(RecordError::Malformed("no checksum line"))?;
        let want: [u8; 16] = Md5::digest(text).into();
        if unhex(sum) != Some(want) {
            return Err(RecordError::Malformed("checksum does not match"));
        }
        let lines = text
            .strip_prefix(MAGIC)
            .ok_or(RecordError::Malformed("unknown format"))?;
        let mut entries = HashMap::with_capacity(lines.len() / LINE_MIN);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let mut fields = line.split(|&b| b == b' ');
            let (Some(digest), Some(owner), Some(seen), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(RecordError::Malformed("entry is not three fields"));
            };
            let digest = unhex(digest).ok_or(RecordError::Malformed("bad digest"))?;
            let owner = if owner == NOBODY.as_bytes() {
                Owner::Nobody
            } else {
                Owner::Body(unhex(owner).ok_or(RecordError::Malformed("bad owner"))?)
            };
            let seen = std::str::from_utf8(seen)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(RecordError::Malformed("bad stamp"))?;
            entries.insert(digest, Entry { owner, seen });
        }
        if entries.len() > MAX_ENTRIES {
            return Err(RecordError::Malformed("too many entries"));
        }
        Ok(Owners {
            entries,
            ..Owners::default()
        })
    }
}

/// Start of the text whose md-5 keys a retired `--uidl` id: a header digest is md-5 of text
/// that starts with "From ", so the two kinds of key never meet.
const ID_KEY_PREFIX: &[u8] = b"pop3d-uidl id\n";

/// The record's key for the unique id `id` a `--uidl` list chose.
pub fn id_key(id: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(ID_KEY_PREFIX);
    h.update(id.as_bytes());
    h.finalize().into()
}

/// Seconds since the Unix epoch, for the entries' stamps (0 if the clock is before it).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the record of `mbox`: Ok(None) when there is none. The file is opened as pop3d's
/// other private companions are (private.rs): never through a symlink, never blocking on a
/// FIFO, and used only when it is a regular file of one of `files` that nobody else may write.
pub fn read(mbox: &Path, files: &private::Owners) -> Result<Option<Owners>, RecordError> {
    let path = companion::path(mbox, companion::UIDL);
    let file = match private::read_existing(&path, files) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(PrivateError::Untrusted(u)) => return Err(RecordError::Untrusted(u)),
        Err(PrivateError::Io(e)) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(bytes.len() as u64));
    }
    let mut owners = Owners::parse(&bytes)?;
    owners.files = Some(*files);
    Ok(Some(owners))
}

/// The record of `mbox` for this session (`files` as for `read`). A record that is not
/// whole (torn, damaged, too large) reads as empty and is rebuilt; one that could not be
/// read, or that is not trusted, reads as empty and is left as it is: this session writes
/// no record (it would replace what it could not see). Either way the ids of colliding
/// messages follow the stateless rule meanwhile, which is logged.
pub fn load(mbox: &Path, files: &private::Owners) -> Owners {
    loaded(mbox, files, read(mbox, files))
}

fn loaded(
    mbox: &Path,
    files: &private::Owners,
    read: Result<Option<Owners>, RecordError>,
) -> Owners {
    let path = companion::path(mbox, companion::UIDL);
    let mut owners = Owners {
        files: Some(*files),
        ..Owners::default()
    };
    match read {
        Ok(Some(record)) => return record,
        Ok(None) => {}
        Err(e @ (RecordError::Malformed(_) | RecordError::TooLarge(_))) => {
            log::warn!(
                "{}: unique id record rebuilt, ids of colliding messages may change: {e}",
                path.display()
            );
            owners.changed = true;
        }
        Err(RecordError::Untrusted(u)) => {
            let owner = fs::symlink_metadata(&u.path)
                .map_or_else(|_| "unknown".to_string(), |m| format!("uid {}", m.uid()));
            log::error!(
                "{u} (owner {owner}): unique id record neither used nor written this session, \
                 ids of colliding messages may change"
            );
            owners.hands_off = true;
        }
        Err(e @ RecordError::Io(_)) => {
            log::error!(
                "{}: unique id record neither used nor written this session, ids of colliding \
                 messages may change: {e}",
                path.display()
            );
            owners.hands_off = true;
        }
    }
    owners
}

/// How many unique temporary names a write tries: one is taken only by a leftover of the
/// same pid and nanosecond, or by a file planted by someone who guessed both.
const TEMP_ATTEMPTS: u32 = 4;

/// Writes `owners` as the record of `mbox` if it changed (and this session may write it,
/// see `load`): a temporary file under a unique name (created exclusively, owned like
/// `like`, the mbox's metadata, mode 0600), synced, renamed over the record, directory
/// synced. An empty record removes the file, so that an open goes back to one failed open.
pub fn save(mbox: &Path, owners: &mut Owners, like: Option<&fs::Metadata>) -> io::Result<()> {
    if !owners.changed || owners.hands_off {
        return Ok(());
    }
    // A record never loaded from a file (a test's) may be pop3d's own alone.
    let files = owners
        .files
        .unwrap_or_else(|| private::Owners::of(None, None));
    let path = companion::path(mbox, companion::UIDL);
    if owners.entries.is_empty() {
        // Only pop3d's or the owner's file: one planted after `load` stays.
        if private::check_existing(&path, &files).map_err(into_io)? {
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        owners.changed = false;
        return Ok(());
    }
    remove_stale_temps(mbox, &files);
    let (tmp, mut file) = create_temp(mbox)?;
    let written = (|| {
        if let Some(like) = like {
            match_owner(&file, like)?;
        }
        file.write_all(&owners.to_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    owners.changed = false;
    Ok(())
}

/// Creates a temporary record of `mbox` exclusively (O_EXCL, which follows no symlink),
/// under a name of this process and moment.
fn create_temp(mbox: &Path) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for attempt in 0..TEMP_ATTEMPTS {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = companion::uidl_temp(mbox, &format!("{}-{nanos}-{attempt}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name left")))
}

/// Removes the temporary records of `mbox` that a crash in the middle of a write left (the
/// session lock is held, so no other write is under way), but only pop3d's or the owner's
/// files: anything planted under the names stays. Best effort: a leftover costs only space.
fn remove_stale_temps(mbox: &Path, files: &private::Owners) {
    let (Some(dir), Some(name)) = (mbox.parent(), mbox.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.extend_from_slice(companion::UIDL_TEMP.as_bytes());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(&prefix) {
            continue;
        }
        let tmp = entry.path();
        match private::check_existing(&tmp, files) {
            Ok(true) => {
                if let Err(e) = fs::remove_file(&tmp) {
                    log::warn!("{}: cannot remove: {e}", tmp.display());
                }
            }
            Ok(false) => {}
            Err(e) => log::warn!("{e}: left as it is"),
        }
    }
}

fn into_io(e: PrivateError) -> io::Error {
    match e {
        PrivateError::Io(e) => e,
        PrivateError::Untrusted(u) => io::Error::new(io::ErrorKind::PermissionDenied, u),
    }
}

fn hex(bytes: &[u8; 16]) -> String {
    crate::bytes::hex(bytes)
}

/// The 16 bytes written as 32 lowercase hex digits in `text`.
fn unhex(text: &[u8]) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    crate::bytes::unhex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;
    use crate::testing::TempDir;

    const D1: [u8; 16] = [1; 16];
    const D2: [u8; 16] = [2; 16];
    const B1: [u8; 16] = [0xb1; 16];
    const B2: [u8; 16] = [0xb2; 16];
    const T0: u64 = 1_700_000_000;

    /// Files that pop3d's own uid owns are trusted.
    fn mine() -> private::Owners {
        private::Owners::of(None, None)
    }

    fn present(ds: &[[u8; 16]]) -> HashSet<[u8; 16]> {
        ds.iter().copied().collect()
    }

    #[test]
    fn the_first_claim_or_retirement_wins() {
        let mut o = Owners::new();
        assert!(!o.is_changed());
        o.claim(D1, B1, T0);
        o.claim(D1, B2, T0);
        o.retire(D1, T0);
        assert_eq!(o.owner(&D1), Some(Owner::Body(B1)));
        o.retire(D2, T0);
        o.claim(D2, B2, T0);
        assert_eq!(o.owner(&D2), Some(Owner::Nobody));
        assert!(o.is_changed());
    }

    #[test]
    fn a_retired_id_is_taken_only_by_the_message_that_held_it() {
        let mut o = Owners::new();
        assert!(o.may_take("000000026553f100", &D1));
        o.retire_id("000000026553f100", D1, T0);
        assert!(o.may_take("000000026553f100", &D1), "the same message");
        assert!(!o.may_take("000000026553f100", &D2), "another message");
        assert!(o.may_take("000000036553f100", &D2), "another id");
        assert_ne!(id_key("x"), id_key("y"));
        let back = Owners::parse(&o.to_bytes()).expect("parse");
        assert!(!back.may_take("000000026553f100", &D2), "kept in the file");
    }

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        o.retire(D2, T0 + 5);
        let bytes = o.to_bytes();
        let back = Owners::parse(&bytes).expect("parse");
        assert_eq!(back.owner(&D1), Some(Owner::Body(B1)));
        assert_eq!(back.owner(&D2), Some(Owner::Nobody));
        assert!(!back.is_changed());
        assert_eq!(back.to_bytes(), bytes, "same record, same file");
        // Every cut (a torn write) and a changed byte fail.
        for cut in 0..bytes.len() {
            assert!(Owners::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 3] ^= 1;
        assert!(Owners::parse(&flipped).is_err());
    }

    #[test]
    fn absent_entries_expire_and_present_ones_are_renewed() {
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        o.retire(D2, T0);
        o.changed = false;
        o.prune(&present(&[D1]), T0 + RETAIN_SECS);
        assert_eq!(o.entries.len(), 2, "not yet expired");
        assert!(o.is_changed(), "an old stamp of a present entry is renewed");
        o.prune(&present(&[D1]), T0 + RETAIN_SECS + 1);
        assert_eq!(o.owner(&D2), None, "absent longer than the retention");
        assert_eq!(o.owner(&D1), Some(Owner::Body(B1)), "present: kept");
        o.changed = false;
        o.prune(&present(&[D1]), T0 + RETAIN_SECS + 2);
        assert!(!o.is_changed(), "a fresh stamp needs no write");
    }

    #[test]
    fn the_bound_drops_the_entries_seen_longest_ago() {
        let mut o = Owners::new();
        for i in 0..MAX_ENTRIES as u64 + 3 {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&i.to_le_bytes());
            o.retire(d, T0 + i);
        }
        o.prune(&HashSet::new(), T0 + MAX_ENTRIES as u64 + 3);
        assert_eq!(o.entries.len(), MAX_ENTRIES);
        assert_eq!(o.owner(&[0; 16]), None, "the oldest went first");
        let mut newest = [0u8; 16];
        newest[..8].copy_from_slice(&(MAX_ENTRIES as u64 + 2).to_le_bytes());
        assert_eq!(o.owner(&newest), Some(Owner::Nobody));
    }

    #[test]
    fn save_writes_a_private_file_that_reads_back_and_empty_removes_it() {
        let dir = TempDir::new("uidl-record");
        let mbox = dir.path().join("alice");
        fs::write(&mbox, b"").expect("mbox");
        assert!(read(&mbox, &mine()).expect("read").is_none());
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        let like = fs::metadata(&mbox).expect("meta");
        save(&mbox, &mut o, Some(&like)).expect("save");
        assert!(!o.is_changed());
        let path = companion::path(&mbox, companion::UIDL);
        let meta = fs::metadata(&path).expect("record");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            temps(&mbox),
            Vec::<PathBuf>::new(),
            "a temporary file is left"
        );
        let back = read(&mbox, &mine()).expect("read").expect("record");
        assert_eq!(back.owner(&D1), Some(Owner::Body(B1)));

        // A torn file reads as an empty record that is to be rewritten.
        let bytes = fs::read(&path).expect("bytes");
        fs::write(&path, &bytes[..bytes.len() - 3]).expect("tear");
        let torn = load(&mbox, &mine());
        assert!(torn.is_empty() && torn.is_changed());

        let mut empty = Owners::new();
        empty.changed = true;
        save(&mbox, &mut empty, Some(&like)).expect("save empty");
        assert!(!path.exists(), "an empty record is no file");
    }

    /// Runs `f` in a thread; a FIFO at `fifo` that blocks it past `limit` is opened for
    /// writing (which lets a blocked open return) and the test fails instead of hanging.
    fn within<T: Send + 'static>(fifo: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(v) => v,
            Err(_) => {
                let _ = OpenOptions::new()
                    .write(true)
                    .custom_flags(0o4_000)
                    .open(fifo);
                panic!("blocked on the FIFO {}", fifo.display());
            }
        }
    }

    fn mkfifo(path: &Path) -> bool {
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn a_fifo_record_neither_blocks_nor_is_replaced() {
        let dir = TempDir::new("uidl-fifo");
        let mbox = dir.path().join("alice");
        fs::write(&mbox, b"").expect("mbox");
        let path = companion::path(&mbox, companion::UIDL);
        if !mkfifo(&path) {
            crate::testing::skip("no mkfifo");
            return;
        }
        let m = mbox.clone();
        let mut o = within(&path, move || load(&m, &mine()));
        assert!(o.is_empty());
        o.claim(D1, B1, T0);
        let like = fs::metadata(&mbox).expect("meta");
        let m = mbox.clone();
        within(&path, move || {
            let _ = save(&m, &mut o, Some(&like));
        });
        let meta = fs::symlink_metadata(&path).expect("the FIFO stays");
        assert!(meta.file_type().is_fifo(), "replaced by a record");
    }

    /// Another user swapping a FIFO and a regular file under the record's name, as fast as
    /// it can, never blocks a read (a check by name before the open would be raced).
    #[test]
    fn a_fifo_swapped_in_during_reads_never_blocks() {
        let dir = TempDir::new("uidl-fifo-race");
        let mbox = dir.path().join("alice");
        let path = companion::path(&mbox, companion::UIDL);
        let fifo = dir.path().join("fifo");
        if !mkfifo(&fifo) {
            crate::testing::skip("no mkfifo");
            return;
        }
        let regular = dir.path().join("regular");
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        fs::write(&regular, o.to_bytes()).expect("record");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, path, fifo, regular) =
                (stop.clone(), path.clone(), fifo.clone(), regular.clone());
            let spare = dir.path().join("spare");
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for source in [&regular, &fifo] {
                        let _ = fs::remove_file(&spare);
                        if fs::hard_link(source, &spare).is_ok() {
                            let _ = fs::rename(&spare, &path);
                        }
                    }
                }
            })
        };
        // Stops the swapper before the directory goes, even when the test fails.
        let swapping = Swapping(stop, Some(swapper));
        // Until each of the two has been met often (or a bound): then the swaps overlapped
        // many reads.
        let outcomes = within(&fifo, move || {
            let (mut records, mut fifos) = (0, 0);
            let mut outcomes = Vec::new();
            for _ in 0..RACE_READS {
                let outcome = read(&mbox, &mine());
                match &outcome {
                    Ok(Some(_)) => records += 1,
                    Err(RecordError::Untrusted(_)) => fifos += 1,
                    _ => {}
                }
                outcomes.push(outcome);
                if records >= RACE_MEETINGS && fifos >= RACE_MEETINGS {
                    break;
                }
            }
            outcomes
        });
        drop(swapping);
        // Only the regular file is ever read; which one the name held depends on the timing.
        for outcome in outcomes {
            match outcome {
                Ok(None) => {}
                Ok(Some(r)) => assert_eq!(r.owner(&D1), Some(Owner::Body(B1))),
                Err(RecordError::Untrusted(u)) => assert_eq!(u.why, private::Why::NotAFile),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The race test's swapping thread: stopped and joined on drop.
    struct Swapping(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        Option<std::thread::JoinHandle<()>>,
    );

    impl Drop for Swapping {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }

    /// Most reads of the race test, and how often it wants to meet each file.
    const RACE_READS: usize = 200_000;
    const RACE_MEETINGS: usize = 2_000;

    /// A record that another user could have written: not read, and not replaced.
    fn untrusted_record_is_left_alone(label: &str, plant: impl Fn(&Path)) {
        let dir = TempDir::new(label);
        let mbox = dir.path().join("alice");
        fs::write(&mbox, b"").expect("mbox");
        let path = companion::path(&mbox, companion::UIDL);
        let mut planted = Owners::new();
        planted.claim(D1, B2, T0);
        let bytes = planted.to_bytes();
        fs::write(&path, &bytes).expect("plant");
        plant(&path);
        let mut o = load(&mbox, &mine());
        assert_eq!(o.owner(&D1), None, "{label}: the planted record was used");
        o.claim(D2, B1, T0);
        let like = fs::metadata(&mbox).expect("meta");
        let _ = save(&mbox, &mut o, Some(&like));
        assert_eq!(fs::read(&path).expect("kept"), bytes, "{label}: replaced");
    }

    #[test]
    fn a_group_writable_record_is_not_used_or_replaced() {
        untrusted_record_is_left_alone("uidl-shared", |path| {
            fs::set_permissions(path, fs::Permissions::from_mode(0o620)).expect("chmod");
        });
    }

    #[test]
    fn a_record_of_another_user_is_not_used_or_replaced() {
        if crate::sys::effective_uid() != 0 {
            crate::testing::skip("needs root to give the record away");
            return;
        }
        untrusted_record_is_left_alone("uidl-stranger", |path| {
            std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
        });
    }

    #[test]
    fn planted_temporary_names_do_not_stop_a_write() {
        let dir = TempDir::new("uidl-planted-temp");
        let mbox = dir.path().join("alice");
        fs::write(&mbox, b"").expect("mbox");
        // The old fixed temporary name, as a directory nothing can remove with unlink.
        let fixed = companion::path(&mbox, ".pop3d-uidl.new");
        fs::create_dir(&fixed).expect("plant");
        fs::write(fixed.join("x"), b"x").expect("plant");
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        let like = fs::metadata(&mbox).expect("meta");
        // A leftover of a crashed write of pop3d's, and one planted by another user.
        let stale = companion::uidl_temp(&mbox, "1-2-0");
        fs::write(&stale, b"half").expect("stale");
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o600)).expect("chmod");
        let strangers = companion::uidl_temp(&mbox, "3-4-0");
        fs::write(&strangers, b"planted").expect("plant");
        fs::set_permissions(&strangers, fs::Permissions::from_mode(0o666)).expect("chmod");
        save(&mbox, &mut o, Some(&like)).expect("save");
        let back = read(&mbox, &mine()).expect("read").expect("record");
        assert_eq!(back.owner(&D1), Some(Owner::Body(B1)));
        assert!(fixed.join("x").exists(), "the planted file was removed");
        assert_eq!(temps(&mbox), vec![strangers], "only pop3d's leftover goes");
    }

    /// The temporary records of `mbox` there are.
    fn temps(mbox: &Path) -> Vec<PathBuf> {
        let prefix = companion::uidl_temp(mbox, "");
        let mut found: Vec<PathBuf> = fs::read_dir(mbox.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.as_os_str()
                    .as_bytes()
                    .starts_with(prefix.as_os_str().as_bytes())
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn an_unreadable_record_is_kept_and_not_rewritten() {
        let dir = TempDir::new("uidl-io-error");
        let mbox = dir.path().join("alice");
        fs::write(&mbox, b"").expect("mbox");
        let path = companion::path(&mbox, companion::UIDL);
        let mut kept = Owners::new();
        kept.claim(D1, B1, T0);
        fs::write(&path, kept.to_bytes()).expect("record");
        let mut o = loaded(
            &mbox,
            &mine(),
            Err(RecordError::Io(io::Error::from_raw_os_error(5))),
        );
        assert!(o.is_empty(), "nothing read, nothing known");
        let like = fs::metadata(&mbox).expect("meta");
        save(&mbox, &mut o, Some(&like)).expect("save");
        o.claim(D2, B2, T0);
        save(&mbox, &mut o, Some(&like)).expect("save");
        assert_eq!(fs::read(&path).expect("kept"), kept.to_bytes());
    }

    #[test]
    fn a_symlink_is_not_read() {
        let dir = TempDir::new("uidl-symlink");
        let mbox = dir.path().join("alice");
        let target = dir.path().join("elsewhere");
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        fs::write(&target, o.to_bytes()).expect("target");
        std::os::unix::fs::symlink(&target, companion::path(&mbox, companion::UIDL))
            .expect("symlink");
        assert!(matches!(
            read(&mbox, &mine()),
            Err(RecordError::Untrusted(_))
        ));
    }
}
