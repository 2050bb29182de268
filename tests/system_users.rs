//! --system-users against real accounts: test users made with useradd and chpasswd (one
//! yescrypt, one SHA-512, one locked, one below --first-uid), removed at the end even when a
//! test fails. Checks the outcomes through `SystemUsers` itself and through the binary, and
//! that a session's process (standalone or --inetd) runs as the user. Needs root;
//! skipped elsewhere, but never in CI.

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{chown, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pop3d::session::UserSource;
use pop3d::sys;
use pop3d::system_users::{SystemUsers, DEFAULT_FIRST_UID};
use pop3d::users::Password;
use support::{free_port, mbox_message, Client, TempDir};

/// useradd and userdel take a lock on /etc/passwd: the tests of this file add their accounts
/// one at a time.
static ACCOUNTS_LOCK: Mutex<()> = Mutex::new(());

fn running_as_root() -> bool {
    sys::effective_uid() == 0
}

/// Whether this test can run; in CI (root) it must.
fn can_run() -> bool {
    if running_as_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs as root; this test must run there"
    );
    eprintln!("skipped: needs root to create accounts and read /etc/shadow");
    false
}

/// Test accounts, removed on drop (so also when an assertion fails).
struct Accounts(Vec<String>);

impl Accounts {
    /// A name unique to this test process and `tag`.
    fn name(tag: &str) -> String {
        format!("p3t{}{tag}", std::process::id() % 100_000)
    }

    /// Adds an account with `password` hashed by `method` (chpasswd -c: YESCRYPT, SHA512).
    fn add(&mut self, tag: &str, password: &str, method: &str, useradd_args: &[&str]) -> String {
        let name = Self::name(tag);
        let _guard = ACCOUNTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        run(Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin"])
            .args(useradd_args)
            .arg(&name));
        self.0.push(name.clone());
        let mut chpasswd = Command::new("chpasswd")
            .args(["-c", method])
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        writeln!(chpasswd.stdin.take().unwrap(), "{name}:{password}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd {name}");
        name
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let _guard = ACCOUNTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for name in &self.0 {
            let _ = Command::new("userdel").arg("-f").arg(name).status();
        }
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("run");
    assert!(status.success(), "{command:?}: {status}");
}

fn shadow_field(name: &str) -> String {
    let shadow = fs::read_to_string("/etc/shadow").unwrap();
    let line = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap();
    line.split(':').nth(1).unwrap().to_owned()
}

/// The users of the tests below: yescrypt, SHA-512, locked, and a system account (low uid).
struct Fixture {
    accounts: Accounts,
    yescrypt: String,
    sha512: String,
    locked: String,
    low: String,
}

fn fixture(tag: &str) -> Fixture {
    let mut accounts = Accounts(Vec::new());
    let yescrypt = accounts.add(&format!("{tag}y"), "yes pass", "YESCRYPT", &[]);
    let sha512 = accounts.add(&format!("{tag}s"), "sha-pass", "SHA512", &[]);
    let locked = accounts.add(&format!("{tag}l"), "locked-pass", "SHA512", &[]);
    run(Command::new("usermod").arg("-L").arg(&locked));
    let low = accounts.add(&format!("{tag}r"), "low-pass", "SHA512", &["-r"]);
    assert!(shadow_field(&yescrypt).starts_with("$y$"));
    assert!(shadow_field(&sha512).starts_with("$6$"));
    assert!(shadow_field(&locked).starts_with('!'));
    Fixture {
        accounts,
        yescrypt,
        sha512,
        locked,
        low,
    }
}

fn uid_of(name: &str) -> u32 {
    sys::account_by_name(name).unwrap().unwrap().uid
}

fn login(users: &SystemUsers, name: &str, password: &str) -> Option<u32> {
    users
        .checked_user(name, &|stored: &Password| stored.check(password))
        .map(|user| user.account.expect("a system user has an account").uid)
}

#[test]
fn system_users_let_in_only_a_right_password_of_an_ordinary_account() {
    if !can_run() {
        return;
    }
    let f = fixture("a");
    let users = SystemUsers::new(DEFAULT_FIRST_UID).unwrap();
    assert!(uid_of(&f.yescrypt) >= DEFAULT_FIRST_UID);
    assert!(uid_of(&f.low) < DEFAULT_FIRST_UID);
    assert_eq!(
        login(&users, &f.yescrypt, "yes pass"),
        Some(uid_of(&f.yescrypt))
    );
    assert_eq!(
        login(&users, &f.sha512, "sha-pass"),
        Some(uid_of(&f.sha512))
    );
    for (name, password) in [
        (f.yescrypt.as_str(), "yes pass "),
        (f.yescrypt.as_str(), "sha-pass"),
        (f.sha512.as_str(), ""),
        (f.locked.as_str(), "locked-pass"),
        (f.low.as_str(), "low-pass"),
        ("root", "anything"),
        ("p3t-no-such-user", "yes pass"),
    ] {
        assert_eq!(login(&users, name, password), None, "{name} {password:?}");
    }
    // With the limit lowered, the system account's right password works: the refusal above
    // was the uid, not the password.
    let lenient = SystemUsers::new(uid_of(&f.low)).unwrap();
    assert_eq!(login(&lenient, &f.low, "low-pass"), Some(uid_of(&f.low)));
    // Never APOP or CRAM-MD5: the check never sees a shared secret.
    assert!(users
        .checked_user(&f.yescrypt, &|stored| stored.shared_secret().is_some())
        .is_none());
    assert!(!users.has_shared_secrets());
    drop(f.accounts);
    assert_eq!(sys::account_by_name(&f.yescrypt).unwrap(), None);
}

/// A spool made like Debian's /var/mail: root:mail 2775.
fn debian_spool(dir: &Path) -> PathBuf {
    let spool = dir.join("mail");
    fs::create_dir(&spool).unwrap();
    let mail = sys::group_id("mail").unwrap().expect("a group mail");
    chown(&spool, Some(0), Some(mail)).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o2775)).unwrap();
    spool
}

/// An mbox as postfix local makes it: owner the user, group mail, mode 0600.
fn user_mbox(spool: &Path, name: &str, mode: u32, content: &str) -> PathBuf {
    let path = spool.join(name);
    fs::write(&path, content).unwrap();
    let account = sys::account_by_name(name).unwrap().unwrap();
    let mail = sys::group_id("mail").unwrap();
    chown(&path, Some(account.uid), mail).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

struct Pop3d {
    child: Child,
}

impl Drop for Pop3d {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uids (real, effective, saved, fs) in a /proc status file.
fn status_uids(path: &Path) -> Option<Vec<u32>> {
    let status = fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().ok())
        .collect()
}

/// The supplementary groups of the thread of process `pid` that runs as `uid`.
fn groups_of_thread_as(pid: u32, uid: u32) -> Option<Vec<u32>> {
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let status = fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        let uids = status.lines().find(|l| l.starts_with("Uid:"))?;
        if uids.split_whitespace().nth(1) != Some(&uid.to_string()) {
            continue;
        }
        let groups = status.lines().find(|l| l.starts_with("Groups:"))?;
        return groups
            .split_whitespace()
            .skip(1)
            .map(|g| g.parse().ok())
            .collect();
    }
    None
}

/// The uids of each thread of process `pid`.
fn thread_uids(pid: u32) -> Vec<Vec<u32>> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| status_uids(&t.ok()?.path().join("status")))
        .collect()
}

/// Whether `account` may send a signal to `pid` (kill -0, which sends none).
fn may_signal(account: &sys::Account, pid: u32) -> bool {
    Command::new("setpriv")
        .arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .args([
            "--clear-groups",
            "sh",
            "-c",
            "kill -0 \"$1\" 2>/dev/null",
            "sh",
        ])
        .arg(pid.to_string())
        .status()
        .expect("setpriv")
        .success()
}

/// Every task (thread) id of process `pid`.
fn tasks(pid: u32) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold anything, so split after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// The one session process of daemon `pid` that runs as `uid`.
fn session_process(pid: u32, uid: u32) -> u32 {
    let sessions: Vec<u32> = children(pid)
        .into_iter()
        .filter(|child| {
            status_uids(Path::new(&format!("/proc/{child}/status"))) == Some(vec![uid; 4])
        })
        .collect();
    assert_eq!(
        sessions.len(),
        1,
        "session processes of uid {uid}: {sessions:?}"
    );
    sessions[0]
}

/// pop3d --system-users on a free loopback port, with `pattern` for --maildrop.
fn start(pattern: &Path, log: &Path) -> (Pop3d, std::net::SocketAddr) {
    start_with(pattern, log, &[], &[])
}

/// The capabilities scripts/deploy/system-users/pop3d.service leaves the standalone daemon.
const UNIT_CAPABILITIES: &str = "-all,+setuid,+setgid,+kill,+net_bind_service";

/// As `start`, with more options, and under the standalone unit's capabilities only. The
/// daemon is handed a descriptor a careless parent left open across exec (fd 9, on
/// /etc/passwd), which no session process may inherit.
fn start_with(
    pattern: &Path,
    log: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Pop3d, std::net::SocketAddr) {
    let addr = free_port();
    let server = Pop3d {
        child: Command::new("sh")
            .args(["-c", "exec 9</etc/passwd; exec \"$@\"", "sh", "setpriv"])
            .args(["--bounding-set", UNIT_CAPABILITIES, "--inh-caps", "-all"])
            .arg(support::binary())
            .args(["--system-users", "--listen", &addr.to_string()])
            .args(extra)
            .arg("--maildrop")
            .arg(pattern)
            .arg("--log-file")
            .arg(log)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pop3d"),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pop3d did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, addr)
}

fn pass(addr: std::net::SocketAddr, name: &str, password: &str) -> (Client, String) {
    let mut c = Client::connect(addr);
    c.greeting();
    c.ok(&format!("USER {name}"));
    c.send(&format!("PASS {password}"));
    let reply = c.line();
    (c, reply)
}

#[test]
fn an_mbox_of_another_owner_or_a_symlink_in_a_sticky_spool_is_refused() {
    if !can_run() {
        return;
    }
    let f = fixture("d");
    let dir = TempDir::new("system-users-perm");
    // A world-writable sticky spool, where any user can plant a link.
    let spool = dir.path().join("mail");
    fs::create_dir(&spool).unwrap();
    let mail = sys::group_id("mail").unwrap().expect("a group mail");
    chown(&spool, Some(0), Some(mail)).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
    // The SHA-512 user's mbox as exim makes it (0660, group mail), and a link to it planted
    // as the yescrypt user's mbox.
    let content = mbox_message("a@x", "Subject: private\n\nfor sha512 only\n");
    let victim = user_mbox(&spool, &f.sha512, 0o660, &content);
    let link = spool.join(&f.yescrypt);
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let owner = uid_of(&f.yescrypt);
    std::os::unix::fs::lchown(&link, Some(owner), Some(owner)).unwrap();
    let (server, addr) = start(&spool.join("%u"), &dir.path().join("pop3d.log"));
    let (_c, reply) = pass(addr, &f.yescrypt, "yes pass");
    assert!(reply.starts_with("-ERR [SYS/PERM]"), "{reply}");
    // A regular file of another owner under the user's name: refused too.
    fs::remove_file(&link).unwrap();
    fs::copy(&victim, &link).unwrap();
    chown(&link, Some(uid_of(&f.sha512)), Some(mail)).unwrap();
    let (_c, reply) = pass(addr, &f.yescrypt, "yes pass");
    assert!(reply.starts_with("-ERR [SYS/PERM]"), "{reply}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), content);
    // The owner of the mbox still gets in, without group mail in a world-writable spool.
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.starts_with("+OK"), "{reply}");
    let session = session_process(server.child.id(), uid_of(&f.sha512));
    let groups = groups_of_thread_as(session, uid_of(&f.sha512)).expect("session process");
    assert!(!groups.contains(&mail), "{groups:?}");
    c.ok("QUIT");
}

/// A journal that another user can forge for `mbox` from its `stat` alone (the layout of
/// src/maildrop/journal.rs: magic, dev, ino, dirty, batch, capacity, first_dst, tail_src,
/// orig_len, grid, no kept ranges, its md-5): replayed, it would truncate the mbox to 0 bytes.
fn forged_journal(mbox: &Path) -> Vec<u8> {
    use md5::{Digest, Md5};
    let meta = fs::metadata(mbox).unwrap();
    let mut header = b"P3DJRNL3".to_vec();
    for v in [meta.dev(), meta.ino(), 1, 4096, 0, 0, meta.len(), 0, 64, 0] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    let digest = Md5::digest(&header);
    header.extend_from_slice(&digest);
    header
}

/// In a world-writable sticky spool, another user plants files under the names of the
/// victim's journal and session lock. None is ever used or removed: the victim's login is
/// refused with [SYS/PERM] (not held at [IN-USE] by the planter's flock), the mbox stays
/// whole, and the log names the file.
#[test]
fn companions_planted_by_another_user_in_a_sticky_spool_are_refused() {
    if !can_run() {
        return;
    }
    let f = fixture("j");
    let dir = TempDir::new("system-users-planted");
    let spool = dir.path().join("mail");
    fs::create_dir(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
    let content = mbox_message("a@x", "Subject: private\n\nfor sha512 only\n");
    let victim = user_mbox(&spool, &f.sha512, 0o600, &content);
    let mallory = uid_of(&f.yescrypt);
    let plant = |suffix: &str, bytes: &[u8], mode: u32| {
        let path = spool.join(format!("{}{suffix}", f.sha512));
        fs::write(&path, bytes).unwrap();
        chown(&path, Some(mallory), Some(mallory)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let log = dir.path().join("pop3d.log");
    let (_server, addr) = start(&spool.join("%u"), &log);
    let refused = |planted: &Path| {
        let (_c, reply) = pass(addr, &f.sha512, "sha-pass");
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            content,
            "{}: mbox changed",
            planted.display()
        );
        assert!(
            reply.starts_with("-ERR [SYS/PERM]"),
            "{}: {reply}",
            planted.display()
        );
        assert!(
            fs::symlink_metadata(planted).is_ok(),
            "{} removed",
            planted.display()
        );
        let text = fs::read_to_string(&log).unwrap();
        assert!(
            text.contains(&planted.display().to_string()),
            "the log must name {}",
            planted.display()
        );
    };
    // The forged journal, writable by the victim (the mode that let it be replayed), then
    // one the victim cannot even open.
    let journal = plant(".pop3d-journal", &forged_journal(&victim), 0o666);
    refused(&journal);
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o600)).unwrap();
    refused(&journal);
    fs::remove_file(&journal).unwrap();
    // The session lock, with the planter's flock on it.
    let session = plant(".pop3d", b"", 0o666);
    let held = fs::File::open(&session).unwrap();
    fs2::FileExt::try_lock_exclusive(&held).unwrap();
    refused(&session);
    fs::remove_file(&session).unwrap();
    // A symlink under the journal's name.
    let link = spool.join(format!("{}.pop3d-journal", f.sha512));
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(mallory), Some(mallory)).unwrap();
    refused(&link);
    fs::remove_file(&link).unwrap();
    // With the planted files gone, the victim gets in and finds the mail.
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.starts_with("+OK"), "{reply}");
    assert_eq!(c.multi("LIST").len(), 1);
    c.ok("QUIT");
}

/// A unique id record as pop3d writes it, saying that nobody owns the plain id `digest`.
fn record_retiring(digest: &str) -> Vec<u8> {
    let mut text = format!("pop3d-uidl 1\n{digest} - 1700000000\n").into_bytes();
    let sum = support::md5_hex(&text);
    text.extend_from_slice(format!("md5 {sum}\n").as_bytes());
    text
}

/// In a world-writable sticky spool, another user plants the victim's unique id record: one
/// that would take the plain id from the victim's message, then a FIFO. Neither is used,
/// replaced or waited on (the client's read timeout fails a hang): the victim logs in, the
/// message keeps its id, and the log names the file and its owner.
#[test]
fn a_unique_id_record_planted_by_another_user_is_not_used() {
    if !can_run() {
        return;
    }
    let f = fixture("u");
    let dir = TempDir::new("system-users-uidl");
    let spool = dir.path().join("mail");
    fs::create_dir(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
    let content = mbox_message("a@x", "Subject: private\n\nfor sha512 only\n");
    user_mbox(&spool, &f.sha512, 0o600, &content);
    let mallory = uid_of(&f.yescrypt);
    let record = spool.join(format!("{}.pop3d-uidl", f.sha512));
    let log = dir.path().join("pop3d.log");
    let (_server, addr) = start(&spool.join("%u"), &log);
    let ids = || {
        let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
        assert!(reply.starts_with("+OK"), "{reply}");
        let ids = c.multi("UIDL");
        c.ok("QUIT");
        ids
    };
    let before = ids();
    assert_eq!(before.len(), 1);
    assert!(
        fs::symlink_metadata(&record).is_err(),
        "no collision: no record"
    );
    let plain = before[0].split(' ').nth(1).unwrap().to_string();

    let planted = record_retiring(&plain);
    fs::write(&record, &planted).unwrap();
    chown(&record, Some(mallory), Some(mallory)).unwrap();
    fs::set_permissions(&record, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(ids(), before, "the planted record changed the id");
    assert_eq!(
        fs::read(&record).unwrap(),
        planted,
        "the planted record changed"
    );
    let text = fs::read_to_string(&log).unwrap();
    let named = text.lines().any(|l| {
        l.contains(&record.display().to_string()) && l.contains(&format!("uid {mallory}"))
    });
    assert!(
        named,
        "the log must name {} and its owner",
        record.display()
    );
    fs::remove_file(&record).unwrap();

    let made = Command::new("mkfifo").arg(&record).status();
    if made.is_ok_and(|s| s.success()) {
        chown(&record, Some(mallory), Some(mallory)).unwrap();
        fs::set_permissions(&record, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(ids(), before);
        assert!(fs::symlink_metadata(&record).unwrap().file_type().is_fifo());
        fs::remove_file(&record).unwrap();
    }

    // The temporary record's old fixed name, planted: the record is still written when the
    // message is deleted, and the planted file stays.
    let temp = spool.join(format!("{}.pop3d-uidl.new", f.sha512));
    fs::write(&temp, b"planted").unwrap();
    chown(&temp, Some(mallory), Some(mallory)).unwrap();
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.starts_with("+OK"), "{reply}");
    c.ok("DELE 1");
    c.ok("QUIT");
    let written = fs::symlink_metadata(&record).expect("the record was not written");
    assert_eq!(written.uid(), uid_of(&f.sha512));
    assert_eq!(fs::read(&temp).unwrap(), b"planted");
}

#[test]
fn percent_h_is_the_users_home_directory() {
    if !can_run() {
        return;
    }
    let mut accounts = Accounts(Vec::new());
    let dir = TempDir::new("system-users-home");
    let home = dir.path().join("home");
    let name = accounts.add(
        "h",
        "home pass",
        "YESCRYPT",
        &["-d", home.to_str().unwrap()],
    );
    fs::create_dir(&home).unwrap();
    let account = sys::account_by_name(&name).unwrap().unwrap();
    chown(&home, Some(account.uid), Some(account.gid)).unwrap();
    let mbox = home.join("mbox");
    fs::write(&mbox, mbox_message("a@x", "Subject: home\n\nat home\n")).unwrap();
    chown(&mbox, Some(account.uid), Some(account.gid)).unwrap();
    fs::set_permissions(&mbox, fs::Permissions::from_mode(0o600)).unwrap();
    let (_server, addr) = start(Path::new("%h/mbox"), &dir.path().join("pop3d.log"));
    let (mut c, reply) = pass(addr, &name, "home pass");
    assert!(
        reply.starts_with("+OK") && reply.contains("has 1 messages"),
        "{reply}"
    );
    assert_eq!(c.retr(1), b"Subject: home\r\n\r\nat home\r\n");
    c.ok("QUIT");
}

#[test]
fn standalone_sessions_run_in_a_process_of_the_mailbox_owner() {
    if !can_run() {
        return;
    }
    let f = fixture("b");
    let dir = TempDir::new("system-users");
    let spool = debian_spool(dir.path());
    let message = mbox_message("a@x", "Subject: one\n\nbody one\n");
    let content = format!(
        "{message}{}",
        mbox_message("b@x", "Subject: two\n\nbody two\n")
    );
    let mbox = user_mbox(&spool, &f.yescrypt, 0o600, &content);
    let before = fs::metadata(&mbox).unwrap();
    let (server, addr) = start(&spool.join("%u"), &dir.path().join("pop3d.log"));
    // Wrong password, unknown user, root, locked and low uid: one and the same answer.
    let mut c = Client::connect(addr);
    c.greeting();
    let capa = c.multi("CAPA");
    assert!(capa.iter().any(|l| l == "SASL PLAIN"), "{capa:?}");
    let mut answers = Vec::new();
    for (name, password) in [
        (f.yescrypt.as_str(), "wrong"),
        ("p3t-no-such-user", "yes pass"),
        ("root", "x"),
    ] {
        c.ok(&format!("USER {name}"));
        answers.push(c.err(&format!("PASS {password}")));
    }
    c.expect_closed();
    let mut c = Client::connect(addr);
    c.greeting();
    for (name, password) in [
        (f.locked.as_str(), "locked-pass"),
        (f.low.as_str(), "low-pass"),
    ] {
        c.ok(&format!("USER {name}"));
        answers.push(c.err(&format!("PASS {password}")));
    }
    assert!(
        answers
            .iter()
            .all(|a| a == "-ERR [AUTH] invalid user name or password"),
        "{answers:?}"
    );
    drop(c);

    let uid = uid_of(&f.yescrypt);
    let mut c = Client::connect(addr);
    c.greeting();
    c.ok(&format!("USER {}", f.yescrypt));
    let ok = c.ok("PASS yes pass");
    assert!(ok.contains("has 2 messages"), "{ok}");
    // A second session of the user finds the maildrop in use. Its process has switched to
    // the user by then and could not check another password: it ends the session rather
    // than fail a retry as a wrong password.
    let (mut second, reply) = pass(addr, &f.yescrypt, "yes pass");
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    second.expect_closed();
    // While the session is open, its process is the user's, and every thread of the daemon
    // stays root's.
    let session = session_process(server.child.id(), uid);
    let threads = thread_uids(server.child.id());
    assert!(
        threads.len() >= 2 && threads.iter().all(|t| t == &[0; 4]),
        "{threads:?}"
    );
    // It shows as pop3d, without its client's address for every local user to read, and it
    // holds no descriptor of the daemon's but the log: stdin (its channel to the daemon) and
    // stdout (the client's socket) are its only sockets.
    let proc_dir = PathBuf::from(format!("/proc/{session}"));
    assert_eq!(
        fs::read_to_string(proc_dir.join("comm")).unwrap(),
        "pop3d\n"
    );
    let cmdline = fs::read_to_string(proc_dir.join("cmdline")).unwrap();
    let client = c.stream.local_addr().unwrap().to_string();
    assert!(!cmdline.contains(&client), "{client} in {cmdline:?}");
    // (Its own copies of fds 0 and 1 name the same sockets; its maildrop files are its own.)
    let log = dir.path().join("pop3d.log");
    let fd_target = |n: u32| fs::read_link(proc_dir.join(format!("fd/{n}"))).unwrap();
    let own = [fd_target(0), fd_target(1)];
    for target in &own {
        assert!(
            target.to_string_lossy().starts_with("socket:"),
            "{target:?}"
        );
    }
    for fd in fs::read_dir(proc_dir.join("fd")).unwrap() {
        let number: u32 = fd.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let target = fd_target(number);
        assert!(
            number <= 2 || target == log || own.contains(&target) || target.starts_with(&spool),
            "fd {number} of the session process: {target:?}"
        );
    }
    // Group mail, for the dotlock in the root:mail 2775 spool; the user is no member.
    let mail = sys::group_id("mail").unwrap().unwrap();
    let groups = groups_of_thread_as(session, uid).expect("session process");
    assert!(groups.contains(&mail), "{groups:?}");
    let account = sys::account_by_name(&f.yescrypt).unwrap().unwrap();
    assert!(!sys::group_list(&account).unwrap().contains(&mail));
    assert_eq!(c.retr(1), b"Subject: one\r\n\r\nbody one\r\n");
    c.ok("DELE 1");
    let bye = c.ok("QUIT");
    assert!(bye.contains("1 messages deleted"), "{bye}");
    c.expect_closed();
    let log = fs::read_to_string(dir.path().join("pop3d.log")).unwrap();
    assert!(
        log.contains("no second login once running as the user"),
        "{log}"
    );
    // UPDATE kept the mbox's inode, owner, group and mode, and left nothing of root's behind.
    let after = fs::metadata(&mbox).unwrap();
    assert_eq!(
        (after.ino(), after.uid(), after.gid(), after.mode()),
        (before.ino(), before.uid(), before.gid(), before.mode())
    );
    assert!(fs::read_to_string(&mbox).unwrap().contains("body two"));
    assert!(!fs::read_to_string(&mbox).unwrap().contains("body one"));
    // What is left in the spool: the mbox, the session lock and (after a deletion) the
    // unique-id record, each the user's, group mail from the setgid spool, mode 0600.
    let mut left = Vec::new();
    for entry in fs::read_dir(&spool).unwrap() {
        let entry = entry.unwrap();
        let m = entry.metadata().unwrap();
        left.push(entry.file_name().into_string().unwrap());
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, mail, 0o600),
            "{}",
            entry.path().display()
        );
    }
    left.sort();
    let name = &f.yescrypt;
    let expected = [
        name.clone(),
        format!("{name}.pop3d"),
        format!("{name}.pop3d-uidl"),
    ];
    assert_eq!(left, expected);
}

/// A session process that dies in the middle of UPDATE (here: aborted by the fault-injection
/// point right after its journal is made) takes nothing else with it: the daemon serves on,
/// the journal and the dotlock it left are the user's, and the next login, as the user,
/// cleans up after it. (The maildrop tests cover crashes at every later point.)
#[test]
fn a_session_process_that_dies_mid_update_leaves_the_daemon_serving() {
    if !can_run() {
        return;
    }
    let f = fixture("u");
    let dir = TempDir::new("system-users-crash");
    let spool = debian_spool(dir.path());
    let content = format!(
        "{}{}",
        mbox_message("a@x", "Subject: one\n\ngone\n"),
        mbox_message("b@x", "Subject: two\n\nkept\n")
    );
    let mbox = user_mbox(&spool, &f.sha512, 0o660, &content);
    let log = dir.path().join("pop3d.log");
    let crash = [("POP3D_FAULT_POINT", "journal-created")];
    let (mut server, addr) = start_with(&spool.join("%u"), &log, &[], &crash);
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.contains("has 2 messages"), "{reply}");
    c.ok("DELE 1");
    c.send("QUIT");
    c.expect_closed();
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the daemon died"
    );
    let uid = uid_of(&f.sha512);
    let mail = sys::group_id("mail").unwrap().unwrap();
    let name = &f.sha512;
    for (file, mode) in [
        (format!("{name}.pop3d-journal"), 0o600),
        (format!("{name}.lock"), 0o644),
    ] {
        let m = fs::metadata(spool.join(&file)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, mail, mode),
            "{file}"
        );
    }
    // Nothing had been moved yet: the next login, as the user, breaks the dead process's
    // dotlock, drops the journal, and finds every message as it was.
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.contains("has 2 messages"), "{reply}");
    assert_eq!(c.retr(1), b"Subject: one\r\n\r\ngone\r\n");
    c.ok("QUIT");
    assert!(!spool.join(format!("{name}.pop3d-journal")).exists());
    assert!(!spool.join(format!("{name}.lock")).exists());
    assert_eq!(fs::read_to_string(&mbox).unwrap(), content);
}

/// A logged-in user with a shell can signal what runs as them. Linux checks a signal against
/// the credentials of the thread it is aimed at and delivers it to the whole process, so a
/// session thread switched to the user would let them stop or kill the daemon (and every
/// other session); a session process lets them signal only their own session.
#[test]
fn a_logged_in_user_cannot_signal_the_standalone_daemon() {
    if !can_run() {
        return;
    }
    let f = fixture("k");
    let dir = TempDir::new("system-users-signal");
    let spool = debian_spool(dir.path());
    user_mbox(
        &spool,
        &f.yescrypt,
        0o600,
        &mbox_message("a@x", "Subject: one\n\nbody\n"),
    );
    let (server, addr) = start(&spool.join("%u"), &dir.path().join("pop3d.log"));
    let (mut c, reply) = pass(addr, &f.yescrypt, "yes pass");
    assert!(reply.starts_with("+OK"), "{reply}");
    let account = sys::account_by_name(&f.yescrypt).unwrap().unwrap();
    let daemon = server.child.id();
    let tasks = tasks(daemon);
    assert!(tasks.len() >= 2, "{tasks:?}");
    for task in &tasks {
        assert!(
            !may_signal(&account, *task),
            "the user may signal task {task} of the daemon {daemon}"
        );
    }
    // The check itself works: the user may signal the process of their own session.
    assert_eq!(children(daemon).len(), 1);
    assert!(may_signal(&account, session_process(daemon, account.uid)));
    c.ok("QUIT");
}

/// A session process its user stopped (kill -STOP) would hold its place under the caps and
/// its maildrop's lock for good, its autologout never running: the daemon ends it once it has
/// been stopped for the autologout time.
#[test]
fn a_stopped_session_process_is_ended_after_the_autologout_time() {
    if !can_run() {
        return;
    }
    let f = fixture("t");
    let dir = TempDir::new("system-users-stopped");
    let spool = debian_spool(dir.path());
    user_mbox(
        &spool,
        &f.sha512,
        0o600,
        &mbox_message("a@x", "Subject: one\n\nbody\n"),
    );
    let log = dir.path().join("pop3d.log");
    let (server, addr) = start_with(&spool.join("%u"), &log, &["--timeout", "1"], &[]);
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.starts_with("+OK"), "{reply}");
    let session = session_process(server.child.id(), uid_of(&f.sha512));
    run(Command::new("kill").args(["-STOP", &session.to_string()]));
    // Ended within the autologout and two looks of the daemon (5 s apart), with margin.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{session}")).exists() {
        assert!(
            Instant::now() < deadline,
            "stopped session {session} still there"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.expect_closed();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "session process {session} stopped for over 1 s: ended"
        )),
        "{text}"
    );
    // Its lock went with it: the user logs in again.
    let (mut c, reply) = pass(addr, &f.sha512, "sha-pass");
    assert!(reply.contains("has 1 messages"), "{reply}");
    c.ok("QUIT");
}

/// The session process judges its connection as the daemon did: a client a trusted proxy
/// names off this host, without TLS, is insecure, so the system password it would send in
/// clear text is refused before it is checked.
#[test]
fn a_session_process_keeps_the_daemons_judgement_of_the_connection() {
    if !can_run() {
        return;
    }
    let f = fixture("j");
    let dir = TempDir::new("system-users-insecure");
    let spool = debian_spool(dir.path());
    let log = dir.path().join("pop3d.log");
    let proxy = ["--trusted-proxy", "127.0.0.1"];
    let (_server, addr) = start_with(&spool.join("%u"), &log, &proxy, &[]);
    let mut c = Client::connect(addr);
    c.send_raw(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 110\r\n");
    c.greeting();
    let capa = c.multi("CAPA");
    assert!(!capa.iter().any(|l| l == "USER"), "{capa:?}");
    let refused = c.err(&format!("USER {}", f.yescrypt));
    assert!(
        refused.contains("plaintext authentication disallowed"),
        "{refused}"
    );
    c.ok("QUIT");
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("192.0.2.7:40000: connected, insecure"),
        "{text}"
    );
}

/// The per-address penalty lives in the daemon: a session process asks it for its turns, so
/// a failure in one session slows the next session from the same address.
#[test]
fn failed_logins_slow_the_next_session_process_of_the_address() {
    if !can_run() {
        return;
    }
    let f = fixture("p");
    let dir = TempDir::new("system-users-penalty");
    let spool = debian_spool(dir.path());
    let log = dir.path().join("pop3d.log");
    let (_server, addr) = start(&spool.join("%u"), &log);
    let (_first, reply) = pass(addr, &f.sha512, "wrong");
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    // The second guess, in another session process, waits for the address's next turn (2 s
    // after the first failure) before its own failure delay (1 s): a table per process would
    // answer it after the failure delay alone.
    let asked = Instant::now();
    let (_second, reply) = pass(addr, &f.sha512, "wrong again");
    let took = asked.elapsed();
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    assert!(took >= Duration::from_millis(1500), "answered in {took:?}");
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("earlier failed logins from 127.0.0.1: check in"),
        "{text}"
    );
}

#[test]
fn an_inetd_session_runs_as_the_mailbox_owner() {
    if !can_run() {
        return;
    }
    let f = fixture("c");
    let dir = TempDir::new("system-users-inetd");
    let spool = debian_spool(dir.path());
    // exim's mode: 0660.
    let mbox = user_mbox(
        &spool,
        &f.sha512,
        0o660,
        &format!(
            "{}{}",
            mbox_message("a@x", "Subject: one\n\nbody\n"),
            mbox_message("b@x", "Subject: two\n\nkept\n")
        ),
    );
    let before = fs::metadata(&mbox).unwrap();
    let mut child = Pop3d {
        child: Command::new(support::binary())
            .args(["--system-users", "--inetd"])
            .arg("--maildrop")
            .arg(spool.join("%u"))
            .arg("--log-file")
            .arg(dir.path().join("pop3d.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pop3d --inetd"),
    };
    let pid = child.child.id();
    let mut input = child.child.stdin.take().unwrap();
    let mut output = BufReader::new(child.child.stdout.take().unwrap());
    let mut line = || {
        let mut text = String::new();
        output.read_line(&mut text).unwrap();
        text
    };
    assert!(line().starts_with("+OK"));
    write!(input, "USER {}\r\nPASS sha-pass\r\n", f.sha512).unwrap();
    assert!(line().starts_with("+OK"));
    let ok = line();
    assert!(
        ok.starts_with("+OK") && ok.contains("has 2 messages"),
        "{ok}"
    );
    let uid = uid_of(&f.sha512);
    let status = Path::new(&format!("/proc/{pid}/status")).to_path_buf();
    assert_eq!(status_uids(&status), Some(vec![uid; 4]));
    // The process has group mail, which the user is no member of: the dotlock of UPDATE
    // (refused without it, and nothing deleted) can be made in the root:mail 2775 spool.
    let mail = sys::group_id("mail").unwrap().unwrap();
    assert_eq!(
        groups_of_thread_as(pid, uid).map(|g| g.contains(&mail)),
        Some(true)
    );
    let account = sys::account_by_name(&f.sha512).unwrap().unwrap();
    assert!(!sys::group_list(&account).unwrap().contains(&mail));
    write!(input, "DELE 1\r\nQUIT\r\n").unwrap();
    assert!(line().starts_with("+OK"));
    let bye = line();
    assert!(bye.contains("1 messages deleted"), "{bye}");
    assert!(child.child.wait().unwrap().success());
    let after = fs::metadata(&mbox).unwrap();
    assert_eq!(
        (after.ino(), after.uid(), after.gid(), after.mode()),
        (before.ino(), before.uid(), before.gid(), before.mode())
    );
    let left = fs::read_to_string(&mbox).unwrap();
    assert!(
        left.contains("kept") && !left.contains("Subject: one"),
        "{left}"
    );
}

#[test]
fn system_users_refuse_to_start_without_root() {
    if !can_run() {
        return;
    }
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(support::binary())
        .args(["--system-users", "--listen", "127.0.0.1:0"])
        .output()
        .expect("setpriv");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--system-users needs root"), "{stderr}");
}
