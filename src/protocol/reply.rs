//! Replies on the wire: "+OK" / "-ERR [CODE]" status lines, and `DotWriter`, which turns a
//! message's bytes from disk into a multi-line body (CRLF endings, byte-stuffing, the final ".",
//! and TOP's body-line limit). Nothing here knows session state or files.

use std::fmt;
use std::io::{self, Write};

use crate::bytes::find_byte;

/// RFC 2449 section 4: a response line is at most 512 octets including the CRLF.
const MAX_REPLY: usize = 512;

/// RFC 2449 / RFC 3206 extended response codes. RFC 3206's AUTH is not here: the one reply
/// that carries it is `session::LOGIN_FAILED`, written whole because the router shares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InUse,
    LoginDelay,
    SysTemp,
    SysPerm,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InUse => "IN-USE",
            Code::LoginDelay => "LOGIN-DELAY",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
        }
    }
}

/// Writes "+OK text\r\n".
pub fn ok<W: Write + ?Sized>(out: &mut W, text: fmt::Arguments<'_>) -> io::Result<()> {
    status(out, "+OK", None, text)
}

/// Writes "-ERR [CODE] text\r\n".
pub fn err<W: Write + ?Sized>(
    out: &mut W,
    code: Option<Code>,
    text: fmt::Arguments<'_>,
) -> io::Result<()> {
    status(out, "-ERR", code, text)
}

fn status<W: Write + ?Sized>(
    out: &mut W,
    indicator: &str,
    code: Option<Code>,
    text: fmt::Arguments<'_>,
) -> io::Result<()> {
    use fmt::Write as _;
    let mut line = String::with_capacity(64);
    line.push_str(indicator);
    if let Some(code) = code {
        line.push_str(" [");
        line.push_str(code.as_str());
        line.push(']');
    }
    let before_text = line.len();
    line.push(' ');
    line.write_fmt(text)
        .map_err(|_| io::Error::other("formatting a reply failed"))?;
    if line.len() == before_text + 1 {
        // No text: no trailing space either.
        line.pop();
    }
    write_bounded(out, line)
}

/// RFC 5034 section 4: a server challenge, "+" SP base64 (the space stays when it is empty).
pub fn challenge<W: Write + ?Sized>(out: &mut W, base64: &str) -> io::Result<()> {
    write_bounded(out, format!("+ {base64}"))
}

/// Writes one reply line with its CRLF, cut to RFC 2449's 512 octets. Texts are ours, never
/// the client's, but a bound is cheap insurance.
fn write_bounded<W: Write + ?Sized>(out: &mut W, mut line: String) -> io::Result<()> {
    if line.len() > MAX_REPLY - 2 {
        let mut cut = MAX_REPLY - 2;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Writes one line of a multi-line body that we compose ourselves (LIST, UIDL, CAPA): our
/// lines never start with ".", so no stuffing is needed.
pub fn line<W: Write + ?Sized>(out: &mut W, text: fmt::Arguments<'_>) -> io::Result<()> {
    out.write_fmt(text)?;
    out.write_all(b"\r\n")
}

/// Ends a multi-line body that was written with `line`.
pub fn end<W: Write + ?Sized>(out: &mut W) -> io::Result<()> {
    out.write_all(b".\r\n")
}

/// A stateful writer for message bodies: every line leaves as CRLF whatever the file used, a
/// line starting with "." gets one more "." (RFC 1939 section 3), and `finish` ends an
/// unterminated last line and writes the terminating ".\r\n". With a body-line limit (TOP) it
/// passes the header block, the blank line, then at most that many body lines, and drops the
/// rest, so the caller can still stream the whole message through it.
pub struct DotWriter<W: Write> {
    out: W,
    /// Converted bytes not yet handed to `out`: lines are assembled here with plain `Vec`
    /// pushes and leave in blocks, which keeps per-line costs off the RETR path.
    pending: Vec<u8>,
    /// Octets of the current line seen so far on disk (its LF excluded).
    line_len: u64,
    after_cr: bool,
    in_headers: bool,
    body_lines_left: Option<u32>,
}

/// Bytes collected before they go to the underlying writer.
const PENDING_BLOCK: usize = 64 * 1024;

impl<W: Write> DotWriter<W> {
    pub fn new(out: W) -> DotWriter<W> {
        DotWriter {
            out,
            pending: Vec::new(),
            line_len: 0,
            after_cr: false,
            in_headers: true,
            body_lines_left: None,
        }
    }

    /// TOP: headers, the blank line, then at most `lines` lines of the body.
    pub fn with_body_lines(out: W, lines: u32) -> DotWriter<W> {
        let mut writer = DotWriter::new(out);
        writer.body_lines_left = Some(lines);
        writer
    }

    /// Whether TOP's body-line limit is reached: nothing more will be sent, so the caller
    /// can stop reading the message (and a short read after this point cuts nothing).
    pub fn done(&self) -> bool {
        !self.in_headers && self.body_lines_left == Some(0)
    }

    /// Adds a run of bytes that holds no LF.
    fn segment(&mut self, segment: &[u8]) {
        let Some(&last) = segment.last() else {
            return;
        };
        if self.line_len == 0 && segment[0] == b'.' {
            self.pending.push(b'.');
        }
        self.pending.extend_from_slice(segment);
        self.line_len += segment.len() as u64;
        self.after_cr = last == b'\r';
    }

    fn end_line(&mut self) {
        // A CR just before the LF on disk is already the CR of our CRLF.
        if !self.after_cr {
            self.pending.push(b'\r');
        }
        self.pending.push(b'\n');
        // An empty line ends the header block; in a CRLF file it is a lone CR.
        let empty = self.line_len == 0 || (self.line_len == 1 && self.after_cr);
        if self.in_headers {
            self.in_headers = !empty;
        } else if let Some(left) = self.body_lines_left.as_mut() {
            *left = left.saturating_sub(1);
        }
        self.line_len = 0;
        self.after_cr = false;
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Ends the body: completes a last line that has no line ending, then writes ".\r\n".
    pub fn finish(mut self) -> io::Result<W> {
        if self.line_len > 0 && !self.done() {
            self.pending.extend_from_slice(b"\r\n");
        }
        self.pending.extend_from_slice(b".\r\n");
        self.drain()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for DotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.capacity() == 0 {
            self.pending.reserve(PENDING_BLOCK.min(buf.len() * 2 + 16));
        }
        let mut rest = buf;
        while !rest.is_empty() && !self.done() {
            match find_byte(rest, b'\n') {
                Some(at) => {
                    self.segment(&rest[..at]);
                    self.end_line();
                    rest = &rest[at + 1..];
                }
                None => {
                    self.segment(rest);
                    rest = &[];
                }
            }
            if self.pending.len() >= PENDING_BLOCK {
                self.drain()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::scan::model::octets;

    fn body(input: &[u8], limit: Option<u32>, chunk: usize) -> Vec<u8> {
        let mut writer = match limit {
            Some(n) => DotWriter::with_body_lines(Vec::new(), n),
            None => DotWriter::new(Vec::new()),
        };
        for piece in input.chunks(chunk.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    /// Every case is checked whole and fed one byte at a time.
    fn check(input: &[u8], limit: Option<u32>, want: &[u8]) {
        for chunk in [input.len().max(1), 1, 2, 3] {
            assert_eq!(
                String::from_utf8_lossy(&body(input, limit, chunk)),
                String::from_utf8_lossy(want),
                "input {:?} limit {limit:?} chunk {chunk}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn empty_body_is_just_the_terminator() {
        check(b"", None, b".\r\n");
    }

    #[test]
    fn lf_lines_become_crlf() {
        check(b"a\nb\n", None, b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn crlf_lines_stay_crlf() {
        check(b"a\r\nb\r\n", None, b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn missing_final_newline_is_completed() {
        check(b"a\nlast", None, b"a\r\nlast\r\n.\r\n");
    }

    #[test]
    fn leading_dots_are_stuffed() {
        check(b".\n", None, b"..\r\n.\r\n");
        check(b"..x\n.y\nz.\n", None, b"...x\r\n..y\r\nz.\r\n.\r\n");
        check(b"a\n.", None, b"a\r\n..\r\n.\r\n");
    }

    #[test]
    fn bare_cr_inside_a_line_is_kept() {
        check(b"a\rb\n", None, b"a\rb\r\n.\r\n");
    }

    #[test]
    fn top_zero_sends_headers_and_blank_line_only() {
        check(
            b"Subject: x\nFrom: y\n\nbody1\nbody2\n",
            Some(0),
            b"Subject: x\r\nFrom: y\r\n\r\n.\r\n",
        );
    }

    #[test]
    fn top_counts_body_lines_only() {
        check(
            b"Subject: x\n\n1\n.2\n3\n",
            Some(2),
            b"Subject: x\r\n\r\n1\r\n..2\r\n.\r\n",
        );
    }

    #[test]
    fn top_with_more_lines_than_the_body_sends_everything() {
        check(
            b"Subject: x\n\n1\n2",
            Some(10),
            b"Subject: x\r\n\r\n1\r\n2\r\n.\r\n",
        );
    }

    #[test]
    fn top_finds_the_blank_line_in_crlf_files() {
        check(
            b"Subject: x\r\n\r\n1\r\n2\r\n",
            Some(1),
            b"Subject: x\r\n\r\n1\r\n.\r\n",
        );
    }

    #[test]
    fn top_of_message_without_body_sends_all_headers() {
        check(b"A: 1\nB: 2\n", Some(0), b"A: 1\r\nB: 2\r\n.\r\n");
    }

    #[test]
    fn octets_match_what_the_writer_sends_before_stuffing() {
        let cases: [&[u8]; 8] = [
            b"",
            b"a\n",
            b"a\r\n",
            b"a",
            b"a\r",
            b"x\n\ny\r\nz",
            b"\n\n",
            b"no dots here\n",
        ];
        for case in cases {
            let sent = body(case, None, 5);
            // Remove the terminator; these cases have no leading dots to unstuff.
            let payload = sent.len() - 3;
            // The scanner's reference rule: LIST and RETR's "+OK n octets" must be what we send.
            assert_eq!(octets(case), payload as u64, "{case:?}");
        }
    }

    #[test]
    fn status_lines_carry_codes_and_crlf() {
        let mut out = Vec::new();
        ok(&mut out, format_args!("2 messages")).unwrap();
        err(&mut out, Some(Code::InUse), format_args!("maildrop busy")).unwrap();
        err(&mut out, None, format_args!("")).unwrap();
        assert_eq!(
            out,
            b"+OK 2 messages\r\n-ERR [IN-USE] maildrop busy\r\n-ERR\r\n"
        );
    }

    #[test]
    fn challenges_keep_their_space_and_are_bounded() {
        let mut out = Vec::new();
        challenge(&mut out, "").unwrap();
        challenge(&mut out, "PDE+").unwrap();
        assert_eq!(out, b"+ \r\n+ PDE+\r\n");
        let mut out = Vec::new();
        challenge(&mut out, &"A".repeat(2000)).unwrap();
        assert_eq!(out.len(), MAX_REPLY);
    }

    #[test]
    fn status_lines_are_bounded() {
        let mut out = Vec::new();
        let long = "x".repeat(2000);
        ok(&mut out, format_args!("{long}")).unwrap();
        assert_eq!(out.len(), MAX_REPLY);
        assert!(out.ends_with(b"\r\n"));
    }
}
