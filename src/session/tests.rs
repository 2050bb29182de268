//! The session's tests: the state machine over byte slices, client lines in, transcript out,
//! no sockets; an in-memory mbox (scanned with the real scanner) behind the seams, and a fuzz
//! harness of random command lines.

use super::*;
use crate::maildrop::scan::scan;
use crate::penalty::Penalties;
use crate::sources::FixedUsers;
use crate::testing::Rng;
use crate::users::Password;
use std::sync::Mutex;

/// An mbox in memory, scanned with the real scanner; commit rewrites the bytes.
struct MemoryMailbox {
    store: Arc<Mutex<Vec<u8>>>,
    bytes: Vec<u8>,
    messages: Vec<MessageInfo>,
    scanned_len: u64,
}

impl Mailbox for MemoryMailbox {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError> {
        let m = &self.messages[index];
        let start = m.content_start as usize;
        Ok(Box::new(&self.bytes[start..start + m.content_len as usize]))
    }

    fn commit(&mut self, deleted: &[bool]) -> Result<CommitStats, MaildropError> {
        let mut kept = Vec::new();
        let mut stats = CommitStats {
            deleted: 0,
            octets_removed: 0,
        };
        for (i, m) in self.messages.iter().enumerate() {
            let end = self
                .messages
                .get(i + 1)
                .map_or(self.scanned_len, |next| next.record_start);
            if deleted[i] {
                stats.deleted += 1;
                stats.octets_removed += end - m.record_start;
            } else {
                kept.extend_from_slice(&self.bytes[m.record_start as usize..end as usize]);
            }
        }
        kept.extend_from_slice(&self.bytes[self.scanned_len as usize..]);
        *self.store.lock().unwrap() = kept;
        Ok(stats)
    }
}

struct MemoryLocked {
    store: Arc<Mutex<Vec<u8>>>,
    previous: Option<SystemTime>,
}

impl LockedMaildrop for MemoryLocked {
    fn previous_login(&self) -> Option<SystemTime> {
        self.previous
    }

    fn open(self: Box<Self>) -> Result<Box<dyn Mailbox>, MaildropError> {
        let bytes = self.store.lock().unwrap().clone();
        let scanned = scan(&bytes[..]).unwrap();
        Ok(Box::new(MemoryMailbox {
            store: self.store,
            bytes,
            messages: scanned.messages,
            scanned_len: scanned.scanned_len,
        }))
    }
}

struct MemoryMaildrops {
    store: Arc<Mutex<Vec<u8>>>,
    in_use: bool,
    previous: Option<SystemTime>,
}

impl MaildropSource for MemoryMaildrops {
    fn lock(&self, _user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        if self.in_use {
            return Err(MaildropError::InUse);
        }
        Ok(Box::new(MemoryLocked {
            store: Arc::clone(&self.store),
            previous: self.previous,
        }))
    }
}

const MBOX: &str = "From a@x Sat Jan  3 01:05:34 1996\n\
    Subject: one\n\n\
    first body\n.dotted\n\n\
    From b@x Sat Jan  3 01:05:34 1996\n\
    Subject: two\n\n\
    line 1\nline 2\nline 3\n\n";

struct Setup {
    store: Arc<Mutex<Vec<u8>>>,
    ctx: Context,
}

fn setup(mbox: &str) -> Setup {
    let store = Arc::new(Mutex::new(mbox.as_bytes().to_vec()));
    let users = crate::users::UsersDb::parse("alice:secret\nbob:hunter 2\n").unwrap();
    let ctx = Context {
        hostname: "test.example".into(),
        users: Arc::new(FixedUsers(Arc::new(users))),
        maildrops: Arc::new(MemoryMaildrops {
            store: Arc::clone(&store),
            in_use: false,
            previous: None,
        }),
        login_delay: Duration::ZERO,
        failure_delay: Duration::ZERO,
        plaintext_auth: PlaintextAuth::Secure,
        penalties: Arc::new(Penalties::default()),
    };
    Setup { store, ctx }
}

/// A session on a loopback connection, where every login method is open.
fn transcript(ctx: &Context, input: &str) -> (String, Ending) {
    transcript_on(Security::Loopback, ctx, input)
}

fn transcript_on(security: Security, ctx: &Context, input: &str) -> (String, Ending) {
    let mut out = Vec::new();
    let connection = Connection {
        peer: "test",
        address: None,
        security,
    };
    let ending = run(BufReader::new(input.as_bytes()), &mut out, ctx, connection);
    let text = String::from_utf8(out).unwrap();
    for line in text.split_inclusive('\n') {
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        assert!(line.len() <= 512);
    }
    (text, ending)
}

/// The replies after the greeting, as lines without CRLF.
fn replies(ctx: &Context, input: &str) -> Vec<String> {
    replies_on(Security::Loopback, ctx, input)
}

fn replies_on(security: Security, ctx: &Context, input: &str) -> Vec<String> {
    let (text, _) = transcript_on(security, ctx, input);
    text.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn greeting_carries_a_fresh_apop_timestamp() {
    let s = setup(MBOX);
    let (a, _) = transcript(&s.ctx, "");
    let (b, _) = transcript(&s.ctx, "");
    assert!(a.starts_with("+OK pop3d ready <") && a.ends_with("@test.example>\r\n"));
    assert_ne!(a, b);
}

#[test]
fn user_pass_stat_list_quit() {
    let s = setup(MBOX);
    let r = replies(
        &s.ctx,
        "USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nQUIT\r\n",
    );
    // Sizes are octets with CRLF: "Subject: one\r\n\r\nfirst body\r\n.dotted\r\n" = 37
    // (the stuffed dot is not counted), "Subject: two\r\n\r\n" + 3 * "line n\r\n" = 40.
    assert_eq!(
        r,
        [
            "+OK send PASS",
            "+OK alice has 2 messages (77 octets)",
            "+OK 2 77",
            "+OK 2 messages (77 octets)",
            "1 37",
            "2 40",
            ".",
            "+OK 2 40",
            "+OK pop3d signing off (0 messages deleted)",
        ]
    );
}

#[test]
fn retr_stuffs_dots_and_sends_crlf() {
    let s = setup(MBOX);
    let (t, _) = transcript(&s.ctx, "USER alice\nPASS secret\nRETR 1\nQUIT\n");
    assert!(t.contains("+OK 37 octets\r\nSubject: one\r\n\r\nfirst body\r\n..dotted\r\n.\r\n+OK"));
}

#[test]
fn top_zero_sends_headers_only() {
    let s = setup(MBOX);
    let (t, _) = transcript(&s.ctx, "USER alice\nPASS secret\nTOP 2 0\nTOP 2 2\nQUIT\n");
    assert!(t.contains("Subject: two\r\n\r\n.\r\n"), "{t}");
    assert!(
        t.contains("Subject: two\r\n\r\nline 1\r\nline 2\r\n.\r\n"),
        "{t}"
    );
}

#[test]
fn deleted_messages_keep_their_number_and_answer_err() {
    let s = setup(MBOX);
    let r = replies(
        &s.ctx,
        "USER alice\nPASS secret\nDELE 1\nDELE 1\nRETR 1\nLIST 1\nTOP 1 0\nUIDL 1\nSTAT\nLIST\nRSET\nSTAT\nQUIT\n",
    );
    assert_eq!(r[2], "+OK message 1 deleted");
    for reply in &r[3..8] {
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
    assert_eq!(r[8], "+OK 1 40");
    assert_eq!(&r[9..12], ["+OK 1 messages (40 octets)", "2 40", "."]);
    assert_eq!(r[12], "+OK maildrop has 2 messages (77 octets)");
    assert_eq!(r[13], "+OK 2 77");
}

#[test]
fn quit_in_transaction_removes_deleted_messages() {
    let s = setup(MBOX);
    let (_, ending) = transcript(&s.ctx, "USER alice\nPASS secret\nDELE 1\nQUIT\n");
    assert_eq!(
        ending,
        Ending::Quit {
            user: Some("alice".into()),
            deleted: 1
        }
    );
    let left = String::from_utf8(s.store.lock().unwrap().clone()).unwrap();
    assert!(left.starts_with("From b@x") && !left.contains("Subject: one"));
}

#[test]
fn dropped_connection_deletes_nothing() {
    let s = setup(MBOX);
    let (_, ending) = transcript(&s.ctx, "USER alice\nPASS secret\nDELE 1\n");
    assert_eq!(
        ending,
        Ending::Dropped {
            user: Some("alice".into())
        }
    );
    assert_eq!(*s.store.lock().unwrap(), MBOX.as_bytes());
}

#[test]
fn wrong_password_and_unknown_user_answer_alike() {
    let s = setup(MBOX);
    let a = replies(&s.ctx, "USER alice\nPASS wrong\nQUIT\n");
    let b = replies(&s.ctx, "USER nobody\nPASS wrong\nQUIT\n");
    assert_eq!(a, b);
    assert_eq!(a[1], "-ERR [AUTH] invalid user name or password");
}

#[test]
fn three_failures_close_the_session() {
    let s = setup(MBOX);
    let (_, ending) = transcript(
        &s.ctx,
        "USER a\nPASS x\nUSER a\nPASS x\nUSER a\nPASS x\nUSER alice\nPASS secret\n",
    );
    assert_eq!(ending, Ending::TooManyAuthFailures);
}

/// A session from `address` (a client off the loopback that may still send passwords).
fn replies_from(address: &str, ctx: &Context, input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let connection = Connection {
        peer: "test",
        address: Some(address.parse().unwrap()),
        security: Security::Loopback,
    };
    run(BufReader::new(input.as_bytes()), &mut out, ctx, connection);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn failures_count_against_the_address_and_a_login_takes_back_only_its_own() {
    let mut s = setup(MBOX);
    // Turns a millisecond apart: the counting is under test here, not the waiting.
    let table = Arc::new(Penalties::new(Duration::from_millis(1)));
    s.ctx.penalties = Arc::clone(&table) as Arc<dyn PenaltyBook>;
    let attacker: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let r = replies_from(
        "192.0.2.7",
        &s.ctx,
        "USER bob\nPASS guess\nUSER alice\nPASS guess\nQUIT\n",
    );
    assert_eq!(r[2], "-ERR [AUTH] invalid user name or password", "{r:?}");
    assert_eq!(table.failures(attacker), 2);
    // alice's own login from the address takes back her failure, not bob's.
    let r = replies_from("192.0.2.7", &s.ctx, "USER alice\nPASS secret\nQUIT\n");
    assert!(r[2].starts_with("+OK alice has"), "{r:?}");
    assert_eq!(table.failures(attacker), 1);
    // Other addresses have nothing counted.
    assert_eq!(table.failures("192.0.2.8".parse().unwrap()), 0);
    // A session without an address (a pipe) counts nothing.
    replies(&s.ctx, "USER bob\nPASS guess\nQUIT\n");
    assert_eq!(table.len(), 1);
}

#[test]
fn pass_keeps_spaces() {
    let s = setup(MBOX);
    let r = replies(&s.ctx, "USER bob\nPASS hunter 2\nQUIT\n");
    assert!(r[1].starts_with("+OK bob has 2 messages"), "{r:?}");
}

#[test]
fn pass_without_user_is_refused() {
    let s = setup(MBOX);
    let r = replies(&s.ctx, "PASS secret\nSTAT\nQUIT\n");
    assert!(
        r[0].starts_with("-ERR") && r[1].starts_with("-ERR"),
        "{r:?}"
    );
}

#[test]
fn apop_with_a_wrong_digest_is_refused() {
    let s = setup(MBOX);
    // A digest made for another timestamp is refused; tests/pop3.rs logs in with a real
    // one over TCP, where the greeting can be read first.
    let (t, _) = transcript(&s.ctx, "APOP alice 00000000000000000000000000000000\n");
    assert!(t.contains("-ERR [AUTH]"), "{t}");
}

#[test]
fn commands_in_the_wrong_state_are_refused() {
    let s = setup(MBOX);
    let r = replies(
        &s.ctx,
        "STAT\nLIST\nRETR 1\nDELE 1\nRSET\nNOOP\nUIDL\nTOP 1 1\nUSER alice\nPASS secret\nUSER alice\nPASS secret\nAPOP alice x\nAUTH PLAIN\nQUIT\n",
    );
    for reply in &r[..8] {
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
    assert!(r[9].starts_with("+OK alice"));
    for reply in &r[10..14] {
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
}

#[test]
fn uidl_is_stable_and_listed() {
    let s = setup(MBOX);
    let a = replies(&s.ctx, "USER alice\nPASS secret\nUIDL\nQUIT\n");
    let b = replies(&s.ctx, "USER alice\nPASS secret\nUIDL\nQUIT\n");
    assert_eq!(a, b);
    let uid1 = a[3].split(' ').nth(1).unwrap();
    let uid2 = a[4].split(' ').nth(1).unwrap();
    assert_ne!(uid1, uid2);
    for uid in [uid1, uid2] {
        assert!((1..=70).contains(&uid.len()));
        assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}

#[test]
fn capa_differs_before_and_after_login() {
    let s = setup(MBOX);
    let r = replies(&s.ctx, "CAPA\nUSER alice\nPASS secret\nCAPA\nQUIT\n");
    let end = r.iter().position(|l| l == ".").unwrap();
    let before = &r[1..end];
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "RESP-CODES",
        "PIPELINING",
        "SASL PLAIN CRAM-MD5",
    ] {
        assert!(before.iter().any(|l| l == cap), "{cap} missing: {before:?}");
    }
    assert!(before.iter().any(|l| l.starts_with("IMPLEMENTATION pop3d")));
    let after = &r[end + 4..r.len() - 2];
    assert!(!after.iter().any(|l| l == "USER"), "{after:?}");
    assert!(after.iter().any(|l| l == "TOP"));
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let s = setup(MBOX);
    let creds = auth::base64_encode(b"\0alice\0secret");
    let r = replies(&s.ctx, &format!("AUTH PLAIN {creds}\nQUIT\n"));
    assert!(r[0].starts_with("+OK alice has"), "{r:?}");
    let r = replies(&s.ctx, &format!("AUTH PLAIN\n{creds}\nQUIT\n"));
    assert_eq!(r[0], "+ ");
    assert!(r[1].starts_with("+OK alice has"), "{r:?}");
}

#[test]
fn auth_cancel_and_bad_base64_keep_the_session() {
    let s = setup(MBOX);
    let r = replies(&s.ctx, "AUTH PLAIN\n*\nAUTH PLAIN !!!\nAUTH\nQUIT\n");
    assert_eq!(r[0], "+ ");
    assert!(r[1].starts_with("-ERR"));
    assert!(r[2].starts_with("-ERR"));
    assert_eq!(
        &r[3..7],
        ["+OK supported mechanisms follow", "PLAIN", "CRAM-MD5", "."]
    );
    assert!(r[7].starts_with("+OK"));
}

/// The capability lines of one CAPA reply starting at `r[at]`, and where it ends.
fn capabilities(r: &[String], at: usize) -> (Vec<String>, usize) {
    assert_eq!(r[at], "+OK capability list follows", "{r:?}");
    let end = at + r[at..].iter().position(|l| l == ".").unwrap();
    (r[at + 1..end].to_vec(), end)
}

#[test]
fn capa_offers_clear_text_logins_only_where_they_are_taken() {
    use Security::*;
    // (security, policy, USER and PLAIN offered before login)
    let table = [
        (Loopback, PlaintextAuth::Secure, true),
        (SecureListener, PlaintextAuth::Secure, true),
        (ProxyTls, PlaintextAuth::Secure, true),
        (LocalStream, PlaintextAuth::Secure, true),
        (Open, PlaintextAuth::Secure, false),
        (Open, PlaintextAuth::Always, true),
        (Loopback, PlaintextAuth::Always, true),
    ];
    for (security, policy, offered) in table {
        let mut s = setup(MBOX);
        s.ctx.plaintext_auth = policy;
        let login = if offered {
            "USER alice\nPASS secret\n"
        } else {
            ""
        };
        let r = replies_on(
            security,
            &s.ctx,
            &format!("CAPA\nAUTH\n{login}CAPA\nQUIT\n"),
        );
        let (before, end) = capabilities(&r, 0);
        let case = format!("{security:?} {policy:?}");
        assert_eq!(
            before.iter().any(|l| l == "USER"),
            offered,
            "{case}: {before:?}"
        );
        let sasl = if offered {
            "SASL PLAIN CRAM-MD5"
        } else {
            "SASL CRAM-MD5"
        };
        assert!(before.iter().any(|l| l == sasl), "{case}: {before:?}");
        // AUTH without a mechanism lists the same mechanisms (RFC 5034 section 4).
        assert_eq!(r[end + 1], "+OK supported mechanisms follow", "{case}");
        assert_eq!(r[end + 2] == "PLAIN", offered, "{case}: {r:?}");
        if offered {
            // In TRANSACTION neither USER nor SASL is listed, whatever the connection.
            let at = r
                .iter()
                .rposition(|l| l.starts_with("+OK capability"))
                .unwrap();
            let (after, _) = capabilities(&r, at);
            assert!(
                !after.iter().any(|l| l == "USER" || l.starts_with("SASL")),
                "{case}"
            );
            assert!(after.iter().any(|l| l == "TOP"), "{case}");
        }
    }
}

#[test]
fn clear_text_logins_are_refused_on_an_insecure_connection() {
    let s = setup(MBOX);
    let creds = auth::base64_encode(b"\0alice\0secret");
    let r = replies_on(
        Security::Open,
        &s.ctx,
        &format!("USER alice\nPASS secret\nAUTH PLAIN {creds}\nAUTH PLAIN\nSTAT\nQUIT\n"),
    );
    let refused = format!("-ERR {PLAINTEXT_REFUSED}");
    // AUTH PLAIN without an initial response gets no "+ " challenge to send one in.
    assert_eq!(r[..4], [&*refused; 4], "{r:?}");
    assert!(
        r[4].starts_with("-ERR"),
        "STAT must not be logged in: {r:?}"
    );
    assert!(PLAINTEXT_REFUSED.contains("TLS"));
}

#[test]
fn refused_clear_text_logins_are_not_login_failures() {
    // Three failed logins close the connection; refusals before any check must not.
    let s = setup(MBOX);
    let (t, ending) = transcript_on(
        Security::Open,
        &s.ctx,
        "USER a\nUSER b\nUSER c\nUSER d\nNOOP\n",
    );
    assert_eq!(t.matches("-ERR [AUTH] plaintext").count(), 4, "{t}");
    assert!(matches!(ending, Ending::Dropped { .. }), "{ending:?}");
}

#[test]
fn apop_and_cram_md5_are_checked_on_an_insecure_connection() {
    let s = setup(MBOX);
    let r = replies_on(
        Security::Open,
        &s.ctx,
        "APOP alice 00000000000000000000000000000000\nAUTH CRAM-MD5\n*\nQUIT\n",
    );
    // APOP reaches the digest check (a wrong digest, not a refusal); CRAM-MD5 challenges.
    assert_eq!(r[0], "-ERR [AUTH] invalid user name or password", "{r:?}");
    assert!(r[1].starts_with("+ "), "{r:?}");
}

#[test]
fn plaintext_always_takes_passwords_on_an_insecure_connection() {
    let mut s = setup(MBOX);
    s.ctx.plaintext_auth = PlaintextAuth::Always;
    let r = replies_on(Security::Open, &s.ctx, "USER alice\nPASS secret\nQUIT\n");
    assert!(r[1].starts_with("+OK alice"), "{r:?}");
}

/// Users without shared secrets, as with --system-users.
struct HashedOnly(UsersDb);

impl UserSource for HashedOnly {
    fn checked_user(&self, name: &str, check: &dyn Fn(&Password) -> bool) -> Option<User> {
        self.0.checked_user(name, check).cloned()
    }

    fn has_shared_secrets(&self) -> bool {
        false
    }
}

#[test]
fn without_shared_secrets_cram_md5_is_neither_offered_nor_taken() {
    let mut s = setup(MBOX);
    let hash = crate::sys::crypt("secret", "$6$saltsalt$").unwrap();
    let users = UsersDb::parse(&format!("alice:{{CRYPT}}{hash}\n")).unwrap();
    s.ctx.users = Arc::new(HashedOnly(users));
    let r = replies(&s.ctx, "CAPA\nAUTH\nAUTH CRAM-MD5\nQUIT\n");
    assert!(r.iter().any(|l| l == "SASL PLAIN"), "{r:?}");
    assert!(!r.iter().any(|l| l.contains("CRAM-MD5")), "{r:?}");
    let auth = r
        .iter()
        .position(|l| l == "+OK supported mechanisms follow")
        .unwrap();
    assert_eq!(
        &r[auth + 1..auth + 4],
        ["PLAIN", ".", "-ERR unsupported authentication mechanism"]
    );
    let creds = auth::base64_encode(b"\0alice\0secret");
    let r = replies(&s.ctx, &format!("AUTH PLAIN {creds}\nQUIT\n"));
    assert!(r[0].starts_with("+OK alice has"), "{r:?}");
    let r = replies(&s.ctx, "USER alice\nPASS secret\nQUIT\n");
    assert!(r[1].starts_with("+OK alice has"), "{r:?}");
}

#[test]
fn without_shared_secrets_an_insecure_connection_offers_no_login() {
    // Both filters apply: no PLAIN (insecure) and no CRAM-MD5 (no shared secret) leaves no
    // SASL line at all, and AUTH lists no mechanism; a secure connection still offers PLAIN.
    let mut s = setup(MBOX);
    let hash = crate::sys::crypt("secret", "$6$saltsalt$").unwrap();
    let users = UsersDb::parse(&format!("alice:{{CRYPT}}{hash}\n")).unwrap();
    s.ctx.users = Arc::new(HashedOnly(users));
    let r = replies_on(Security::Open, &s.ctx, "CAPA\nAUTH\nQUIT\n");
    let (capabilities, end) = capabilities(&r, 0);
    assert!(
        !capabilities
            .iter()
            .any(|l| l == "USER" || l.starts_with("SASL")),
        "{r:?}"
    );
    assert_eq!(
        &r[end + 1..end + 3],
        ["+OK supported mechanisms follow", "."],
        "{r:?}"
    );
    let r = replies_on(Security::SecureListener, &s.ctx, "CAPA\nQUIT\n");
    assert!(r.iter().any(|l| l == "SASL PLAIN"), "{r:?}");
    assert!(r.iter().any(|l| l == "USER"), "{r:?}");
}

#[test]
fn a_hashed_password_is_checked_by_crypt_and_never_a_shared_secret() {
    let mut s = setup(MBOX);
    let hash = crate::sys::crypt("secret", "$6$saltsalt$").unwrap();
    let users = UsersDb::parse(&format!("alice:{{CRYPT}}{hash}\n")).unwrap();
    s.ctx.users = Arc::new(FixedUsers(Arc::new(users)));
    let r = replies(
        &s.ctx,
        &format!("USER alice\nPASS {hash}\nUSER alice\nPASS secret\nQUIT\n"),
    );
    assert_eq!(r[1], "-ERR [AUTH] invalid user name or password");
    assert!(r[3].starts_with("+OK alice has"), "{r:?}");
    // APOP and CRAM-MD5 digests keyed with the hash, the only secret there is, fail too.
    let checked = std::sync::Mutex::new(Vec::new());
    let source = FixedUsers(Arc::new(
        UsersDb::parse(&format!("alice:{{CRYPT}}{hash}\n")).unwrap(),
    ));
    let found = source.checked_user("alice", &|stored| {
        checked
            .lock()
            .unwrap()
            .push(stored.shared_secret().map(str::to_owned));
        stored.shared_secret().is_some()
    });
    assert!(found.is_none());
    assert_eq!(checked.into_inner().unwrap(), [None]);
}

#[test]
fn cram_md5_challenge_is_a_base64_timestamp_and_star_cancels() {
    // The full round trip needs the challenge first: tests/extensions.rs does it over TCP.
    let s = setup(MBOX);
    let r = replies(&s.ctx, "AUTH CRAM-MD5\n*\nQUIT\n");
    let challenge = r[0].strip_prefix("+ ").unwrap();
    let decoded = auth::base64_decode(challenge).unwrap();
    let text = String::from_utf8(decoded).unwrap();
    assert!(
        text.starts_with('<') && text.ends_with("@test.example>"),
        "{text}"
    );
    assert!(r[1].starts_with("-ERR"));
}

#[test]
fn maildrop_in_use_answers_in_use() {
    let mut s = setup(MBOX);
    s.ctx.maildrops = Arc::new(MemoryMaildrops {
        store: Arc::clone(&s.store),
        in_use: true,
        previous: None,
    });
    let r = replies(&s.ctx, "USER alice\nPASS secret\nSTAT\nQUIT\n");
    assert!(r[1].starts_with("-ERR [IN-USE]"), "{r:?}");
    assert!(r[2].starts_with("-ERR"));
}

/// A source that switches the process to the user in `lock` (system users): after a
/// maildrop it did not open, no further login could be checked.
struct SwitchingMaildrops(MemoryMaildrops);

impl MaildropSource for SwitchingMaildrops {
    fn lock(&self, user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        self.0.lock(user)
    }

    fn allows_another_login(&self) -> bool {
        false
    }
}

#[test]
fn a_maildrop_not_opened_ends_the_session_where_no_second_login_can_be_checked() {
    let mut s = setup(MBOX);
    for (in_use, previous, code) in [
        (true, None, "-ERR [IN-USE]"),
        (false, Some(SystemTime::now()), "-ERR [LOGIN-DELAY]"),
    ] {
        s.ctx.login_delay = Duration::from_secs(60);
        s.ctx.maildrops = Arc::new(SwitchingMaildrops(MemoryMaildrops {
            store: Arc::clone(&s.store),
            in_use,
            previous,
        }));
        let (t, ending) = transcript(&s.ctx, "USER alice\nPASS secret\nUSER alice\nPASS secret\n");
        let r: Vec<&str> = t.lines().collect();
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[2].starts_with(code), "{r:?}");
        assert_eq!(
            ending,
            Ending::NotOpened {
                user: "alice".into()
            }
        );
    }
}

#[test]
fn login_delay_refuses_an_early_login() {
    let mut s = setup(MBOX);
    s.ctx.login_delay = Duration::from_secs(60);
    s.ctx.maildrops = Arc::new(MemoryMaildrops {
        store: Arc::clone(&s.store),
        in_use: false,
        previous: Some(SystemTime::now()),
    });
    let r = replies(&s.ctx, "CAPA\nUSER alice\nPASS secret\nQUIT\n");
    assert!(r.iter().any(|l| l == "LOGIN-DELAY 60"));
    assert!(
        r.iter().any(|l| l.starts_with("-ERR [LOGIN-DELAY]")),
        "{r:?}"
    );
}

#[test]
fn too_many_bad_commands_end_the_session() {
    let s = setup(MBOX);
    let input = "BOGUS\n".repeat(MAX_BAD_COMMANDS as usize + 5);
    let (t, ending) = transcript(&s.ctx, &input);
    assert_eq!(ending, Ending::TooManyBadCommands);
    assert_eq!(t.matches("-ERR").count(), MAX_BAD_COMMANDS as usize);
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = setup(MBOX);
    let r = replies(
        &s.ctx,
        "USER alice\r\nPASS secret\r\nNOOP\r\nSTAT\r\nLIST 1\r\nQUIT\r\n",
    );
    assert_eq!(r[2], "+OK");
    assert_eq!(r[3], "+OK 2 77");
    assert_eq!(r[4], "+OK 1 37");
}

/// Counts the writes that reach the connection.
struct CountingWriter {
    bytes: Vec<u8>,
    writes: usize,
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn pipelined_replies_leave_in_one_write() {
    let s = setup(MBOX);
    let mut out = CountingWriter {
        bytes: Vec::new(),
        writes: 0,
    };
    let input = "USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n";
    let connection = Connection {
        peer: "test",
        address: None,
        security: Security::Loopback,
    };
    run(
        BufReader::new(input.as_bytes()),
        &mut out,
        &s.ctx,
        connection,
    );
    // The greeting goes out before the first read; every reply to the commands that
    // arrived together leaves in one write at the end.
    assert_eq!(out.writes, 2, "{}", String::from_utf8_lossy(&out.bytes));
    assert!(String::from_utf8_lossy(&out.bytes).ends_with("(0 messages deleted)\r\n"));
}

#[test]
fn long_line_is_one_error() {
    let s = setup(MBOX);
    let input = format!("{}\r\nNOOP\r\nQUIT\r\n", "X".repeat(10_000));
    let r = replies(&s.ctx, &input);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r[0].starts_with("-ERR line too long"));
}

fn random_line(rng: &mut Rng) -> Vec<u8> {
    const WORDS: [&str; 22] = [
        "USER",
        "PASS",
        "APOP",
        "AUTH",
        "STAT",
        "LIST",
        "RETR",
        "DELE",
        "RSET",
        "TOP",
        "UIDL",
        "CAPA",
        "NOOP",
        "QUIT",
        "user",
        "Retr",
        "XTND",
        "PROXY",
        "",
        "AUTH PLAIN",
        "AUTH CRAM-MD5",
        "*",
    ];
    const ARGS: [&str; 16] = [
        "1",
        "2",
        "3",
        "0",
        "4294967295",
        "4294967296",
        "-1",
        "alice",
        "secret",
        "bob",
        "AGFsaWNlAHNlY3JldA==",
        "=",
        "!!",
        "99999999999999999999",
        "",
        "1 0",
    ];
    let mut line = rng.pick(&WORDS).as_bytes().to_vec();
    for _ in 0..rng.below(3) {
        line.push(b' ');
        line.extend_from_slice(rng.pick(&ARGS).as_bytes());
    }
    // Mutations: byte flips, NUL and control bytes, invalid UTF-8, long runs.
    for _ in 0..rng.below(4) {
        match rng.below(6) {
            0 if !line.is_empty() => {
                let at = rng.below(line.len());
                line[at] = rng.next() as u8;
            }
            1 => {
                let at = rng.below(line.len() + 1);
                line.insert(at, 0);
            }
            2 => line.extend_from_slice(&[0xff, 0xfe, 0xc3]),
            3 => line.extend(std::iter::repeat_n(b'A', rng.below(600))),
            4 => line.push(rng.below(32) as u8),
            _ => line.push(b' '),
        }
    }
    line.retain(|&b| b != b'\n');
    line
}

/// Feeds one line per read and checks, before each new line, the replies to the previous
/// one: a status line or a SASL challenge, or a status line, body lines and ".".
struct Stepper {
    lines: std::collections::VecDeque<Vec<u8>>,
    output: Arc<Mutex<Vec<u8>>>,
    consumed: usize,
}

fn check_response(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    assert!(bytes.ends_with(b"\r\n"), "unterminated: {bytes:?}");
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 2].split(|&b| b == b'\n').collect();
    for l in &lines {
        assert!(l.len() < 511, "line over 512 octets");
    }
    let lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|l| {
            assert!(l.ends_with(b"\r\n"), "line without CRLF: {l:?}");
            l[..l.len() - 2].to_vec()
        })
        .collect();
    // Several replies may be present (a status after a body, or a cancelled SASL step).
    let mut i = 0;
    while i < lines.len() {
        let first = &lines[i];
        let is_status =
            first.starts_with(b"+OK") || first.starts_with(b"-ERR") || first.starts_with(b"+ ");
        assert!(
            is_status,
            "not a status line: {:?}",
            String::from_utf8_lossy(first)
        );
        i += 1;
        if first.starts_with(b"+OK") {
            // A body follows a +OK if the next line is not itself a status line.
            let mut j = i;
            while j < lines.len()
                && !(lines[j].starts_with(b"+OK") || lines[j].starts_with(b"-ERR"))
                && lines[j] != b"."
            {
                j += 1;
            }
            if j < lines.len() && lines[j] == b"." {
                i = j + 1;
            } else {
                assert_eq!(j, i, "body without terminator: {lines:?}");
            }
        }
    }
}

impl Read for Stepper {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let produced = std::mem::take(&mut *self.output.lock().unwrap());
        check_response(&produced);
        let Some(mut line) = self.lines.pop_front() else {
            return Ok(0);
        };
        self.consumed += 1;
        line.extend_from_slice(b"\r\n");
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line[..n]);
        if n < line.len() {
            self.lines.push_front(line[n..line.len() - 2].to_vec());
            self.consumed -= 1;
        }
        Ok(n)
    }
}

impl Autologout for Stepper {}

struct SharedOut(Arc<Mutex<Vec<u8>>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn random_command_lines_get_well_formed_replies() {
    let s = setup(MBOX);
    let seed = 0x5eed_1939_2449_5034;
    let mut rng = Rng(seed);
    let mut total = 0usize;
    let mut sessions = 0usize;
    while total < 100_000 {
        let mut lines = std::collections::VecDeque::new();
        if rng.below(3) > 0 {
            lines.push_back(b"USER alice".to_vec());
            lines.push_back(b"PASS secret".to_vec());
        }
        for _ in 0..60 {
            lines.push_back(random_line(&mut rng));
        }
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stepper = Stepper {
            lines,
            output: Arc::clone(&output),
            consumed: 0,
        };
        let ending = run(
            BufReader::new(&mut stepper),
            SharedOut(Arc::clone(&output)),
            &s.ctx,
            Connection {
                peer: "fuzz",
                address: None,
                security: Security::Loopback,
            },
        );
        check_response(&output.lock().unwrap());
        let _ = ending;
        total += stepper.consumed;
        sessions += 1;
        // Keep the shared maildrop the same for every session.
        *s.store.lock().unwrap() = MBOX.as_bytes().to_vec();
    }
    assert!(sessions > 100, "seed {seed:#x}: {sessions} sessions");
}

/// Users whose password check takes as long as the name says: "slow" as long as a costly
/// hash, "fast" no time at all; every check fails.
struct SlowChecks {
    slow: Duration,
}

impl UserSource for SlowChecks {
    fn checked_user(&self, name: &str, _check: &dyn Fn(&Password) -> bool) -> Option<User> {
        if name == "slow" {
            std::thread::sleep(self.slow);
        }
        None
    }
}

#[test]
fn failed_logins_are_answered_alike_however_long_the_check_took() {
    let mut s = setup(MBOX);
    let slow = Duration::from_millis(300);
    s.ctx.failure_delay = Duration::from_millis(600);
    s.ctx.users = Arc::new(SlowChecks { slow });
    let mut took = Vec::new();
    for name in ["slow", "fast"] {
        let started = std::time::Instant::now();
        let r = replies(&s.ctx, &format!("USER {name}\nPASS x\nQUIT\n"));
        took.push(started.elapsed());
        assert_eq!(r[1], format!("-ERR {LOGIN_FAILED}"), "{r:?}");
    }
    // Generous bounds: the answer comes at the start of the check plus the delay, so the
    // check's own time (here the sleep) does not show; before, it was added on top.
    for t in &took {
        assert!(*t >= s.ctx.failure_delay, "{took:?}");
    }
    let difference = took[0].abs_diff(took[1]);
    assert!(difference < Duration::from_millis(150), "{took:?}");
}

#[test]
fn failure_wait_counts_from_the_start_of_the_check() {
    let delay = Duration::from_millis(1000);
    let ms = Duration::from_millis;
    assert_eq!(failure_wait(ms(0), delay), Some(delay));
    assert_eq!(failure_wait(ms(300), delay), Some(ms(700)));
    assert_eq!(failure_wait(ms(1000), delay), None);
    assert_eq!(failure_wait(ms(1500), delay), None);
    assert_eq!(failure_wait(ms(5), Duration::ZERO), None);
}
