//! Running unprivileged: when the spool directory does not let pop3d create the dotlock (as
//! with /var/mail root:mail 2775 and pop3d running as neither), the login is refused with
//! [SYS/TEMP] and the mbox is left alone; pop3d never goes on without the lock.

use crate::support;

use std::os::unix::fs::{chown, PermissionsExt};
use std::process::Command;
use support::{mbox_message, ServerBuilder};

/// uid and gid of `nobody` from /etc/passwd.
fn nobody() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn setpriv_available() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn dotlock_denied_refuses_login_with_sys_temp() {
    if !running_as_root() || !setpriv_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with setpriv; this test must run there"
        );
        eprintln!("skipped: needs root and setpriv to drop to nobody");
        return;
    }
    let (uid, gid) = nobody().expect("a nobody user");
    let mbox = mbox_message("a@x", "Subject: hello\n\nbody\n");
    let b = ServerBuilder::new("nobody")
        .user("alice", "secret")
        .mbox("alice", &mbox);
    let dir = b.dir().to_path_buf();
    let spool = dir.join("mail");
    // The spool is root's and closed to others (like root:mail 2775 for a non-member); the
    // mbox and the session lock file belong to the user pop3d runs as.
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(spool.join("alice"), Some(uid), Some(gid)).unwrap();
    std::fs::write(spool.join("alice.pop3d"), b"").unwrap();
    chown(spool.join("alice.pop3d"), Some(uid), Some(gid)).unwrap();
    // The log and the users file must be reachable for nobody.
    std::fs::write(b.log_path(), b"").unwrap();
    chown(b.log_path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = b
        .wrapper(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ])
        .start();

    let mut c = s.connect();
    c.greeting();
    c.ok("USER alice");
    let r = c.err("PASS secret");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    assert!(!spool.join("alice.lock").exists());
    assert_eq!(s.mbox("alice"), mbox.as_bytes());
    let log = s.log_text();
    assert!(log.contains("alice"), "{log}");
}
