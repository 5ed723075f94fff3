//! Files that appear under their final name only when complete.
//!
//! An [`AtomicFile`] is written under a unique temporary name in the target's
//! own directory (so two runs never share one, unlike repozo's `tmp.tmp`),
//! and [`AtomicFile::commit`] fsyncs it, gives it its permission bits,
//! renames it into place and fsyncs the directory. Dropping it uncommitted
//! removes the temporary file.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::codec::gzip::{ParallelGzip, GZIP_LEVEL};
use crate::codec::md5::Md5Thread;
use crate::disk::behind::{BehindWriter, BLOCK};
use crate::disk::open::parent_dir;
use crate::error::{io_err, Error, Result};

/// Prefix of our temporary files, so that a later run can recognise them.
pub(crate) const TEMP_PREFIX: &str = ".repozo-";
/// Suffix of our temporary files.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Random characters in a temporary file's name.
const TEMP_RANDOM: usize = 6;

/// The start of the temporary names for `dest`: ours, and tied to the
/// file they become (unless its name is too long to repeat), so that a run
/// holding that file's lock knows a leftover of a killed run for one.
fn temp_prefix(dest: &Path) -> String {
    match dest.file_name().and_then(|n| n.to_str()) {
        Some(name) if name.len() <= 100 => format!("{TEMP_PREFIX}{name}."),
        _ => TEMP_PREFIX.to_string(),
    }
}

/// Remove what killed runs left of [`AtomicFile`]s for `dest`; the caller
/// holds a lock that no live run writing `dest` can share. Returns how
/// many went; what cannot be removed stays, unsaid.
pub(crate) fn remove_temporaries_of(dest: &Path) -> usize {
    let prefix = temp_prefix(dest);
    if prefix == TEMP_PREFIX {
        return 0;
    }
    let Ok(entries) = fs::read_dir(parent_dir(dest)) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
            .is_some_and(|r| {
                r.len() == TEMP_RANDOM && r.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if ours && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A file being written under a temporary name.
pub(crate) struct AtomicFile {
    tmp: NamedTempFile,
    dest: PathBuf,
    shown: String,
    permissions: Option<Permissions>,
}

impl AtomicFile {
    /// Start writing what will become `dest` (shown as `shown` in errors).
    ///
    /// # Errors
    /// The directory is missing or not writable.
    pub(crate) fn create(dest: &Path, shown: &str) -> Result<AtomicFile> {
        let dir = parent_dir(dest);
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(dest))
            .suffix(TEMP_SUFFIX)
            .rand_bytes(TEMP_RANDOM)
            .tempfile_in(dir)
            .map_err(|e| {
                io_err(shown, "cannot create a temporary file beside it")(without_path(e))
            })?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            shown: shown.to_string(),
            permissions: None,
        })
    }

    /// Give the final file these permission bits (by default the temporary
    /// file's private 0600).
    pub(crate) fn set_permissions(&mut self, p: Permissions) {
        self.permissions = Some(p);
    }

    /// The open temporary file.
    pub(crate) fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The name shown in messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// fsync, set permissions, rename into place, fsync the directory.
    /// With `replace` false an existing file is never overwritten.
    ///
    /// # Errors
    /// I/O errors, or [`Error::WouldOverwrite`].
    pub(crate) fn commit(self, replace: bool) -> Result<()> {
        let dir = File::open(parent_dir(&self.dest))
            .map_err(io_err(&self.shown, "open its directory"))?;
        self.commit_in(replace, &dir)
    }

    /// [`AtomicFile::commit`] with the target's directory already open:
    /// a caller that commits several files opens it before the first
    /// rename, so that running out of descriptors cannot stop it between
    /// two renames.
    ///
    /// # Errors
    /// As [`AtomicFile::commit`].
    pub(crate) fn commit_in(self, replace: bool, dir: &File) -> Result<()> {
        let shown = self.shown;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(io_err(&shown, "fsync"))?;
        if let Some(p) = self.permissions {
            fs::set_permissions(self.tmp.path(), p).map_err(io_err(&shown, "set permissions"))?;
        }
        let persisted = if replace {
            self.tmp.persist(&self.dest).map_err(|e| e.error)
        } else {
            self.tmp.persist_noclobber(&self.dest).map_err(|e| e.error)
        };
        match persisted {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::WouldOverwrite { path: shown })
            }
            Err(e) => return Err(io_err(&shown, "rename into place")(e)),
        }
        dir.sync_all()
            .map_err(io_err(&shown, "fsync its directory"))
    }
}

/// tempfile appends ` at path "<random temporary name>"` to its errors;
/// the user knows the file by its final name, which our message gives.
fn without_path(e: io::Error) -> io::Error {
    // Its wrapper type is private and hides the inner error from
    // `source()`, so the suffix is cut from the message.
    let text = e.to_string();
    match text.split_once(" at path \"") {
        Some((msg, _)) => io::Error::new(e.kind(), msg.to_string()),
        None => e,
    }
}

/// Whether `entry` was modified less than `grace` ago (or its age cannot
/// be told): a leftover that young may be a live run's, not a dead one's.
pub(crate) fn is_recent(entry: &fs::DirEntry, grace: std::time::Duration) -> bool {
    let age = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
    age.is_none_or(|a| a < grace)
}

/// fsync a directory, so that a rename in it survives a crash.
///
/// # Errors
/// I/O errors opening or syncing it.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The bytes of a backup file on their way to disk: md5 of the uncompressed
/// bytes on a thread of its own, and the bytes plain or gzip'd (on all
/// cores, see [`crate::codec::gzip`]) into the file past the page cache
/// ([`BehindWriter`]).
pub(crate) struct DataWriter<'a> {
    md5: Md5Thread,
    written: u64,
    out: Sink<'a>,
}

enum Sink<'a> {
    /// Bytes gathered into `block`, which goes whole to the file and then,
    /// not copied again, to the md5 thread: a full backup copies each byte
    /// once on the thread that also reads and parses Data.fs, not twice.
    Plain {
        out: BehindWriter<'a>,
        block: Vec<u8>,
    },
    Gzip(Box<ParallelGzip<BehindWriter<'a>>>),
}

impl<'a> DataWriter<'a> {
    /// A writer into `file`, gzip'd if `gzip`.
    pub fn new(file: &'a mut File, gzip: bool) -> DataWriter<'a> {
        let buf = BehindWriter::new(file);
        let out = if gzip {
            Sink::Gzip(Box::new(ParallelGzip::new(buf, GZIP_LEVEL)))
        } else {
            Sink::Plain {
                out: buf,
                block: Vec::with_capacity(BLOCK),
            }
        };
        DataWriter {
            md5: Md5Thread::spawn(),
            written: 0,
            out,
        }
    }

    /// Flush everything to the file (shown as `shown`); returns
    /// (uncompressed bytes, md5 hex).
    ///
    /// # Errors
    /// I/O errors of the file, and [`Error::Md5`].
    pub fn finish(mut self, shown: &str) -> Result<(u64, String)> {
        let flushed = match self.out {
            Sink::Plain { mut out, block } => out.write_all(&block).and_then(|()| {
                self.md5.update_owned(block);
                out.finish()
            }),
            Sink::Gzip(g) => g.finish().and_then(|b| b.finish()),
        };
        flushed.map_err(io_err(shown, "write"))?;
        Ok((self.written, self.md5.finish()?))
    }
}

impl Write for DataWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Sink::Plain { out, block } => {
                let mut rest = buf;
                while !rest.is_empty() {
                    let take = (BLOCK - block.len()).min(rest.len());
                    block.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if block.len() == BLOCK {
                        out.write_all(block)?;
                        *block = self.md5.update_owned(std::mem::take(block));
                        block.reserve(BLOCK);
                    }
                }
            }
            Sink::Gzip(g) => {
                g.write_all(buf)?;
                self.md5.update(buf);
            }
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            // Blocks go out as they fill, the rest in `finish`.
            Sink::Plain { .. } => Ok(()),
            Sink::Gzip(g) => g.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::md5::Md5;
    use std::io::{Read, Seek};

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 1021) as u8).collect()
    }

    /// Every size around a block, in pieces that straddle blocks, reaches
    /// the file whole and hashes as the bytes do, plain and gzip'd.
    #[test]
    fn data_writer_keeps_every_byte_and_its_md5() {
        for gzip in [false, true] {
            for size in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
                for piece in [1000, BLOCK - 3, BLOCK, 2 * BLOCK + 7] {
                    let bytes = pattern(size);
                    let mut file = tempfile::tempfile().unwrap();
                    let mut w = DataWriter::new(&mut file, gzip);
                    for p in bytes.chunks(piece) {
                        w.write_all(p).unwrap();
                    }
                    let (n, md5) = w.finish("test").unwrap();
                    assert_eq!(n, size as u64);
                    assert_eq!(md5, Md5::digest(&bytes).unwrap());
                    file.rewind().unwrap();
                    let mut back = Vec::new();
                    if gzip {
                        flate2::read::MultiGzDecoder::new(file)
                            .read_to_end(&mut back)
                            .unwrap();
                    } else {
                        file.read_to_end(&mut back).unwrap();
                    }
                    assert!(back == bytes, "size {size}, pieces of {piece}, gzip {gzip}");
                }
            }
        }
    }
}
