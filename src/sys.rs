//! The crate's whole FFI: OFD fcntl locks, the NSS look-ups (passwd, shadow, group, the group
//! list), libxcrypt's `crypt_rn` and `crypt_gensalt_rn`, the switch of the process's
//! credentials, and close-on-exec for inherited descriptors. Each wrapper is safe: it owns every
//! buffer the C side writes to, copies the answer into Rust values before it returns, and
//! reports failure as an `io::Error` or a typed error. No raw pointer leaves this module, and
//! this is the only module allowed `unsafe`.
//!
//! Linux only (the credential calls and the fcntl constants are Linux's), glibc for the NSS
//! functions, libxcrypt (Debian's libcrypt1) for crypt.

#![allow(unsafe_code)]

use std::error::Error;
use std::ffi::{c_char, c_int, c_long, c_ulong, CStr, CString};
use std::fmt;
use std::fs::File;
use std::hint::black_box;
use std::io;
use std::path::PathBuf;

/// A buffer for the NSS `_r` functions starts this large (glibc's sysconf suggestion for
/// passwd entries is 1024; most entries fit)...
const NSS_BUFFER_START_OCTETS: usize = 1024;

/// ...and doubles on ERANGE up to this bound: an entry larger than 1 MiB (a group with
/// thousands of members) is a broken NSS source, not a user to serve.
const NSS_BUFFER_MAX_OCTETS: usize = 1 << 20;

/// Linux's NGROUPS_MAX: no process can carry more supplementary groups.
const MAX_GROUPS: usize = 65536;

/// `sizeof(struct crypt_data)` in libxcrypt (crypt.h: output 384, setting 384, input 512,
/// reserved 767, initialized 1, internal 30720). `crypt_rn` checks the size it is given and
/// fails with ERANGE rather than write past a smaller buffer.
const CRYPT_DATA_OCTETS: usize = 32768;

/// `CRYPT_OUTPUT_SIZE`: the hash is written NUL-terminated into the first 384 octets.
const CRYPT_OUTPUT_OCTETS: usize = 384;

/// `CRYPT_GENSALT_OUTPUT_SIZE`.
const CRYPT_GENSALT_OUTPUT_OCTETS: usize = 192;

/// `CRYPT_MAX_PASSPHRASE_SIZE`: libxcrypt refuses longer passphrases.
pub const MAX_PASSPHRASE_OCTETS: usize = 512;

const ERANGE: c_int = 34;
const ENOENT: c_int = 2;
const ESRCH: c_int = 3;
const EBADF: c_int = 9;
const EPERM: c_int = 1;

// ---------------------------------------------------------------------------------------
// Declarations. Struct layouts are glibc's on Linux (x86_64 and aarch64 alike).

/// `struct passwd` from <pwd.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct Passwd {
    pw_name: *mut c_char,
    pw_passwd: *mut c_char,
    pw_uid: u32,
    pw_gid: u32,
    pw_gecos: *mut c_char,
    pw_dir: *mut c_char,
    pw_shell: *mut c_char,
}

/// `struct spwd` from <shadow.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct Spwd {
    sp_namp: *mut c_char,
    sp_pwdp: *mut c_char,
    sp_lstchg: c_long,
    sp_min: c_long,
    sp_max: c_long,
    sp_warn: c_long,
    sp_inact: c_long,
    sp_expire: c_long,
    sp_flag: c_ulong,
}

/// `struct group` from <grp.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct Group {
    gr_name: *mut c_char,
    gr_passwd: *mut c_char,
    gr_gid: u32,
    gr_mem: *mut *mut c_char,
}

extern "C" {
    // <pwd.h>, <shadow.h>, <grp.h>: glibc's, through NSS.
    fn getpwnam_r(
        name: *const c_char,
        pwd: *mut Passwd,
        buf: *mut c_char,
        buflen: usize,
        result: *mut *mut Passwd,
    ) -> c_int;
    fn getspnam_r(
        name: *const c_char,
        spbuf: *mut Spwd,
        buf: *mut c_char,
        buflen: usize,
        spbufp: *mut *mut Spwd,
    ) -> c_int;
    fn getgrnam_r(
        name: *const c_char,
        grp: *mut Group,
        buf: *mut c_char,
        buflen: usize,
        result: *mut *mut Group,
    ) -> c_int;
    fn getgrouplist(
        user: *const c_char,
        group: u32,
        groups: *mut u32,
        ngroups: *mut c_int,
    ) -> c_int;
    // <unistd.h>, <grp.h>: the process-wide switches (glibc signals every thread to follow).
    fn setgroups(size: usize, list: *const u32) -> c_int;
    fn setresgid(rgid: u32, egid: u32, sgid: u32) -> c_int;
    fn setresuid(ruid: u32, euid: u32, suid: u32) -> c_int;
    fn getresuid(ruid: *mut u32, euid: *mut u32, suid: *mut u32) -> c_int;
    fn getresgid(rgid: *mut u32, egid: *mut u32, sgid: *mut u32) -> c_int;
    fn geteuid() -> u32;
    // <fcntl.h>
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
}

// libxcrypt's <crypt.h>. Linked by its runtime name (the `+verbatim` modifier passes
// `-l:libcrypt.so.1` to the linker), so a stock Debian with only libcrypt1, without the
// libcrypt-dev symlink libcrypt.so, builds as well.
#[link(name = "libcrypt.so.1", kind = "dylib", modifiers = "+verbatim")]
extern "C" {
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut c_char,
        size: c_int,
    ) -> *mut c_char;
    fn crypt_gensalt_rn(
        prefix: *const c_char,
        count: c_ulong,
        rbytes: *const c_char,
        nrbytes: c_int,
        output: *mut c_char,
        output_size: c_int,
    ) -> *mut c_char;
}

// ---------------------------------------------------------------------------------------
// Accounts.

/// A system account as NSS resolves it (`getpwnam_r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Copies one C string field of an NSS entry; a NULL field reads as empty.
///
/// SAFETY (for callers): `field` must be NULL or point at a NUL-terminated string that lives
/// at least as long as the call (inside the buffer the `_r` function filled).
unsafe fn field_octets(field: *const c_char) -> Vec<u8> {
    if field.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees a live NUL-terminated string.
    unsafe { CStr::from_ptr(field) }.to_bytes().to_vec()
}

fn nul_free(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul in name"))
}

/// Runs one NSS `_r` look-up with a growing buffer. `call(buf, len)` returns the C return
/// value and whether an entry was found. Ok(false): no such entry.
fn nss_lookup(mut call: impl FnMut(&mut [u8]) -> (c_int, bool)) -> io::Result<bool> {
    let mut size = NSS_BUFFER_START_OCTETS;
    loop {
        let mut buffer = vec![0u8; size];
        let (rc, found) = call(&mut buffer);
        match rc {
            0 => return Ok(found),
            // "Not found" comes back as 0 or as one of these, depending on the NSS module.
            ENOENT | ESRCH | EBADF | EPERM if !found => return Ok(false),
            ERANGE if size < NSS_BUFFER_MAX_OCTETS => size *= 2,
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// The shape of `getpwnam_r`, `getspnam_r` and `getgrnam_r`: `int f(const char *name,
/// ENTRY *entry, char *buf, size_t buflen, ENTRY **result)`.
type NssByName<T> =
    unsafe extern "C" fn(*const c_char, *mut T, *mut c_char, usize, *mut *mut T) -> c_int;

/// Runs the NSS look-up `lookup` of `name`, starting each try from a copy of `empty` (an
/// all-zero entry), and hands the filled entry to `read` while the buffer its string fields
/// point into is still alive. Ok(None): no such entry.
fn nss_by_name<T: Copy, R>(
    name: &str,
    lookup: NssByName<T>,
    empty: T,
    mut read: impl FnMut(&T) -> R,
) -> io::Result<Option<R>> {
    let c_name = nul_free(name)?;
    let mut value = None;
    let found = nss_lookup(|buffer| {
        let mut entry = empty;
        let mut result: *mut T = std::ptr::null_mut();
        // SAFETY: `lookup` is one of the `getXXnam_r` functions declared above, whose shape
        // `NssByName` mirrors. `c_name` is NUL-terminated, `entry` and `result` are live
        // locals, and `buffer` is writable for exactly `buffer.len()` octets; all outlive the
        // call.
        let rc = unsafe {
            lookup(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut result,
            )
        };
        if rc == 0 && !result.is_null() {
            value = Some(read(&entry));
        }
        (rc, !result.is_null())
    })?;
    Ok(value.filter(|_| found))
}

/// `getpwnam_r`: the account of that name, None if there is none.
pub fn account_by_name(name: &str) -> io::Result<Option<Account>> {
    // SAFETY: all-zero is a valid `struct passwd` (NULL pointers, zero ids); C fills it.
    let empty: Passwd = unsafe { std::mem::zeroed() };
    let account = nss_by_name(name, getpwnam_r, empty, |entry| {
        // SAFETY: `nss_by_name` calls this on success, while the buffer the string fields
        // point into is still alive.
        let (name, home, shell) = unsafe {
            (
                field_octets(entry.pw_name),
                field_octets(entry.pw_dir),
                field_octets(entry.pw_shell),
            )
        };
        (name, entry.pw_uid, entry.pw_gid, home, shell)
    })?;
    let Some((entry_name, uid, gid, home, shell)) = account else {
        return Ok(None);
    };
    use std::os::unix::ffi::OsStringExt;
    Ok(Some(Account {
        name: String::from_utf8_lossy(&entry_name).into_owned(),
        uid,
        gid,
        home: PathBuf::from(std::ffi::OsString::from_vec(home)),
        shell: PathBuf::from(std::ffi::OsString::from_vec(shell)),
    }))
}

/// A password hash as read from the shadow file. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ShadowHash(pub String);

impl fmt::Debug for ShadowHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShadowHash(<redacted>)")
    }
}

/// `getspnam_r`: the shadow password field of that name, None if there is no shadow entry.
/// Needs root (or group shadow) to read /etc/shadow: otherwise Err(PermissionDenied).
pub fn shadow_hash(name: &str) -> io::Result<Option<ShadowHash>> {
    // SAFETY: all-zero is a valid `struct spwd`; C fills it.
    let empty: Spwd = unsafe { std::mem::zeroed() };
    let hash = nss_by_name(name, getspnam_r, empty, |entry| {
        // SAFETY: `nss_by_name` calls this on success, while the buffer sp_pwdp points into
        // is still alive.
        unsafe { field_octets(entry.sp_pwdp) }
    })?;
    match hash {
        // A hash is ASCII (crypt(5)); anything else can never match, like a locked one.
        Some(octets) => Ok(Some(ShadowHash(
            String::from_utf8(octets).unwrap_or_else(|_| "!".to_owned()),
        ))),
        None => Ok(None),
    }
}

/// `getgrnam_r`: the gid of the group of that name, None if there is none.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    // SAFETY: all-zero is a valid `struct group`; C fills it.
    let empty: Group = unsafe { std::mem::zeroed() };
    nss_by_name(name, getgrnam_r, empty, |entry| entry.gr_gid)
}

/// `getgrouplist`: every group `account` belongs to, its primary group first.
pub fn group_list(account: &Account) -> io::Result<Vec<u32>> {
    let c_name = nul_free(&account.name)?;
    let mut groups = vec![0u32; 64];
    loop {
        let mut count = c_int::try_from(groups.len()).unwrap_or(c_int::MAX);
        // SAFETY: mirrors `int getgrouplist(const char *user, gid_t group, gid_t *groups,
        // int *ngroups)`. `groups` is writable for `count` gids and `count` is a live local;
        // on -1 glibc stores the number needed in `count` and writes at most `count` gids.
        let rc = unsafe {
            getgrouplist(
                c_name.as_ptr(),
                account.gid,
                groups.as_mut_ptr(),
                &mut count,
            )
        };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count.min(groups.len()));
            return Ok(groups);
        }
        if count <= groups.len() || count > MAX_GROUPS {
            return Err(io::Error::other("getgrouplist: too many groups"));
        }
        groups = vec![0u32; count];
    }
}

// ---------------------------------------------------------------------------------------
// libxcrypt.

/// Why a crypt call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptError {
    /// The passphrase or setting holds a NUL octet, or the passphrase is too long.
    BadInput,
    /// libcrypt refused the setting (unknown or disabled hash method, malformed hash).
    Refused(io::ErrorKind),
}

impl fmt::Display for CryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptError::BadInput => f.write_str("passphrase or setting not acceptable to crypt"),
            CryptError::Refused(kind) => write!(f, "crypt refused the setting: {kind}"),
        }
    }
}

impl Error for CryptError {}

/// libxcrypt's `struct crypt_data`, on the heap (32 KiB), zeroed before use as crypt_rn
/// requires and again on drop, since it holds the passphrase.
struct CryptData(Box<[u8]>);

impl CryptData {
    fn new() -> CryptData {
        CryptData(vec![0u8; CRYPT_DATA_OCTETS].into_boxed_slice())
    }
}

impl Drop for CryptData {
    fn drop(&mut self) {
        self.0.fill(0);
        black_box(&self.0);
    }
}

/// `crypt_rn(phrase, setting)`: the hash of `phrase` under `setting` (a full hash or a salt
/// string), in crypt(5)'s notation.
pub fn crypt(phrase: &str, setting: &str) -> Result<String, CryptError> {
    if phrase.len() >= MAX_PASSPHRASE_OCTETS {
        return Err(CryptError::BadInput);
    }
    let phrase = CString::new(phrase).map_err(|_| CryptError::BadInput)?;
    let setting = CString::new(setting).map_err(|_| CryptError::BadInput)?;
    let mut data = CryptData::new();
    let size = c_int::try_from(data.0.len()).map_err(|_| CryptError::BadInput)?;
    // SAFETY: mirrors `char *crypt_rn(const char *phrase, const char *setting, void *data,
    // int size)`. Both strings are NUL-terminated and live; `data` is a zeroed, writable
    // buffer of exactly `size` octets (libxcrypt checks `size >= sizeof(struct crypt_data)`).
    // The returned pointer is only tested for NULL: the hash is read from `data` below.
    let rc = unsafe {
        crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.0.as_mut_ptr().cast(),
            size,
        )
    };
    if rc.is_null() {
        return Err(CryptError::Refused(io::Error::last_os_error().kind()));
    }
    let output = CStr::from_bytes_until_nul(&data.0[..CRYPT_OUTPUT_OCTETS])
        .map_err(|_| CryptError::Refused(io::ErrorKind::InvalidData))?;
    let hash = output.to_str().map_err(|_| CryptError::BadInput)?;
    // libxcrypt never returns a "*" failure token from crypt_rn, but a hash starting with '*'
    // is no hash in any case.
    if hash.starts_with('*') {
        return Err(CryptError::Refused(io::ErrorKind::InvalidInput));
    }
    Ok(hash.to_owned())
}

/// `crypt_gensalt_rn(NULL, 0, NULL, 0, ...)`: a fresh setting of the host's default method
/// and cost (yescrypt on Debian 11 and later), random bytes from the kernel.
pub fn default_setting() -> Result<String, CryptError> {
    let mut output = [0u8; CRYPT_GENSALT_OUTPUT_OCTETS];
    let size = c_int::try_from(output.len()).map_err(|_| CryptError::BadInput)?;
    // SAFETY: mirrors `char *crypt_gensalt_rn(const char *prefix, unsigned long count, const
    // char *rbytes, int nrbytes, char *output, int output_size)`. NULL prefix means the
    // default method, count 0 its default cost, NULL rbytes lets libxcrypt read the kernel's
    // random source; `output` is writable for `size` octets. The return value is only tested
    // for NULL: the setting is read from `output`.
    let rc = unsafe {
        crypt_gensalt_rn(
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            output.as_mut_ptr().cast(),
            size,
        )
    };
    if rc.is_null() {
        return Err(CryptError::Refused(io::Error::last_os_error().kind()));
    }
    let setting = CStr::from_bytes_until_nul(&output)
        .map_err(|_| CryptError::Refused(io::ErrorKind::InvalidData))?;
    setting
        .to_str()
        .map(str::to_owned)
        .map_err(|_| CryptError::BadInput)
}

// ---------------------------------------------------------------------------------------
// Credentials.

/// The credentials a session switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid may be among them).
    pub groups: Vec<u32>,
}

/// Why a credential switch failed. The caller must not go on with file work after any of
/// these: the process may hold part of the new credentials.
#[derive(Debug)]
pub enum SwitchError {
    /// One of the set* calls failed (`step` names it).
    Call {
        step: &'static str,
        error: io::Error,
    },
    /// The ids read back are not the ones asked for.
    NotApplied,
    /// Root could be regained after the switch.
    Reversible,
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::Call { step, error } => write!(f, "{step} failed: {error}"),
            SwitchError::NotApplied => f.write_str("credentials read back differ from the switch"),
            SwitchError::Reversible => f.write_str("root could be regained after the switch"),
        }
    }
}

impl Error for SwitchError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SwitchError::Call { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn check(step: &'static str, rc: c_long) -> Result<(), SwitchError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(SwitchError::Call {
            step,
            error: io::Error::last_os_error(),
        })
    }
}

/// A thread's ids, each as (real, effective, saved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uids: [u32; 3],
    pub gids: [u32; 3],
}

/// The calling thread's (real, effective, saved) uids and gids.
pub fn current_ids() -> io::Result<Ids> {
    let (mut ruid, mut euid, mut suid) = (0, 0, 0);
    let (mut rgid, mut egid, mut sgid) = (0, 0, 0);
    // SAFETY: mirrors `int getresuid(uid_t *ruid, uid_t *euid, uid_t *suid)` and the same for
    // gids; each pointer is a live, writable local. glibc calls the system call directly, so
    // the answer is the calling thread's.
    let rc = unsafe { getresuid(&mut ruid, &mut euid, &mut suid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { getresgid(&mut rgid, &mut egid, &mut sgid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Ids {
        uids: [ruid, euid, suid],
        gids: [rgid, egid, sgid],
    })
}

/// The effective uid of the calling thread (0 = root).
pub fn effective_uid() -> u32 {
    // SAFETY: mirrors `uid_t geteuid(void)`, which cannot fail.
    unsafe { geteuid() }
}

/// Checks that the switch took and cannot be undone (for a target other than root). Should
/// root come back (it cannot, after setresuid from root), `drop_again` gives it up at once so
/// that the error leaves the caller no more privileged than the target.
fn verify(
    target: &Credentials,
    try_regain: impl Fn() -> c_long,
    drop_again: impl Fn(),
) -> Result<(), SwitchError> {
    let ids = current_ids().map_err(|error| SwitchError::Call {
        step: "getresuid",
        error,
    })?;
    if ids.uids != [target.uid; 3] || ids.gids != [target.gid; 3] {
        return Err(SwitchError::NotApplied);
    }
    if target.uid != 0 && try_regain() == 0 {
        drop_again();
        return Err(SwitchError::Reversible);
    }
    Ok(())
}

/// Switches the WHOLE PROCESS (every thread), irreversibly, to `target`, through glibc's
/// setgroups, setresgid and setresuid: the process serves one session.
pub fn switch_process(target: &Credentials) -> Result<(), SwitchError> {
    // SAFETY: mirrors `int setgroups(size_t size, const gid_t *list)`; `groups` is live and
    // only read during the call.
    let rc = unsafe { setgroups(target.groups.len(), target.groups.as_ptr()) };
    check("setgroups", c_long::from(rc))?;
    // SAFETY: mirrors `int setresgid(gid_t, gid_t, gid_t)`; plain integers.
    let rc = unsafe { setresgid(target.gid, target.gid, target.gid) };
    check("setresgid", c_long::from(rc))?;
    // SAFETY: mirrors `int setresuid(uid_t, uid_t, uid_t)`; plain integers.
    let rc = unsafe { setresuid(target.uid, target.uid, target.uid) };
    check("setresuid", c_long::from(rc))?;
    verify(
        target,
        || {
            // SAFETY: as above; u32::MAX is (uid_t)-1, "leave unchanged".
            c_long::from(unsafe { setresuid(u32::MAX, 0, u32::MAX) })
        },
        || {
            // SAFETY: as above; plain integers.
            unsafe { setresuid(target.uid, target.uid, target.uid) };
        },
    )
}

// ---------------------------------------------------------------------------------------
// OFD locks.
//
// ---------------------------------------------------------------------------------------
// Descriptors a process inherited.

const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;

/// Marks close-on-exec every descriptor above 2 that this process inherited open across
/// exec (whoever started it may have leaked some); Rust opens its own close-on-exec. For a
/// daemon whose children run as other users: none of them may inherit what the daemon was
/// handed. Returns how many were marked.
pub fn close_inherited_on_exec() -> io::Result<usize> {
    let fds: Vec<c_int> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut marked = 0;
    for fd in fds {
        // SAFETY: fcntl(F_GETFD) only reads the flags of descriptor `fd`, passed as an int;
        // a descriptor closed meanwhile (the listing's own) answers EBADF, skipped.
        let flags = unsafe { fcntl(fd, F_GETFD) };
        if flags < 0 || flags & FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: fcntl(F_SETFD) sets the descriptor flags of `fd` from an int; it touches no
        // memory, and only adds close-on-exec to what the descriptor already had.
        if unsafe { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) } == 0 {
            marked += 1;
        }
    }
    Ok(marked)
}

// Open-file-description fcntl locks (Linux `F_OFD_SETLK`). A classic POSIX record lock
// belongs to the whole process and is dropped when any thread closes any descriptor of the
// file, which a threaded server cannot rule out; an OFD lock belongs to one open file
// description, and conflicts both with other OFD locks and with the classic fcntl locks that
// delivery agents take.

/// Whether `try_lock_ofd` really locks here (OFD locks are Linux's).
pub const OFD_SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// From <fcntl.h> on Linux x86_64 and aarch64.
const F_OFD_SETLK: c_int = 37;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
const SEEK_SET: i16 = 0;
const EACCES: i32 = 13;
const EAGAIN: i32 = 11;

/// `struct flock` of Linux x86_64 and aarch64 (glibc and musl alike): two shorts, two
/// 64-bit offsets, a pid; 32 bytes with padding.
#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: c_int,
}

const _: () = assert!(std::mem::size_of::<Flock>() == 32);

/// One non-blocking `F_OFD_SETLK` over the whole file. Ok(false): held elsewhere.
fn set_ofd(file: &File, l_type: i16) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    if !OFD_SUPPORTED {
        static WARN: std::sync::Once = std::sync::Once::new();
        WARN.call_once(|| {
            log::warn!(
                "no OFD fcntl locks on this platform: mboxes are locked by dotlock and flock only"
            )
        });
        return Ok(true);
    }
    // l_start 0 with l_len 0 covers the whole file, including bytes appended later;
    // OFD locks require l_pid 0.
    let lock = Flock {
        l_type,
        l_whence: SEEK_SET,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: mirrors `int fcntl(int fd, int cmd, ... /* struct flock * */)`, declared with
    // its real variadic signature; F_OFD_SETLK reads exactly one `struct flock` through the
    // pointer, which points at a live, correctly laid out (asserted 32-byte repr(C)) value for
    // the whole call and is not kept afterwards; the descriptor stays open because `file` is
    // borrowed.
    let rc = unsafe { fcntl(file.as_raw_fd(), F_OFD_SETLK, &lock as *const Flock) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(EACCES) | Some(EAGAIN) => Ok(false),
        _ => Err(e),
    }
}

/// Takes a non-blocking OFD write lock on all of `file` (open for writing); Ok(false) if
/// another open file description, or a classic fcntl lock of another process, holds one.
/// Without OFD locks (`OFD_SUPPORTED` false) this succeeds without locking.
pub fn try_lock_ofd(file: &File) -> io::Result<bool> {
    set_ofd(file, F_WRLCK)
}

/// Releases an OFD lock taken by `try_lock_ofd` through the same open file description.
pub fn unlock_ofd(file: &File) -> io::Result<()> {
    set_ofd(file, F_UNLCK).map(|_| ())
}

/// What `kill(pid, 0)` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The process exists (signalling it is allowed, or EPERM: it exists but is not ours).
    Exists,
    /// ESRCH: no process with that number in this pid namespace.
    NoSuchProcess,
}

/// `kill(pid, 0)`: checks for a process without signalling it. None if the pid is out of
/// range for a `pid_t` or the call failed in another way.
pub fn signal_zero(pid: u32) -> Option<Probe> {
    use std::ffi::c_int;

    /// From <errno.h> on Linux (all architectures) and the BSDs.
    const ESRCH: i32 = 3;
    const EPERM: i32 = 1;

    extern "C" {
        fn kill(pid: c_int, sig: c_int) -> c_int;
    }

    // A pid that is not a positive pid_t would address a process group or every process.
    let pid = c_int::try_from(pid).ok().filter(|&p| p > 0)?;
    // SAFETY: `kill` is the C library's, declared with its real signature (two ints, an int
    // back); it takes no pointers, and with signal 0 it only checks that `pid` names a
    // process we could signal, sending nothing. `pid` is positive, so it names one process,
    // never a group or every process.
    let rc = unsafe { kill(pid, 0) };
    if rc == 0 {
        return Some(Probe::Exists);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(EPERM) => Some(Probe::Exists),
        Some(ESRCH) => Some(Probe::NoSuchProcess),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_checks_a_known_sha512_hash() {
        // From `mkpasswd -m sha-512 -S saltsalt secret`.
        let setting = "$6$saltsalt$";
        let hash = crypt("secret", setting).unwrap();
        assert!(hash.starts_with("$6$saltsalt$"), "{hash}");
        assert_eq!(crypt("secret", &hash).unwrap(), hash);
        assert_ne!(crypt("Secret", &hash).unwrap(), hash);
    }

    #[test]
    fn default_setting_makes_fresh_salts_that_crypt_accepts() {
        let a = default_setting().unwrap();
        let b = default_setting().unwrap();
        assert!(a.starts_with('$'), "{a}");
        assert_ne!(a, b);
        let hash = crypt("pw", &a).unwrap();
        assert_eq!(crypt("pw", &hash).unwrap(), hash);
    }

    #[test]
    fn crypt_refuses_bad_settings_and_inputs() {
        assert!(matches!(
            crypt("pw", "!locked"),
            Err(CryptError::Refused(_))
        ));
        assert!(matches!(crypt("pw", "*"), Err(CryptError::Refused(_))));
        assert!(matches!(crypt("pw", ""), Err(CryptError::Refused(_))));
        assert_eq!(crypt("p\0w", "$6$salt$"), Err(CryptError::BadInput));
        let long = "x".repeat(MAX_PASSPHRASE_OCTETS);
        assert_eq!(crypt(&long, "$6$salt$"), Err(CryptError::BadInput));
    }

    #[test]
    fn account_by_name_finds_root_and_not_a_stranger() {
        let root = account_by_name("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.name, "root");
        assert!(root.home.is_absolute());
        assert_eq!(account_by_name("pop3d-no-such-user").unwrap(), None);
        assert!(account_by_name("a\0b").is_err());
    }

    #[test]
    fn group_id_finds_root_and_not_a_stranger() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("pop3d-no-such-group").unwrap(), None);
    }

    #[test]
    fn group_list_holds_the_primary_group() {
        let root = account_by_name("root").unwrap().expect("root exists");
        let groups = group_list(&root).unwrap();
        assert!(groups.contains(&0), "{groups:?}");
    }

    #[test]
    fn shadow_hash_reads_root_or_says_it_may_not() {
        match shadow_hash("root") {
            Ok(hash) => {
                assert_eq!(effective_uid(), 0);
                assert!(hash.is_some());
                assert_eq!(shadow_hash("pop3d-no-such-user").unwrap(), None);
            }
            Err(e) => {
                assert_ne!(effective_uid(), 0);
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            }
        }
    }

    #[test]
    fn inherited_descriptors_are_marked_close_on_exec() {
        use std::os::fd::AsRawFd;
        // A descriptor as a careless parent would pass it: without close-on-exec.
        let file = File::open("/proc/self/stat").unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: as in close_inherited_on_exec; `file` keeps `fd` open.
        assert_eq!(unsafe { fcntl(fd, F_SETFD, 0) }, 0);
        assert!(close_inherited_on_exec().unwrap() >= 1);
        // SAFETY: as above.
        let flags = unsafe { fcntl(fd, F_GETFD) };
        assert_eq!(flags & FD_CLOEXEC, FD_CLOEXEC);
    }

    #[test]
    fn shadow_hash_debug_hides_the_hash() {
        let shown = format!("{:?}", ShadowHash("$6$salt$secrethash".into()));
        assert!(!shown.contains("secrethash"));
    }
}
