//! A ZODB blob directory: read for a backup, built anew for a recovery.
//!
//! Blob files are opened beneath the directory without following any
//! link, so a link planted inside cannot make a backup read, or a recovery
//! write, anything outside it. A recovered directory is built beside the
//! target, made durable, and swapped into place in one rename, so ZODB
//! sees either the old directory or the new one, never a mixture.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::codec::md5::copy_hashed;
use crate::disk::atomic::is_recent;
use crate::disk::open;
use crate::error::{io_err, Error, Result};
use crate::filestorage::blob::Layout;

/// The file naming the layout.
const LAYOUT_FILE: &str = ".layout";

/// A blob directory being backed up.
pub struct BlobDir {
    dir: File,
    shown: String,
    layout: Layout,
}

impl BlobDir {
    /// Open the blob directory at `path` and learn its layout as ZODB does:
    /// from `.layout`, else `bushy` for a directory without visible
    /// entries and `lawn` for one with some.
    ///
    /// # Errors
    /// It is not a directory, or names a layout ZODB does not know.
    pub fn open(path: &Path) -> Result<BlobDir> {
        let shown = path.to_string_lossy().into_owned();
        let meta = fs::metadata(path).map_err(io_err(&shown, "cannot back up blobs from"))?;
        if !meta.is_dir() {
            return Err(Error::Refused {
                path: shown,
                action: "cannot back up blobs from it",
                why: crate::error::Refusal::NotADirectory,
            });
        }
        let dir = File::open(path).map_err(io_err(&shown, "cannot back up blobs from"))?;
        let layout = match read_layout(&dir, &shown)? {
            Some(layout) => layout,
            None => {
                let used = fs::read_dir(path)
                    .map_err(io_err(&shown, "cannot list"))?
                    .flatten()
                    .any(|e| !e.file_name().as_encoded_bytes().starts_with(b"."));
                if used {
                    Layout::Lawn
                } else {
                    Layout::Bushy
                }
            }
        };
        Ok(BlobDir { dir, shown, layout })
    }

    /// The directory as shown in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Its layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The file of the blob `oid` written by `tid`, as shown in messages.
    pub fn shown_blob(&self, oid: u64, tid: u64) -> String {
        join(&self.shown, &self.layout.file(oid, tid))
    }

    /// Open the file of the blob `oid` written by `tid`.
    ///
    /// # Errors
    /// It is missing, a link or behind one, not a regular file, unreadable.
    pub fn open_blob(&self, oid: u64, tid: u64) -> Result<File> {
        open::open_regular_beneath(
            &self.dir,
            &self.layout.file(oid, tid),
            &self.shown_blob(oid, tid),
        )
    }
}

/// The layout `.layout` in `dir` (shown as `shown`) names; `None` when
/// there is no such file.
///
/// # Errors
/// It cannot be read, or names no layout ZODB knows.
fn read_layout(dir: &File, shown: &str) -> Result<Option<Layout>> {
    let marker = join(shown, LAYOUT_FILE);
    match open::open_regular_beneath(dir, LAYOUT_FILE, &marker) {
        Ok(f) => {
            let mut text = String::new();
            f.take(4096)
                .read_to_string(&mut text)
                .map_err(io_err(&marker, "read"))?;
            let layout = Layout::parse(&text).ok_or_else(|| Error::UnknownLayout {
                path: marker.clone(),
                found: text.trim().chars().take(40).collect(),
            })?;
            Ok(Some(layout))
        }
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A blob directory being built beside the one it will replace (inside
/// it, when it is a mount point, which no rename can replace).
pub(crate) struct NewBlobDir {
    /// The directory in the making, removed unless installed.
    tmp: Option<PathBuf>,
    /// Held locked while this run works on it, so that another run does
    /// not take it for a killed run's leftover.
    _lock: File,
    target: PathBuf,
    shown: String,
    layout: Layout,
    made: HashSet<String>,
    /// Built inside the target, a mount point: installed entry by entry.
    inside: bool,
}

/// The directory a recovery replaced, to be removed once the recovered
/// Data.fs is in place.
pub(crate) struct Replaced {
    old: Option<PathBuf>,
}

impl Replaced {
    /// Remove the replaced directory; a failure is said, not fatal.
    pub(crate) fn remove(self, log: &crate::log::Log) {
        if let Some(old) = self.old {
            if let Err(e) = remove_tree(&old) {
                log.notice(format_args!(
                    "{}: the replaced blob directory could not be removed: {e}",
                    old.display()
                ));
            }
        }
    }
}

/// Build directories younger than this may be a live recovery's.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Prefix of the directories built or set aside inside a mount point.
const INSIDE_PREFIX: &str = ".repozo-";

/// Remove what killed recoveries left in `dir`: directories named with
/// `prefix` that no live run holds locked and that are over a minute old.
fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .as_encoded_bytes()
            .starts_with(prefix.as_bytes())
        {
            continue;
        }
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || is_recent(&e, LEFTOVER_GRACE) {
            continue;
        }
        let unlocked = File::open(e.path()).is_ok_and(|f| f.try_lock().is_ok());
        if unlocked {
            let _ = remove_tree(&e.path());
        }
    }
}

/// ZODB makes its blob directories private, and warns about others.
const DIR_MODE: u32 = 0o700;
/// Committed blob files are read-only, as ZODB leaves them.
const FILE_MODE: u32 = 0o444;

impl NewBlobDir {
    /// Start building what will become the blob directory `target`.
    ///
    /// # Errors
    /// `target` exists and is no directory; the directory beside it cannot
    /// be written.
    pub(crate) fn beside(target: &Path, layout: Layout) -> Result<NewBlobDir> {
        let shown = target.to_string_lossy().into_owned();
        let target =
            open::final_target(target).map_err(io_err(&shown, "cannot recover blobs into it"))?;
        if let Ok(m) = fs::symlink_metadata(&target) {
            if !m.is_dir() {
                return Err(Error::Refused {
                    path: shown,
                    action: "cannot recover blobs into it",
                    why: crate::error::Refusal::NotADirectory,
                });
            }
        }
        let parent = open::parent_dir(&target).to_path_buf();
        let base = target
            .file_name()
            .map_or_else(|| "blobs".into(), |n| n.to_string_lossy().into_owned());
        let device = |p: &Path| fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
        let inside = match (device(&target), device(&parent)) {
            (Ok(t), Ok(p)) => t != p,
            _ => false,
        };
        let (home, prefix) = if inside {
            (target.clone(), format!("{INSIDE_PREFIX}new-"))
        } else {
            (parent, format!(".{base}.repozo-"))
        };
        remove_leftovers(&home, if inside { INSIDE_PREFIX } else { &prefix });
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempdir_in(&home)
            .map_err(io_err(&shown, "cannot create a directory beside it"))?
            .keep();
        let lock =
            File::open(&tmp).map_err(io_err(&shown, "cannot create a directory beside it"))?;
        let _ = lock.try_lock();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io_err(&shown, "set permissions"))?;
        let new = NewBlobDir {
            tmp: Some(tmp),
            _lock: lock,
            target,
            shown,
            layout,
            made: HashSet::new(),
            inside,
        };
        let marker = new.path().join(LAYOUT_FILE);
        fs::write(&marker, layout.name()).map_err(io_err(&new.shown, "write .layout in"))?;
        Ok(new)
    }

    fn path(&self) -> &Path {
        self.tmp.as_deref().expect("not installed yet")
    }

    /// Copy `src` in as the blob `oid` written by `tid`. With `md5`, the
    /// bytes are hashed on the way and must match it (`-w`); otherwise the
    /// kernel copies them (a reflink where the filesystem shares extents).
    /// Returns the size written.
    ///
    /// # Errors
    /// Reading (said against `src_shown`) or writing; [`Error::Mismatch`]
    /// for bytes that are not the ones backed up.
    pub(crate) fn add(
        &mut self,
        src: &mut File,
        src_shown: &str,
        oid: u64,
        tid: u64,
        md5: Option<&str>,
    ) -> Result<u64> {
        let dirs = self.layout.oid_dirs(oid);
        let mut rel = String::new();
        for d in &dirs {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(d);
            if self.made.insert(rel.clone()) {
                match fs::DirBuilder::new()
                    .mode(DIR_MODE)
                    .create(self.path().join(&rel))
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&self.shown, "create a directory in")(e)),
                }
            }
        }
        let name = format!("{rel}/{}", crate::filestorage::blob::file_name(tid));
        let shown = format!("{}/{name}", self.shown);
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(self.path().join(&name))
            .map_err(io_err(&shown, "create"))?;
        let size = match md5 {
            None => io::copy(src, &mut out).map_err(|e| Error::Io {
                path: format!("{src_shown} -> {shown}"),
                action: "copy",
                source: e,
            })?,
            Some(want) => {
                let (n_all, sum) = copy_hashed(src, &mut out, src_shown, &shown)?;
                if sum != want {
                    return Err(Error::Mismatch(crate::error::Mismatch::Checksum {
                        path: src_shown.to_string(),
                        sum,
                        expected: want.to_string(),
                        gzip: false,
                    }));
                }
                n_all
            }
        };
        out.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_err(&shown, "set permissions"))?;
        Ok(size)
    }

    /// Make the new directory durable and put it in the target's place:
    /// exchanged with an existing directory in one rename where the
    /// filesystem can. The old one is returned, to be removed once the
    /// recovered Data.fs is in place too.
    ///
    /// # Errors
    /// I/O errors; the new directory is removed and the old one stays.
    pub(crate) fn install(mut self) -> Result<Replaced> {
        let tmp = self.path().to_path_buf();
        let dir = File::open(&tmp).map_err(io_err(&self.shown, "open"))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err(&self.shown, "sync")(e.into()))?;
        if self.inside {
            return self.install_inside();
        }
        let parent = open::parent_dir(&self.target).to_path_buf();
        let rename = |flags| {
            rustix::fs::renameat_with(rustix::fs::CWD, &tmp, rustix::fs::CWD, &self.target, flags)
        };
        let mut swapped = if fs::symlink_metadata(&self.target).is_ok() {
            rename(rustix::fs::RenameFlags::EXCHANGE)
        } else {
            match rename(rustix::fs::RenameFlags::NOREPLACE) {
                Ok(()) => {
                    self.tmp = None;
                    Ok(())
                }
                // Another recovery made it meanwhile: exchanged with it.
                Err(rustix::io::Errno::EXIST) => rename(rustix::fs::RenameFlags::EXCHANGE),
                Err(e) => Err(e),
            }
        };
        if let Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) = swapped {
            // No exchange on this filesystem (NFS): the old directory is
            // moved aside first, leaving a moment without one; a kill then
            // leaves it under a leftover's name, removed by a later run.
            let aside = tmp.with_extension("old");
            fs::rename(&self.target, &aside).map_err(io_err(&self.shown, "move aside"))?;
            if let Err(e) = fs::rename(&tmp, &self.target) {
                let _ = fs::rename(&aside, &self.target);
                return Err(io_err(&self.shown, "rename into place")(e));
            }
            self.tmp = Some(aside);
            swapped = Ok(());
        }
        swapped.map_err(|e| io_err(&self.shown, "put the recovered blobs in place")(e.into()))?;
        crate::disk::atomic::sync_dir(&parent)
            .map_err(io_err(&self.shown, "fsync its directory"))?;
        // The old directory, now under the temporary name.
        Ok(Replaced {
            old: self.tmp.take(),
        })
    }

    /// A mount point cannot be renamed: its entries are moved out into a
    /// directory inside it, and the new ones in, one rename each (two for
    /// a bushy directory: `.layout` and `0x00`).
    fn install_inside(mut self) -> Result<Replaced> {
        let tmp = self.path().to_path_buf();
        let old = tempfile::Builder::new()
            .prefix(&format!("{INSIDE_PREFIX}old-"))
            .suffix(".tmp")
            .tempdir_in(&self.target)
            .map_err(io_err(&self.shown, "create a directory in"))?
            .keep();
        let ours = |name: &std::ffi::OsStr| {
            name.as_encoded_bytes()
                .starts_with(INSIDE_PREFIX.as_bytes())
        };
        let list = |dir: &Path| -> Result<Vec<std::ffi::OsString>> {
            Ok(fs::read_dir(dir)
                .map_err(io_err(&self.shown, "list"))?
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| !ours(n))
                .collect())
        };
        for name in list(&self.target)? {
            fs::rename(self.target.join(&name), old.join(&name))
                .map_err(io_err(&self.shown, "move aside an entry of"))?;
        }
        for name in list(&tmp)? {
            fs::rename(tmp.join(&name), self.target.join(&name))
                .map_err(io_err(&self.shown, "move in an entry of"))?;
        }
        crate::disk::atomic::sync_dir(&self.target).map_err(io_err(&self.shown, "fsync"))?;
        let _ = fs::remove_dir(&tmp);
        self.tmp = None;
        Ok(Replaced { old: Some(old) })
    }
}

impl Drop for NewBlobDir {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = remove_tree(&tmp);
        }
    }
}

/// Remove a directory tree whose directories may be read-only to us (ZODB
/// leaves blob files 0444; a removal needs write permission on the
/// directory only, which is granted first).
fn remove_tree(path: &Path) -> io::Result<()> {
    if let Err(first) = fs::remove_dir_all(path) {
        if first.kind() == io::ErrorKind::NotFound {
            return Ok(());
        }
        make_writable(path);
        return fs::remove_dir_all(path);
    }
    Ok(())
}

fn make_writable(path: &Path) {
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if m.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE));
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// What a blob directory holds, as [`InPlaceBlobDir::list`] finds it.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Regular files by their `/`-separated path inside, with their sizes.
    pub(crate) files: std::collections::HashMap<String, u64>,
    /// An entry that is neither a directory nor a regular file (a link, a
    /// FIFO), or whose name is no text, if any: such a directory is never
    /// changed in place.
    pub(crate) odd: Option<String>,
    /// The directories, by path inside.
    pub(crate) dirs: HashSet<String>,
    /// Temporary files a killed run of ours left.
    leftovers: Vec<String>,
}

/// Prefix and suffix of a blob file being added in place.
const ADDING_PREFIX: &str = ".repozo-";
const ADDING_SUFFIX: &str = ".tmp";

/// ZODB's directory of uncommitted blob files, at the top of a blob
/// directory: never ours to judge or change.
const ZODB_TMP: &str = "tmp";

/// A blob directory brought to another state where it is: files added and
/// removed one by one, each added file appearing whole under its name.
pub(crate) struct InPlaceBlobDir {
    path: PathBuf,
    shown: String,
    layout: Option<Layout>,
}

impl InPlaceBlobDir {
    /// The blob directory at `path`; `None` when there is no directory
    /// there (nothing to bring along).
    ///
    /// # Errors
    /// Its `.layout` cannot be read or names no layout ZODB knows.
    pub(crate) fn open(path: &Path) -> Result<Option<InPlaceBlobDir>> {
        let shown = path.to_string_lossy().into_owned();
        let Ok(target) = open::final_target(path) else {
            return Ok(None);
        };
        if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let dir = File::open(&target).map_err(io_err(&shown, "cannot open"))?;
        let layout = read_layout(&dir, &shown)?;
        Ok(Some(InPlaceBlobDir {
            path: target,
            shown,
            layout,
        }))
    }

    /// The layout its `.layout` names, if it has one.
    pub(crate) fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// The directory as shown in messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Every file below the directory, but for `.layout`, ZODB's `tmp`
    /// and what a recovery building a new directory inside it keeps there.
    /// No link is followed.
    ///
    /// # Errors
    /// A directory that cannot be listed.
    pub(crate) fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let mut todo = vec![String::new()];
        while let Some(rel) = todo.pop() {
            let here = if rel.is_empty() {
                self.path.clone()
            } else {
                self.path.join(&rel)
            };
            let entries = fs::read_dir(&here).map_err(io_err(&join(&self.shown, &rel), "list"))?;
            for e in entries {
                let e = e.map_err(io_err(&join(&self.shown, &rel), "list"))?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    if listing.odd.is_none() {
                        listing.odd = Some(join(&self.shown, &e.file_name().to_string_lossy()));
                    }
                    continue;
                };
                if rel.is_empty()
                    && (name == LAYOUT_FILE || name == ZODB_TMP || name.starts_with(INSIDE_PREFIX))
                {
                    continue;
                }
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let t = e
                    .file_type()
                    .map_err(io_err(&join(&self.shown, &path), "stat"))?;
                if t.is_dir() {
                    listing.dirs.insert(path.clone());
                    todo.push(path);
                } else if t.is_file()
                    && name.starts_with(ADDING_PREFIX)
                    && name.ends_with(ADDING_SUFFIX)
                {
                    listing.leftovers.push(path);
                } else if t.is_file() {
                    let m = e
                        .metadata()
                        .map_err(io_err(&join(&self.shown, &path), "stat"))?;
                    listing.files.insert(path, m.len());
                } else if listing.odd.is_none() {
                    listing.odd = Some(join(&self.shown, &path));
                }
            }
        }
        Ok(listing)
    }

    /// Remove the temporary files a killed run left (found by `list`).
    pub(crate) fn remove_leftovers(&self, listing: &Listing) {
        for rel in &listing.leftovers {
            let _ = fs::remove_file(self.path.join(rel));
        }
        // A killed `.layout` write's (the output's lock is held).
        crate::disk::atomic::remove_temporaries_of(&self.path.join(LAYOUT_FILE));
    }

    /// The md5 of the file at `rel`.
    ///
    /// # Errors
    /// It cannot be opened (no link followed) or read.
    pub(crate) fn md5(&self, rel: &str) -> Result<String> {
        let shown = join(&self.shown, rel);
        let dir = File::open(&self.path).map_err(io_err(&self.shown, "cannot open"))?;
        let mut f = open::open_regular_beneath(&dir, rel, &shown)?;
        Ok(copy_hashed(&mut f, &mut io::sink(), &shown, &shown)?.1)
    }

    /// Write `.layout` naming `layout`, as a recovered directory has it.
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn set_layout(&self, layout: Layout) -> Result<()> {
        // Whole or not at all: an empty `.layout` is one neither ZODB nor a
        // later run can read.
        let marker = join(&self.shown, LAYOUT_FILE);
        let mut f = crate::disk::atomic::AtomicFile::create(&self.path.join(LAYOUT_FILE), &marker)?;
        io::Write::write_all(f.file(), layout.name().as_bytes())
            .map_err(io_err(&marker, "write"))?;
        f.file().sync_all().map_err(io_err(&marker, "fsync"))?;
        f.commit(true)
    }

    /// The file at `rel` inside, as shown in messages.
    pub(crate) fn shown_file(&self, rel: &str) -> String {
        join(&self.shown, rel)
    }

    /// Copy `src` in as the file `rel` (made read-only, its directories
    /// private as ZODB makes them): written under a temporary name beside
    /// it and renamed, so that a kill never leaves a short blob file under
    /// a blob's name. It must be `size` bytes; with `md5`, the bytes must
    /// hash to it. Returns the size written.
    ///
    /// # Errors
    /// Reading (said against `src_shown`) or writing; [`Error::Mismatch`]
    /// for bytes that are not the ones backed up.
    pub(crate) fn add(
        &self,
        rel: &str,
        src: &mut File,
        src_shown: &str,
        size: u64,
        md5: Option<&str>,
    ) -> Result<u64> {
        let shown = join(&self.shown, rel);
        let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = self.path.join(dirs);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&parent)
            .map_err(io_err(&shown, "create the directory of"))?;
        let tmp = parent.join(format!("{ADDING_PREFIX}{name}{ADDING_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&shown, "create"))?;
        let copied = match md5 {
            None => io::copy(src, &mut out).map_err(|e| Error::Io {
                path: format!("{src_shown} -> {shown}"),
                action: "copy",
                source: e,
            }),
            Some(want) => copy_hashed(src, &mut out, src_shown, &shown).and_then(|(n, sum)| {
                if sum == want {
                    Ok(n)
                } else {
                    Err(Error::Mismatch(crate::error::Mismatch::Checksum {
                        path: src_shown.to_string(),
                        sum,
                        expected: want.to_string(),
                        gzip: false,
                    }))
                }
            }),
        };
        let copied = copied.and_then(|n| {
            if n == size {
                Ok(n)
            } else {
                Err(Error::Mismatch(crate::error::Mismatch::Size {
                    path: src_shown.to_string(),
                    size: n,
                    expected: size,
                    gzip: false,
                }))
            }
        });
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        out.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_err(&shown, "set permissions"))?;
        fs::rename(&tmp, parent.join(name)).map_err(io_err(&shown, "rename into place"))?;
        Ok(size)
    }

    /// Remove the file `rel`, and the directories it leaves empty.
    ///
    /// # Errors
    /// The file cannot be removed.
    pub(crate) fn remove(&self, rel: &str) -> Result<()> {
        let shown = join(&self.shown, rel);
        match fs::remove_file(self.path.join(rel)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&shown, "remove")(e)),
        }
        let mut dirs = rel;
        while let Some((up, _)) = dirs.rsplit_once('/') {
            if fs::remove_dir(self.path.join(up)).is_err() {
                break;
            }
            dirs = up;
        }
        Ok(())
    }

    /// Make what was added and removed durable.
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn sync(&self) -> Result<()> {
        let dir = File::open(&self.path).map_err(io_err(&self.shown, "open"))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err(&self.shown, "sync")(e.into()))
    }
}
