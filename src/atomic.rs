//! Files that appear under their final name only when complete.
//!
//! An [`AtomicFile`] is written under a unique temporary name in the target's
//! own directory (so two runs never share one, unlike repozo's `tmp.tmp`),
//! and [`AtomicFile::commit`] fsyncs it, gives it its permission bits,
//! renames it into place and fsyncs the directory. Dropping it uncommitted
//! removes the temporary file.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};
use tempfile::NamedTempFile;

use crate::error::{io_err, Error, Result};

/// Prefix of our temporary files, so that a later run can recognise them.
pub const TEMP_PREFIX: &str = ".repozo-";
/// Suffix of our temporary files.
pub const TEMP_SUFFIX: &str = ".tmp";
/// gzip level for `.fsz`/`.deltafsz` files.
pub const GZIP_LEVEL: u32 = 6;
/// Buffer between our chunks and the file.
const WRITE_BUFFER: usize = 1 << 20;

/// A file being written under a temporary name.
pub struct AtomicFile {
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
    pub fn create(dest: &Path, shown: &str) -> Result<AtomicFile> {
        let dir = parent_dir(dest);
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(io_err(shown, "cannot create a temporary file beside it"))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            shown: shown.to_string(),
            permissions: None,
        })
    }

    /// Give the final file these permission bits (by default the temporary
    /// file's private 0600).
    pub fn set_permissions(&mut self, p: Permissions) {
        self.permissions = Some(p);
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The name shown in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// fsync, set permissions, rename into place, fsync the directory.
    /// With `replace` false an existing file is never overwritten.
    ///
    /// # Errors
    /// I/O errors, or [`Error::WouldOverwrite`].
    pub fn commit(self, replace: bool) -> Result<()> {
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
        sync_dir(parent_dir(&self.dest)).map_err(io_err(&shown, "fsync its directory"))
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// fsync a directory, so that a rename in it survives a crash.
///
/// # Errors
/// I/O errors opening or syncing it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The bytes of a backup file on their way to disk: md5 of the uncompressed
/// bytes, then plain or gzip'd into a buffered file.
pub struct DataWriter<'a> {
    md5: Md5,
    written: u64,
    out: Sink<'a>,
}

enum Sink<'a> {
    Plain(BufWriter<&'a mut File>),
    Gzip(GzEncoder<BufWriter<&'a mut File>>),
}

impl<'a> DataWriter<'a> {
    /// A writer into `file`, gzip'd if `gzip`.
    pub fn new(file: &'a mut File, gzip: bool) -> DataWriter<'a> {
        let buf = BufWriter::with_capacity(WRITE_BUFFER, file);
        let out = if gzip {
            Sink::Gzip(GzEncoder::new(buf, Compression::new(GZIP_LEVEL)))
        } else {
            Sink::Plain(buf)
        };
        DataWriter {
            md5: Md5::new(),
            written: 0,
            out,
        }
    }

    /// Flush everything to the file; returns (uncompressed bytes, md5 hex).
    ///
    /// # Errors
    /// I/O errors of the file.
    pub fn finish(self) -> io::Result<(u64, String)> {
        match self.out {
            Sink::Plain(mut b) => b.flush()?,
            Sink::Gzip(g) => g.finish()?.flush()?,
        }
        Ok((self.written, hex(&self.md5.finalize())))
    }
}

impl Write for DataWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.out {
            Sink::Plain(b) => b.write(buf)?,
            Sink::Gzip(g) => g.write(buf)?,
        };
        self.md5.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Sink::Plain(b) => b.flush(),
            Sink::Gzip(g) => g.flush(),
        }
    }
}

/// Lowercase hex, as `hexdigest()`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
