//! The session's sources (its seam traits `UserSource`, `MaildropSource`, `Mailbox`) served
//! by the real things: users from the users file, maildrops from mbox files named by the
//! --maildrop pattern. The session itself never sees a path.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::maildrop::{
    CommitStats, Maildrop, MaildropError, MessageInfo, OpenOptions, SessionLock,
};
use crate::session::{LockedMaildrop, Mailbox, MaildropSource, UsersDbSource};
use crate::users::{self, User, UsersDb, UsersFile};

impl UsersDbSource for UsersFile {
    fn current(&self) -> Arc<UsersDb> {
        UsersFile::current(self)
    }
}

/// A fixed set of users (tests, and tools that parse the file once).
pub struct FixedUsers(pub Arc<UsersDb>);

impl UsersDbSource for FixedUsers {
    fn current(&self) -> Arc<UsersDb> {
        Arc::clone(&self.0)
    }
}

/// Maildrops as mbox files: `pattern` with %u replaced, unless the user names a path.
pub struct MboxFiles {
    pub pattern: String,
    pub options: OpenOptions,
}

impl MboxFiles {
    /// Takes the session lock of `user`'s mbox, to be opened with `options` (whose `owner`,
    /// if any, the session lock's file must belong to as well).
    pub fn lock_with(
        &self,
        user: &User,
        options: OpenOptions,
    ) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        let path = users::maildrop_path(&self.pattern, user);
        let lock = SessionLock::try_acquire_as(&path, options.owner)?;
        let mut options = options;
        if let Some(uidl) = &user.uidl {
            options.uidl = uidl.clone();
        }
        Ok(Box::new(LockedMbox {
            path,
            lock,
            options,
        }))
    }
}

impl MaildropSource for MboxFiles {
    fn lock(&self, user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        self.lock_with(user, self.options.clone())
    }
}

struct LockedMbox {
    path: PathBuf,
    lock: SessionLock,
    options: OpenOptions,
}

impl LockedMaildrop for LockedMbox {
    fn previous_login(&self) -> Option<SystemTime> {
        self.lock.previous_login()
    }

    fn open(self: Box<Self>) -> Result<Box<dyn Mailbox>, MaildropError> {
        let maildrop = Maildrop::open(&self.path, self.lock, &self.options)?;
        // RFC 2449 LOGIN-DELAY counts successful logins only.
        maildrop.record_login()?;
        Ok(Box::new(maildrop))
    }
}

impl Mailbox for Maildrop {
    fn messages(&self) -> &[MessageInfo] {
        Maildrop::messages(self)
    }

    fn message_reader(&mut self, index: usize) -> Result<Box<dyn BufRead + '_>, MaildropError> {
        Maildrop::message_reader(self, index)
    }

    fn commit(&mut self, deleted: &[bool]) -> Result<CommitStats, MaildropError> {
        Maildrop::commit(self, deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::time::Duration;

    #[test]
    fn login_delay_counts_only_logins_that_opened_the_maildrop() {
        let temp = TempDir::new("sources-login-delay");
        let dir = temp.path();
        let mbox = dir.join("carol");
        std::fs::write(
            &mbox,
            "From a@x Sat Jan  3 01:05:34 1996\nSubject: x\n\nbody\n\n",
        )
        .unwrap();
        let source = MboxFiles {
            pattern: dir.join("%u").to_string_lossy().into_owned(),
            options: OpenOptions {
                lock_timeout: Duration::from_millis(200),
                ..OpenOptions::default()
            },
        };
        let user = User {
            name: "carol".into(),
            password: users::Password::Clear("pw".into()),
            maildrop: None,
            account: None,
            uidl: None,
        };
        // A delivery agent (this live process) holds the dotlock: the open fails...
        std::fs::write(dir.join("carol.lock"), format!("{}\n", std::process::id())).unwrap();
        let locked = source.lock(&user).unwrap();
        assert_eq!(locked.previous_login(), None);
        assert!(matches!(locked.open(), Err(MaildropError::Locked)));
        // ...and does not count as a login.
        let locked = source.lock(&user).unwrap();
        assert_eq!(locked.previous_login(), None);
        drop(locked);
        std::fs::remove_file(dir.join("carol.lock")).unwrap();
        let mailbox = source.lock(&user).unwrap().open().unwrap();
        assert_eq!(mailbox.messages().len(), 1);
        drop(mailbox);
        let previous = source.lock(&user).unwrap().previous_login();
        let age = previous
            .expect("a recorded login")
            .elapsed()
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "{age:?}");
    }
}
