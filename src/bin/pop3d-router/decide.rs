//! What the router answers one auth_http request: the backend that holds the user's
//! maildrop, or why not. Pure: the routes and users in force are passed in, and the caller
//! logs the verdict and writes the answer.
//!
//! Two modes. Route only (no users file): every USER/PASS or AUTH PLAIN login is sent to its
//! backend, which checks the password and refuses a wrong one exactly as it refuses an
//! unknown user (the unknown user being sent to the default route). With a users file the
//! router checks the credentials itself, so APOP and CRAM-MD5 work through the proxy: nginx
//! makes its own challenge, the router checks the digest against the clear password and hands
//! that password back for nginx's USER/PASS login to the backend.
//!
//! In both modes the router applies pop3d's `--plaintext-auth` policy to clear-text logins
//! (USER/PASS, AUTH PLAIN, AUTH LOGIN), since the backend cannot: nginx reaches it on its
//! secure listener whatever the client did. A client is secure when nginx says it used TLS
//! (`Auth-SSL: on`) or its Client-IP is loopback.

use std::net::SocketAddr;
use std::time::Duration;

use pop3d::auth;
use pop3d::security::{PlaintextAuth, Security};
use pop3d::session::{LOGIN_FAILED, MAX_AUTH_FAILURES, PLAINTEXT_REFUSED, TURN_REFUSED};
use pop3d::users::{User, UsersDb, UsersFile};

use crate::http::{Answer, AuthRequest, Method};
use crate::routes::Routes;

const NOT_POP3: &str = "[SYS/PERM] this server routes pop3 only";
const METHOD_UNAVAILABLE: &str = "[SYS/PERM] authentication method not available";
const PASSWORD_NOT_PASSABLE: &str =
    "[SYS/PERM] this account cannot use apop or cram-md5 through the proxy, use user and pass";

/// The verdict on one request, for the log and the answer.
#[derive(PartialEq, Eq)]
pub enum Verdict {
    Routed {
        user: String,
        backend: SocketAddr,
        /// The clear password for nginx to log in with, for digest logins.
        pass: Option<String>,
    },
    /// A wrong password or an unknown user: the router does not tell them apart to anyone.
    LoginFailed,
    /// Auth-Protocol other than pop3 (nginx also proxies IMAP and SMTP).
    NotPop3,
    /// A method the router cannot check: APOP or CRAM-MD5 without a users file (the backend
    /// never sees nginx's challenge), or one POP3 does not have.
    MethodUnavailable,
    /// Right digest, but the password cannot travel in nginx's Auth-Pass header (a control
    /// character, or a blank at either end, which nginx strips): its login to the backend
    /// would fail.
    PasswordNotPassable { user: String },
    /// A clear-text password from a client that is neither on TLS nor on this host.
    PlaintextRefused,
    /// The client's address has too many password checks queued (penalty.rs): refused
    /// without a check, as pop3d refuses it.
    TurnRefused,
}

impl std::fmt::Debug for Verdict {
    // The password handed back must not reach a log through a stray {:?}.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Routed { user, backend, .. } => write!(f, "Routed({user}, {backend})"),
            Verdict::LoginFailed => f.write_str("LoginFailed"),
            Verdict::NotPop3 => f.write_str("NotPop3"),
            Verdict::MethodUnavailable => f.write_str("MethodUnavailable"),
            Verdict::PasswordNotPassable { user } => write!(f, "PasswordNotPassable({user})"),
            Verdict::PlaintextRefused => f.write_str("PlaintextRefused"),
            Verdict::TurnRefused => f.write_str("TurnRefused"),
        }
    }
}

/// Decides one request. `users` is None in route-only mode. `turn` is called right before a
/// password is checked, and only then: it waits for the client address's turn under the
/// login penalty, false if the address has none to give. The users are read after that wait,
/// so a password changed or an account removed meanwhile is checked as it now stands.
pub fn decide<U: CurrentUsers>(
    request: &AuthRequest,
    routes: &Routes,
    users: Option<&U>,
    plaintext_auth: PlaintextAuth,
    turn: impl FnOnce() -> bool,
) -> Verdict {
    if !request.protocol.eq_ignore_ascii_case("pop3") {
        return Verdict::NotPop3;
    }
    if matches!(request.method, Method::Plain | Method::Login)
        && !security(request).allows_plaintext(plaintext_auth)
    {
        return Verdict::PlaintextRefused;
    }
    let name = String::from_utf8_lossy(&request.user);
    let Some(users) = users else {
        return match request.method {
            // A name that is not UTF-8 has no route of its own: the default backend refuses
            // it as it refuses any unknown user.
            Method::Plain | Method::Login => Verdict::Routed {
                backend: routes.route(&name),
                user: name.into_owned(),
                pass: None,
            },
            _ => Verdict::MethodUnavailable,
        };
    };
    if matches!(request.method, Method::Other(_)) {
        return Verdict::MethodUnavailable;
    }
    if !turn() {
        return Verdict::TurnRefused;
    }
    // A password that is not UTF-8 matches no line of the users file.
    let given = std::str::from_utf8(&request.pass).ok();
    let salt = request.salt.as_deref();
    // A name that is not UTF-8 is no user's: looked up as "", it still costs a check.
    let name = std::str::from_utf8(&request.user).unwrap_or("");
    let user = users.with_current(|users| check(users, request, name, given, salt));
    let Some(user) = user else {
        return Verdict::LoginFailed;
    };
    let pass = match request.method {
        Method::Apop | Method::CramMd5 => {
            // Only a clear password can have passed the digest check above.
            let Some(secret) = user.password.shared_secret().filter(|s| passable(s)) else {
                return Verdict::PasswordNotPassable { user: user.name };
            };
            Some(secret.to_owned())
        }
        // nginx logs in with what the client typed, which is the password.
        _ => None,
    };
    Verdict::Routed {
        backend: routes.route(&user.name),
        user: user.name,
        pass,
    }
}

/// The user `name` if the credentials of `request` check out against `users`.
fn check(
    users: &UsersDb,
    request: &AuthRequest,
    name: &str,
    given: Option<&str>,
    salt: Option<&str>,
) -> Option<User> {
    let user = match (&request.method, salt) {
        (Method::Plain | Method::Login, _) => users.checked_user(name, |stored| {
            given.is_some_and(|given| stored.check(given))
        }),
        // A hashed password is no shared secret: APOP and CRAM-MD5 fail for its user.
        (Method::Apop, Some(salt)) => users.checked_user(name, |stored| {
            stored.shared_secret().is_some_and(|secret| {
                given.is_some_and(|given| auth::check_apop(salt, secret, given))
            })
        }),
        (Method::CramMd5, Some(salt)) => users.checked_user(name, |stored| {
            stored.shared_secret().is_some_and(|secret| {
                given.is_some_and(|given| auth::check_cram_md5(salt, secret, given))
            })
        }),
        // A digest without the challenge it answers cannot be right.
        (Method::Apop | Method::CramMd5, None) => None,
        // Refused in `decide`, before the turn.
        (Method::Other(_), _) => None,
    };
    user.cloned()
}

/// The users a check reads, read when the check runs (after its turn's wait).
pub trait CurrentUsers {
    fn with_current<R>(&self, f: impl FnOnce(&UsersDb) -> R) -> R;
}

impl CurrentUsers for UsersDb {
    fn with_current<R>(&self, f: impl FnOnce(&UsersDb) -> R) -> R {
        f(self)
    }
}

/// The users file as re-read on its changes.
impl CurrentUsers for UsersFile {
    fn with_current<R>(&self, f: impl FnOnce(&UsersDb) -> R) -> R {
        f(&self.current())
    }
}

/// How secure the client's connection to nginx is. Without a Client-IP (nginx always sends
/// one) the client counts as off this host.
fn security(request: &AuthRequest) -> Security {
    match request.client {
        Some(ip) => Security::of(ip, false, request.ssl),
        None if request.ssl => Security::ProxyTls,
        None => Security::Open,
    }
}

/// Whether nginx can hand `password` to the backend as it is: it reads Auth-Pass as one
/// header value, so a line break would end it (and let the password write headers of its
/// own), and it trims blanks at either end.
fn passable(password: &str) -> bool {
    !password.bytes().any(|b| b.is_ascii_control()) && password.trim_matches(' ') == password
}

/// The answer for a verdict, and how long to wait before giving it. A refusal normally
/// carries `Auth-Wait: wait`, so nginx answers the client after that delay and lets it try
/// again; the last attempt pop3d itself would allow is answered after the same delay, but
/// without Auth-Wait, so that nginx closes the connection as pop3d would.
pub fn answer(verdict: &Verdict, attempt: u32, wait: Duration) -> (Answer, Duration) {
    let refuse = |status, last: bool| {
        if last {
            (Answer::Refuse { status, wait: None }, wait)
        } else {
            let seconds = Some(wait.as_secs());
            (
                Answer::Refuse {
                    status,
                    wait: seconds,
                },
                Duration::ZERO,
            )
        }
    };
    match verdict {
        Verdict::Routed { backend, pass, .. } => (
            Answer::Route {
                backend: *backend,
                pass: pass.clone(),
            },
            Duration::ZERO,
        ),
        Verdict::LoginFailed => refuse(LOGIN_FAILED, attempt >= MAX_AUTH_FAILURES),
        // Counted like a failure, as pop3d counts it towards its connection's limit.
        Verdict::TurnRefused => refuse(TURN_REFUSED, attempt >= MAX_AUTH_FAILURES),
        Verdict::NotPop3 => refuse(NOT_POP3, true),
        Verdict::MethodUnavailable => refuse(METHOD_UNAVAILABLE, false),
        Verdict::PasswordNotPassable { .. } => refuse(PASSWORD_NOT_PASSABLE, false),
        // Not a failed login (no password was checked): the client may go on with APOP.
        Verdict::PlaintextRefused => refuse(PLAINTEXT_REFUSED, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "alice:wonderland\nbob:builder\nspacey: pad \ncr:a\rb\n";
    const ROUTES: &[u8] = b"bob:127.0.0.1:1102\n*:127.0.0.1:1101\n";
    const SALT: &str = "<1896.697170952@dbc.mtview.ca.us>";

    fn request(method: Method, user: &[u8], pass: &[u8], salt: Option<&str>) -> AuthRequest {
        AuthRequest {
            method,
            protocol: "pop3".into(),
            user: user.to_vec(),
            pass: pass.to_vec(),
            salt: salt.map(str::to_owned),
            client: Some("127.0.0.1".parse().unwrap()),
            attempt: 1,
            ssl: false,
        }
    }

    /// Each request of `table` decided with `users` (every turn given) gets its verdict.
    fn expect_verdicts<const N: usize>(
        table: [(AuthRequest, Verdict); N],
        routes: &Routes,
        users: &UsersDb,
    ) {
        for (request, verdict) in table {
            let got = decide(&request, routes, Some(users), PlaintextAuth::Secure, || {
                true
            });
            assert_eq!(got, verdict, "{request:?}");
        }
    }

    fn routed(user: &str, backend: &str, pass: Option<&str>) -> Verdict {
        Verdict::Routed {
            user: user.into(),
            backend: backend.parse().unwrap(),
            pass: pass.map(str::to_owned),
        }
    }

    fn hmac_hex(secret: &str, challenge: &str) -> String {
        auth::hmac_md5(secret.as_bytes(), challenge.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn with_users_the_router_checks_every_method() {
        let users = UsersDb::parse(USERS).unwrap();
        let routes = Routes::parse(ROUTES).unwrap();
        let apop = auth::apop_digest(SALT, "builder");
        let apop_upper = apop.to_ascii_uppercase();
        let cram = hmac_hex("wonderland", SALT);
        let table = [
            (
                request(Method::Plain, b"alice", b"wonderland", None),
                routed("alice", "127.0.0.1:1101", None),
            ),
            (
                request(Method::Login, b"bob", b"builder", None),
                routed("bob", "127.0.0.1:1102", None),
            ),
            (
                request(Method::Apop, b"bob", apop.as_bytes(), Some(SALT)),
                routed("bob", "127.0.0.1:1102", Some("builder")),
            ),
            (
                request(Method::Apop, b"bob", apop_upper.as_bytes(), Some(SALT)),
                routed("bob", "127.0.0.1:1102", Some("builder")),
            ),
            (
                request(Method::CramMd5, b"alice", cram.as_bytes(), Some(SALT)),
                routed("alice", "127.0.0.1:1101", Some("wonderland")),
            ),
            (
                request(Method::Plain, b"alice", b"wrong", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"nobody", b"wonderland", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"Alice", b"wonderland", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"\xffalice", b"wonderland", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"alice", b"wonderland ", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Apop, b"bob", apop.as_bytes(), Some("<other@salt>")),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Apop, b"bob", apop.as_bytes(), None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::CramMd5, b"alice", apop.as_bytes(), Some(SALT)),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"spacey", b" pad ", None),
                routed("spacey", "127.0.0.1:1101", None),
            ),
            (
                request(
                    Method::Apop,
                    b"spacey",
                    auth::apop_digest(SALT, " pad ").as_bytes(),
                    Some(SALT),
                ),
                Verdict::PasswordNotPassable {
                    user: "spacey".into(),
                },
            ),
            (
                request(
                    Method::CramMd5,
                    b"cr",
                    hmac_hex("a\rb", SALT).as_bytes(),
                    Some(SALT),
                ),
                Verdict::PasswordNotPassable { user: "cr".into() },
            ),
            (
                request(Method::Plain, b"alice", b"wonder\xffland", None),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Other("external".into()), b"alice", b"", None),
                Verdict::MethodUnavailable,
            ),
        ];
        expect_verdicts(table, &routes, &users);
    }

    /// The turn is taken right before a password check, and only then; without one, no
    /// password is checked and nginx is told to let the client try later.
    #[test]
    fn a_password_is_checked_only_on_the_address_turn() {
        let users = UsersDb::parse(USERS).unwrap();
        let routes = Routes::parse(ROUTES).unwrap();
        let turns = std::cell::Cell::new(0);
        let take = |given| {
            let turns = &turns;
            move || {
                turns.set(turns.get() + 1);
                given
            }
        };
        let right = request(Method::Plain, b"alice", b"wonderland", None);
        let apop = request(Method::Apop, b"alice", b"00", Some(SALT));
        for r in [&right, &apop] {
            let verdict = decide(r, &routes, Some(&users), PlaintextAuth::Secure, take(false));
            assert_eq!(verdict, Verdict::TurnRefused, "{r:?}");
        }
        assert_eq!(turns.get(), 2);
        let verdict = decide(
            &right,
            &routes,
            Some(&users),
            PlaintextAuth::Secure,
            take(true),
        );
        assert_eq!(verdict, routed("alice", "127.0.0.1:1101", None));
        assert_eq!(turns.get(), 3);
        // No password to check: no turn taken.
        let mut not_pop3 = right.clone();
        not_pop3.protocol = "imap".into();
        let other = request(Method::Other("external".into()), b"alice", b"", None);
        let mut open = right.clone();
        open.client = Some("192.0.2.7".parse().unwrap());
        for (r, users) in [
            (&not_pop3, Some(&users)),
            (&other, Some(&users)),
            (&open, Some(&users)),
            (&right, None),
        ] {
            decide(r, &routes, users, PlaintextAuth::Secure, take(false));
        }
        assert_eq!(turns.get(), 3);
        let wait = Duration::from_secs(1);
        assert_eq!(
            answer(&Verdict::TurnRefused, 1, wait),
            (
                Answer::Refuse {
                    status: TURN_REFUSED,
                    wait: Some(1)
                },
                Duration::ZERO
            )
        );
        assert_eq!(
            answer(&Verdict::TurnRefused, MAX_AUTH_FAILURES, wait),
            (
                Answer::Refuse {
                    status: TURN_REFUSED,
                    wait: None
                },
                wait
            )
        );
    }

    /// Users as a test changes them.
    struct Changing(std::cell::RefCell<UsersDb>);

    impl CurrentUsers for Changing {
        fn with_current<R>(&self, f: impl FnOnce(&UsersDb) -> R) -> R {
            f(&self.0.borrow())
        }
    }

    /// A check waits for its turn, then reads the users as they stand: a password changed
    /// during the wait is the one checked.
    #[test]
    fn the_users_are_read_after_the_turn() {
        let routes = Routes::parse(ROUTES).unwrap();
        let users = Changing(std::cell::RefCell::new(UsersDb::parse(USERS).unwrap()));
        let changed = request(Method::Plain, b"alice", b"looking-glass", None);
        let verdict = decide(
            &changed,
            &routes,
            Some(&users),
            PlaintextAuth::Secure,
            || {
                *users.0.borrow_mut() = UsersDb::parse("alice:looking-glass\n").unwrap();
                true
            },
        );
        assert_eq!(verdict, routed("alice", "127.0.0.1:1101", None));
    }

    #[test]
    fn a_hashed_password_logs_in_with_plain_and_login_only() {
        let hash = pop3d::sys::crypt("crypted", "$6$saltsalt$").unwrap();
        let users = UsersDb::parse(&format!("dora:{{CRYPT}}{hash}\neve:{{PLAIN}}{{x}}\n")).unwrap();
        let routes = Routes::parse(ROUTES).unwrap();
        let table = [
            (
                request(Method::Plain, b"dora", b"crypted", None),
                routed("dora", "127.0.0.1:1101", None),
            ),
            (
                request(Method::Login, b"dora", b"crypted", None),
                routed("dora", "127.0.0.1:1101", None),
            ),
            (
                request(Method::Plain, b"dora", hash.as_bytes(), None),
                Verdict::LoginFailed,
            ),
            (
                request(
                    Method::Apop,
                    b"dora",
                    auth::apop_digest(SALT, "crypted").as_bytes(),
                    Some(SALT),
                ),
                Verdict::LoginFailed,
            ),
            (
                request(
                    Method::CramMd5,
                    b"dora",
                    hmac_hex(&hash, SALT).as_bytes(),
                    Some(SALT),
                ),
                Verdict::LoginFailed,
            ),
            (
                request(Method::Plain, b"eve", b"{x}", None),
                routed("eve", "127.0.0.1:1101", None),
            ),
        ];
        expect_verdicts(table, &routes, &users);
    }

    #[test]
    fn route_only_sends_every_plain_login_to_its_backend() {
        let routes = Routes::parse(ROUTES).unwrap();
        let table = [
            (
                request(Method::Plain, b"bob", b"anything", None),
                routed("bob", "127.0.0.1:1102", None),
            ),
            (
                request(Method::Login, b"nobody", b"x", None),
                routed("nobody", "127.0.0.1:1101", None),
            ),
            (
                request(Method::Apop, b"bob", b"0123", Some(SALT)),
                Verdict::MethodUnavailable,
            ),
            (
                request(Method::CramMd5, b"bob", b"0123", Some(SALT)),
                Verdict::MethodUnavailable,
            ),
        ];
        for (request, verdict) in table {
            assert_eq!(
                decide(
                    &request,
                    &routes,
                    None::<&UsersDb>,
                    PlaintextAuth::Secure,
                    || true
                ),
                verdict,
                "{request:?}"
            );
        }
    }

    #[test]
    fn other_protocols_are_refused() {
        let routes = Routes::parse(ROUTES).unwrap();
        let mut r = request(Method::Plain, b"bob", b"builder", None);
        r.protocol = "imap".into();
        assert_eq!(
            decide(&r, &routes, None::<&UsersDb>, PlaintextAuth::Secure, || {
                true
            }),
            Verdict::NotPop3
        );
    }

    #[test]
    fn refusals_wait_and_the_last_attempt_closes_after_the_same_delay() {
        let wait = Duration::from_secs(2);
        let (first, delay) = answer(&Verdict::LoginFailed, 1, wait);
        assert_eq!(
            first,
            Answer::Refuse {
                status: LOGIN_FAILED,
                wait: Some(2)
            }
        );
        assert_eq!(delay, Duration::ZERO);
        let (last, delay) = answer(&Verdict::LoginFailed, MAX_AUTH_FAILURES, wait);
        assert_eq!(
            last,
            Answer::Refuse {
                status: LOGIN_FAILED,
                wait: None
            }
        );
        assert_eq!(delay, wait);
    }

    #[test]
    fn a_route_answer_carries_the_password_only_for_digest_logins() {
        let (a, delay) = answer(
            &routed("bob", "127.0.0.1:1102", Some("builder")),
            1,
            Duration::ZERO,
        );
        assert_eq!(
            a,
            Answer::Route {
                backend: "127.0.0.1:1102".parse().unwrap(),
                pass: Some("builder".into())
            }
        );
        assert_eq!(delay, Duration::ZERO);
    }

    #[test]
    fn clear_text_logins_need_tls_or_loopback_in_both_modes() {
        let users = UsersDb::parse(USERS).unwrap();
        let routes = Routes::parse(ROUTES).unwrap();
        let from = |ip: &str, ssl: bool, method: Method, pass: &[u8], salt| {
            let mut r = request(method, b"alice", pass, salt);
            r.client = Some(ip.parse().unwrap());
            r.ssl = ssl;
            r
        };
        let apop = auth::apop_digest(SALT, "wonderland");
        let alice = routed("alice", "127.0.0.1:1101", None);
        for users in [Some(&users), None] {
            let verdict = |r: &AuthRequest, policy| decide(r, &routes, users, policy, || true);
            let open = from("192.0.2.7", false, Method::Plain, b"wonderland", None);
            assert_eq!(
                verdict(&open, PlaintextAuth::Secure),
                Verdict::PlaintextRefused
            );
            let login = from("2001:db8::7", false, Method::Login, b"wonderland", None);
            assert_eq!(
                verdict(&login, PlaintextAuth::Secure),
                Verdict::PlaintextRefused
            );
            // A wrong password is refused the same way: nothing is checked before TLS.
            let wrong = from("192.0.2.7", false, Method::Plain, b"wrong", None);
            assert_eq!(
                verdict(&wrong, PlaintextAuth::Secure),
                Verdict::PlaintextRefused
            );
            assert_eq!(verdict(&open, PlaintextAuth::Always), alice);
            let tls = from("192.0.2.7", true, Method::Plain, b"wonderland", None);
            assert_eq!(verdict(&tls, PlaintextAuth::Secure), alice);
            let local = from("::1", false, Method::Plain, b"wonderland", None);
            assert_eq!(verdict(&local, PlaintextAuth::Secure), alice);
            let mut unknown = open.clone();
            unknown.client = None;
            assert_eq!(
                verdict(&unknown, PlaintextAuth::Secure),
                Verdict::PlaintextRefused
            );
        }
        // APOP never sends the password: taken from anywhere (with --users, which checks it).
        let r = from(
            "192.0.2.7",
            false,
            Method::Apop,
            apop.as_bytes(),
            Some(SALT),
        );
        assert_eq!(
            decide(&r, &routes, Some(&users), PlaintextAuth::Secure, || true),
            routed("alice", "127.0.0.1:1101", Some("wonderland"))
        );
    }

    #[test]
    fn a_clear_text_refusal_tells_the_client_to_use_tls_and_lets_it_go_on() {
        let (answer, delay) = answer(&Verdict::PlaintextRefused, 3, Duration::from_secs(1));
        let Answer::Refuse { status, wait } = answer else {
            panic!("{answer:?}");
        };
        assert!(
            status.starts_with("[AUTH] ") && status.contains("TLS"),
            "{status}"
        );
        assert_eq!(wait, Some(1));
        assert_eq!(delay, Duration::ZERO);
    }
}
