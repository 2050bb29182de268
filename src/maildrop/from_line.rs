//! The mbox separator rule: whether one line that begins "From " is a From_ separator or a
//! body line that merely begins with that word. Pure: one line in, a yes or no out.
//!
//! A separator is "From ", a sender, then a date in one of the forms delivery agents write,
//! as careful mbox readers accept them (Dovecot's `mbox_from_parse`, mutt's `is_from`):
//!
//! ```text
//! From alice@example.org  Thu Jan  1 00:00:00 2026          postfix local, Dovecot, procmail
//! From alice@example.org Thu Jan  1 00:00:00 2026           exim, sendmail mail.local, mutt
//! From alice@example.org Thu Jan 01 00:00:00 2026           a zero-padded day
//! From MAILER-DAEMON Thu Jan  1 00:00:00 2026               bounces (an empty envelope sender)
//! From "a b"@example.org Thu Jan  1 00:00:00 2026 +0000     quoted local part, offset after
//! From x@y Wed Aug  2 00:39:12 MET DST 1995                 zone names before the year
//! From x@y Thu Jan  1 00:00 26                              no seconds, two-digit year
//! From x@y Thu, 1 Jan 2026 00:00:00 +0000                   the RFC 822 order Dovecot reads
//! From x@y Thu Jan  1 00:00:00 2026 remote from host       UUCP: anything after the year
//! ```
//!
//! The sender is one word, possibly starting with a quoted part that holds spaces, possibly
//! empty ("From  Thu ..."), or pipermail's "x at y"; the date must be complete: a weekday
//! name, a month name, a day, hours and minutes, a year. A sentence ("From here on, ...",
//! "From me to you on Monday") never has all of them in that order, so it stays body text.

/// Longest separator line pop3d recognises, in bytes before its LF: an envelope address is
/// at most 256 octets (RFC 5321 section 4.5.3.1.3) and the date about 40, so a longer line is
/// text; the bound also caps how far the scanner looks ahead at a line start.
pub const MAX_SEPARATOR_LINE: usize = 1000;

/// The word that starts every separator.
pub const FROM: &[u8] = b"From ";

const WEEKDAYS: [&[u8]; 7] = [b"sun", b"mon", b"tue", b"wed", b"thu", b"fri", b"sat"];

const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// Whether `line` (from its "From " up to, not including, its LF; a CR before the LF is
/// allowed) is an mbox separator.
pub fn is_separator(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() >= MAX_SEPARATOR_LINE || line.contains(&b'\n') {
        return false;
    }
    let Some(rest) = line.strip_prefix(FROM) else {
        return false;
    };
    let Some(rest) = skip_sender(rest) else {
        return false;
    };
    let words: Vec<&[u8]> = rest
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    asctime_date(&words) || rfc822_date(&words)
}

/// The bytes after the sender and the spaces that end it, or None when no space follows it.
fn skip_sender(rest: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    if rest.first() == Some(&b'"') {
        // A quoted local part may hold spaces and backslash escapes.
        i = 1;
        let mut escaped = false;
        loop {
            let &b = rest.get(i)?;
            i += 1;
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => break,
                _ => {}
            }
        }
    }
    let end = i + rest[i..].iter().position(|&b| b == b' ')?;
    let mut after = &rest[end..];
    // pipermail archives obscure the address as "me at example.org".
    if after.len() > 4 && after[..4].eq_ignore_ascii_case(b" at ") {
        let host = &after[4..];
        after = &host[host.iter().position(|&b| b == b' ')?..];
    }
    Some(after.trim_ascii_start())
}

/// "Thu Jan  1 00:00:00 [ZONE [ZONE]] 2026 [anything]": asctime with the variants agents
/// write (no seconds, a zone name or offset before the year, a two-digit year).
fn asctime_date(words: &[&[u8]]) -> bool {
    let [weekday, month, day, time, rest @ ..] = words else {
        return false;
    };
    if !(is_weekday(weekday) && is_month(month) && is_day(day) && is_time(time)) {
        return false;
    }
    // Up to two zone words ("MET DST", "UTC", "+0000") may come before the year.
    let zones = rest.iter().take(2).take_while(|w| is_zone(w)).count();
    rest.get(zones).is_some_and(|year| is_year(year))
}

/// "Thu, 1 Jan 2026 00:00:00 [anything]": the RFC 822 order, which Dovecot reads too.
fn rfc822_date(words: &[&[u8]]) -> bool {
    let [weekday, day, month, year, time, ..] = words else {
        return false;
    };
    weekday.strip_suffix(b",").is_some_and(is_weekday)
        && is_day(day)
        && is_month(month)
        && year.len() == 4
        && is_year(year)
        && is_time(time)
}

fn is_weekday(word: &[u8]) -> bool {
    WEEKDAYS.iter().any(|d| word.eq_ignore_ascii_case(d))
}

fn is_month(word: &[u8]) -> bool {
    MONTHS.iter().any(|m| word.eq_ignore_ascii_case(m))
}

fn digits(word: &[u8]) -> bool {
    !word.is_empty() && word.iter().all(u8::is_ascii_digit)
}

fn is_day(word: &[u8]) -> bool {
    (1..=2).contains(&word.len()) && digits(word)
}

/// "HH:MM" or "HH:MM:SS", two digits each, as Dovecot demands.
fn is_time(word: &[u8]) -> bool {
    let mut parts = 0;
    for part in word.split(|&b| b == b':') {
        if part.len() != 2 || !digits(part) {
            return false;
        }
        parts += 1;
    }
    (2..=3).contains(&parts)
}

/// A zone name ("UTC", "MET", "DST") or a numeric offset ("+0000", "-0200").
fn is_zone(word: &[u8]) -> bool {
    match word {
        [b'+' | b'-', offset @ ..] => offset.len() == 4 && digits(offset),
        _ => (1..=5).contains(&word.len()) && word.iter().all(u8::is_ascii_alphabetic),
    }
}

/// Four digits, or two as old agents wrote them.
fn is_year(word: &[u8]) -> bool {
    (word.len() == 4 || word.len() == 2) && digits(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Separator lines as delivery agents and mail programs write them.
    const SEPARATORS: &[(&str, &str)] = &[
        (
            "postfix local (two spaces, asctime)",
            "From alice@example.org  Thu Jan  1 00:00:00 2026",
        ),
        (
            "postfix, empty envelope sender",
            "From MAILER-DAEMON  Thu Jan  1 00:00:00 2026",
        ),
        (
            "exim appendfile tod_bsdinbox",
            "From alice@example.org Thu Jan  1 00:00:00 2026",
        ),
        (
            "exim, empty return path",
            "From MAILER-DAEMON Fri Dec 25 23:59:59 2026",
        ),
        (
            "sendmail mail.local (ctime)",
            "From bob Mon Nov 23 09:15:02 2026",
        ),
        (
            "procmail",
            "From carol@example.org  Sat Feb 28 12:00:00 2026",
        ),
        ("mutt", "From dave@example.org Wed Mar  4 05:06:07 2026"),
        (
            "Dovecot mbox_from_create",
            "From user  Fri Feb 13 23:31:30 2009",
        ),
        (
            "zero-padded day",
            "From erin@example.org Thu Jan 01 00:00:00 2026",
        ),
        ("CRLF line", "From a@b Thu Jan  1 00:00:00 2026\r"),
        (
            "numeric offset after the year",
            "From user@domain Thu Nov 29 23:33:09 1973 +0200",
        ),
        (
            "quoted local part with spaces",
            "From \"user name\"@domain  Fri Jan  2 10:13:52 UTC 1970 +0000",
        ),
        (
            "quoted with escape",
            "From \"a\\\" b\"@x Thu Jan  1 00:00:00 2026",
        ),
        ("no seconds", "From user  Fri Jan  2 10:14 1970 +0000"),
        ("empty sender", "From  Fri Jan  2 10:14 1970 +0000"),
        ("null path", "From <> Thu Jan  1 00:00:00 2026"),
        (
            "two zone names",
            "From xxxx@yyyyyyy.fr Wed Aug  2 00:39:12 MET DST 1995",
        ),
        (
            "offset before the year",
            "From x@y Thu Jan  1 00:00:00 +0000 2026",
        ),
        ("two-digit year", "From x@y Thu Jan  1 00:00:00 96"),
        ("RFC 822 order", "From user Fri, 2 Jan 1970 10:14:00 +0000"),
        (
            "RFC 822 order, no seconds",
            "From user Fri, 2 Jan 1970 10:14 +0000",
        ),
        (
            "UUCP remote from",
            "From alice Thu Jan  1 00:00:00 2026 remote from uunet",
        ),
        ("lower case names", "From x@y thu jan  1 00:00:00 2026"),
        (
            "pipermail obscured address",
            "From me at example.org  Thu Jan  1 00:00:00 2026",
        ),
    ];

    /// Lines that begin "From " but are body text, plus near misses of the date.
    const BODY_LINES: &[(&str, &str)] = &[
        ("sentence", "From here on, we use the new server."),
        ("sentence with day", "From me to you on Monday"),
        (
            "sentence with date words",
            "From Mon Jan to Fri Dec we are closed",
        ),
        ("just the word", "From "),
        ("sender only", "From alice@example.org"),
        ("no sender before the date", "From Thu Jan  1 00:00:00 2026"),
        ("no year", "From a@b Thu Jan  1 00:00:00"),
        ("no time", "From a@b Thu Jan  1 2026"),
        ("bad weekday", "From a@b Thx Jan  1 00:00:00 2026"),
        ("bad month", "From a@b Thu Foo  1 00:00:00 2026"),
        ("bad day", "From a@b Thu Jan  x 00:00:00 2026"),
        ("one-digit hour", "From a@b Thu Jan  2 0:14 1970 +0000"),
        ("bad hour", "From a@b Thu Jan  2 xx:14 1970"),
        ("missing minutes", "From a@b Thu Jan  2 10: 1970"),
        ("three-digit year", "From a@b Thu Jan  1 00:00:00 202"),
        (
            "three zone words",
            "From a@b Thu Jan  1 00:00:00 A B C 2026",
        ),
        (
            "RFC 822 order, bad month",
            "From user Fri, 2 Foo 1970 10:14:00",
        ),
        ("unterminated quote", "From \"a b Thu Jan  1 00:00:00 2026"),
        ("tab instead of space", "From a@b\tThu Jan  1 00:00:00 2026"),
    ];

    #[test]
    fn separators_written_by_delivery_agents_are_recognised() {
        for (name, line) in SEPARATORS {
            assert!(is_separator(line.as_bytes()), "{name}: {line:?}");
        }
    }

    #[test]
    fn body_lines_that_begin_with_from_are_not_separators() {
        for (name, line) in BODY_LINES {
            assert!(!is_separator(line.as_bytes()), "{name}: {line:?}");
        }
    }

    #[test]
    fn a_line_longer_than_the_limit_is_text() {
        let sender = "a".repeat(MAX_SEPARATOR_LINE);
        let line = format!("From {sender} Thu Jan  1 00:00:00 2026");
        assert!(!is_separator(line.as_bytes()));
        let fits = format!(
            "From {} Thu Jan  1 00:00:00 2026",
            "a".repeat(MAX_SEPARATOR_LINE - 40)
        );
        assert!(is_separator(fits.as_bytes()));
    }
}
