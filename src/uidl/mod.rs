//! Unique-id schemes of other POP3 servers (issue 15): the `--uidl` preference list, and for
//! one message at a time the id each scheme gives it, computed from the message's raw header
//! lines as `maildrop::ids` reads them after the scan. Pure: no I/O, no knowledge of message
//! boundaries (the scanner decides those) and no knowledge of pop3d's own ids (the scanner
//! makes those; `assign` only chooses among the candidates it is handed).
//!
//! Scheme families, one file each:
//! - `hashed`: md-5 over selected header lines (popa3d, solid-pop3d, Dovecot's `%m`);
//! - `stored`: numbers or ids that an old server wrote into the headers (Dovecot's X-UID with
//!   the X-IMAPbase UIDVALIDITY, UW's order of the same numbers, the X-UIDL header);
//! - `assign`: the final ids of a maildrop from the per-message candidates.
//!
//! Header values are untrusted (mail from outside may carry a forged X-UID or X-UIDL): a
//! scheme's result is used only if it is an RFC 1939 unique id (see `valid_id`).
//!
//! What `maildrop::ids` feeds, per message (only when `UidlSpec::needs_headers`; the scan
//! itself never calls this module, so the default `pop3d` costs nothing):
//! 1. `MessageIds::new(spec, ctx)` at the message's "From " line, with `MboxContext::first()`
//!    (or `first_remembering(r)`, `r` a UIDVALIDITY an earlier session saw) for the first
//!    message and `MboxContext::later(v)` after it, `v` being the first message's
//!    `MessageIds::uid_validity()` read before its `finish` (or else `r`);
//! 2. every line after the "From " line, raw (CR and LF as in the file), in order, until
//!    `feed_header_line` says `Feed::Done` or the message ends. That is past the scanner's
//!    own header end: popa3d and solid-pop3d end the header only at an LF-only empty line, so
//!    after a CRLF empty line they still want lines (bounded by `MAX_SCHEME_HEADER`). The
//!    separator's empty line may be fed or not: every scheme stops at an empty line;
//! 3. at the message's end, `finish(pop3d_id)` gives the row of candidates, which goes to
//!    an `Assigner` at once (`push`); after the last message, `Assigner::finish` gives the
//!    final ids and the log line (`assign` does the same from rows held all at once).

use std::error::Error;
use std::fmt;

use crate::bytes::hex;

mod assign;
mod hashed;
mod stored;

pub use assign::{assign, AssignReport, Assigner, Assignment, Named};

use hashed::{DovecotMd5, Popa3d, SolidPop3d};
use stored::{ImapUid, UidOrder, XUidl};

/// RFC 1939 section 7: a unique id is 1 to 70 characters.
pub const MAX_ID_LEN: usize = 70;

/// Most bytes of header lines a scheme reads per message. popa3d and solid-pop3d end the
/// header block only at an LF-only empty line, so on a CRLF message they would read the whole
/// body as header; this cap keeps the per-message cost a small constant (as the scanner's own
/// `MAX_HASHED_HEADER` does). A message whose header, as the old server saw it, is longer than
/// this gets a different id than the old server gave.
pub const MAX_SCHEME_HEADER: usize = 64 * 1024;

/// One way of naming a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// pop3d's own ids (the scanner's digest with its duplicate rule); computed by the
    /// scanner, never by this module.
    Pop3d,
    /// popa3d 1.0.x: md-5 of selected raw header lines, 16 hex digits in its byte order.
    Popa3d,
    /// solid-pop3d 0.15: md-5 of other raw header lines, matched case-sensitively.
    SolidPop3d,
    /// Dovecot's default `%08Xu%08Xv`: X-UID, then the X-IMAPbase UIDVALIDITY.
    Dovecot,
    /// Dovecot's `%m`: md-5 of header values (its "apop3d" mbox header MD5).
    DovecotMd5,
    /// UW ipop3d: the X-IMAPbase UIDVALIDITY, then X-UID.
    Uw,
    /// The first X-UIDL header as stored (mailutils, qpopper, Dovecot's pop3_reuse_xuidl).
    XUidl,
}

impl Scheme {
    /// Every scheme, in the order the documentation lists them.
    pub const ALL: [Scheme; 7] = [
        Scheme::Pop3d,
        Scheme::Popa3d,
        Scheme::SolidPop3d,
        Scheme::Dovecot,
        Scheme::DovecotMd5,
        Scheme::Uw,
        Scheme::XUidl,
    ];

    /// The name used on the command line and in the users file.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Pop3d => "pop3d",
            Scheme::Popa3d => "popa3d",
            Scheme::SolidPop3d => "solid-pop3d",
            Scheme::Dovecot => "dovecot",
            Scheme::DovecotMd5 => "dovecot-md5",
            Scheme::Uw => "uw",
            Scheme::XUidl => "x-uidl",
        }
    }

    /// The scheme of a command-line name (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether this module computes the scheme from header lines (all but `Pop3d`).
    pub fn is_header_derived(self) -> bool {
        self != Scheme::Pop3d
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of `--uidl`: schemes in order of preference, none twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidlSpec {
    schemes: Vec<Scheme>,
}

/// Why a `--uidl` value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UidlSpecError {
    /// The value is empty, or one of its comma-separated names is.
    EmptyName,
    /// A name that is no scheme (kept to at most `MAX_ECHOED_NAME` characters).
    Unknown(String),
    /// A scheme named twice.
    Repeated(Scheme),
}

/// An unknown scheme name is echoed in the error at most this long, so a pasted blob does not
/// fill a log line.
const MAX_ECHOED_NAME: usize = 40;

impl fmt::Display for UidlSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UidlSpecError::EmptyName => f.write_str("empty uidl scheme name"),
            UidlSpecError::Unknown(name) => {
                let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
                write!(
                    f,
                    "unknown uidl scheme {name:?} (known: {})",
                    known.join(", ")
                )
            }
            UidlSpecError::Repeated(s) => write!(f, "uidl scheme {s} listed twice"),
        }
    }
}

impl Error for UidlSpecError {}

impl UidlSpec {
    /// Parses a comma-separated preference list such as `dovecot,pop3d`. Names are exact and
    /// lowercase; spaces are not allowed (the value is one command-line word).
    pub fn parse(value: &str) -> Result<UidlSpec, UidlSpecError> {
        let mut schemes = Vec::new();
        for name in value.split(',') {
            if name.is_empty() {
                return Err(UidlSpecError::EmptyName);
            }
            let scheme = Scheme::from_name(name).ok_or_else(|| {
                UidlSpecError::Unknown(name.chars().take(MAX_ECHOED_NAME).collect())
            })?;
            if schemes.contains(&scheme) {
                return Err(UidlSpecError::Repeated(scheme));
            }
            schemes.push(scheme);
        }
        Ok(UidlSpec { schemes })
    }

    /// The schemes, most preferred first.
    pub fn schemes(&self) -> &[Scheme] {
        &self.schemes
    }

    /// Whether any scheme needs the header lines (so `maildrop::ids` must feed them).
    pub fn needs_headers(&self) -> bool {
        self.schemes.iter().any(|s| s.is_header_derived())
    }
}

impl Default for UidlSpec {
    /// pop3d's own ids alone.
    fn default() -> Self {
        UidlSpec {
            schemes: vec![Scheme::Pop3d],
        }
    }
}

impl fmt::Display for UidlSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.schemes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.name())?;
        }
        Ok(())
    }
}

/// What a message's ids depend on beyond its own header lines: the UIDVALIDITY that
/// Dovecot (or UW's c-client) keeps in the X-IMAPbase header of the mbox's first message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MboxContext {
    /// This is the mbox's first message: its own X-IMAPbase header gives the UIDVALIDITY.
    pub first: bool,
    /// For a later message: the UIDVALIDITY read from the first message, if it had one, else
    /// the one remembered from an earlier session. For the first message: the remembered one,
    /// used only if the message has no X-IMAPbase (pop3d deleted the message that had it).
    pub uid_validity: Option<u32>,
}

impl MboxContext {
    /// The context of the mbox's first message.
    pub fn first() -> Self {
        MboxContext {
            first: true,
            uid_validity: None,
        }
    }

    /// The context of the mbox's first message when an earlier session saw the UIDVALIDITY
    /// `remembered` in the first message of its day: the X-IMAPbase header is in the first
    /// message only, and when a client deletes that message pop3d does not move the header
    /// (Dovecot does), so without the remembered value every X-UID id would be lost.
    pub fn first_remembering(remembered: Option<u32>) -> Self {
        MboxContext {
            first: true,
            uid_validity: remembered,
        }
    }

    /// The context of a later message, given what the first message's state read
    /// (`SchemeState::uid_validity` or `MessageIds::uid_validity`).
    pub fn later(uid_validity: Option<u32>) -> Self {
        MboxContext {
            first: false,
            uid_validity,
        }
    }
}

/// Whether a scheme wants more header lines of the current message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    More,
    /// The scheme's header block has ended (by its own rule) or its byte budget is spent:
    /// further lines of this message are ignored.
    Done,
}

/// Why a scheme gives no id for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unnamed {
    /// The headers the scheme reads are not there (no X-UID, no X-IMAPbase, no X-UIDL).
    Absent,
    /// They are there, but the result is not a valid unique id (malformed number, empty,
    /// longer than 70 characters, or a byte outside 0x21..0x7E).
    Invalid,
}

impl fmt::Display for Unnamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unnamed::Absent => "header absent",
            Unnamed::Invalid => "header invalid",
        })
    }
}

/// One scheme's running computation over one message's header lines.
#[derive(Clone, Debug)]
pub struct SchemeState {
    kind: Kind,
    /// Header bytes seen so far (bounded by `MAX_SCHEME_HEADER`).
    fed: usize,
    done: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    Popa3d(Popa3d),
    SolidPop3d(SolidPop3d),
    DovecotMd5(DovecotMd5),
    Imap(ImapUid, UidOrder),
    XUidl(XUidl),
}

impl SchemeState {
    /// A fresh state for `scheme` on one message, or None for `Scheme::Pop3d`, which the
    /// scanner computes.
    pub fn new(scheme: Scheme, ctx: MboxContext) -> Option<SchemeState> {
        let kind = match scheme {
            Scheme::Pop3d => return None,
            Scheme::Popa3d => Kind::Popa3d(Popa3d::new()),
            Scheme::SolidPop3d => Kind::SolidPop3d(SolidPop3d::new()),
            Scheme::DovecotMd5 => Kind::DovecotMd5(DovecotMd5::new()),
            Scheme::Dovecot => Kind::Imap(ImapUid::new(ctx), UidOrder::UidFirst),
            Scheme::Uw => Kind::Imap(ImapUid::new(ctx), UidOrder::ValidityFirst),
            Scheme::XUidl => Kind::XUidl(XUidl::new()),
        };
        Some(SchemeState {
            kind,
            fed: 0,
            done: false,
        })
    }

    /// Takes the next raw line of the message after its "From " line: the bytes as they are
    /// in the file, with the line's LF (and CR) if it has one. Lines must come in order and
    /// whole; the first call gets the first header line.
    pub fn feed_header_line(&mut self, line: &[u8]) -> Feed {
        if self.done {
            return Feed::Done;
        }
        self.fed = self.fed.saturating_add(line.len());
        if self.fed > MAX_SCHEME_HEADER {
            self.done = true;
            return Feed::Done;
        }
        let feed = match &mut self.kind {
            Kind::Popa3d(s) => s.feed(line),
            Kind::SolidPop3d(s) => s.feed(line),
            Kind::DovecotMd5(s) => s.feed(line),
            Kind::Imap(s, _) => s.feed(line),
            Kind::XUidl(s) => s.feed(line),
        };
        self.done = feed == Feed::Done;
        feed
    }

    /// The UIDVALIDITY of this message's own X-IMAPbase header, if it is the first message
    /// and has a valid one: what the caller hands to later messages in `MboxContext::later`.
    pub fn uid_validity(&self) -> Option<u32> {
        match &self.kind {
            Kind::Imap(s, _) => s.own_validity(),
            _ => None,
        }
    }

    /// The message's id under this scheme, or why there is none.
    pub fn finish_checked(self) -> Result<String, Unnamed> {
        let id = match self.kind {
            Kind::Popa3d(s) => Ok(s.finish()),
            Kind::SolidPop3d(s) => Ok(s.finish()),
            Kind::DovecotMd5(s) => Ok(s.finish()),
            Kind::Imap(s, order) => s.finish(order),
            Kind::XUidl(s) => s.finish(),
        }?;
        if valid_id(id.as_bytes()) {
            Ok(id)
        } else {
            Err(Unnamed::Invalid)
        }
    }

    /// The message's id under this scheme; None if the scheme cannot name it.
    pub fn finish(self) -> Option<String> {
        self.finish_checked().ok()
    }
}

/// The states of every header-derived scheme of a `UidlSpec` for one message: what the
/// caller keeps per message while it feeds the header lines.
#[derive(Clone, Debug)]
pub struct MessageIds {
    /// One entry per scheme of the spec, in its order; None for `Scheme::Pop3d`.
    states: Vec<Option<SchemeState>>,
    /// Whether every state has reported `Feed::Done`.
    done: bool,
}

impl MessageIds {
    pub fn new(spec: &UidlSpec, ctx: MboxContext) -> MessageIds {
        let states: Vec<Option<SchemeState>> = spec
            .schemes()
            .iter()
            .map(|&s| SchemeState::new(s, ctx))
            .collect();
        let done = states.iter().all(Option::is_none);
        MessageIds { states, done }
    }

    /// Feeds one raw header line to every scheme that still wants lines; `Feed::Done` once
    /// none does, so the caller can stop reading lines of this message.
    pub fn feed_header_line(&mut self, line: &[u8]) -> Feed {
        if self.done {
            return Feed::Done;
        }
        let mut more = false;
        for state in self.states.iter_mut().flatten() {
            more |= state.feed_header_line(line) == Feed::More;
        }
        self.done = !more;
        if more {
            Feed::More
        } else {
            Feed::Done
        }
    }

    /// See `SchemeState::uid_validity`.
    pub fn uid_validity(&self) -> Option<u32> {
        self.states.iter().flatten().find_map(|s| s.uid_validity())
    }

    /// The candidates of this message, one per scheme of the spec in its order, with
    /// `pop3d_id` (the scanner's id) in the slot of `Scheme::Pop3d`: one row for `assign`.
    pub fn finish(self, pop3d_id: &str) -> Vec<Result<String, Unnamed>> {
        self.states
            .into_iter()
            .map(|state| match state {
                Some(state) => state.finish_checked(),
                None => Ok(pop3d_id.to_owned()),
            })
            .collect()
    }
}

/// RFC 1939 section 7: 1 to 70 characters in 0x21..0x7E.
pub fn valid_id(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The line without its LF and, before that LF, one CR (a CR not before a LF is content).
fn strip_eol(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
        None => line,
    }
}

/// An empty line as RFC 5322 parsers (Dovecot's among them) see it: "\n" or "\r\n".
fn is_empty_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// A continuation line of a folded header: it starts with a space or a tab.
fn is_continuation(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// A header's name as Dovecot reads it: the bytes before the first ':', without the spaces
/// and tabs before that ':'; and the value after it. None for a line without ':'.
fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let mut name = &line[..colon];
    while let Some(rest) = name.strip_suffix(b" ").or_else(|| name.strip_suffix(b"\t")) {
        name = rest;
    }
    Some((name, &line[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_a_preference_list() {
        let spec = UidlSpec::parse("dovecot,pop3d").unwrap();
        assert_eq!(spec.schemes(), [Scheme::Dovecot, Scheme::Pop3d]);
        assert_eq!(spec.to_string(), "dovecot,pop3d");
        for s in Scheme::ALL {
            assert_eq!(UidlSpec::parse(s.name()).unwrap().schemes(), [s]);
        }
        assert_eq!(UidlSpec::default().schemes(), [Scheme::Pop3d]);
        assert!(!UidlSpec::default().needs_headers());
        assert!(spec.needs_headers());
    }

    #[test]
    fn spec_refuses_bad_lists() {
        for (value, want) in [
            ("", UidlSpecError::EmptyName),
            ("dovecot,", UidlSpecError::EmptyName),
            (",pop3d", UidlSpecError::EmptyName),
            ("dovecot,,pop3d", UidlSpecError::EmptyName),
            ("Dovecot", UidlSpecError::Unknown("Dovecot".into())),
            ("dovecot, pop3d", UidlSpecError::Unknown(" pop3d".into())),
            ("qpopper", UidlSpecError::Unknown("qpopper".into())),
            (
                "pop3d,dovecot,pop3d",
                UidlSpecError::Repeated(Scheme::Pop3d),
            ),
        ] {
            assert_eq!(UidlSpec::parse(value), Err(want), "{value:?}");
        }
        let long = "x".repeat(1000);
        match UidlSpec::parse(&long) {
            Err(UidlSpecError::Unknown(name)) => assert_eq!(name.len(), MAX_ECHOED_NAME),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            UidlSpecError::Repeated(Scheme::Uw).to_string(),
            "uidl scheme uw listed twice"
        );
    }

    #[test]
    fn valid_ids_are_1_to_70_visible_ascii() {
        for (id, want) in [
            (&b""[..], false),
            (b"a", true),
            (b"!~", true),
            (b"a b", false),
            (b"a\tb", false),
            (b"\x7f", false),
            (b"caf\xc3\xa9", false),
        ] {
            assert_eq!(valid_id(id), want, "{id:?}");
        }
        assert!(valid_id(&[b'x'; 70]));
        assert!(!valid_id(&[b'x'; 71]));
    }

    #[test]
    fn fields_split_like_dovecot() {
        for (line, want) in [
            (&b"Date: x"[..], Some((&b"Date"[..], &b" x"[..]))),
            (b"Date :x", Some((b"Date", b"x"))),
            (b"Date\t :x:y", Some((b"Date", b"x:y"))),
            (b"no colon", None),
        ] {
            assert_eq!(split_field(line), want, "{line:?}");
        }
        assert_eq!(strip_eol(b"a\r\n"), b"a");
        assert_eq!(strip_eol(b"a\n"), b"a");
        assert_eq!(strip_eol(b"a\r"), b"a\r");
        assert_eq!(strip_eol(b"a\r\r\n"), b"a\r");
    }

    #[test]
    fn message_ids_fill_the_pop3d_slot_and_stop_when_all_are_done() {
        let spec = UidlSpec::parse("x-uidl,pop3d").unwrap();
        let mut ids = MessageIds::new(&spec, MboxContext::first());
        assert_eq!(ids.feed_header_line(b"X-UIDL: abc\n"), Feed::More);
        assert_eq!(ids.feed_header_line(b"\n"), Feed::Done);
        assert_eq!(ids.feed_header_line(b"X-UIDL: later\n"), Feed::Done);
        assert_eq!(ids.finish("p"), [Ok("abc".into()), Ok("p".into())]);
        let mut only_pop3d = MessageIds::new(&UidlSpec::default(), MboxContext::first());
        assert_eq!(only_pop3d.feed_header_line(b"Date: x\n"), Feed::Done);
    }

    #[test]
    fn message_ids_want_lines_until_every_scheme_is_done() {
        // popa3d reads on past the CRLF empty line that ends x-uidl's header.
        let spec = UidlSpec::parse("x-uidl,popa3d").unwrap();
        let mut ids = MessageIds::new(&spec, MboxContext::first());
        assert_eq!(ids.feed_header_line(b"Date: d\r\n"), Feed::More);
        assert_eq!(ids.feed_header_line(b"\r\n"), Feed::More);
        assert_eq!(ids.feed_header_line(b"X-UIDL: in-body\r\n"), Feed::More);
        assert_eq!(ids.feed_header_line(b"Delivered-To: x\r\n"), Feed::More);
        assert_eq!(ids.feed_header_line(b"\n"), Feed::Done);
        let row = ids.finish("p");
        assert_eq!(row[0], Err(Unnamed::Absent));
        // popa3d hashed the Delivered-To line after the CRLF empty line.
        use md5::{Digest, Md5};
        let d = Md5::digest(b"Date: d\r\nDelivered-To: x\r\n");
        let want = hex(&[d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]]);
        assert_eq!(row[1], Ok(want));
    }

    #[test]
    fn a_header_past_the_budget_is_not_read() {
        let mut s = SchemeState::new(Scheme::XUidl, MboxContext::first()).unwrap();
        let filler = format!("X-Filler: {}\n", "y".repeat(MAX_SCHEME_HEADER));
        assert_eq!(s.feed_header_line(filler.as_bytes()), Feed::Done);
        assert_eq!(s.feed_header_line(b"X-UIDL: late\n"), Feed::Done);
        assert_eq!(s.finish_checked(), Err(Unnamed::Absent));
    }
}
