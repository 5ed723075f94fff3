//! Opening files that must be regular files, and naming the file a path
//! really leads to.
//!
//! A FIFO or a device under a backup's name would make `open` or `read`
//! block for ever; a directory would fail later with a confusing message.
//! Checking first turns all of them into one clear error.
//!
//! A file written by renaming a new one over a path must be renamed over
//! the file the path leads to, not over a symbolic link on the way: that
//! would replace the link and leave its target stale. [`final_target`]
//! follows the links; [`create_new`] never follows one.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::{io_err, Error, Refusal, Result};

/// Links followed before giving up, as the kernel does (its `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// The directory `p` is in: `.` for a bare name, as the kernel sees it.
pub(crate) fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Open `path` (shown as `shown`) for reading if it is a regular file.
///
/// # Errors
/// The file is missing, unreadable, or not a regular file.
pub(crate) fn open_regular(path: &Path, shown: &str) -> Result<File> {
    open_regular_to(path, shown, "cannot open")
}

/// [`open_regular`], saying `action` when the file is not a regular one.
///
/// # Errors
/// As [`open_regular`].
pub(crate) fn open_regular_to(path: &Path, shown: &str, action: &'static str) -> Result<File> {
    // Non-blocking, so that a FIFO put there between any look and the open
    // cannot hang the open; what was opened is then judged by its fstat.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(io_err(shown, "cannot open"))?;
    if !meta.is_file() {
        return Err(Error::Refused {
            path: shown.to_string(),
            action,
            why: Refusal::NotRegular,
        });
    }
    // Reads of a regular file never block; the flag only mattered for the
    // open, and is cleared so that nothing downstream sees EAGAIN.
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    Ok(file)
}

/// The whole of `path` (shown as `shown`) if it is a regular file.
///
/// # Errors
/// As [`open_regular`], and read errors.
pub(crate) fn read_regular(path: &Path, shown: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular(path, shown)?, &mut bytes)
        .map_err(io_err(shown, "read"))?;
    Ok(bytes)
}

/// The path at the end of the chain of symbolic links starting at `path`
/// (`path` itself when it is no link). A link's relative target is taken
/// from the link's own directory, as the kernel takes it. The end may not
/// exist: a dangling link leads to the file it would name.
///
/// # Errors
/// More than 40 links (a loop), or an I/O error reading one.
pub(crate) fn final_target(path: &Path) -> io::Result<PathBuf> {
    let mut at = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        }
    }
    Err(rustix::io::Errno::LOOP.into())
}

/// Whether `path` leads to the file our stdout is open on.
pub(crate) fn is_stdout(path: &Path) -> bool {
    let out = rustix::fs::fstat(io::stdout().as_fd());
    let named = rustix::fs::stat(path);
    matches!((out, named), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

/// Whether `a` and `b` are the same directory (or file), links followed.
/// `false` when either cannot be looked at.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    matches!(
        (rustix::fs::stat(a), rustix::fs::stat(b)),
        (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    )
}

/// Create `path` (shown as `shown`) for writing, a new file of our own.
///
/// Whatever is left under the name (an earlier run's file, or a symbolic
/// link planted to make us write through it) is removed first: unlinking
/// removes a link, never its target. The file is then created exclusively
/// and without following a link, so one planted in between fails the
/// creation instead of redirecting it.
///
/// # Errors
/// The leftover cannot be removed (a directory, say), or the file cannot
/// be created.
pub(crate) fn create_new(path: &Path, shown: &str) -> Result<File> {
    // Looked at first: unlink fails on a read-only filesystem even when
    // there is nothing to remove, and the creation's error is the one to
    // report then.
    if fs::symlink_metadata(path).is_ok() {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(shown, "cannot remove the leftover")(e)),
        }
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::from_raw_mode(0o666))
        .map(File::from)
        .map_err(|e| io_err(shown, "cannot create")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn final_target_follows_relative_links_from_their_directory() {
        let t = tempfile::TempDir::new().unwrap();
        let d = t.path();
        fs::create_dir(d.join("a")).unwrap();
        fs::write(d.join("a/real"), b"x").unwrap();
        symlink("real", d.join("a/one")).unwrap();
        symlink("a/one", d.join("two")).unwrap();
        assert_eq!(final_target(&d.join("two")).unwrap(), d.join("a/real"));
        symlink("../missing", d.join("a/dangling")).unwrap();
        assert_eq!(
            final_target(&d.join("a/dangling")).unwrap(),
            d.join("a/../missing")
        );
        assert_eq!(final_target(&d.join("none")).unwrap(), d.join("none"));
        symlink("loop", d.join("loop")).unwrap();
        let e = final_target(&d.join("loop")).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
    }

    #[test]
    fn create_new_replaces_a_planted_link_and_leaves_its_target() {
        let t = tempfile::TempDir::new().unwrap();
        let d = t.path();
        fs::write(d.join("victim"), b"precious").unwrap();
        symlink("victim", d.join("x.part")).unwrap();
        let mut f = create_new(&d.join("x.part"), "x.part").unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(fs::read(d.join("victim")).unwrap(), b"precious");
        assert!(fs::symlink_metadata(d.join("x.part")).unwrap().is_file());
        assert_eq!(fs::read(d.join("x.part")).unwrap(), b"new");
    }
}
