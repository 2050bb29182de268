//! A file that is re-read when it changes, without a restart: it owns the path, the stamp that
//! tells one version from the next, the check at most once a second and the policy that an
//! unusable new version leaves the last good one in force, with one warning per change. What
//! the file says is left to the `Format` it is given (the users file, the router's routes).

use std::error::Error;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::{info, warn};

/// How often `WatchedFile::current` may stat the file: a change takes effect within a second,
/// while a burst of connections costs one stat a second, not one each.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a watched file holds and how to read it.
pub struct Format<T, E> {
    /// What the file holds, for log lines: "keeping the previous {what}".
    pub what: &'static str,
    /// The most octets a version may have, so that a wrong path (a log, /dev/zero) is not read
    /// into memory without end.
    pub max_octets: u64,
    /// One version's octets -> its value, or why it is malformed.
    pub parse: fn(&[u8]) -> Result<T, E>,
    /// A few words on a value just reloaded, for the log: "3 users".
    pub summary: fn(&T) -> String,
    /// Called with the path and the metadata of each version opened, before it is read: the
    /// place for a warning about its permissions.
    pub inspect: Option<fn(&Path, &Metadata)>,
}

// By hand: a derive would ask T and E to be Clone and Copy too, and the fields never need it.
impl<T, E> Clone for Format<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for Format<T, E> {}

/// Why a version of the file could not be used.
#[derive(Debug)]
pub enum WatchError<E> {
    /// Read, but the format refused it.
    Parse(E),
    /// Larger than the format's `max_octets`.
    TooLarge {
        max_octets: u64,
    },
    /// A directory, FIFO or device rather than a regular file.
    NotAFile,
    Io(io::Error),
}

impl<E: fmt::Display> fmt::Display for WatchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Parse(error) => write!(f, "{error}"),
            WatchError::TooLarge { max_octets } => write!(f, "larger than {max_octets} octets"),
            WatchError::NotAFile => f.write_str("not a regular file"),
            WatchError::Io(error) => write!(f, "{error}"),
        }
    }
}

impl<E: Error + 'static> Error for WatchError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            WatchError::Parse(error) => Some(error),
            WatchError::Io(error) => Some(error),
            WatchError::TooLarge { .. } | WatchError::NotAFile => None,
        }
    }
}

impl<E> From<io::Error> for WatchError<E> {
    fn from(error: io::Error) -> Self {
        WatchError::Io(error)
    }
}

/// What identifies one version of the file without reading it: an edit in place changes the
/// mtime or size, a replacement by rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    octets: u64,
    mtime_seconds: i64,
    mtime_nanoseconds: i64,
}

impl Stamp {
    fn of(metadata: &Metadata) -> Stamp {
        Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            octets: metadata.len(),
            mtime_seconds: metadata.mtime(),
            mtime_nanoseconds: metadata.mtime_nsec(),
        }
    }
}

/// Reads one version again; see `WatchedFile::reread`.
type Reread<T> = dyn Fn(&Path) -> Result<(T, Stamp), String> + Send + Sync;

/// A file on disk and the value parsed from it, re-read when it changes (checked by a stat of
/// (device, inode, size, mtime) at most once per interval, from `current()`). If a new version
/// is malformed, too large or unreadable, the previous value stays in force and a log::warn!
/// says why, once per change.
pub struct WatchedFile<T> {
    path: PathBuf,
    what: &'static str,
    summary: fn(&T) -> String,
    recheck_interval: Duration,
    /// The format's reader with its error type erased to the error's text: after `load`,
    /// errors only ever reach the log, so `WatchedFile` need not name the type.
    reread: Box<Reread<T>>,
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    /// The file is not stat'ed again before this instant.
    next_check: Instant,
    /// The version last looked at, loaded or refused (None: the file could not be stat'ed),
    /// so that a bad version is reported once, not at every check.
    seen: Option<Stamp>,
}

/// What one look at the file found; `current` logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recheck {
    /// The same version as last time (or still missing): nothing read, nothing to log.
    Unchanged,
    Reloaded,
    /// Changed but unusable (malformed, unreadable, gone), and why: the previous value stays.
    KeptPrevious(String),
}

impl<T: 'static> WatchedFile<T> {
    /// Loads the file at start-up, to be checked again at most once a second; Err if it is
    /// unreadable, too large or malformed (the caller then refuses to start).
    pub fn load<E>(path: &Path, format: Format<T, E>) -> Result<WatchedFile<T>, WatchError<E>>
    where
        E: fmt::Display + 'static,
    {
        Self::load_with_recheck_interval(path, format, RECHECK_INTERVAL)
    }

    /// Like `load`, checking for changes at most once per `recheck_interval` instead.
    pub fn load_with_recheck_interval<E>(
        path: &Path,
        format: Format<T, E>,
        recheck_interval: Duration,
    ) -> Result<WatchedFile<T>, WatchError<E>>
    where
        E: fmt::Display + 'static,
    {
        let (value, stamp) = read_version(path, &format)?;
        Ok(WatchedFile {
            path: path.to_owned(),
            what: format.what,
            summary: format.summary,
            recheck_interval,
            reread: Box::new(move |path| {
                read_version(path, &format).map_err(|error| error.to_string())
            }),
            state: Mutex::new(State {
                value: Arc::new(value),
                next_check: Instant::now() + recheck_interval,
                seen: Some(stamp),
            }),
        })
    }
}

impl<T> WatchedFile<T> {
    /// The path the value is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value in force now (re-reading the file if it changed).
    pub fn current(&self) -> Arc<T> {
        // State is only ever replaced field by field, so it is whole even if a thread panicked
        // while holding the lock.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now >= state.next_check {
            state.next_check = now + self.recheck_interval;
            match self.recheck(&mut state) {
                Recheck::Unchanged => {}
                Recheck::Reloaded => info!(
                    "{}: reloaded, {}",
                    self.path.display(),
                    (self.summary)(&state.value)
                ),
                Recheck::KeptPrevious(why) => warn!(
                    "{}: {why}; keeping the previous {}",
                    self.path.display(),
                    self.what
                ),
            }
        }
        Arc::clone(&state.value)
    }

    fn recheck(&self, state: &mut State<T>) -> Recheck {
        let seen = match fs::metadata(&self.path) {
            Ok(metadata) => Some(Stamp::of(&metadata)),
            Err(error) => {
                // Gone since the last look: said once, not at every check until it is back.
                let already_reported = state.seen.is_none();
                state.seen = None;
                if already_reported {
                    return Recheck::Unchanged;
                }
                return Recheck::KeptPrevious(error.to_string());
            }
        };
        if seen == state.seen {
            return Recheck::Unchanged;
        }
        match (self.reread)(&self.path) {
            Ok((value, stamp)) => {
                state.value = Arc::new(value);
                state.seen = Some(stamp);
                Recheck::Reloaded
            }
            Err(error) => {
                // The refused version's stamp, so that it is not read and reported again.
                state.seen = seen;
                Recheck::KeptPrevious(error)
            }
        }
    }
}

impl<T> fmt::Debug for WatchedFile<T> {
    // The value may hold secrets (the users file's passwords), so it is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedFile")
            .field("path", &self.path)
            .field("what", &self.what)
            .field("recheck_interval", &self.recheck_interval)
            .finish_non_exhaustive()
    }
}

/// Reads and parses one version of the file, with the stamp of the very file read.
fn read_version<T, E>(path: &Path, format: &Format<T, E>) -> Result<(T, Stamp), WatchError<E>> {
    // Checked before opening, since opening a FIFO would block until a writer came along.
    if !fs::metadata(path)?.is_file() {
        return Err(WatchError::NotAFile);
    }
    let file = File::open(path)?;
    // Again on the open file: the path may have been replaced between the two looks.
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(WatchError::NotAFile);
    }
    if let Some(inspect) = format.inspect {
        inspect(path, &metadata);
    }
    let mut octets = Vec::new();
    // One octet past the bound tells a file at the bound from a larger one.
    file.take(format.max_octets.saturating_add(1))
        .read_to_end(&mut octets)?;
    if octets.len() as u64 > format.max_octets {
        return Err(WatchError::TooLarge {
            max_octets: format.max_octets,
        });
    }
    let value = (format.parse)(&octets).map_err(WatchError::Parse)?;
    Ok((value, Stamp::of(&metadata)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;
    use Found::{KeptPrevious, Reloaded, Unchanged};

    /// What a look found, without the reason `KeptPrevious` carries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Found {
        Unchanged,
        Reloaded,
        KeptPrevious,
    }

    fn found(recheck: &Recheck) -> Found {
        match recheck {
            Recheck::Unchanged => Unchanged,
            Recheck::Reloaded => Reloaded,
            Recheck::KeptPrevious(why) => {
                assert!(!why.is_empty(), "a kept version must say why");
                KeptPrevious
            }
        }
    }
    use Step::*;

    /// The test format: UTF-8 text, taken as it is unless it says "bad".
    const TEXT: Format<String, TextError> = Format {
        what: "text",
        max_octets: 64,
        parse: parse_text,
        summary: |text| format!("{} octets", text.len()),
        inspect: None,
    };

    #[derive(Debug, PartialEq, Eq)]
    enum TextError {
        Bad,
        NotUtf8,
    }

    impl fmt::Display for TextError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TextError::Bad => f.write_str("says bad"),
                TextError::NotUtf8 => f.write_str("not utf-8"),
            }
        }
    }

    impl Error for TextError {}

    fn parse_text(octets: &[u8]) -> Result<String, TextError> {
        let text = std::str::from_utf8(octets).map_err(|_| TextError::NotUtf8)?;
        if text.contains("bad") {
            return Err(TextError::Bad);
        }
        Ok(text.to_owned())
    }

    /// The watched file's path in a test's directory.
    fn file(dir: &TempDir) -> PathBuf {
        dir.path().join("watched")
    }

    fn mtime_of(path: &Path) -> SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    fn set_mtime(path: &Path, mtime: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    /// One thing done to the watched file, or one look at it. File system timestamps are
    /// coarser than a test's steps, so each in-place rewrite that must be seen either changes
    /// the length or sets the mtime itself.
    enum Step {
        /// Rewrites the file in place (same inode).
        Write(&'static str),
        /// Rewrites it in place and puts the old mtime back: only the size tells.
        WriteKeepingMtime(&'static str),
        /// Rewrites it in place (same length) with the old mtime moved on: only the mtime tells.
        WriteMovingMtime(&'static str, Duration),
        /// Renames a new file of the same length and mtime over it: only the inode tells.
        RenameOver(&'static str),
        Remove,
        /// Puts a directory where the file was.
        ReplaceByDirectory,
        /// Takes the directory away again.
        RemoveDirectory,
        /// Makes it one octet longer than the format's bound.
        GrowPastBound,
        /// One look at the file: what it found, and the value in force after it.
        Check(Found, &'static str),
    }

    /// Loads `first`, then runs the steps in order.
    fn run(test: &str, first: &str, steps: &[Step]) {
        let dir = TempDir::new(test);
        let path = file(&dir);
        fs::write(&path, first).unwrap();
        // An hour: looks come only from the Check steps.
        let hour = Duration::from_secs(3600);
        let file = WatchedFile::load_with_recheck_interval(&path, TEXT, hour).unwrap();
        assert_eq!(*file.current(), first);
        for (index, step) in steps.iter().enumerate() {
            match *step {
                Step::Write(text) => fs::write(&path, text).unwrap(),
                Step::WriteKeepingMtime(text) => {
                    let mtime = mtime_of(&path);
                    fs::write(&path, text).unwrap();
                    set_mtime(&path, mtime);
                }
                Step::WriteMovingMtime(text, by) => {
                    let mtime = mtime_of(&path);
                    fs::write(&path, text).unwrap();
                    set_mtime(&path, mtime + by);
                }
                Step::RenameOver(text) => {
                    let next = dir.path().join("watched.new");
                    fs::write(&next, text).unwrap();
                    set_mtime(&next, mtime_of(&path));
                    fs::rename(&next, &path).unwrap();
                }
                Step::Remove => fs::remove_file(&path).unwrap(),
                Step::ReplaceByDirectory => {
                    fs::remove_file(&path).unwrap();
                    fs::create_dir(&path).unwrap();
                }
                Step::RemoveDirectory => fs::remove_dir(&path).unwrap(),
                Step::GrowPastBound => File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(TEXT.max_octets + 1)
                    .unwrap(),
                Step::Check(expected, value) => {
                    let mut state = file.state.lock().unwrap();
                    let got = found(&file.recheck(&mut state));
                    assert_eq!(got, expected, "{test}: step {index}");
                    assert_eq!(*state.value, value, "{test}: step {index}");
                }
            }
        }
    }

    #[test]
    fn a_change_of_size_alone_is_seen() {
        run(
            "size",
            "alice\n",
            &[
                Check(Unchanged, "alice\n"),
                WriteKeepingMtime("alice\nbob\n"),
                Check(Reloaded, "alice\nbob\n"),
                Check(Unchanged, "alice\nbob\n"),
            ],
        );
    }

    #[test]
    fn a_change_of_mtime_alone_is_seen() {
        // A whole second leaves the nanoseconds alone; a millisecond always changes them.
        for by in [Duration::from_secs(1), Duration::from_millis(1)] {
            run(
                "mtime",
                "alice\n",
                &[
                    WriteMovingMtime("brian\n", by),
                    Check(Reloaded, "brian\n"),
                    Check(Unchanged, "brian\n"),
                ],
            );
        }
    }

    #[test]
    fn a_replacement_by_rename_alone_is_seen() {
        // As editors and scripts replace a file: same length, same mtime, a new inode.
        run(
            "inode",
            "alice\n",
            &[
                RenameOver("brian\n"),
                Check(Reloaded, "brian\n"),
                Check(Unchanged, "brian\n"),
            ],
        );
    }

    #[test]
    fn a_malformed_version_keeps_the_previous_value_and_is_reported_once() {
        run(
            "malformed",
            "alice\n",
            &[
                Write("alice\nbad\n"),
                Check(KeptPrevious, "alice\n"),
                Check(Unchanged, "alice\n"),
                // Another bad version is another change, reported again.
                Write("alice\nbad again\n"),
                Check(KeptPrevious, "alice\n"),
                Check(Unchanged, "alice\n"),
                // Fixing the file brings it back into force.
                Write("alice\nbob\n"),
                Check(Reloaded, "alice\nbob\n"),
            ],
        );
    }

    #[test]
    fn an_unreadable_version_keeps_the_previous_value_and_is_reported_once() {
        // Root reads a file of mode 000, so "unreadable" is made by other means here.
        let cases: [(&str, &[Step]); 3] = [
            (
                "gone",
                &[
                    Remove,
                    Check(KeptPrevious, "alice\n"),
                    Check(Unchanged, "alice\n"),
                    Write("dave is back\n"),
                    Check(Reloaded, "dave is back\n"),
                ],
            ),
            (
                "directory",
                &[
                    ReplaceByDirectory,
                    Check(KeptPrevious, "alice\n"),
                    Check(Unchanged, "alice\n"),
                    RemoveDirectory,
                    Write("dave is back\n"),
                    Check(Reloaded, "dave is back\n"),
                ],
            ),
            (
                "too-large",
                &[
                    GrowPastBound,
                    Check(KeptPrevious, "alice\n"),
                    Check(Unchanged, "alice\n"),
                    Write("dave is back\n"),
                    Check(Reloaded, "dave is back\n"),
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, "alice\n", steps);
        }
    }

    #[test]
    fn the_file_is_looked_at_at_most_once_per_interval() {
        let dir = TempDir::new("throttled");
        let path = file(&dir);
        fs::write(&path, "alice\n").unwrap();
        assert_eq!(RECHECK_INTERVAL, Duration::from_secs(1));
        let file = WatchedFile::load(&path, TEXT).unwrap();
        assert_eq!(file.recheck_interval, RECHECK_INTERVAL);

        // An hour, so that a slow machine cannot let an interval pass unseen.
        let file = WatchedFile::load_with_recheck_interval(&path, TEXT, Duration::from_secs(3600))
            .unwrap();
        fs::write(&path, "alice\nbob\n").unwrap();
        for _ in 0..3 {
            assert_eq!(*file.current(), "alice\n");
        }
        file.state.lock().unwrap().next_check = Instant::now();
        assert_eq!(*file.current(), "alice\nbob\n");
        fs::write(&path, "alice\nbob\ncarol\n").unwrap();
        assert_eq!(*file.current(), "alice\nbob\n");
    }

    #[test]
    fn load_refuses_what_it_cannot_use() {
        let dir = TempDir::new("load");
        let path = file(&dir);
        let load = |path: &Path| WatchedFile::load(path, TEXT).map(|_| ());
        assert!(matches!(
            load(&path),
            Err(WatchError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(load(dir.path()), Err(WatchError::NotAFile)));
        // Debug names the variant and its fields exactly.
        let cases: [(&[u8], &str); 3] = [
            (b"bad\n", "Parse(Bad)"),
            (b"\xff\n", "Parse(NotUtf8)"),
            (&[b'x'; 65], "TooLarge { max_octets: 64 }"),
        ];
        for (octets, expected) in cases {
            fs::write(&path, octets).unwrap();
            let error = load(&path).unwrap_err();
            assert_eq!(format!("{error:?}"), expected, "{octets:?}");
        }
        fs::write(&path, [b'x'; 64]).unwrap();
        assert_eq!(WatchedFile::load(&path, TEXT).unwrap().current().len(), 64);
        assert_eq!(WatchedFile::load(&path, TEXT).unwrap().path(), path);
    }

    #[test]
    fn inspect_sees_each_version_opened() {
        static OPENED: AtomicUsize = AtomicUsize::new(0);
        let counted = Format {
            inspect: Some(|_, metadata| {
                assert!(metadata.is_file());
                OPENED.fetch_add(1, Ordering::Relaxed);
            }),
            ..TEXT
        };
        let dir = TempDir::new("inspect");
        let path = file(&dir);
        fs::write(&path, "alice\n").unwrap();
        let file = WatchedFile::load_with_recheck_interval(&path, counted, Duration::ZERO).unwrap();
        assert_eq!(OPENED.load(Ordering::Relaxed), 1);
        file.current();
        assert_eq!(OPENED.load(Ordering::Relaxed), 1, "unchanged: not opened");
        fs::write(&path, "alice\nbob\n").unwrap();
        file.current();
        assert_eq!(OPENED.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn watch_error_messages_are_lowercase_and_keep_their_source() {
        let cases: [(WatchError<TextError>, &str, bool); 4] = [
            (WatchError::Parse(TextError::Bad), "says bad", true),
            (
                WatchError::TooLarge { max_octets: 64 },
                "larger than 64 octets",
                false,
            ),
            (WatchError::NotAFile, "not a regular file", false),
            (
                WatchError::from(io::Error::new(io::ErrorKind::NotFound, "gone")),
                "gone",
                true,
            ),
        ];
        for (error, text, has_source) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.source().is_some(), has_source, "{text}");
        }
    }

    #[test]
    fn a_watched_file_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WatchedFile<String>>();
        let dir = TempDir::new("threads");
        let path = file(&dir);
        fs::write(&path, "alice\n").unwrap();
        let file =
            Arc::new(WatchedFile::load_with_recheck_interval(&path, TEXT, Duration::ZERO).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let file = Arc::clone(&file);
                std::thread::spawn(move || file.current().len())
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), 6);
        }
    }
}
