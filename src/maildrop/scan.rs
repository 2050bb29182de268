//! mbox scanning: message boundaries, octets as sent, unique ids. No locks, no writes.
//!
//! The scanner streams any reader through one large buffer and keeps per-message metadata
//! only, so memory grows with the number of messages, never with their bytes. Message
//! boundaries follow DESIGN.md "mbox rules": a message starts at a line that begins "From "
//! at the start of the file or after a LF, and only if that line parses as a separator
//! (`from_line::is_separator`: a sender and a whole date, as delivery agents write them); no
//! empty line is demanded before it, but one empty line just before it (or at the end of
//! the file) is the separator's, not content. Any other line, "From here on, ..." included,
//! is content. Octets follow the session's dot-writer (every line ends in CRLF on the wire).
//!
//! Unique ids: the scan hashes only the "From " line, the header block and the size, never a
//! body. `distinguish`, which the maildrop runs with the file at hand, then reads the bodies
//! of two kinds of messages only: those whose digests collide in this scan, and those whose
//! digest D is in the owners record (uid_owners.rs, the companion "MBOX.pop3d-uidl"). For
//! each such D the message whose body the record names keeps the plain id D, and every
//! other one gets md-5 of D and its body digest; "-N" suffixes in file order tell apart only
//! byte-identical copies. A D that collides and is not recorded is owned by the first
//! message in file order (the one a client most likely fetched as D while it was alone), and
//! recorded; UPDATE records the D of every deleted message it had not recorded as owned by
//! nobody (before it rewrites the mbox; put back if it removed nothing). So no id ever passes to a message with another body: not after either of two
//! colliding messages is deleted (each keeps exactly its id), and not to mail delivered
//! after a deleted message with the same headers, even when no session saw both.
//!
//! No stateless rule can do this, so the record is the state; it holds ids only. When it is
//! lost (removed, damaged, torn: it reads as empty and is logged) the stateless rule returns:
//! a message that is not the first of its collision changes its id once (a re-download), and
//! a message alone takes D, which a client that fetched a deleted message as D within the
//! record's retention would take for that one; unavoidable without the record. An entry
//! leaves the record 30 days after its D was last in the mbox, or, beyond 10,000 entries,
//! oldest first: that same risk then returns for that D. After an upgrade from a pop3d
//! without the record, the first message of each collision present takes the plain id D
//! (fetched once more).
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use md5::{Digest, Md5};

use super::from_line::{is_separator, FROM, MAX_SEPARATOR_LINE};
use super::uid_owners::{Claims, Owner, Owners};
use crate::bytes::find_byte;

/// Read buffer of the scanner: large enough that a 1 GB mbox takes about a thousand reads,
/// small enough to stay well inside the server's memory budget.
pub const SCAN_BUFFER: usize = 1 << 20;

/// Smallest buffer the scanner starts with; it grows when a line that begins "From " does not
/// fit, so that the whole line can be parsed (up to `MAX_SEPARATOR_LINE`).
const MIN_SCAN_BUFFER: usize = 16;

/// Most messages one maildrop may hold: bounds the scan's memory (about 64 bytes of metadata
/// per message, so 64 MB at the limit) and keeps message numbers far below u32::MAX.
pub const MAX_MESSAGES: usize = 1_000_000;

/// Most bytes of "From " line and header lines fed to md-5 per message: a message whose
/// header block never ends (no empty line) must not make the scan hash its body.
pub const MAX_HASHED_HEADER: usize = 64 * 1024;

/// Bytes of header text collected before they go to md-5 as one batch: large enough that
/// handing a batch to the hashing thread costs little, small enough to stay in cache.
const HASH_BATCH: usize = 256 * 1024;

/// Batches queued for the hashing thread: bounds the memory when hashing lags behind.
const HASH_QUEUE: usize = 4;

/// A message's unique id (UIDL): the md-5 digest of its "From " line, header block and size;
/// for a message whose digest another body owns (see `distinguish`), a digest of that
/// digest and its body instead; then a counter that tells byte-identical messages apart in
/// file order.
///
/// Displayed as 32 lowercase hex digits, then "-N" for the N-th later copy of an identical
/// message, so it is 32 to 43 characters in 0x21..0x7E; or, under a `--uidl` list with another
/// server's scheme, as the id that list chose (any RFC 1939 unique id). The digest stays
/// either way: it is what a re-scan checks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uid {
    digest: [u8; 16],
    label: Label,
}

/// What a `Uid` shows besides its digest. One enum rather than a further field, so a
/// `MessageInfo` is no larger than before `--uidl` (40 bytes of id a message): the default
/// scheme costs no memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Label {
    /// pop3d's own id.
    Own {
        /// md-5 of `digest` and the body digest, set when the message does not own the
        /// plain id `digest` (another body shares or shared it: see `distinguish`).
        distinct: Option<[u8; 16]>,
        dup: u32,
    },
    /// The id a `--uidl` list chose (`maildrop::ids`).
    Chosen(Box<str>),
}

impl Uid {
    fn own(digest: [u8; 16], distinct: Option<[u8; 16]>, dup: u32) -> Uid {
        Uid {
            digest,
            label: Label::Own { distinct, dup },
        }
    }

    /// The md-5 digest of the "From " line, header block and size (never of the body): what
    /// a re-scan of the message alone finds again.
    pub fn digest(&self) -> &[u8; 16] {
        &self.digest
    }

    /// How many earlier messages of the same scan have the same id without the counter (0
    /// for an id a `--uidl` list chose).
    pub fn dup(&self) -> u32 {
        match self.label {
            Label::Own { dup, .. } => dup,
            Label::Chosen(_) => 0,
        }
    }

    /// Makes `id` the id shown, in place of pop3d's own: the caller (`maildrop::ids`, from
    /// `uidl::assign`) guarantees it is a valid unique id no other message has.
    pub fn choose(&mut self, id: String) {
        self.label = Label::Chosen(id.into_boxed_str());
    }

    /// The id a `--uidl` list chose, if one did (what UPDATE retires when the message goes).
    pub fn chosen(&self) -> Option<&str> {
        match &self.label {
            Label::Chosen(id) => Some(id),
            Label::Own { .. } => None,
        }
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (distinct, dup) = match &self.label {
            Label::Chosen(id) => return f.write_str(id),
            Label::Own { distinct, dup } => (distinct, *dup),
        };
        for byte in distinct.unwrap_or(self.digest) {
            write!(f, "{byte:02x}")?;
        }
        if dup > 0 {
            write!(f, "-{dup}")?;
        }
        Ok(())
    }
}

/// Where one message lies in the mbox and what the session reports about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// Offset of the message's "From " line.
    pub record_start: u64,
    /// First byte after that line's LF.
    pub content_start: u64,
    /// Bytes of message content on disk, excluding the separator blank line.
    pub content_len: u64,
    /// Size as sent on the wire: every bare LF becomes CRLF and a last line without a line
    /// break gets one.
    pub octets: u64,
    /// The unique id (UIDL).
    pub uid: Uid,
}

/// The result of scanning one mbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The messages in file order.
    pub messages: Vec<MessageInfo>,
    /// How many bytes were scanned: the file's length at scan time.
    pub scanned_len: u64,
    /// Bytes before the first "From " line: not a message, kept untouched by UPDATE.
    pub preamble_len: u64,
}

/// Why a scan failed.
#[derive(Debug)]
pub enum ScanError {
    /// Reading the mbox failed.
    Io(io::Error),
    /// The mbox holds more than `MAX_MESSAGES` messages.
    TooManyMessages { messages: usize },
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Io(e) => write!(f, "cannot read mbox: {e}"),
            ScanError::TooManyMessages { messages } => {
                write!(f, "mbox holds more than {messages} messages")
            }
        }
    }
}

impl Error for ScanError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ScanError::Io(e) => Some(e),
            ScanError::TooManyMessages { .. } => None,
        }
    }
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// Scans an mbox from its first byte to the end of `reader`.
///
/// A message starts at a line beginning "From " at the start of the input or after a LF; the
/// "From " line is not content, and the one empty line ("\n" or "\r\n") just before the next
/// "From " line or at the end of the input is the separator, not content. Bytes before the
/// first "From " line belong to no message (`Scan::preamble_len`).
///
/// md-5 runs on a second thread, fed with the header text in batches, so that hashing
/// overlaps reading and counting.
pub fn scan<R: io::BufRead>(reader: R) -> Result<Scan, ScanError> {
    thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(HASH_QUEUE);
        let hasher = thread::Builder::new()
            .name("mbox-md5".into())
            .spawn_scoped(scope, move || hash_batches(rx));
        match hasher {
            Ok(hasher) => {
                let scanned = run_scan(reader, SCAN_BUFFER, Hashes::threaded(tx));
                let digests = hasher
                    .join()
                    .map_err(|_| io::Error::other("md-5 thread failed"))?;
                scanned.and_then(|(partial, _)| partial.with_digests(digests))
            }
            // No thread to be had: hash inline, just slower.
            Err(_) => scan_with_buffer(reader, SCAN_BUFFER),
        }
    })
}

/// Below this size an mbox is scanned on the calling thread with a buffer no larger than
/// the file: a second thread and a 1 MiB buffer cost more than they save on a small maildrop,
/// and a buffer freed after every login would stay resident in each thread's heap.
pub const THREADED_SCAN_MIN: u64 = 4 << 20;

/// Scans `octets` bytes of mbox (its size when opened): small ones on this thread with a
/// buffer sized to the file, large ones with `scan`.
pub fn scan_sized<R: io::BufRead>(reader: R, octets: u64) -> Result<Scan, ScanError> {
    if octets >= THREADED_SCAN_MIN {
        return scan(reader);
    }
    // +1 so the read that finds the end of the file needs no second buffer fill.
    let buffer = usize::try_from(octets + 1).unwrap_or(SCAN_BUFFER);
    scan_with_buffer(reader, buffer.clamp(4096, SCAN_BUFFER))
}

/// `scan` on one thread, with a read buffer of `buffer_len` bytes (at least 16): tests use
/// tiny buffers to put every boundary case across a refill, and the re-scan of one record
/// uses a small one.
pub fn scan_with_buffer<R: Read>(reader: R, buffer_len: usize) -> Result<Scan, ScanError> {
    let (partial, digests) = run_scan(reader, buffer_len, Hashes::inline())?;
    partial.with_digests(digests)
}

/// Tells apart the messages whose digests collide (same "From " line, header block and
/// size), and the messages whose digest `owners` records: `body` gives the body digest of a
/// message (`body_digest` of its content, read by whoever holds the file). The scan itself
/// never reads a body; this reads only the bodies of those messages, so with no collision
/// and an empty record it costs nothing.
///
/// For each such digest D, the message whose body is the recorded owner's keeps the plain
/// id D; every other one gets md-5 of D and its body digest. When D collides and is not
/// recorded, the first message in file order owns D: it is the one a client most likely
/// fetched as D while it was alone. Those new owners come back as (D, body digest), for the
/// caller to record once the scan is the one kept. "-N" suffixes in file order tell apart
/// only byte-identical copies (a later copy inheriting an id then names the same bytes).
pub fn distinguish<E>(
    messages: &mut [MessageInfo],
    owners: &Owners,
    mut body: impl FnMut(&MessageInfo) -> Result<[u8; 16], E>,
) -> Result<Claims, E> {
    let mut claims = Vec::new();
    let mut chosen: HashSet<[u8; 16]> = messages
        .iter()
        .filter(|m| m.uid.dup() > 0)
        .map(|m| m.uid.digest)
        .collect();
    if !owners.is_empty() {
        chosen.extend(
            messages
                .iter()
                .map(|m| m.uid.digest)
                .filter(|d| owners.owner(d).is_some()),
        );
    }
    if chosen.is_empty() {
        return Ok(claims);
    }
    let mut groups: HashMap<[u8; 16], Vec<usize>> = HashMap::new();
    for (index, m) in messages.iter().enumerate() {
        if chosen.contains(&m.uid.digest) {
            groups.entry(m.uid.digest).or_default().push(index);
        }
    }
    for (digest, members) in groups {
        let bodies = members
            .iter()
            .map(|&i| body(&messages[i]))
            .collect::<Result<Vec<_>, E>>()?;
        let owner = match owners.owner(&digest) {
            Some(owner) => owner,
            None => {
                // Not recorded, so in the group because it collides: the first one owns D.
                claims.push((digest, bodies[0]));
                Owner::Body(bodies[0])
            }
        };
        let mut seen: HashMap<[u8; 16], u32> = HashMap::new();
        for (&index, body) in members.iter().zip(&bodies) {
            let distinct = if owner == Owner::Body(*body) {
                None
            } else {
                let mut h = Md5::new();
                h.update(digest);
                h.update(body);
                Some(h.finalize().into())
            };
            let dup = seen.entry(*body).or_insert(0);
            messages[index].uid = Uid::own(digest, distinct, *dup);
            *dup += 1;
        }
    }
    Ok(claims)
}

/// Read size of `body_digest`.
const BODY_BLOCK: usize = 64 * 1024;

/// The md-5 of a message's content as it reads on the wire: every line without its line
/// break (LF or CRLF) and then one LF, so a last line hashes the same once a later append
/// ends it, as in the header digest.
pub fn body_digest<R: Read>(mut reader: R) -> io::Result<[u8; 16]> {
    let mut h = Md5::new();
    let mut buf = vec![0u8; BODY_BLOCK];
    // A CR at the end of a read, held back until the next byte shows whether a LF follows.
    let mut held_cr = false;
    let mut last = b'\n';
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for seg in buf[..n].split_inclusive(|&b| b == b'\n') {
            if held_cr && seg[0] != b'\n' {
                h.update(b"\r");
            }
            held_cr = false;
            let text = seg.strip_suffix(b"\n");
            match text {
                Some(t) => {
                    h.update(t.strip_suffix(b"\r").unwrap_or(t));
                    h.update(b"\n");
                }
                None => match seg.strip_suffix(b"\r") {
                    Some(t) => {
                        h.update(t);
                        held_cr = true;
                    }
                    None => h.update(seg),
                },
            }
            last = seg[seg.len() - 1];
        }
    }
    if held_cr {
        h.update(b"\r");
    }
    if last != b'\n' {
        h.update(b"\n");
    }
    Ok(h.finalize().into())
}

/// A scan whose digests are still being computed.
struct Partial {
    messages: Vec<MessageInfo>,
    scanned_len: u64,
    preamble_len: u64,
}

impl Partial {
    /// Fills in the unique ids: the digests, and in file order the counter of earlier
    /// messages with the same digest.
    fn with_digests(mut self, digests: Vec<[u8; 16]>) -> Result<Scan, ScanError> {
        if digests.len() != self.messages.len() {
            return Err(ScanError::Io(io::Error::other("md-5 thread stopped early")));
        }
        let mut seen: HashMap<[u8; 16], u32> = HashMap::with_capacity(self.messages.len());
        for (info, digest) in self.messages.iter_mut().zip(digests) {
            let dup = seen.entry(digest).or_insert(0);
            info.uid = Uid::own(digest, None, *dup);
            *dup += 1;
        }
        Ok(Scan {
            messages: self.messages,
            scanned_len: self.scanned_len,
            preamble_len: self.preamble_len,
        })
    }
}

fn run_scan<R: Read>(
    mut reader: R,
    buffer_len: usize,
    hashes: Hashes,
) -> Result<(Partial, Vec<[u8; 16]>), ScanError> {
    let mut buf = vec![0u8; buffer_len.max(MIN_SCAN_BUFFER)];
    let mut scanner = Scanner::new(hashes);
    let mut filled = 0;
    let mut base = 0u64;
    let mut eof = false;
    loop {
        while filled < buf.len() && !eof {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScanError::Io(e)),
            }
        }
        let consumed = scanner.process(&buf[..filled], base, eof)?;
        base += consumed as u64;
        if eof && consumed == filled {
            break;
        }
        // Only an undecided line start is carried over: at most a separator line, so the
        // buffer grows (once, to about twice `MAX_SEPARATOR_LINE`) only when it is smaller.
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    scanner.finish(base)
}

/// One batch of messages to hash: their texts back to back, and where each one ends.
struct HashBatch {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl HashBatch {
    fn digests(&self, out: &mut Vec<[u8; 16]>) {
        let mut start = 0;
        for &end in &self.ends {
            out.push(Md5::digest(&self.text[start..end]).into());
            start = end;
        }
    }
}

/// The hashing thread: digests of all batches, in order.
fn hash_batches(rx: Receiver<HashBatch>) -> Vec<[u8; 16]> {
    let mut out = Vec::new();
    for batch in rx {
        batch.digests(&mut out);
    }
    out
}

/// Collects each message's hashed text (normalized From line and header lines, capped,
/// then its octets) and has it hashed inline or by the hashing thread.
struct Hashes {
    batch: HashBatch,
    /// Where the current message's text starts in the batch.
    start: usize,
    tx: Option<SyncSender<HashBatch>>,
    /// Inline digests; with a thread, a closed channel is the only failure and shows as a
    /// short digest list.
    digests: Vec<[u8; 16]>,
}

impl Hashes {
    fn inline() -> Self {
        Hashes {
            batch: HashBatch {
                text: Vec::new(),
                ends: Vec::new(),
            },
            start: 0,
            tx: None,
            digests: Vec::new(),
        }
    }

    fn threaded(tx: SyncSender<HashBatch>) -> Self {
        Hashes {
            tx: Some(tx),
            ..Hashes::inline()
        }
    }

    /// Bytes of the current message's text so far.
    fn len(&self) -> usize {
        self.batch.text.len() - self.start
    }

    /// Adds header text of the current message, within the per-message limit.
    fn feed(&mut self, bytes: &[u8]) {
        let room = MAX_HASHED_HEADER - self.len();
        self.batch
            .text
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Adds one complete line as it reads on the wire: without its line break (LF or CRLF),
    /// then one LF, so a last line hashes the same once a later append ends it.
    fn feed_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.feed(line);
        self.feed(b"\n");
    }

    fn full(&self) -> bool {
        self.len() >= MAX_HASHED_HEADER
    }

    /// Ends the current message's text with its size, and starts the next one.
    fn end(&mut self, octets: u64) {
        self.batch.text.extend_from_slice(&octets.to_le_bytes());
        self.batch.ends.push(self.batch.text.len());
        if self.batch.text.len() >= HASH_BATCH {
            self.flush();
        }
        self.start = self.batch.text.len();
    }

    fn flush(&mut self) {
        let batch = std::mem::replace(
            &mut self.batch,
            HashBatch {
                text: Vec::with_capacity(HASH_BATCH + MAX_HASHED_HEADER),
                ends: Vec::new(),
            },
        );
        match &self.tx {
            Some(tx) => {
                // A send fails only if the thread is gone; the digest count tells.
                let _ = tx.send(batch);
            }
            None => batch.digests(&mut self.digests),
        }
    }

    fn finish(mut self) -> Vec<[u8; 16]> {
        self.flush();
        self.digests
    }
}

/// Where the scanner is inside the current line structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the first "From " line.
    Preamble,
    /// Inside a "From " line.
    FromLine,
    /// Inside a message's header block: lines are hashed.
    Header,
    /// Past the header block (or past the hashing limit): bytes are only counted.
    Body,
}

/// The message being scanned.
struct Current {
    record_start: u64,
    content_start: u64,
    /// Bytes of content plus separator seen so far.
    region_len: u64,
    /// LFs in the region not preceded by CR (the From line's LF precedes the first byte).
    bare_lf: u64,
    /// The last three bytes of the region, most recent last; before the region has three
    /// bytes, the missing ones read as LF, standing for the From line's.
    tail: [u8; 3],
    /// Region offset of the empty line that ended the header block: hashed only once the
    /// message ends, since it is not content if it turns out to be the separator.
    header_end: Option<u64>,
}

impl Current {
    fn new(record_start: u64) -> Self {
        Current {
            record_start,
            content_start: record_start,
            region_len: 0,
            bare_lf: 0,
            tail: [b'\n'; 3],
            header_end: None,
        }
    }

    /// Counts the region bytes in `seg`, which directly follow those counted before.
    fn account(&mut self, seg: &[u8]) {
        let bare = count_bare_lf(self.tail[2], seg);
        self.advance(seg, bare);
    }

    /// Adds `seg`, holding `bare` bare LFs, to the region.
    fn advance(&mut self, seg: &[u8], bare: u64) {
        let Some(&last) = seg.last() else {
            return;
        };
        self.bare_lf += bare;
        self.tail = match seg.len() {
            1 => [self.tail[1], self.tail[2], last],
            2 => [self.tail[2], seg[0], last],
            n => [seg[n - 3], seg[n - 2], last],
        };
        self.region_len += seg.len() as u64;
    }

    /// Ends the message at the end of its region: its layout, and its hashed text ended.
    fn finish(self, hashes: &mut Hashes) -> MessageInfo {
        let len = self.region_len;
        let t = self.tail;
        // The region's last line is empty when it is "\n" or "\r\n" and starts the region
        // or follows a LF.
        let sep = if len >= 1 && t[2] == b'\n' && (len == 1 || t[1] == b'\n') {
            1
        } else if len >= 2 && t[2] == b'\n' && t[1] == b'\r' && (len == 2 || t[0] == b'\n') {
            2
        } else {
            0
        };
        let content_len = len - sep;
        let mut octets = content_len + self.bare_lf;
        if sep == 1 {
            // The separator's LF followed a LF, so it was counted as bare.
            octets -= 1;
        }
        if sep == 0 && content_len > 0 && t[2] != b'\n' {
            octets += 2;
        }
        if let Some(at) = self.header_end {
            if sep == 0 || at + sep != len {
                hashes.feed(b"\n");
            }
        }
        hashes.end(octets);
        MessageInfo {
            record_start: self.record_start,
            content_start: self.content_start,
            content_len,
            octets,
            uid: Uid::own([0; 16], None, 0),
        }
    }
}

/// The streaming state: everything the scan keeps between buffer refills.
struct Scanner {
    phase: Phase,
    /// Whether the next unprocessed byte begins a line.
    at_line_start: bool,
    current: Option<Current>,
    /// The From line or header line being collected (at most `MAX_HASHED_HEADER` bytes).
    line: Vec<u8>,
    /// True length of that line, which may exceed what `line` holds.
    line_len: usize,
    messages: Vec<MessageInfo>,
    hashes: Hashes,
    preamble_len: u64,
}

impl Scanner {
    fn new(hashes: Hashes) -> Self {
        Scanner {
            phase: Phase::Preamble,
            at_line_start: true,
            current: None,
            line: Vec::new(),
            line_len: 0,
            messages: Vec::new(),
            hashes,
            preamble_len: 0,
        }
    }

    /// Processes `buf`, whose first byte is at file offset `base`. Returns how many bytes it
    /// consumed: all of them, except when `buf` ends inside a line that begins "From " (or a
    /// prefix of it) and more input may follow: that line, shorter than
    /// `MAX_SEPARATOR_LINE`, is left for the next call, which sees it whole.
    fn process(&mut self, buf: &[u8], base: u64, eof: bool) -> Result<usize, ScanError> {
        let mut pos = 0;
        while pos < buf.len() {
            if self.at_line_start && self.phase != Phase::FromLine {
                match separator_ahead(&buf[pos..], eof) {
                    Ahead::Undecided => return Ok(pos),
                    Ahead::Separator => self.start_message(base + pos as u64)?,
                    Ahead::Text => {}
                }
            }
            pos += match self.phase {
                Phase::Preamble => self.skip_line(&buf[pos..]),
                Phase::FromLine => self.in_from_line(&buf[pos..], base + pos as u64),
                Phase::Header => self.header_line(&buf[pos..]),
                Phase::Body => self.body(&buf[pos..]),
            };
        }
        Ok(pos)
    }

    fn start_message(&mut self, at: u64) -> Result<(), ScanError> {
        match self.current.take() {
            Some(done) => self.push(done)?,
            None => self.preamble_len = at,
        }
        self.current = Some(Current::new(at));
        self.phase = Phase::FromLine;
        self.line.clear();
        self.line_len = 0;
        Ok(())
    }

    fn push(&mut self, done: Current) -> Result<(), ScanError> {
        if self.messages.len() >= MAX_MESSAGES {
            return Err(ScanError::TooManyMessages {
                messages: MAX_MESSAGES,
            });
        }
        let info = done.finish(&mut self.hashes);
        self.messages.push(info);
        Ok(())
    }

    /// Preamble: skips to the next line start.
    fn skip_line(&mut self, rest: &[u8]) -> usize {
        match find_byte(rest, b'\n') {
            Some(i) => {
                self.at_line_start = true;
                i + 1
            }
            None => {
                self.at_line_start = false;
                rest.len()
            }
        }
    }

    /// Collects `rest` up to the LF (or `rest`'s end) into `self.line`, bounded. Returns the
    /// bytes consumed and whether the line is complete.
    fn collect_line(&mut self, rest: &[u8]) -> (usize, bool) {
        let (len, complete) = match find_byte(rest, b'\n') {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        let room = MAX_HASHED_HEADER.saturating_sub(self.line.len());
        self.line.extend_from_slice(&rest[..len.min(room)]);
        self.line_len += len;
        self.at_line_start = complete;
        (len, complete)
    }

    fn end_line(&mut self) {
        self.line.clear();
        self.line_len = 0;
    }

    fn in_from_line(&mut self, rest: &[u8], at: u64) -> usize {
        let (len, complete) = self.collect_line(rest);
        if complete {
            if let Some(cur) = self.current.as_mut() {
                cur.content_start = at + len as u64;
            }
            self.hashes.feed_line(&self.line);
            self.end_line();
            self.phase = if self.hashes.full() {
                Phase::Body
            } else {
                Phase::Header
            };
        }
        len
    }

    fn header_line(&mut self, rest: &[u8]) -> usize {
        let (len, complete) = self.collect_line(rest);
        let Some(cur) = self.current.as_mut() else {
            return len;
        };
        cur.account(&rest[..len]);
        if complete {
            let empty = self.line_len == 1 || (self.line_len == 2 && self.line[0] == b'\r');
            if empty {
                cur.header_end = Some(cur.region_len - self.line_len as u64);
                self.phase = Phase::Body;
            } else {
                self.hashes.feed_line(&self.line);
                if self.hashes.full() {
                    self.phase = Phase::Body;
                }
            }
            self.end_line();
        }
        len
    }

    /// Body: counts bytes up to the next line that may start "From " (one starting with 'F'
    /// after a LF), which `process` then checks. The byte at `rest[0]` was checked already.
    fn body(&mut self, rest: &[u8]) -> usize {
        let Some(cur) = self.current.as_mut() else {
            return rest.len();
        };
        let (len, bare) = body_run(cur.tail[2], rest);
        cur.advance(&rest[..len], bare);
        self.at_line_start = cur.tail[2] == b'\n';
        len
    }

    fn finish(mut self, scanned_len: u64) -> Result<(Partial, Vec<[u8; 16]>), ScanError> {
        match self.current.take() {
            Some(mut done) => {
                match self.phase {
                    Phase::FromLine => {
                        // A "From " line without a LF at the end of the input: an empty
                        // message.
                        done.content_start = scanned_len;
                        self.hashes.feed_line(&self.line);
                    }
                    // A last header line without a LF reads as a complete line on the wire.
                    Phase::Header if self.line_len > 0 => self.hashes.feed_line(&self.line),
                    _ => {}
                }
                self.push(done)?;
            }
            None => self.preamble_len = scanned_len,
        }
        let digests = self.hashes.finish();
        Ok((
            Partial {
                messages: self.messages,
                scanned_len,
                preamble_len: self.preamble_len,
            },
            digests,
        ))
    }
}

/// What the line starting at a line start is, as far as the bytes at hand tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ahead {
    /// A separator: a new message starts here.
    Separator,
    /// Text of the current message (or of the preamble).
    Text,
    /// It begins like "From " but ends beyond the bytes at hand.
    Undecided,
}

/// Classifies the line at the start of `rest` (which starts a line) by `from_line`'s rule;
/// `eof` says no more bytes follow `rest`.
fn separator_ahead(rest: &[u8], eof: bool) -> Ahead {
    if rest.len() < FROM.len() {
        return if !eof && FROM.starts_with(rest) {
            Ahead::Undecided
        } else {
            Ahead::Text
        };
    }
    if !rest.starts_with(FROM) {
        return Ahead::Text;
    }
    let window = &rest[..rest.len().min(MAX_SEPARATOR_LINE)];
    let line = match find_byte(window, b'\n') {
        Some(i) => &rest[..i],
        None if rest.len() >= MAX_SEPARATOR_LINE => return Ahead::Text,
        None if eof => rest,
        None => return Ahead::Undecided,
    };
    if is_separator(line) {
        Ahead::Separator
    } else {
        Ahead::Text
    }
}

/// LFs in `seg` not preceded by CR, where `prev` is the byte before `seg`.
fn count_bare_lf(prev: u8, seg: &[u8]) -> u64 {
    let Some(&first) = seg.first() else {
        return 0;
    };
    let mut n = u64::from(first == b'\n' && prev != b'\r');
    // Chunks of 255 pairs let the compiler count in u8 lanes without overflow.
    for (a, b) in seg.chunks(255).zip(seg[1..].chunks(255)) {
        n += u64::from(
            a.iter()
                .zip(b)
                .fold(0u8, |n, (&p, &q)| n + u8::from((q == b'\n') & (p != b'\r'))),
        );
    }
    n
}

/// The body's hot loop: how many bytes of `rest` come before the next line start with 'F'
/// (never `rest[0]`, which the caller has checked), and how many bare LFs they hold. `prev`
/// is the byte before `rest`. Works on 64-byte blocks with no early exit inside, which the
/// compiler vectorizes; a block with a candidate is redone byte by byte.
fn body_run(prev: u8, rest: &[u8]) -> (usize, u64) {
    const BLOCK: usize = 64;
    let mut bare = 0u64;
    let mut i = 0;
    // Where the byte-by-byte redo of a block with a candidate ends.
    let mut slow_until = 1;
    while i < rest.len() {
        if i >= slow_until && i + BLOCK <= rest.len() {
            let p = &rest[i - 1..i - 1 + BLOCK];
            let q = &rest[i..i + BLOCK];
            let (count, hit) = p.iter().zip(q).fold((0u8, false), |(n, hit), (&a, &b)| {
                (
                    n + u8::from((b == b'\n') & (a != b'\r')),
                    hit | ((a == b'\n') & (b == b'F')),
                )
            });
            if !hit {
                bare += u64::from(count);
                i += BLOCK;
                continue;
            }
            slow_until = i + BLOCK;
        }
        let p = if i == 0 { prev } else { rest[i - 1] };
        let q = rest[i];
        if i > 0 && p == b'\n' && q == b'F' {
            break;
        }
        bare += u64::from(q == b'\n' && p != b'\r');
        i += 1;
    }
    (i, bare)
}

/// A deliberately naive second implementation of the mbox rules, on whole byte slices, that
/// the scanner's tests and the maildrop's model tests compare against.
#[cfg(test)]
pub(crate) mod model {
    use std::collections::HashMap;

    use md5::{Digest, Md5};

    use super::MAX_HASHED_HEADER;
    use crate::maildrop::from_line::is_separator;

    /// One message as the model sees it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct ModelMessage {
        pub record_start: usize,
        pub record_end: usize,
        pub content: Vec<u8>,
        pub octets: u64,
        pub digest: [u8; 16],
    }

    /// Splits `data` into the preamble length and its messages.
    pub(crate) fn parse(data: &[u8]) -> (usize, Vec<ModelMessage>) {
        let starts: Vec<usize> = (0..data.len())
            .filter(|&i| (i == 0 || data[i - 1] == b'\n') && is_separator(line_at(data, i)))
            .collect();
        let preamble = starts.first().copied().unwrap_or(data.len());
        let mut out = Vec::new();
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(data.len());
            let record = &data[start..end];
            let from_len = record
                .iter()
                .position(|&b| b == b'\n')
                .map_or(record.len(), |i| i + 1);
            let region = &record[from_len..];
            let sep = if region == b"\n" || region.ends_with(b"\n\n") {
                1
            } else if region == b"\r\n" || region.ends_with(b"\n\r\n") {
                2
            } else {
                0
            };
            let content = region[..region.len() - sep].to_vec();
            out.push(ModelMessage {
                record_start: start,
                record_end: end,
                octets: octets(&content),
                digest: digest(&record[..from_len], &content),
                content,
            });
        }
        (preamble, out)
    }

    /// The line starting at `at`, without its LF: to the end of `data` if none follows.
    fn line_at(data: &[u8], at: usize) -> &[u8] {
        let rest = &data[at..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        &rest[..end]
    }

    /// Wire size: every line sent with CRLF.
    pub(crate) fn octets(content: &[u8]) -> u64 {
        let mut wire = 0u64;
        for line in content.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = if line.ends_with(b"\n") {
                text.strip_suffix(b"\r").unwrap_or(text)
            } else {
                text
            };
            wire += text.len() as u64 + 2;
        }
        wire
    }

    fn normalized(line: &[u8]) -> Vec<u8> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let mut v = text.to_vec();
        v.push(b'\n');
        v
    }

    pub(crate) fn digest(from_line: &[u8], content: &[u8]) -> [u8; 16] {
        let mut stream = normalized(from_line);
        for line in content.split_inclusive(|&b| b == b'\n') {
            stream.extend(normalized(line));
            if line == b"\n" || line == b"\r\n" {
                break;
            }
        }
        stream.truncate(MAX_HASHED_HEADER);
        let mut h = Md5::new();
        h.update(&stream);
        h.update(octets(content).to_le_bytes());
        h.finalize().into()
    }

    /// The md-5 of a body as sent: every line without its line break, then LF; a CR is
    /// part of the break only before a LF.
    pub(crate) fn body_digest(content: &[u8]) -> [u8; 16] {
        let mut h = Md5::new();
        for line in content.split_inclusive(|&b| b == b'\n') {
            let text = match line.strip_suffix(b"\n") {
                Some(t) => t.strip_suffix(b"\r").unwrap_or(t),
                None => line,
            };
            h.update(text);
            h.update(b"\n");
        }
        h.finalize().into()
    }

    /// The owners record as the model keeps it: header digest to the owner's body digest,
    /// None for nobody.
    pub(crate) type ModelOwners = HashMap<[u8; 16], Option<[u8; 16]>>;

    /// The unique ids of `messages` (one scan, file order) as UIDL shows them, given the
    /// owners recorded before the scan (to which the collisions first seen are added): the
    /// digest for a message alone whose digest is not recorded or for the owner's body;
    /// md-5 of the digest and the body digest for the others; then "-N" for the N-th
    /// earlier message with the same id.
    pub(crate) fn uids(messages: &[ModelMessage], owners: &mut ModelOwners) -> Vec<String> {
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let group: Vec<&ModelMessage> =
                messages.iter().filter(|o| o.digest == m.digest).collect();
            let owner = match owners.get(&m.digest) {
                Some(owner) => *owner,
                None if group.len() > 1 => {
                    let first = Some(body_digest(&group[0].content));
                    owners.insert(m.digest, first);
                    first
                }
                None => Some(body_digest(&m.content)),
            };
            let key = |o: &ModelMessage| -> [u8; 16] {
                let body = body_digest(&o.content);
                if owner == Some(body) {
                    o.digest
                } else {
                    let mut h = Md5::new();
                    h.update(o.digest);
                    h.update(body);
                    h.finalize().into()
                }
            };
            let id = key(m);
            let dup = messages[..i]
                .iter()
                .filter(|o| o.digest == m.digest && key(o) == id)
                .count();
            let mut text: String = id.iter().map(|b| format!("{b:02x}")).collect();
            if dup > 0 {
                text.push_str(&format!("-{dup}"));
            }
            out.push(text);
        }
        out
    }

    /// The random mboxes' generator, which the maildrop and journal tests import from here.
    pub(crate) use crate::testing::Rng;

    /// Pieces that random mboxes are made of: separators of several agents, body lines that
    /// begin "From " and pieces of separators, quoted From, CRLF, empty lines, lines starting
    /// with F, a header block and fragments without a line break.
    const PIECES: &[&[u8]] = &[
        b"From alice@example.org Mon Jan  1 00:00:00 2024\n",
        b"From bob@example.org Tue Jan  2 00:00:00 2024\r\n",
        b"From MAILER-DAEMON  Thu Jan  1 00:00 96 +0000\n",
        b"From \"a b\"@x Wed Aug  2 00:39:12 MET DST 1995\n",
        b"From here on, a body line\n",
        b"From me to you on Monday\n",
        b"From x@y Mon Jan  1 00:00:0",
        b"0 2024\n",
        b"From x@y ",
        b"From \n",
        b"From\n",
        b"From x",
        b">From quoted\n",
        b"Subject: hello\n",
        b"Subject: crlf\r\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"body line\n",
        b"Fro",
        b"Fm\n",
        b"F\n",
        b".\n",
        b"no newline",
    ];

    /// A random mbox of about `pieces` pieces.
    pub(crate) fn random_mbox(rng: &mut Rng, pieces: usize) -> Vec<u8> {
        let mut data = Vec::new();
        if rng.below(4) > 0 {
            data.extend_from_slice(PIECES[0]);
        }
        for _ in 0..pieces {
            let piece = PIECES[rng.below(PIECES.len())];
            // Favour whole messages so that most files hold several.
            if rng.below(6) == 0 {
                data.extend_from_slice(b"\nFrom carol@example.org Wed Jan  3 00:00:00 2024\n");
                // Same headers and size, two bodies: colliding digests.
                let body: &[u8] = if rng.below(2) == 0 {
                    b"body\n"
                } else {
                    b"bodx\n"
                };
                data.extend_from_slice(b"Subject: m\n\n");
                data.extend_from_slice(body);
            } else {
                data.extend_from_slice(piece);
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::model::{self, Rng};
    use super::*;
    use crate::testing::OneByte;

    fn contents(data: &[u8], scan: &Scan) -> Vec<Vec<u8>> {
        scan.messages
            .iter()
            .map(|m| {
                let start = m.content_start as usize;
                data[start..start + m.content_len as usize].to_vec()
            })
            .collect()
    }

    /// The date a delivery agent writes after the sender.
    const DATE: &[u8] = b" Mon Jan  1 00:00:00 2024";

    /// `data` with a date after every one-word "From x" line, so that the cases stay short
    /// and their "From x" lines are separators.
    fn dated(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let one_word = text
                .strip_prefix(b"From ")
                .is_some_and(|w| !w.is_empty() && !w.contains(&b' '));
            if one_word {
                out.extend_from_slice(text);
                out.extend_from_slice(DATE);
                out.extend_from_slice(&line[text.len()..]);
            } else {
                out.extend_from_slice(line);
            }
        }
        out
    }

    fn scan_dated(data: &[u8]) -> Scan {
        scan_all_ways(&dated(data))
    }

    /// Scans `data` whole, one byte per read, and with a minimal buffer; all must agree.
    fn scan_all_ways(data: &[u8]) -> Scan {
        let whole = scan(data).expect("scan");
        for (label, other) in [
            (
                "one byte",
                scan_with_buffer(OneByte(data), 64).expect("scan"),
            ),
            (
                "min buffer",
                scan_with_buffer(data, MIN_SCAN_BUFFER).expect("scan"),
            ),
            ("odd buffer", scan_with_buffer(data, 17).expect("scan")),
        ] {
            assert_eq!(whole, other, "{label} differs for {data:?}");
        }
        whole
    }

    #[test]
    fn boundaries_and_content_follow_the_mbox_rules() {
        type Case<'a> = (&'a str, &'a [u8], &'a [&'a [u8]]);
        let cases: &[Case] = &[
            ("empty file", b"", &[]),
            (
                "one message",
                b"From a\nSubject: x\n\nbody\n",
                &[b"Subject: x\n\nbody\n"],
            ),
            (
                "separator before next From is not content",
                b"From a\nA\n\nFrom b\nB\n",
                &[b"A\n", b"B\n"],
            ),
            ("separator at end of file", b"From a\nA\n\n", &[b"A\n"]),
            (
                "only one empty line is separator",
                b"From a\nA\n\n\n",
                &[b"A\n\n"],
            ),
            (
                "From inside a line is content",
                b"From a\nsay From here\n",
                &[b"say From here\n"],
            ),
            (
                "quoted From is content",
                b"From a\n>From x\n",
                &[b">From x\n"],
            ),
            (
                "From without space is content",
                b"From a\nFrom\nFromage\n",
                &[b"From\nFromage\n"],
            ),
            (
                "unquoted From line starts a message",
                b"From a\nx\nFrom b\n",
                &[b"x\n", b""],
            ),
            ("no final newline", b"From a\nlast", &[b"last"]),
            ("empty body", b"From a\nFrom b\n\n", &[b"", b""]),
            (
                "From line without LF at end",
                b"From a\nA\n\nFrom b",
                &[b"A\n", b""],
            ),
            (
                "crlf separator",
                b"From a\r\nA\r\n\r\nFrom b\r\nB\r\n\r\n",
                &[b"A\r\n", b"B\r\n"],
            ),
            (
                "crlf empty message",
                b"From a\r\n\r\nFrom b\r\n",
                &[b"", b""],
            ),
            (
                "body lines beginning From are content",
                b"From a\nS: x\n\nFrom here on, text\nFrom me to you on Monday\n\nFrom b\nB\n",
                &[
                    b"S: x\n\nFrom here on, text\nFrom me to you on Monday\n",
                    b"B\n",
                ],
            ),
            (
                "From line in the header block is content",
                b"From a\nFrom the desk of x\n\nbody\n",
                &[b"From the desk of x\n\nbody\n"],
            ),
            (
                "From line without a whole date is content",
                b"From a\nA\n\nFrom alice@example.org Thu Jan  1\nB\n",
                &[b"A\n\nFrom alice@example.org Thu Jan  1\nB\n"],
            ),
            (
                "separator straight after a last line",
                b"From a\nno empty line before the next\nFrom b\nB\n",
                &[b"no empty line before the next\n", b"B\n"],
            ),
            (
                "text From line at end of file without LF",
                b"From a\nA\n\nFrom here on",
                &[b"A\n\nFrom here on"],
            ),
            ("preamble is no message", b"junk\n\nFrom a\nA\n", &[b"A\n"]),
            ("file without From line", b"just text\n", &[]),
        ];
        for (name, data, want) in cases {
            let data = &dated(data);
            let scan = scan_all_ways(data);
            assert_eq!(contents(data, &scan), want.to_vec(), "{name}");
            assert_eq!(scan.scanned_len, data.len() as u64, "{name}");
        }
    }

    #[test]
    fn separator_lines_of_any_length_are_seen_across_refills() {
        let long = "s".repeat(MAX_SEPARATOR_LINE - 40);
        let data = format!(
            "From a Mon Jan  1 00:00:00 2024\nA\n\nFrom {long} Mon Jan  1 00:00:00 2024\nB\n"
        );
        let scan = scan_all_ways(data.as_bytes());
        assert_eq!(contents(data.as_bytes(), &scan), [&b"A\n"[..], b"B\n"]);

        let too_long = "s".repeat(MAX_SEPARATOR_LINE);
        let data = format!(
            "From a Mon Jan  1 00:00:00 2024\nA\n\nFrom {too_long} Mon Jan  1 00:00:00 2024\nB\n"
        );
        let scan = scan_all_ways(data.as_bytes());
        assert_eq!(scan.messages.len(), 1, "an over-long line is text");
    }

    #[test]
    fn preamble_length_counts_bytes_before_first_from() {
        assert_eq!(scan_dated(b"junk\nFrom a\n").preamble_len, 5);
        assert_eq!(scan_dated(b"From a\n").preamble_len, 0);
        assert_eq!(scan_dated(b"no mbox").preamble_len, 7);
    }

    #[test]
    fn record_offsets_point_at_from_lines() {
        let data = &dated(b"x\nFrom a\nA\n\nFrom bb\nB\n");
        let scan = scan_all_ways(data);
        let offsets: Vec<(u64, u64)> = scan
            .messages
            .iter()
            .map(|m| (m.record_start, m.content_start))
            .collect();
        assert_eq!(offsets, [(2, 34), (37, 70)]);
    }

    #[test]
    fn octets_count_every_line_with_crlf() {
        let cases: &[(&str, &[u8], u64)] = &[
            ("lf lines", b"From a\nab\ncd\n", 8),
            ("crlf lines", b"From a\r\nab\r\ncd\r\n", 8),
            ("mixed", b"From a\nab\r\ncd\n", 8),
            ("no final newline", b"From a\nab\ncd", 8),
            ("empty body", b"From a\n", 0),
            ("lone empty line kept", b"From a\n\n\n", 2),
            ("bare cr is one octet", b"From a\na\rb\n", 5),
            ("empty line after crlf", b"From a\nab\r\n\n\nFrom b\n", 6),
        ];
        for (name, data, want) in cases {
            let data = &dated(data);
            let scan = scan_all_ways(data);
            assert_eq!(scan.messages[0].octets, *want, "{name}");
        }
    }

    #[test]
    fn uid_is_stable_when_mail_is_appended() {
        let before = &dated(b"From a\nSubject: x\nMessage-ID: <1@x>\n\nbody");
        let mut after = before.to_vec();
        after.extend_from_slice(&dated(b"\n\nFrom b\nSubject: y\n\n"));
        let a = scan_all_ways(before);
        let b = scan_all_ways(&after);
        assert_eq!(a.messages[0].uid, b.messages[0].uid);
        assert_eq!(a.messages[0].octets, b.messages[0].octets);

        let headers_only = &dated(b"From a\nSubject: x\n");
        let mut appended = headers_only.to_vec();
        appended.extend_from_slice(&dated(b"\nFrom b\n"));
        assert_eq!(
            scan_all_ways(headers_only).messages[0].uid,
            scan_all_ways(&appended).messages[0].uid
        );
    }

    #[test]
    fn uid_depends_on_from_line_headers_and_size_only() {
        let base = scan_dated(b"From a\nSubject: x\n\nbody one\n").messages[0]
            .uid
            .clone();
        let same_size_body = scan_dated(b"From a\nSubject: x\n\nbody two\n").messages[0]
            .uid
            .clone();
        let other_size = scan_dated(b"From a\nSubject: x\n\nbody three\n").messages[0]
            .uid
            .clone();
        let other_header = scan_dated(b"From a\nSubject: y\n\nbody one\n").messages[0]
            .uid
            .clone();
        let other_from = scan_dated(b"From b\nSubject: x\n\nbody one\n").messages[0]
            .uid
            .clone();
        assert_eq!(base, same_size_body, "bodies are not hashed");
        assert_ne!(base, other_size);
        assert_ne!(base, other_header);
        assert_ne!(base, other_from);
    }

    #[test]
    fn identical_messages_get_suffixes_in_file_order() {
        let data = &dated(
            b"From a\nS: 1\n\nx\n\nFrom a\nS: 1\n\nx\n\nFrom a\nS: 2\n\nx\n\nFrom a\nS: 1\n\nx\n",
        );
        let scan = scan_all_ways(data);
        let ids: Vec<String> = scan.messages.iter().map(|m| m.uid.to_string()).collect();
        assert_eq!(ids[1], format!("{}-1", ids[0]));
        assert_eq!(ids[3], format!("{}-2", ids[0]));
        assert_eq!(ids[2].len(), 32);
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    /// The ids of `data` as the maildrop shows them: the scan, then `distinguish` with the
    /// bodies read from `data` and an empty record.
    fn ids(data: &[u8]) -> Vec<String> {
        ids_with(data, &mut Owners::new())
    }

    /// The ids of `data` with the owners recorded in `owners`, which records the collisions
    /// first seen.
    fn ids_with(data: &[u8], owners: &mut Owners) -> Vec<String> {
        let mut scan = scan_dated(data);
        let data = dated(data);
        let claims = distinguish(&mut scan.messages, owners, |m| {
            let start = m.content_start as usize;
            body_digest(&data[start..start + m.content_len as usize])
        })
        .expect("bodies");
        for (digest, body) in claims {
            owners.claim(digest, body, 0);
        }
        scan.messages.iter().map(|m| m.uid.to_string()).collect()
    }

    /// The header digest of the one message of `data`.
    fn header_digest(data: &[u8]) -> [u8; 16] {
        *scan_dated(data).messages[0].uid.digest()
    }

    /// The id of a message with header digest `digest` told apart by its body `content`.
    fn body_id(digest: [u8; 16], content: &[u8]) -> String {
        let mut h = Md5::new();
        h.update(digest);
        h.update(body_digest(content).expect("digest"));
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    const ONE: &[u8] = b"From a\nSubject: x\n\nbody one\n\n";
    const TWO: &[u8] = b"From a\nSubject: x\n\nbody two\n\n";

    #[test]
    fn the_first_of_a_new_collision_keeps_its_id_and_is_recorded() {
        let alone_one = alone(ONE);
        assert_eq!(alone_one, alone(TWO), "alone, the header digest is the id");
        let d = header_digest(ONE);
        let mut owners = Owners::new();
        let both = ids_with(&[ONE, TWO].concat(), &mut owners);
        assert_eq!(
            both[0], alone_one,
            "a client that fetched it alone keeps it"
        );
        assert_eq!(both[1], body_id(d, b"Subject: x\n\nbody two\n"));
        assert_eq!(
            owners.owner(&d),
            Some(Owner::Body(
                body_digest(&b"Subject: x\n\nbody one\n"[..]).expect("digest")
            ))
        );
        assert!(owners.is_changed());
    }

    #[test]
    fn recorded_owners_keep_every_id_whatever_is_deleted_or_reordered() {
        let mut owners = Owners::new();
        let both = ids_with(&[ONE, TWO].concat(), &mut owners);
        // The first deleted: the second keeps exactly its id, never the first's.
        assert_eq!(ids_with(TWO, &mut owners), [both[1].clone()]);
        // The second deleted: the first keeps the plain id.
        assert_eq!(ids_with(ONE, &mut owners), [both[0].clone()]);
        // File order no longer matters once recorded.
        assert_eq!(
            ids_with(&[TWO, ONE].concat(), &mut owners),
            [both[1].clone(), both[0].clone()]
        );
    }

    #[test]
    fn a_retired_id_passes_to_nobody() {
        let d = header_digest(ONE);
        let mut owners = Owners::new();
        let first = ids_with(ONE, &mut owners);
        assert!(!owners.is_changed(), "a message alone needs no record");
        owners.retire(d, 0);
        let later = ids_with(TWO, &mut owners);
        assert_ne!(later, first, "the deleted message's id was handed on");
        assert_eq!(later, [body_id(d, b"Subject: x\n\nbody two\n")]);
        // Another message with the same headers later: both keep ids from their bodies.
        let three = b"From a\nSubject: x\n\nbody 333\n\n";
        let both = ids_with(&[TWO, three].concat(), &mut owners);
        assert_eq!(both[0], later[0]);
        assert_eq!(both[1], body_id(d, b"Subject: x\n\nbody 333\n"));
    }

    #[test]
    fn mixed_collisions_suffix_only_byte_identical_copies() {
        let other = b"From c\nSubject: y\n\nother\n\n";
        let got = ids(&[ONE, other, TWO, ONE].concat());
        assert_eq!(got[0], alone(ONE), "the first owns the plain id");
        assert_eq!(got[3], format!("{}-1", got[0]));
        assert_ne!(got[0], got[2]);
        assert_eq!(got[2].len(), 32, "no file-order suffix: {}", got[2]);
        assert_eq!(
            got[1],
            ids(other)[0],
            "a message outside the collision keeps its id"
        );
        let identical = ids(&[ONE, ONE].concat());
        assert_eq!(identical, [alone(ONE), format!("{}-1", alone(ONE))]);
        // Copies of a message that is not the owner are suffixed among themselves.
        let mut owners = Owners::new();
        let got = ids_with(&[ONE, TWO, TWO].concat(), &mut owners);
        assert_eq!(got[2], format!("{}-1", got[1]));
    }

    fn alone(data: &[u8]) -> String {
        ids(data).remove(0)
    }

    #[test]
    fn body_digest_reads_the_body_as_sent() {
        let lf = body_digest(&b"a\nb\n"[..]).expect("digest");
        assert_eq!(body_digest(&b"a\r\nb\r\n"[..]).expect("digest"), lf);
        assert_eq!(body_digest(&b"a\nb"[..]).expect("digest"), lf);
        assert_eq!(body_digest(OneByte(b"a\r\nb\r\n")).expect("digest"), lf);
        assert_ne!(body_digest(&b"a\rb\n"[..]).expect("digest"), lf);
        assert_ne!(body_digest(&b"a\nc\n"[..]).expect("digest"), lf);
        let bare_cr = body_digest(&b"a\r"[..]).expect("digest");
        assert_eq!(bare_cr, model::body_digest(b"a\r"));
        assert_eq!(body_digest(OneByte(b"a\r")).expect("digest"), bare_cr);
        assert_eq!(
            body_digest(&b""[..]).expect("digest"),
            model::body_digest(b"")
        );
    }

    #[test]
    fn a_message_info_is_no_larger_for_the_chosen_ids() {
        // 32 bytes of offsets and sizes, 40 of id: what it was before --uidl.
        assert_eq!(std::mem::size_of::<MessageInfo>(), 72);
    }

    #[test]
    fn uid_is_printable_and_short() {
        let scan = scan_dated(b"From a\n\nFrom a\n\n");
        for m in &scan.messages {
            let id = m.uid.to_string();
            assert!((1..=70).contains(&id.len()), "{id}");
            assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{id}");
        }
    }

    #[test]
    fn endless_header_block_is_hashed_only_up_to_the_limit() {
        let mut a = dated(b"From a\n");
        a.extend(std::iter::repeat_n(b'h', MAX_HASHED_HEADER + 10));
        let mut b = a.clone();
        let n = b.len();
        b[n - 1] = b'x';
        let (sa, sb) = (scan_all_ways(&a), scan_all_ways(&b));
        assert_eq!(sa.messages[0].uid, sb.messages[0].uid);
        b[100] = b'x';
        assert_ne!(sa.messages[0].uid, scan_all_ways(&b).messages[0].uid);
    }

    #[test]
    fn too_many_messages_is_an_error() {
        let data = dated(b"From a\n").repeat(MAX_MESSAGES + 1);
        match scan(&data[..]) {
            Err(ScanError::TooManyMessages { messages }) => assert_eq!(messages, MAX_MESSAGES),
            other => panic!("expected TooManyMessages, got {other:?}"),
        }
    }

    #[test]
    fn random_mboxes_match_the_model() {
        let seed = 0x5eed_0001_u64;
        let mut rng = Rng(seed);
        for round in 0..400 {
            let pieces = 1 + rng.below(40);
            let data = model::random_mbox(&mut rng, pieces);
            let scan = scan_all_ways(&data);
            let (preamble, want) = model::parse(&data);
            let ctx = format!("seed {seed:#x} round {round}: {data:?}");
            assert_eq!(scan.preamble_len, preamble as u64, "{ctx}");
            assert_eq!(scan.messages.len(), want.len(), "{ctx}");
            for (got, want) in scan.messages.iter().zip(&want) {
                assert_eq!(got.record_start, want.record_start as u64, "{ctx}");
                let start = got.content_start as usize;
                let content = &data[start..start + got.content_len as usize];
                assert_eq!(content, &want.content[..], "{ctx}");
                assert_eq!(got.octets, want.octets, "{ctx}");
                assert_eq!(got.uid.digest(), &want.digest, "{ctx}");
            }
            let mut scan = scan;
            distinguish(&mut scan.messages, &Owners::new(), |m| {
                let start = m.content_start as usize;
                body_digest(&data[start..start + m.content_len as usize])
            })
            .expect("bodies");
            let got: Vec<String> = scan.messages.iter().map(|m| m.uid.to_string()).collect();
            assert_eq!(got, model::uids(&want, &mut HashMap::new()), "{ctx}");
        }
    }
}
