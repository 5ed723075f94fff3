//! One writer per repository: an advisory lock on `<repository>/.repozo.lock`.
//!
//! A backup holds it exclusively; recover and verify hold it shared, so they
//! never read a repository while a backup is writing to it, but may run
//! together. The lock is the kernel's (`flock`), so it is released when the
//! process ends, however it ends. Python repozo ignores the file, as it
//! ignores every name that is not a backup's.
//!
//! `flock` needs only a descriptor open for reading, whatever the lock, so
//! the file is opened read-only and created readable by all (0644, whatever
//! the umask): anyone who may read the repository may verify it or recover
//! from it, beside the user who backs it up. A recover or verify never
//! creates the file in a directory holding no backup (a mistyped `-r`). A
//! lock file that is a link, a FIFO or a device is refused, never opened
//! through or waited on.

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use rustix::fs::{Mode as FileMode, OFlags};

use crate::error::{io_err, Error, Refusal, Result};
use crate::repository::Repository;

/// The lock file's name inside the repository.
pub const LOCK_NAME: &str = ".repozo.lock";

/// The lock file's mode when we create it: readable by whoever may read the
/// repository, as a shared lock needs.
const LOCK_MODE: u32 = 0o644;

/// How the repository is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A backup: no one else may use the repository.
    Exclusive,
    /// Recover or verify: only backups are kept out.
    Shared,
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: Option<File>,
}

/// Take the repository's lock, or fail at once if another run holds it.
///
/// A recover or verify goes on without the lock where there is no lock file
/// and none can be made (a read-only repository, which no backup can be
/// writing to) or none should be (no backup in the directory).
///
/// # Errors
/// [`Error::Locked`]; the repository missing or not a directory; the lock
/// file not a regular file; I/O errors.
pub(crate) fn acquire(repo: &Repository, mode: Mode) -> Result<Lock> {
    repo.check_dir()?;
    let shown = repo.display(LOCK_NAME);
    let Some(mut file) = open(repo, mode, &shown)? else {
        return Ok(Lock { _file: None });
    };
    let mut tried = try_lock(&file, mode);
    // NFS emulates flock with POSIX locks, whose exclusive lock wants a
    // descriptor open for writing.
    let bad_fd = Some(rustix::io::Errno::BADF.raw_os_error());
    if mode == Mode::Exclusive
        && matches!(&tried, Err(TryLockError::Error(e)) if e.raw_os_error() == bad_fd)
    {
        if let Some(rw) = open_existing(repo, OFlags::RDWR, &shown)? {
            file = rw;
            tried = try_lock(&file, mode);
        }
    }
    match tried {
        Ok(()) => Ok(Lock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            repository: repo.given().to_string(),
            lock: shown,
        }),
        Err(TryLockError::Error(e)) => Err(io_err(&shown, "cannot lock")(e)),
    }
}

fn try_lock(file: &File, mode: Mode) -> std::result::Result<(), TryLockError> {
    match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    }
}

/// The lock file, opened read-only or created; `None` when a shared lock
/// is to go without one.
fn open(repo: &Repository, mode: Mode, shown: &str) -> Result<Option<File>> {
    // Two runs may both find no file: the one whose create loses opens the
    // winner's.
    for _ in 0..2 {
        if let Some(f) = open_existing(repo, OFlags::RDONLY, shown)? {
            return Ok(Some(f));
        }
        if mode == Mode::Shared && repo.data_files()?.is_empty() {
            return Ok(None);
        }
        match create(repo) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if mode == Mode::Shared && is_read_only(&e) => return Ok(None),
            Err(e) => return Err(io_err(shown, "cannot open")(e)),
        }
    }
    Err(Error::Refused {
        path: shown.to_string(),
        action: "cannot open",
        why: Refusal::Unstable,
    })
}

/// Open the existing lock file with `access`; `None` if there is none.
///
/// Looked at before opening, so that a device is never opened (opening
/// some has effects) and a FIFO never waited on; opened without following
/// a link and without blocking, and looked at again, so that one swapped in
/// between is refused all the same.
fn open_existing(repo: &Repository, access: OFlags, shown: &str) -> Result<Option<File>> {
    let path = repo.path(LOCK_NAME);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(not_regular(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(shown, "cannot open")(e)),
    }
    let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(&path, flags, FileMode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err(not_regular(shown)),
        Err(e) => return Err(io_err(shown, "cannot open")(e.into())),
    };
    let meta = file.metadata().map_err(io_err(shown, "cannot open"))?;
    if !meta.is_file() {
        return Err(not_regular(shown));
    }
    // A file left unreadable to others (an older repozo created it under
    // the umask) is opened up by its owner's next run; for anyone else the
    // change fails, harmlessly.
    if meta.mode() & 0o444 != 0o444 {
        let _ = file.set_permissions(fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o444));
    }
    Ok(Some(file))
}

/// Create the lock file, 0644 whatever the umask.
fn create(repo: &Repository) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::open(
        repo.path(LOCK_NAME),
        flags,
        FileMode::from_raw_mode(LOCK_MODE),
    )?);
    // The umask applied at creation; ours is the mode the file needs.
    rustix::fs::fchmod(&file, FileMode::from_raw_mode(LOCK_MODE))?;
    Ok(file)
}

fn not_regular(shown: &str) -> Error {
    Error::Refused {
        path: shown.to_string(),
        action: "cannot lock",
        why: Refusal::NotRegular,
    }
}

fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;
    use std::process::Command;

    fn repo_in(t: &tempfile::TempDir) -> Repository {
        Repository::new(t.path().to_str().unwrap())
    }

    #[test]
    fn a_shared_lock_makes_no_lock_file_where_there_is_no_backup() {
        let t = tempfile::TempDir::new().unwrap();
        let repo = repo_in(&t);
        fs::write(t.path().join("notes.txt"), b"not a backup").unwrap();
        let lock = acquire(&repo, Mode::Shared).unwrap();
        assert!(lock._file.is_none());
        assert!(fs::symlink_metadata(t.path().join(LOCK_NAME)).is_err());

        fs::write(t.path().join("2024-01-01-00-00-00.fs"), b"FS30").unwrap();
        let shared = acquire(&repo, Mode::Shared).unwrap();
        assert!(shared._file.is_some());
        let mode = fs::metadata(t.path().join(LOCK_NAME)).unwrap().mode();
        assert_eq!(mode & 0o7777, LOCK_MODE);
        // Both descriptors are read-only; the locks still exclude each other.
        assert!(matches!(
            acquire(&repo, Mode::Exclusive),
            Err(Error::Locked { .. })
        ));
        drop(shared);
        acquire(&repo, Mode::Exclusive).unwrap();
    }

    #[test]
    fn a_lock_file_that_is_no_regular_file_is_refused_at_once() {
        let t = tempfile::TempDir::new().unwrap();
        let repo = repo_in(&t);
        let lock = t.path().join(LOCK_NAME);
        let made = Command::new("mkfifo").arg(&lock).status().unwrap();
        assert!(made.success());
        for mode in [Mode::Shared, Mode::Exclusive] {
            let e = acquire(&repo, mode).unwrap_err().to_string();
            assert!(e.ends_with(": cannot lock: not a regular file"), "{e}");
        }
        assert!(fs::symlink_metadata(&lock).unwrap().file_type().is_fifo());
    }
}
