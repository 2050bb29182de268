//! pop3d's private companion files beside an mbox (the session lock, the journal and the
//! temporary journal, the unique id record; not the dotlock, which delivery agents share):
//! opened without following
//! a symlink, and trusted only when the opened file is a regular file of the mbox's owner (or
//! of pop3d's own effective uid) that nobody else may write. In a world-writable sticky spool
//! any user can create "alice.pop3d-journal"; such a file is refused, never replayed, locked
//! or removed, and the caller refuses the login (the admin has to look), or, for the unique
//! id record, goes on without it.

use std::error::Error;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::open_flags::{O_NOFOLLOW, O_NONBLOCK};
use crate::sys;

/// ELOOP on Linux: what an O_NOFOLLOW open of a symlink fails with.
const ELOOP: i32 = 40;

/// The write bits for group and others: a file they may write is not pop3d's to trust.
const SHARED_WRITE: u32 = 0o022;

/// Who may own a private file: the mbox's owner and pop3d's effective uid (its own files,
/// which it could not give away when it runs as a user other than the mbox's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owners {
    mbox: Option<u32>,
    pop3d: u32,
}

impl Owners {
    /// The owners for an mbox expected to belong to `expected` (--system-users), else to the
    /// owner of the open `mbox` (None when it does not exist: then pop3d's uid alone).
    pub fn of(expected: Option<u32>, mbox: Option<&File>) -> Owners {
        let mbox = expected.or_else(|| mbox.and_then(|f| f.metadata().ok()).map(|m| m.uid()));
        Owners {
            mbox,
            pop3d: sys::effective_uid(),
        }
    }

    /// The owners for the mbox at `path`, seen by `lstat` (the session lock is taken before
    /// the mbox is opened).
    pub fn of_path(expected: Option<u32>, path: &Path) -> Owners {
        let mbox = expected.or_else(|| {
            fs::symlink_metadata(path)
                .ok()
                .filter(Metadata::is_file)
                .map(|m| m.uid())
        });
        Owners {
            mbox,
            pop3d: sys::effective_uid(),
        }
    }

    fn allow(&self, uid: u32) -> bool {
        uid == self.pop3d || self.mbox == Some(uid)
    }
}

/// What is wrong with a file found under a private companion's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Symlink,
    NotAFile,
    Owner(u32),
    Writable(u32),
}

/// A file under a private companion's name that pop3d will not use: it was left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub path: PathBuf,
    pub why: Why,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.why {
            Why::Symlink => write!(f, "{path}: a symbolic link, not pop3d's file"),
            Why::NotAFile => write!(f, "{path}: not a regular file"),
            Why::Owner(uid) => write!(f, "{path}: owned by uid {uid}, not the mailbox's owner"),
            Why::Writable(mode) => write!(f, "{path}: mode {mode:o} lets others write it"),
        }
    }
}

impl Error for Untrusted {}

/// Why a private file could not be opened.
#[derive(Debug)]
pub enum PrivateError {
    /// The file there is not pop3d's to use.
    Untrusted(Untrusted),
    /// Opening or creating it failed.
    Io(io::Error),
}

impl From<io::Error> for PrivateError {
    fn from(e: io::Error) -> Self {
        PrivateError::Io(e)
    }
}

impl fmt::Display for PrivateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateError::Untrusted(u) => u.fmt(f),
            PrivateError::Io(e) => e.fmt(f),
        }
    }
}

impl Error for PrivateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PrivateError::Untrusted(u) => Some(u),
            PrivateError::Io(e) => Some(e),
        }
    }
}

/// Whether `meta` (of the file at `path`) may be used as pop3d's own.
fn vet(path: &Path, meta: &Metadata, owners: &Owners) -> Result<(), Untrusted> {
    let why = if meta.file_type().is_symlink() {
        Why::Symlink
    } else if !meta.is_file() {
        Why::NotAFile
    } else if !owners.allow(meta.uid()) {
        Why::Owner(meta.uid())
    } else if meta.mode() & SHARED_WRITE != 0 {
        Why::Writable(meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(Untrusted {
        path: path.to_owned(),
        why,
    })
}

/// Opens the existing private file at `path` read-write, None if there is none. Never
/// follows a symlink nor blocks on a FIFO; the opened file itself is vetted (fstat), so
/// nothing can be swapped in between a check and the open.
pub fn open_existing(path: &Path, owners: &Owners) -> Result<Option<File>, PrivateError> {
    open_vetted(path, owners, true)
}

/// Opens the existing private file at `path` for reading only, vetted as `open_existing`
/// does: for a reader that never writes it (the unique id record, the dry run's read of the
/// session lock), so that a read-only file system or a 0400 file still reads.
pub fn read_existing(path: &Path, owners: &Owners) -> Result<Option<File>, PrivateError> {
    open_vetted(path, owners, false)
}

fn open_vetted(path: &Path, owners: &Owners, write: bool) -> Result<Option<File>, PrivateError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused_open(path, owners, e)),
    };
    let meta = file.metadata()?;
    vet(path, &meta, owners).map_err(PrivateError::Untrusted)?;
    if O_NOFOLLOW == 0 {
        // Without O_NOFOLLOW the open may have followed a symlink: the name must still be
        // the file that was opened.
        let here = fs::symlink_metadata(path)?;
        if here.file_type().is_symlink() || (here.dev(), here.ino()) != (meta.dev(), meta.ino()) {
            return Err(PrivateError::Untrusted(Untrusted {
                path: path.to_owned(),
                why: Why::Symlink,
            }));
        }
    }
    Ok(Some(file))
}

/// Whether there is a file at `path` that, as `lstat` sees it, may be removed as pop3d's
/// own (a stale temporary file, a record to drop): Ok(false) when there is none. In a sticky
/// spool nobody else can swap a file of the mbox's owner for theirs after this check.
pub fn check_existing(path: &Path, owners: &Owners) -> Result<bool, PrivateError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => vet(path, &meta, owners)
            .map(|()| true)
            .map_err(PrivateError::Untrusted),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Opens the private file at `path` read-write, creating it (mode 0600, exclusively, which
/// never follows a symlink) if missing. Returns the file and whether it was created.
pub fn open_or_create(path: &Path, owners: &Owners) -> Result<(File, bool), PrivateError> {
    // A few rounds: the path may appear or vanish between the two opens.
    for _ in 0..4 {
        if let Some(file) = open_existing(path, owners)? {
            return Ok((file, false));
        }
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PrivateError::Io(io::Error::other(format!(
        "{}: keeps appearing and vanishing",
        path.display()
    ))))
}

/// An open that failed: a symlink (ELOOP), or a file that pop3d may not even open (another
/// user's 0600 file), is refused as untrusted; anything else is an i/o error.
fn refused_open(path: &Path, owners: &Owners, e: io::Error) -> PrivateError {
    if e.raw_os_error() == Some(ELOOP) {
        return PrivateError::Untrusted(Untrusted {
            path: path.to_owned(),
            why: Why::Symlink,
        });
    }
    match fs::symlink_metadata(path).map(|meta| vet(path, &meta, owners)) {
        Ok(Err(untrusted)) => PrivateError::Untrusted(untrusted),
        _ => PrivateError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::TempDir;

    fn mine() -> Owners {
        Owners {
            mbox: None,
            pop3d: sys::effective_uid(),
        }
    }

    #[test]
    fn own_private_file_opens_and_a_missing_one_is_created() {
        let dir = TempDir::new("private-own");
        let path = dir.path().join("m.pop3d");
        let (_, created) = open_or_create(&path, &mine()).expect("create");
        assert!(created);
        assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o777, 0o600);
        let (_, created) = open_or_create(&path, &mine()).expect("open");
        assert!(!created);
        assert!(open_existing(&dir.path().join("none"), &mine())
            .expect("missing")
            .is_none());
    }

    #[test]
    fn symlinks_fifos_and_shared_files_are_untrusted() {
        let dir = TempDir::new("private-untrusted");
        let target = dir.path().join("target");
        fs::write(&target, b"x").expect("write");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("symlink");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let shared = dir.path().join("shared");
        fs::write(&shared, b"x").expect("write");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o602)).expect("chmod");
        let mut cases = vec![
            (link, Why::Symlink),
            (dangling.clone(), Why::Symlink),
            (shared, Why::Writable(0o602)),
        ];
        if made.is_ok_and(|s| s.success()) {
            cases.push((fifo, Why::NotAFile));
        }
        for (path, why) in cases {
            match open_or_create(&path, &mine()) {
                Err(PrivateError::Untrusted(u)) => assert_eq!(u.why, why, "{}", path.display()),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert!(
            !dir.path().join("nowhere").exists(),
            "followed a dangling link"
        );
        assert_eq!(fs::read(&target).expect("read"), b"x");
    }

    #[test]
    fn a_file_of_another_owner_is_untrusted() {
        let dir = TempDir::new("private-owner");
        let path = dir.path().join("m.pop3d-journal");
        fs::write(&path, b"x").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let me = sys::effective_uid();
        let other = me.wrapping_add(1);
        // As seen by a pop3d running as someone else, serving an mbox of yet another user.
        let strangers = Owners {
            mbox: Some(other),
            pop3d: other,
        };
        match open_existing(&path, &strangers) {
            Err(PrivateError::Untrusted(u)) => assert_eq!(u.why, Why::Owner(me)),
            other => panic!("{other:?}"),
        }
        // The mbox's owner's file is trusted even when pop3d runs as another uid.
        let owner = Owners {
            mbox: Some(me),
            pop3d: other,
        };
        assert!(open_existing(&path, &owner).expect("open").is_some());
    }
}
