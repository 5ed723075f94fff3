//! The library's error type: every failure a user can meet, carrying the
//! file, offset and values that explain it. The binary prints its
//! `Display` as one line and exits 1.

use std::fmt;
use std::io;

pub use crate::codec::md5::Md5Error;
use crate::filestorage::index_file::IndexFileError;
use crate::filestorage::records::FormatError;
use crate::repository::RepositoryError;

/// A failed backup, recover or verify.
#[derive(Debug)]
pub enum Error {
    /// An I/O error on a named file.
    Io {
        /// The file, as shown to the user.
        path: String,
        /// What was being done to it.
        action: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// Data.fs is not a FileStorage, or is damaged.
    Format {
        /// The file, as shown to the user.
        path: String,
        /// The cause.
        source: FormatError,
    },
    /// An `.index` file could not be read.
    IndexFile {
        /// The file, as shown to the user.
        path: String,
        /// The cause.
        source: IndexFileError,
    },
    /// The repository or its `.dat` log could not be read.
    Repository(RepositoryError),
    /// A gzip'd backup file is damaged.
    Gzip {
        /// The file, as shown to the user.
        path: String,
        /// Uncompressed bytes read before the damage.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// The backup file for this second already exists.
    WouldOverwrite {
        /// The file, as shown to the user.
        path: String,
    },
    /// No backup to recover or verify.
    NoFiles {
        /// The `-D` date, if one was given.
        before: Option<String>,
    },
    /// A backup file disagrees with the `.dat` log, or the log with
    /// itself.
    Mismatch(Mismatch),
    /// A path refused before anything was done to it.
    Refused {
        /// The file, as shown to the user.
        path: String,
        /// What was being done to it.
        action: &'static str,
        /// Why.
        why: Refusal,
    },
    /// Not one blob file a backup needs is in the blob directory: not the
    /// site's, or not mounted.
    NoBlobFound {
        /// The blob directory, as shown to the user.
        path: String,
        /// How many blob records the backup's range holds.
        records: usize,
    },
    /// A blob directory's `.layout` names a layout ZODB does not know.
    UnknownLayout {
        /// The `.layout` file, as shown to the user.
        path: String,
        /// What it holds.
        found: String,
    },
    /// A file ended before bytes it had when it was opened were read.
    Shrank {
        /// The file, as shown to the user.
        path: String,
        /// Where the file ended.
        at: u64,
        /// What the `.dat` log says.
        expected: u64,
    },
    /// The source lost bytes that the repository already holds.
    SourceShorter {
        /// The file, as shown to the user.
        path: String,
        /// Where it ends.
        end: u64,
        /// How many bytes the repository already holds.
        backed_up: u64,
    },
    /// OpenSSL could not compute an md5.
    Md5(Md5Error),
    /// The environment fixes "now" to something that is not a time.
    Clock {
        /// The environment variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// Data.fs was renamed over (a pack) while it was being backed up.
    SourceReplaced {
        /// The file, as shown to the user.
        path: String,
    },
    /// Another repozo run holds the repository's lock.
    Locked {
        /// The repository, as given.
        repository: String,
        /// The lock file.
        lock: String,
    },
    /// A backup would sort before the newest one in the repository.
    ClockBehind {
        /// The newest backup file.
        newest: String,
        /// The stem the time now gives.
        now: String,
    },
    /// A backup of this second exists, and the clock cannot move on.
    StemTaken {
        /// A file with that stem.
        existing: String,
        /// The stem.
        stem: String,
    },
    /// `--at`/`--at-tid` asked for a transaction no chain holds.
    NoTransaction {
        /// The repository, as given.
        repository: String,
        /// What was asked for: `0x…` or `at or before …`.
        wanted: String,
    },
    /// `--at`/`--at-tid`: the transaction may be in the part of a broken
    /// chain that cannot be read.
    Broken {
        /// What breaks the chain.
        why: String,
        /// What was asked for.
        wanted: String,
    },
    /// `--max-age`: the newest backup is too old, or the repository is
    /// unhealthy.
    Stale {
        /// What is wrong, naming the repository.
        why: String,
    },
    /// `-D N` past the oldest backup.
    NoRevision {
        /// The repository, as given.
        repository: String,
        /// The number asked for.
        number: usize,
        /// How many backups it holds.
        backups: usize,
    },
    /// `--transactions` could not read every chain.
    Incomplete {
        /// What it could not read.
        why: String,
    },
    /// The files found for the date start with an increment: the full
    /// backup they extend is gone, and they alone are no Data.fs.
    NoFullBackup {
        /// The `-D` date, if one was given.
        before: Option<String>,
    },
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
            Error::Mismatch(m) => write!(f, "{m}"),
            Error::Refused { path, action, why } => write!(f, "{path}: {action}: {why}"),
            Error::NoBlobFound { path, records } => write!(
                f,
                "{path}: cannot back up blobs from it: none of the {records} blob files the backup needs is there (the site's blob directory, mounted?)"
            ),
            Error::UnknownLayout { path, found } => write!(
                f,
                "{path}: read: unknown blob directory layout {found:?} (ZODB knows bushy and lawn)"
            ),
            Error::Shrank { path, at, expected } => write!(
                f,
                "{path}: read: the file ended at {at} bytes while being read (expected {expected})"
            ),
            Error::SourceShorter {
                path,
                end,
                backed_up,
            } => write!(
                f,
                "{path}: its last complete transaction ends at {end}, before the {backed_up} bytes already backed up"
            ),
            Error::Md5(e) => write!(f, "{e}"),
            Error::Clock { variable, value } => {
                write!(f, "{variable}={value:?} is not YYYY-MM-DD-hh-mm-ss")
            }
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
            Error::Stale { why } => f.write_str(why),
            Error::NoRevision {
                repository,
                number,
                backups,
            } => write!(
                f,
                "{repository}: no backup number {number}: it holds {backups} (0 is the newest)"
            ),
            Error::Incomplete { why } => write!(
                f,
                "{why}: the transactions listed are not all the repository holds"
            ),
            Error::Broken { why, wanted } => {
                write!(f, "{why}: the transaction {wanted} may be in it")
            }
            Error::NoTransaction { repository, wanted } => {
                write!(f, "{repository}: no transaction {wanted} in the repository")
            }
        }
    }
}

/// How a backup file disagrees with its `.dat` log, in repozo's words
/// where repozo has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A file the log lists is not there.
    Missing {
        /// The file, as shown to the user.
        path: String,
    },
    /// Its (uncompressed, for a gzip'd file) size is not the logged one.
    Size {
        /// The file, as shown to the user.
        path: String,
        /// The size found (uncompressed, for a gzip'd file).
        size: u64,
        /// What the `.dat` log says.
        expected: u64,
        /// Whether the file is gzip'd.
        gzip: bool,
    },
    /// Its md5 is not the logged one.
    Checksum {
        /// The file, as shown to the user.
        path: String,
        /// The md5 found.
        sum: String,
        /// What the `.dat` log says.
        expected: String,
        /// Whether the file is gzip'd.
        gzip: bool,
    },
    /// The log does not list a file the chain holds.
    NotListed {
        /// The file, as shown to the user.
        path: String,
        /// The `.dat` log.
        dat: String,
    },
    /// The log lists a name that is no backup file's.
    NotABackupName {
        /// The `.dat` log.
        dat: String,
        /// The name it lists.
        listed: String,
    },
    /// A backup recorded a blob whose file was not in the blob directory.
    BlobMissing {
        /// The manifest, as shown to the user.
        manifest: String,
        /// The blob's object.
        oid: u64,
        /// The transaction that wrote it.
        tid: u64,
    },
    /// A backup without a blob manifest whose range holds blob records.
    NoManifest {
        /// The backup file, as shown to the user.
        path: String,
        /// How many blob records its range holds.
        blobs: usize,
    },
    /// A file whose transactions stop short of its end.
    Torn {
        /// The file, as shown to the user.
        path: String,
        /// Where its last complete transaction ends, in the Data.fs.
        end: u64,
        /// Where the file ends, in the Data.fs.
        expected: u64,
    },
    /// A backup file that ends inside a transaction.
    NotAtBoundary {
        /// The file, as shown to the user.
        path: String,
        /// Where it ends, in the Data.fs.
        end: u64,
        /// Where the transaction it cuts starts.
        txn: u64,
    },
    /// A backup's `.index` or blob manifest that is not what its range
    /// holds.
    IndexDiffers {
        /// The `.index` or manifest, as shown to the user.
        path: String,
        /// How it differs.
        why: String,
    },
    /// A transaction whose tid is not after the one before it.
    TidsBack {
        /// The file, as shown to the user.
        path: String,
        /// Where the transaction starts, in the Data.fs.
        offset: u64,
    },
    /// A file does not start where the files before it end.
    Gap {
        /// The file, as shown to the user.
        path: String,
        /// Where the `.dat` log says it starts.
        start: u64,
        /// Where the files before it end.
        end: u64,
        /// The `.dat` log.
        dat: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |gzip: bool| if gzip { " (when uncompressed)" } else { "" };
        match self {
            Mismatch::Missing { path } => write!(f, "{path} is missing"),
            Mismatch::Size {
                path,
                size,
                expected,
                gzip,
            } => write!(
                f,
                "{path} is {size} bytes{}, should be {expected} bytes",
                when(*gzip)
            ),
            Mismatch::Checksum {
                path,
                sum,
                expected,
                gzip,
            } => write!(
                f,
                "{path} has checksum {sum}{} instead of {expected}",
                when(*gzip)
            ),
            Mismatch::BlobMissing { manifest, oid, tid } => write!(
                f,
                "{manifest}: the blob of oid {} written by tid {} was missing from the blob directory when it was backed up",
                crate::filestorage::blob::repr(*oid),
                crate::filestorage::blob::repr(*tid)
            ),
            Mismatch::NoManifest { path, blobs } => write!(
                f,
                "{path} holds {blobs} blob records but no blob files (backed up without --blob-dir)"
            ),
            Mismatch::NotListed { path, dat } => write!(f, "{path} is not listed in {dat}"),
            Mismatch::NotABackupName { dat, listed } => {
                write!(f, "{dat} lists {listed}, which is not a backup file name")
            }
            Mismatch::Torn {
                path,
                end,
                expected,
            } => write!(
                f,
                "{path}: damaged: its last complete transaction ends at {end}, before its end at {expected}"
            ),
            Mismatch::NotAtBoundary { path, end, txn } => write!(
                f,
                "{path}: ends at {end}, inside the transaction that starts at {txn}"
            ),
            Mismatch::IndexDiffers { path, why } => write!(f, "{path}: {why}"),
            Mismatch::TidsBack { path, offset } => write!(
                f,
                "{path}: the transaction at {offset} has a tid not after the one before it: transactions out of order cannot be searched by time or tid"
            ),
            Mismatch::Gap {
                path,
                start,
                end,
                dat,
            } => write!(
                f,
                "{path} starts at {start}, but the files before it end at {end} ({dat})"
            ),
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A FIFO, a device, a socket: opening or reading it could block, and
    /// replacing it would destroy it.
    NotRegular,
    /// A directory where a file is wanted.
    IsDirectory,
    /// A recovery into the repository would overwrite a backup.
    InRepository {
        /// The repository, as given.
        repository: String,
    },
    /// A link (`/proc/self/fd/N`) whose text is not a path to its file.
    LinkElsewhere,
    /// A link leading to a name that is not UTF-8.
    NotUtf8,
    /// A repository path that no `.dat` line can hold.
    LineBreak,
    /// The file kept vanishing and reappearing while we tried to open it.
    Unstable,
    /// Another run holds the file (a recovery's `.part`).
    Busy,
    /// A file where a directory is wanted.
    NotADirectory,
    /// A blob directory that is, holds or lies in another path in use.
    Overlaps {
        /// What it overlaps, as shown to the user.
        other: String,
    },
    /// A symbolic link inside a blob directory, which could lead out of it.
    SymbolicLink,
    /// ZODB's lock beside the file is held: a running ZODB (or another
    /// recovery) has it open.
    InUse {
        /// The lock file, as shown to the user.
        lock: String,
    },
    /// Another process has the file open for writing (a ZODB that took
    /// its lock by a name we do not know).
    Written {
        /// The process, as `process N (name)`.
        who: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::NotADirectory => f.write_str("not a directory"),
            Refusal::Overlaps { other } => write!(f, "it is, holds or lies in {other}"),
            Refusal::SymbolicLink => f.write_str("a symbolic link on the way (not followed)"),
            Refusal::IsDirectory => f.write_str("it is a directory"),
            Refusal::InRepository { repository } => {
                write!(f, "it is in the repository {repository}")
            }
            Refusal::LinkElsewhere => {
                f.write_str("its symbolic link does not name the file it leads to")
            }
            Refusal::NotUtf8 => f.write_str("its symbolic link leads to a name that is not UTF-8"),
            Refusal::LineBreak => {
                f.write_str("a line break in the repository path cannot be written to the .dat log")
            }
            Refusal::Unstable => f.write_str("it keeps appearing and disappearing"),
            Refusal::Busy => f.write_str("another repozo run is writing it"),
            Refusal::Written { who } => {
                write!(f, "{who} has it open for writing; stop it first")
            }
            Refusal::InUse { lock } => write!(
                f,
                "{lock} is locked: a running ZODB (or another recovery) has it open; stop it first"
            ),
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
            Error::Md5(e) => Some(e),
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
