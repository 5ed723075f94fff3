//! Opening files that must be regular files.
//!
//! A FIFO or a device under a backup's name would make `open` or `read`
//! block for ever; a directory would fail later with a confusing message.
//! Checking first turns all of them into one clear error.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{io_err, Error, Result};

/// Open `path` (shown as `shown`) for reading if it is a regular file.
///
/// # Errors
/// The file is missing, unreadable, or not a regular file.
pub fn open_regular(path: &Path, shown: &str) -> Result<File> {
    open_regular_to(path, shown, "cannot open")
}

/// [`open_regular`], saying `action` when the file is not a regular one.
///
/// # Errors
/// As [`open_regular`].
pub fn open_regular_to(path: &Path, shown: &str, action: &'static str) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(io_err(shown, "cannot open"))?;
    if !meta.is_file() {
        return Err(Error::Io {
            path: shown.to_string(),
            action,
            source: io::Error::other("not a regular file"),
        });
    }
    File::open(path).map_err(io_err(shown, "cannot open"))
}

/// The whole of `path` (shown as `shown`) if it is a regular file.
///
/// # Errors
/// As [`open_regular`], and read errors.
pub fn read_regular(path: &Path, shown: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular(path, shown)?, &mut bytes)
        .map_err(io_err(shown, "read"))?;
    Ok(bytes)
}
