//! UPDATE killed at every fault point: a child process commits deletions and aborts at the
//! named point (or gets an injected I/O error there); the parent reopens the maildrop, which
//! recovers, and checks that every undeleted message is whole, the deletions are applied all
//! or none, and mail delivered after the crash survives. Needs `--features fault-injection`.

#![cfg(feature = "fault-injection")]

use crate::maildrop_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use maildrop_support::{
    child_commit, child_role, commit_env, mbox_text, open_patiently, read_all, record, run_child,
    TempDir, SIGABRT,
};
use pop3d::maildrop::journal::journal_path;

const TEST: &str = "maildrop_faults::update_killed_at_each_point_loses_nothing";
const ERROR_TEST: &str = "maildrop_faults::io_error_at_each_point_loses_nothing";

/// Where UPDATE can be stopped, with how many visits to let pass first.
const POINTS: &[(&str, u32)] = &[
    ("commit-locked", 1),
    ("truncate", 1),
    ("journal-created", 1),
    ("batch-recorded", 1),
    ("batch-recorded", 3),
    ("batch-torn", 1),
    ("batch-torn", 4),
    ("batch-written", 1),
    ("batch-written", 6),
    ("moves-done", 1),
    ("marker-written", 1),
    ("marked", 1),
    ("truncated", 1),
    ("journal-removed", 1),
];

/// Which messages a session deletes: the first only, some spread out, the last few (a
/// truncate), every other one.
const PATTERNS: &[&[usize]] = &[
    &[0],
    &[1, 5, 6, 12, 20],
    &[20, 21, 22, 23],
    &[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22],
];

const MESSAGES: usize = 24;

fn tags() -> Vec<String> {
    (0..MESSAGES).map(|i| format!("m{i}")).collect()
}

fn write_mbox(path: &Path) {
    fs::write(path, mbox_text(&tags())).expect("write mbox");
}

fn deliver_late(path: &Path) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(record("late").as_bytes()))
        .expect("deliver");
}

/// The messages expected when the deletions of `pattern` were applied or not.
fn expected(pattern: &[usize], applied: bool, late: bool) -> BTreeMap<String, usize> {
    let mut want: BTreeMap<String, usize> = tags()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !applied || !pattern.contains(i))
        .map(|(_, t)| (t, 1))
        .collect();
    if late {
        want.insert("late".into(), 1);
    }
    want
}

/// Reopens after the child, checks the invariants, and returns whether the deletions were
/// applied.
fn check_after(path: &Path, pattern: &[usize], late: bool, ctx: &str) -> bool {
    let mut md = open_patiently(path);
    assert!(
        !journal_path(path).exists(),
        "{ctx}: journal left after open"
    );
    let seen = read_all(&mut md);
    if seen == expected(pattern, true, late) {
        true
    } else if seen == expected(pattern, false, late) {
        false
    } else {
        panic!("{ctx}: neither all nor none of the deletions applied: {seen:?}")
    }
}

#[test]
fn update_killed_at_each_point_loses_nothing() {
    if child_role().is_some() {
        // Reaching the end means the fault point was not on this UPDATE's path.
        child_commit().expect("commit");
        return;
    }
    let mut aborted = 0;
    // Batches shorter than the removed gaps move data without saving any; longer ones save
    // what each batch overwrites of its own source.
    let runs = POINTS
        .iter()
        .flat_map(|p| ["256", "16384"].map(move |b| (p, b)));
    for ((point, hit), batch) in runs {
        for pattern in PATTERNS {
            for late in [false, true] {
                let dir = TempDir::new("faults");
                let path = dir.path().join("mbox");
                write_mbox(&path);
                let mut env = commit_env(&path, pattern);
                env.extend([
                    ("POP3D_FAULT_POINT", point.to_string()),
                    ("POP3D_FAULT_HIT", hit.to_string()),
                    // Small batches: a 24-message mbox takes many of them.
                    ("POP3D_FAULT_BATCH", batch.into()),
                ]);
                let child = run_child(TEST, "commit", &env);
                let ctx = format!("{point}#{hit} batch {batch} deleting {pattern:?} late {late}");
                let (status, output) = (child.status, child.output);
                let killed = status.signal() == Some(SIGABRT);
                assert!(
                    killed || status.success(),
                    "{ctx}: child {status:?}\n{output}"
                );
                if late {
                    // A delivery agent appends while the mbox is half rewritten.
                    deliver_late(&path);
                }
                let applied = check_after(&path, pattern, late, &ctx);
                if killed {
                    aborted += 1;
                    let before_any_write =
                        matches!(*point, "commit-locked" | "truncate" | "journal-created");
                    if before_any_write {
                        assert!(!applied, "{ctx}: nothing should have been deleted");
                    }
                } else {
                    assert!(applied, "{ctx}: completed UPDATE must have deleted");
                }
            }
        }
    }
    // Each point with its first visit is on the path of some pattern.
    assert!(
        aborted >= POINTS.len() * 4,
        "only {aborted} runs were stopped"
    );
}

#[test]
fn io_error_at_each_point_loses_nothing() {
    if child_role().is_some() {
        // The parent reads the outcome from the exit status: 0 committed, 3 failed.
        match child_commit() {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("commit failed as injected: {e}");
                std::process::exit(3)
            }
        }
    }
    // Points before the first write to the mbox: the error leaves everything in place.
    let untouched = [
        "commit-locked",
        "truncate",
        "journal-write",
        "journal-created",
        "batch-recorded",
    ];
    // Points after it: the error is reported, and the next open completes the deletions.
    let interrupted = ["batch-written", "moves-done", "marked"];
    for point in untouched.iter().chain(&interrupted) {
        for pattern in PATTERNS {
            let dir = TempDir::new("io-error");
            let path = dir.path().join("mbox");
            write_mbox(&path);
            let mut env = commit_env(&path, pattern);
            env.extend([
                ("POP3D_FAULT_ERROR", point.to_string()),
                ("POP3D_FAULT_BATCH", "512".into()),
            ]);
            let child = run_child(ERROR_TEST, "commit", &env);
            let ctx = format!("error at {point} deleting {pattern:?}");
            let (status, output) = (child.status, child.output);
            let failed = status.code() == Some(3);
            assert!(
                failed || status.success(),
                "{ctx}: child {status:?}\n{output}"
            );
            let journal_left = journal_path(&path).exists();
            let applied = check_after(&path, pattern, false, &ctx);
            if failed && untouched.contains(point) {
                assert!(!journal_left, "{ctx}: journal left behind");
                assert!(!applied, "{ctx}: -ERR must leave every message in place");
            }
            if !failed {
                assert!(applied, "{ctx}: +OK must mean deleted");
            }
        }
    }
}
