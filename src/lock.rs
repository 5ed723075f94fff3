//! One writer per repository: an advisory lock on `<repository>/.repozo.lock`.
//!
//! A backup holds it exclusively; recover and verify hold it shared, so they
//! never read a repository while a backup is writing to it, but may run
//! together. The lock is the kernel's (`flock`), so it is released when the
//! process ends, however it ends. Python repozo ignores the file, as it
//! ignores every name that is not a backup's.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;

use crate::error::{Error, Result};
use crate::repository::Repository;

/// The lock file's name inside the repository.
pub const LOCK_NAME: &str = ".repozo.lock";

/// How the repository is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A backup: no one else may use the repository.
    Exclusive,
    /// Recover or verify: only backups are kept out.
    Shared,
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    _file: Option<File>,
}

/// Take the repository's lock, or fail at once if another run holds it.
///
/// A read-only repository that has no lock file cannot be backed up into,
/// so recover and verify go on there without one.
///
/// # Errors
/// [`Error::Locked`]; the repository missing or not a directory; I/O errors.
pub fn acquire(repo: &Repository, mode: Mode) -> Result<Lock> {
    repo.check_dir()?;
    let path = repo.path(LOCK_NAME);
    let shown = repo.display(LOCK_NAME);
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path);
    let file = match (opened, mode) {
        (Ok(f), _) => f,
        (Err(e), Mode::Shared) if is_read_only(&e) => match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock { _file: None }),
            Err(e) => return Err(crate::error::io_err(&shown, "cannot open")(e)),
        },
        (Err(e), _) => return Err(crate::error::io_err(&shown, "cannot open")(e)),
    };
    let tried = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match tried {
        Ok(()) => Ok(Lock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            repository: repo.given().to_string(),
            lock: shown,
        }),
        Err(TryLockError::Error(e)) => Err(crate::error::io_err(&shown, "cannot lock")(e)),
    }
}

fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}
