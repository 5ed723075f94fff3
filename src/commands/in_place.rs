//! `-R -o FILE` onto an existing FILE: brought to the state asked for
//! where it is, instead of rewritten.
//!
//! A standby Data.fs recovered last night is the chain's prefix up to some
//! backup's end: the night's increments are appended to it. One recovered
//! for a later date than asked (a rollback) is truncated to the earlier
//! backup's end. Either only after the bytes FILE keeps are shown to be the
//! chain's (the md5 of each `.dat` range, or of the last with `-Q`); any
//! doubt, and the caller does a full recovery as before.
//!
//! Crash safety: `FILE.index` is removed and `FILE.recovering` written
//! before FILE changes. A run that finds that marker takes FILE's length as
//! the last backup end not above it, and checks every range appended since
//! the marker was first written, so a kill at any point is finished by the
//! next run. ZODB's own lock, `FILE.lock`, is held meanwhile: a ZODB
//! starting on FILE fails instead of reading it half written, and FILE is
//! never changed under a running one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::blobdir::{InPlaceBlobDir, Listing};
use crate::codec::md5::{Md5, Md5Thread, THREADED_FROM};
use crate::disk::atomic::{sync_dir, AtomicFile};
use crate::disk::open;
use crate::error::{io_err, Error, Refusal, Result};
use crate::filestorage::blob::Layout;
use crate::filestorage::timestamp::tid_hex;
use crate::log;
use crate::log::Log;
use crate::repository::blobs::{BlobEntry, Manifest};
use crate::repository::{DatEntry, Repository};
use crate::{at_most, read_full, CHUNK};

use super::history;
use super::recover::{concat_sizes, new_index, Cut, Out, Piece, Recovered};

/// The marker's name beside FILE, and its first line.
pub(crate) const MARKER_EXT: &str = "recovering";
const MARKER_HEADER: &str = "repozo in-place recovery";

/// What an in-place recovery needs to know.
pub(crate) struct Job<'a> {
    pub(crate) repo: &'a Repository,
    /// The chain for the date, as recover found it.
    pub(crate) chain: &'a [Piece],
    /// Every line of the chain's `.dat` log, also those after the date;
    /// `None` when the chain was not taken from one.
    pub(crate) dat: Option<&'a [DatEntry]>,
    /// The file `-o` leads to, and how it is shown.
    pub(crate) output: &'a Path,
    pub(crate) shown: &'a str,
    /// `-Q`: check only the last range FILE keeps.
    pub(crate) quick: bool,
    /// `-w`: the `.dat` log's sizes and sums, to check appended files.
    pub(crate) truth: Option<&'a HashMap<String, (u64, String)>>,
    pub(crate) blob_dir: Option<&'a Path>,
    /// ZODB's locks, taken by the caller.
    pub(crate) locks: &'a OutputLocks,
    /// `--at`: the chain's last file is cut after this transaction.
    pub(crate) cut: Option<&'a Cut>,
}

/// ZODB's locks on an existing output (`<name>.lock`, by the name `-o`
/// gives and by the name of the file it leads to, since a ZODB may have
/// opened it by either), held for the whole recovery: a ZODB starting on
/// the output then fails to lock it instead of reading it half written.
pub(crate) struct OutputLocks {
    _held: Vec<File>,
    /// Why a lock could not be taken (no lock file can be made there):
    /// the output is then not changed in place.
    missing: Option<String>,
    /// A process reading the output: it is then not changed in place.
    reader: Option<String>,
}

/// Take ZODB's locks on the existing output `target`, shown as `shown`,
/// which `-o given` names, and look for processes that have it open.
/// The locks are taken as zc.lockfile takes them, and left behind as it
/// leaves them: removing one would let a ZODB lock the removed file while
/// another locks a new one.
///
/// # Errors
/// [`Refusal::InUse`]: a lock is held, by a running ZODB or another
/// recovery; [`Refusal::Written`]: a process has the output open for
/// writing. Their file must not be replaced or changed under them. A lock
/// file that cannot be opened leaves that unknown, and is an error too.
pub(crate) fn lock_output(given: &str, target: &Path, shown: &str) -> Result<OutputLocks> {
    let mut locks = OutputLocks {
        _held: Vec::new(),
        missing: None,
        reader: None,
    };
    let mut names = vec![(with_ext(Path::new(given), "lock"), format!("{given}.lock"))];
    let at_target = (with_ext(target, "lock"), format!("{shown}.lock"));
    if !open::same_file(
        open::parent_dir(&names[0].0),
        open::parent_dir(&at_target.0),
    ) || names[0].0.file_name() != at_target.0.file_name()
    {
        names.push(at_target);
    }
    for (path, lock_shown) in names {
        match open::open_lock_file(&path, &lock_shown) {
            Ok(Some(file)) => match file.try_lock() {
                Ok(()) => locks._held.push(file),
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Refused {
                        path: shown.to_string(),
                        action: "cannot recover into it",
                        why: Refusal::InUse { lock: lock_shown },
                    })
                }
                Err(fs::TryLockError::Error(e)) => {
                    locks.missing = Some(format!("{lock_shown} cannot be locked: {e}"));
                }
            },
            Ok(None) => locks.missing = Some(format!("{lock_shown} cannot be made")),
            // No ZODB can lock a directory or a FIFO either.
            Err(e @ Error::Refused { .. }) => locks.missing = Some(e.to_string()),
            Err(Error::Io { path, source, .. }) => {
                return Err(Error::Io {
                    path,
                    action: "cannot tell whether a ZODB holds this lock",
                    source,
                })
            }
            Err(e) => return Err(e),
        }
    }
    if let Ok(meta) = fs::metadata(target) {
        match open::open_elsewhere(&meta) {
            Some(h) if h.writes => {
                return Err(Error::Refused {
                    path: shown.to_string(),
                    action: "cannot recover into it",
                    why: Refusal::Written { who: h.who },
                })
            }
            Some(h) => locks.reader = Some(h.who),
            None => {}
        }
    }
    Ok(locks)
}

/// Why FILE is recovered in full instead.
struct Fallback(String);

/// Bring `job.output` to the chain's end in place, if it holds a prefix of
/// the chain; `None` (with the reason said under `-v`) when it must be
/// recovered in full.
///
/// # Errors
/// A damaged repository file met while appending (FILE is cut back to
/// where it was), I/O errors on FILE or its index.
pub(crate) fn recover_in_place(job: &Job<'_>, log: &Log) -> Result<Option<Recovered>> {
    match try_in_place(job, log) {
        Ok(Ok(done)) => Ok(Some(done)),
        Ok(Err(Fallback(why))) => {
            log!(log, "Recovering in full: {}: {why}", job.shown);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The backup ends FILE's length may be: the `.dat` lines as long as each
/// starts where the one before ends.
fn boundaries(dat: &[DatEntry]) -> Vec<u64> {
    let mut ends = Vec::with_capacity(dat.len());
    let mut at = 0;
    for e in dat {
        if e.start != at || e.end < e.start {
            break;
        }
        at = e.end;
        ends.push(at);
    }
    ends
}

/// The marker left by an interrupted in-place recovery of this very file:
/// the length from which its bytes were not yet checked.
fn read_marker(path: &Path, shown: &str, identity: (u64, u64)) -> Option<u64> {
    let mut text = String::new();
    io::Read::read_to_string(
        &mut io::Read::take(open::open_regular(path, shown).ok()?, 4096),
        &mut text,
    )
    .ok()?;
    let mut lines = text.lines();
    if lines.next()? != MARKER_HEADER {
        return None;
    }
    let file: Vec<u64> = lines
        .next()?
        .strip_prefix("file ")?
        .split(' ')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let from = lines.next()?.strip_prefix("from ")?.parse().ok()?;
    (file == [identity.0, identity.1]).then_some(from)
}

fn write_marker(path: &Path, shown: &str, identity: (u64, u64), from: u64) -> Result<()> {
    let mut f = AtomicFile::create(path, shown)?;
    let text = format!(
        "{MARKER_HEADER}\nfile {} {}\nfrom {from}\n",
        identity.0, identity.1
    );
    io::Write::write_all(f.file(), text.as_bytes()).map_err(io_err(shown, "write"))?;
    f.file().sync_all().map_err(io_err(shown, "fsync"))?;
    f.commit(true)
}

fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[allow(clippy::too_many_lines)]
fn try_in_place(job: &Job<'_>, log: &Log) -> Result<std::result::Result<Recovered, Fallback>> {
    let fallback = |why: String| Ok(Err(Fallback(why)));
    let repo = job.repo;
    let Some(dat) = job.dat else {
        return fallback(format!(
            "the chain has no usable {} log",
            repo.display(&job.chain[0].file.dat_name())
        ));
    };
    let ends = boundaries(dat);
    let n = job.chain.len() - 1;
    if ends.len() <= n {
        return fallback("the .dat log does not describe the chain".into());
    }
    let target = job.cut.map_or(ends[n], |c| c.end);

    let meta = match fs::symlink_metadata(job.output) {
        Ok(m) if m.is_file() => m,
        _ => return fallback("it is not a regular file".into()),
    };
    if meta.nlink() > 1 {
        return fallback(format!(
            "it has {} hard links, which a change in place would change too",
            meta.nlink()
        ));
    }
    if let Some(why) = &job.locks.missing {
        return fallback(why.clone());
    }
    // A reader takes no lock (a read-only FileStorage): its open handles
    // keep the old file through a full recovery, but would read a changed
    // one.
    if let Some(who) = &job.locks.reader {
        return fallback(format!("{who} has it open"));
    }
    let mut file = match open::open_regular_rw(job.output, job.shown) {
        Ok(f) => f,
        Err(e) => return fallback(e.to_string()),
    };
    let fmeta = file.metadata().map_err(io_err(job.shown, "cannot stat"))?;
    let identity = (fmeta.dev(), fmeta.ino());
    if identity != (meta.dev(), meta.ino()) {
        return fallback("it was replaced while being looked at".into());
    }
    let len = fmeta.len();
    let marker_path = with_ext(job.output, MARKER_EXT);
    let marker_shown = format!("{}.{MARKER_EXT}", job.shown);
    if fs::symlink_metadata(&marker_path).is_ok_and(|m| !m.is_file()) {
        return fallback(format!("{marker_shown} is not a regular file"));
    }
    let unchecked_from = read_marker(&marker_path, &marker_shown, identity);

    // The backup FILE ends with: exactly at its length, or (after a killed
    // run of ours) the last one not beyond it.
    // The transaction FILE ends with, when that is inside a backup file.
    let mut mid: Option<u64> = None;
    let at = match (ends.iter().rposition(|&e| e == len), unchecked_from) {
        (Some(k), _) => k,
        (None, Some(_)) => match ends.iter().rposition(|&e| e <= len) {
            Some(k) => k,
            None => return fallback(format!("its length {len} is below every backup's end")),
        },
        // An earlier --at's output: the state after a transaction inside
        // a backup file, which is shown to be the chain's before it counts.
        (None, None) => match mid_state(job, dat, &ends, &file, len)? {
            Ok((k, tid)) => {
                mid = Some(tid);
                k - 1
            }
            Err(why) => return fallback(why),
        },
    };
    let kept = at.min(n);
    let mut check: Vec<usize> = if job.quick {
        vec![kept]
    } else {
        (0..=kept).collect()
    };
    if let Some(from) = unchecked_from {
        check.extend((0..=kept).filter(|&i| dat[i].start >= from));
        check.sort_unstable();
        check.dedup();
    }
    let checker = file.try_clone().map_err(io_err(job.shown, "open"))?;
    let blobs = match job.blob_dir {
        // Whatever keeps the directory from being judged (a `.layout` we
        // cannot read, a name that is no path) is a reason for a full
        // recovery, which builds it anew.
        Some(dir) => match plan_blobs(job, dir, kept, at, log) {
            Ok(Ok(plan)) => Some(plan),
            Ok(Err(why)) => return fallback(why.0),
            Err(e) => return fallback(e.to_string()),
        },
        None => None,
    };

    let last = &job.chain[n].file;
    let index_shown = format!("{}.index", job.shown);
    let index_path = PathBuf::from(&index_shown);
    let changes = len != target || blobs.as_ref().is_some_and(|b| !b.is_empty());
    // From inside a backup file a rollback needs no bytes; growing cuts
    // FILE back to the backup end before and appends from there.
    let grows = match mid {
        Some(_) => target > len,
        None => target > ends[at],
    };
    let cut = target.min(ends[at]);
    let begin = || -> Result<bool> {
        // Written before anything changes, and kept (with its first
        // unchecked length) until FILE is the target with its index.
        // The index goes first; the marker's commit makes both durable
        // with one fsync of the directory.
        let from = unchecked_from.map_or(ends[at], |f| f.min(ends[at]));
        let removed = match fs::remove_file(&index_path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&index_shown, "remove")(e)),
        };
        write_marker(&marker_path, &marker_shown, identity, from)?;
        Ok(removed)
    };
    let prepare = || {
        new_index(
            repo,
            job.chain,
            job.cut,
            (job.shown, target),
            &index_path,
            &index_shown,
            log,
        )
    };
    // The check runs on a thread of its own beside the work that does not
    // depend on it: an append (taken back if the check fails, before the
    // full recovery), or the new index of a rollback (which reads FILE only
    // below the target).
    let from_shown = match mid {
        Some(tid) => format!(
            "transaction {} in {}",
            tid_hex(tid),
            dat[at + 1].file_name()
        ),
        None => dat[at].file_name().to_string(),
    };
    // Said once the check has passed: the append runs beside it.
    let say = || {
        if len == target {
            let what = if blobs.as_ref().is_none_or(BlobPlan::is_empty) {
                "nothing to change"
            } else {
                "only its blob directory changes"
            };
            log!(
            log,
            "Recovering in place: {} already holds the state of {from_shown} ({len} bytes): {what}",
            job.shown
        );
        } else if !grows {
            let end_of = match job.cut {
                Some(c) => format!("transaction {} in {last}", tid_hex(c.tid)),
                None => last.to_string(),
            };
            log!(
            log,
            "Recovering in place: {} holds the state of {from_shown} ({len} bytes): truncating it to {target} bytes, the end of {end_of}",
            job.shown
        );
        } else {
            log!(
            log,
            "Recovering in place: {} holds the state of {from_shown} ({len} bytes): appending {} backup file(s), up to {target} bytes",
            job.shown,
            n - at
        );
        }
    };
    let mut new_index = None;
    let mut removed = false;
    let started = std::time::Instant::now();
    let (verdict, worked) = std::thread::scope(|scope| {
        // Where no thread can be had (a process limit), the check runs
        // here first: slower, never a panic.
        let spawned = std::thread::Builder::new()
            .spawn_scoped(scope, || check_ranges(&checker, job, dat, &check));
        let (checking, early) = match spawned {
            Ok(handle) => (Some(handle), None),
            Err(_) => (None, check_ranges(&checker, job, dat, &check)),
        };
        if early.is_some() {
            return (early, Ok(()));
        }
        let worked = if grows {
            (|| {
                removed = begin()?;
                if let Some(b) = &blobs {
                    b.add(job, log)?;
                }
                if len != cut {
                    file.set_len(cut).map_err(io_err(job.shown, "truncate"))?;
                }
                if let Err(e) = append(job, &mut file, at + 1, log) {
                    // Back to a backup's end, which a rerun checks and
                    // goes on from; the marker stays.
                    let _ = file.set_len(cut);
                    let _ = file.sync_all();
                    return Err(e);
                }
                file.sync_all().map_err(io_err(job.shown, "fsync"))
            })()
        } else {
            prepare().map(|f| new_index = f)
        };
        let verdict =
            checking.and_then(|c| c.join().unwrap_or_else(|_| Some("its check failed".into())));
        (verdict, worked)
    });
    if let Some(why) = verdict {
        if grows {
            // FILE as it was, but for its index: the full recovery
            // replaces it.
            let _ = file.set_len(cut);
            let _ = file.sync_all();
        }
        return fallback(why);
    }
    worked?;
    if !grows && changes && started.elapsed() > std::time::Duration::from_secs(1) {
        // The check took long: a reader or a hard link that came meanwhile
        // still makes it a full recovery.
        let now = fs::metadata(job.output).map_err(io_err(job.shown, "cannot stat"))?;
        if now.nlink() > 1 {
            return fallback(format!("it has {} hard links now", now.nlink()));
        }
        match open::open_elsewhere(&now) {
            Some(h) if h.writes => {
                return Err(Error::Refused {
                    path: job.shown.to_string(),
                    action: "cannot recover into it",
                    why: Refusal::Written { who: h.who },
                })
            }
            Some(h) => return fallback(format!("{} has it open now", h.who)),
            None => {}
        }
    }
    say();
    if !grows && changes {
        removed = begin()?;
    }
    if removed {
        log!(log, "Removed old index file {index_shown}");
    }
    if !grows && changes {
        if let Some(b) = &blobs {
            b.add(job, log)?;
        }
        if len != target {
            file.set_len(target)
                .map_err(io_err(job.shown, "truncate"))?;
            file.sync_all().map_err(io_err(job.shown, "fsync"))?;
        }
    }
    let got = file
        .metadata()
        .map_err(io_err(job.shown, "cannot stat"))?
        .len();
    if got != target {
        return Err(Error::Shrank {
            path: job.shown.to_string(),
            at: got,
            expected: target,
        });
    }
    if let Some(b) = &blobs {
        b.remove()?;
    }
    if grows {
        new_index = prepare()?;
    }
    let index_installed = new_index.is_some();
    match new_index {
        Some(f) => f.commit(true)?,
        // An index from before, describing other bytes, must not stay.
        None if !changes => match fs::remove_file(&index_path) {
            Ok(()) => log!(log, "Removed old index file {index_shown}"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&index_shown, "remove")(e)),
        },
        None => {}
    }
    match fs::remove_file(&marker_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&marker_shown, "remove")(e)),
    }
    sync_dir(open::parent_dir(job.output)).map_err(io_err(job.shown, "fsync its directory"))?;
    Ok(Ok(Recovered {
        bytes: target,
        files: job.chain.len(),
        index_installed,
    }))
}

/// Whether FILE, `len` bytes long, holds the state after a transaction
/// inside backup `k` > 0 of the chain (what `--at` leaves): `len` is a
/// transaction's end in that file, and FILE's bytes from the backup
/// before it on are that file's first ones. Returns `k` and the tid, or
/// why not. The ranges before are checked as for any state.
///
/// # Errors
/// I/O errors reading FILE.
fn mid_state(
    job: &Job<'_>,
    dat: &[DatEntry],
    ends: &[u64],
    file: &File,
    len: u64,
) -> Result<std::result::Result<(usize, u64), String>> {
    let no = |why: String| Ok(Err(why));
    let Some(k) = ends.iter().position(|&e| e > len) else {
        return no(format!("its length {len} is beyond the chain's end"));
    };
    if k == 0 {
        return no(format!(
            "its length {len} is inside the full backup, at no backup's end"
        ));
    }
    let mut pieces = Vec::with_capacity(k + 1);
    for e in &dat[..=k] {
        let Some(f) = crate::repository::DataFile::parse(e.file_name()) else {
            return no(format!("{} is no backup's name", e.file_name()));
        };
        pieces.push(Piece {
            file: f,
            logged_size: Some(e.size()),
            keep: None,
        });
    }
    let chain = history::Chain {
        starts: dat[..=k].iter().map(|e| e.start).collect(),
        pieces,
        dat: None,
        broken: None,
    };
    let name = dat[k].file_name();
    let mut ends_there = None;
    let walked = history::walk_piece(job.repo, &chain, k, |t| {
        let end = t.pos + t.size;
        if end >= len {
            ends_there = (end == len).then_some(t.tid);
            return Ok(false);
        }
        Ok(true)
    });
    let tid = match (walked, ends_there) {
        (Ok(()), Some(tid)) => tid,
        (Ok(()), None) => {
            return no(format!(
                "its length {len} is where no backup or transaction of the chain ends"
            ))
        }
        (Err(e), _) => return no(e.to_string()),
    };
    let start = ends[k - 1];
    let differs = if chain.pieces[k].file.gzip {
        same_inflated(file, job, name, start, len)
    } else {
        same_bytes(file, job, name, start, len)
    };
    // -w: the bytes kept were compared with the backup file only; the file
    // itself is checked against its `.dat` md5, as a full recovery would.
    if let (Ok(None), Some(_)) = (&differs, job.truth) {
        let gzip = chain.pieces[k].file.gzip;
        let (size, sum) = match job.repo.reader(name, gzip).and_then(|r| r.size_and_md5()) {
            Ok(v) => v,
            Err(e) => return no(e.to_string()),
        };
        if (size, sum.as_str()) != (dat[k].size(), dat[k].md5.as_str()) {
            return no(format!(
                "{name} has {size} bytes and md5 {sum}, the .dat log says {} and {}",
                dat[k].size(),
                dat[k].md5
            ));
        }
    }
    match differs {
        Ok(None) => Ok(Ok((k, tid))),
        Ok(Some(at)) => no(format!("its byte {at} differs from {name}'s")),
        Err(e) => no(e.to_string()),
    }
}

/// [`same_bytes`] for a gzip'd backup file, inflated as it is compared.
fn same_inflated(
    file: &File,
    job: &Job<'_>,
    name: &str,
    start: u64,
    end: u64,
) -> Result<Option<u64>> {
    let mut r = job.repo.reader(name, true)?;
    let mut theirs = vec![0u8; r.chunk_len()];
    let mut ours = vec![0u8; theirs.len()];
    let mut pos = start;
    while pos < end {
        let want = at_most(end - pos, theirs.len());
        let b = r.read_chunk(&mut theirs[..want])?;
        let a = read_full(&mut ours[..b], |buf, done| {
            file.read_at(buf, pos + done as u64)
        })
        .map_err(io_err(job.shown, "read"))?;
        if ours[..a] != theirs[..a] {
            let i = (0..a).find(|&i| ours[i] != theirs[i]).unwrap_or(0);
            return Ok(Some(pos + i as u64));
        }
        if a < want {
            return Ok(Some(pos + a as u64));
        }
        pos += want as u64;
    }
    Ok(None)
}

/// Whether FILE's bytes in the `.dat` ranges `check` are the chain's:
/// `None` if so, else why not. With `-Q` a range whose backup file is
/// plain is compared with it byte for byte (cheaper than its md5 when the
/// files are cached, and exact); otherwise the md5 is compared with the
/// `.dat` log's, reading FILE alone.
fn check_ranges(file: &File, job: &Job<'_>, dat: &[DatEntry], check: &[usize]) -> Option<String> {
    for &i in check {
        let e = &dat[i];
        let plain = job.chain.get(i).filter(|p| job.quick && !p.file.gzip);
        let differs = match plain {
            Some(p) => match same_bytes(file, job, &p.file.name(), e.start, e.end) {
                Ok(None) => continue,
                Ok(Some(at)) => format!("byte {at} differs from {}", e.file_name()),
                Err(err) => return Some(err.to_string()),
            },
            None => match md5_of_range(file, job.shown, e.start, e.end) {
                Ok(sum) if sum == e.md5 => continue,
                Ok(sum) => format!(
                    "md5 {sum}, the .dat log says {} for {}",
                    e.md5,
                    e.file_name()
                ),
                Err(err) => return Some(err.to_string()),
            },
        };
        return Some(format!(
            "its bytes {}-{} are not the chain's ({differs})",
            e.start, e.end
        ));
    }
    None
}

/// Where FILE's bytes `[start, end)` first differ from the backup file
/// `name`'s, if they do. A large range is compared in two halves at once:
/// the copying out of the page cache, not the comparing, is the cost.
fn same_bytes(file: &File, job: &Job<'_>, name: &str, start: u64, end: u64) -> Result<Option<u64>> {
    let shown = job.repo.display(name);
    let backup = job.repo.open(name)?;
    let compare = |from: u64, to: u64| -> Result<Option<u64>> {
        let len = at_most(to - from, CHUNK).max(1);
        let (mut ours, mut theirs) = (vec![0u8; len], vec![0u8; len]);
        let mut pos = from;
        while pos < to {
            let want = at_most(to - pos, len);
            let a = read_full(&mut ours[..want], |b, done| {
                file.read_at(b, pos + done as u64)
            })
            .map_err(io_err(job.shown, "read"))?;
            let b = read_full(&mut theirs[..want], |b, done| {
                backup.read_at(b, pos - start + done as u64)
            })
            .map_err(io_err(&shown, "read"))?;
            let n = a.min(b);
            if ours[..n] != theirs[..n] {
                let i = (0..n).find(|&i| ours[i] != theirs[i]).unwrap_or(0);
                return Ok(Some(pos + i as u64));
            }
            if n < want {
                return Ok(Some(pos + n as u64));
            }
            pos += want as u64;
        }
        Ok(None)
    };
    if end - start < 16 * CHUNK as u64 {
        return compare(start, end);
    }
    let mid = start + (end - start) / 2;
    std::thread::scope(|scope| {
        let second = std::thread::Builder::new().spawn_scoped(scope, || compare(mid, end));
        let first = compare(start, mid)?;
        let second = match second {
            Ok(h) => h.join().unwrap_or_else(|_| compare(mid, end)),
            Err(_) => compare(mid, end),
        }?;
        Ok(first.or(second))
    })
}

/// md5 of FILE's bytes `[start, end)`, hashed on a thread beside the
/// reading.
fn md5_of_range(file: &File, shown: &str, start: u64, end: u64) -> Result<String> {
    // A thread costs more than it saves on a small range (a chain of
    // thousands of one-transaction increments).
    if end - start < THREADED_FROM as u64 {
        let mut buf = vec![0u8; at_most(end - start, CHUNK)];
        let n = read_full(&mut buf, |b, done| file.read_at(b, start + done as u64))
            .map_err(io_err(shown, "read"))?;
        if n < buf.len() {
            return Err(Error::Shrank {
                path: shown.to_string(),
                at: start + n as u64,
                expected: end,
            });
        }
        return Md5::digest(&buf);
    }
    let mut h = Md5Thread::spawn();
    let mut buf = vec![0u8; at_most(end - start, CHUNK).max(1)];
    let mut pos = start;
    while pos < end {
        let want = at_most(end - pos, buf.len());
        let n = read_full(&mut buf[..want], |b, done| {
            file.read_at(b, pos + done as u64)
        })
        .map_err(io_err(shown, "read"))?;
        if n == 0 {
            return Err(Error::Shrank {
                path: shown.to_string(),
                at: pos,
                expected: end,
            });
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    h.finish()
}

/// Append the chain's files from `first` on at FILE's end.
fn append(job: &Job<'_>, file: &mut File, first: usize, log: &Log) -> Result<()> {
    file.seek(SeekFrom::End(0))
        .map_err(io_err(job.shown, "seek"))?;
    concat_sizes(
        job.repo,
        &job.chain[first..],
        &mut Out::File(file),
        job.shown,
        job.truth,
        log,
        false,
    )
    .map(drop)
}

/// What the blob directory needs to become the target's.
struct BlobPlan {
    dir: InPlaceBlobDir,
    layout: Layout,
    listing: Listing,
    /// Blob files to add: their path inside, and their entry.
    add: Vec<(String, BlobEntry)>,
    /// Files to remove, by path inside.
    remove: Vec<String>,
}

impl BlobPlan {
    fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.dir.layout().is_some()
    }

    fn add(&self, job: &Job<'_>, log: &Log) -> Result<()> {
        self.dir.remove_leftovers(&self.listing);
        let mut bytes = 0;
        for (rel, e) in &self.add {
            let st = e.stored.as_ref().expect("only stored blobs are added");
            let shown = job.repo.display_pooled(e, st);
            let mut src = job.repo.open_pooled(e, st)?;
            let want = job.truth.is_some().then_some(st.md5.as_str());
            bytes += self.dir.add(rel, &mut src, &shown, st.size, want)?;
        }
        if self.dir.layout().is_none() {
            self.dir.set_layout(self.layout)?;
        }
        if !self.add.is_empty() {
            log!(
                log,
                "Added {} blob files ({bytes} bytes) to {}",
                self.add.len(),
                self.dir.shown()
            );
        }
        self.dir.sync()
    }

    fn remove(&self) -> Result<()> {
        for rel in &self.remove {
            self.dir.remove(rel)?;
        }
        if self.remove.is_empty() {
            Ok(())
        } else {
            self.dir.sync()
        }
    }
}

/// Check that the blob directory holds exactly the blob files of the
/// state FILE holds (backup `at`, of which `kept` stays), allowing files
/// of later backups of the chain (a killed run's, or a rollback's), and
/// say what to add and remove. A mismatch is a reason for a full
/// recovery.
fn plan_blobs(
    job: &Job<'_>,
    dir: &Path,
    kept: usize,
    at: usize,
    log: &Log,
) -> Result<std::result::Result<BlobPlan, Fallback>> {
    let shown = dir.to_string_lossy();
    let no = |why: String| Ok(Err(Fallback(why)));
    let repo = job.repo;
    let dat = job.dat.expect("checked by the caller");
    let n = job.chain.len() - 1;
    // Manifests of every backup FILE or the target covers, which must
    // have one, and of the later ones that do: their blob files may be
    // there, left by a rollback a kill interrupted.
    let upto = at.max(n);
    let mut manifests: Vec<Manifest> = Vec::with_capacity(dat.len());
    for (i, e) in dat.iter().enumerate() {
        let Some(f) = crate::repository::DataFile::parse(e.file_name()) else {
            return no(format!("{} is no backup's name", e.file_name()));
        };
        match repo.read_manifest(&f) {
            Ok(Some(m)) => manifests.push(m),
            // Later ones only help to recognise a killed rollback's files.
            Ok(None) | Err(_) if i > upto => break,
            Ok(None) => return no(format!("{} has no blob manifest", f.name())),
            Err(e) => return no(e.to_string()),
        }
    }
    let Some(layout) = manifests.get(n).map(|m| m.layout) else {
        return no("no blob manifest".into());
    };
    if manifests.iter().any(|m| m.layout != layout) {
        return no("the chain's blob manifests name different layouts".into());
    }
    let Some(bd) = InPlaceBlobDir::open(dir)? else {
        return no(format!("the blob directory {shown} does not exist"));
    };
    if bd.layout().is_some_and(|l| l != layout) {
        return no(format!(
            "the blob directory {shown} has the {} layout, the backups {layout}",
            bd.layout().map_or("", Layout::name)
        ));
    }
    let listing = bd.list()?;
    if let Some(odd) = &listing.odd {
        return no(format!(
            "{odd} is neither a blob file nor a directory of them"
        ));
    }
    let mut known: HashMap<String, (usize, &BlobEntry)> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        for e in &m.entries {
            known.insert(layout.file(e.oid, e.tid), (i, e));
        }
    }
    let mut wanted: HashSet<&str> = HashSet::new();
    for (rel, (i, e)) in &known {
        if *i <= kept && e.stored.is_some() {
            wanted.insert(rel.as_str());
        }
    }
    // Every file there must be one of the chain's blobs, whole.
    for (rel, &size) in &listing.files {
        let Some((_, e)) = known.get(rel) else {
            return no(format!(
                "{} is no blob file of the chain",
                bd.shown_file(rel)
            ));
        };
        let Some(st) = &e.stored else {
            return no(format!("{} was missing when backed up", bd.shown_file(rel)));
        };
        if size != st.size {
            return no(format!(
                "{} has {size} bytes, not {}",
                bd.shown_file(rel),
                st.size
            ));
        }
        if !job.quick && bd.md5(rel)? != st.md5 {
            return no(format!(
                "{} is not the blob file backed up (md5)",
                bd.shown_file(rel)
            ));
        }
    }
    if let Some(rel) = wanted.iter().find(|r| !listing.files.contains_key(**r)) {
        return no(format!("{} is missing", bd.shown_file(rel)));
    }
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for (rel, (i, e)) in &known {
        let there = listing.files.contains_key(rel);
        let after_cut = *i == n && job.cut.is_some_and(|c| e.tid > c.tid);
        let needed = *i <= n && e.stored.is_some() && !after_cut;
        if needed && !there {
            add.push((rel.clone(), (*e).clone()));
        } else if !needed && there {
            remove.push(rel.clone());
        }
    }
    if let Some((rel, _)) = add.iter().find(|(rel, _)| listing.dirs.contains(rel)) {
        return no(format!("{} is a directory", bd.shown_file(rel)));
    }
    add.sort_by(|a, b| a.0.cmp(&b.0));
    remove.sort();
    let missing = manifests[..=n]
        .iter()
        .flat_map(|m| &m.entries)
        .filter(|e| e.stored.is_none())
        .count();
    if missing > 0 {
        log.notice(format_args!(
            "{missing} blob file(s) were missing when backed up: they cannot be recovered"
        ));
    }
    Ok(Ok(BlobPlan {
        dir: bd,
        layout,
        listing,
        add,
        remove,
    }))
}
