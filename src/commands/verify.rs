//! `-V`: check every file the newest full backup's `.dat` log names, its
//! size and (unless `-Q`) its md5, with repozo's messages. The first
//! failure ends the run, and a chain without its full backup is one.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use crate::codec::gzip_size;
use crate::codec::md5::{copy_hashed, Md5Thread};
use crate::commands::recover::gap;
use crate::error::{Error, Mismatch, Result};
use crate::log;
use crate::log::Log;
use crate::repository::lock;
use crate::repository::{DatEntry, DataFile, Kind, Repository, Timestamp};

/// What `-V` was asked to do.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub(crate) repository: String,
    /// Sizes only.
    pub(crate) quick: bool,
    /// `--deep`: also read the chain as one FileStorage.
    pub(crate) deep: bool,
}

/// Verify the current chain; returns the number of files checked.
///
/// # Errors
/// [`Error::Mismatch`] with repozo's message for the first bad file;
/// [`Error::NoFiles`]; [`Error::NoFullBackup`]; a missing or damaged `.dat`.
pub(crate) fn verify(opts: &VerifyOptions, now: Timestamp, log: &Log) -> Result<usize> {
    let repo = Repository::new(&opts.repository);
    let _lock = lock::acquire(&repo, lock::Mode::Shared)?;
    let chain = repo.find_files(&now.stem(), log)?;
    let Some(full) = chain.first() else {
        return Err(Error::NoFiles { before: None });
    };
    // Increments whose full backup was deleted: their chain has no .dat
    // log to check against, and no Data.fs can be recovered from them.
    if full.kind != Kind::Full {
        return Err(Error::NoFullBackup { before: None });
    }
    let entries = repo.read_dat_required(full)?;
    // Files that each check out but do not follow one another (a line
    // repeated, lines swapped) recover into no Data.fs: recover refuses
    // them, so verify must not pass them.
    let mut end = 0;
    for e in &entries {
        if e.start != end {
            let dat_shown = repo.display(&full.dat_name());
            return Err(gap(&repo.display(e.file_name()), e.start, end, &dat_shown));
        }
        end = e.end;
    }
    let total = entries.iter().map(DatEntry::size).sum();
    if opts.deep {
        log.start("verifying", total);
        let deep = super::deep::verify_deep(&repo, &entries, opts.quick, log, |e, size, sum| {
            let name = e.file_name();
            judge(
                repo.display(name),
                (size, sum),
                (e.size(), &e.md5),
                is_gzip(name),
            )
        });
        log.done();
        deep?;
        let blobs = verify_blobs(&repo, &entries, opts.quick, log)?;
        return Ok(entries.len() + blobs);
    }
    // Measure every file, several at a time, then judge them in the log's
    // order so that the failure reported is the first, as repozo's.
    log.start("verifying", total);
    let measured = measure_all(&repo, &entries, opts.quick, log);
    log.done();
    for (e, m) in entries.iter().zip(measured) {
        let name = e.file_name();
        let shown = repo.display(name);
        let gzip = is_gzip(name);
        let (size, sum) = match m {
            Ok(v) => v,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Mismatch(Mismatch::Missing { path: shown }))
            }
            Err(other) => return Err(other),
        };
        judge(shown, (size, sum), (e.size(), &e.md5), gzip)?;
    }
    let blobs = verify_blobs(&repo, &entries, opts.quick, log)?;
    Ok(entries.len() + blobs)
}

/// Check the blob files the listed backups need: each must have been found
/// when backed up, and its pooled file must have the recorded size and
/// (unless `quick`) md5. Returns how many were checked.
///
/// # Errors
/// [`Error::Mismatch`] for the first bad one.
fn verify_blobs(repo: &Repository, entries: &[DatEntry], quick: bool, log: &Log) -> Result<usize> {
    let mut checked = 0;
    for e in entries {
        let Some(f) = DataFile::parse(e.file_name()) else {
            continue;
        };
        let Some(m) = repo.read_manifest(&f)? else {
            continue;
        };
        let manifest = repo.display(&f.blobs_name());
        log!(log, "Verifying the {} blobs of {manifest}", m.entries.len());
        for b in &m.entries {
            let Some(st) = &b.stored else {
                return Err(Error::Mismatch(Mismatch::BlobMissing {
                    manifest,
                    oid: b.oid,
                    tid: b.tid,
                }));
            };
            let shown = repo.display_pooled(b, st);
            let file = match repo.open_pooled(b, st) {
                Ok(file) => file,
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::Mismatch(Mismatch::Missing { path: shown }))
                }
                Err(other) => return Err(other),
            };
            let (size, sum) = if quick {
                let len = file
                    .metadata()
                    .map_err(crate::error::io_err(&shown, "cannot stat"))?
                    .len();
                (len, None)
            } else {
                let mut file = file;
                let (size, sum) = copy_hashed(&mut file, &mut io::sink(), &shown, "")?;
                (size, Some(sum))
            };
            judge(shown, (size, sum), (st.size, &st.md5), false)?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// A file measured against what was recorded: repozo's size message
/// first, then its checksum message (no md5 measured under `-Q`).
///
/// # Errors
/// [`Error::Mismatch`] for the first difference.
fn judge(
    shown: String,
    (size, sum): Measured,
    (want_size, want_md5): (u64, &str),
    gzip: bool,
) -> Result<()> {
    if size != want_size {
        return Err(Error::Mismatch(Mismatch::Size {
            path: shown,
            size,
            expected: want_size,
            gzip,
        }));
    }
    match sum {
        Some(sum) if sum != want_md5 => Err(Error::Mismatch(Mismatch::Checksum {
            path: shown,
            sum,
            expected: want_md5.to_string(),
            gzip,
        })),
        _ => Ok(()),
    }
}

/// A file's uncompressed size, and its md5 unless `-Q`.
type Measured = (u64, Option<String>);

/// repozo decides by the name's ending; a name that is not a data file's
/// can still be listed, so fall back to that rule.
fn is_gzip(name: &str) -> bool {
    DataFile::parse(name).map_or(name.ends_with("fsz"), |f| f.gzip)
}

/// [`measure`] every entry, on as many threads as there are cores.
fn measure_all(
    repo: &Repository,
    entries: &[DatEntry],
    quick: bool,
    log: &Log,
) -> Vec<Result<Measured>> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(entries.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Measured>>>> =
        entries.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(e) = entries.get(i) else { return };
        let name = e.file_name();
        let shown = repo.display(name);
        log!(log, "Verifying {shown}");
        let r = measure(repo, name, &shown, is_gzip(name), quick);
        log.advance(e.size());
        *results[i].lock().expect("no panics while held") = Some(r);
    };
    thread::scope(|scope| {
        // This thread is one of the workers, so that a process limit
        // (`ulimit -u`, a cgroup's `pids.max`) leaving no thread to start
        // slows verify down instead of making it panic.
        for _ in 1..workers {
            if thread::Builder::new().spawn_scoped(scope, work).is_err() {
                break;
            }
        }
        work();
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("no panics while held")
                .expect("every entry measured")
        })
        .collect()
}

/// Size, and md5 unless `quick`; a plain file's size under `-Q` is its
/// length on disk, read without reading the file.
fn measure(
    repo: &Repository,
    name: &str,
    shown: &str,
    gzip: bool,
    quick: bool,
) -> Result<Measured> {
    if quick && !gzip {
        // Opened, not only looked at: a directory's or a FIFO's length is
        // no backup's size, and the open says what it is, as the reader
        // does without -Q.
        let meta = repo
            .open(name)?
            .metadata()
            .map_err(crate::error::io_err(shown, "cannot stat"))?;
        return Ok((meta.len(), None));
    }
    if quick && gzip {
        // Python repozo's one-member files on two cores; None for anything
        // else, which the reader below reads (and reports) as it always did.
        let split = repo
            .open(name)
            .ok()
            .and_then(|f| gzip_size::inflated_size(&f, gzip_size::MIN_SPLIT));
        if let Some(found) = split {
            return Ok((found.size, None));
        }
    }
    let r = repo.reader(name, gzip)?;
    if quick {
        let mut r = r;
        let size = r.for_each_chunk(|_| Ok(()))?;
        return Ok((size, None));
    }
    {
        // Read (or inflate) here and hash on another thread: md5 alone
        // is the slower, and reading beside it costs nothing.
        let mut r = r;
        let mut h = Md5Thread::spawn();
        let size = r.for_each_chunk(|b| {
            h.update(b);
            Ok(())
        })?;
        Ok((size, Some(h.finish()?)))
    }
}
