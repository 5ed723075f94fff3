//! Blob files in the repository: one manifest per backup and a pool that
//! holds each blob file once, however many backups need it.
//!
//! `<stem>.blobs` lists the blob records of its backup's Data.fs range, in
//! file order: a first line `repozo-blobs 1`, then `layout bushy|lawn`, then
//! `<oid> <tid> <size> <md5>` (16 hex digits each for oid and tid) per
//! record, or `<oid> <tid> missing` for a record whose file was not in the
//! blob directory. The pool is `blobs/<last oid byte>/<oid>-<tid>-<md5>.blob`:
//! the name says what the file holds, so a file is never replaced by other
//! bytes, and a backup whose blob is already pooled under its oid, tid and
//! size does not copy or read it again.
//!
//! Written in this order: pool files (temporary names, one `syncfs`,
//! renames, directory fsyncs), then the manifest beside the data file, then
//! the `.dat` line; so a manifest only names pooled files, and a crash
//! leaves at worst pool files no manifest names, which the next garbage
//! collection removes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::codec::md5::copy_hashed;
use crate::disk::atomic::{is_recent, TEMP_PREFIX, TEMP_SUFFIX};
use crate::error::{io_err, Error, Result};
use crate::filestorage::blob::Layout;
use crate::log;
use crate::log::Log;
use crate::repository::{DataFile, Repository, RepositoryError};

/// The pool directory inside the repository.
pub(crate) const POOL: &str = "blobs";
/// The manifest's extension.
pub(crate) const MANIFEST_EXT: &str = "blobs";
const HEADER: &str = "repozo-blobs 1";

/// What a backup recorded of one blob record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobEntry {
    pub(crate) oid: u64,
    pub(crate) tid: u64,
    /// `None`: the file was missing from the blob directory.
    pub(crate) stored: Option<Stored>,
}

/// A pooled blob file: its size and md5.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Stored {
    pub(crate) size: u64,
    pub(crate) md5: String,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) layout: Layout,
    pub(crate) entries: Vec<BlobEntry>,
}

impl Manifest {
    /// The manifest as written.
    pub(crate) fn text(&self) -> String {
        let mut s = format!("{HEADER}\nlayout {}\n", self.layout);
        for e in &self.entries {
            let _ = match &e.stored {
                Some(st) => writeln!(s, "{:016x} {:016x} {} {}", e.oid, e.tid, st.size, st.md5),
                None => writeln!(s, "{:016x} {:016x} missing", e.oid, e.tid),
            };
        }
        let _ = writeln!(s, "end {}", self.entries.len());
        s
    }

    /// Read a manifest; `shown` names it in errors.
    ///
    /// # Errors
    /// [`RepositoryError::BadDatLine`] for a line that is not one of ours.
    pub(crate) fn parse(
        text: &[u8],
        shown: &str,
    ) -> std::result::Result<Manifest, RepositoryError> {
        let bad = |line: usize, reason: &str| RepositoryError::BadDatLine {
            path: shown.to_string(),
            line,
            reason: reason.to_string(),
        };
        let text = std::str::from_utf8(text).map_err(|_| bad(1, "not text"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(bad(1, "not a repozo blob manifest"));
        }
        let layout = lines
            .next()
            .and_then(|l| l.strip_prefix("layout "))
            .and_then(Layout::parse)
            .ok_or_else(|| bad(2, "expected `layout bushy` or `layout lawn`"))?;
        let mut entries = Vec::new();
        let mut ended = false;
        for (i, line) in lines.enumerate() {
            let n = i + 3;
            if ended {
                return Err(bad(n, "a line after the end"));
            }
            if let Some(count) = line.strip_prefix("end ") {
                if count.parse() != Ok(entries.len()) {
                    return Err(bad(n, "the end line does not count the lines before it"));
                }
                ended = true;
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let num = |s: &str| {
                (s.len() == 16)
                    .then(|| u64::from_str_radix(s, 16).ok())
                    .flatten()
                    .ok_or_else(|| bad(n, "oid and tid must be 16 hex digits"))
            };
            let stored = match f[..] {
                [_, _, "missing"] => None,
                [_, _, size, md5]
                    if md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    Some(Stored {
                        size: size.parse().map_err(|_| bad(n, "bad size"))?,
                        md5: md5.to_ascii_lowercase(),
                    })
                }
                _ => return Err(bad(n, "expected `<oid> <tid> <size> <md5>`")),
            };
            entries.push(BlobEntry {
                oid: num(f[0])?,
                tid: num(f[1])?,
                stored,
            });
        }
        if !ended {
            // Cut short: the blobs of the lost lines would go unnoticed.
            return Err(bad(
                entries.len() + 3,
                "no end line: the manifest was cut short",
            ));
        }
        Ok(Manifest { layout, entries })
    }
}

/// The pool file of a blob: `blobs/<xx>/<oid>-<tid>-<md5>.blob`.
pub(crate) fn pool_name(oid: u64, tid: u64, md5: &str) -> String {
    format!("{POOL}/{:02x}/{oid:016x}-{tid:016x}-{md5}.blob", oid & 0xff)
}

impl DataFile {
    /// The blob manifest beside it.
    pub(crate) fn blobs_name(&self) -> String {
        format!("{}.{MANIFEST_EXT}", self.stem)
    }
}

impl Repository {
    /// The manifest of `f`, `None` when it has none (a backup made without
    /// `--blob-dir`, or by Python repozo).
    ///
    /// # Errors
    /// It cannot be read or is damaged.
    pub(crate) fn read_manifest(&self, f: &DataFile) -> Result<Option<Manifest>> {
        let name = f.blobs_name();
        let shown = self.display(&name);
        match self.read(&name) {
            Ok(text) => Ok(Some(Manifest::parse(&text, &shown)?)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open the pooled file of `e`.
    ///
    /// # Errors
    /// It is missing or not a regular file.
    pub(crate) fn open_pooled(&self, e: &BlobEntry, st: &Stored) -> Result<File> {
        let name = pool_name(e.oid, e.tid, &st.md5);
        // No link is followed: a pool file is ours, never a way out.
        let dir = self.open_dir()?;
        crate::disk::open::open_regular_beneath(&dir, &name, &self.display(&name))
    }

    /// The size of a pooled file, if it is there as a regular file.
    pub(crate) fn pooled_size(&self, oid: u64, tid: u64, st: &Stored) -> Option<u64> {
        self.entry(&pool_name(oid, tid, &st.md5))
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// The pooled file of `e` as shown in messages.
    pub(crate) fn display_pooled(&self, e: &BlobEntry, st: &Stored) -> String {
        self.display(&pool_name(e.oid, e.tid, &st.md5))
    }

    /// Start storing blob files in the pool.
    /// `permissions` are the bits every stored file gets (Data.fs's, as
    /// the data files do, so that whoever may recover may read them).
    pub(crate) fn pool_writer(&self, permissions: fs::Permissions) -> PoolWriter<'_> {
        PoolWriter {
            repo: self,
            pending: Vec::new(),
            permissions,
            dirs: BTreeSet::new(),
        }
    }

    /// Give the pool directory a fresh modification time.
    ///
    /// collective.recipe.backup's cleanup removes every entry of the
    /// repository older than the oldest full backup it keeps, with
    /// `os.remove`, which fails on a directory and ends the cleanup: the
    /// pool must always look as new as the newest backup.
    pub(crate) fn touch_pool(&self) {
        let now = fs::FileTimes::new().set_modified(SystemTime::now());
        if let Ok(d) = File::open(self.path(POOL)) {
            let _ = d.set_times(now);
        }
    }

    /// Remove manifests without their data file, pool files that no
    /// remaining manifest names, and pool temporaries of interrupted runs
    /// once they are [`TEMP_GRACE`] old. The caller holds the exclusive
    /// lock, so no backup is storing files meanwhile.
    ///
    /// # Errors
    /// The repository or a manifest cannot be read; a removal that fails is
    /// said on stderr, not fatal.
    pub(crate) fn collect_blob_garbage(&self, log: &Log) -> Result<()> {
        let files = self.data_files()?;
        let data: HashSet<&str> = files.iter().map(|f| f.stem.as_str()).collect();
        for name in self.names()? {
            if manifest_stem(&name).is_some_and(|s| !data.contains(s)) {
                log!(log, "removing {}: its backup is gone", self.display(&name));
                self.remove_or_say(&name, log);
            }
        }
        let mut wanted = HashSet::new();
        for f in &files {
            let Some(m) = self.read_manifest(f)? else {
                continue;
            };
            for e in &m.entries {
                if let Some(st) = &e.stored {
                    wanted.insert(pool_name(e.oid, e.tid, &st.md5));
                }
            }
        }
        let Ok(dirs) = fs::read_dir(self.path(POOL)) else {
            return Ok(());
        };
        let mut removed = 0u64;
        for d in dirs.flatten() {
            let Some(sub) = d.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !d.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let Some(file) = f.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let name = format!("{POOL}/{sub}/{file}");
                let temporary = file.starts_with(TEMP_PREFIX) && file.ends_with(TEMP_SUFFIX);
                if wanted.contains(&name) || !(temporary || file.ends_with(".blob")) {
                    continue;
                }
                if temporary && is_recent(&f, TEMP_GRACE) {
                    continue;
                }
                self.remove_or_say(&name, log);
                removed += 1;
            }
        }
        if removed > 0 {
            log!(log, "removed {removed} blob files that no backup needs");
        }
        Ok(())
    }

    fn remove_or_say(&self, name: &str, log: &Log) {
        match self.remove(name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log.notice(format_args!("{}", io_err(&self.display(name), "remove")(e))),
        }
    }
}

/// The stem of a manifest's name.
pub(crate) fn manifest_stem(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(MANIFEST_EXT)?.strip_suffix('.')?;
    DataFile::parse(&format!("{stem}.fs")).map(|_| stem)
}

/// Temporaries younger than this may be a live run's.
const TEMP_GRACE: Duration = Duration::from_secs(600);

/// Blob files on their way into the pool.
pub(crate) struct PoolWriter<'a> {
    repo: &'a Repository,
    /// Written and closed, under temporary names, with their final names
    /// and sizes.
    pending: Vec<(tempfile::TempPath, String, u64)>,
    /// The permission bits pool files get.
    permissions: fs::Permissions,
    /// Pool subdirectories written to.
    dirs: BTreeSet<String>,
}

impl PoolWriter<'_> {
    /// Copy `src` (shown as `shown`) into the pool as the blob `oid`
    /// written by `tid`, hashing what is copied. Its final name depends on
    /// the md5, so the file is named at [`PoolWriter::commit`].
    ///
    /// # Errors
    /// Reading `src` (said against `shown`) or writing the pool.
    pub(crate) fn store(
        &mut self,
        src: &mut File,
        shown: &str,
        oid: u64,
        tid: u64,
    ) -> Result<Stored> {
        let sub = format!("{POOL}/{:02x}", oid & 0xff);
        if !self.dirs.contains(&sub) {
            fs::create_dir_all(self.repo.path(&sub))
                .map_err(io_err(&self.repo.display(&sub), "create"))?;
            self.dirs.insert(sub.clone());
        }
        let dir_shown = self.repo.display(&sub);
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(self.repo.path(&sub))
            .map_err(io_err(&dir_shown, "create a temporary file in"))?;
        let (size, md5) = copy_hashed(src, tmp.as_file_mut(), shown, &dir_shown)?;
        tmp.as_file()
            .set_permissions(self.permissions.clone())
            .map_err(io_err(&dir_shown, "set permissions in"))?;
        let name = pool_name(oid, tid, &md5);
        self.pending.push((tmp.into_temp_path(), name, size));
        Ok(Stored { size, md5 })
    }

    /// How many files are waiting to be named.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Make every stored file durable and give it its name: one `syncfs`
    /// for all their bytes (an fsync each would cost a disk flush per
    /// file), the renames, then an fsync of each directory renamed into.
    /// A name that exists already holds the same bytes (the name is their
    /// md5): the copy is dropped, unless the file there is damaged.
    ///
    /// # Errors
    /// I/O errors; the temporaries are removed.
    pub(crate) fn commit(self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pool_shown = self.repo.display(POOL);
        let pool = File::open(self.repo.path(POOL)).map_err(io_err(&pool_shown, "open"))?;
        rustix::fs::syncfs(&pool).map_err(|e| io_err(&pool_shown, "sync")(e.into()))?;
        for (tmp, name, size) in self.pending {
            let dest: PathBuf = self.repo.path(&name);
            let shown = self.repo.display(&name);
            let tmp = match tmp.persist_noclobber(&dest) {
                Ok(()) => continue,
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => e.path,
                Err(e) => return Err(io_err(&shown, "rename into place")(e.error)),
            };
            // The same name holds the same bytes, unless it was damaged
            // (cut short, or not a regular file): then it is replaced.
            let sound = fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size);
            if !sound {
                tmp.persist(&dest)
                    .map_err(|e| io_err(&shown, "rename into place")(e.error))?;
            }
        }
        for d in &self.dirs {
            crate::disk::atomic::sync_dir(&self.repo.path(d))
                .map_err(io_err(&self.repo.display(d), "fsync"))?;
        }
        pool.sync_all().map_err(io_err(&pool_shown, "fsync"))
    }
}

/// What the repository already holds: `(oid, tid)` to the pooled files
/// recorded for it, as the manifests say.
pub(crate) type Known = HashMap<(u64, u64), Vec<Stored>>;

/// [`Known`] from `manifests`, as read (those of the newest chain: a
/// nightly increment's blobs are new, and a full backup after a pack keeps
/// most of that chain's). A blob pooled by an older chain only is copied
/// again and found to be there when it is named.
pub(crate) fn known(manifests: &[Result<Option<Manifest>>], log: &Log) -> Known {
    let mut known: Known = HashMap::new();
    for m in manifests {
        let m = match m {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            // Its blobs are copied again: a damaged manifest must not
            // stop the backup that replaces its chain.
            Err(e) => {
                log.notice(format_args!("{e}: its blob files are not taken as pooled"));
                continue;
            }
        };
        for e in &m.entries {
            if let Some(st) = e.stored.clone() {
                let list = known.entry((e.oid, e.tid)).or_default();
                if !list.contains(&st) {
                    list.push(st);
                }
            }
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_read_back_what_was_written() {
        let m = Manifest {
            layout: Layout::Lawn,
            entries: vec![
                BlobEntry {
                    oid: 7,
                    tid: 0x03e5_0000_0000_0001,
                    stored: Some(Stored {
                        size: 12,
                        md5: "0123456789abcdef0123456789abcdef".into(),
                    }),
                },
                BlobEntry {
                    oid: 8,
                    tid: 9,
                    stored: None,
                },
            ],
        };
        let text = m.text();
        assert_eq!(
            text,
            "repozo-blobs 1\nlayout lawn\n0000000000000007 03e5000000000001 12 \
             0123456789abcdef0123456789abcdef\n0000000000000008 0000000000000009 missing\nend 2\n"
        );
        assert_eq!(Manifest::parse(text.as_bytes(), "m").unwrap(), m);
        for bad in [
            "",
            "repozo-blobs 2\nlayout bushy\n",
            "repozo-blobs 1\nlayout tree\n",
            "repozo-blobs 1\nlayout bushy\n7 9 missing\n",
            "repozo-blobs 1\nlayout bushy\n0000000000000007 0000000000000009 x y\n",
            "repozo-blobs 1\nlayout bushy\n0000000000000007 0000000000000009 missing\n",
            "repozo-blobs 1\nlayout bushy\n0000000000000007 0000000000000009 missing\nend 2\n",
            "repozo-blobs 1\nlayout bushy\nend 0\nend 0\n",
        ] {
            assert!(Manifest::parse(bad.as_bytes(), "m").is_err(), "{bad:?}");
        }
        assert_eq!(
            manifest_stem("2024-01-02-03-04-05.blobs"),
            Some("2024-01-02-03-04-05")
        );
        assert_eq!(manifest_stem("blobs"), None);
        assert_eq!(
            pool_name(0x1ff, 2, "ab"),
            "blobs/ff/00000000000001ff-0000000000000002-ab.blob"
        );
    }
}
