//! Reading a repository's data file, plain or gzip'd, as the Data.fs bytes
//! it holds.
//!
//! gzip'd files are read as multi-member streams, as Python's gzip module
//! reads them, on all cores where the file allows ([`crate::codec::gzip`]). Errors
//! name the file and, for damaged gzip data, how many uncompressed bytes
//! came out before the damage.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::codec::gzip::ParallelGunzip;
use crate::codec::md5::Md5;
use crate::error::{io_err, Error, Result};
use crate::pool::WorkerStopped;

use crate::CHUNK;

/// An open backup data file.
pub(crate) struct DataReader {
    inner: Inner,
    shown: String,
    chunk: usize,
    offset: u64,
}

enum Inner {
    Plain(File),
    Gzip(Box<ParallelGunzip>),
}

impl DataReader {
    /// Open `path` (shown as `shown`), decompressing if `gzip`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, shown: &str, gzip: bool) -> Result<DataReader> {
        let file = crate::disk::open::open_regular(path, shown)?;
        // A small plain file gets a small buffer: a chain of thousands of
        // one-transaction increments must not zero a megabyte per file.
        let chunk = match file.metadata() {
            Ok(m) if !gzip => usize::try_from(m.len()).map_or(CHUNK, |n| n.clamp(1, CHUNK)),
            _ => CHUNK,
        };
        let inner = if gzip {
            Inner::Gzip(Box::new(ParallelGunzip::new(file)))
        } else {
            Inner::Plain(file)
        };
        Ok(DataReader {
            inner,
            shown: shown.to_string(),
            offset: 0,
            chunk,
        })
    }

    /// A good buffer size for [`DataReader::read_chunk`]: [`CHUNK`], or
    /// less for a plain file smaller than that.
    pub(crate) fn chunk_len(&self) -> usize {
        self.chunk
    }

    /// Fill `buf` as far as the file allows; 0 means the end.
    ///
    /// # Errors
    /// [`Error::Gzip`] for damaged compressed data, [`Error::Io`] for errors
    /// of the system (a failing disk is not corrupt data).
    pub(crate) fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let r = match &mut self.inner {
                Inner::Plain(f) => f.read(&mut buf[got..]),
                Inner::Gzip(g) => g.read(&mut buf[got..]),
            };
            match r {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let offset = self.offset + got as u64;
                    // An error of the system (EIO from a failing disk,
                    // EACCES) is the disk's, not damage in the gzip data.
                    let from_system = e.raw_os_error().is_some()
                        || e.kind() == io::ErrorKind::PermissionDenied
                        || e.get_ref().is_some_and(|i| i.is::<WorkerStopped>());
                    return Err(match self.inner {
                        Inner::Gzip(_) if !from_system => Error::Gzip {
                            path: self.shown.clone(),
                            offset,
                            source: e,
                        },
                        _ => io_err(&self.shown, "read")(e),
                    });
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    /// Read to the end, passing each chunk to `f`; returns the size.
    ///
    /// # Errors
    /// As [`DataReader::read_chunk`], and errors of `f`.
    pub(crate) fn for_each_chunk(&mut self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        let mut buf = vec![0u8; self.chunk];
        loop {
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Ok(self.offset);
            }
            f(&buf[..n])?;
        }
    }

    /// Size and md5 of the uncompressed contents.
    ///
    /// # Errors
    /// As [`DataReader::read_chunk`].
    pub(crate) fn size_and_md5(mut self) -> Result<(u64, String)> {
        let mut h = Md5::new();
        let size = self.for_each_chunk(|b| {
            h.update(b);
            Ok(())
        })?;
        Ok((size, h.finish()?))
    }
}
