//! The session over a maildrop whose message reader fails partway (what the real maildrop
//! does when the file is cut while a message streams): RETR ends the session without the
//! terminating ".", and TOP, which stops reading at its line limit, is unaffected by a
//! failure past that limit. Runs `session::run` over byte slices through the public seams.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pop3d::maildrop::scan::scan;
use pop3d::maildrop::{CommitStats, MaildropError, MessageInfo};
use pop3d::security::{PlaintextAuth, Security};
use pop3d::session::{self, Connection, Context, Ending, LockedMaildrop, Mailbox, MaildropSource};
use pop3d::sources::FixedUsers;
use pop3d::users::{User, UsersDb};

const MBOX: &[u8] = b"From a@x Sat Jan  3 01:05:34 1996\nSubject: one\n\n\
line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\n";

/// Message bytes the reader hands out before it fails: inside line 5 of the body.
const FAILS_AFTER: usize = 50;

/// Reads like a file that ends early: the bytes, then an UnexpectedEof error.
struct CutShort<'a>(&'a [u8]);

impl Read for CutShort<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "mbox ends before the message",
            ));
        }
        self.0.read(buf)
    }
}

struct CutMailbox {
    messages: Vec<MessageInfo>,
}

impl Mailbox for CutMailbox {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError> {
        let m = &self.messages[index];
        let start = m.content_start as usize;
        let content = &MBOX[start..start + m.content_len as usize];
        // Small blocks, so the failure comes in a later read than the first lines.
        Ok(Box::new(BufReader::with_capacity(
            8,
            CutShort(&content[..FAILS_AFTER]),
        )))
    }

    fn commit(&mut self, _deleted: &[bool]) -> Result<CommitStats, MaildropError> {
        Ok(CommitStats {
            deleted: 0,
            octets_removed: 0,
        })
    }
}

struct CutLocked;

impl LockedMaildrop for CutLocked {
    fn previous_login(&self) -> Option<SystemTime> {
        None
    }

    fn open(self: Box<Self>) -> Result<Box<dyn Mailbox>, MaildropError> {
        let messages = scan(MBOX)?.messages;
        Ok(Box::new(CutMailbox { messages }))
    }
}

struct CutMaildrops;

impl MaildropSource for CutMaildrops {
    fn lock(&self, _user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        Ok(Box::new(CutLocked))
    }
}

fn run(commands: &str) -> (String, Ending) {
    let users = UsersDb::parse("alice:secret\n").expect("users");
    let ctx = Context {
        hostname: "test.example".into(),
        users: Arc::new(FixedUsers(Arc::new(users))),
        maildrops: Arc::new(CutMaildrops),
        login_delay: Duration::ZERO,
        failure_delay: Duration::ZERO,
        plaintext_auth: PlaintextAuth::Secure,
        penalties: Arc::new(pop3d::penalty::Penalties::default()),
    };
    let input = format!("USER alice\r\nPASS secret\r\n{commands}");
    let mut out = Vec::new();
    let connection = Connection {
        peer: "test",
        address: None,
        security: Security::Loopback,
    };
    let ending = session::run(BufReader::new(input.as_bytes()), &mut out, &ctx, connection);
    (String::from_utf8_lossy(&out).into_owned(), ending)
}

#[test]
fn retr_of_a_message_that_ends_early_closes_without_the_final_dot() {
    let (out, ending) = run("RETR 1\r\nNOOP\r\n");
    // What of the body left before the failure depends on buffering; a final "." never.
    let body = out.split_once("octets\r\n").expect("RETR's +OK").1;
    assert!(!body.ends_with(".\r\n"), "terminating dot sent: {out:?}");
    assert!(
        !body.contains("+OK"),
        "NOOP answered after a broken RETR: {out:?}"
    );
    assert!(matches!(ending, Ending::Io { .. }), "{ending:?}");
}

#[test]
fn top_whose_limit_ends_before_the_failure_is_complete() {
    let (out, ending) = run("TOP 1 2\r\nNOOP\r\nQUIT\r\n");
    assert!(
        out.contains("+OK top of message follows\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\n.\r\n"),
        "{out:?}"
    );
    assert!(matches!(ending, Ending::Quit { .. }), "{ending:?}");
}
