//! `--system-users`: maildrop work as the mailbox owner. Wraps the mbox source so that, before
//! the first maildrop file is opened, the session's process (one per session: --inetd, or a
//! session process of the standalone daemon, session_process.rs) switches for good to the
//! user's uid, primary gid and groups, plus group `mail` when the spool directory belongs to
//! it and is group-writable (dotlocks in a root:mail 2775 /var/mail, Debian policy 11.6).
//! The switch itself is in `sys`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::maildrop::{MaildropError, OpenOptions};
use crate::session::{LockedMaildrop, MaildropSource};
use crate::sources::MboxFiles;
use crate::sys::{self, Account, Credentials};
use crate::users::{self, User};

/// The group-write bit of a directory's mode.
const GROUP_WRITE: u32 = 0o020;

/// The other-write bit: in a world-writable (sticky) spool every user can make their own
/// files and dotlocks, and group mail would only let a symlink the user planted there reach
/// another user's 0660 mbox.
const OTHER_WRITE: u32 = 0o002;

/// Mbox files opened as their owner.
pub struct OwnerMaildrops {
    pub files: MboxFiles,
    /// The gid of group `mail`, looked up at start-up; None if the host has no such group.
    pub mail_gid: Option<u32>,
}

impl OwnerMaildrops {
    /// The credentials `account` works with on the maildrop at `mbox`.
    fn credentials(&self, account: &Account, mbox: &Path) -> io::Result<Credentials> {
        let mut groups = sys::group_list(account)?;
        if let Some(mail) = self.mail_gid {
            let spool = mbox.parent().unwrap_or(Path::new("/"));
            // Stat only: the directory says whether dotlocks there need group mail.
            let metadata = std::fs::metadata(spool)?;
            let mode = metadata.mode();
            if metadata.gid() == mail
                && mode & GROUP_WRITE != 0
                && mode & OTHER_WRITE == 0
                && !groups.contains(&mail)
            {
                groups.push(mail);
            }
        }
        Ok(Credentials {
            uid: account.uid,
            gid: account.gid,
            groups,
        })
    }

    /// Switches to `target`, or checks that an earlier login of this session already did.
    fn switch(&self, target: &Credentials) -> io::Result<()> {
        if sys::effective_uid() != 0 {
            // Switched already: the session ends after a maildrop it did not open
            // (allows_another_login), so a second login never gets here; should one, only
            // the same user goes on.
            let ids = sys::current_ids()?;
            if ids.uids == [target.uid; 3] && ids.gids == [target.gid; 3] {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "session already runs as another user",
            ));
        }
        sys::switch_process(target)
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))
    }
}

/// An existing mbox must be the user's own regular file. (The maildrop refuses a symlink
/// itself, race-free; this refuses a file of someone else's, such as another user's mbox
/// linked in by root or mail by mistake, with [SYS/PERM] and a log line.) An early look
/// only, as root before the switch: the maildrop checks the owner again on the file it
/// opens (`OpenOptions::owner`), since a missing mbox may be created by anyone in a
/// world-writable spool before then.
fn refuse_if_not_owned(mbox: &Path, uid: u32) -> Result<(), MaildropError> {
    match std::fs::symlink_metadata(mbox) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            Err(MaildropError::NotAFile(mbox.to_owned()))
        }
        Ok(metadata) if metadata.uid() != uid => Err(MaildropError::NotOwned(mbox.to_owned())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl MaildropSource for OwnerMaildrops {
    /// A switched process cannot read /etc/shadow any more: a second login would fail as a
    /// wrong password would, and count against the client.
    fn allows_another_login(&self) -> bool {
        sys::effective_uid() == 0
    }

    fn lock(&self, user: &User) -> Result<Box<dyn LockedMaildrop>, MaildropError> {
        let Some(account) = &user.account else {
            // Never serve a maildrop as root: a user without an account has no owner to be.
            return Err(MaildropError::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "no system account to switch to",
            )));
        };
        let mbox = users::maildrop_path(&self.files.pattern, user);
        refuse_if_not_owned(&mbox, account.uid)?;
        let target = self.credentials(account, &mbox)?;
        self.switch(&target).map_err(|e| {
            MaildropError::Io(io::Error::new(
                e.kind(),
                format!("cannot switch to uid {}: {e}", target.uid),
            ))
        })?;
        log::debug!(
            "switched to uid {} gid {} groups {:?}",
            target.uid,
            target.gid,
            target.groups
        );
        let options = OpenOptions {
            owner: Some(account.uid),
            ..self.files.options.clone()
        };
        self.files.lock_with(user, options)
    }
}
