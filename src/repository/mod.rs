//! The backup repository: a directory of timestamped files, named and
//! chosen exactly as Python repozo names and chooses them.
//!
//! A full backup is `YYYY-MM-DD-hh-mm-ss.fs` (`.fsz` gzip'd), an incremental
//! `….deltafs` (`.deltafsz`); each has a `….index`. The full backup's
//! `….dat` log has one line per file of its chain:
//! `<repository as given>/<file name> <start> <end> <md5>`.

pub(crate) mod blobs;
pub(crate) mod data_reader;
pub mod lock;
pub(crate) mod repair;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::log;
use crate::log::Log;

/// Environment variable that fixes "now" (`YYYY-MM-DD-hh-mm-ss`, UTC), for
/// tests and for reproducing a run; Python repozo's tests patch its clock
/// the same way.
pub(crate) const NOW_ENV: &str = "REPOZO_TEST_NOW";

/// Format of a backup file's stem; lexical order is time order.
const STEM_FORMAT: &str = "%Y-%m-%d-%H-%M-%S";

/// A moment, to the second, in UTC: what a backup file's stem spells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(NaiveDateTime);

impl Timestamp {
    /// The current UTC time, or the one fixed by [`NOW_ENV`].
    ///
    /// # Errors
    /// [`crate::Error::Clock`] when [`NOW_ENV`] is set to something that is
    /// not a stem.
    pub(crate) fn now() -> crate::Result<Timestamp> {
        match std::env::var(NOW_ENV) {
            Ok(v) => Timestamp::parse_stem(&v).ok_or(crate::Error::Clock {
                variable: NOW_ENV,
                value: v,
            }),
            Err(_) => Ok(Timestamp(Utc::now().naive_utc())),
        }
    }

    /// Parse `YYYY-MM-DD-hh-mm-ss`.
    pub fn parse_stem(s: &str) -> Option<Timestamp> {
        if s.len() != 19 {
            return None;
        }
        NaiveDateTime::parse_from_str(s, STEM_FORMAT)
            .ok()
            .map(Timestamp)
    }

    /// Whether "now" is fixed by [`NOW_ENV`], so that waiting changes
    /// nothing.
    pub(crate) fn is_fixed() -> bool {
        std::env::var_os(NOW_ENV).is_some()
    }

    /// How long until the clock shows the next second.
    pub(crate) fn until_next_second(&self) -> std::time::Duration {
        let nanos = u64::from(self.0.and_utc().timestamp_subsec_nanos()).min(999_999_999);
        std::time::Duration::from_nanos(1_000_000_000 - nanos + 1_000_000)
    }

    /// How long after `earlier` this is (negative when before it).
    pub(crate) fn since(&self, earlier: &Timestamp) -> chrono::Duration {
        self.0 - earlier.0
    }

    /// The file name stem for this moment.
    pub(crate) fn stem(&self) -> String {
        self.0.format(STEM_FORMAT).to_string()
    }
}

/// Check a `-D` argument: `yyyy-mm-dd[-hh[-mm[-ss]]]`, a real UTC moment.
///
/// The string itself is what files are compared with, as in repozo: a file
/// is chosen when its stem sorts at or before it.
///
/// # Errors
/// A message naming the expected form.
pub fn parse_date(s: &str) -> Result<String, String> {
    match repozo_moment(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "invalid date {s:?}: expected yyyy-mm-dd[-hh[-mm[-ss]]] (UTC)"
        )),
    }
}

/// repozo's `yyyy-mm-dd[-hh[-mm[-ss]]]` as the UTC moment it names, if
/// it names a real one: 3 to 6 dash-separated fields of fixed width.
fn repozo_moment(s: &str) -> Option<NaiveDateTime> {
    let parts: Vec<&str> = s.split('-').collect();
    let widths = [4, 2, 2, 2, 2, 2];
    if parts.len() < 3
        || parts.len() > 6
        || parts
            .iter()
            .zip(widths)
            .any(|(p, w)| p.len() != w || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n: Vec<u32> = parts
        .iter()
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect();
    let field = |i: usize| n.get(i).copied().unwrap_or(0);
    NaiveDate::from_ymd_opt(i32::try_from(n[0]).ok()?, n[1], n[2])?.and_hms_opt(
        field(3),
        field(4),
        field(5),
    )
}

/// Read a UTC time as `--at`, `--since` and `--until` take it: ISO 8601
/// (`2024-03-05T14:02:59.250000Z`, with a `T` or a space, any fraction, a
/// `Z`, an offset that is converted to UTC, or no zone for UTC), or
/// repozo's `yyyy-mm-dd[-hh[-mm[-ss]]]`.
///
/// # Errors
/// A message naming the forms taken.
pub fn parse_utc(s: &str) -> Result<NaiveDateTime, String> {
    let bad = || {
        format!(
            "invalid time {s:?}: expected ISO 8601 in UTC (2024-03-05T14:02:59.250000Z) or yyyy-mm-dd[-hh[-mm[-ss]]]"
        )
    };
    let text = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.naive_utc());
    }
    let iso = text.replacen(' ', "T", 1);
    let no_zone = iso.strip_suffix('Z').unwrap_or(&iso);
    if let Ok(d) = DateTime::parse_from_rfc3339(&iso) {
        return Ok(d.naive_utc());
    }
    for form in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(no_zone, form) {
            return Ok(t);
        }
    }
    repozo_moment(text).ok_or_else(bad)
}

/// What a repository data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A full backup (`.fs`, `.fsz`).
    Full,
    /// An increment (`.deltafs`, `.deltafsz`).
    Incremental,
}

/// A data file's name, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataFile {
    /// `YYYY-MM-DD-hh-mm-ss`.
    pub stem: String,
    pub(crate) kind: Kind,
    pub(crate) gzip: bool,
}

impl DataFile {
    /// A new file's name.
    pub fn new(at: Timestamp, kind: Kind, gzip: bool) -> DataFile {
        DataFile {
            stem: at.stem(),
            kind,
            gzip,
        }
    }

    /// Recognise repozo's data file names (`\d{4}(-\d\d){5}\.(delta)?fsz?`).
    pub fn parse(name: &str) -> Option<DataFile> {
        let (stem, ext) = name.split_at_checked(19)?;
        let shape_ok = stem.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 10 | 13 | 16 => b == b'-',
            _ => b.is_ascii_digit(),
        });
        if !shape_ok {
            return None;
        }
        let (kind, gzip) = match ext {
            ".fs" => (Kind::Full, false),
            ".fsz" => (Kind::Full, true),
            ".deltafs" => (Kind::Incremental, false),
            ".deltafsz" => (Kind::Incremental, true),
            _ => return None,
        };
        Some(DataFile {
            stem: stem.to_string(),
            kind,
            gzip,
        })
    }

    /// The file name, `stem.ext`.
    pub fn name(&self) -> String {
        let ext = match (self.kind, self.gzip) {
            (Kind::Full, false) => "fs",
            (Kind::Full, true) => "fsz",
            (Kind::Incremental, false) => "deltafs",
            (Kind::Incremental, true) => "deltafsz",
        };
        format!("{}.{ext}", self.stem)
    }

    /// The `.index` file beside it.
    pub fn index_name(&self) -> String {
        format!("{}.index", self.stem)
    }

    /// The `.dat` file beside it (a full backup's log).
    pub(crate) fn dat_name(&self) -> String {
        format!("{}.dat", self.stem)
    }
}

impl fmt::Display for DataFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `os.path.join(repository, name)`: how repozo spells paths in messages and
/// in the `.dat` log.
pub(crate) fn join(repository: &str, name: &str) -> String {
    if repository.is_empty() || repository.ends_with('/') {
        format!("{repository}{name}")
    } else {
        format!("{repository}/{name}")
    }
}

/// A repository directory, with the path spelled as the user gave it.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    given: String,
}

/// A failure to read the repository or its `.dat` log.
#[derive(Debug)]
pub enum RepositoryError {
    /// An I/O error.
    Io {
        /// The file, as shown to the user.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The repository is not a directory.
    NotADirectory {
        /// The repository, as given.
        path: String,
    },
    /// A `.dat` line that is not `name start end md5`.
    BadDatLine {
        /// The file, as shown to the user.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for RepositoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryError::Io { path, source } => write!(f, "{path}: {source}"),
            RepositoryError::NotADirectory { path } => {
                write!(f, "{path}: repository is not a directory")
            }
            RepositoryError::BadDatLine { path, line, reason } => {
                write!(f, "{path}: line {line}: {reason}")
            }
        }
    }
}

impl std::error::Error for RepositoryError {}

/// One line of a `.dat` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatEntry {
    /// The path as written, `<repository as given>/<file name>`.
    pub path: String,
    /// Where in Data.fs its bytes start.
    pub start: u64,
    /// Where in Data.fs its bytes end.
    pub end: u64,
    /// Lowercase hex md5 of the uncompressed bytes.
    pub md5: String,
}

impl DatEntry {
    /// The file's base name: the only part ever opened, inside the
    /// repository, whatever directory the line names.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Bytes of Data.fs the file holds.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// The line as repozo prints it.
    pub fn line(&self) -> String {
        format!("{} {} {} {}\n", self.path, self.start, self.end, self.md5)
    }
}

impl Repository {
    /// A repository at `given`; nothing is touched yet.
    pub fn new(given: &str) -> Repository {
        Repository {
            given: given.to_string(),
        }
    }

    /// The path as the user spelled it.
    pub(crate) fn given(&self) -> &str {
        &self.given
    }

    /// A file inside the repository. Private to this module and its
    /// children: everything else opens repository files through the
    /// methods below, which refuse what is not a regular file.
    fn path(&self, name: &str) -> PathBuf {
        if self.given.is_empty() {
            PathBuf::from(name)
        } else {
            Path::new(&self.given).join(name)
        }
    }

    /// Open the repository file `name` for reading: a regular file only,
    /// never blocking on a FIFO planted under that name. Commands open
    /// repository files through here and [`Repository::reader`] alone.
    ///
    /// # Errors
    /// The file is missing, unreadable, or not a regular file.
    pub(crate) fn open(&self, name: &str) -> crate::Result<fs::File> {
        crate::disk::open::open_regular(&self.path(name), &self.display(name))
    }

    /// The whole of the repository file `name`, as [`Repository::open`].
    ///
    /// # Errors
    /// As [`Repository::open`], and read errors.
    pub(crate) fn read(&self, name: &str) -> crate::Result<Vec<u8>> {
        crate::disk::open::read_regular(&self.path(name), &self.display(name))
    }

    /// The Data.fs bytes the backup file `name` holds, inflated if `gzip`.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub(crate) fn reader(&self, name: &str, gzip: bool) -> crate::Result<data_reader::DataReader> {
        data_reader::DataReader::open(&self.path(name), &self.display(name), gzip)
    }

    /// A new repository file `name`, written under a temporary name until
    /// committed.
    ///
    /// # Errors
    /// The directory is missing or not writable.
    pub(crate) fn create(&self, name: &str) -> crate::Result<crate::disk::atomic::AtomicFile> {
        crate::disk::atomic::AtomicFile::create(&self.path(name), &self.display(name))
    }

    /// The repository directory, opened to commit renames in it.
    ///
    /// # Errors
    /// It cannot be opened.
    pub(crate) fn open_dir(&self) -> crate::Result<fs::File> {
        fs::File::open(self.dir()).map_err(crate::error::io_err(&self.given, "open"))
    }

    /// What `name` is, links not followed; `None` when there is nothing.
    pub(crate) fn entry(&self, name: &str) -> Option<fs::Metadata> {
        fs::symlink_metadata(self.path(name)).ok()
    }

    /// Remove `name` (a link itself, never its target).
    ///
    /// # Errors
    /// It cannot be removed.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    /// `os.path.join(repository, name)` for messages and `.dat` lines.
    pub(crate) fn display(&self, name: &str) -> String {
        join(&self.given, name)
    }

    /// The directory, `.` for an empty path.
    pub(crate) fn dir(&self) -> &Path {
        if self.given.is_empty() {
            Path::new(".")
        } else {
            Path::new(&self.given)
        }
    }

    fn io_err(&self, path: impl Into<String>) -> impl FnOnce(io::Error) -> RepositoryError {
        let path = path.into();
        move |source| RepositoryError::Io { path, source }
    }

    /// Fail unless the repository is an existing directory.
    ///
    /// # Errors
    /// It is missing, unreadable or not a directory.
    pub(crate) fn check_dir(&self) -> Result<(), RepositoryError> {
        let meta = fs::metadata(self.dir()).map_err(self.io_err(self.given.clone()))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(RepositoryError::NotADirectory {
                path: self.given.clone(),
            })
        }
    }

    /// Bytes of every regular file in the repository, its blob pool
    /// included (links not followed), and every name at its top that is
    /// text.
    ///
    /// # Errors
    /// As [`Repository::data_files`].
    pub(crate) fn usage(&self) -> Result<(u64, Vec<String>), RepositoryError> {
        fn walk(dir: &Path, total: &mut u64) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), total),
                    Ok(t) if t.is_file() => {
                        *total += e.metadata().map_or(0, |m| m.len());
                    }
                    _ => {}
                }
            }
        }
        let names = self.names()?;
        let mut total = 0;
        walk(self.dir(), &mut total);
        Ok((total, names))
    }

    /// All data files, oldest first.
    ///
    /// # Errors
    /// The repository is missing, unreadable or not a directory.
    pub(crate) fn data_files(&self) -> Result<Vec<DataFile>, RepositoryError> {
        let mut files: Vec<DataFile> = self
            .names()?
            .iter()
            .filter_map(|n| DataFile::parse(n))
            .collect();
        files.sort_by_cached_key(DataFile::name);
        Ok(files)
    }

    /// Every name in the repository that is text (ours all are).
    fn names(&self) -> Result<Vec<String>, RepositoryError> {
        self.check_dir()?;
        let mut names = Vec::new();
        for entry in fs::read_dir(self.dir()).map_err(self.io_err(self.given.clone()))? {
            let entry = entry.map_err(self.io_err(self.given.clone()))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Files that a repair set aside: `<name>.orphaned` and
    /// `<name>.orphaned.N`.
    ///
    /// # Errors
    /// As [`Repository::data_files`].
    pub(crate) fn set_aside_files(&self) -> Result<Vec<String>, RepositoryError> {
        Ok(self
            .names()?
            .into_iter()
            .filter(|n| {
                let Some((_, tail)) = n.split_once(".orphaned") else {
                    return false;
                };
                tail.is_empty()
                    || tail
                        .strip_prefix('.')
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect())
    }

    /// repozo's `find_files`: the newest full backup whose stem sorts at or
    /// before `when`, and the increments after it up to `when`, oldest first.
    ///
    /// # Errors
    /// As [`Repository::data_files`].
    pub(crate) fn chain_until(&self, when: &str) -> Result<Vec<DataFile>, RepositoryError> {
        let mut needed = Vec::new();
        for f in self.data_files()?.into_iter().rev() {
            if f.stem.as_str() <= when {
                let full = f.kind == Kind::Full;
                needed.push(f);
                if full {
                    break;
                }
            }
        }
        needed.reverse();
        Ok(needed)
    }

    /// [`Repository::chain_until`] with repozo's verbose messages.
    ///
    /// # Errors
    /// As [`Repository::data_files`].
    pub(crate) fn find_files(
        &self,
        when: &str,
        log: &Log,
    ) -> Result<Vec<DataFile>, RepositoryError> {
        log!(
            log,
            "looking for files between last full backup and {when}..."
        );
        let needed = self.chain_until(when)?;
        if needed.is_empty() {
            log!(log, "no files found");
        } else {
            log!(log, "files needed to recover state as of {when}:");
            for f in &needed {
                log!(log, "\t{}", self.display(&f.name()));
            }
        }
        Ok(needed)
    }

    /// Read a full backup's `.dat` log; `None` when it does not exist.
    ///
    /// # Errors
    /// I/O errors, or a line that is not `name start end md5`.
    pub(crate) fn read_dat(&self, full: &DataFile) -> crate::Result<Option<Vec<DatEntry>>> {
        match self.read_dat_required(full) {
            Err(crate::Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Read a full backup's `.dat` log, which must exist.
    ///
    /// # Errors
    /// As [`Repository::read_dat`], and the log missing.
    pub(crate) fn read_dat_required(&self, full: &DataFile) -> crate::Result<Vec<DatEntry>> {
        let name = full.dat_name();
        let shown = self.display(&name);
        let text = crate::disk::open::read_regular(&self.path(&name), &shown)?;
        Ok(parse_dat(&text, &shown)?)
    }
}

/// `text` (trimmed) split at its last separator: what comes before (trimmed)
/// and the last field; no separator gives an empty rest.
fn last_field(text: &str, is_sep: impl Fn(char) -> bool) -> (&str, &str) {
    match text.rfind(&is_sep) {
        Some(i) => {
            let sep_len = text[i..].chars().next().map_or(1, char::len_utf8);
            (text[..i].trim_end_matches(&is_sep), &text[i + sep_len..])
        }
        None => ("", text),
    }
}

/// Parse a `.dat` log's bytes (`shown` names it in errors): one
/// `name start end md5` line per file; blank lines are skipped.
///
/// # Errors
/// [`RepositoryError::BadDatLine`] naming the line.
pub fn parse_dat(text: &[u8], shown: &str) -> Result<Vec<DatEntry>, RepositoryError> {
    let mut entries = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        entries.extend(parse_dat_line(line, shown, i + 1)?);
    }
    Ok(entries)
}

/// Parse line `number` (from 1) of a `.dat` log; `None` for a blank line.
///
/// # Errors
/// [`RepositoryError::BadDatLine`] naming the line.
pub(crate) fn parse_dat_line(
    line: &[u8],
    shown: &str,
    number: usize,
) -> Result<Option<DatEntry>, RepositoryError> {
    let bad = |reason: String| RepositoryError::BadDatLine {
        path: shown.to_string(),
        line: number,
        reason,
    };
    let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8 text".into()))?;
    // Python's str.split() also splits at the separators \x1c-\x1f.
    let is_sep = |c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
    let text = text.trim_matches(is_sep);
    // A trailing blank line is what a crash mid-append can leave.
    if text.is_empty() {
        return Ok(None);
    }
    // The path is the repository as the user spelled it, spaces and tabs
    // included: the three numbers are taken from the right.
    let (rest, md5) = last_field(text, is_sep);
    let (rest, end) = last_field(rest, is_sep);
    let (path, start) = last_field(rest, is_sep);
    if path.is_empty() {
        let found = text.split(is_sep).filter(|f| !f.is_empty()).count();
        return Err(bad(format!(
            "expected 4 fields (file start end md5), found {found}"
        )));
    }
    let num = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(format!("{what} {s:?} is not a number")))
    };
    let (start, end) = (num(start, "start")?, num(end, "end")?);
    if end < start {
        return Err(bad(format!("end {end} is before start {start}")));
    }
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("{md5:?} is not an md5 checksum")));
    }
    Ok(Some(DatEntry {
        path: path.to_string(),
        start,
        end,
        md5: md5.to_ascii_lowercase(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_are_utc() {
        let utc = |s: &str| parse_utc(s).unwrap();
        let want = utc("2024-03-05T14:02:59Z");
        for s in [
            "2024-03-05T14:02:59",
            "2024-03-05 14:02:59",
            "2024-03-05T16:02:59+02:00",
            "2024-03-05 14:02:59Z",
            "2024-03-05-14-02-59",
        ] {
            assert_eq!(utc(s), want, "{s}");
        }
        assert_eq!(
            utc("2024-03-05T14:02:59.25")
                .and_utc()
                .timestamp_subsec_micros(),
            250_000
        );
        assert_eq!(utc("2024-03-05"), utc("2024-03-05T00:00:00Z"));
        assert_eq!(utc("2024-03-05-14"), utc("2024-03-05T14:00:00Z"));
        for s in [
            "yesterday",
            "2024-02-30",
            "2024-03-05T25:00:00Z",
            "",
            "2024-3-5",
        ] {
            assert!(parse_utc(s).unwrap_err().contains("invalid time"), "{s}");
        }
    }

    #[test]
    fn recognises_repozo_names_only() {
        let f = DataFile::parse("2010-05-14-10-20-30.deltafsz").unwrap();
        assert_eq!((f.kind, f.gzip), (Kind::Incremental, true));
        assert_eq!(f.name(), "2010-05-14-10-20-30.deltafsz");
        assert_eq!(f.index_name(), "2010-05-14-10-20-30.index");
        for bad in [
            "2010-05-14-10-20-30.dat",
            "2010-05-14-10-20-30.fs.bak",
            "2010-05-14-10-20.fs",
            "x010-05-14-10-20-30.fs",
            "2010_05-14-10-20-30.fs",
            "tmp.tmp",
            "",
        ] {
            assert_eq!(DataFile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_checked_but_compared_as_strings() {
        assert_eq!(parse_date("2010-05-14").unwrap(), "2010-05-14");
        assert!(parse_date("2010-05-14-23-59-59").is_ok());
        for bad in [
            "2010",
            "2010-5-14",
            "2010-02-30",
            "2010-05-14-24",
            "yesterday",
            "2010-05-14-10-20-30-1",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        // A backup made during 2010-05-14 sorts after "2010-05-14".
        assert!("2010-05-14-10-00-00" > "2010-05-14");
    }

    #[test]
    fn joins_like_os_path_join() {
        assert_eq!(join("/backups", "a.fs"), "/backups/a.fs");
        assert_eq!(join("/backups/", "a.fs"), "/backups/a.fs");
        assert_eq!(join("", "a.fs"), "a.fs");
    }

    #[test]
    fn only_the_base_name_of_a_dat_path_is_used() {
        let e = DatEntry {
            path: "../../etc/passwd".into(),
            start: 0,
            end: 4,
            md5: "0".repeat(32),
        };
        assert_eq!(e.file_name(), "passwd");
    }

    /// Regression: a repository path with a space made every `.dat` line
    /// five fields, and the repository unusable after its first backup.
    #[test]
    fn regression_paths_with_spaces_and_tabs_keep_their_numbers() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        for path in [
            "my repo/2024-01-01-10-00-00.fs",
            "a\tb  c /2024-01-01-10-00-00.fs",
        ] {
            let line = format!("{path} 0 4 {md5}\n");
            let e = parse_dat(line.as_bytes(), "x.dat").unwrap();
            assert_eq!(e[0].path, path);
            assert_eq!((e[0].start, e[0].end), (0, 4));
            assert_eq!(e[0].file_name(), "2024-01-01-10-00-00.fs");
        }
        for (bad, found) in [("a 1 2\n", 3), ("1 2\n", 2), ("x\n", 1)] {
            let err = parse_dat(bad.as_bytes(), "x.dat").unwrap_err().to_string();
            assert_eq!(
                err,
                format!("x.dat: line 1: expected 4 fields (file start end md5), found {found}")
            );
        }
    }
}
