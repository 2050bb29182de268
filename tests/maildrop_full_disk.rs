//! UPDATE on a full disk: a small tmpfs (when the tests run as root and may mount one),
//! filled up while a session is open. An UPDATE that needs a journal answers with an error
//! and leaves every message in place; one that only truncates still works, since it frees
//! space. Without root, the same error is injected at the journal's write through the
//! fault-injection feature.

use crate::maildrop_support;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use maildrop_support::{is_root, open_patiently, read_all, record, TempDir};
use pop3d::maildrop::journal::journal_path;
use pop3d::maildrop::MaildropError;

const MESSAGES: usize = 40;

/// A tmpfs mounted for the test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn write_mbox(path: &Path) -> Vec<u8> {
    let text: String = (0..MESSAGES).map(|i| record(&format!("d{i}"))).collect();
    fs::write(path, &text).expect("write mbox");
    text.into_bytes()
}

/// Fills the file system of `dir` completely; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    filler
}

fn assert_untouched(path: &Path, data: &[u8], ctx: &str) {
    assert_eq!(fs::read(path).expect("read"), data, "{ctx}: mbox changed");
    assert!(!journal_path(path).exists(), "{ctx}: journal left");
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    assert!(!Path::new(&lock).exists(), "{ctx}: dotlock left");
}

#[test]
fn update_on_a_full_disk_answers_error_and_loses_nothing() {
    let dir = TempDir::new("full-disk");
    let mount = if is_root(&dir) {
        Mount::tmpfs(&dir.path().join("mnt"), "1m")
    } else {
        None
    };
    let Some(mount) = mount else {
        injected_error(&dir);
        return;
    };
    let path = mount.0.join("mbox");
    let data = write_mbox(&path);
    let mut md = open_patiently(&path);
    let filler = fill(&mount.0);

    // Deleting the first message moves everything after it: that needs a journal.
    let mut first = vec![false; MESSAGES];
    first[0] = true;
    let err = md.commit(&first).expect_err("no room for the journal");
    assert!(matches!(err, MaildropError::Io(_)), "{err}");
    assert_untouched(&path, &data, "disk full");

    // Some room, but not enough for the journal either.
    fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(f.metadata()?.len() - 16 * 1024))
        .expect("free a little");
    let err = md
        .commit(&first)
        .expect_err("still no room for the journal");
    assert!(matches!(err, MaildropError::Io(_)), "{err}");
    assert_untouched(&path, &data, "disk nearly full");

    // Deleting the last messages is a truncate: it frees space and works even now.
    fill(&mount.0);
    let mut last = vec![false; MESSAGES];
    last[MESSAGES - 3..].iter_mut().for_each(|d| *d = true);
    md.commit(&last).expect("truncate on a full disk");
    drop(md);
    let mut md = open_patiently(&path);
    let seen = read_all(&mut md);
    assert_eq!(seen.len(), MESSAGES - 3);
    assert!(!seen.contains_key(&format!("d{}", MESSAGES - 1)));

    // With room again, the journaled UPDATE goes through.
    fs::remove_file(&filler).expect("free");
    let _ = fs::remove_file(mount.0.join("filler"));
    let mut first = vec![false; MESSAGES - 3];
    first[0] = true;
    md.commit(&first).expect("commit with room");
    drop(md);
    let seen = read_all(&mut open_patiently(&path));
    assert_eq!(seen.len(), MESSAGES - 4);
    assert!(!seen.contains_key("d0"));
}

/// Not root or no tmpfs: the journal's write fails as a full disk would make it fail.
#[cfg(feature = "fault-injection")]
fn injected_error(dir: &TempDir) {
    eprintln!("no tmpfs to fill: injecting the full disk at the journal's write");
    let path = dir.path().join("mbox");
    let data = write_mbox(&path);
    let mut md = open_patiently(&path);
    let mut first = vec![false; MESSAGES];
    first[0] = true;
    // This test binary holds this one test, so no other thread reads the environment.
    std::env::set_var("POP3D_FAULT_ERROR", "journal-write");
    let result = md.commit(&first);
    std::env::remove_var("POP3D_FAULT_ERROR");
    let err = result.expect_err("injected full disk");
    assert!(matches!(err, MaildropError::Io(_)), "{err}");
    assert_untouched(&path, &data, "injected full disk");
}

#[cfg(not(feature = "fault-injection"))]
fn injected_error(_dir: &TempDir) {
    // CI runs as root with the feature: there the skip would hide a broken test.
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run this test as root or with --features fault-injection"
    );
    eprintln!("skipped: neither a tmpfs (needs root) nor the fault-injection feature");
}
