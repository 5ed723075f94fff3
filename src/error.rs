//! The library's error type: every failure a user can meet, carrying the
//! file, offset and values that explain it. The binary prints its
//! `Display` as one line and exits 1.

use std::fmt;
use std::io;

use crate::filestorage::index_file::IndexFileError;
use crate::filestorage::records::FormatError;
use crate::repository::RepositoryError;

/// A failed backup, recover or verify.
#[derive(Debug)]
pub enum Error {
    /// An I/O error on a named file.
    Io {
        path: String,
        action: &'static str,
        source: io::Error,
    },
    /// Data.fs is not a FileStorage, or is damaged.
    Format { path: String, source: FormatError },
    /// An `.index` file could not be read.
    IndexFile {
        path: String,
        source: IndexFileError,
    },
    /// The repository or its `.dat` log could not be read.
    Repository(RepositoryError),
    /// A gzip'd backup file is damaged.
    Gzip {
        path: String,
        offset: u64,
        source: io::Error,
    },
    /// The backup file for this second already exists.
    WouldOverwrite { path: String },
    /// No backup to recover or verify.
    NoFiles { before: Option<String> },
    /// A file disagrees with the `.dat` log (repozo's wording).
    Verification(String),
    /// The source lost bytes that the repository already holds.
    SourceShorter {
        path: String,
        end: u64,
        backed_up: u64,
    },
    /// The environment fixes "now" to something that is not a time.
    Clock(String),
    /// Data.fs was renamed over (a pack) while it was being backed up.
    SourceReplaced { path: String },
    /// Another repozo run holds the repository's lock.
    Locked { repository: String, lock: String },
    /// A backup would sort before the newest one in the repository.
    ClockBehind { newest: String, now: String },
    /// A backup of this second exists, and the clock cannot move on.
    StemTaken { existing: String, stem: String },
    /// The files found for the date start with an increment: the full
    /// backup they extend is gone, and they alone are no Data.fs.
    NoFullBackup { before: Option<String> },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "{path}: {action}: {source}"),
            Error::Format { path, source } => write!(f, "{path}: {source}"),
            Error::IndexFile { path, source } => write!(f, "{path}: {source}"),
            Error::Repository(e) => write!(f, "{e}"),
            Error::Gzip {
                path,
                offset,
                source,
            } => write!(
                f,
                "{path}: corrupt gzip data after {offset} uncompressed bytes: {source}"
            ),
            Error::WouldOverwrite { path } => write!(f, "Cannot overwrite existing file: {path}"),
            Error::NoFiles { before: Some(d) } => write!(f, "No files in repository before {d}"),
            Error::NoFiles { before: None } => write!(f, "No files in repository"),
            Error::Verification(msg) => write!(f, "{msg}"),
            Error::SourceShorter {
                path,
                end,
                backed_up,
            } => write!(
                f,
                "{path}: its last complete transaction ends at {end}, before the {backed_up} bytes already backed up"
            ),
            Error::Clock(msg) => write!(f, "{msg}"),
            Error::SourceReplaced { path } => write!(
                f,
                "{path} was replaced (packed?) while being backed up; nothing was written, try again"
            ),
            Error::Locked { repository, lock } => write!(
                f,
                "{repository}: repository is locked by another repozo run (lock held on {lock}); try again when it has finished"
            ),
            Error::ClockBehind { newest, now } => write!(
                f,
                "{newest}: cannot back up: this backup is newer than the time now ({now}); did the clock go back?"
            ),
            Error::StemTaken { existing, stem } => write!(
                f,
                "{existing}: cannot back up: a backup of this second ({stem}) exists already; try again in a second"
            ),
            Error::NoFullBackup { before: Some(d) } => {
                write!(f, "No full backup in repository before {d}")
            }
            Error::NoFullBackup { before: None } => write!(f, "No full backup in repository"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Gzip { source, .. } => Some(source),
            Error::Format { source, .. } => Some(source),
            Error::IndexFile { source, .. } => Some(source),
            Error::Repository(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RepositoryError> for Error {
    fn from(e: RepositoryError) -> Self {
        Error::Repository(e)
    }
}

/// Shorthand for mapping an `io::Error` on `path` while doing `action`.
pub(crate) fn io_err(path: &str, action: &'static str) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_string();
    move |source| Error::Io {
        path,
        action,
        source,
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
