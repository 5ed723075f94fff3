//! Writing a large new file past the page cache.
//!
//! A backup or a recovered Data.fs is gigabytes that nobody reads soon
//! after. Written the usual way, the whole file sits dirty in the page
//! cache until the final fsync writes it in one go, the disk idle until
//! then, and fresh page-cache pages cost kernel time and evict the
//! database's own hot pages. [`BehindWriter`] writes through the page
//! cache, but behind itself: as each [`WINDOW`] fills, it asks the kernel
//! to start writing it out, and a few windows later to drop it, now clean.
//! On Linux `posix_fadvise(POSIX_FADV_DONTNEED)` does both: it starts the
//! writeback of the range's dirty pages, then drops its clean ones. The
//! disk works while the file is produced, and the cache holds a few
//! windows at a time.
//!
//! This replaced `O_DIRECT` blocks: on ext4 over the AMD machine's virtual
//! disk it took about half their time, within 15% of `sync_file_range`
//! (which rustix does not offer); on btrfs over a loop device it was the
//! fastest measured, and on tmpfs as fast as plain writes
//! (docs/benchmarks.md). Where the advice is refused, the file is written
//! the usual way.

use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU64;

use rustix::fs::{fadvise, Advice};

/// Bytes gathered before a write: the caller's small writes become few
/// system calls.
pub(crate) const BLOCK: usize = 1 << 20;
/// Bytes whose writeback is started at once: large enough for the disk to
/// take big requests, small against the cache (docs/benchmarks.md).
const WINDOW: u64 = 8 << 20;
/// How many windows behind the newest one a window is dropped from the
/// cache, and again further behind for pages that were still being
/// written the first time (the kernel keeps those).
const DROP_LAGS: [u64; 2] = [2, 8];

/// Advice on a range of a file: start writing it out and drop what is
/// clean. A parameter so that the tests can refuse it.
type Advise = fn(&File, u64, u64) -> io::Result<()>;

fn drop_behind(file: &File, at: u64, len: u64) -> io::Result<()> {
    fadvise(file, at, NonZeroU64::new(len), Advice::DontNeed)?;
    Ok(())
}

/// Appends to a new file, writing behind itself and keeping the page
/// cache clean where the filesystem takes the advice.
///
/// Bytes reach the file in blocks as they come and all of them in
/// [`BehindWriter::finish`], which leaves the file positioned after them;
/// dropping the writer unfinished loses what was not yet written, as for a
/// file being thrown away.
pub(crate) struct BehindWriter<'a> {
    file: &'a mut File,
    /// Bytes not yet written.
    buf: Vec<u8>,
    /// File offset where this writer started.
    start: u64,
    /// File offset after the bytes written to the file.
    at: u64,
    /// Windows whose writeback was started.
    windows: u64,
    /// `None` once the filesystem refused the advice: plain writes since.
    advise: Option<Advise>,
}

impl<'a> BehindWriter<'a> {
    /// Append to `file` from its current position.
    pub fn new(file: &'a mut File) -> BehindWriter<'a> {
        BehindWriter::advised_by(file, drop_behind)
    }

    fn advised_by(file: &'a mut File, advise: Advise) -> BehindWriter<'a> {
        use std::io::Seek;
        // Without a position (not seekable) there is nothing to advise on.
        let at = file.stream_position().ok();
        BehindWriter {
            file,
            buf: Vec::with_capacity(BLOCK),
            start: at.unwrap_or(0),
            at: at.unwrap_or(0),
            windows: 0,
            advise: at.and(Some(advise)),
        }
    }

    /// Whether the bytes are written behind and dropped from the cache, or
    /// the filesystem refused the advice and every write is a plain one.
    #[cfg(test)]
    pub(crate) fn writes_behind(&self) -> bool {
        self.advise.is_some()
    }

    /// Write every byte given and leave the file positioned after them;
    /// a file of a window or more also on disk and out of the cache, where
    /// the advice is taken.
    ///
    /// # Errors
    /// I/O errors of the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.write_buf()?;
        // The last windows are still in the cache: write them out and wait,
        // so that they can be dropped too; the caller's fsync then finds
        // nothing left to write. A file of less than a window (a small
        // increment) is left to that fsync: a second flush would cost
        // more than the few pages it keeps in the cache.
        if self.advise.is_some() && self.at - self.start >= WINDOW {
            self.file.sync_data()?;
            self.advise(self.start, self.at - self.start);
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let n = self.buf.len();
        if n > 0 {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
            self.written(n);
        }
        Ok(())
    }

    /// After `n` more bytes reached the file: start writing out each
    /// window filled, and drop the windows behind it.
    fn written(&mut self, n: usize) {
        self.at += n as u64;
        while self.advise.is_some() && self.start + (self.windows + 1) * WINDOW <= self.at {
            let w = self.windows;
            self.advise(self.start + w * WINDOW, WINDOW);
            for lag in DROP_LAGS {
                if w >= lag {
                    self.advise(self.start + (w - lag) * WINDOW, WINDOW);
                }
            }
            self.windows += 1;
        }
    }

    /// Advice on `len` bytes at `at`; the first refusal turns it off, as
    /// the writes need none of it.
    fn advise(&mut self, at: u64, len: u64) {
        if let Some(advise) = self.advise {
            if advise(self.file, at, len).is_err() {
                self.advise = None;
            }
        }
    }
}

impl Write for BehindWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.is_empty() && buf.len() >= BLOCK {
            // Large writes go straight to the file, with no copy here.
            let n = self.file.write(buf)?;
            self.written(n);
            return Ok(n);
        }
        let take = (BLOCK - self.buf.len()).min(buf.len());
        self.buf.extend_from_slice(&buf[..take]);
        if self.buf.len() == BLOCK {
            self.write_buf()?;
        }
        Ok(take)
    }

    /// Nothing to do: blocks go out as they fill, and the rest in
    /// [`BehindWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `file` lives on a filesystem where `copy_file_range` shares
/// extents (a reflink) instead of copying bytes: btrfs, XFS, bcachefs.
pub(crate) fn clones_extents(file: &File) -> bool {
    const BTRFS: u64 = 0x9123_683e;
    const XFS: u64 = 0x5846_5342;
    const BCACHEFS: u64 = 0xca45_1a4e;
    rustix::fs::fstatfs(file).is_ok_and(|s| {
        #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
        let kind = s.f_type as u64;
        matches!(kind, BTRFS | XFS | BCACHEFS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::{Read, Seek};

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    fn refused(_: &File, _: u64, _: u64) -> io::Result<()> {
        Err(io::Error::from(rustix::io::Errno::SPIPE))
    }

    thread_local! {
        static ADVISED: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
    }

    fn recorded(file: &File, at: u64, len: u64) -> io::Result<()> {
        ADVISED.with(|a| a.borrow_mut().push((at, len)));
        drop_behind(file, at, len)
    }

    /// Sizes around the block and window edges, written in odd pieces, read
    /// back byte for byte, from an aligned and an unaligned position, with
    /// the advice taken and refused (then every write is a plain one).
    #[test]
    fn writes_every_byte_in_order_on_both_paths() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let w = WINDOW as usize;
        for (lead, advice) in [(0, true), (1, true), (0, false)] {
            for size in [0, 1, 4097, BLOCK - 1, BLOCK, BLOCK + 1, w, 3 * w + 12345] {
                let path = dir.path().join(format!("f{lead}-{advice}-{size}"));
                let mut f = File::create(&path).unwrap();
                f.write_all(&vec![9u8; lead]).unwrap();
                let data = pattern(size);
                let mut wr = if advice {
                    BehindWriter::new(&mut f)
                } else {
                    BehindWriter::advised_by(&mut f, refused)
                };
                for piece in data.chunks(100_003) {
                    wr.write_all(piece).unwrap();
                }
                // Refused at the first window filled, or taken throughout.
                let path_taken = advice || size < w;
                assert_eq!(wr.writes_behind(), path_taken, "{lead} {advice} {size}");
                wr.flush().unwrap();
                wr.finish().unwrap();
                assert_eq!(f.stream_position().unwrap(), (lead + size) as u64);
                drop(f);
                let mut back = Vec::new();
                File::open(&path).unwrap().read_to_end(&mut back).unwrap();
                assert_eq!(back.len(), lead + size, "size {size}");
                assert!(back[lead..] == data, "content of size {size}");
            }
        }
    }

    /// Each window is written out as it fills and dropped twice behind,
    /// and the whole range once it is on disk.
    #[test]
    fn every_window_is_written_behind_and_dropped() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let mut f = File::create(dir.path().join("f")).unwrap();
        f.write_all(b"FS21").unwrap();
        ADVISED.with(|a| a.borrow_mut().clear());
        let mut w = BehindWriter::advised_by(&mut f, recorded);
        let size = 10 * WINDOW + 5;
        for piece in pattern(size as usize).chunks(BLOCK + 3) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        let advised = ADVISED.with(|a| a.take());
        let at = |k: u64| (4 + k * WINDOW, WINDOW);
        let mut expected = Vec::new();
        for k in 0..10 {
            expected.push(at(k));
            expected.extend(DROP_LAGS.iter().filter(|&&l| k >= l).map(|l| at(k - l)));
        }
        expected.push((4, size));
        assert_eq!(advised, expected);
    }

    /// After finish the file is positioned after the bytes, and others can
    /// write on.
    #[test]
    fn leaves_the_file_usable() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let mut w = BehindWriter::new(&mut f);
        w.write_all(&pattern(BLOCK + 5)).unwrap();
        w.finish().unwrap();
        f.write_all(b"abc").unwrap();
        assert_eq!(f.metadata().unwrap().len(), BLOCK as u64 + 8);
    }

    /// A file that cannot be written fails the write that reaches it: a
    /// whole block at once, a smaller tail in finish.
    #[test]
    fn write_errors_are_returned() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap();
        let mut ro = File::open(&path).unwrap();
        let mut w = BehindWriter::new(&mut ro);
        assert!(w.write_all(&pattern(BLOCK)).is_err());
        let mut w = BehindWriter::new(&mut ro);
        w.write_all(b"tail").unwrap();
        assert!(w.finish().is_err());
    }
}
