//! Stored-id schemes: ids an old server wrote into the mbox headers and that pop3d reads back.
//! Dovecot (and UW's c-client) keep an IMAP UID per message in `X-UID: n` and the folder's
//! UIDVALIDITY in the first message's `X-IMAPbase: <uidvalidity> <uidnext> ...`; Dovecot's
//! default pop3_uidl_format `%08Xu%08Xv` prints the UID then the UIDVALIDITY (lowercase hex
//! on Debian's 2.3), UW ipop3d prints them the other way round (`%08lx%08lx`). mailutils and
//! qpopper write an `X-UIDL:` header and serve its value.
//!
//! All of these headers can arrive forged in mail from outside: values are parsed strictly
//! and the result is still checked by `valid_id`; duplicates are `assign`'s business.

use super::{is_continuation, is_empty_line, split_field, strip_eol, Feed, MboxContext, Unnamed};

/// Which number comes first in the printed id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UidOrder {
    /// Dovecot's default `%08Xu%08Xv`.
    UidFirst,
    /// UW ipop3d.
    ValidityFirst,
}

/// One header whose value a stored scheme collects: the first occurrence only, unfolded
/// (continuation lines joined with one space, which then makes the value invalid, since
/// none of these values may contain whitespace), trimmed of spaces and tabs at both ends.
#[derive(Clone, Debug, Default)]
struct FirstValue {
    state: Collect,
    value: Vec<u8>,
    /// The value grew past what any valid result can be: it is invalid, and no longer kept.
    too_long: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Collect {
    /// The header has not been seen yet.
    #[default]
    Waiting,
    /// The header's first line was the last line seen: continuation lines belong to it.
    Collecting,
    /// The header's value is complete (later occurrences are ignored).
    Complete,
}

/// The longest raw value kept (before trimming): a valid X-UIDL is at most `MAX_ID_LEN`
/// characters and a valid number far less, so past this much the value is invalid whatever
/// follows, and memory per message stays bounded.
const MAX_RAW_VALUE: usize = 1024;

impl FirstValue {
    /// Looks at one header line (not an empty line) for the header named `wanted` (ASCII
    /// case ignored) or, right after it, its continuation lines.
    fn feed(&mut self, wanted: &[u8], line: &[u8]) {
        let text = strip_eol(line);
        if is_continuation(line) {
            if self.state == Collect::Collecting {
                self.push(b" ");
                self.push(text);
            }
            return;
        }
        if self.state == Collect::Collecting {
            self.state = Collect::Complete;
        }
        if self.state != Collect::Waiting {
            return;
        }
        if let Some((name, value)) = split_field(text) {
            if name.eq_ignore_ascii_case(wanted) {
                self.state = Collect::Collecting;
                self.push(value);
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.too_long {
            return;
        }
        if self.value.len() + bytes.len() > MAX_RAW_VALUE {
            self.too_long = true;
            self.value = Vec::new();
            return;
        }
        self.value.extend_from_slice(bytes);
    }

    /// The trimmed value: Ok(None) if the header never came, Err if it is too long.
    fn get(&self) -> Result<Option<&[u8]>, Unnamed> {
        match (self.state, self.too_long) {
            (Collect::Waiting, _) => Ok(None),
            (_, true) => Err(Unnamed::Invalid),
            _ => Ok(Some(trim(&self.value))),
        }
    }
}

/// `bytes` without spaces and tabs at either end.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t');
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// A positive 32-bit decimal number written with digits only (Dovecot's X-UID parser stops at
/// the first non-digit and refuses anything but whitespace after it; 0 is no UID).
fn parse_u32(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = text.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })?;
    (n != 0).then_some(n)
}

/// X-UID and, in the first message, X-IMAPbase. The header block ends at an empty line,
/// "\n" or "\r\n", as Dovecot's header parser has it.
#[derive(Clone, Debug)]
pub(super) struct ImapUid {
    ctx: MboxContext,
    uid: FirstValue,
    /// Collected in the first message only: a later message's X-IMAPbase is not the folder's.
    base: FirstValue,
}

impl ImapUid {
    pub(super) fn new(ctx: MboxContext) -> Self {
        ImapUid {
            ctx,
            uid: FirstValue::default(),
            base: FirstValue::default(),
        }
    }

    pub(super) fn feed(&mut self, line: &[u8]) -> Feed {
        if is_empty_line(line) {
            return Feed::Done;
        }
        self.uid.feed(b"X-UID", line);
        if self.ctx.first {
            self.base.feed(b"X-IMAPbase", line);
        }
        Feed::More
    }

    /// The UIDVALIDITY of this (first) message's X-IMAPbase: its first word.
    pub(super) fn own_validity(&self) -> Option<u32> {
        let value = self.base.get().ok()??;
        let first_word = value.split(|&b| b == b' ' || b == b'\t').next()?;
        parse_u32(first_word)
    }

    pub(super) fn finish(self, order: UidOrder) -> Result<String, Unnamed> {
        let validity = if self.ctx.first {
            match self.base.get()? {
                None => self.ctx.uid_validity.ok_or(Unnamed::Absent)?,
                Some(_) => self.own_validity().ok_or(Unnamed::Invalid)?,
            }
        } else {
            self.ctx.uid_validity.ok_or(Unnamed::Absent)?
        };
        let uid = match self.uid.get()? {
            None => return Err(Unnamed::Absent),
            Some(value) => parse_u32(value).ok_or(Unnamed::Invalid)?,
        };
        Ok(match order {
            UidOrder::UidFirst => format!("{uid:08x}{validity:08x}"),
            UidOrder::ValidityFirst => format!("{validity:08x}{uid:08x}"),
        })
    }
}

/// The first X-UIDL header's value, as mailutils, qpopper and Dovecot (pop3_reuse_xuidl)
/// serve it. The header block ends at an empty line, "\n" or "\r\n".
#[derive(Clone, Debug, Default)]
pub(super) struct XUidl {
    value: FirstValue,
}

impl XUidl {
    pub(super) fn new() -> Self {
        XUidl::default()
    }

    pub(super) fn feed(&mut self, line: &[u8]) -> Feed {
        if is_empty_line(line) {
            return Feed::Done;
        }
        self.value.feed(b"X-UIDL", line);
        Feed::More
    }

    pub(super) fn finish(self) -> Result<String, Unnamed> {
        match self.value.get()? {
            None => Err(Unnamed::Absent),
            // Not UTF-8 is not 0x21..0x7E either.
            Some(value) => String::from_utf8(value.to_vec()).map_err(|_| Unnamed::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scheme, SchemeState};
    use super::*;

    fn run(scheme: Scheme, ctx: MboxContext, text: &[u8]) -> SchemeState {
        let mut s = SchemeState::new(scheme, ctx).unwrap();
        for line in text.split_inclusive(|&b| b == b'\n') {
            if s.feed_header_line(line) == Feed::Done {
                break;
            }
        }
        s
    }

    fn id(scheme: Scheme, ctx: MboxContext, text: &[u8]) -> Result<String, Unnamed> {
        run(scheme, ctx, text).finish_checked()
    }

    #[test]
    fn dovecot_prints_uid_then_validity_and_uw_the_reverse() {
        let first = b"X-IMAPbase: 1796514011 0000000005\nX-UID: 1\nStatus: RO\n\n";
        assert_eq!(
            id(Scheme::Dovecot, MboxContext::first(), first),
            Ok("000000016b14a0db".into())
        );
        assert_eq!(
            id(Scheme::Uw, MboxContext::first(), first),
            Ok("6b14a0db00000001".into())
        );
        let later = MboxContext::later(Some(0x6b14a0db));
        assert_eq!(
            id(Scheme::Dovecot, later, b"X-UID: 4294967295\n\n"),
            Ok("ffffffff6b14a0db".into())
        );
    }

    #[test]
    fn the_first_message_hands_its_validity_on() {
        let s = run(
            Scheme::Dovecot,
            MboxContext::first(),
            b"X-IMAPbase: 42 7 $Forwarded\n\n",
        );
        assert_eq!(s.uid_validity(), Some(42));
        assert_eq!(s.finish_checked(), Err(Unnamed::Absent));
        // A later message's own X-IMAPbase is ignored.
        let s = run(
            Scheme::Dovecot,
            MboxContext::later(None),
            b"X-IMAPbase: 42 7\nX-UID: 3\n\n",
        );
        assert_eq!(s.uid_validity(), None);
        assert_eq!(s.finish_checked(), Err(Unnamed::Absent));
    }

    #[test]
    fn x_uid_values_are_parsed_strictly() {
        let ctx = MboxContext::later(Some(1));
        for (text, want) in [
            (&b"X-UID: 7\n\n"[..], Ok("0000000700000001".to_string())),
            (b"x-uid:7 \r\n\r\n", Ok("0000000700000001".into())),
            (b"X-UID: 7\nX-UID: 8\n\n", Ok("0000000700000001".into())),
            (b"Subject: x\n\n", Err(Unnamed::Absent)),
            (b"X-UID: 0\n\n", Err(Unnamed::Invalid)),
            (b"X-UID: +7\n\n", Err(Unnamed::Invalid)),
            (b"X-UID: 7x\n\n", Err(Unnamed::Invalid)),
            (b"X-UID: 4294967296\n\n", Err(Unnamed::Invalid)),
            (b"X-UID: 99999999999999999999999\n\n", Err(Unnamed::Invalid)),
            (b"X-UID:\n\n", Err(Unnamed::Invalid)),
            (b"X-UID: 7\n 8\n\n", Err(Unnamed::Invalid)),
            (b"\nX-UID: 7\n", Err(Unnamed::Absent)),
            (b"\r\nX-UID: 7\n", Err(Unnamed::Absent)),
        ] {
            assert_eq!(id(Scheme::Dovecot, ctx, text), want, "{text:?}");
        }
        assert_eq!(
            id(Scheme::Dovecot, MboxContext::later(None), b"X-UID: 7\n\n"),
            Err(Unnamed::Absent)
        );
        for base in [
            &b"X-IMAPbase: 0 5\n"[..],
            b"X-IMAPbase: x 5\n",
            b"X-IMAPbase:\n",
        ] {
            let text = [base, b"X-UID: 1\n\n"].concat();
            assert_eq!(
                id(Scheme::Uw, MboxContext::first(), &text),
                Err(Unnamed::Invalid),
                "{base:?}"
            );
        }
    }

    #[test]
    fn x_uidl_is_the_first_value_if_it_is_a_valid_id() {
        let long = format!("X-UIDL: {}\n\n", "a".repeat(71));
        let max = format!("X-UIDL: {}\n\n", "a".repeat(70));
        let huge = format!("X-UIDL: {}\n\n", "a".repeat(10_000));
        for (text, want) in [
            (
                &b"X-UIDL: 1a2b.1700000000.3\n\n"[..],
                Ok("1a2b.1700000000.3".to_string()),
            ),
            (b"x-uidl:\t<abc>  \r\n\r\n", Ok("<abc>".into())),
            (b"X-UIDL: first\nX-UIDL: second\n\n", Ok("first".into())),
            (b"X-UIDL: two words\n\n", Err(Unnamed::Invalid)),
            (b"X-UIDL: folded\n more\n\n", Err(Unnamed::Invalid)),
            (b"X-UIDL:  \n\n", Err(Unnamed::Invalid)),
            (b"X-UIDL: caf\xc3\xa9\n\n", Err(Unnamed::Invalid)),
            (b"X-UIDL: a\x7fb\n\n", Err(Unnamed::Invalid)),
            (b"X-UIDLs: a\n\n", Err(Unnamed::Absent)),
            (long.as_bytes(), Err(Unnamed::Invalid)),
            (huge.as_bytes(), Err(Unnamed::Invalid)),
            (max.as_bytes(), Ok("a".repeat(70))),
        ] {
            assert_eq!(
                id(Scheme::XUidl, MboxContext::first(), text),
                want,
                "{:?}",
                String::from_utf8_lossy(&text[..text.len().min(40)])
            );
        }
    }

    #[test]
    fn trims_and_numbers() {
        assert_eq!(trim(b" \ta b\t "), b"a b");
        assert_eq!(trim(b"  "), b"");
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"00000000001"), Some(1));
        assert_eq!(parse_u32(b"0"), None);
        assert_eq!(parse_u32(b"0001"), Some(1));
    }
}
