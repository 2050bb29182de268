//! A journal left by a crashed UPDATE is replayed only onto the bytes it was written for: a
//! child process commits deletions and aborts at a named point; then the mbox is replaced
//! (a backup copied over it in place, as `cp backup mbox` does, or the file removed and
//! recreated), and the next open must leave every message of the new file whole, set the
//! journal aside (never delete it) and proceed. Needs `--features fault-injection`.

#![cfg(feature = "fault-injection")]

use crate::maildrop_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use maildrop_support::{
    child_commit, child_role, commit_env, mbox_text, open_patiently, read_all, run_child, TempDir,
    SIGABRT,
};
use pop3d::maildrop::journal::journal_path;

/// Crash points after the first write to the mbox (where the journal matters), with how
/// many visits to let pass first.
const POINTS: &[(&str, u32)] = &[
    ("batch-recorded", 1),
    ("batch-recorded", 3),
    ("batch-torn", 1),
    ("batch-torn", 4),
    ("batch-written", 1),
    ("batch-written", 6),
    ("moves-done", 1),
    ("marker-written", 1),
    ("marked", 1),
];

/// Which messages the crashed session deletes.
const PATTERNS: &[&[usize]] = &[&[0], &[1, 5, 6, 12, 20]];

const MESSAGES: usize = 24;

fn original() -> Vec<String> {
    (0..MESSAGES).map(|i| format!("m{i}")).collect()
}

/// Files that could replace the mbox after the crash: older backups (holding a message
/// deleted since, at the start or in the middle, then the same ones) and unrelated mail.
/// (The crashed file's own bytes followed by new mail are not among them: that is the
/// state a crash followed by a delivery leaves, and the recovery rightly finishes it.)
fn replacements() -> Vec<(&'static str, Vec<String>)> {
    let mut older = vec!["old0".to_string()];
    older.extend(original());
    let mut middle = original();
    middle.insert(MESSAGES / 2, "old1".to_string());
    let other = (0..40).map(|i| format!("r{i}")).collect();
    vec![("older", older), ("middle", middle), ("other", other)]
}

fn as_counts(tags: &[String]) -> BTreeMap<String, usize> {
    let mut want = BTreeMap::new();
    for t in tags {
        *want.entry(t.clone()).or_insert(0) += 1;
    }
    want
}

/// Runs the child test `name` on a fresh original mbox in `dir`, crashing at `point`;
/// returns the mbox path, or None if the point was not on this UPDATE's path.
fn crash(name: &str, dir: &TempDir, point: &str, hit: u32, pattern: &[usize]) -> Option<PathBuf> {
    let path = dir.path().join("mbox");
    fs::write(&path, mbox_text(&original())).expect("write mbox");
    let mut env = commit_env(&path, pattern);
    env.extend([
        ("POP3D_FAULT_POINT", point.to_string()),
        ("POP3D_FAULT_HIT", hit.to_string()),
        ("POP3D_FAULT_BATCH", "256".into()),
    ]);
    let child = run_child(name, "commit", &env);
    if child.status.signal() != Some(SIGABRT) {
        assert!(child.status.success(), "child: {}", child.output);
        return None;
    }
    assert!(
        journal_path(&path).exists(),
        "the crash must leave a journal"
    );
    Some(path)
}

/// Writes `text` over the file at `path` in place: same inode, as `cp backup mbox` does.
fn overwrite_in_place(path: &Path, text: &str) {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("overwrite mbox");
}

/// The journals set aside beside `path`.
fn set_aside(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().expect("parent");
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".pop3d-journal.stale-"))
        .collect();
    found.sort();
    found
}

/// Opens the replaced mbox and checks that it holds exactly `want`, whole, and that the
/// journal was set aside, not deleted.
fn check_untouched(path: &Path, want: &[String], ctx: &str) {
    let text = mbox_text(want);
    let mut md = open_patiently(path);
    assert_eq!(
        read_all(&mut md),
        as_counts(want),
        "{ctx}: messages changed"
    );
    drop(md);
    assert_eq!(
        fs::read(path).expect("read mbox"),
        text.as_bytes(),
        "{ctx}: the mbox was modified"
    );
    assert!(
        !journal_path(path).exists(),
        "{ctx}: journal still in place"
    );
    let aside = set_aside(path);
    assert_eq!(aside.len(), 1, "{ctx}: journal not set aside: {aside:?}");
    assert!(
        fs::metadata(&aside[0]).expect("set-aside journal").len() > 0,
        "{ctx}: set-aside journal is empty"
    );
}

#[test]
fn journal_is_not_replayed_onto_a_backup_restored_in_place() {
    const NAME: &str =
        "maildrop_stale_journal::journal_is_not_replayed_onto_a_backup_restored_in_place";
    if child_role().is_some() {
        child_commit().expect("commit");
        return;
    }
    let mut crashed = 0;
    for &(point, hit) in POINTS {
        for pattern in PATTERNS {
            for (what, tags) in replacements() {
                let dir = TempDir::new("restored");
                let Some(path) = crash(NAME, &dir, point, hit, pattern) else {
                    continue;
                };
                crashed += 1;
                let ino = fs::metadata(&path).expect("mbox").ino();
                overwrite_in_place(&path, &mbox_text(&tags));
                assert_eq!(fs::metadata(&path).expect("mbox").ino(), ino);
                let ctx = format!("{point}#{hit} deleting {pattern:?}, {what} backup");
                check_untouched(&path, &tags, &ctx);
            }
        }
    }
    assert!(crashed >= POINTS.len() * 3, "only {crashed} runs crashed");
}

#[test]
fn journal_is_not_replayed_onto_a_recreated_mbox() {
    const NAME: &str = "maildrop_stale_journal::journal_is_not_replayed_onto_a_recreated_mbox";
    if child_role().is_some() {
        child_commit().expect("commit");
        return;
    }
    let new_mail: Vec<String> = (0..30).map(|i| format!("new{i}")).collect();
    let mut crashed = 0;
    let mut same_inode = 0;
    for &(point, hit) in POINTS {
        for pattern in PATTERNS {
            let dir = TempDir::new("recreated");
            let Some(path) = crash(NAME, &dir, point, hit, pattern) else {
                continue;
            };
            crashed += 1;
            let ino = fs::metadata(&path).expect("mbox").ino();
            // The admin removes the damaged mbox; the delivery agent creates a new one.
            fs::remove_file(&path).expect("remove mbox");
            fs::write(&path, mbox_text(&new_mail)).expect("recreate mbox");
            if fs::metadata(&path).expect("mbox").ino() == ino {
                same_inode += 1;
            } else {
                // This file system gave another inode: the check must not rely on that,
                // so the same content written in place must be refused as well.
                let dir = TempDir::new("recreated-in-place");
                let Some(path) = crash(NAME, &dir, point, hit, pattern) else {
                    panic!("second crash at {point}#{hit} did not happen");
                };
                overwrite_in_place(&path, &mbox_text(&new_mail));
                let ctx = format!("{point}#{hit} deleting {pattern:?}, rewritten in place");
                check_untouched(&path, &new_mail, &ctx);
            }
            let ctx = format!("{point}#{hit} deleting {pattern:?}, recreated");
            check_untouched(&path, &new_mail, &ctx);
        }
    }
    assert!(crashed >= POINTS.len(), "only {crashed} runs crashed");
    eprintln!("{same_inode} of {crashed} recreated mboxes got the old inode number");
}

#[test]
fn journal_of_a_removed_mbox_is_set_aside() {
    const NAME: &str = "maildrop_stale_journal::journal_of_a_removed_mbox_is_set_aside";
    if child_role().is_some() {
        child_commit().expect("commit");
        return;
    }
    let dir = TempDir::new("removed");
    let path = crash(NAME, &dir, "batch-written", 2, &[0]).expect("crash");
    fs::remove_file(&path).expect("remove mbox");
    let md = open_patiently(&path);
    assert!(md.messages().is_empty());
    drop(md);
    assert!(!path.exists(), "no mbox may be created");
    assert!(!journal_path(&path).exists(), "journal still in place");
    assert_eq!(set_aside(&path).len(), 1);
    // A second stale journal never overwrites the first.
    let path = crash(NAME, &dir, "batch-written", 2, &[0]).expect("crash");
    overwrite_in_place(&path, &mbox_text(&["x".to_string()]));
    check_untouched_twice(&path);
}

fn check_untouched_twice(path: &Path) {
    let mut md = open_patiently(path);
    assert_eq!(read_all(&mut md), as_counts(&["x".to_string()]));
    assert_eq!(
        set_aside(path).len(),
        2,
        "the first set-aside journal was lost"
    );
}
