//! Header-hash schemes: popa3d 1.0.x, solid-pop3d 0.15 and Dovecot's `%m`, each an md-5
//! over its own choice of header lines, as the servers' sources do it (popa3d `mailbox.c`
//! `mailbox_parse` and `pop_trans.c`; solid-pop3d `src/mailbox.c` `mb_parse`/`mb_fixed`;
//! Dovecot `index/mbox/mbox-md5-apop3d.c` over `lib-mail/message-header-parser.c`).
//! Only what each server hashes differs; all three always name a message (a message
//! without the hashed headers gets the digest of nothing, as on the old server).

use md5::{Digest, Md5};

use super::{hex, is_continuation, is_empty_line, split_field, strip_eol, Feed};

/// popa3d: hashes whole raw lines (name, value, CR if any, LF) of the first Received and its
/// continuation lines, every Delivered-To, Date and Message-ID only while no Received has
/// started, and every X-Delivery-ID; continuation lines inherit the choice of the line they
/// continue. Names match without regard to case, except that X-Delivery-ID must start with a
/// capital X (popa3d switches on the first byte and has no case 'x'). Only an LF-only empty
/// line ends the header block ("\r\n" is a header line to popa3d, matching nothing).
#[derive(Clone, Debug)]
pub(super) struct Popa3d {
    md5: Md5,
    /// Whether the current line (and so its continuation lines) is hashed.
    fixed: bool,
    /// Whether a Received line has started.
    received: bool,
}

impl Popa3d {
    pub(super) fn new() -> Self {
        Popa3d {
            md5: Md5::new(),
            fixed: false,
            received: false,
        }
    }

    pub(super) fn feed(&mut self, line: &[u8]) -> Feed {
        let Some(&first) = line.first() else {
            return Feed::More;
        };
        if first == b'\n' {
            return Feed::Done;
        }
        self.fixed = match first {
            b' ' | b'\t' => self.fixed,
            b'R' | b'r' => {
                // Only the first Received: one from the local MTA is enough.
                !self.received && {
                    self.received = starts_with_ignore_case(line, b"Received:");
                    self.received
                }
            }
            b'D' | b'd' => {
                starts_with_ignore_case(line, b"Delivered-To:")
                    || (!self.received && starts_with_ignore_case(line, b"Date:"))
            }
            b'M' | b'm' => !self.received && starts_with_ignore_case(line, b"Message-ID:"),
            b'X' => starts_with_ignore_case(line, b"X-Delivery-ID:"),
            _ => false,
        };
        if self.fixed {
            self.md5.update(line);
        }
        Feed::More
    }

    /// popa3d prints the digest's first 8 bytes as two 32-bit little-endian words with
    /// "%08x%08x" (pop_trans.c): bytes 3,2,1,0,7,6,5,4.
    pub(super) fn finish(self) -> String {
        let d: [u8; 16] = self.md5.finalize().into();
        hex(&[d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]])
    }
}

/// solid-pop3d: hashes every raw line (line break included) that starts, case-sensitively,
/// with "Received:", "Date:", "Message-Id:" or "Subject:"; no continuation lines (each line
/// is judged by its own start). Only an LF-only empty line ends the header block.
#[derive(Clone, Debug)]
pub(super) struct SolidPop3d {
    md5: Md5,
}

/// solid-pop3d `mb_fixed`: the prefixes, compared with strncmp.
const SOLID_FIXED: [&[u8]; 4] = [b"Received:", b"Date:", b"Message-Id:", b"Subject:"];

impl SolidPop3d {
    pub(super) fn new() -> Self {
        SolidPop3d { md5: Md5::new() }
    }

    pub(super) fn feed(&mut self, line: &[u8]) -> Feed {
        if line == b"\n" {
            return Feed::Done;
        }
        if SOLID_FIXED.iter().any(|p| line.starts_with(p)) {
            self.md5.update(line);
        }
        Feed::More
    }

    /// 32 lowercase hex digits (maildrop.c `md_print_uidl`).
    pub(super) fn finish(self) -> String {
        let d: [u8; 16] = self.md5.finalize().into();
        hex(&d)
    }
}

/// Which field the current header line belongs to, for Dovecot's `%m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Md5Field {
    /// Hashed: its value and every continuation line.
    Hashed,
    /// The first Received: hashed, and its end marks "Received seen".
    FirstReceived,
    /// Not hashed.
    Other,
}

/// Dovecot `%m`: md-5 over header *values*: the first Received (first line and continuation
/// lines), every Delivered-To and X-Delivery-ID, and Date and Message-ID while the first
/// Received has not ended. Names match case-insensitively after trimming spaces and tabs
/// before the ':'. A first line's value starts after the ':' with one space or tab skipped; a
/// continuation line is taken whole (leading whitespace kept); line breaks (LF, or CRLF) are
/// never hashed. An empty line, "\n" or "\r\n", ends the header block.
#[derive(Clone, Debug)]
pub(super) struct DovecotMd5 {
    md5: Md5,
    field: Md5Field,
    /// The first Received header has ended (a later header line began).
    seen_received: bool,
}

impl DovecotMd5 {
    pub(super) fn new() -> Self {
        DovecotMd5 {
            md5: Md5::new(),
            field: Md5Field::Other,
            seen_received: false,
        }
    }

    pub(super) fn feed(&mut self, line: &[u8]) -> Feed {
        if is_empty_line(line) {
            return Feed::Done;
        }
        let text = strip_eol(line);
        if is_continuation(line) {
            if self.field != Md5Field::Other {
                self.md5.update(text);
            }
            return Feed::More;
        }
        // A new header: the one before it has ended.
        if self.field == Md5Field::FirstReceived {
            self.seen_received = true;
        }
        // A line without ':' is a header whose name is the whole line and whose value is
        // empty (message-header-parser.c); it hashes nothing.
        let (name, value) = split_field(text).unwrap_or((text, &[]));
        let value = match value.first() {
            Some(b' ' | b'\t') => &value[1..],
            _ => value,
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        // Date and Message-ID only until the first Received has ended: that one carries a
        // more trusted date and id (mbox-md5-apop3d.c).
        let hashed = is(b"Delivered-To")
            || is(b"X-Delivery-ID")
            || (!self.seen_received && (is(b"Date") || is(b"Message-ID")));
        self.field = if is(b"Received") && !self.seen_received {
            Md5Field::FirstReceived
        } else if hashed {
            Md5Field::Hashed
        } else {
            Md5Field::Other
        };
        if self.field != Md5Field::Other {
            self.md5.update(value);
        }
        Feed::More
    }

    /// 32 lowercase hex digits.
    pub(super) fn finish(self) -> String {
        let d: [u8; 16] = self.md5.finalize().into();
        hex(&d)
    }
}

/// popa3d's `eq`: `line` starts with `name`, ASCII case ignored.
fn starts_with_ignore_case(line: &[u8], name: &[u8]) -> bool {
    line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::super::{MboxContext, Scheme, SchemeState};
    use super::*;

    /// The id `scheme` gives a message whose lines after the "From " line are `text`.
    fn id(scheme: Scheme, text: &[u8]) -> String {
        let mut s = SchemeState::new(scheme, MboxContext::first()).unwrap();
        for line in text.split_inclusive(|&b| b == b'\n') {
            if s.feed_header_line(line) == Feed::Done {
                break;
            }
        }
        s.finish().unwrap()
    }

    fn md5_hex(data: &[u8]) -> String {
        hex(&Md5::digest(data))
    }

    /// popa3d's output for the md-5 of `data`.
    fn popa3d_of(data: &[u8]) -> String {
        let d = Md5::digest(data);
        hex(&[d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]])
    }

    #[test]
    fn popa3d_prints_the_first_8_bytes_in_its_byte_order() {
        // MD5("") = d41d8cd98f00b204...; popa3d names a header-less message d98c1dd404b2008f.
        assert_eq!(
            id(Scheme::Popa3d, b"Subject: none\n\nbody\n"),
            "d98c1dd404b2008f"
        );
    }

    #[test]
    fn popa3d_hashes_its_lines() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            (
                "first Received with continuation, not the second",
                b"Received: a\n\tb\nReceived: c\n\td\nSubject: s\n\n",
                b"Received: a\n\tb\n",
            ),
            (
                "Date and Message-ID only before the first Received",
                b"Date: 1\nMessage-ID: <m>\nReceived: r\nDate: 2\nMessage-ID: <n>\n\n",
                b"Date: 1\nMessage-ID: <m>\nReceived: r\n",
            ),
            (
                "Delivered-To anywhere, with its continuation",
                b"Received: r\nDelivered-To: a\n b\nDelivered-To: c\n\n",
                b"Received: r\nDelivered-To: a\n b\nDelivered-To: c\n",
            ),
            (
                "names without regard to case; Message-Id matches",
                b"message-id: <m>\nDATE: d\nreceived: r\n\n",
                b"message-id: <m>\nDATE: d\nreceived: r\n",
            ),
            (
                "X-Delivery-ID needs a capital X",
                b"x-delivery-id: 1\nX-DELIVERY-ID: 2\nX-Delivery-ID: 3\n\n",
                b"X-DELIVERY-ID: 2\nX-Delivery-ID: 3\n",
            ),
            (
                "a continuation of an unhashed line is not hashed",
                b"Subject: s\n x\nDate: d\n y\n\n",
                b"Date: d\n y\n",
            ),
            (
                "CR kept; a CRLF empty line does not end the header",
                b"Date: d\r\n\r\nDelivered-To: body-ish\r\n\nDelivered-To: body\n",
                b"Date: d\r\nDelivered-To: body-ish\r\n",
            ),
            (
                "a Reply-To before Received changes nothing",
                b"Reply-To: x\nReceived: r\n\n",
                b"Received: r\n",
            ),
            (
                "a name must end in its colon",
                b"Date : d\nDated: x\nDate:d\n\n",
                b"Date:d\n",
            ),
            ("last line without LF", b"Date: d", b"Date: d"),
        ];
        for (what, text, hashed) in cases {
            assert_eq!(id(Scheme::Popa3d, text), popa3d_of(hashed), "{what}");
        }
    }

    #[test]
    fn solid_pop3d_hashes_its_lines() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            (
                "every matching line, no continuation lines",
                b"Received: a\n\tb\nReceived: c\nSubject: s\nDate: d\nFrom: f\n\n",
                b"Received: a\nReceived: c\nSubject: s\nDate: d\n",
            ),
            (
                "case-sensitive: Message-Id, not Message-ID or date",
                b"Message-ID: <a>\nMessage-Id: <b>\ndate: x\nsubject: y\n\n",
                b"Message-Id: <b>\n",
            ),
            (
                "CR kept; a CRLF empty line does not end the header",
                b"Subject: s\r\n\r\nDate: in body\r\n\nDate: after\n",
                b"Subject: s\r\nDate: in body\r\n",
            ),
            ("no hashed line", b"From: f\n\nDate: body\n", b""),
        ];
        for (what, text, hashed) in cases {
            assert_eq!(id(Scheme::SolidPop3d, text), md5_hex(hashed), "{what}");
        }
    }

    #[test]
    fn dovecot_md5_hashes_values() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            (
                "values only, one space skipped, no line breaks",
                b"Date:  two\nSubject: s\nDelivered-To:\tx\n\n",
                b" twox",
            ),
            (
                "first Received whole, continuation lines kept with their whitespace",
                b"Received: a\n\tb\r\n  c\nReceived: d\n\n",
                b"a\tb  c",
            ),
            (
                "Date and Message-ID only until the first Received ends",
                b"Message-ID: <m>\nReceived: r\n cont\nDate: late\nMessage-Id: <late>\n\n",
                b"<m>r cont",
            ),
            (
                "names case-insensitive, spaces before the colon trimmed",
                b"x-delivery-id : 1\nDELIVERED-TO: 2\n\n",
                b"12",
            ),
            (
                "a CRLF empty line ends the header",
                b"Date: d\r\n\r\nDelivered-To: body\r\n",
                b"d",
            ),
            ("CR before LF dropped", b"Date: d\r\n\n", b"d"),
            (
                "a line without colon hashes nothing",
                b"Date\nDate: x\n\n",
                b"x",
            ),
        ];
        for (what, text, hashed) in cases {
            assert_eq!(id(Scheme::DovecotMd5, text), md5_hex(hashed), "{what}");
        }
    }
}
