//! Helpers shared by the maildrop integration tests: messages whose content follows from
//! their tag (so "whole" can be checked exactly), reading a maildrop back, and re-running the
//! test binary as a child process that a fault may kill. Temporary directories are
//! tests/support's.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use pop3d::maildrop::{Maildrop, MaildropError, OpenOptions, SessionLock};

use crate::support;

pub(crate) use support::{Rng, TempDir};

/// Set in a child process: names the role it plays.
pub const CHILD_ROLE: &str = "POP3D_TEST_CHILD";

/// The content (what RETR sends, before CRLF) of the message tagged `tag`: headers naming
/// the tag, and a body whose length depends on it, ending in a line that names it again.
pub fn content(tag: &str) -> String {
    let lines = tag.bytes().fold(7u64, |h, b| h * 31 + u64::from(b)) % 60;
    let mut s = format!("Message-ID: <{tag}@test>\nSubject: {tag}\n\n");
    for i in 0..lines {
        s.push_str(&format!(
            "line {i} of {tag}, some filler text to make it longer\n"
        ));
    }
    s.push_str(&format!("END {tag}\n"));
    s
}

/// The mbox record of message `tag`: From line, content, separator blank line.
pub fn record(tag: &str) -> String {
    format!(
        "From {tag}@sender.test Mon Jan  1 00:00:00 2024\n{}\n",
        content(tag)
    )
}

/// The tag a message's content names in its Message-ID.
pub fn tag_of(content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let rest = text.strip_prefix("Message-ID: <")?;
    Some(rest[..rest.find("@test>")?].to_owned())
}

pub fn options(timeout: Duration) -> OpenOptions {
    OpenOptions {
        lock_timeout: timeout,
        ..OpenOptions::default()
    }
}

/// Opens `path` as a session would.
pub fn open(path: &Path, timeout: Duration) -> Result<Maildrop, MaildropError> {
    let lock = SessionLock::try_acquire(path)?;
    Maildrop::open(path, lock, &options(timeout))
}

/// Opens `path`, retrying while another session or a delivery holds it.
pub fn open_patiently(path: &Path) -> Maildrop {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match open(path, Duration::from_secs(5)) {
            Ok(md) => return md,
            Err(MaildropError::InUse | MaildropError::Locked) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// Reads every message; panics unless each one is exactly the content its tag implies.
/// Returns tag -> how many times it occurs.
pub fn read_all(md: &mut Maildrop) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for tag in read_tags(md) {
        *seen.entry(tag).or_insert(0) += 1;
    }
    seen
}

/// As `read_all`, but the tags in file order.
pub fn read_tags(md: &mut Maildrop) -> Vec<String> {
    let mut tags = Vec::new();
    for i in 0..md.messages().len() {
        let mut got = Vec::new();
        md.message_reader(i)
            .expect("message reader")
            .read_to_end(&mut got)
            .expect("read message");
        let tag = tag_of(&got).unwrap_or_else(|| {
            let m = &md.messages()[i];
            let from = std::fs::read(md.path()).map(|d| {
                String::from_utf8_lossy(&d[m.record_start as usize..m.content_start as usize])
                    .into_owned()
            });
            panic!(
                "message {i} ({from:?}) is not whole: {:?}",
                String::from_utf8_lossy(&got)
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&got),
            content(&tag),
            "message {i} ({tag}) is not whole"
        );
        tags.push(tag);
    }
    tags
}

/// How a child process ended, and what it printed (for failure messages only, so that
/// hundreds of children do not flood the test log).
pub struct Child {
    pub status: ExitStatus,
    pub output: String,
}

/// Runs this test binary's test `name` again in a child process with `env` added.
pub fn run_child(name: &str, role: &str, env: &[(&str, String)]) -> Child {
    run_child_via(&[], name, role, env)
}

/// `run_child` under a wrapper command (`["setpriv", ...]`), which gets the test binary and
/// its arguments appended. Panics unless the child ran exactly that one test: a name that
/// matches no test would make libtest run nothing and exit 0, a check passed vacuously.
pub fn run_child_via(wrapper: &[&str], name: &str, role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = match wrapper {
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        [] => Command::new(exe),
    };
    let out = command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("spawn child");
    let child = Child {
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    assert!(
        child.output.contains("running 1 test\n"),
        "child {name} did not run that test\n{}",
        child.output
    );
    child
}

/// SIGABRT, what std::process::abort ends a process with (a child stopped at a fault point).
pub const SIGABRT: i32 = 6;

/// The text of an mbox holding the messages tagged `tags`, in that order.
pub fn mbox_text(tags: &[String]) -> String {
    tags.iter().map(|t| record(t)).collect()
}

/// The environment that makes `child_commit` delete the messages at the indexes `pattern`
/// of the mbox at `path`; a test adds its fault settings.
pub fn commit_env(path: &Path, pattern: &[usize]) -> Vec<(&'static str, String)> {
    let delete = pattern.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    vec![
        ("POP3D_TEST_MBOX", path.display().to_string()),
        ("POP3D_TEST_DELETE", delete.join(",")),
    ]
}

/// The child of a crash test: open the mbox named by POP3D_TEST_MBOX, delete the messages
/// listed in POP3D_TEST_DELETE (see `commit_env`), commit.
pub fn child_commit() -> Result<(), MaildropError> {
    let path = std::env::var("POP3D_TEST_MBOX").expect("mbox");
    let delete: Vec<usize> = std::env::var("POP3D_TEST_DELETE")
        .expect("delete")
        .split(',')
        .map(|n| n.parse().expect("index"))
        .collect();
    let mut md = open(Path::new(&path), Duration::from_secs(5))?;
    let mut deleted = vec![false; md.messages().len()];
    for i in delete {
        deleted[i] = true;
    }
    md.commit(&deleted).map(|_| ())
}

/// The role of this process, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE).ok()
}

/// Whether this process runs as root (files it creates belong to uid 0).
pub fn is_root(dir: &TempDir) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.path().join(".root-probe");
    std::fs::write(&probe, b"").expect("probe");
    let root = std::fs::metadata(&probe).expect("probe").uid() == 0;
    let _ = std::fs::remove_file(probe);
    root
}
