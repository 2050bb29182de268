//! The message reader's guard against a rewrite while a message streams: after every block
//! it reads, it compares the file's fingerprint with the one taken before the record was
//! checked, so a message rewritten in place (same length, other bytes) or cut and appended to
//! while RETR or TOP sends it never reaches its terminating "." line.
//!
//! A delivery that appends while the message streams changes the fingerprint too, but not
//! the message. So a changed fingerprint is not yet an error: the message's content as the
//! file holds it now is compared with a digest of the content taken while the record was
//! checked (in the same pass), and the block just read with the file's bytes there; only a
//! difference is an error. Mail arriving during a long RETR costs one re-read of the message.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::fletcher::Fletcher;
use super::{Fingerprint, MaildropError, ReadAt, READ_BUFFER};

/// The digest of a message's raw content, taken while its record is re-scanned: a Fletcher
/// sum, since every RETR and TOP pays for it (md-5 doubled a large RETR's time on loopback)
/// and it only has to notice another program's rewrite, not bytes crafted against it.
#[derive(Default)]
pub(super) struct ContentDigest(Fletcher);

impl ContentDigest {
    /// A reader over a record that digests the `len` octets after its first `skip` (the
    /// content) as they pass.
    pub(super) fn tee<'d, R: Read>(&'d mut self, inner: R, skip: u64, len: u64) -> Tee<'d, R> {
        Tee {
            inner,
            at: 0,
            start: skip,
            end: skip.saturating_add(len),
            digest: &mut self.0,
        }
    }

    pub(super) fn finish(self) -> [u8; 16] {
        self.0.finish()
    }
}

/// See `ContentDigest::tee`.
pub(super) struct Tee<'d, R> {
    inner: R,
    /// Offset in the record of the next octet read.
    at: u64,
    start: u64,
    end: u64,
    digest: &'d mut Fletcher,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let from = self.at;
        let to = from + n as u64;
        self.at = to;
        let (lo, hi) = (from.max(self.start), to.min(self.end));
        if lo < hi {
            self.digest
                .update(&buf[(lo - from) as usize..(hi - from) as usize]);
        }
        Ok(n)
    }
}

/// A message's bytes, each block handed out only if the file was not written to since the
/// fingerprint was taken, or the message is still the one checked.
pub(super) struct CheckedRead<'a> {
    inner: ReadAt<'a>,
    file: &'a File,
    /// Where the content starts in the file, and its length.
    start: u64,
    len: u64,
    /// The file as it was when its content was last known to be the checked one.
    fingerprint: Fingerprint,
    /// Digest of the content as checked.
    content: [u8; 16],
}

impl<'a> CheckedRead<'a> {
    /// `inner` reads the content; `fingerprint` must be taken before the record was checked
    /// (every write after it changes it), `content` the digest made by that check.
    pub(super) fn new(
        inner: ReadAt<'a>,
        file: &'a File,
        fingerprint: Fingerprint,
        content: [u8; 16],
    ) -> Self {
        CheckedRead {
            start: inner.pos,
            len: inner.end - inner.pos,
            inner,
            file,
            fingerprint,
            content,
        }
    }

    /// After the fingerprint changed: whether the file still holds the content checked and,
    /// at `at`, the `block` just read. Adopts the new fingerprint if so; it is taken before
    /// the re-read, so a write during it shows at the next block.
    fn still_the_same(&mut self, block: &[u8], at: u64) -> io::Result<bool> {
        let now = Fingerprint::of(self.file)?;
        let mut digest = Fletcher::default();
        let mut reader = ReadAt::new(self.file, self.start, self.len).exact();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => digest.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Shorter than the message: cut.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if digest.finish() != self.content {
            return Ok(false);
        }
        // The block may have been read before the content was put back as it was.
        let mut again = vec![0u8; block.len()];
        match self.file.read_exact_at(&mut again, at) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        if again != block {
            return Ok(false);
        }
        self.fingerprint = now;
        Ok(true)
    }
}

impl Read for CheckedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.inner.pos;
        let n = self.inner.read(buf)?;
        // Checked after the read: these octets are the checked ones if nothing wrote to the
        // file meanwhile (one fstat per block), or if the message is still the one checked.
        if n > 0
            && Fingerprint::of(self.file)? != self.fingerprint
            && !self.still_the_same(&buf[..n], at)?
        {
            return Err(io::Error::other(MaildropError::Changed));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{BufRead, Write};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use super::super::Maildrop;
    use super::*;
    use crate::testing::TempDir;

    /// One message with a body of many lines, so it streams in several blocks.
    fn big_mbox(dir: &TempDir) -> (std::path::PathBuf, Vec<u8>) {
        let mut data = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: big\n\n".to_vec();
        for i in 0..20_000 {
            data.extend_from_slice(format!("line {i:06} of the body\n").as_bytes());
        }
        let path = dir.path().join("mbox");
        fs::write(&path, &data).expect("write mbox");
        (path, data)
    }

    fn open(path: &Path) -> Maildrop {
        super::super::tests::open(path).expect("open")
    }

    /// Reads the first block of message 1, lets `meddle` change the file, reads the rest.
    fn stream_while(path: &Path, meddle: impl FnOnce(&Path)) -> io::Result<Vec<u8>> {
        let mut md = open(path);
        let mut reader = md.message_reader(0).expect("reader");
        let mut out = reader.fill_buf()?.to_vec();
        reader.consume(out.len());
        // The next write must show in the file's times, which some file systems keep
        // in clock ticks.
        std::thread::sleep(Duration::from_millis(20));
        meddle(path);
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    fn changed(result: io::Result<Vec<u8>>) -> bool {
        match result {
            Err(e) => matches!(
                e.get_ref().and_then(|e| e.downcast_ref::<MaildropError>()),
                Some(MaildropError::Changed)
            ),
            Ok(_) => false,
        }
    }

    #[test]
    fn a_same_length_rewrite_while_streaming_is_an_error() {
        let dir = TempDir::new("checked-rewrite");
        let (path, data) = big_mbox(&dir);
        let result = stream_while(&path, |path| {
            // Far past the first block: the bytes that have not been read yet.
            let at = data.len() as u64 - 100;
            let file = fs::OpenOptions::new().write(true).open(path).expect("open");
            file.write_all_at(b"LINE", at).expect("rewrite");
        });
        assert!(changed(result), "a rewritten message streamed as complete");
    }

    #[test]
    fn a_cut_then_an_append_while_streaming_is_an_error() {
        let dir = TempDir::new("checked-cut-append");
        let (path, data) = big_mbox(&dir);
        let result = stream_while(&path, |path| {
            let file = fs::OpenOptions::new().write(true).open(path).expect("open");
            file.set_len(data.len() as u64 / 2).expect("cut");
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open");
            let tail = vec![b'x'; data.len() - data.len() / 2 + 100];
            file.write_all(&tail).expect("append");
        });
        assert!(changed(result), "a rewritten message streamed as complete");
    }

    #[test]
    fn an_untouched_file_streams_whole() {
        let dir = TempDir::new("checked-untouched");
        let (path, data) = big_mbox(&dir);
        let body = stream_while(&path, |_| {}).expect("nothing changed");
        let from_line = data.iter().position(|&b| b == b'\n').expect("a From line");
        assert_eq!(body, &data[from_line + 1..]);
    }

    #[test]
    fn mail_appended_while_streaming_does_not_disturb_it() {
        let dir = TempDir::new("checked-append");
        let (path, data) = big_mbox(&dir);
        let result = stream_while(&path, |path| {
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open");
            file.write_all(b"\nFrom b@x Mon Jan  1 00:00:01 2024\nSubject: new\n\nhi\n")
                .expect("append");
        });
        let body = result.expect("an append is no rewrite");
        let from_line = data.iter().position(|&b| b == b'\n').expect("a From line");
        assert_eq!(body, &data[from_line + 1..]);
    }
}
