//! One bounded command line in, a typed `Command` (or a typed `ParseError`) out.
//!
//! The parser knows nothing of session state: USER in TRANSACTION parses fine and the session
//! refuses it. It never cuts a line short (a NUL anywhere makes the line malformed) and it never
//! echoes client bytes into error texts, so a reply cannot carry what a stranger typed.

use std::fmt;
use std::io::{self, BufRead};
use std::num::NonZeroU32;

use crate::bytes::is_digits;
/// RFC 2449 section 4: a command line is at most 255 octets including the CRLF. SASL lines
/// (RFC 5034) live under the same bound.
pub const MAX_LINE: usize = 255;

/// RFC 1939 section 3: each argument of the base commands is at most 40 octets.
const MAX_ARG: usize = 40;

/// A message number as the client sees it: 1-based, never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgNum(NonZeroU32);

impl MsgNum {
    pub fn new(n: u32) -> Option<MsgNum> {
        NonZeroU32::new(n).map(MsgNum)
    }

    /// The 0-based position this number names.
    pub fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Apop {
        name: String,
        digest: String,
    },
    /// `AUTH` alone lists the mechanisms (RFC 5034 allows clients to probe that way).
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Stat,
    List(Option<MsgNum>),
    Retr(MsgNum),
    Dele(MsgNum),
    Rset,
    Top {
        msg: MsgNum,
        lines: u32,
    },
    Uidl(Option<MsgNum>),
    Capa,
    Noop,
    Quit,
}

/// Why a line is not a command. The Display text is what the client reads after "-ERR ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    TooLong,
    /// NUL, another control character, or bytes that are not UTF-8.
    BadBytes,
    Unknown,
    MissingArgument,
    TooManyArguments,
    ArgumentTooLong,
    BadNumber,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Empty => "empty command",
            ParseError::TooLong => "line too long",
            ParseError::BadBytes => "invalid characters in command",
            ParseError::Unknown => "unknown command",
            ParseError::MissingArgument => "missing argument",
            ParseError::TooManyArguments => "too many arguments",
            ParseError::ArgumentTooLong => "argument too long",
            ParseError::BadNumber => "invalid number",
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses one line, its line ending already removed.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let text = checked_text(line)?;
    let (keyword, rest) = match text.find(' ') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    };
    if keyword.is_empty() {
        return Err(if text.trim_matches(' ').is_empty() {
            ParseError::Empty
        } else {
            ParseError::Unknown
        });
    }
    let upper = keyword.to_ascii_uppercase();
    // PASS keeps the rest of the line as it is: a password may hold any spaces (RFC 1939
    // section 7 lets servers accept them), so nothing is trimmed.
    if upper == "PASS" {
        if rest.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        return Ok(Command::Pass(rest.to_string()));
    }
    // Everything else is lenient with telnet users: runs of spaces separate arguments and
    // trailing spaces are ignored.
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    match upper.as_str() {
        "USER" => Ok(Command::User(one_arg(&args)?.to_string())),
        "APOP" => {
            let [name, digest] = two_args(&args)?;
            Ok(Command::Apop {
                name: name.to_string(),
                digest: digest.to_string(),
            })
        }
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mechanism] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: None,
            }),
            [mechanism, initial] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: Some(initial.to_string()),
            }),
            _ => Err(ParseError::TooManyArguments),
        },
        "STAT" => no_args(&args, Command::Stat),
        "LIST" => Ok(Command::List(optional_msg(&args)?)),
        "RETR" => Ok(Command::Retr(msg_num(one_arg(&args)?)?)),
        "DELE" => Ok(Command::Dele(msg_num(one_arg(&args)?)?)),
        "RSET" => no_args(&args, Command::Rset),
        "TOP" => {
            let [msg, lines] = two_args(&args)?;
            Ok(Command::Top {
                msg: msg_num(msg)?,
                lines: number(lines)?,
            })
        }
        "UIDL" => Ok(Command::Uidl(optional_msg(&args)?)),
        "CAPA" => no_args(&args, Command::Capa),
        "NOOP" => no_args(&args, Command::Noop),
        "QUIT" => no_args(&args, Command::Quit),
        _ => Err(ParseError::Unknown),
    }
}

/// Checks a line's bytes: UTF-8, and no control characters at all (a NUL never ends a line
/// early; it makes the whole line malformed). Tabs are refused too: no command needs them.
fn checked_text(line: &[u8]) -> Result<&str, ParseError> {
    if line.len() >= MAX_LINE {
        return Err(ParseError::TooLong);
    }
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::BadBytes);
    }
    std::str::from_utf8(line).map_err(|_| ParseError::BadBytes)
}

fn no_args(args: &[&str], command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::TooManyArguments)
    }
}

fn one_arg<'a>(args: &[&'a str]) -> Result<&'a str, ParseError> {
    match args {
        [] => Err(ParseError::MissingArgument),
        [arg] => bounded(arg),
        _ => Err(ParseError::TooManyArguments),
    }
}

fn two_args<'a>(args: &[&'a str]) -> Result<[&'a str; 2], ParseError> {
    match args {
        [] | [_] => Err(ParseError::MissingArgument),
        [a, b] => Ok([bounded(a)?, bounded(b)?]),
        _ => Err(ParseError::TooManyArguments),
    }
}

fn bounded(arg: &str) -> Result<&str, ParseError> {
    if arg.len() > MAX_ARG {
        Err(ParseError::ArgumentTooLong)
    } else {
        Ok(arg)
    }
}

fn optional_msg(args: &[&str]) -> Result<Option<MsgNum>, ParseError> {
    match args {
        [] => Ok(None),
        [arg] => Ok(Some(msg_num(bounded(arg)?)?)),
        _ => Err(ParseError::TooManyArguments),
    }
}

fn msg_num(arg: &str) -> Result<MsgNum, ParseError> {
    MsgNum::new(number(arg)?).ok_or(ParseError::BadNumber)
}

/// Digits only (no sign, no spaces), checked against overflow.
fn number(arg: &str) -> Result<u32, ParseError> {
    if !is_digits(arg) {
        return Err(ParseError::BadNumber);
    }
    arg.bytes().try_fold(0u32, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(d - b'0')))
            .ok_or(ParseError::BadNumber)
    })
}

/// What reading one line produced.
#[derive(Debug)]
pub enum LineError {
    /// The line was longer than `MAX_LINE`; it has been discarded up to and including its LF.
    TooLong,
    /// The peer closed the connection (possibly in the middle of a line).
    Closed,
    Io(io::Error),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} octets"),
            LineError::Closed => f.write_str("connection closed"),
            LineError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for LineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LineError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LineError {
    fn from(e: io::Error) -> Self {
        LineError::Io(e)
    }
}

/// Reads one line into `line` (cleared first), without its CRLF or bare LF. Never buffers more
/// than `MAX_LINE` octets: a longer line is consumed to its LF and reported as `TooLong`, so
/// it is one error and never several commands.
pub fn read_line<R: BufRead>(input: &mut R, line: &mut Vec<u8>) -> Result<(), LineError> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if available.is_empty() {
            return Err(LineError::Closed);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], at + 1),
            None => (available, available.len()),
        };
        let found_lf = done > chunk.len();
        if !too_long {
            // +1 for the LF this line still needs.
            if line.len() + chunk.len() + 1 > MAX_LINE {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(done);
        if found_lf {
            if too_long {
                return Err(LineError::TooLong);
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> MsgNum {
        MsgNum::new(v).unwrap()
    }

    #[test]
    fn parses_every_command() {
        let cases: Vec<(&str, Command)> = vec![
            ("USER alice", Command::User("alice".into())),
            ("user alice", Command::User("alice".into())),
            ("PASS secret", Command::Pass("secret".into())),
            (
                "APOP bob c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop {
                    name: "bob".into(),
                    digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
                },
            ),
            (
                "AUTH",
                Command::Auth {
                    mechanism: None,
                    initial: None,
                },
            ),
            (
                "auth plain",
                Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: None,
                },
            ),
            (
                "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: Some("AGFsaWNlAHNlY3JldA==".into()),
                },
            ),
            ("STAT", Command::Stat),
            ("LIST", Command::List(None)),
            ("LIST 2", Command::List(Some(n(2)))),
            ("RETR 1", Command::Retr(n(1))),
            ("DELE 7", Command::Dele(n(7))),
            ("RSET", Command::Rset),
            (
                "TOP 1 0",
                Command::Top {
                    msg: n(1),
                    lines: 0,
                },
            ),
            (
                "TOP 3 10",
                Command::Top {
                    msg: n(3),
                    lines: 10,
                },
            ),
            ("UIDL", Command::Uidl(None)),
            ("UIDL 4", Command::Uidl(Some(n(4)))),
            ("CAPA", Command::Capa),
            ("NOOP", Command::Noop),
            ("QUIT", Command::Quit),
            ("qUiT", Command::Quit),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()), Ok(want.clone()), "{line:?}");
            assert_eq!(parse_bytewise(line), Ok(want), "{line:?} bytewise");
        }
    }

    /// Feeds the line through `read_line` one byte at a time, as a slow client would.
    fn parse_bytewise(line: &str) -> Result<Command, ParseError> {
        let wire = format!("{line}\r\n");
        let mut reader = io::BufReader::with_capacity(1, wire.as_bytes());
        let mut buf = Vec::new();
        read_line(&mut reader, &mut buf).unwrap();
        parse(&buf)
    }

    #[test]
    fn pass_keeps_spaces_and_everything_after_the_keyword() {
        assert_eq!(
            parse(b"PASS  two  spaces "),
            Ok(Command::Pass(" two  spaces ".into()))
        );
        assert_eq!(parse(b"pass a:b c"), Ok(Command::Pass("a:b c".into())));
    }

    #[test]
    fn pass_without_password_is_an_error() {
        assert_eq!(parse(b"PASS"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"PASS "), Err(ParseError::MissingArgument));
    }

    #[test]
    fn trailing_spaces_are_ignored() {
        assert_eq!(parse(b"STAT  "), Ok(Command::Stat));
        assert_eq!(parse(b"RETR 1 "), Ok(Command::Retr(n(1))));
    }

    #[test]
    fn nul_anywhere_makes_the_line_malformed() {
        assert_eq!(parse(b"USER alice\0x"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"\0"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"PASS se\0cret"), Err(ParseError::BadBytes));
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_refused() {
        assert_eq!(parse(b"USER\talice"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"USER a\x7f"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"USER \xff\xfe"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"STAT\r"), Err(ParseError::BadBytes));
    }

    #[test]
    fn message_numbers_are_checked() {
        assert_eq!(parse(b"RETR 0"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR -1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR +1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 1x"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 4294967296"), Err(ParseError::BadNumber));
        assert_eq!(
            parse(b"RETR 4294967295"),
            Ok(Command::Retr(n(4_294_967_295)))
        );
        assert_eq!(parse(b"TOP 1 -0"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"LIST 0"), Err(ParseError::BadNumber));
    }

    #[test]
    fn argument_counts_are_checked() {
        assert_eq!(parse(b"RETR"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"TOP 1"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"USER"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"STAT 1"), Err(ParseError::TooManyArguments));
        assert_eq!(parse(b"USER a b"), Err(ParseError::TooManyArguments));
        assert_eq!(parse(b"AUTH PLAIN a b"), Err(ParseError::TooManyArguments));
    }

    #[test]
    fn arguments_over_40_octets_are_refused() {
        let name = "a".repeat(41);
        assert_eq!(
            parse(format!("USER {name}").as_bytes()),
            Err(ParseError::ArgumentTooLong)
        );
        let ok = "a".repeat(40);
        assert_eq!(
            parse(format!("USER {ok}").as_bytes()),
            Ok(Command::User(ok.clone()))
        );
    }

    #[test]
    fn auth_initial_response_may_fill_the_line() {
        let initial = "A".repeat(200);
        assert_eq!(
            parse(format!("AUTH PLAIN {initial}").as_bytes()),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some(initial),
            })
        );
    }

    #[test]
    fn unknown_and_empty_lines() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   "), Err(ParseError::Empty));
        assert_eq!(parse(b"XYZZY"), Err(ParseError::Unknown));
        assert_eq!(parse(b" STAT"), Err(ParseError::Unknown));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
            Err(ParseError::Unknown)
        );
        assert_eq!(parse(b"STATS"), Err(ParseError::Unknown));
    }

    fn read_all_lines(wire: &[u8], capacity: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut reader = io::BufReader::with_capacity(capacity, wire);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_line(&mut reader, &mut line) {
                Ok(()) => out.push(Ok(line)),
                Err(LineError::Closed) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[test]
    fn read_line_accepts_crlf_and_bare_lf() {
        for capacity in [1, 3, 8192] {
            let lines = read_all_lines(b"STAT\r\nNOOP\nQUIT\r\n", capacity);
            assert_eq!(
                lines,
                vec![
                    Ok(b"STAT".to_vec()),
                    Ok(b"NOOP".to_vec()),
                    Ok(b"QUIT".to_vec())
                ]
            );
        }
    }

    #[test]
    fn long_line_is_one_error_then_reading_goes_on() {
        let mut wire = vec![b'A'; 100_000];
        wire.extend_from_slice(b" STAT\r\nNOOP\r\n");
        for capacity in [7, 8192] {
            let lines = read_all_lines(&wire, capacity);
            assert_eq!(lines.len(), 2, "capacity {capacity}");
            assert!(lines[0].is_err());
            assert_eq!(lines[1], Ok(b"NOOP".to_vec()));
        }
    }

    #[test]
    fn line_of_exactly_255_octets_with_crlf_is_accepted() {
        let mut wire = vec![b'a'; MAX_LINE - 2];
        wire.extend_from_slice(b"\r\n");
        let lines = read_all_lines(&wire, 16);
        assert_eq!(lines, vec![Ok(vec![b'a'; MAX_LINE - 2])]);
        let mut wire = vec![b'a'; MAX_LINE];
        wire.extend_from_slice(b"\r\n");
        assert!(read_all_lines(&wire, 16)[0].is_err());
    }

    #[test]
    fn unterminated_last_line_is_a_closed_connection() {
        let lines = read_all_lines(b"STAT\r\nQUI", 8192);
        assert_eq!(lines, vec![Ok(b"STAT".to_vec())]);
    }
}
