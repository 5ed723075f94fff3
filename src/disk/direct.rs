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
//!
//! A direct write returns only when the disk has the block, so the blocks
//! go out from threads of their own while the caller fills the next one:
//! reading the source overlaps writing, and the disk gets more than one
//! request at a time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::Receiver;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::pool::{stopped, Pool};

/// Alignment of buffer, offset and length that `O_DIRECT` asks for: a
/// multiple of every logical block size in use (512 or 4096 bytes).
const ALIGN: usize = 4096;
/// Bytes per direct write.
const BLOCK: usize = 1 << 20;
/// Threads writing blocks: the disk's queue depth. Two measured faster than
/// one on the benchmark machine's virtual disk (docs/benchmarks.md).
const WRITERS: usize = 2;
/// Blocks in memory: one being filled, the others queued or being written.
const BUFFERS: usize = WRITERS + 1;

/// A `BLOCK` of memory aligned for `O_DIRECT`.
struct Block {
    /// Over-allocated so that an aligned `BLOCK` fits inside.
    storage: Vec<u8>,
    /// Where the aligned block starts in `storage`.
    start: usize,
    /// Bytes filled.
    len: usize,
}

impl Block {
    fn new() -> Block {
        let storage = vec![0u8; BLOCK + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Block {
            storage,
            start,
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// A block to write at a file offset.
type Job = (Block, u64);

/// The threads that write blocks, and the blocks on their way.
struct Writers {
    pool: Pool<Job, io::Result<Block>>,
    /// Blocks handed out, oldest first.
    out: VecDeque<Receiver<io::Result<Block>>>,
}

impl Writers {
    fn spawn(file: &File) -> io::Result<Writers> {
        // A duplicate descriptor shares the open file (and its O_DIRECT
        // flag); positioned writes keep the threads out of each other's way.
        let file = file.try_clone()?;
        let pool = Pool::new(WRITERS, move |(block, at): Job| {
            write_block(&file, block.bytes(), at).map(|()| block)
        });
        Ok(Writers {
            pool,
            out: VecDeque::with_capacity(BUFFERS),
        })
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        self.out.push_back(self.pool.submit(job)?);
        Ok(())
    }

    /// Wait for the oldest block to come back written.
    fn take_back(&mut self) -> io::Result<Block> {
        let rx = self.out.pop_front().expect("a block is out");
        rx.recv().map_err(|_| stopped())?
    }

    /// Wait for every block; the first error wins.
    fn wait_all(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        while !self.out.is_empty() {
            if let Err(e) = self.take_back() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Write all of `bytes` at `at`; a file that refuses `O_DIRECT` (which
/// some filesystems only say at the first write) is switched to the usual
/// mode and written that way.
fn write_block(file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    match file.write_all_at(bytes, at) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            set_direct(file, false)?;
            file.write_all_at(bytes, at)
        }
        r => r,
    }
}

/// Appends to a new file, `O_DIRECT` where the filesystem allows it.
///
/// Bytes reach the file in whole blocks as they come and all of them in
/// [`DirectWriter::finish`], which leaves the file positioned after them;
/// dropping the writer unfinished loses what was not yet written, as for a
/// file being thrown away.
pub(crate) struct DirectWriter<'a> {
    file: &'a mut File,
    /// `None` when the file could not be put in `O_DIRECT` mode: then
    /// every write goes straight to the file.
    writers: Option<Writers>,
    /// The block being filled.
    block: Block,
    /// File offset where `block` starts.
    at: u64,
}

impl<'a> DirectWriter<'a> {
    /// Append to `file` from its current position.
    pub fn new(file: &'a mut File) -> DirectWriter<'a> {
        let at = file.stream_position().ok();
        let writers = match at {
            Some(p) if p % ALIGN as u64 == 0 && set_direct(file, true).is_ok() => {
                match Writers::spawn(file) {
                    Ok(w) => Some(w),
                    Err(_) => {
                        let _ = set_direct(file, false);
                        None
                    }
                }
            }
            _ => None,
        };
        DirectWriter {
            file,
            writers,
            block: Block::new(),
            at: at.unwrap_or(0),
        }
    }

    /// Whether whole blocks go past the page cache (`O_DIRECT`), or the
    /// filesystem refused it (or the file position is not aligned) and
    /// every write is a plain one.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.writers.is_some()
    }

    /// Write every byte given, leave the file in its usual mode and
    /// positioned after the bytes.
    ///
    /// # Errors
    /// I/O errors of the file.
    pub fn finish(mut self) -> io::Result<()> {
        match self.writers.take() {
            None => {
                self.file.write_all(self.block.bytes())?;
            }
            Some(mut w) => {
                let waited = w.wait_all();
                drop(w);
                set_direct(self.file, false)?;
                waited?;
                self.file.write_all_at(self.block.bytes(), self.at)?;
                self.file
                    .seek(SeekFrom::Start(self.at + self.block.len as u64))?;
            }
        }
        self.block.len = 0;
        Ok(())
    }

    /// Send the full block to be written and start filling another.
    fn send_block(&mut self) -> io::Result<()> {
        let Some(w) = self.writers.as_mut() else {
            self.file.write_all(self.block.bytes())?;
            self.block.len = 0;
            return Ok(());
        };
        let next = if w.out.len() + 1 < BUFFERS {
            Block::new()
        } else {
            w.take_back()?
        };
        let full = std::mem::replace(&mut self.block, next);
        self.block.len = 0;
        let len = full.len as u64;
        w.send((full, self.at))?;
        self.at += len;
        Ok(())
    }
}

impl Write for DirectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let b = &mut self.block;
        let take = (BLOCK - b.len).min(buf.len());
        b.storage[b.start + b.len..b.start + b.len + take].copy_from_slice(&buf[..take]);
        b.len += take;
        if b.len == BLOCK {
            self.send_block()?;
        }
        Ok(take)
    }

    /// Nothing to do: blocks go out as they fill, and an unaligned tail
    /// waits for [`DirectWriter::finish`], or the next write could not be
    /// direct.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectWriter<'_> {
    fn drop(&mut self) {
        if let Some(mut w) = self.writers.take() {
            let _ = w.wait_all();
            drop(w);
            let _ = set_direct(self.file, false);
        }
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
    /// read back byte for byte, on both paths: from an aligned position
    /// (`O_DIRECT` wherever this filesystem takes it, which is probed) and
    /// from an unaligned one (always plain writes).
    #[test]
    fn writes_every_byte_in_order_on_both_paths() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let probe = File::create(dir.path().join("probe")).unwrap();
        let direct_here = set_direct(&probe, true).is_ok();
        for (lead, direct) in [(0, direct_here), (1, false)] {
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
                let path = dir.path().join(format!("f{lead}-{size}"));
                let mut f = File::create(&path).unwrap();
                f.write_all(&vec![9u8; lead]).unwrap();
                let data = pattern(size);
                let mut w = DirectWriter::new(&mut f);
                assert_eq!(w.is_direct(), direct, "lead {lead}, size {size}");
                for piece in data.chunks(100_003) {
                    w.write_all(piece).unwrap();
                }
                w.flush().unwrap();
                w.finish().unwrap();
                drop(f);
                let mut back = Vec::new();
                File::open(&path).unwrap().read_to_end(&mut back).unwrap();
                assert_eq!(back.len(), lead + size, "size {size}");
                assert!(back[lead..] == data, "content of size {size}");
            }
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
