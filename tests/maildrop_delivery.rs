//! Delivery while sessions run: writers append messages to one mbox under one kind of lock
//! each (dotlock only, fcntl only, flock only) and real procmail (dotlock plus a classic
//! fcntl lock) delivers too, while sessions open the maildrop, read every message, delete
//! some and commit, in a loop. Afterwards each delivered message is there exactly once
//! unless a session deleted it, and every message read was whole.

use crate::maildrop_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fs2::FileExt;
use maildrop_support::{content, open, read_all, read_tags, Rng, TempDir};
use pop3d::maildrop::lock::{try_lock_ofd, unlock_ofd};
use pop3d::maildrop::MaildropError;

/// Messages each writer delivers.
const PER_WRITER: usize = 40;

/// The kinds of writer; "procmail" runs the real program.
const WRITERS: &[&str] = &["dotlock", "fcntl", "flock", "procmail"];

fn from_line(tag: &str) -> String {
    format!("From {tag}@agent.test Mon Jan  1 00:00:00 2024\n")
}

fn lock_path(mbox: &Path) -> PathBuf {
    let mut p = mbox.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Appends one message the way a delivery agent does: the From line and the message in
/// separate writes with a pause between, so that a reader not holding the lock the agent
/// uses would see half a message.
fn append(mbox: &Path, tag: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).create(true).open(mbox)?;
    f.write_all(from_line(tag).as_bytes())?;
    thread::sleep(Duration::from_millis(1));
    f.write_all(content(tag).as_bytes())?;
    f.write_all(b"\n")
}

fn deliver(kind: &str, mbox: &Path, rc: &Path, tag: &str) -> io::Result<()> {
    match kind {
        "dotlock" => {
            let lock = lock_path(mbox);
            loop {
                match OpenOptions::new().write(true).create_new(true).open(&lock) {
                    Ok(mut f) => {
                        writeln!(f, "{}", std::process::id())?;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => return Err(e),
                }
            }
            let result = append(mbox, tag);
            fs::remove_file(&lock)?;
            result
        }
        "fcntl" => {
            let f = OpenOptions::new().read(true).write(true).open(mbox)?;
            while !try_lock_ofd(&f)? {
                thread::sleep(Duration::from_millis(1));
            }
            let result = append(mbox, tag);
            unlock_ofd(&f)?;
            result
        }
        "flock" => {
            let f = OpenOptions::new().read(true).write(true).open(mbox)?;
            FileExt::lock_exclusive(&f)?;
            let result = append(mbox, tag);
            FileExt::unlock(&f)?;
            result
        }
        _ => {
            let mut child = Command::new("procmail")
                .arg("-m")
                .arg(rc)
                .stdin(Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(from_line(tag).as_bytes())?;
            stdin.write_all(content(tag).as_bytes())?;
            drop(stdin);
            let status = child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!("procmail: {status}")));
            }
            Ok(())
        }
    }
}

fn procmail_available() -> bool {
    Command::new("procmail")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One POP3 session: open, RETR every message (checked whole), DELE some, QUIT.
/// Returns the tags it deleted, or None when the maildrop was busy.
fn session(mbox: &Path, rng: &mut Rng) -> Option<Vec<String>> {
    let mut md = match open(mbox, Duration::from_secs(5)) {
        Ok(md) => md,
        Err(MaildropError::InUse | MaildropError::Locked) => return None,
        Err(e) => panic!("open: {e}"),
    };
    let order = read_tags(&mut md);
    let unique: BTreeSet<&String> = order.iter().collect();
    assert_eq!(unique.len(), order.len(), "duplicated message: {order:?}");
    let deleted: Vec<bool> = order.iter().map(|_| rng.below(3) == 0).collect();
    match md.commit(&deleted) {
        Ok(stats) => {
            assert_eq!(stats.deleted, deleted.iter().filter(|&&d| d).count());
            Some(
                order
                    .into_iter()
                    .zip(&deleted)
                    .filter(|(_, &d)| d)
                    .map(|(t, _)| t)
                    .collect(),
            )
        }
        Err(MaildropError::Locked) => Some(Vec::new()),
        Err(e) => panic!("commit: {e}"),
    }
}

#[test]
fn mail_delivered_during_sessions_is_kept_exactly_once() {
    let only = std::env::var("ONLY").unwrap_or_default();
    let mut writers: Vec<&str> = WRITERS
        .iter()
        .copied()
        .filter(|w| only.is_empty() || only.contains(w))
        .collect();
    if !procmail_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "procmail is missing (scripts/test.sh installs it)"
        );
        eprintln!("procmail not installed: delivering without it");
        writers.retain(|&w| w != "procmail");
    }
    let dir = TempDir::new("delivery");
    let mbox = dir.path().join("mbox");
    File::create(&mbox).expect("create mbox");
    let rc = dir.path().join("procmailrc");
    // procmail sleeps LOCKSLEEP seconds (8 by default) whenever it finds the dotlock taken.
    fs::write(&rc, format!("LOCKSLEEP=1\n:0:\n{}\n", mbox.display())).expect("rcfile");
    // Agents that lock differently would corrupt each other's appends, so the writers also
    // take turns among themselves, through a mutex pop3d knows nothing of: towards pop3d
    // each one holds only its own kind of lock.
    let turns = Arc::new(Mutex::new(()));

    let done = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(Mutex::new(BTreeSet::new()));
    let sessions = {
        let (mbox, done, deleted) = (mbox.clone(), done.clone(), deleted.clone());
        thread::spawn(move || {
            let mut rng = Rng(0x5e55_1075);
            let mut rounds = 0;
            // Keep going a few rounds after the last delivery.
            let mut after = 0;
            while after < 3 {
                if done.load(Ordering::SeqCst) {
                    after += 1;
                }
                if let Some(tags) = session(&mbox, &mut rng) {
                    deleted.lock().expect("lock").extend(tags);
                    rounds += 1;
                }
                // A client comes back after a while, not in a busy loop.
                thread::sleep(Duration::from_millis(5));
            }
            rounds
        })
    };
    let handles: Vec<_> = writers
        .iter()
        .map(|&kind| {
            let (mbox, rc, turns) = (mbox.clone(), rc.clone(), turns.clone());
            thread::spawn(move || {
                for i in 0..PER_WRITER {
                    let turn = turns.lock().expect("turn");
                    deliver(kind, &mbox, &rc, &format!("{kind}-{i}"))
                        .unwrap_or_else(|e| panic!("{kind} delivery {i}: {e}"));
                    drop(turn);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let rounds = sessions.join().expect("sessions");
    assert!(rounds >= 3, "only {rounds} sessions ran");

    let deleted = deleted.lock().expect("lock").clone();
    let mut md = open(&mbox, Duration::from_secs(5)).expect("final open");
    let seen: BTreeMap<String, usize> = read_all(&mut md);
    let mut lost = Vec::new();
    for kind in &writers {
        for i in 0..PER_WRITER {
            let tag = format!("{kind}-{i}");
            match (seen.get(&tag), deleted.contains(&tag)) {
                (None, false) => lost.push(tag),
                (Some(1), false) | (None, true) => {}
                (Some(n), gone) => panic!("{tag}: {n} copies, deleted {gone}"),
            }
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    let delivered = writers.len() * PER_WRITER;
    assert_eq!(
        seen.len() + deleted.len(),
        delivered,
        "unknown messages: {seen:?}"
    );
    assert!(
        !deleted.is_empty(),
        "the sessions must have deleted something"
    );
    eprintln!(
        "{delivered} delivered, {} deleted by {rounds} sessions, {} kept",
        deleted.len(),
        seen.len()
    );
}
