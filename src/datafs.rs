//! The Data.fs being backed up, read through one open handle.
//!
//! A pack renames a new file over Data.fs; holding one descriptor for the
//! whole backup means every byte we hash, compare and copy comes from the
//! same file, and reading only up to the size seen at open means a commit
//! landing meanwhile is simply not part of this backup.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::codec::md5::Md5;
use crate::error::{io_err, Error, Result};
use crate::filestorage::blob;
use crate::filestorage::index::Index;
use crate::filestorage::records::{
    buf, BlobRecord, DataHeader, FormatError, Magic, WalkResult, Walker, DATA_HDR_LEN, MAGIC_LEN,
    TRAILER_LEN,
};
use crate::filestorage::sanity;

use crate::{at_most, read_full, CHUNK};

/// A saved index to start a walk from: the oid -> offset map of the file up
/// to `pos`, the end of a complete transaction.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The position the index describes the file up to.
    pub pos: u64,
    /// The oid -> offset map.
    pub index: Index,
}

/// An open Data.fs.
pub struct Source {
    file: File,
    path: PathBuf,
    shown: String,
    size: u64,
    permissions: Permissions,
    /// (device, inode) of the file opened, to notice a rename over it.
    identity: (u64, u64),
}

impl Source {
    /// Read the file as if it ended at `len` (if shorter than it is): for
    /// the part of a file being cut back that stays.
    pub(crate) fn limit(mut self, len: u64) -> Source {
        self.size = self.size.min(len);
        self
    }

    /// Open `path` for reading and note its size.
    ///
    /// # Errors
    /// The file cannot be opened or is not a regular file.
    pub fn open(path: impl AsRef<Path>) -> Result<Source> {
        let path = path.as_ref();
        // Paths are bytes on Unix: messages show them lossily, the file is
        // opened by its real name.
        let shown = path.to_string_lossy().into_owned();
        let file = crate::disk::open::open_regular_to(path, &shown, "cannot back up")?;
        let meta = file.metadata().map_err(io_err(&shown, "cannot stat"))?;
        Ok(Source {
            file,
            path: path.to_path_buf(),
            shown,
            size: meta.len(),
            permissions: meta.permissions(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Fail if the path no longer names the file opened: a pack writes a new
    /// Data.fs and renames it over the old one.
    ///
    /// # Errors
    /// [`Error::SourceReplaced`]; I/O errors other than the file being gone.
    pub fn check_not_replaced(&self) -> Result<()> {
        let same = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) == self.identity,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&self.shown, "cannot stat")(e)),
        };
        if same {
            Ok(())
        } else {
            Err(Error::SourceReplaced {
                path: self.shown.clone(),
            })
        }
    }

    /// Size when opened: nothing past it is read.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The path as given.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The source's read and write bits, for the backup files: never its
    /// setuid, setgid or sticky bits, nor write for others, which a backup
    /// of a carelessly shared Data.fs must not hand on.
    pub(crate) fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.permissions.mode() & 0o664)
    }

    /// Call `f` with the bytes of `[start, end)` in order, in chunks, until
    /// it returns `false`.
    ///
    /// # Errors
    /// I/O errors, or the file ending early, as [`Error::Io`]; errors of `f`.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut pos = start;
        while pos < end {
            let want = at_most(end - pos, CHUNK);
            let n = self.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                return Err(Error::Shrank {
                    path: self.shown.clone(),
                    at: pos,
                    expected: end,
                });
            }
            if !f(pos, &buf[..n])? {
                break;
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Fill `buf` from `pos` as far as the file goes; the bytes read.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        read_full(buf, |b, done| self.file.read_at(b, pos + done as u64))
            .map_err(io_err(&self.shown, "read"))
    }

    /// md5 of `[start, end)`.
    ///
    /// # Errors
    /// As [`Source::read_range`].
    pub(crate) fn md5(&self, start: u64, end: u64) -> Result<String> {
        let mut h = Md5::new();
        self.read_range(start, end, |_, b| {
            h.update(b);
            Ok(true)
        })?;
        h.finish()
    }

    /// Fill `buf` from `pos`.
    ///
    /// # Errors
    /// I/O errors, or the file ending before `buf` is full.
    pub(crate) fn read_into(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read_at(buf, pos)?;
        if n < buf.len() {
            return Err(Error::Shrank {
                path: self.shown.clone(),
                at: pos + n as u64,
                expected: pos + buf.len() as u64,
            });
        }
        Ok(())
    }

    /// Exactly `buf.len()` bytes at `pos`, or `None` past the end.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> Result<Option<()>> {
        Ok((self.read_at(buf, pos)? == buf.len()).then_some(()))
    }

    /// The file's magic.
    ///
    /// # Errors
    /// [`Error::Format`] when it is not a FileStorage's.
    pub(crate) fn magic(&self) -> Result<Magic> {
        let mut b = [0u8; buf::MAGIC];
        let found = self.read_exact_at(&mut b, 0)?;
        found
            .and_then(|()| Magic::from_bytes(&b))
            .ok_or_else(|| Error::Format {
                path: self.shown.clone(),
                source: crate::filestorage::records::FormatError::NotFileStorage {
                    found: if found.is_some() {
                        b.to_vec()
                    } else {
                        Vec::new()
                    },
                },
            })
    }

    /// Whether `index` can be trusted to describe this file up to `pos`:
    /// FileStorage's `_check_sanity`, which follows the trailers back from
    /// `pos` to the last transaction that is neither undone nor empty and
    /// checks that the index points at its first data records. We also
    /// require every offset in the index to lie before `pos`.
    ///
    /// # Errors
    /// I/O errors reading.
    pub fn index_is_sane(&self, index: &Index, pos: u64) -> Result<bool> {
        if index.iter().any(|(_, off)| off >= pos) {
            return Ok(false);
        }
        Ok(self
            .sanity_records(pos)?
            .is_some_and(|records| sanity::points_at(index, &records)))
    }

    /// The `(oid, offset)` of the data records that
    /// [`Source::index_is_sane`] looks up in an index, or `None` when the
    /// file before `pos` does not end in a transaction, so that no index
    /// can be sane for it.
    ///
    /// # Errors
    /// I/O errors reading.
    pub(crate) fn sanity_records(&self, pos: u64) -> Result<Option<Vec<(u64, u64)>>> {
        if pos > self.size {
            return Ok(None);
        }
        sanity::records_to_check(pos, |buf, at| Ok(self.read_exact_at(buf, at)?.is_some()))
    }

    /// Whether the record `rec` points back to (an undo's) is a blob's:
    /// back pointers are followed to the data they stand for.
    ///
    /// # Errors
    /// [`Error::Format`] for a back pointer that leads nowhere sensible
    /// (past the record, to another object, round in a loop); I/O errors.
    pub(crate) fn is_blob_behind(&self, rec: &BlobRecord) -> Result<bool> {
        let Some(mut at) = rec.back_pointer else {
            return Ok(true);
        };
        let mut from = rec.pos;
        loop {
            // Back pointers lead to older records: always backwards, so
            // a loop cannot go on for ever.
            let bad = || Error::Format {
                path: self.shown.clone(),
                source: FormatError::BadBackPointer {
                    offset: from,
                    target: at,
                },
            };
            if at >= from || at < MAGIC_LEN {
                return Err(bad());
            }
            let mut hdr = [0u8; buf::DATA_HDR];
            self.read_exact_at(&mut hdr, at)?.ok_or_else(bad)?;
            let h = DataHeader::parse(&hdr);
            if h.oid != rec.oid {
                return Err(bad());
            }
            if h.plen == 0 {
                let mut next = [0u8; buf::BACK_POINTER];
                self.read_exact_at(&mut next, at + DATA_HDR_LEN)?
                    .ok_or_else(bad)?;
                match u64::from_be_bytes(next) {
                    0 => return Ok(false),
                    n => (from, at) = (at, n),
                }
                continue;
            }
            let mut head = vec![0u8; at_most(h.plen, blob::HEAD)];
            self.read_exact_at(&mut head, at + DATA_HDR_LEN)?
                .ok_or_else(bad)?;
            return Ok(blob::is_blob(&head));
        }
    }

    /// The last 8 bytes as a number, which the walker needs to tell a torn
    /// tail from damage.
    fn last_trailer(&self) -> Result<Option<u64>> {
        if self.size < TRAILER_LEN {
            return Ok(None);
        }
        let mut b = [0u8; buf::TRAILER];
        Ok(self
            .read_exact_at(&mut b, self.size - TRAILER_LEN)?
            .map(|()| u64::from_be_bytes(b)))
    }

    /// Walk the file once; the bytes from `copy_from` to the end of the last
    /// complete transaction go to `out` as they are read.
    ///
    /// With `resume`, a saved index known to describe the file up to its
    /// position (see [`Source::index_is_sane`]), the walk starts there: only
    /// the bytes after it are parsed, and only those after
    /// `min(copy_from, resume.pos)` are read at all.
    ///
    /// Bytes reach `out` only once they are known to belong to complete
    /// transactions, so a torn tail is never written.
    ///
    /// # Errors
    /// [`Error::Format`] for damage, I/O errors reading, errors of `out`
    /// (reported against its name).
    pub fn walk(
        &self,
        copy_from: u64,
        resume: Option<Resume>,
        out: Option<(&mut dyn Write, &str)>,
    ) -> Result<WalkResult> {
        self.walk_with(copy_from, resume, out, false)
    }

    /// [`Source::walk`], noting the blob records of the bytes walked when
    /// `blobs` is set (see [`WalkResult::blobs`]): all of them from the
    /// start, or those after `resume`'s position.
    ///
    /// # Errors
    /// As [`Source::walk`].
    pub fn walk_with(
        &self,
        copy_from: u64,
        resume: Option<Resume>,
        mut out: Option<(&mut dyn Write, &str)>,
        blobs: bool,
    ) -> Result<WalkResult> {
        let fmt_err = |source| Error::Format {
            path: self.shown.clone(),
            source,
        };
        let last_trailer = self.last_trailer()?;
        let (mut walker, walk_from) = match resume {
            Some(r) => {
                let magic = self.magic()?;
                let w = Walker::resume(self.size, last_trailer, magic, r.pos, r.index);
                (w, r.pos)
            }
            None => (Walker::new(self.size, last_trailer), 0),
        };
        if blobs {
            walker.find_blobs();
        }
        let read_from = copy_from.min(walk_from);
        // Bytes read but not yet known to be in the backup: at most the
        // start of one transaction header.
        let mut pending: Vec<u8> = Vec::new();
        let mut emitted = read_from;
        let mut emit = |at: u64, bytes: &[u8]| -> Result<()> {
            let end = at + bytes.len() as u64;
            if let Some((w, shown)) = out.as_mut() {
                if end > copy_from {
                    let skip = at_most(copy_from.saturating_sub(at), bytes.len());
                    w.write_all(&bytes[skip..])
                        .map_err(io_err(shown, "write"))?;
                }
            }
            Ok(())
        };
        self.read_range(read_from, self.size, |at, chunk| {
            let chunk_end = at + chunk.len() as u64;
            // Bytes before the walk's start are known good: they are only
            // copied. The walker's `committed` is never below its start.
            if chunk_end > walk_from {
                let skip = at_most(walk_from.saturating_sub(at), chunk.len());
                walker.feed(&chunk[skip..]).map_err(fmt_err)?;
            }
            let committed = walker.committed().min(chunk_end);
            // [emitted, at) is in `pending`, [at, chunk_end) in `chunk`.
            let pending_start = at - pending.len() as u64;
            debug_assert_eq!(pending_start, emitted);
            if committed > emitted {
                let from_pending = at_most(committed - emitted, pending.len());
                emit(emitted, &pending[..from_pending])?;
                pending.drain(..from_pending);
                if committed > at {
                    emit(at, &chunk[..at_most(committed - at, chunk.len())])?;
                }
                emitted = committed;
            }
            let keep_from = at_most(emitted.max(at) - at, chunk.len());
            pending.extend_from_slice(&chunk[keep_from..]);
            // Once the end is known, read on only to copy up to it.
            Ok(!(walker.is_done() && emitted >= walker.committed()))
        })?;
        let result = walker.finish().map_err(fmt_err)?;
        if emitted != result.end {
            return Err(Error::Shrank {
                path: self.shown.clone(),
                at: emitted,
                expected: result.end,
            });
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Builder;

    /// Regression: with a saved index covering the whole file the walker
    /// was done before reading, and the copy stopped after one chunk.
    #[test]
    fn regression_a_resumed_walk_copies_every_byte_of_a_large_file() {
        let mut b = Builder::new();
        while b.bytes.len() < 3 * CHUNK + 12_345 {
            b.txn(b' ', &[(1, 5000), (2, 0), (3, 20_000)]);
        }
        let mid = b.bytes.len() as u64;
        b.txn(b' ', &[(4, 10)]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        std::fs::write(&path, &b.bytes).unwrap();
        let src = Source::open(path.to_str().unwrap()).unwrap();
        let full = src.walk(0, None, None).unwrap();
        let at_mid = {
            std::fs::write(&path, &b.bytes[..mid as usize]).unwrap();
            let s = Source::open(path.to_str().unwrap()).unwrap();
            std::fs::write(&path, &b.bytes).unwrap();
            s.walk(0, None, None).unwrap().index
        };
        let src = Source::open(path.to_str().unwrap()).unwrap();
        for (pos, index, copy_from) in [
            (full.end, full.index.clone(), 0),
            (full.end, full.index.clone(), CHUNK as u64 + 7),
            (mid, at_mid.clone(), 0),
            (mid, at_mid, mid - 1),
        ] {
            let mut out = Vec::new();
            let r = src
                .walk(
                    copy_from,
                    Some(Resume { pos, index }),
                    Some((&mut out, "out")),
                )
                .unwrap();
            assert_eq!(r.end, full.end);
            assert_eq!(r.index, full.index);
            assert!(
                out == b.bytes[copy_from as usize..],
                "resume at {pos}, copy from {copy_from}"
            );
        }
    }
}
