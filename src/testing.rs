//! Helpers shared by every test of the package: a slow reader for incremental parsers, a
//! seeded random number generator and unique temporary directories. std only, so that this
//! one file serves the library's unit tests (`mod testing`), the integration tests
//! (tests/support includes it by `#[path]`) and pop3d-router's tests (likewise), without a
//! feature flag or a test-only public API in the library. Compiled for tests only.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A reader that hands out at most one octet per read, as a slow network would: the tests of
/// every incremental parser (mbox scanner, PROXY header) feed their inputs through it.
pub(crate) struct OneByte<'a>(pub &'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.is_empty()) {
            (Some((&first, rest)), false) => {
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// A small deterministic PRNG (xorshift64*), since the package has no rand: a failure can be
/// replayed from its seed. The seed must not be 0.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in 0..n.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A temporary directory, unique per process and call, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("pop3d-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Skips a test whose environment lacks what it needs (root, mkfifo, pid namespaces), with
/// the reason on stderr; under CI (`CI` set), which has all of it, a skip would hide a broken
/// feature, so it fails instead.
#[allow(dead_code)]
pub(crate) fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "would skip ({why}), but CI must run every test"
    );
    eprintln!("skipped: {why}");
}
