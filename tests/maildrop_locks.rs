//! Locks seen from other processes: a second POP3 session in another process is refused
//! while the first holds the maildrop, and an unprivileged pop3d in a spool directory it
//! cannot write to (root:mail 2775 /var/mail, say) is refused the lock instead of going on
//! without it (run as user nobody through setpriv, since the tests run as root).

use crate::maildrop_support;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use maildrop_support::{child_role, open, record, run_child, run_child_via, TempDir};
use pop3d::maildrop::lock::LockError;
use pop3d::maildrop::{Maildrop, MaildropError, SessionLock};

const CROSS: &str = "maildrop_locks::second_session_in_another_process_is_in_use";
const DENIED: &str = "maildrop_locks::unprivileged_pop3d_without_a_writable_spool_is_denied";

fn mbox_from_env() -> String {
    std::env::var("POP3D_TEST_MBOX").expect("mbox")
}

#[test]
fn second_session_in_another_process_is_in_use() {
    if child_role().is_some() {
        let got = open(Path::new(&mbox_from_env()), Duration::from_secs(1));
        assert!(matches!(got, Err(MaildropError::InUse)), "{got:?}");
        return;
    }
    let dir = TempDir::new("cross");
    let path = dir.path().join("mbox");
    fs::write(&path, record("x")).expect("write");
    let held = open(&path, Duration::from_secs(1)).expect("first session");
    let child = run_child(
        CROSS,
        "second",
        &[("POP3D_TEST_MBOX", path.display().to_string())],
    );
    assert!(
        child.status.success(),
        "the other process must get InUse\n{}",
        child.output
    );
    drop(held);
    assert!(open(&path, Duration::from_secs(1)).is_ok());
}

/// uid of `user` in /etc/passwd, or gid of `group` in /etc/group.
fn id_of(file: &str, name: &str) -> Option<u32> {
    fs::read_to_string(file)
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2)?.parse().ok())
}

fn run_as_nobody(role: &str, mbox: &Path) -> bool {
    let child = run_child_via(
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ],
        DENIED,
        role,
        &[("POP3D_TEST_MBOX", mbox.display().to_string())],
    );
    if !child.status.success() {
        eprintln!("{}", child.output);
    }
    child.status.success()
}

#[test]
fn unprivileged_pop3d_without_a_writable_spool_is_denied() {
    match child_role().as_deref() {
        Some("acquire") => {
            let got = SessionLock::try_acquire(Path::new(&mbox_from_env()));
            assert!(matches!(got, Err(LockError::Denied(_))), "{got:?}");
            return;
        }
        Some("open") => {
            let path = mbox_from_env();
            let lock = SessionLock::try_acquire(Path::new(&path)).expect("session lock");
            let got = Maildrop::open(Path::new(&path), lock, &Default::default());
            assert!(matches!(got, Err(MaildropError::LockDenied(_))), "{got:?}");
            return;
        }
        _ => {}
    }
    let dir = TempDir::new("denied");
    let ids = (
        id_of("/etc/passwd", "nobody"),
        id_of("/etc/group", "nogroup"),
    );
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    let root = maildrop_support::is_root(&dir);
    let (Some(uid), Some(gid), true, true) = (ids.0, ids.1, setpriv, root) else {
        assert!(
            std::env::var_os("CI").is_none() || !root,
            "CI runs as root and must have setpriv and user nobody"
        );
        eprintln!("skipped: needs root, setpriv and user nobody (lock.rs tests the non-root case)");
        return;
    };
    // The spool: root's, not writable by nobody; the mbox: nobody's own.
    let spool = dir.path().join("spool");
    fs::create_dir(&spool).expect("spool");
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mbox = spool.join("mbox");
    fs::write(&mbox, record("x")).expect("write");
    chown(&mbox, Some(uid), Some(gid)).expect("chown");
    fs::set_permissions(&mbox, fs::Permissions::from_mode(0o600)).expect("chmod");

    // No companion file yet: the session lock itself cannot be created.
    assert!(
        run_as_nobody("acquire", &mbox),
        "session lock must be denied"
    );
    // With a companion file in place, open() is refused the dotlock.
    let companion = spool.join("mbox.pop3d");
    fs::write(&companion, b"").expect("companion");
    chown(&companion, Some(uid), Some(gid)).expect("chown");
    assert!(
        run_as_nobody("open", &mbox),
        "open must be denied the dotlock"
    );
    let left: Vec<_> = fs::read_dir(&spool)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left.len(), 2, "nothing may be created: {left:?}");
    assert_eq!(fs::read(&mbox).expect("read"), record("x").as_bytes());
}
