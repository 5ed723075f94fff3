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
use std::os::unix::fs::MetadataExt;
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
    open_regular_with(path, shown, action, OFlags::RDONLY)
}

/// [`open_regular`] for reading and writing: a file to be changed in
/// place. A symbolic link is not followed.
///
/// # Errors
/// As [`open_regular`], and a file we may not write.
pub(crate) fn open_regular_rw(path: &Path, shown: &str) -> Result<File> {
    open_regular_with(
        path,
        shown,
        "cannot open for writing",
        OFlags::RDWR | OFlags::NOFOLLOW,
    )
}

/// Open `path`, creating it if missing, for the lock it will hold, as
/// zc.lockfile opens ZODB's: a symbolic link is followed; only a regular
/// file is opened (looked at before, so that a device is never opened,
/// and after), never blocking; read-only where we may not write it (a
/// lock needs no more). `None` when it is missing and cannot be made (no
/// ZODB can hold it then).
///
/// # Errors
/// It is not a regular file, or exists and cannot be opened.
pub(crate) fn open_lock_file(path: &Path, shown: &str) -> Result<Option<File>> {
    let not_regular = || Error::Refused {
        path: shown.to_string(),
        action: "cannot lock",
        why: Refusal::NotRegular,
    };
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(not_regular());
    }
    let flags = OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o666);
    let opened = match rustix::fs::open(path, flags | OFlags::RDWR | OFlags::CREATE, mode) {
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::ROFS | rustix::io::Errno::PERM) => {
            match rustix::fs::open(path, flags | OFlags::RDONLY, Mode::empty()) {
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                other => other,
            }
        }
        other => other,
    };
    let file = opened
        .map(File::from)
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    if !file
        .metadata()
        .map_err(io_err(shown, "cannot open"))?
        .is_file()
    {
        return Err(not_regular());
    }
    Ok(Some(file))
}

/// A process that has a file open, as [`open_elsewhere`] finds it.
pub(crate) struct Holder {
    /// `process N (name)`.
    pub(crate) who: String,
    /// Whether it has the file open for writing.
    pub(crate) writes: bool,
}

/// A process other than this one that has the file `meta` describes
/// open (one writing it, if any): found through `/proc/*/fdinfo`, so only
/// among the processes we may look into (all, as root). The inode numbers
/// there are compared first and only a match is looked at (`stat`) through
/// `/proc/*/fd`: a stat of every open file would hang on the first one of
/// a hung mount.
pub(crate) fn open_elsewhere(meta: &fs::Metadata) -> Option<Holder> {
    let me = std::process::id().to_string();
    let wanted = (meta.dev(), meta.ino());
    let mut found: Option<Holder> = None;
    for p in fs::read_dir("/proc").ok()?.flatten() {
        let pid = p.file_name();
        let Some(pid) = pid.to_str() else { continue };
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = fs::read_to_string(fd.path()) else {
                continue;
            };
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            if field("ino:").and_then(|i| i.parse::<u64>().ok()) != Some(wanted.1) {
                continue;
            }
            let same = fs::metadata(p.path().join("fd").join(fd.file_name()))
                .is_ok_and(|m| (m.dev(), m.ino()) == wanted);
            if !same {
                continue;
            }
            let writes = field("flags:")
                .and_then(|f| u32::from_str_radix(&f, 8).ok())
                .is_some_and(|f| f & 0o3 != 0);
            let name = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            let holder = Holder {
                who: format!("process {pid} ({})", name.trim()),
                writes,
            };
            if writes {
                return Some(holder);
            }
            found.get_or_insert(holder);
        }
    }
    found
}

fn open_regular_with(
    path: &Path,
    shown: &str,
    action: &'static str,
    access: OFlags,
) -> Result<File> {
    let not_regular = || Error::Refused {
        path: shown.to_string(),
        action,
        why: Refusal::NotRegular,
    };
    // Looked at before opening, so that a device is never opened; opened
    // without blocking and looked at again, so that a FIFO swapped in
    // between is refused instead of waited on for ever.
    let meta = std::fs::metadata(path).map_err(io_err(shown, "cannot open"))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let flags = access | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = rustix::fs::open(path, flags, Mode::empty())
        .map(File::from)
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    if !file
        .metadata()
        .map_err(io_err(shown, "cannot open"))?
        .is_file()
    {
        return Err(not_regular());
    }
    // Reads of a regular file never block; the flag only mattered for the
    // open, and is cleared so that nothing downstream sees EAGAIN.
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    Ok(file)
}

/// Open `rel`, a `/`-separated path of plain names, inside the directory
/// `dir`, if it is a regular file; shown as `shown`. No symbolic link is
/// followed on the way, so nothing outside `dir` is ever reached, and a
/// FIFO or device is refused without blocking, as by [`open_regular`].
///
/// # Errors
/// A component is missing, a link, or not a directory; the file is not a
/// regular one or cannot be opened.
pub(crate) fn open_regular_beneath(dir: &File, rel: &str, shown: &str) -> Result<File> {
    let fail = |e: rustix::io::Errno| match e {
        // A link on the way (ELOOP), or a way out of `dir` (EXDEV).
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => Error::Refused {
            path: shown.to_string(),
            action: "cannot open",
            why: Refusal::SymbolicLink,
        },
        e => io_err(shown, "cannot open")(e.into()),
    };
    let refuse = |why| Error::Refused {
        path: shown.to_string(),
        action: "cannot open",
        why,
    };
    // Looked at first, so that a device is never opened. The look may
    // follow a link on the way; the open below follows none.
    let stat = rustix::fs::statat(dir, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?;
    match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
        rustix::fs::FileType::RegularFile => {}
        rustix::fs::FileType::Symlink => return Err(refuse(Refusal::SymbolicLink)),
        _ => return Err(refuse(Refusal::NotRegular)),
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    // One call where the kernel has openat2 (Linux 5.6): a blob backup
    // opens 100,000 files, and a walk costs nine opens each.
    let resolve = rustix::fs::ResolveFlags::BENEATH
        | rustix::fs::ResolveFlags::NO_SYMLINKS
        | rustix::fs::ResolveFlags::NO_MAGICLINKS;
    let file = match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => walk_beneath(dir, rel, flags)
            .map(File::from)
            .map_err(fail)?,
        Err(e) => return Err(fail(e)),
    };
    if !file
        .metadata()
        .map_err(io_err(shown, "cannot open"))?
        .is_file()
    {
        return Err(refuse(Refusal::NotRegular));
    }
    rustix::fs::fcntl_setfl(&file, OFlags::empty())
        .map_err(|e| io_err(shown, "cannot open")(e.into()))?;
    Ok(file)
}

/// Open `rel` under `dir` one component at a time, following no link:
/// where openat2 is missing (or refused by a seccomp filter).
fn walk_beneath(dir: &File, rel: &str, flags: OFlags) -> rustix::io::Result<rustix::fd::OwnedFd> {
    let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut at: Option<rustix::fd::OwnedFd> = None;
    for part in dirs.split('/').filter(|p| !p.is_empty()) {
        let dflags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = match &at {
            Some(d) => rustix::fs::openat(d, part, dflags, Mode::empty()),
            None => rustix::fs::openat(dir.as_fd(), part, dflags, Mode::empty()),
        };
        // O_NOFOLLOW with O_DIRECTORY on a link: ENOTDIR or ELOOP.
        at = Some(next.map_err(|e| match e {
            rustix::io::Errno::NOTDIR => rustix::io::Errno::LOOP,
            e => e,
        })?);
    }
    let parent = at.as_ref().map_or(dir.as_fd(), AsFd::as_fd);
    rustix::fs::openat(parent, name, flags, Mode::empty())
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

/// Whether one of `a` and `b` is the other or lies inside it, links
/// resolved; a path that does not exist yet is taken as its parent's
/// resolution plus its name.
pub(crate) fn nested(a: &Path, b: &Path) -> bool {
    fn resolved(p: &Path) -> Option<PathBuf> {
        if let Ok(c) = fs::canonicalize(p) {
            return Some(c);
        }
        let name = p.file_name()?;
        Some(fs::canonicalize(parent_dir(p)).ok()?.join(name))
    }
    match (resolved(a), resolved(b)) {
        (Some(a), Some(b)) => a.starts_with(&b) || b.starts_with(&a),
        _ => false,
    }
}

/// Create `path` (shown as `shown`) for writing, a new file of our own,
/// held under an exclusive `flock` for as long as the returned file is
/// open.
///
/// Whatever is left under the name (an earlier run's file, or a symbolic
/// link planted to make us write through it) is removed first: unlinking
/// removes a link, never its target. The file is then created exclusively
/// and without following a link, so one planted in between fails the
/// creation instead of redirecting it.
///
/// A regular file under the name that another run holds locked is that
/// run's file in the making, not a leftover: removing it would let that
/// run rename a file this one is still writing into place, so it is
/// refused. The lock is taken after the creation, and the name checked to
/// still lead to the new file, so that a run that took it for a leftover
/// in between is noticed and the creation tried again.
///
/// # Errors
/// The leftover cannot be removed (a directory, say) or is another run's,
/// or the file cannot be created.
pub(crate) fn create_new(path: &Path, shown: &str) -> Result<File> {
    for _ in 0..3 {
        if let Some(file) = try_create_new(path, shown)? {
            return Ok(file);
        }
    }
    Err(busy(shown))
}

fn busy(shown: &str) -> Error {
    Error::Refused {
        path: shown.to_string(),
        action: "cannot create",
        why: Refusal::Busy,
    }
}

/// One attempt of [`create_new`]: `None` when another run got in between.
fn try_create_new(path: &Path, shown: &str) -> Result<Option<File>> {
    // Looked at first: unlink fails on a read-only filesystem even when
    // there is nothing to remove, and the creation's error is the one to
    // report then.
    if let Ok(m) = fs::symlink_metadata(path) {
        // Held open (and locked) until it is unlinked, so that no run
        // can take it up in between.
        let _leftover = if m.is_file() {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            match rustix::fs::open(path, flags, Mode::empty()) {
                Ok(fd) => {
                    let f = File::from(fd);
                    match f.try_lock() {
                        Ok(()) => Some(f),
                        Err(fs::TryLockError::WouldBlock) => return Err(busy(shown)),
                        // No flock here (some FUSE filesystems): as
                        // before locks, a leftover.
                        Err(fs::TryLockError::Error(_)) => None,
                    }
                }
                Err(rustix::io::Errno::NOENT) => None,
                // Replaced by a link or a FIFO meanwhile: removed below.
                Err(_) => None,
            }
        } else {
            None
        };
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(shown, "cannot remove the leftover")(e)),
        }
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::EXIST) => return Ok(None),
        Err(e) => return Err(io_err(shown, "cannot create")(e.into())),
    };
    match file.try_lock() {
        // Another run may have taken it for a leftover and removed it
        // before the lock was ours.
        Ok(()) => {
            let ours = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            let named = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
            Ok((ours.is_some() && ours == named).then_some(file))
        }
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        // A filesystem without flock: the file is used unlocked.
        Err(fs::TryLockError::Error(_)) => Ok(Some(file)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Both ways of opening beneath a directory (openat2, and the walk for
    /// kernels without it) open what is inside and follow no link.
    #[test]
    fn opening_beneath_a_directory_follows_no_link() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("in/a/b")).unwrap();
        fs::write(d.join("in/a/b/f"), b"inside").unwrap();
        fs::write(d.join("outside"), b"outside").unwrap();
        symlink(d.join("outside"), d.join("in/a/b/link")).unwrap();
        symlink(d.join("in/a"), d.join("in/via")).unwrap();
        symlink("../../outside", d.join("in/a/rel")).unwrap();
        let dir = File::open(d.join("in")).unwrap();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let read = |f: File| std::io::read_to_string(f).unwrap();
        assert_eq!(
            read(File::from(walk_beneath(&dir, "a/b/f", flags).unwrap())),
            "inside"
        );
        assert_eq!(
            read(open_regular_beneath(&dir, "a/b/f", "f").unwrap()),
            "inside"
        );
        for rel in ["a/b/link", "via/b/f", "a/rel"] {
            assert!(walk_beneath(&dir, rel, flags).is_err(), "walk: {rel}");
            let e = open_regular_beneath(&dir, rel, rel)
                .unwrap_err()
                .to_string();
            assert!(e.contains("symbolic link"), "{rel}: {e}");
        }
    }

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
