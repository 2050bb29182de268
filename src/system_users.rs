//! `--system-users`: the host's own accounts as the session's users. Looks accounts up as the
//! system resolves them (NSS: getpwnam_r, getspnam_r) and checks passwords with libcrypt;
//! decides who may never log in (root, uids below --first-uid, locked or empty passwords).
//! It does not switch credentials (see `owner`) and never tells the client why a login failed.

use std::error::Error;
use std::fmt;

use crate::auth::valid_user_name;
use crate::session::UserSource;
use crate::sys::{self, Account, CryptError};
use crate::users::{Password, User};

/// Debian's UID_MIN (/etc/login.defs): accounts below it belong to the system, not to people.
pub const DEFAULT_FIRST_UID: u32 = 1000;

/// Why an existing account may not log in (for the log only: the client is told nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Root,
    BelowFirstUid,
    /// `!` or `*` in front of the hash (passwd -l, usermod -L, or an account without one).
    Locked,
    Empty,
    /// No shadow entry for the account.
    NoShadow,
    /// NSS answered for a different name (a case-insensitive source such as LDAP): the
    /// maildrop path is built from the name, so only the exact name may log in.
    OtherName,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Root => "uid 0 never logs in",
            Refusal::BelowFirstUid => "uid below --first-uid",
            Refusal::Locked => "password locked",
            Refusal::Empty => "password empty",
            Refusal::NoShadow => "no shadow entry",
            Refusal::OtherName => "account name differs from the login name",
        })
    }
}

/// Why the system users could not be set up.
#[derive(Debug)]
pub enum SystemUsersError {
    /// libcrypt could not make the dummy hash of the host's default method.
    DummyHash(CryptError),
}

impl fmt::Display for SystemUsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemUsersError::DummyHash(e) => write!(f, "cannot make a dummy password hash: {e}"),
        }
    }
}

impl Error for SystemUsersError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SystemUsersError::DummyHash(e) => Some(e),
        }
    }
}

/// The system's accounts, looked up at each login (so account changes apply at once).
pub struct SystemUsers {
    first_uid: u32,
    /// A hash of the host's default method and cost, made at start-up: checked for unknown
    /// and refused names so they cost what a real check costs.
    dummy_hash: String,
}

impl fmt::Debug for SystemUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemUsers")
            .field("first_uid", &self.first_uid)
            .finish_non_exhaustive()
    }
}

impl SystemUsers {
    /// Accounts with a uid of at least `first_uid` (and never uid 0) may log in.
    pub fn new(first_uid: u32) -> Result<SystemUsers, SystemUsersError> {
        let setting = sys::default_setting().map_err(SystemUsersError::DummyHash)?;
        // The phrase does not matter: nobody is told the result of checking against it.
        let hash =
            sys::crypt("pop3d-dummy-password", &setting).map_err(SystemUsersError::DummyHash)?;
        Ok(SystemUsers {
            first_uid,
            dummy_hash: hash,
        })
    }

    /// As `new`, with a dummy hash made earlier (a session process gets its daemon's).
    pub fn with_dummy(first_uid: u32, dummy: String) -> SystemUsers {
        SystemUsers {
            first_uid,
            dummy_hash: dummy,
        }
    }

    /// The dummy hash unknown and refused names are checked against.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    fn dummy(&self) -> Password {
        Password::Crypt(self.dummy_hash.clone())
    }

    /// The account and its hash if `name` may log in; Err(None) for no such account.
    fn lookup(&self, name: &str) -> Result<(Account, String), Option<Refusal>> {
        let account = match sys::account_by_name(name) {
            Ok(Some(account)) => account,
            Ok(None) => return Err(None),
            Err(e) => {
                log::warn!("passwd look-up of {} failed: {e}", name.escape_default());
                return Err(None);
            }
        };
        if account.name != name {
            return Err(Some(Refusal::OtherName));
        }
        if account.uid == 0 {
            return Err(Some(Refusal::Root));
        }
        if account.uid < self.first_uid {
            return Err(Some(Refusal::BelowFirstUid));
        }
        let hash = match sys::shadow_hash(name) {
            Ok(Some(hash)) => hash.0,
            Ok(None) => return Err(Some(Refusal::NoShadow)),
            Err(e) => {
                log::warn!("shadow look-up of {} failed: {e}", name.escape_default());
                return Err(Some(Refusal::NoShadow));
            }
        };
        if hash.is_empty() {
            return Err(Some(Refusal::Empty));
        }
        if hash.starts_with('!') || hash.starts_with('*') {
            return Err(Some(Refusal::Locked));
        }
        Ok((account, hash))
    }
}

impl UserSource for SystemUsers {
    fn checked_user(&self, name: &str, check: &dyn Fn(&Password) -> bool) -> Option<User> {
        let found = if valid_user_name(name) {
            self.lookup(name)
        } else {
            Err(None)
        };
        match found {
            Ok((account, hash)) => {
                if !check(&Password::Crypt(hash)) {
                    return None;
                }
                Some(User {
                    name: account.name.clone(),
                    // The hash has done its work; the session need not carry it around.
                    password: Password::Crypt(String::new()),
                    maildrop: None,
                    account: Some(account),
                    uidl: None,
                })
            }
            Err(refusal) => {
                // The same work as a real check, and the same answer, whatever the reason.
                std::hint::black_box(check(&self.dummy()));
                if let Some(refusal) = refusal {
                    log::info!("system user {name} may not log in: {refusal}");
                }
                None
            }
        }
    }

    /// System passwords are hashes: APOP and CRAM-MD5 cannot work, CRAM-MD5 is not offered.
    fn has_shared_secrets(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_texts_are_lowercase_without_a_final_period() {
        for refusal in [
            Refusal::Root,
            Refusal::BelowFirstUid,
            Refusal::Locked,
            Refusal::Empty,
            Refusal::NoShadow,
            Refusal::OtherName,
        ] {
            let text = refusal.to_string();
            assert!(
                !text.ends_with('.') && !text.starts_with(char::is_uppercase),
                "{text}"
            );
        }
    }

    #[test]
    fn the_dummy_is_a_usable_hash_of_the_default_kind() {
        let users = SystemUsers::new(DEFAULT_FIRST_UID).unwrap();
        let hash = users.dummy_hash();
        assert!(
            hash.starts_with(&sys::default_setting().unwrap()[..3]),
            "{hash}"
        );
        assert!(users.dummy().check("pop3d-dummy-password"));
        assert!(!format!("{users:?}").contains(hash));
    }

    #[test]
    fn invalid_and_unknown_names_cost_one_check_of_the_dummy() {
        let users = SystemUsers::new(DEFAULT_FIRST_UID).unwrap();
        for name in ["pop3d-no-such-user", "../root", "", "bob.lock"] {
            let checked = std::cell::RefCell::new(Vec::new());
            let user = users.checked_user(name, &|stored| {
                checked.borrow_mut().push(stored.clone());
                true
            });
            assert!(user.is_none(), "{name}");
            assert_eq!(checked.into_inner(), [users.dummy()], "{name}");
        }
    }

    #[test]
    fn root_never_logs_in_even_when_the_check_passes() {
        let users = SystemUsers::new(0).unwrap();
        let checked = std::cell::Cell::new(0);
        let user = users.checked_user("root", &|stored| {
            checked.set(checked.get() + 1);
            assert_eq!(stored, &users.dummy(), "root's own hash was checked");
            true
        });
        assert!(user.is_none());
        assert_eq!(checked.get(), 1);
    }
}
