//! Writing a large new file past the page cache.
//!
//! A backup or a recovered Data.fs is gigabytes that nobody reads soon
//! after. Written the usual way, every byte is first copied into freshly
//! allocated page-cache pages, which on the virtual machines our users run
//! on costs more than the disk itself (measured in docs/benchmarks.md: 2 GiB
//! took 3 to 6 s of kernel time buffered, 1.5 s with `O_DIRECT`), and
//! evicts the database's own hot pages on the way. [`DirectWriter`] sends
//! whole aligned blocks with `O_DIRECT` and the unaligned tail through the
//! page cache; where the filesystem refuses `O_DIRECT` it quietly writes
//! the usual way. The caller's fsync still makes the file durable.

use std::fs::File;
use std::io::{self, Seek, Write};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Alignment of buffer, offset and length that `O_DIRECT` asks for: a
/// multiple of every logical block size in use (512 or 4096 bytes).
const ALIGN: usize = 4096;
/// Bytes per direct write.
const BLOCK: usize = 1 << 20;

/// Appends to a new file, `O_DIRECT` where the filesystem allows it.
///
/// Bytes reach the file in whole blocks as they come and all of them in
/// [`DirectWriter::finish`]; dropping the writer unfinished loses the
/// buffered tail, as for a file being thrown away.
pub struct DirectWriter<'a> {
    file: &'a mut File,
    /// Over-allocated so that an aligned `BLOCK` fits inside.
    storage: Vec<u8>,
    /// Where the aligned block starts in `storage`.
    start: usize,
    /// Bytes waiting in the block.
    len: usize,
    /// Whether the file is in `O_DIRECT` mode.
    direct: bool,
}

impl<'a> DirectWriter<'a> {
    /// Append to `file` from its current position.
    pub fn new(file: &'a mut File) -> DirectWriter<'a> {
        let storage = vec![0u8; BLOCK + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        let aligned_pos = file.stream_position().is_ok_and(|p| p % ALIGN as u64 == 0);
        let direct = aligned_pos && set_direct(file, true).is_ok();
        DirectWriter {
            file,
            storage,
            start,
            len: 0,
            direct,
        }
    }

    /// Whether writes currently bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Write every byte given and leave the file in its usual mode.
    ///
    /// # Errors
    /// I/O errors of the file.
    pub fn finish(mut self) -> io::Result<()> {
        let whole = self.len / ALIGN * ALIGN;
        self.write_out(whole)?;
        if self.direct {
            self.direct = false;
            set_direct(self.file, false)?;
        }
        self.write_out(self.len)
    }

    /// Write the first `n` waiting bytes (a multiple of `ALIGN` while
    /// direct) and move the rest to the front.
    fn write_out(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let block = &self.storage[self.start..self.start + n];
        let mut done = 0;
        while done < n {
            match self.file.write(&block[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The filesystem (or a short write that left the position
                // unaligned) refuses O_DIRECT: nothing was written by this
                // call, so go on the usual way from here.
                Err(e)
                    if self.direct
                        && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                {
                    self.direct = false;
                    set_direct(self.file, false)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.storage
            .copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
        Ok(())
    }
}

impl Write for DirectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = (BLOCK - self.len).min(buf.len());
        self.storage[self.start + self.len..self.start + self.len + take]
            .copy_from_slice(&buf[..take]);
        self.len += take;
        if self.len == BLOCK {
            self.write_out(BLOCK)?;
        }
        Ok(take)
    }

    /// Writes the whole blocks waiting; an unaligned tail waits for
    /// [`DirectWriter::finish`], or the next write could not be direct.
    fn flush(&mut self) -> io::Result<()> {
        let whole = if self.direct {
            self.len / ALIGN * ALIGN
        } else {
            self.len
        };
        self.write_out(whole)
    }
}

impl Drop for DirectWriter<'_> {
    fn drop(&mut self) {
        if self.direct {
            let _ = set_direct(self.file, false);
        }
    }
}

/// Whether `file` lives on a filesystem where `copy_file_range` shares
/// extents (a reflink) instead of copying bytes: btrfs, XFS, bcachefs.
pub fn clones_extents(file: &File) -> bool {
    const BTRFS: u64 = 0x9123_683e;
    const XFS: u64 = 0x5846_5342;
    const BCACHEFS: u64 = 0xca45_1a4e;
    rustix::fs::fstatfs(file).is_ok_and(|s| {
        #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
        let kind = s.f_type as u64;
        matches!(kind, BTRFS | XFS | BCACHEFS)
    })
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    /// Sizes around the alignment and block edges, written in odd pieces,
    /// read back byte for byte.
    #[test]
    fn writes_every_byte_in_order() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        for size in [
            0,
            1,
            4095,
            4096,
            4097,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK + 12345,
        ] {
            let path = dir.path().join(format!("f{size}"));
            let mut f = File::create(&path).unwrap();
            let data = pattern(size);
            let mut w = DirectWriter::new(&mut f);
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.flush().unwrap();
            w.finish().unwrap();
            drop(f);
            let mut back = Vec::new();
            File::open(&path).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), size, "size {size}");
            assert!(back == data, "content of size {size}");
        }
    }

    /// After finish the file is back in its usual mode, so unaligned
    /// writes by others work.
    #[test]
    fn leaves_the_file_buffered() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let mut w = DirectWriter::new(&mut f);
        w.write_all(&pattern(BLOCK + 5)).unwrap();
        w.finish().unwrap();
        assert!(!fcntl_getfl(&f).unwrap().contains(OFlags::DIRECT));
        f.write_all(b"abc").unwrap();
        assert_eq!(f.metadata().unwrap().len(), BLOCK as u64 + 8);
    }
}
