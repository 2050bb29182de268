//! The record of who owns a plain unique id: the companion file "MBOX.pop3d-uidl", which
//! keeps a unique id from passing to a different message across sessions (`scan::distinguish`
//! applies it). No stateless rule can do that: a message alone gets its header digest D as
//! its id, and when a message with the same D but another body is there instead (after the
//! first was deleted, or beside it), only memory of who had D tells the two apart.
//!
//! For each header digest D that has collided (two messages with the same D in one scan) or
//! whose message was deleted, the record holds the body digest of the message that owns the
//! plain id D, or "nobody" once that message was deleted while alone. It is read at every
//! open (a missing file costs one failed lstat) and written, only when it changed, under the
//! session lock: at open when a collision is first seen, and when an UPDATE deletes messages
//! (before the mbox is rewritten, and again as it was if nothing was removed). A write goes to "MBOX.pop3d-uidl.new" (owner like the mbox, mode 0600), is
//! synced, renamed over the record and the directory synced, and the file ends in an md-5 of
//! its text: a torn, damaged or missing record reads as empty (logged), which costs clients
//! re-downloads, never mail. What is lost with it is said in scan.rs's module doc.
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
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use super::companion::{self, sync_dir};
use super::lock::match_owner;

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
}

/// Why the record could not be read.
#[derive(Debug)]
pub enum RecordError {
    /// Reading failed.
    Io(io::Error),
    /// The file is not a regular file.
    NotAFile,
    /// The file is larger than any record pop3d writes.
    TooLarge(u64),
    /// The text is not a whole record (torn, damaged or another program's).
    Malformed(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Io(e) => write!(f, "cannot read: {e}"),
            RecordError::NotAFile => f.write_str("not a regular file"),
            RecordError::TooLarge(n) => write!(f, "{n} bytes, more than a record holds"),
            RecordError::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

impl Error for RecordError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RecordError::Io(e) => Some(e),
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
            changed: false,
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

/// Reads the record of `mbox`: Ok(None) when there is none (one failed lstat).
pub fn read(mbox: &Path) -> Result<Option<Owners>, RecordError> {
    let path = companion::path(mbox, companion::UIDL);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        return Err(RecordError::NotAFile);
    }
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        // Replaced between lstat and open: perhaps by a symlink, which is not followed.
        return Err(RecordError::NotAFile);
    }
    if opened.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(opened.len()));
    }
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(bytes.len() as u64));
    }
    Owners::parse(&bytes).map(Some)
}

/// The record of `mbox`, or an empty one (to be rewritten) when it cannot be read: the
/// ids then follow the stateless rule until the record is rebuilt, which is logged.
pub fn load(mbox: &Path) -> Owners {
    match read(mbox) {
        Ok(owners) => owners.unwrap_or_default(),
        Err(e) => {
            log::warn!(
                "{}: unique id record ignored, ids of colliding messages may change: {e}",
                companion::path(mbox, companion::UIDL).display()
            );
            Owners {
                entries: HashMap::new(),
                changed: true,
            }
        }
    }
}

/// Writes `owners` as the record of `mbox` if it changed: temporary file (owned like `like`,
/// the mbox's metadata, mode 0600), synced, renamed over the record, directory synced. An
/// empty record removes the file, so that an open goes back to one failed lstat.
pub fn save(mbox: &Path, owners: &mut Owners, like: Option<&fs::Metadata>) -> io::Result<()> {
    if !owners.changed {
        return Ok(());
    }
    let path = companion::path(mbox, companion::UIDL);
    if owners.entries.is_empty() {
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        owners.changed = false;
        return Ok(());
    }
    let tmp = companion::path(mbox, companion::UIDL_TEMP);
    // Left by a crash in the middle of a write: never the record itself.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
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

fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Value of each byte as a lowercase hex digit, `NOT_HEX` for every other byte: a table,
/// because the record is read at every login and holds up to 640,000 digits.
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// `HEX_VALUE` of a byte that is no hex digit.
const NOT_HEX: u8 = 0xff;

/// The 16 bytes written as 32 lowercase hex digits in `text`.
fn unhex(text: &[u8]) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= (hi | lo) & 0xf0;
        *byte = hi << 4 | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    const D1: [u8; 16] = [1; 16];
    const D2: [u8; 16] = [2; 16];
    const B1: [u8; 16] = [0xb1; 16];
    const B2: [u8; 16] = [0xb2; 16];
    const T0: u64 = 1_700_000_000;

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
        assert!(read(&mbox).expect("read").is_none());
        let mut o = Owners::new();
        o.claim(D1, B1, T0);
        let like = fs::metadata(&mbox).expect("meta");
        save(&mbox, &mut o, Some(&like)).expect("save");
        assert!(!o.is_changed());
        let path = companion::path(&mbox, companion::UIDL);
        let meta = fs::metadata(&path).expect("record");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(!companion::path(&mbox, companion::UIDL_TEMP).exists());
        let back = read(&mbox).expect("read").expect("record");
        assert_eq!(back.owner(&D1), Some(Owner::Body(B1)));

        // A torn file reads as an empty record that is to be rewritten.
        let bytes = fs::read(&path).expect("bytes");
        fs::write(&path, &bytes[..bytes.len() - 3]).expect("tear");
        let torn = load(&mbox);
        assert!(torn.is_empty() && torn.is_changed());

        let mut empty = Owners::new();
        empty.changed = true;
        save(&mbox, &mut empty, Some(&like)).expect("save empty");
        assert!(!path.exists(), "an empty record is no file");
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
        assert!(matches!(read(&mbox), Err(RecordError::NotAFile)));
    }
}
