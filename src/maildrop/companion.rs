//! The names of the files that live beside an mbox: the delivery agents' dotlock and every
//! file pop3d itself may create there. One list, from which both the file names (lock.rs,
//! journal.rs, uid_owners.rs) and the user-name check (auth.rs) follow: a user named like a companion would
//! otherwise get another user's lock or journal as a maildrop. Also how a change to such a
//! file's directory entry is made durable (`sync_dir`), which journal.rs and uid_owners.rs share.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The dotlock of delivery agents and pop3d ("alice.lock").
pub const DOTLOCK: &str = ".lock";
/// pop3d's session lock, whose mtime is the last login ("alice.pop3d").
pub const SESSION: &str = ".pop3d";
/// UPDATE's journal ("alice.pop3d-journal").
pub const JOURNAL: &str = ".pop3d-journal";
/// A journal being replaced by rename ("alice.pop3d-journal.new"): `JOURNAL` then
/// `JOURNAL_TEMP_EXTENSION` (a test holds the three together).
pub const JOURNAL_TEMP: &str = ".pop3d-journal.new";
/// What the temporary journal adds to the journal's own name.
const JOURNAL_TEMP_EXTENSION: &str = ".new";
/// Start of the name of a journal set aside because it does not fit its mbox
/// ("alice.pop3d-journal.stale-..."): what follows varies.
pub const JOURNAL_SET_ASIDE: &str = ".pop3d-journal.stale-";

/// The record of who owns a unique id ("alice.pop3d-uidl", see uid_owners.rs).
pub const UIDL: &str = ".pop3d-uidl";
/// Start of the name of a record being written, to replace the record by rename
/// ("alice.pop3d-uidl.new-PID-NANOS", see `uidl_temp`): unique to each write, so that nobody
/// can plant the file beforehand and so keep the record from being written.
pub const UIDL_TEMP: &str = ".pop3d-uidl.new-";
/// The fixed temporary name that pop3d used before `UIDL_TEMP`: still reserved, so that a
/// file left under it is never some user's maildrop.
pub const UIDL_TEMP_FIXED: &str = ".pop3d-uidl.new";

/// How a companion's suffix is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suffix {
    /// The name ends with exactly this.
    Exact(&'static str),
    /// The name continues with this and then anything.
    Prefix(&'static str),
}

/// Every companion pop3d may create or take, and so every reserved user-name suffix.
pub const ALL: [Suffix; 8] = [
    Suffix::Exact(DOTLOCK),
    Suffix::Exact(SESSION),
    Suffix::Exact(JOURNAL),
    Suffix::Exact(JOURNAL_TEMP),
    Suffix::Prefix(JOURNAL_SET_ASIDE),
    Suffix::Exact(UIDL),
    Suffix::Prefix(UIDL_TEMP),
    Suffix::Exact(UIDL_TEMP_FIXED),
];

/// `mbox` with `suffix` appended to its file name ("/var/mail/alice" -> "/var/mail/alice.lock").
pub fn path(mbox: &Path, suffix: &str) -> PathBuf {
    let mut s = mbox.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The temporary file that replaces `journal` (a `JOURNAL` path) by rename.
pub fn journal_temp(journal: &Path) -> PathBuf {
    path(journal, JOURNAL_TEMP_EXTENSION)
}

/// The name under which `journal` (a `JOURNAL` path) is set aside, `tag` telling it apart
/// from earlier ones: `JOURNAL_SET_ASIDE` then `tag`.
pub fn journal_set_aside(journal: &Path, tag: &str) -> PathBuf {
    let extension = &JOURNAL_SET_ASIDE[JOURNAL.len()..];
    path(journal, &format!("{extension}{tag}"))
}

/// Makes a directory entry change (create, rename, unlink) of `path` durable: the directory
/// that holds it is synced, because syncing the file alone does not persist its name.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The temporary record of `mbox` named by `tag`: `UIDL_TEMP` then `tag`.
pub fn uidl_temp(mbox: &Path, tag: &str) -> PathBuf {
    path(mbox, &format!("{UIDL_TEMP}{tag}"))
}

/// Whether the file name `name` is some other name's companion: some non-empty name followed
/// by a companion suffix. ASCII case is ignored, because on a case-insensitive file system
/// "bob.LOCK" is the same file as "bob.lock".
pub fn is_companion_name(name: &[u8]) -> bool {
    ALL.iter().any(|suffix| match *suffix {
        Suffix::Exact(s) => {
            let s = s.as_bytes();
            name.len() > s.len() && name[name.len() - s.len()..].eq_ignore_ascii_case(s)
        }
        Suffix::Prefix(s) => {
            let s = s.as_bytes();
            (1..name.len()).any(|at| {
                name.len() - at >= s.len() && name[at..at + s.len()].eq_ignore_ascii_case(s)
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name for every companion of "bob", as pop3d would create it.
    fn companions_of(owner: &str) -> Vec<String> {
        ALL.iter()
            .map(|s| match *s {
                Suffix::Exact(s) => format!("{owner}{s}"),
                Suffix::Prefix(s) => format!("{owner}{s}1700000000"),
            })
            .collect()
    }

    #[test]
    fn every_companion_name_is_recognised() {
        for name in companions_of("bob") {
            assert!(is_companion_name(name.as_bytes()), "{name}");
            assert!(
                is_companion_name(name.to_ascii_uppercase().as_bytes()),
                "{name} in upper case"
            );
        }
    }

    #[test]
    fn ordinary_names_are_no_companions() {
        for name in [
            "bob",
            "lock",
            "bob.locked",
            "pop3d",
            "a.pop3d-journalx",
            "a.pop3d-journal.newer",
            "a.pop3d-journal.stale",
            "a.pop3d-uidlx",
            "a.pop3d-uidl.newer",
        ] {
            assert!(!is_companion_name(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn companion_paths_append_to_the_file_name() {
        let mbox = Path::new("/var/mail/bob");
        assert_eq!(
            path(mbox, JOURNAL),
            Path::new("/var/mail/bob.pop3d-journal")
        );
        assert_eq!(
            journal_temp(&path(mbox, JOURNAL)),
            path(mbox, JOURNAL_TEMP),
            "the temporary journal's name must be the one reserved"
        );
        assert_eq!(
            journal_set_aside(&path(mbox, JOURNAL), "17"),
            path(mbox, &format!("{JOURNAL_SET_ASIDE}17")),
            "a set-aside journal's name must be the one reserved"
        );
        assert_eq!(
            uidl_temp(mbox, "1-2"),
            Path::new("/var/mail/bob.pop3d-uidl.new-1-2")
        );
        assert!(is_companion_name(b"bob.pop3d-uidl.new-1-2"));
    }
}
