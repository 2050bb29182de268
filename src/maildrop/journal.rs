//! Crash-safe compaction of an mbox in place: the plan of an UPDATE (which byte ranges stay,
//! where they go), its journal beside the mbox, the rewrite itself, and the recovery that
//! finishes an interrupted one, but only on the file it was written for. Knows nothing of
//! messages: the caller decides what to keep.
//!
//! The rewrite only moves data toward the start of the file, front to back, in batches.
//! Overwriting the destination of a batch can destroy two kinds of old bytes: those of
//! deleted messages, which need no copy, and kept bytes that are sources of this very batch
//! (when less was removed before them than the batch is long): only those, a prefix of the
//! batch, are saved in the journal. Every byte a later batch reads lies past the end of the
//! current batch, so it is still intact. Before anything is written:
//!
//! 0. the journal header (the plan, the mbox's length L and the digests of its bytes from
//!    the plan's first byte to L, block by block) is written, then fsync(journal) and of
//!    the directory.
//!
//! The write order of one batch:
//!
//! 1. the batch record (destination, length, saved prefix, and the check: digests of the
//!    rewritten bytes just before the batch and of the original bytes from its end to the
//!    next block boundary) goes into the journal slot not holding the previous record,
//!    then fdatasync(journal);
//! 2. the batch is written into the mbox, then fdatasync(mbox).
//!
//! After a crash the newest valid record is redone (its saved prefix from the journal, the
//! rest from the mbox) and the rewrite goes on; a torn record is invalid, and then the
//! previous one is redone, whose mbox writes were already durable. The end:
//!
//! 3. record MovesDone {new length x, file length e}, fdatasync(journal);
//! 4. write a NUL at x (inside the junk past the new end), fdatasync(mbox);
//! 5. record Marked {x, e}, fdatasync(journal);
//! 6. ftruncate(mbox, x), fsync(mbox);
//! 7. unlink the journal, fsync the directory; only then are the delivery locks released.
//!
//! The tail of the file (everything from the end of what the session saw) is kept whatever
//! its length when the rewrite runs, so mail that an agent appends after a crash (when our
//! locks are gone) is moved along by the recovery. Past step 5 the NUL byte tells whether the
//! truncation happened: a delivery agent's append starts with "From " or a line break, never
//! with NUL. If mail was appended before the truncation, the recovery plans the move of that
//! new tail onto x as a fresh rewrite, which replaces the journal by rename. The rewrite
//! itself does the same when the file grew past e before step 4 or before step 6 (an agent
//! that broke the dotlock as stale while pop3d was stopped): the truncation never cuts a
//! byte the plan did not see.
//!
//! Only a journal that is pop3d's own is read at all: a regular file, opened without
//! following a symlink, of the mbox's owner or pop3d's uid, that nobody else may write (see
//! `private`). Anything else under its name is left alone and the login refused: in a
//! world-writable spool another user could otherwise forge a plan that empties the mbox.
//!
//! The recovery rule. A journal is replayed only onto a file that is provably in a state a
//! crash after its newest record leaves: the same device and inode (a backup copied over
//! the mbox keeps the inode and a recreated mbox may reuse the number, so that alone
//! proves nothing), and the content. With the newest record at destination w (a batch
//! [w, w + len), or x for the final records) a crash can only leave:
//!
//! - [0, first byte of the plan): original bytes, never read nor written by the recovery,
//!   so not checked;
//! - [first byte, w): the rewritten bytes, final. The recovery neither reads nor writes
//!   them, so they only have to tell the half-rewritten file from an older copy of it
//!   (which holds the original bytes there): the record's digest of the last DONE_WINDOW
//!   bytes before w must match;
//! - [w, w + len): the batch in flight, any mix of old and new: not checked (its old bytes
//!   are deleted mail or already moved, its new ones come from the journal and from the
//!   untouched region after it);
//! - [w + len, L) (from x + 1 for MovesDone and Marked): untouched original bytes, every
//!   one checked: the record's digest up to the next block boundary, then the header's
//!   block digests;
//! - a file at least L bytes long (the rewrite never shortens it before step 6); mail
//!   appended past L after the crash is not checked, only moved along. After step 6 only
//!   the rewritten bytes before x are left to check.
//!
//! The digests are Fletcher sums modulo a prime above 2^32 (see `Fletcher`): they notice
//! for sure a change of one or two 32-bit words or of the length, and the differences a
//! backup, a recreated file or a copy has (a shift, other content) unless both sums agree
//! by chance (odds of about 2^-64); they are no defence against crafted bytes, which only
//! the mbox's owner and delivery agents could write. They cost an extra read of the bytes
//! from the plan's first byte (from the page cache: the session's scan has just read them)
//! at a fraction of md-5's time. A copy of the crashed file itself, or one followed by new mail, is a state
//! a crash leaves, and is rightly finished. When the check fails (or the mbox is missing,
//! or the journal is an older pop3d's) the recovery writes nothing to the mbox: it renames
//! the journal aside as "<mbox>.pop3d-journal.stale-<unix time>" (never overwriting an earlier
//! one, never deleting it), logs an error naming both files, and the login proceeds on the
//! file as it is.

use std::error::Error;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as UnixFileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use super::companion::{self, sync_dir};
use super::fault_point;
use super::fletcher::{fletcher64, Fletcher};
use super::lock::{match_owner, sibling};
use super::private::{self, Owners, PrivateError, Untrusted};

/// Largest batch whose source overlaps its destination, so the most bytes saved per record
/// and the size of the copy buffer: 8 MiB keeps the commit's memory small while a 1 GB
/// rewrite still needs only about 130 pairs of fdatasync.
pub const BATCH: u64 = 8 << 20;

/// The largest batch a journal may declare, so a damaged header cannot make the recovery
/// allocate without bound.
const MAX_BATCH: u64 = 256 << 20;

/// First bytes of a journal file.
const MAGIC: &[u8; 8] = b"P3DJRNL3";

/// First bytes of the journals of older pop3d versions, which recorded no content to check
/// (1) or digests of a weaker sum (2): they are set aside, never replayed.
const OLD_MAGICS: [&[u8; 8]; 2] = [b"P3DJRNL1", b"P3DJRNL2"];

/// Bytes of the header before the kept ranges: magic, dev, ino, dirty, batch, capacity,
/// first_dst, tail_src, orig_len, grid, count.
const FIXED_HEADER: usize = 88;

/// Bytes of a slot before its saved data: seq, kind, a, b, saved length, rest_from, the two
/// content digests of the record's check, md-5, padding.
const SLOT_HEADER: u64 = 128;

/// Bytes of a slot header covered by its md-5.
const SLOT_FIELDS: usize = 80;

/// Most blocks the original bytes are digested in: bounds the header (16 bytes a block) and
/// what a damaged header can make the recovery allocate. Larger files get larger blocks.
const MAX_BLOCKS: u64 = 1 << 20;

/// Smallest block of the original bytes digested apart.
const MIN_GRID: u64 = 64;

/// The rewritten bytes just before a record's position whose digest the record carries:
/// enough to tell the compacted data from the bytes a restored backup has there (any older
/// or other file differs within a few messages), small enough that reading them back for
/// each batch costs next to nothing.
const DONE_WINDOW: u64 = 64 << 10;

/// Most names tried when setting a journal aside in one second.
const MAX_ASIDE_NAMES: u32 = 1000;

/// Slots start on a page boundary after the plan.
const ALIGN: u64 = 4096;

/// Most kept ranges a journal may list: one per message at most, and a corrupted count must
/// not make the recovery allocate without bound.
const MAX_RANGES: u64 = super::scan::MAX_MESSAGES as u64 + 1;

/// The journal of `mbox`.
pub fn journal_path(mbox: &Path) -> PathBuf {
    sibling(mbox, companion::JOURNAL)
}

/// Why a rewrite or its recovery failed.
#[derive(Debug)]
pub enum JournalError {
    /// Reading or writing the mbox or the journal failed.
    Io(io::Error),
    /// The journal does not fit the mbox as it is now (another inode, other content, a
    /// shorter file): the recovery touches nothing and sets the journal aside for the admin.
    Mismatch(String),
    /// The file under the journal's (or the temporary journal's) name is not pop3d's (see
    /// `private`): the recovery neither replays, sets aside nor removes it.
    Untrusted(Untrusted),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io(e) => write!(f, "rewrite failed: {e}"),
            JournalError::Mismatch(why) => write!(f, "journal does not fit the mbox: {why}"),
            JournalError::Untrusted(u) => u.fmt(f),
        }
    }
}

impl Error for JournalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JournalError::Io(e) => Some(e),
            JournalError::Mismatch(_) => None,
            JournalError::Untrusted(u) => Some(u),
        }
    }
}

impl From<PrivateError> for JournalError {
    fn from(e: PrivateError) -> Self {
        match e {
            PrivateError::Untrusted(u) => JournalError::Untrusted(u),
            PrivateError::Io(e) => JournalError::Io(e),
        }
    }
}

impl From<io::Error> for JournalError {
    fn from(e: io::Error) -> Self {
        JournalError::Io(e)
    }
}

/// What an UPDATE keeps from `first_dst` on; everything before it stays untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The first removed byte: where compacted data starts.
    pub first_dst: u64,
    /// Kept ranges (offset, length) between `first_dst` and `tail_src`, in file order.
    pub kept: Vec<(u64, u64)>,
    /// Everything from here to the end of the file is kept.
    pub tail_src: u64,
}

impl Plan {
    /// Bytes the rewrite removes.
    pub fn removed(&self) -> u64 {
        self.tail_src - self.first_dst - self.kept.iter().map(|k| k.1).sum::<u64>()
    }

    /// The bytes removed before the first kept byte: the smallest distance any data moves.
    fn first_gap(&self) -> u64 {
        self.kept.first().map_or(self.tail_src, |k| k.0) - self.first_dst
    }

    fn check(&self) -> Result<(), JournalError> {
        let mut at = self.first_dst;
        for &(src, len) in &self.kept {
            if src < at || len == 0 {
                return Err(JournalError::Mismatch("kept ranges out of order".into()));
            }
            at = src + len;
        }
        if self.tail_src < at || self.removed() == 0 {
            return Err(JournalError::Mismatch("plan removes nothing".into()));
        }
        Ok(())
    }
}

/// One piece of the move: `len` bytes from `src` to `dst`.
#[derive(Clone, Copy, Debug)]
struct Seg {
    src: u64,
    dst: u64,
    len: u64,
}

/// The plan as moves, with the tail's length fixed at the file's current end.
struct Moves {
    segs: Vec<Seg>,
    new_len: u64,
}

impl Moves {
    fn new(plan: &Plan, eof: u64) -> Self {
        let mut segs = Vec::with_capacity(plan.kept.len() + 1);
        let mut dst = plan.first_dst;
        for &(src, len) in &plan.kept {
            segs.push(Seg { src, dst, len });
            dst += len;
        }
        if eof > plan.tail_src {
            segs.push(Seg {
                src: plan.tail_src,
                dst,
                len: eof - plan.tail_src,
            });
            dst += eof - plan.tail_src;
        }
        Moves { segs, new_len: dst }
    }

    /// The source pieces (offset, length) of destination bytes [dst, dst + len).
    fn pieces(&self, dst: u64, len: u64) -> Vec<(u64, u64)> {
        let end = dst + len;
        let first = self.segs.partition_point(|s| s.dst + s.len <= dst);
        let mut out = Vec::new();
        for s in &self.segs[first..] {
            if s.dst >= end {
                break;
            }
            let from = dst.max(s.dst);
            let to = end.min(s.dst + s.len);
            out.push((s.src + (from - s.dst), to - from));
        }
        out
    }

    /// How far destination byte `dst` moves (its source minus itself).
    fn gap_at(&self, dst: u64) -> u64 {
        self.pieces(dst, 1).first().map_or(0, |&(src, _)| src - dst)
    }
}

/// A journal record: what one slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    /// Destination bytes [w, w + len) are being written; `saved` is their prefix whose
    /// sources lie inside the destination.
    Batch { w: u64, len: u64, saved: Vec<u8> },
    /// All moves are durable; the file is `e` bytes long and is to become `x`.
    MovesDone { x: u64, e: u64 },
    /// As MovesDone, and the byte at `x` is NUL until the truncation.
    Marked { x: u64, e: u64 },
}

/// The kind number of a batch record in a slot.
const BATCH_KIND: u64 = 1;

impl Record {
    fn encode(&self) -> (u64, u64, u64, &[u8]) {
        match self {
            Record::Batch { w, len, saved } => (BATCH_KIND, *w, *len, saved),
            Record::MovesDone { x, e } => (2, *x, *e, &[]),
            Record::Marked { x, e } => (3, *x, *e, &[]),
        }
    }

    /// Where the rewritten bytes end while this record is the newest: the bytes before are
    /// final, whatever a crash interrupted.
    fn done_end(&self) -> u64 {
        match self {
            Record::Batch { w, .. } => *w,
            Record::MovesDone { x, .. } | Record::Marked { x, .. } => *x,
        }
    }

    /// Where the original bytes start again while this record is the newest: no write of
    /// the rewrite reaches them before a newer record (the byte at x becomes NUL after
    /// MovesDone, so neither final record vouches for it).
    fn rest_from(&self) -> u64 {
        match self {
            Record::Batch { w, len, .. } => w + len,
            Record::MovesDone { x, .. } | Record::Marked { x, .. } => x + 1,
        }
    }
}

/// What a record says about the content of the mbox, so the recovery can prove the file is
/// the one the record was written for: digests of the rewritten bytes just before
/// `done_end` and of the original bytes from `rest_from` to the next block boundary (the
/// header covers the whole blocks after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Check {
    done: [u8; 16],
    rest_head: [u8; 16],
}

/// An open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    plan: Plan,
    /// Identity of the mbox the journal belongs to.
    dev: u64,
    ino: u64,
    /// Whether the mbox already differs from its state before this plan even when no
    /// record was written (a plan made by a recovery).
    dirty: bool,
    /// The longest batch whose source overlaps its destination.
    batch: u64,
    /// Saved bytes one slot can hold.
    capacity: u64,
    /// The mbox's length when the journal was made: nothing shortens the file before the
    /// truncation (step 6), so until then a crashed file is at least this long.
    orig_len: u64,
    /// Length of the blocks of [first_dst, orig_len) digested in `blocks`.
    grid: u64,
    /// Digests of the original bytes, block by block from first_dst.
    blocks: Vec<[u8; 16]>,
    slots_at: u64,
    /// md-5 of the header, mixed into every record so none fits another plan.
    digest: [u8; 16],
    seq: u64,
}

/// What an existing journal file holds.
enum Loaded {
    Missing,
    /// A header that never became durable: no mbox write can have happened.
    Unusable,
    Valid(Box<Journal>, Option<(Record, Check)>),
}

fn put(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn get16(buf: &[u8], at: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[at..at + 16]);
    b
}

/// The block length for digesting `span` bytes with batches of `batch`: an eighth of a
/// batch (so a record's head digest reads little), more when the blocks would be too many.
fn grid_for(batch: u64, span: u64) -> u64 {
    (batch / 8).max(MIN_GRID).max(span.div_ceil(MAX_BLOCKS))
}

/// Digests of [from, to) of `file` in blocks of `grid`.
fn digest_blocks(file: &File, from: u64, to: u64, grid: u64) -> io::Result<Vec<[u8; 16]>> {
    let mut blocks = Vec::with_capacity(to.saturating_sub(from).div_ceil(grid) as usize);
    let mut buf = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + grid).min(to);
        blocks.push(digest_range(file, at, end, &mut buf)?);
        at = end;
    }
    Ok(blocks)
}

/// The digest of bytes [from, to) of `file`: a Fletcher sum (`Fletcher` says exactly what
/// it notices), read in chunks through `buf`. md-5 here about doubled the time of a 1 GB
/// UPDATE that deletes the first message (`bench maildrop delete F first` on 100,000
/// messages: 3.9 to 4.6 s, against 1.8 to 2.6 s with this sum).
fn digest_range(file: &File, from: u64, to: u64, buf: &mut Vec<u8>) -> io::Result<[u8; 16]> {
    /// A multiple of 4, so that each chunk ends on a Fletcher word.
    const CHUNK: u64 = 1 << 20;
    let mut sum = Fletcher::default();
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK);
        buf.resize(n as usize, 0);
        file.read_exact_at(buf, at)?;
        sum.update(buf);
        at += n;
    }
    Ok(sum.finish())
}

impl Journal {
    fn header_bytes(&self) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        for v in [
            self.dev,
            self.ino,
            u64::from(self.dirty),
            self.batch,
            self.capacity,
            self.plan.first_dst,
            self.plan.tail_src,
            self.orig_len,
            self.grid,
            self.plan.kept.len() as u64,
        ] {
            put(&mut h, v);
        }
        for &(src, len) in &self.plan.kept {
            put(&mut h, src);
            put(&mut h, len);
        }
        for block in &self.blocks {
            h.extend_from_slice(block);
        }
        h
    }

    /// Creates the journal for `plan` at `path` (which must not exist), owned like the mbox
    /// and mode 0600, with all its space reserved so that a full disk fails here, before the
    /// mbox is touched; durable (file and directory entry) when this returns. Digests the
    /// bytes of `mbox` from the plan's first byte to its end, which the recovery checks.
    fn create(
        path: &Path,
        plan: Plan,
        mbox: &File,
        dirty: bool,
        batch: u64,
    ) -> Result<Journal, JournalError> {
        plan.check()?;
        let meta = mbox.metadata()?;
        let orig_len = meta.len();
        let grid = grid_for(batch, orig_len.saturating_sub(plan.first_dst));
        let blocks = digest_blocks(mbox, plan.first_dst, orig_len, grid)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        // A batch saves at most its own length, and no batch is longer than what there is
        // to move: a small UPDATE reserves little, so a nearly full disk can still take it.
        // Mail appended after a crash may make more to move; the recovery then takes more,
        // smaller batches.
        let to_move = orig_len.saturating_sub(plan.removed() + plan.first_dst);
        let capacity = if plan.first_gap() >= batch {
            0
        } else {
            batch.min(to_move.max(1).div_ceil(ALIGN) * ALIGN)
        };
        let mut journal = Journal {
            path: path.to_owned(),
            file,
            plan,
            dev: meta.dev(),
            ino: meta.ino(),
            dirty,
            batch,
            capacity,
            orig_len,
            grid,
            blocks,
            slots_at: 0,
            digest: [0; 16],
            seq: 0,
        };
        if let Err(e) = journal.write_header(&meta) {
            let _ = fs::remove_file(path);
            return Err(e.into());
        }
        Ok(journal)
    }

    fn write_header(&mut self, mbox: &fs::Metadata) -> io::Result<()> {
        match_owner(&self.file, mbox)?;
        let mut header = self.header_bytes();
        self.digest = Md5::digest(&header).into();
        header.extend_from_slice(&self.digest);
        self.slots_at = (header.len() as u64).div_ceil(ALIGN) * ALIGN;
        let total = self.slots_at + 2 * (SLOT_HEADER + self.capacity);
        reserve(&self.file, total)?;
        self.file.write_all_at(&header, 0)?;
        fault_point("journal-write")?;
        self.file.sync_all()?;
        sync_dir(&self.path)
    }

    /// The journal at `path`, if there is one that `owners` may have written. Anything else
    /// under its name (another user's file in a world-writable spool, one others may write,
    /// a symlink) is `Untrusted`: whatever its header says, it is not read any further.
    fn load(path: &Path, owners: &Owners) -> Result<Loaded, JournalError> {
        let Some(file) = private::open_existing(path, owners)? else {
            return Ok(Loaded::Missing);
        };
        let mut fixed = [0u8; FIXED_HEADER];
        if file.read_exact_at(&mut fixed[..8], 0).is_ok()
            && OLD_MAGICS.iter().any(|old| &fixed[..8] == *old)
        {
            return Err(JournalError::Mismatch(
                "written by an older pop3d, without the content it expects".into(),
            ));
        }
        if file.read_exact_at(&mut fixed, 0).is_err() || &fixed[..8] != MAGIC {
            return Ok(Loaded::Unusable);
        }
        let count = get(&fixed, FIXED_HEADER - 8);
        let (first_dst, orig_len, grid) = (get(&fixed, 48), get(&fixed, 64), get(&fixed, 72));
        if count > MAX_RANGES || grid == 0 {
            return Ok(Loaded::Unusable);
        }
        let nblocks = orig_len.saturating_sub(first_dst).div_ceil(grid);
        if nblocks > MAX_BLOCKS {
            return Ok(Loaded::Unusable);
        }
        let ranges_at = FIXED_HEADER;
        let blocks_at = ranges_at + 16 * count as usize;
        let len = blocks_at + 16 * nblocks as usize;
        let mut header = vec![0u8; len + 16];
        if file.read_exact_at(&mut header, 0).is_err() {
            return Ok(Loaded::Unusable);
        }
        let digest: [u8; 16] = Md5::digest(&header[..len]).into();
        if header[len..] != digest {
            return Ok(Loaded::Unusable);
        }
        let kept = (0..count as usize)
            .map(|i| {
                let at = ranges_at + 16 * i;
                (get(&header, at), get(&header, at + 8))
            })
            .collect();
        let blocks = (0..nblocks as usize)
            .map(|i| get16(&header, blocks_at + 16 * i))
            .collect();
        let plan = Plan {
            first_dst,
            tail_src: get(&header, 56),
            kept,
        };
        plan.check()?;
        let mut journal = Journal {
            path: path.to_owned(),
            file,
            plan,
            dev: get(&header, 8),
            ino: get(&header, 16),
            dirty: get(&header, 24) != 0,
            batch: get(&header, 32),
            capacity: get(&header, 40),
            orig_len,
            grid,
            blocks,
            slots_at: (header.len() as u64).div_ceil(ALIGN) * ALIGN,
            digest,
            seq: 0,
        };
        if journal.capacity > journal.batch || journal.batch == 0 || journal.batch > MAX_BATCH {
            return Ok(Loaded::Unusable);
        }
        let mut newest: Option<(u64, Record, Check)> = None;
        for slot in 0..2 {
            if let Some((seq, rec, check)) = journal.read_slot(slot)? {
                if newest.as_ref().is_none_or(|(s, _, _)| seq > *s) {
                    newest = Some((seq, rec, check));
                }
            }
        }
        journal.seq = newest.as_ref().map_or(0, |(s, _, _)| *s);
        let newest = newest.map(|(_, rec, check)| (rec, check));
        Ok(Loaded::Valid(Box::new(journal), newest))
    }

    fn slot_at(&self, slot: u64) -> u64 {
        self.slots_at + slot * (SLOT_HEADER + self.capacity)
    }

    /// The check of one slot: md-5 of the plan's digest, the slot header and a checksum of
    /// the saved bytes. The checksum only has to notice a torn write (sectors of an older
    /// record left behind, never crafted), so a fast Fletcher sum replaces md-5 over
    /// megabytes.
    fn slot_digest(&self, head: &[u8], saved: &[u8]) -> [u8; 16] {
        let mut h = Md5::new();
        h.update(self.digest);
        h.update(head);
        h.update(fletcher64(saved));
        h.finalize().into()
    }

    /// A slot's record, or None if it was never written or is torn.
    fn read_slot(&self, slot: u64) -> io::Result<Option<(u64, Record, Check)>> {
        let mut head = [0u8; SLOT_HEADER as usize];
        if self
            .file
            .read_exact_at(&mut head, self.slot_at(slot))
            .is_err()
        {
            return Ok(None);
        }
        let (seq, kind, a, b, saved_len) = (
            get(&head, 0),
            get(&head, 8),
            get(&head, 16),
            get(&head, 24),
            get(&head, 32),
        );
        if seq == 0 || saved_len > self.capacity {
            return Ok(None);
        }
        let mut saved = vec![0u8; saved_len as usize];
        if self
            .file
            .read_exact_at(&mut saved, self.slot_at(slot) + SLOT_HEADER)
            .is_err()
        {
            return Ok(None);
        }
        if head[SLOT_FIELDS..SLOT_FIELDS + 16] != self.slot_digest(&head[..SLOT_FIELDS], &saved) {
            return Ok(None);
        }
        let rec = match kind {
            BATCH_KIND => Record::Batch {
                w: a,
                len: b,
                saved,
            },
            2 => Record::MovesDone { x: a, e: b },
            3 => Record::Marked { x: a, e: b },
            _ => return Ok(None),
        };
        // The slot's own rest_from must be the record's: a record vouches only for the
        // bytes its kind says are untouched.
        if get(&head, 40) != rec.rest_from() {
            return Ok(None);
        }
        let check = Check {
            done: get16(&head, 48),
            rest_head: get16(&head, 64),
        };
        Ok(Some((seq, rec, check)))
    }

    /// The check a record at (done_end, rest_from) carries, read from the mbox as it is now.
    fn check_now(&self, mbox: &File, done_end: u64, rest_from: u64) -> io::Result<Check> {
        let mut buf = Vec::new();
        let from = done_end
            .saturating_sub(DONE_WINDOW)
            .max(self.plan.first_dst);
        let done = digest_range(mbox, from, done_end, &mut buf)?;
        let (head_from, head_to) = self.rest_head_range(rest_from);
        let rest_head = digest_range(mbox, head_from, head_to, &mut buf)?;
        Ok(Check { done, rest_head })
    }

    /// The original bytes from `rest_from` to the next block boundary (or the original
    /// end): what a record digests itself because no block of the header starts there.
    fn rest_head_range(&self, rest_from: u64) -> (u64, u64) {
        let from = rest_from.clamp(self.plan.first_dst, self.orig_len);
        (from, self.block_boundary(from).min(self.orig_len))
    }

    /// The first block boundary at or after `at` (at >= first_dst).
    fn block_boundary(&self, at: u64) -> u64 {
        let first = self.plan.first_dst;
        first + (at - first).div_ceil(self.grid) * self.grid
    }

    /// Proves that `mbox`, `eof` bytes long, is the file this journal was written for, in
    /// a state a crash after `newest` can leave: the bytes the rewrite made final just
    /// before the newest record's position are what it wrote, and every byte from where
    /// the rewrite has not reached to the original end is what it was. The bytes before
    /// first_dst are neither read nor written by the recovery; those of the batch in
    /// flight may be old or new, and its sources are checked with the original bytes.
    /// Err(why) if the file is another.
    fn verify(
        &self,
        mbox: &File,
        eof: u64,
        newest: Option<&(Record, Check)>,
    ) -> Result<(), String> {
        let io = |e: io::Error| format!("cannot read the mbox: {e}");
        let mut buf = Vec::new();
        let Some((rec, check)) = newest else {
            // A plan made by a recovery, before its first record: all still original.
            return self.verify_rest(mbox, eof, self.plan.first_dst, None, &mut buf);
        };
        let done_end = rec.done_end();
        if let Record::Marked { x, e } = rec {
            if eof < *e || byte_at(mbox, *x).map_err(io)? != Some(0) {
                // Truncated already: only the rewritten bytes are left of what it knew.
                if eof < *x {
                    return Err(format!("mbox is {eof} bytes, shorter than the {x} written"));
                }
                return self.verify_done(mbox, done_end, check, &mut buf);
            }
        }
        if eof < self.orig_len.max(done_end) {
            return Err(format!(
                "mbox is {eof} bytes, the journal's was {} and a crash only lengthens it",
                self.orig_len
            ));
        }
        self.verify_done(mbox, done_end, check, &mut buf)?;
        self.verify_rest(mbox, eof, rec.rest_from(), Some(check), &mut buf)
    }

    fn verify_done(
        &self,
        mbox: &File,
        done_end: u64,
        check: &Check,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let from = done_end
            .saturating_sub(DONE_WINDOW)
            .max(self.plan.first_dst);
        let got = digest_range(mbox, from, done_end, buf)
            .map_err(|e| format!("cannot read the mbox: {e}"))?;
        if got != check.done {
            return Err(format!(
                "bytes {from}..{done_end} are not the ones it wrote"
            ));
        }
        Ok(())
    }

    fn verify_rest(
        &self,
        mbox: &File,
        eof: u64,
        rest_from: u64,
        check: Option<&Check>,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        if eof < self.orig_len {
            return Err(format!(
                "mbox is {eof} bytes, shorter than the {} it had",
                self.orig_len
            ));
        }
        let io = |e: io::Error| format!("cannot read the mbox: {e}");
        let (head_from, head_to) = self.rest_head_range(rest_from);
        if let Some(check) = check {
            if digest_range(mbox, head_from, head_to, buf).map_err(io)? != check.rest_head {
                return Err(format!(
                    "bytes {head_from}..{head_to} are not the original ones"
                ));
            }
        } else if head_from != head_to {
            return Err("a plan without records must start on a block".into());
        }
        // head_to is a block boundary or the original end: the blocks from there on.
        let first = (head_to - self.plan.first_dst).div_ceil(self.grid) as usize;
        let mut at = head_to;
        for (i, want) in self.blocks.iter().enumerate().skip(first) {
            let end = (at + self.grid).min(self.orig_len);
            if digest_range(mbox, at, end, buf).map_err(io)? != *want {
                return Err(format!(
                    "bytes {at}..{end} (block {i}) are not the original ones"
                ));
            }
            at = end;
        }
        Ok(())
    }

    /// Writes `rec` into the slot not holding the newest record and makes it durable.
    fn record(&mut self, mbox: &File, rec: &Record) -> io::Result<()> {
        let (kind, a, b, saved) = rec.encode();
        let check = self.check_now(mbox, rec.done_end(), rec.rest_from())?;
        self.record_raw(kind, a, b, saved, rec.rest_from(), &check)
    }

    fn record_raw(
        &mut self,
        kind: u64,
        a: u64,
        b: u64,
        saved: &[u8],
        rest_from: u64,
        check: &Check,
    ) -> io::Result<()> {
        let seq = self.seq + 1;
        let mut head = Vec::with_capacity(SLOT_HEADER as usize);
        for v in [seq, kind, a, b, saved.len() as u64, rest_from] {
            put(&mut head, v);
        }
        head.extend_from_slice(&check.done);
        head.extend_from_slice(&check.rest_head);
        let digest = self.slot_digest(&head, saved);
        head.extend_from_slice(&digest);
        head.resize(SLOT_HEADER as usize, 0);
        let at = self.slot_at(seq % 2);
        self.file.write_all_at(&head, at)?;
        self.file.write_all_at(saved, at + SLOT_HEADER)?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }

    /// Records batch [w, w + len) with its saved prefix.
    fn record_batch(&mut self, mbox: &File, w: u64, len: u64, saved: &[u8]) -> io::Result<()> {
        let check = self.check_now(mbox, w, w + len)?;
        self.record_raw(BATCH_KIND, w, len, saved, w + len, &check)
    }

    /// Removes the journal durably: after this a crash can no longer replay it.
    fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)?;
        sync_dir(&self.path)
    }
}

/// The batch size of a new journal. The fault-injection tests shrink it (environment
/// variable POP3D_FAULT_BATCH) so that small mboxes take many batches.
fn batch_size() -> u64 {
    #[cfg(feature = "fault-injection")]
    if let Some(n) = std::env::var("POP3D_FAULT_BATCH")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        return n.clamp(16, BATCH);
    }
    BATCH
}

/// Reserves `len` bytes for `file`, so that later writes inside them cannot fail for space.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    if fs2::FileExt::allocate(file, len).is_ok() && file.metadata()?.len() >= len {
        return Ok(());
    }
    // posix_fallocate is not everywhere, and its error does not reach errno: writing zeros
    // reserves the space too, and reports a full disk as ENOSPC.
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Where a rewrite begins.
enum Start {
    /// At the plan's first byte.
    Fresh,
    /// Redo the newest batch record, then go on.
    Redo { w: u64, len: u64, saved: Vec<u8> },
    /// All moves done: finish from step 4.
    Finish { x: u64, e: u64 },
}

/// A failed UPDATE rewrite: whether the mbox was touched tells the caller whether the
/// deletions will still be completed by the next open's recovery.
#[derive(Debug)]
pub enum CompactError {
    /// Nothing was changed and no journal is left.
    Untouched(JournalError),
    /// The mbox was partly rewritten; the journal stays and the next open completes it.
    Interrupted(JournalError),
}

/// Rewrites `mbox` (at `path`, open read-write, delivery locks held) as `plan` says,
/// crash-safely, and returns its new length once that is durable. `keepalive` runs between
/// batches (the caller refreshes its dotlock there).
pub fn compact(
    path: &Path,
    mbox: &File,
    plan: Plan,
    keepalive: &dyn Fn(),
) -> Result<u64, CompactError> {
    compact_with_batch(path, mbox, plan, batch_size(), keepalive)
}

fn compact_with_batch(
    path: &Path,
    mbox: &File,
    plan: Plan,
    batch: u64,
    keepalive: &dyn Fn(),
) -> Result<u64, CompactError> {
    let meta = mbox
        .metadata()
        .map_err(|e| CompactError::Untouched(e.into()))?;
    if meta.len() < plan.tail_src {
        return Err(CompactError::Untouched(JournalError::Mismatch(
            "mbox shorter than planned".into(),
        )));
    }
    let jpath = journal_path(path);
    let mut journal =
        Journal::create(&jpath, plan, mbox, false, batch).map_err(CompactError::Untouched)?;
    let mut touched = false;
    let result = fault_point("journal-created")
        .map_err(JournalError::from)
        .and_then(|()| run(mbox, &mut journal, Start::Fresh, keepalive, &mut touched));
    match result {
        Ok((new_len, planned)) => {
            // The mbox is the session's own (the caller holds it open and locked).
            let owners = Owners::of(None, Some(mbox));
            finish(mbox, journal, new_len, planned, &owners, keepalive)
                .map_err(CompactError::Interrupted)
        }
        Err(e) if !touched => {
            // No batch reached the mbox: the journal can go, the mbox is as it was.
            if let Err(rm) = journal.remove() {
                log::error!("cannot remove journal {}: {rm}", jpath.display());
                return Err(CompactError::Interrupted(e));
            }
            Err(CompactError::Untouched(e))
        }
        Err(e) => Err(CompactError::Interrupted(e)),
    }
}

/// Executes the moves from `start`, returning the new length and the file length the moves
/// were planned for, once all moves are durable and recorded (step 3). `touched` becomes
/// true before the first write to the mbox.
fn run(
    mbox: &File,
    journal: &mut Journal,
    start: Start,
    keepalive: &dyn Fn(),
    touched: &mut bool,
) -> Result<(u64, u64), JournalError> {
    let eof = mbox.metadata()?.len();
    if eof < journal.plan.tail_src {
        return Err(JournalError::Mismatch(format!(
            "mbox is {eof} bytes, the journal expects at least {}",
            journal.plan.tail_src
        )));
    }
    let moves = Moves::new(&journal.plan, eof);
    let mut buf = Vec::new();
    let mut w = journal.plan.first_dst;
    match start {
        Start::Fresh => {}
        Start::Finish { x, e } => {
            if x != moves.new_len || e != eof {
                return Err(JournalError::Mismatch("file length changed".into()));
            }
            return Ok((x, e));
        }
        Start::Redo { w: at, len, saved } => {
            if at < w || at + len > moves.new_len || saved.len() as u64 > len {
                return Err(JournalError::Mismatch("batch outside the plan".into()));
            }
            *touched = true;
            write_batch(mbox, &moves, (at, len), &saved, journal.batch, &mut buf)?;
            w = at + len;
        }
    }
    let batch = journal.batch;
    while w < moves.new_len {
        let gap = moves.gap_at(w);
        if gap >= batch {
            // With len <= gap every source lies past the batch's end: nothing the batch
            // overwrites is read by it, so nothing needs saving, and it may be long.
            let len = (moves.new_len - w).min(gap);
            journal.record_batch(mbox, w, len, &[])?;
            fault_point("batch-recorded")?;
            *touched = true;
            write_batch(mbox, &moves, (w, len), &[], batch, &mut buf)?;
            w += len;
        } else {
            let len = (moves.new_len - w).min(journal.capacity);
            fill(mbox, &moves, w, len, &mut buf)?;
            let saved = overlap(&moves, w, len) as usize;
            journal.record_batch(mbox, w, len, &buf[..saved])?;
            fault_point("batch-recorded")?;
            *touched = true;
            // The whole batch is in `buf` already: one write, then make it durable.
            write_at(mbox, &buf, w, w + len / 2)?;
            mbox.sync_data()?;
            w += len;
        }
        fault_point("batch-written")?;
        keepalive();
    }
    journal.record(
        mbox,
        &Record::MovesDone {
            x: moves.new_len,
            e: eof,
        },
    )?;
    fault_point("moves-done")?;
    Ok((moves.new_len, eof))
}

/// Length of the prefix of batch [w, w + len) whose sources lie before w + len, inside the
/// batch's own destination: what the batch's writes could destroy before they are durable.
fn overlap(moves: &Moves, w: u64, len: u64) -> u64 {
    let limit = w + len;
    let mut saved = 0;
    for (src, n) in moves.pieces(w, len) {
        if src >= limit {
            break;
        }
        saved += n.min(limit - src);
    }
    saved
}

/// Reads the new content of destination [w, w + len) from its sources into `buf`.
fn fill(mbox: &File, moves: &Moves, w: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(len as usize, 0);
    let mut off = 0;
    for (src, n) in moves.pieces(w, len) {
        mbox.read_exact_at(&mut buf[off..off + n as usize], src)?;
        off += n as usize;
    }
    Ok(())
}

/// Writes batch [w, w + len) into the mbox and makes it durable: `saved` first, the rest
/// copied from its sources (all past the batch) in chunks of at most `chunk` bytes.
fn write_batch(
    mbox: &File,
    moves: &Moves,
    (w, len): (u64, u64),
    saved: &[u8],
    chunk: u64,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let torn_at = w + len / 2;
    let mut at = w;
    if !saved.is_empty() {
        write_at(mbox, saved, at, torn_at)?;
        at += saved.len() as u64;
    }
    while at < w + len {
        let n = (w + len - at).min(chunk);
        fill(mbox, moves, at, n, buf)?;
        write_at(mbox, buf, at, torn_at)?;
        at += n;
    }
    mbox.sync_data()
}

/// `write_all_at`, with the fault tests' torn batch: when `data` covers `torn_at`, the
/// bytes before it reach the file, then the "batch-torn" fault point may end the process.
fn write_at(file: &File, data: &[u8], at: u64, torn_at: u64) -> io::Result<()> {
    if (at..at + data.len() as u64).contains(&torn_at) {
        let half = (torn_at - at) as usize;
        file.write_all_at(&data[..half], at)?;
        fault_point("batch-torn")?;
        file.write_all_at(&data[half..], torn_at)
    } else {
        file.write_all_at(data, at)
    }
}

/// Steps 4 to 7: mark, truncate, remove the journal. `e` is the file's length that `run`
/// planned the moves for: bytes past it were appended since (by an agent that broke a
/// dotlock it took for stale, say), and are moved onto x as the recovery would (`retail`),
/// never cut by the truncation. Returns the mbox's final length.
fn finish(
    mbox: &File,
    mut journal: Journal,
    x: u64,
    e: u64,
    owners: &Owners,
    keepalive: &dyn Fn(),
) -> Result<u64, JournalError> {
    if mbox.metadata()?.len() > e {
        // The newest record is MovesDone {x, e}: the recovery's own case of new mail.
        return retail(mbox, journal, x, e, owners, keepalive);
    }
    mbox.write_all_at(&[0], x)?;
    mbox.sync_data()?;
    fault_point("marker-written")?;
    journal.record(mbox, &Record::Marked { x, e })?;
    fault_point("marked")?;
    // Once more right before the truncation, which nothing can make conditional on the
    // length: an append from here to ftruncate is the one window left, and it needs an
    // agent ignoring our fcntl lock and flock as well as the dotlock.
    if mbox.metadata()?.len() > e {
        return retail(mbox, journal, x, e, owners, keepalive);
    }
    mbox.set_len(x)?;
    mbox.sync_all()?;
    fault_point("truncated")?;
    journal.remove()?;
    fault_point("journal-removed")?;
    Ok(x)
}

/// Finishes an interrupted UPDATE of `mbox` (at `path`, delivery locks held) if its journal
/// exists and the mbox is provably the file it was written for. Otherwise the mbox is left
/// as it is and the journal is set aside (renamed, never deleted), with an error logged.
/// Ok(true) if there was a journal to deal with. `mbox` is None when the mbox is missing.
/// Only a journal `owners` may have written is read at all (else `JournalError::Untrusted`,
/// and the file is left where it is).
pub fn recover(
    path: &Path,
    mbox: Option<&File>,
    owners: &Owners,
    keepalive: &dyn Fn(),
) -> Result<bool, JournalError> {
    let jpath = journal_path(path);
    match replay(path, &jpath, mbox, owners, keepalive) {
        Err(JournalError::Mismatch(why)) => {
            let aside = set_aside(&jpath)?;
            log::error!(
                "journal {} does not fit {} ({why}): the mbox is left as it is and the \
                 journal set aside as {}",
                jpath.display(),
                path.display(),
                aside.display()
            );
            Ok(true)
        }
        other => other,
    }
}

/// The recovery proper. Every Mismatch it returns is found before its first write to the
/// mbox, so the caller may set the journal aside and leave the mbox as it is.
fn replay(
    path: &Path,
    jpath: &Path,
    mbox: Option<&File>,
    owners: &Owners,
    keepalive: &dyn Fn(),
) -> Result<bool, JournalError> {
    let (journal, newest) = match Journal::load(jpath, owners)? {
        Loaded::Missing => return Ok(false),
        Loaded::Unusable => {
            // Its header never became durable, and every mbox write waits for that.
            log::warn!("removing incomplete journal {}", jpath.display());
            fs::remove_file(jpath)?;
            sync_dir(jpath)?;
            return Ok(true);
        }
        Loaded::Valid(journal, newest) => (*journal, newest),
    };
    let Some(mbox) = mbox else {
        return Err(JournalError::Mismatch("the mbox is missing".into()));
    };
    let meta = mbox.metadata()?;
    if (meta.dev(), meta.ino()) != (journal.dev, journal.ino) {
        return Err(JournalError::Mismatch(
            "the mbox is another file now".into(),
        ));
    }
    let eof = meta.len();
    if newest.is_none() && !journal.dirty {
        // The crash came before the first record: the mbox was never touched.
        journal.remove()?;
        return Ok(true);
    }
    // Same inode is not enough: a backup copied over the mbox or a recreated file keeps or
    // reuses it. The content must be what the newest record says a crash leaves.
    journal
        .verify(mbox, eof, newest.as_ref())
        .map_err(JournalError::Mismatch)?;
    log::warn!(
        "completing interrupted update of {} from journal {}",
        path.display(),
        jpath.display()
    );
    let start = match newest.map(|(rec, _)| rec) {
        None => Start::Fresh,
        Some(Record::Batch { w, len, saved }) => Start::Redo { w, len, saved },
        Some(Record::MovesDone { x, e }) if eof >= e => Start::Finish { x, e },
        Some(Record::Marked { x, e }) if eof >= e && byte_at(mbox, x)? == Some(0) => {
            Start::Finish { x, e }
        }
        Some(Record::Marked { .. }) => {
            // Truncated already: whatever follows was appended after the crash.
            journal.remove()?;
            return Ok(true);
        }
        Some(Record::MovesDone { e, .. }) => {
            return Err(JournalError::Mismatch(format!(
                "mbox is {eof} bytes, shorter than the {e} it had"
            )));
        }
    };
    if let Start::Finish { x, e } = start {
        if eof > e {
            // Mail arrived after the crash, behind the junk between x and e: a new plan
            // moves it onto x.
            return retail(mbox, journal, x, e, owners, keepalive).map(|_| true);
        }
    }
    let mut journal = journal;
    let mut touched = true;
    let (x, planned) = run(mbox, &mut journal, start, keepalive, &mut touched)?;
    finish(mbox, journal, x, planned, owners, keepalive)?;
    Ok(true)
}

/// Renames the journal at `jpath` aside as "<mbox>.pop3d-journal.stale-<unix time>" (a
/// reserved companion name, see `companion::JOURNAL_SET_ASIDE`; with "-N" after the time if
/// that exists: an earlier one is never overwritten, since a hard link
/// never replaces a file) and returns the new name.
fn set_aside(jpath: &Path) -> Result<PathBuf, JournalError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in 0..MAX_ASIDE_NAMES {
        let tag = match n {
            0 => format!("{secs}"),
            n => format!("{secs}-{n}"),
        };
        let aside = companion::journal_set_aside(jpath, &tag);
        match fs::hard_link(jpath, &aside) {
            Ok(()) => {
                fs::remove_file(jpath)?;
                sync_dir(jpath)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(JournalError::Io(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name to set {} aside", jpath.display()),
    )))
}

/// Replaces a finished journal by a fresh plan that moves the tail [e, end of file) onto x,
/// atomically by rename, then runs it; returns the mbox's final length.
fn retail(
    mbox: &File,
    old: Journal,
    x: u64,
    e: u64,
    owners: &Owners,
    keepalive: &dyn Fn(),
) -> Result<u64, JournalError> {
    let plan = Plan {
        first_dst: x,
        kept: Vec::new(),
        tail_src: e,
    };
    let tmp = companion::journal_temp(&old.path);
    // A temporary journal left by a crash is removed, but only pop3d's own: another user's
    // file cannot be removed from a sticky spool, and must not be.
    if private::open_existing(&tmp, owners)?.is_some() {
        fs::remove_file(&tmp)?;
    }
    let mut journal = Journal::create(&tmp, plan, mbox, true, old.batch)?;
    fs::rename(&tmp, &old.path)?;
    sync_dir(&old.path)?;
    journal.path = old.path.clone();
    drop(old);
    let mut touched = true;
    let (x, planned) = run(mbox, &mut journal, Start::Fresh, keepalive, &mut touched)?;
    finish(mbox, journal, x, planned, owners, keepalive)
}

/// The byte at `at`, None past the end.
fn byte_at(file: &File, at: u64) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    match file.read_at(&mut b, at)? {
        0 => Ok(None),
        _ => Ok(Some(b[0])),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::maildrop::crash;
    use crate::maildrop::scan::model::Rng;
    use crate::testing::TempDir;

    fn expected(data: &[u8], plan: &Plan) -> Vec<u8> {
        let mut out = data[..plan.first_dst as usize].to_vec();
        for &(src, len) in &plan.kept {
            out.extend_from_slice(&data[src as usize..(src + len) as usize]);
        }
        out.extend_from_slice(&data[plan.tail_src as usize..]);
        out
    }

    /// A plan over a file of `len` bytes: removed and kept runs from a random first byte to
    /// a random tail start, beginning with a removed run.
    fn random_plan(rng: &mut Rng, len: u64) -> Plan {
        let first_dst = rng.below(len as usize) as u64;
        let tail_src = first_dst + 1 + rng.below((len - first_dst) as usize) as u64;
        let mut kept = Vec::new();
        let mut at = first_dst;
        let mut keep = false;
        while at < tail_src {
            let run = (1 + rng.below(400) as u64).min(tail_src - at);
            if keep {
                kept.push((at, run));
            }
            at += run;
            keep = !keep;
        }
        Plan {
            first_dst,
            kept,
            tail_src,
        }
    }

    fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
    }

    fn mbox_file(dir: &TempDir, data: &[u8]) -> (PathBuf, File) {
        let path = dir.path().join("mbox");
        fs::write(&path, data).expect("write mbox");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open mbox");
        (path, file)
    }

    fn no_keepalive() {}

    /// Appends `bytes` to the file at `path`, as a delivery agent does.
    fn append_to(path: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("append");
    }

    /// A random mbox of 200 to 3,199 bytes in a fresh directory, a random plan over it and a
    /// random batch size, all drawn from `seed`; the generator is returned for further draws.
    struct RandomCase {
        rng: Rng,
        dir: TempDir,
        data: Vec<u8>,
        plan: Plan,
        batch: u64,
        path: PathBuf,
        file: File,
    }

    fn random_case(seed: u64, name: &str) -> RandomCase {
        let mut rng = Rng(seed);
        let dir = TempDir::new(name);
        let len = 200 + rng.below(3000);
        let data = random_bytes(&mut rng, len);
        let plan = random_plan(&mut rng, len as u64);
        let batch = 16 + rng.below(200) as u64;
        let (path, file) = mbox_file(&dir, &data);
        RandomCase {
            rng,
            dir,
            data,
            plan,
            batch,
            path,
            file,
        }
    }

    /// 3,000 random bytes from `seed` in a fresh mbox, and a plan over them that removes
    /// [100, 400) and [1400, 2000): the mbox's path, its file and content, and the plan.
    fn late_append_case(seed: u64, dir: &TempDir) -> (PathBuf, File, Vec<u8>, Plan) {
        let mut rng = Rng(seed);
        let data = random_bytes(&mut rng, 3000);
        let (path, file) = mbox_file(dir, &data);
        let plan = Plan {
            first_dst: 100,
            kept: vec![(400, 1000)],
            tail_src: 2000,
        };
        (path, file, data, plan)
    }

    /// The owners of the files of a test: this process.
    fn here() -> Owners {
        Owners::of(None, None)
    }

    #[test]
    fn moves_map_destinations_to_sources() {
        let plan = Plan {
            first_dst: 10,
            kept: vec![(15, 5), (30, 10)],
            tail_src: 50,
        };
        assert_eq!(plan.removed(), 25);
        let moves = Moves::new(&plan, 60);
        assert_eq!(moves.new_len, 35);
        assert_eq!(moves.pieces(10, 25), [(15, 5), (30, 10), (50, 10)]);
        assert_eq!(moves.pieces(12, 5), [(17, 3), (30, 2)]);
        assert_eq!(moves.gap_at(10), 5);
        assert_eq!(moves.gap_at(15), 15);
        assert_eq!(moves.gap_at(25), 25);
        // Batch [10, 20): sources 15..20 and 30..35; only 15..20 lie before 20.
        assert_eq!(overlap(&moves, 10, 10), 5);
        // Batch [25, 35): sources start at 50, past the batch.
        assert_eq!(overlap(&moves, 25, 10), 0);
    }

    #[test]
    fn plan_that_removes_nothing_is_refused() {
        let plan = Plan {
            first_dst: 10,
            kept: vec![(10, 5)],
            tail_src: 15,
        };
        assert!(matches!(plan.check(), Err(JournalError::Mismatch(_))));
    }

    #[test]
    fn compact_applies_random_plans() {
        let seed = 0xc0ffee_u64;
        let mut rng = Rng(seed);
        for round in 0..150 {
            let dir = TempDir::new("compact");
            let len = 1 + rng.below(4000);
            let data = random_bytes(&mut rng, len);
            let plan = random_plan(&mut rng, len as u64);
            let batch = 16 + rng.below(600) as u64;
            let (path, file) = mbox_file(&dir, &data);
            let want = expected(&data, &plan);
            let new_len = compact_with_batch(&path, &file, plan.clone(), batch, &no_keepalive)
                .unwrap_or_else(|e| panic!("seed {seed:#x} round {round}: {e:?}"));
            assert_eq!(new_len, want.len() as u64);
            assert_eq!(
                fs::read(&path).expect("read"),
                want,
                "seed {seed:#x} round {round}: {plan:?} batch {batch}"
            );
            assert!(!journal_path(&path).exists());
        }
    }

    /// What to do to the files between the crash and the recovery.
    #[derive(Clone, Copy, Debug)]
    enum Damage {
        None,
        /// The batch being written may have reached the mbox in any part: overwrite it.
        ScribbleBatch,
        /// The newest record was torn (its batch never started).
        TearRecord,
    }

    fn crash_then_recover(
        seed: u64,
        point: &str,
        nth: u64,
        damage: Damage,
        append: bool,
        second_crash: Option<(&str, u64)>,
    ) {
        let RandomCase {
            dir: _dir,
            data,
            plan,
            batch,
            path,
            file,
            ..
        } = random_case(seed, "crash");
        let ctx = format!(
            "seed {seed:#x} point {point}#{nth} {damage:?} append {append} {second_crash:?}"
        );

        let crashed = crash::during(point, nth, || {
            compact_with_batch(&path, &file, plan.clone(), batch, &no_keepalive)
        });

        let jpath = journal_path(&path);
        if crashed {
            if let Ok(Loaded::Valid(journal, newest)) = Journal::load(&jpath, &here()) {
                match (damage, newest) {
                    (Damage::ScribbleBatch, Some((Record::Batch { w, len, .. }, _))) => {
                        file.write_all_at(&vec![0xee; len as usize], w)
                            .expect("scribble");
                    }
                    (Damage::TearRecord, Some((Record::Batch { .. }, _))) => {
                        let at = journal.slot_at(journal.seq % 2) + 24;
                        journal.file.write_all_at(&[0xff], at).expect("tear");
                    }
                    _ => {}
                }
            }
        }
        let mut appended = Vec::new();
        if append {
            appended = b"From late@example.org\nappended after the crash\n".to_vec();
            append_to(&path, &appended);
        }
        if let Some((point, nth)) = second_crash {
            let _ = crash::during(point, nth, || {
                recover(&path, Some(&file), &here(), &no_keepalive)
            });
        }
        recover(&path, Some(&file), &here(), &no_keepalive)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(!jpath.exists(), "{ctx}: journal left");

        let got = fs::read(&path).expect("read");
        let mut done = expected(&data, &plan);
        done.extend_from_slice(&appended);
        let mut undone = data.clone();
        undone.extend_from_slice(&appended);
        assert!(
            got == done || got == undone,
            "{ctx}: neither all nor none of the plan applied"
        );
        let applied = got == done;
        // Once a record is durable the recovery must complete the plan.
        if crashed && point != "journal-created" && !matches!(damage, Damage::TearRecord) {
            assert!(applied, "{ctx}: recovery did not complete the plan");
        }
    }

    const POINTS: &[&str] = &[
        "journal-created",
        "batch-recorded",
        "batch-torn",
        "batch-written",
        "moves-done",
        "marker-written",
        "marked",
        "truncated",
        "journal-removed",
    ];

    #[test]
    fn crash_at_every_point_then_recover() {
        let mut n = 0;
        for seed in 1..=6u64 {
            for point in POINTS {
                for nth in [1, 2, 5] {
                    for append in [false, true] {
                        for damage in [Damage::None, Damage::ScribbleBatch] {
                            n += 1;
                            crash_then_recover(seed * 7919, point, nth, damage, append, None);
                        }
                    }
                }
            }
        }
        assert!(n > 0);
    }

    #[test]
    fn torn_record_falls_back_to_the_previous_one() {
        for seed in 1..=10u64 {
            for nth in [1, 2, 3, 7] {
                for append in [false, true] {
                    crash_then_recover(
                        seed,
                        "batch-recorded",
                        nth,
                        Damage::TearRecord,
                        append,
                        None,
                    );
                }
            }
        }
    }

    #[test]
    fn crash_during_recovery_then_recover_again() {
        for seed in 1..=6u64 {
            for point in [
                "batch-recorded",
                "batch-written",
                "moves-done",
                "marker-written",
            ] {
                for second in [
                    "batch-recorded",
                    "batch-torn",
                    "moves-done",
                    "marked",
                    "truncated",
                ] {
                    for append in [false, true] {
                        crash_then_recover(
                            seed * 31,
                            point,
                            2,
                            Damage::ScribbleBatch,
                            append,
                            Some((second, 1)),
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mail_appended_after_a_crash_may_outgrow_the_journal() {
        let mut rng = Rng(99);
        let dir = TempDir::new("outgrow");
        let data = random_bytes(&mut rng, 20_000);
        let (path, file) = mbox_file(&dir, &data);
        // 300 bytes to move past a 50-byte gap: the slots are sized for that, not a batch.
        let plan = Plan {
            first_dst: 19_650,
            kept: Vec::new(),
            tail_src: 19_700,
        };
        let crashed = crash::during("batch-recorded", 1, || {
            compact_with_batch(&path, &file, plan.clone(), 1 << 20, &no_keepalive)
        });
        assert!(crashed);
        match Journal::load(&journal_path(&path), &here()) {
            Ok(Loaded::Valid(j, _)) => assert_eq!(j.capacity, ALIGN),
            _ => panic!("journal expected"),
        }
        let late = random_bytes(&mut rng, 30_000);
        append_to(&path, &late);
        recover(&path, Some(&file), &here(), &no_keepalive).expect("recover");
        let mut want = expected(&data, &plan);
        want.extend_from_slice(&late);
        assert_eq!(fs::read(&path).expect("read"), want);
    }

    /// A dotlock-only agent that broke pop3d's dotlock as stale (pop3d stopped for minutes)
    /// appends after the moves were planned: its mail is moved onto the new end, never cut.
    #[test]
    fn mail_appended_after_the_moves_is_kept() {
        for point in ["moves-done", "marker-written", "marked"] {
            let dir = TempDir::new("late-append");
            let (path, file, data, plan) = late_append_case(7, &dir);
            let late = b"From late@x Mon Jan  1 00:00:00 2024\n\nappended late\n".to_vec();
            let agent = {
                let (path, late) = (path.clone(), late.clone());
                move || append_to(&path, &late)
            };
            let (done, appended) = crash::hooked(point, agent, || {
                compact_with_batch(&path, &file, plan.clone(), 64, &no_keepalive)
            });
            assert!(appended, "{point}: the hook must run");
            done.unwrap_or_else(|e| panic!("{point}: {e:?}"));
            let mut want = expected(&data, &plan);
            want.extend_from_slice(&late);
            let got = fs::read(&path).expect("read");
            assert!(
                got == want,
                "{point}: {} bytes, want {} (the late mail last)",
                got.len(),
                want.len()
            );
            assert!(!journal_path(&path).exists(), "{point}: journal left");
        }
        // The same in a recovery that finishes a crashed rewrite.
        let dir = TempDir::new("late-append-recovery");
        let (path, file, data, plan) = late_append_case(8, &dir);
        let crashed = crash::during("batch-written", 2, || {
            compact_with_batch(&path, &file, plan.clone(), 64, &no_keepalive)
        });
        assert!(crashed, "the simulated crash must fire");
        let late = b"From late@x Mon Jan  1 00:00:00 2024\n\nafter the recovery's moves\n";
        let agent = {
            let path = path.clone();
            move || append_to(&path, late)
        };
        let (done, appended) = crash::hooked("moves-done", agent, || {
            recover(&path, Some(&file), &here(), &no_keepalive)
        });
        assert!(appended, "the hook must run");
        done.expect("recover");
        let mut want = expected(&data, &plan);
        want.extend_from_slice(late);
        assert!(fs::read(&path).expect("read") == want, "late mail cut");
    }

    #[test]
    fn recovery_refuses_a_journal_of_another_file() {
        let dir = TempDir::new("foreign");
        let data = b"0123456789abcdefghij".to_vec();
        let (path, file) = mbox_file(&dir, &data);
        let plan = Plan {
            first_dst: 2,
            kept: vec![(5, 3)],
            tail_src: 10,
        };
        let crashed = crash::during("batch-recorded", 1, || {
            compact_with_batch(&path, &file, plan, 16, &no_keepalive)
        });
        assert!(crashed, "the simulated crash must fire");
        drop(file);
        // Another program replaces the mbox with a new file.
        fs::remove_file(&path).expect("remove");
        let (_, other) = mbox_file(&dir, b"From x\nnew file\n");
        assert!(recover(&path, Some(&other), &here(), &no_keepalive).expect("recover"));
        assert!(!journal_path(&path).exists(), "journal left in place");
        assert_eq!(stale(&dir).len(), 1, "journal must stay for the admin");
        assert_eq!(fs::read(&path).expect("read"), b"From x\nnew file\n");
    }

    /// The journals set aside in `dir`.
    fn stale(dir: &TempDir) -> Vec<PathBuf> {
        fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains(companion::JOURNAL_SET_ASIDE))
            .collect()
    }

    /// What replaces the mbox's content after a crash, given the original content.
    type Replace = dyn Fn(&mut Rng, &[u8]) -> Vec<u8>;

    /// Crashes a random plan at `point`, replaces the mbox's content in place (same inode)
    /// by `replace(original)`, recovers, and checks that the new content is untouched and
    /// the journal set aside. Returns false if the crash did not happen.
    fn crash_then_replace(seed: u64, point: &str, nth: u64, replace: &Replace) -> bool {
        let RandomCase {
            mut rng,
            dir,
            data,
            plan,
            batch,
            path,
            file,
        } = random_case(seed, "replaced");
        let crashed = crash::during(point, nth, || {
            compact_with_batch(&path, &file, plan.clone(), batch, &no_keepalive)
        });
        if !crashed {
            return false;
        }
        let new = replace(&mut rng, &data);
        file.set_len(0).expect("truncate");
        file.write_all_at(&new, 0).expect("rewrite");
        let ctx = format!("seed {seed:#x} point {point}#{nth} plan {plan:?} batch {batch}");
        assert!(recover(&path, Some(&file), &here(), &no_keepalive).expect("recover"));
        assert!(fs::read(&path).expect("read") == new, "{ctx}: mbox changed");
        assert!(
            !journal_path(&path).exists(),
            "{ctx}: journal left in place"
        );
        assert_eq!(stale(&dir).len(), 1, "{ctx}: journal not set aside");
        true
    }

    /// Points after which the mbox may differ from its original.
    const WRITTEN: &[&str] = &[
        "batch-recorded",
        "batch-torn",
        "batch-written",
        "moves-done",
        "marker-written",
        "marked",
    ];

    #[test]
    fn other_content_in_place_is_never_replayed() {
        // Unrelated bytes: as long as the original, shorter, longer.
        let replacements: [&Replace; 3] = [
            &|rng, d| random_bytes(rng, d.len()),
            &|rng, d| random_bytes(rng, d.len() / 2 + 1),
            &|rng, d| random_bytes(rng, d.len() * 2),
        ];
        let mut n = 0;
        for seed in 1..=8u64 {
            for point in WRITTEN {
                for nth in [1, 2, 5] {
                    for replace in replacements {
                        n += usize::from(crash_then_replace(seed * 104_729, point, nth, replace));
                    }
                }
            }
        }
        assert!(n > 100, "only {n} crashes");
    }

    #[test]
    fn older_copy_in_place_is_never_replayed() {
        // A backup: the original with a message more at the start (deleted since), or with
        // its first bytes changed, or the original followed by mail that came later.
        let replacements: [&Replace; 3] = [
            &|_, d| [b"From old\nbye\n\n".as_slice(), d].concat(),
            &|_, d| [b"X".as_slice(), &d[1..]].concat(),
            &|rng, d| [d, &random_bytes(rng, 4000)].concat(),
        ];
        // A rewrite visits the final points once, so only their first visit can crash; a
        // second or third batch exists only in plans with that many.
        let points: [(&str, &[u64]); 4] = [
            ("batch-written", &[2, 3]),
            ("moves-done", &[1]),
            ("marker-written", &[1]),
            ("marked", &[1]),
        ];
        for (point, nths) in points {
            let mut n = 0;
            for seed in 1..=8u64 {
                for &nth in nths {
                    for replace in replacements {
                        n += usize::from(crash_then_replace(seed * 7, point, nth, replace));
                    }
                }
            }
            assert!(n >= 20, "{point}: only {n} crashes");
        }
    }

    #[test]
    fn a_change_far_past_the_batch_in_flight_is_found() {
        // The original with its last byte changed: while a batch record is the newest,
        // the last byte lies in the untouched region (the new end is before it), which is
        // checked to the original end, not just next to the batch.
        let change_last: &Replace = &|_, d| {
            let mut v = d.to_vec();
            if let Some(b) = v.last_mut() {
                *b ^= 1;
            }
            v
        };
        let mut n = 0;
        for seed in 1..=16u64 {
            for nth in [1, 2, 4] {
                n += usize::from(crash_then_replace(
                    seed * 3,
                    "batch-recorded",
                    nth,
                    change_last,
                ));
            }
        }
        assert!(n > 20, "only {n} crashes");
    }

    #[test]
    fn the_original_restored_after_rewriting_began_is_left_alone() {
        // Once a batch before the newest record is durable, the file differs from its
        // original: the original copied back must not be taken for the half-rewritten file.
        // (While the first batch is in flight the original is a state the crash can leave,
        // and finishing the plan on it is right.)
        let mut n = 0;
        for seed in 1..=24u64 {
            for nth in [2, 3] {
                let restore: &Replace = &|_, d| d.to_vec();
                n += usize::from(crash_then_replace(seed * 13, "batch-written", nth, restore));
            }
        }
        assert!(n > 20, "only {n} crashes");
    }

    #[test]
    fn set_aside_never_overwrites_an_earlier_one() {
        let dir = TempDir::new("aside");
        let jpath = journal_path(&dir.path().join("mbox"));
        for round in 0..3u8 {
            fs::write(&jpath, [round]).expect("write");
            let aside = set_aside(&jpath).expect("set aside");
            assert!(!jpath.exists());
            assert!(aside
                .to_string_lossy()
                .contains(companion::JOURNAL_SET_ASIDE));
            // No user's mbox can be a set-aside journal.
            let name = aside.file_name().and_then(|n| n.to_str()).expect("name");
            assert!(!crate::auth::valid_user_name(name), "{name}");
            assert_eq!(fs::read(&aside).expect("read"), [round]);
        }
        assert_eq!(stale(&dir).len(), 3);
    }

    #[test]
    fn journal_of_an_older_pop3d_is_set_aside() {
        let dir = TempDir::new("oldjournal");
        let data = b"From a\nhello\n".to_vec();
        let (path, file) = mbox_file(&dir, &data);
        for (n, old) in OLD_MAGICS.iter().enumerate() {
            let mut journal = old.to_vec();
            journal.extend_from_slice(b" and a plan");
            fs::write(journal_path(&path), journal).expect("write");
            assert!(recover(&path, Some(&file), &here(), &no_keepalive).expect("recover"));
            assert_eq!(stale(&dir).len(), n + 1);
            assert_eq!(fs::read(&path).expect("read"), data);
        }
    }

    #[test]
    fn incomplete_journal_is_removed_and_mbox_untouched() {
        let dir = TempDir::new("incomplete");
        let data = b"From a\nhello\n".to_vec();
        let (path, file) = mbox_file(&dir, &data);
        fs::write(journal_path(&path), b"P3DJRNL1 torn").expect("write");
        assert!(recover(&path, Some(&file), &here(), &no_keepalive).expect("recover"));
        assert!(!journal_path(&path).exists());
        assert_eq!(fs::read(&path).expect("read"), data);
    }

    #[test]
    fn no_journal_means_nothing_to_recover() {
        let dir = TempDir::new("nojournal");
        let (path, file) = mbox_file(&dir, b"From a\n");
        assert!(!recover(&path, Some(&file), &here(), &no_keepalive).expect("recover"));
    }

    #[test]
    fn journal_is_private_to_its_owner() {
        let dir = TempDir::new("private");
        let data = random_bytes(&mut Rng(5), 500);
        let (path, file) = mbox_file(&dir, &data);
        let plan = Plan {
            first_dst: 0,
            kept: vec![(10, 400)],
            tail_src: 450,
        };
        let crashed = crash::during("batch-recorded", 1, || {
            compact_with_batch(&path, &file, plan, 64, &no_keepalive)
        });
        assert!(crashed, "the simulated crash must fire");
        let meta = fs::metadata(journal_path(&path)).expect("journal");
        assert_eq!(meta.mode() & 0o777, 0o600);
        let mbox = fs::metadata(&path).expect("mbox");
        assert_eq!((meta.uid(), meta.gid()), (mbox.uid(), mbox.gid()));
        recover(&path, Some(&file), &here(), &no_keepalive).expect("recover");
    }

    /// Whether this process may give files away (root): the tests of planted files need it.
    fn privileged() -> bool {
        crate::sys::effective_uid() == 0
    }

    /// The uid of nobody, another user than the mbox's owner.
    const NOBODY: u32 = 65534;

    /// A journal as another user can forge it from `stat` alone: a dirty plan with nothing
    /// kept and no original bytes to check, which replays as "truncate the mbox to 0".
    fn forge_journal(path: &Path, mbox: &File) {
        let meta = mbox.metadata().expect("stat");
        let forged = Journal {
            path: journal_path(path),
            file: mbox.try_clone().expect("clone"),
            plan: Plan {
                first_dst: 0,
                kept: Vec::new(),
                tail_src: meta.len(),
            },
            dev: meta.dev(),
            ino: meta.ino(),
            dirty: true,
            batch: 4096,
            capacity: 0,
            orig_len: 0,
            grid: MIN_GRID,
            blocks: Vec::new(),
            slots_at: 0,
            digest: [0; 16],
            seq: 0,
        };
        let mut header = forged.header_bytes();
        let digest: [u8; 16] = Md5::digest(&header).into();
        header.extend_from_slice(&digest);
        fs::write(journal_path(path), header).expect("plant journal");
    }

    /// Recovers with a planted journal and checks that it was refused, not applied, and left
    /// where it was.
    fn planted_journal_is_refused(label: &str, plant: &dyn Fn(&Path, &File)) {
        let dir = TempDir::new(label);
        let data = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: mine\n\nprivate\n".to_vec();
        let (path, file) = mbox_file(&dir, &data);
        plant(&path, &file);
        let planted = fs::symlink_metadata(journal_path(&path)).expect("planted");
        let got = recover(&path, Some(&file), &here(), &no_keepalive);
        assert!(
            matches!(got, Err(JournalError::Untrusted(_))),
            "{label}: {got:?}"
        );
        assert_eq!(
            fs::read(&path).expect("read"),
            data,
            "{label}: mbox changed"
        );
        let after = fs::symlink_metadata(journal_path(&path)).expect("journal left in place");
        assert_eq!(after.ino(), planted.ino(), "{label}: journal replaced");
        assert!(stale(&dir).is_empty(), "{label}: journal set aside");
    }

    #[test]
    fn a_journal_of_another_user_is_never_replayed() {
        if !privileged() {
            crate::testing::skip("giving a file to another user needs root");
            return;
        }
        planted_journal_is_refused("planted-other", &|path, file| {
            forge_journal(path, file);
            std::os::unix::fs::chown(journal_path(path), Some(NOBODY), Some(NOBODY))
                .expect("chown");
        });
    }

    #[test]
    fn a_journal_others_may_write_is_never_replayed() {
        planted_journal_is_refused("planted-writable", &|path, file| {
            forge_journal(path, file);
            fs::set_permissions(journal_path(path), fs::Permissions::from_mode(0o620))
                .expect("chmod");
        });
    }

    #[test]
    fn a_symlinked_journal_is_never_replayed() {
        planted_journal_is_refused("planted-symlink", &|path, file| {
            forge_journal(path, file);
            let target = path.with_file_name("elsewhere");
            fs::rename(journal_path(path), &target).expect("move");
            std::os::unix::fs::symlink(&target, journal_path(path)).expect("symlink");
        });
    }
}
