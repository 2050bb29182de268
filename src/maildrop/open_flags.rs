//! The Linux open(2) flags the maildrop passes through `custom_flags`, which std does not
//! name: their values on Linux x86_64 and aarch64, and 0 everywhere else, where each caller
//! falls back to doing without the flag.

/// Whether the values below are known: Linux on x86_64 or aarch64.
const KNOWN: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// Linux's O_NOATIME (the same on x86_64 and aarch64): reads leave the access time alone.
pub const O_NOATIME: i32 = if KNOWN { 0o1_000_000 } else { 0 };

/// Linux's O_NOFOLLOW: opening a symlink fails with ELOOP instead of following it. The value
/// differs between the architectures (aarch64 keeps 32-bit ARM's numbering). Elsewhere the
/// opened file is compared with what `lstat` sees instead.
pub const O_NOFOLLOW: i32 = if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
    0o400_000
} else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
    0o100_000
} else {
    0
};

/// O_NONBLOCK (the same on x86_64 and aarch64): a FIFO planted under a companion's name must
/// not block the open; on a regular file it changes nothing.
pub const O_NONBLOCK: i32 = if KNOWN { 0o4_000 } else { 0 };
