//! The unique ids of a maildrop under a `--uidl` list that names another server's scheme
//! (issue 15): reads each message's header lines, as the file holds them, for the schemes of
//! `uidl`, and makes `uidl::assign`'s choice the ids the session shows. Runs after the scan
//! (and `scan::distinguish`), so pop3d's own ids, the fallback, are final; with the default
//! list (`pop3d` alone) it is never called and costs nothing.
//!
//! The scan itself is left as it is: its hashing stops at its own header end and at
//! `scan::MAX_HASHED_HEADER`, while popa3d and solid-pop3d read on past a CRLF empty line, so
//! the schemes read their lines here, at most `uidl::MAX_SCHEME_HEADER` bytes a message,
//! from where the scan says the message starts.

use std::io::{self, Read};

use super::scan::MessageInfo;
use super::uid_owners::Owners;
use crate::bytes::find_byte;
use crate::uidl::{
    AssignReport, Assigner, Feed, MboxContext, MessageIds, Named, UidlSpec, Unnamed,
};

/// First read per message: a typical header block (Received chain, DKIM) in one read, without
/// copying much of the body, which the schemes never read.
const FIRST_HEADER_READ: usize = 4 * 1024;

/// Later reads of a long header block.
const HEADER_READ: usize = 16 * 1024;

/// Who named each message, and the counts for the session's log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chosen {
    /// Per message, in file order.
    pub named: Vec<Named>,
    pub report: AssignReport,
    /// The UIDVALIDITY of the first message's own X-IMAPbase header, if valid: what the
    /// maildrop remembers for when that message is gone.
    pub uid_validity: Option<u32>,
}

/// Gives `messages` the ids of `spec`: `content(m)` reads message `m`'s content (from the
/// byte after its "From " line); `remembered` is the UIDVALIDITY an earlier session saw, for
/// an mbox whose first message no longer has the X-IMAPbase header; `owners` the record that
/// holds the ids of deleted messages, which no other message takes. Every message's `uid`
/// shows the chosen id afterwards; its digest is untouched.
pub fn choose<R: Read>(
    messages: &mut [MessageInfo],
    spec: &UidlSpec,
    remembered: Option<u32>,
    owners: &Owners,
    content: impl FnMut(&MessageInfo) -> io::Result<R>,
) -> io::Result<Chosen> {
    let (chosen, _) = choose_noting_first(messages, spec, remembered, owners, content, false)?;
    Ok(chosen)
}

/// `choose`, and for each message what the list's first scheme gave it (its id, taken or
/// not, or why it gave none): the dry run shows it for messages that scheme did not name.
pub fn choose_with_first<R: Read>(
    messages: &mut [MessageInfo],
    spec: &UidlSpec,
    remembered: Option<u32>,
    owners: &Owners,
    content: impl FnMut(&MessageInfo) -> io::Result<R>,
) -> io::Result<(Chosen, Vec<Result<String, Unnamed>>)> {
    choose_noting_first(messages, spec, remembered, owners, content, true)
}

/// Feeds `reader`'s lines to `ids` until they want no more. The first read is
/// `FIRST_HEADER_READ` bytes, most header blocks whole; later ones fill `buf`. Lines that lie
/// whole in `buf` are fed from it; only a line cut by a read is gathered in `line`.
fn feed_lines(
    mut reader: impl Read,
    buf: &mut [u8],
    line: &mut Vec<u8>,
    ids: &mut MessageIds,
) -> io::Result<()> {
    line.clear();
    let mut want = FIRST_HEADER_READ.min(buf.len());
    loop {
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        want = buf.len();
        let mut rest = &buf[..n];
        while let Some(at) = find_byte(rest, b'\n') {
            let piece = &rest[..=at];
            rest = &rest[at + 1..];
            let feed = if line.is_empty() {
                ids.feed_header_line(piece)
            } else {
                line.extend_from_slice(piece);
                let feed = ids.feed_header_line(line);
                line.clear();
                feed
            };
            if feed == Feed::Done {
                return Ok(());
            }
        }
        line.extend_from_slice(rest);
    }
    if !line.is_empty() {
        ids.feed_header_line(line);
    }
    Ok(())
}

/// Reads each message's candidates and hands them to the assigner at once, so that only the
/// ids taken are held, never every candidate of the maildrop. With `note_first`, also keeps
/// what the first scheme gave each message.
fn choose_noting_first<R: Read>(
    messages: &mut [MessageInfo],
    spec: &UidlSpec,
    remembered: Option<u32>,
    owners: &Owners,
    mut content: impl FnMut(&MessageInfo) -> io::Result<R>,
    note_first: bool,
) -> io::Result<(Chosen, Vec<Result<String, Unnamed>>)> {
    let mut assigner = Assigner::new(spec.schemes(), messages.len());
    let mut first = Vec::new();
    let mut own_validity = None;
    let mut validity = remembered;
    let mut line = Vec::new();
    let mut buf = vec![0u8; HEADER_READ];
    // A line longer than the whole budget is cut at the budget; the scheme is done by then.
    let budget = crate::uidl::MAX_SCHEME_HEADER as u64 + 1;
    let held = |i: usize| messages.get(i).map(|m: &MessageInfo| *m.uid.digest());
    let retired = |i: usize, id: &str| held(i).is_some_and(|d| !owners.may_take(id, &d));
    for (index, m) in messages.iter().enumerate() {
        let ctx = if index == 0 {
            MboxContext::first_remembering(remembered)
        } else {
            MboxContext::later(validity)
        };
        let mut ids = MessageIds::new(spec, ctx);
        let reader = content(m)?.take(budget.min(m.content_len));
        feed_lines(reader, &mut buf, &mut line, &mut ids)?;
        if index == 0 {
            own_validity = ids.uid_validity();
            validity = own_validity.or(remembered);
        }
        let row = ids.finish(&m.uid.to_string());
        if note_first {
            first.push(row.first().cloned().unwrap_or(Err(Unnamed::Absent)));
        }
        assigner.push(row, retired);
    }
    let chosen = assigner.finish(|i| messages.get(i).map(|m| m.uid.to_string()), retired);
    for (m, id) in messages.iter_mut().zip(chosen.ids) {
        m.uid.choose(id);
    }
    Ok((
        Chosen {
            named: chosen.named,
            report: chosen.report,
            uid_validity: own_validity,
        },
        first,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::scan::{self, scan_with_buffer};
    use crate::uidl::Scheme;

    /// The ids of `mbox` under `spec`, with who named each.
    fn ids(mbox: &[u8], spec: &str) -> (Vec<String>, Chosen) {
        let mut s = scan_with_buffer(mbox, 4096).expect("scan");
        let spec = UidlSpec::parse(spec).expect("spec");
        let chosen = choose(&mut s.messages, &spec, None, &Owners::new(), |m| {
            let start = m.content_start as usize;
            Ok(&mbox[start..start + m.content_len as usize])
        })
        .expect("choose");
        let ids = s.messages.iter().map(|m| m.uid.to_string()).collect();
        (ids, chosen)
    }

    fn pop3d_ids(mbox: &[u8]) -> Vec<String> {
        let s = scan::scan(mbox).expect("scan");
        s.messages.iter().map(|m| m.uid.to_string()).collect()
    }

    const DOVECOT: &[u8] = b"From a@x Mon Jan  1 00:00:00 2024\n\
X-IMAPbase: 1700000000 4\nX-UID: 1\nSubject: one\n\nbody\n\n\
From b@x Mon Jan  1 00:00:01 2024\nX-UID: 2\nSubject: two\n\nbody\n\n\
From c@x Mon Jan  1 00:00:02 2024\nSubject: new, no X-UID\n\nbody\n\n\
From d@x Mon Jan  1 00:00:03 2024\nX-UID: 2\nSubject: forged copy of 2\n\nbody\n";

    #[test]
    fn dovecot_ids_with_pop3d_for_the_rest() {
        let (got, chosen) = ids(DOVECOT, "dovecot,pop3d");
        let own = pop3d_ids(DOVECOT);
        assert_eq!(got[0], "000000016553f100");
        assert_eq!(got[1], "000000026553f100");
        assert_eq!(got[2], own[2], "no X-UID: pop3d's id");
        assert_eq!(got[3], own[3], "an X-UID taken before: pop3d's id");
        assert_eq!(
            chosen.named,
            [
                Named::Scheme(Scheme::Dovecot),
                Named::Scheme(Scheme::Dovecot),
                Named::Scheme(Scheme::Pop3d),
                Named::Scheme(Scheme::Pop3d),
            ]
        );
        assert!(chosen.report.unusual(), "a duplicate is worth a warning");
        let line = chosen.report.to_string();
        assert!(
            line.contains("passed on 1 with an id taken before"),
            "{line}"
        );
        assert!(line.contains("passed on 1 without its header"), "{line}");
    }

    #[test]
    fn a_remembered_uid_validity_names_messages_once_the_first_is_gone() {
        // DOVECOT without its first message, which held X-IMAPbase.
        let rest = &DOVECOT[DOVECOT.windows(9).position(|w| w == b"From b@x ").unwrap()..];
        let spec = UidlSpec::parse("dovecot,pop3d").unwrap();
        let run = |remembered| {
            let mut s = scan_with_buffer(rest, 4096).expect("scan");
            let chosen = choose(&mut s.messages, &spec, remembered, &Owners::new(), |m| {
                let start = m.content_start as usize;
                Ok(&rest[start..start + m.content_len as usize])
            })
            .expect("choose");
            let ids: Vec<String> = s.messages.iter().map(|m| m.uid.to_string()).collect();
            (ids, chosen)
        };
        let (forgotten, _) = run(None);
        assert_eq!(forgotten, pop3d_ids(rest), "without it: pop3d's ids");
        let (got, chosen) = run(Some(1_700_000_000));
        assert_eq!(got[0], "000000026553f100", "the id Dovecot gave");
        assert_eq!(got[1], pop3d_ids(rest)[1]);
        assert_eq!(chosen.uid_validity, None, "nothing new to remember");
        let (_, whole) = ids(DOVECOT, "dovecot,pop3d");
        assert_eq!(whole.uid_validity, Some(1_700_000_000));
    }

    #[test]
    fn an_own_x_imapbase_wins_over_the_remembered_one() {
        let spec = UidlSpec::parse("dovecot,pop3d").unwrap();
        let mut s = scan_with_buffer(DOVECOT, 4096).expect("scan");
        choose(&mut s.messages, &spec, Some(7), &Owners::new(), |m| {
            let start = m.content_start as usize;
            Ok(&DOVECOT[start..start + m.content_len as usize])
        })
        .expect("choose");
        assert_eq!(s.messages[1].uid.to_string(), "000000026553f100");
    }

    /// A reader that returns one byte per read: every line is cut by a read.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn lines_cut_by_reads_are_fed_whole() {
        let filler = "f".repeat(3 * FIRST_HEADER_READ);
        let mbox = format!(
            "{}From z@x Mon Jan  1 00:00:09 2024\nX-Filler: {filler}\nX-UIDL: after-the-cut\n\nb\n",
            String::from_utf8_lossy(DOVECOT)
        );
        let mbox = mbox.as_bytes();
        for spec in [
            "dovecot,pop3d",
            "popa3d",
            "solid-pop3d",
            "dovecot-md5",
            "x-uidl,pop3d",
        ] {
            let (whole, _) = ids(mbox, spec);
            let mut s = scan_with_buffer(mbox, 4096).expect("scan");
            let spec = UidlSpec::parse(spec).expect("spec");
            choose(&mut s.messages, &spec, None, &Owners::new(), |m| {
                let start = m.content_start as usize;
                Ok(OneByte(&mbox[start..start + m.content_len as usize]))
            })
            .expect("choose");
            let bytewise: Vec<String> = s.messages.iter().map(|m| m.uid.to_string()).collect();
            assert_eq!(bytewise, whole, "{spec}");
        }
        assert_eq!(ids(mbox, "x-uidl,pop3d").0[4], "after-the-cut");
    }

    #[test]
    fn uw_is_the_other_order() {
        let (got, _) = ids(DOVECOT, "uw,pop3d");
        assert_eq!(&got[..2], ["6553f10000000001", "6553f10000000002"]);
    }

    #[test]
    fn a_header_only_scheme_alone_still_names_every_message_uniquely() {
        let (got, chosen) = ids(DOVECOT, "dovecot");
        let unique: std::collections::HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len());
        assert_eq!(chosen.named[2], Named::Fallback);
        assert!(got.iter().all(|id| crate::uidl::valid_id(id.as_bytes())));
    }

    #[test]
    fn over_long_and_non_ascii_x_uidl_values_are_passed_on() {
        let long = "y".repeat(71);
        let mbox = format!(
            "From a@x Mon Jan  1 00:00:00 2024\nX-UIDL: good-1\n\nb\n\n\
From a@x Mon Jan  1 00:00:00 2024\nX-UIDL: {long}\n\nb\n\n\
From a@x Mon Jan  1 00:00:00 2024\nX-UIDL: caf\u{e9}\n\nb\n"
        );
        let (got, chosen) = ids(mbox.as_bytes(), "x-uidl,pop3d");
        assert_eq!(got[0], "good-1");
        let own = pop3d_ids(mbox.as_bytes());
        assert_eq!(&got[1..], &own[1..]);
        assert!(chosen
            .report
            .to_string()
            .contains("passed on 2 with an invalid id"));
    }

    #[test]
    fn header_lines_are_read_past_a_crlf_empty_line_for_popa3d() {
        // popa3d ends the header only at an LF-only empty line: the Delivered-To after the
        // CRLF empty line counts.
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\r\nDate: d\r\n\r\nDelivered-To: x\r\n";
        let (got, _) = ids(mbox, "popa3d");
        use md5::{Digest, Md5};
        let d = Md5::digest(b"Date: d\r\nDelivered-To: x\r\n");
        let want: String = [d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, [want]);
    }

    #[test]
    fn an_endless_header_is_read_only_up_to_the_budget() {
        let mut mbox = b"From a@x Mon Jan  1 00:00:00 2024\nX-Filler: ".to_vec();
        mbox.extend(std::iter::repeat_n(
            b'z',
            4 * crate::uidl::MAX_SCHEME_HEADER,
        ));
        mbox.extend_from_slice(b"\nX-UIDL: late\n\nbody\n");
        let (got, chosen) = ids(&mbox, "x-uidl,pop3d");
        assert_eq!(got, pop3d_ids(&mbox));
        assert_eq!(chosen.named, [Named::Scheme(Scheme::Pop3d)]);
    }
}
