//! `-B`: a full or incremental backup of Data.fs, with its `.index`.
//!
//! The decision follows repozo's `do_backup`: a forced (`-F`) or first
//! backup is full; `-Q` trusts the last `.dat` line and checks only the md5
//! of the bytes it names; the default checks that the repository's bytes are
//! the source's prefix. A shrunk or changed prefix means a full backup;
//! nothing new means no backup. Files are written data first, then
//! `.index`, then the `.dat` line, so that the `.dat` line, the commit
//! point, is only written for a file that is complete on disk.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::thread;

use crate::blobdir::BlobDir;
use crate::commands::prune::{self, Retention};
use crate::datafs::{Resume, Source};
use crate::disk::atomic::{AtomicFile, DataWriter};
use crate::disk::open;
use crate::error::{io_err, Error, Refusal, Result};
use crate::filestorage::blob;
use crate::filestorage::index_file;
use crate::filestorage::records::WalkResult;
use crate::log;
use crate::log::Log;
use crate::repository::blobs::{self, BlobEntry, Manifest, PoolWriter};
use crate::repository::lock;
use crate::repository::repair;
use crate::repository::{DatEntry, DataFile, Kind, Repository, Timestamp};
use crate::CHUNK;

/// What `-B` was asked to do.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub(crate) repository: String,
    /// Data.fs: any bytes, as Unix paths are.
    pub(crate) file: PathBuf,
    pub(crate) full: bool,
    pub(crate) quick: bool,
    pub(crate) gzip: bool,
    pub(crate) kill_old: bool,
    /// The retention rules applied after the backup.
    pub(crate) keep: Retention,
    /// `--blob-dir`: the blob directory whose files to back up too.
    pub(crate) blob_dir: Option<PathBuf>,
}

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A new data file was written holding `[start, end)` of Data.fs.
    Written {
        file: String,
        kind: Kind,
        start: u64,
        end: u64,
        /// Blob files of its range that were missing: older backups may
        /// hold them, so none may be removed.
        blobs_missing: usize,
    },
    /// The repository already holds every complete transaction.
    NothingToDo,
}

/// Where a backup starts, as decided.
enum Plan {
    Full,
    Incremental { start: u64 },
    Nothing,
}

/// Run a backup at time `now`.
///
/// # Errors
/// A missing repository or source, a damaged Data.fs, a damaged repository
/// file, an existing file of the same name, I/O errors.
pub(crate) fn backup(opts: &BackupOptions, now: Timestamp, log: &Log) -> Result<Outcome> {
    let repo = Repository::new(&opts.repository);
    if opts.repository.contains(['\n', '\r']) {
        return Err(Error::Refused {
            path: opts.repository.clone(),
            action: "cannot back up into it",
            why: Refusal::LineBreak,
        });
    }
    let _lock = lock::acquire(&repo, lock::Mode::Exclusive)?;
    for msg in repair::repair(&repo)? {
        log.notice(format_args!("{msg}"));
    }
    if let Some(dir) = opts.blob_dir.as_deref() {
        if open::nested(dir, repo.dir()) {
            return Err(Error::Refused {
                path: dir.to_string_lossy().into_owned(),
                action: "cannot back up blobs from it",
                why: Refusal::Overlaps {
                    other: format!("the repository {}", repo.given()),
                },
            });
        }
    }
    let blob_dir = opts.blob_dir.as_deref().map(BlobDir::open).transpose()?;
    for attempt in 1.. {
        match backup_once(opts, &repo, blob_dir.as_ref(), now, log) {
            Err(Error::SourceReplaced { path }) if attempt < MAX_ATTEMPTS => {
                log.notice(format_args!(
                    "{path} was replaced (packed?) during the backup; starting over"
                ));
            }
            Err(Error::SourceReplaced { path }) => {
                return Err(Error::SourceReplaced {
                    path: format!("{path} ({MAX_ATTEMPTS} attempts)"),
                })
            }
            done => {
                let outcome = done?;
                retain(&repo, &opts.keep, &outcome, log)?;
                return Ok(outcome);
            }
        }
    }
    unreachable!("the loop returns")
}

/// The retention rules, after a backup (made or not needed), under its
/// lock; not when blob files of the new backup were missing, which older
/// backups may hold.
///
/// # Errors
/// As [`prune::apply`].
fn retain(repo: &Repository, keep: &Retention, outcome: &Outcome, log: &Log) -> Result<()> {
    if !keep.any() {
        return Ok(());
    }
    if let Outcome::Written {
        blobs_missing: missing @ 1..,
        ..
    } = outcome
    {
        log.notice(format_args!(
            "not applying the retention rules: {missing} blob files of this backup are missing"
        ));
        return Ok(());
    }
    let removed = prune::apply(repo, keep, log)?;
    if keep.dry_run {
        prune::say_would_remove(&removed)?;
    }
    Ok(())
}

/// Backups started over when Data.fs is replaced under them.
const MAX_ATTEMPTS: u32 = 3;

/// One attempt; the data file is committed only if Data.fs is still the
/// file that was read, so a pack renaming a new file into place meanwhile
/// never leaves a backup of the old one.
fn backup_once(
    opts: &BackupOptions,
    repo: &Repository,
    blob_dir: Option<&BlobDir>,
    now: Timestamp,
    log: &Log,
) -> Result<Outcome> {
    // The newest chain, whatever the clock says: a clock gone back must not
    // make an older chain the one compared with.
    let when = repo
        .data_files()?
        .pop()
        .map_or(now.stem(), |f| f.stem.max(now.stem()));
    let chain = repo.find_files(&when, log)?;
    // Read once: they decide whether the chain can be continued, and say
    // which blobs are pooled already.
    let blobs = blob_dir.map(|dir| ChainBlobs {
        dir,
        manifests: chain.iter().map(|f| repo.read_manifest(f)).collect(),
    });
    let source = Source::open(&opts.file)?;
    let plan = if opts.full || chain.is_empty() {
        log!(log, "doing a full backup");
        Plan::Full
    } else if chain[0].kind != Kind::Full {
        log.notice(format_args!(
            "{} has no full backup before it (full backup)",
            repo.display(&chain[0].name())
        ));
        Plan::Full
    } else if let Some(why) = blobs
        .as_ref()
        .and_then(|b| chain_lacks_blobs(repo, &chain, b))
    {
        log.notice(format_args!("{why} (full backup)"));
        Plan::Full
    } else {
        match repo.read_dat(&chain[0]) {
            Err(e) => {
                log.notice(format_args!(
                    "{e}: the newest chain cannot be continued (full backup)"
                ));
                Plan::Full
            }
            Ok(entries) if opts.quick => decide_quick(&entries.unwrap_or_default(), &source, log)?,
            Ok(_) => decide_by_content(repo, &chain, &source, log)?,
        }
    };
    let (kind, start) = match plan {
        Plan::Nothing => return Ok(Outcome::NothingToDo),
        Plan::Full => (Kind::Full, 0),
        Plan::Incremental { start } => {
            log!(log, "doing incremental, starting at: {start}");
            (Kind::Incremental, start)
        }
    };
    let now = free_stem(repo, now, log)?;
    write_backup(
        opts,
        repo,
        blobs.as_ref(),
        &chain,
        &source,
        now,
        kind,
        start,
        log,
    )
}

/// The blob directory of a backup, and the blob manifests of the chain it
/// may continue, in the chain's order.
struct ChainBlobs<'a> {
    dir: &'a BlobDir,
    manifests: Vec<Result<Option<Manifest>>>,
}

/// Why an increment with blobs cannot continue `chain`, if it cannot: a
/// backup of it has no blob manifest (made without `--blob-dir`, or by
/// Python repozo) or one of another layout, so the chain does not hold
/// every blob its state needs.
fn chain_lacks_blobs(repo: &Repository, chain: &[DataFile], b: &ChainBlobs) -> Option<String> {
    let dir = b.dir;
    for (f, m) in chain.iter().zip(&b.manifests) {
        let shown = repo.display(&f.name());
        match m {
            Ok(Some(m)) if m.layout == dir.layout() => {}
            Ok(Some(m)) => {
                return Some(format!(
                    "{shown} holds blobs of the {} layout, the blob directory is {}",
                    m.layout,
                    dir.layout()
                ))
            }
            Ok(None) => return Some(format!("{shown} was backed up without its blobs")),
            Err(e) => return Some(format!("{e}: the chain's blobs cannot be read")),
        }
    }
    None
}

/// A moment whose stem no file of the repository has and that sorts after
/// every backup in it. Two backups in one second (a weekly `-F` and an
/// hourly `-B` fired together) would share a stem, so one waits for the
/// next second; a clock that went back would name a backup that sorts
/// before the newest, which recover and `-k` read as older: refused.
///
/// Only a data file is a backup to sort after: a lone `.index` or `.dat`
/// (Python repozo writes its `.index` before its data file, and may die
/// between) is in no chain, and a stem before it is still a stem of its
/// own, so one dated in the future must not refuse every backup until
/// the clock gets there.
fn free_stem(repo: &Repository, now: Timestamp, log: &Log) -> Result<Timestamp> {
    let mut now = now;
    let mut taken = String::new();
    for _ in 0..3 {
        let stem = now.stem();
        if let Some(newest) = repo.data_files()?.last().filter(|f| f.stem > stem) {
            return Err(Error::ClockBehind {
                newest: repo.display(&newest.name()),
                now: stem,
            });
        }
        let Some(name) = name_with_stem(repo, &stem) else {
            return Ok(now);
        };
        taken = name;
        if Timestamp::is_fixed() {
            break;
        }
        log!(
            log,
            "a backup of {stem} exists already: waiting for the next second"
        );
        std::thread::sleep(now.until_next_second());
        now = Timestamp::now()?;
    }
    Err(Error::StemTaken {
        existing: repo.display(&taken),
        stem: now.stem(),
    })
}

/// A file of the repository with this stem (a data file first), if any.
fn name_with_stem(repo: &Repository, stem: &str) -> Option<String> {
    ["fs", "fsz", "deltafs", "deltafsz", "index", "dat", "blobs"]
        .iter()
        .map(|ext| format!("{stem}.{ext}"))
        .find(|name| repo.entry(name).is_some())
}

/// `-Q`: compare only the md5 of the last range the `.dat` log (its
/// `entries`) names.
///
/// The range must hold bytes: Python repozo logs an empty increment
/// `[E, E)` when only a commit in progress followed E, and the md5 of
/// nothing matches any file, so after a pack and regrowth past E it would
/// append the new file's tail to the old bytes. The last non-empty range
/// confirms the transaction that ends at E.
fn decide_quick(entries: &[DatEntry], source: &Source, log: &Log) -> Result<Plan> {
    let Some(last) = entries.iter().rev().find(|e| e.end > e.start) else {
        log!(log, "missing or empty .dat file (full backup)");
        return Ok(Plan::Full);
    };
    if entries.last().is_some_and(|e| e.end != last.end) {
        log!(
            log,
            "the last .dat lines do not continue {} (full backup)",
            last.path
        );
        return Ok(Plan::Full);
    }
    if source.size() < last.end {
        log!(log, "file shrunk, possibly because of a pack (full backup)");
        return Ok(Plan::Full);
    }
    let sum = source.md5(last.start, last.end)?;
    log!(log, "last incremental file: {}", last.path);
    log!(log, "last incremental checksum: {}", last.md5);
    log!(
        log,
        "source checksum range: [{}..{}], sum: {sum}",
        last.start,
        last.end
    );
    if sum != last.md5 {
        log!(
            log,
            "file changed, possibly because of a pack (full backup)"
        );
        return Ok(Plan::Full);
    }
    if source.size() == last.end {
        log!(log, "No changes, nothing to do");
        return Ok(Plan::Nothing);
    }
    Ok(Plan::Incremental { start: last.end })
}

/// Default mode: the repository's bytes must be the source's prefix.
///
/// Comparing the bytes themselves gives repozo's guarantee (its md5 of both
/// sides is a proxy for this) without hashing either side. A thread reads
/// (and inflates) the repository while this one reads Data.fs. A backup
/// file that cannot be read (damaged, missing) cannot be continued: the
/// chain is given up for a fresh full backup, said on stderr, rather than
/// failing every night.
fn decide_by_content(
    repo: &Repository,
    chain: &[DataFile],
    source: &Source,
    log: &Log,
) -> Result<Plan> {
    let mut cmp = Comparison {
        source,
        log,
        pos: 0,
        ours: vec![0u8; CHUNK],
    };
    let (tx, rx) = sync_channel::<Result<Vec<u8>>>(4);
    thread::scope(|scope| {
        let reader = thread::Builder::new().spawn_scoped(scope, move || {
            // The receiver hangs up once it has decided.
            read_repository(repo, chain, |chunk| tx.send(chunk).is_ok());
        });
        if reader.is_err() {
            // No thread to be had (a process limit): the same comparison,
            // reading the two sides in turn.
            let mut decided = None;
            read_repository(repo, chain, |chunk| {
                decided = cmp.take(chunk).transpose();
                decided.is_none()
            });
            return decided.unwrap_or_else(|| cmp.finish());
        }
        for chunk in rx {
            if let Some(plan) = cmp.take(chunk)? {
                return Ok(plan);
            }
        }
        cmp.finish()
    })
}

/// The repository's bytes in order, chunk after chunk, to `send` until it
/// returns `false`; an error ends them.
fn read_repository(
    repo: &Repository,
    chain: &[DataFile],
    mut send: impl FnMut(Result<Vec<u8>>) -> bool,
) {
    for f in chain {
        let mut r = match repo.reader(&f.name(), f.gzip) {
            Ok(r) => r,
            Err(e) => {
                send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; r.chunk_len()];
            match r.read_chunk(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if !send(Ok(buf)) {
                        return;
                    }
                }
                Err(e) => {
                    send(Err(e));
                    return;
                }
            }
        }
    }
}

/// Data.fs compared with the repository's bytes as they come.
struct Comparison<'a> {
    source: &'a Source,
    log: &'a Log,
    /// Bytes of both found equal so far.
    pos: u64,
    ours: Vec<u8>,
}

impl Comparison<'_> {
    /// The next chunk of the repository; `Some` once the plan is decided.
    fn take(&mut self, theirs: Result<Vec<u8>>) -> Result<Option<Plan>> {
        let (log, source) = (self.log, self.source);
        let theirs = match theirs {
            Ok(t) => t,
            Err(e) => {
                log.notice(format_args!(
                    "{e}: the repository cannot be compared with {} (full backup)",
                    source.shown()
                ));
                return Ok(Some(Plan::Full));
            }
        };
        let pos = self.pos;
        let end = pos + theirs.len() as u64;
        if end > source.size() {
            log!(log, "repository state: more than {} bytes", source.size());
            log!(log, "file shrunk, possibly because of a pack (full backup)");
            return Ok(Some(Plan::Full));
        }
        source.read_into(pos, &mut self.ours[..theirs.len()])?;
        if self.ours[..theirs.len()] != theirs[..] {
            log!(
                log,
                "repository differs from {} within bytes {pos}..{end}",
                source.shown()
            );
            log!(
                log,
                "file changed, possibly because of a pack (full backup)"
            );
            return Ok(Some(Plan::Full));
        }
        self.pos = end;
        Ok(None)
    }

    /// Every chunk was equal: the repository is the source's prefix.
    fn finish(self) -> Result<Plan> {
        let (log, pos) = (self.log, self.pos);
        log!(
            log,
            "repository state: {pos} bytes, the same as the source's prefix"
        );
        log!(log, "current state   : {} bytes", self.source.size());
        if pos == self.source.size() {
            log!(log, "No changes, nothing to do");
            return Ok(Plan::Nothing);
        }
        Ok(Plan::Incremental { start: pos })
    }
}

/// A writer that moves the progress line on by what it writes.
struct Counted<'a, W: Write>(&'a mut W, &'a Log);

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Walk Data.fs once, copying `[start, end of last complete transaction)`
/// into a temporary file. Returns the walk and (bytes, md5).
fn copy(
    source: &Source,
    resume: Option<Resume>,
    out: &mut AtomicFile,
    start: u64,
    (gzip, blobs): (bool, bool),
    log: &Log,
) -> Result<(WalkResult, u64, String)> {
    let shown = out.shown().to_string();
    let mut w = DataWriter::new(out.file(), gzip);
    log.start("backing up", source.size().saturating_sub(start));
    let walk = source.walk_with(
        start,
        resume,
        Some((&mut Counted(&mut w, log) as &mut dyn Write, &shown)),
        blobs,
    );
    log.done();
    let walk = walk?;
    let (n, md5) = w.finish(&shown)?;
    if walk.end < source.size() {
        log!(
            log,
            "left out {} bytes after offset {}: a transaction not yet complete (a commit in progress?)",
            source.size() - walk.end,
            walk.end
        );
    }
    Ok((walk, n, md5))
}

/// Write a full backup (`start` 0) or an increment from `start`, which the
/// decision confirmed to be where the repository's bytes end.
#[allow(clippy::too_many_arguments)]
fn write_backup(
    opts: &BackupOptions,
    repo: &Repository,
    blobs: Option<&ChainBlobs>,
    chain: &[DataFile],
    source: &Source,
    now: Timestamp,
    kind: Kind,
    start: u64,
    log: &Log,
) -> Result<Outcome> {
    let dest = DataFile::new(now, kind, opts.gzip);
    // A full backup owns its `.dat`; an increment is logged in its chain's.
    let owner = match kind {
        Kind::Full => &dest,
        Kind::Incremental => &chain[0],
    };
    let mut out = start_file(repo, &dest, source)?;
    // Only an increment may start from the repository's index: its bytes
    // up to `start` were just confirmed. A full backup is full because the
    // repository no longer describes Data.fs, nor does its index.
    let confirmed = match kind {
        Kind::Full => None,
        Kind::Incremental => chain.last().map(|f| (f.index_name(), start)),
    };
    // The blobs of a backup are those of the records in its range, so
    // with blobs the walk must parse the whole range: no index past
    // `start` may shorten it.
    let limit = blobs.map(|_| start);
    let resume = saved_index(repo, source, &opts.file, confirmed, limit, log)?;
    let flags = (opts.gzip, blobs.is_some());
    let (walk, _, md5) = copy(source, resume, &mut out, start, flags, log)?;
    if walk.end < start {
        return Err(Error::SourceShorter {
            path: source.shown().to_string(),
            end: walk.end,
            backed_up: start,
        });
    }
    if kind == Kind::Incremental && walk.end == start {
        // Only a transaction still being committed follows the backed-up
        // bytes; repozo would write an empty increment.
        log!(
            log,
            "No changes, nothing to do (the bytes after {start} are an incomplete transaction)"
        );
        return Ok(Outcome::NothingToDo);
    }
    match kind {
        Kind::Full => log!(
            log,
            "writing full backup: {} bytes to {}",
            walk.end,
            out.shown()
        ),
        Kind::Incremental => log!(
            log,
            "writing incremental: {} bytes to {}",
            walk.end - start,
            out.shown()
        ),
    }
    let entry = DatEntry {
        path: repo.display(&dest.name()),
        start,
        end: walk.end,
        md5,
    };
    let blob_dir = blobs.map(|b| b.dir);
    let (blobs, pool) = match blobs {
        Some(chain_blobs) => {
            let dir = chain_blobs.dir;
            let (b, pool) = store_blobs(repo, &chain_blobs.manifests, source, dir, &walk, log)?;
            let records = b.manifest.entries.len();
            if records > 0 && b.missing.len() == records {
                // An empty or unmounted directory: recording every blob
                // as missing would pass for a backup, and let -k remove
                // the older ones that hold them.
                source.check_not_replaced()?;
                return Err(Error::NoBlobFound {
                    path: dir.shown().to_string(),
                    records,
                });
            }
            (Some(b), Some(pool))
        }
        None => (None, None),
    };
    commit_all(
        repo,
        &Commit {
            owner,
            dest: &dest,
            source,
            walk: &walk,
            entry: &entry,
        },
        out,
        blobs
            .as_ref()
            .map(|b| (&b.manifest, pool.expect("stored with the manifest"))),
        log,
    )?;
    if let (Some(b), Some(dir)) = (&blobs, blob_dir) {
        repo.touch_pool();
        for (oid, tid, why) in &b.missing {
            log.notice(format_args!(
                "the blob of oid {} written by tid {} is missing, recorded as such in {}: {why}",
                blob::repr(*oid),
                blob::repr(*tid),
                repo.display(&dest.blobs_name())
            ));
        }
        log!(
            log,
            "{} blob records in the range, {} blob files copied from {}",
            b.manifest.entries.len(),
            b.copied,
            dir.layout()
        );
    }
    // Older backups may hold the blobs this one could not find: nothing is
    // removed while any is missing.
    let missing = blobs.as_ref().map_or(0, |b| b.missing.len());
    if missing > 0 && (opts.kill_old || kind == Kind::Full) {
        log.notice(format_args!(
            "not removing older backups or blob files: {missing} blob files of this backup are missing"
        ));
        return Ok(written(entry, kind, (start, walk.end), missing));
    }
    if kind == Kind::Full && opts.kill_old {
        delete_old_backups(repo, log)?;
    }

    // What no backup needs any more (removed by -k, by Python repozo's -k
    // or collective.recipe.backup's cleanup, or left by a crash) goes at
    // each full backup and each -k; a nightly increment stays in
    // proportion to what changed.
    let pooled = blobs.is_some() || repo.entry(blobs::POOL).is_some();
    if pooled && (kind == Kind::Full || opts.kill_old) {
        // The backup is made: what cannot be collected now waits.
        if let Err(e) = repo.collect_blob_garbage(log) {
            log.notice(format_args!("{e}: unneeded blob files not removed"));
        }
    }
    Ok(written(entry, kind, (start, walk.end), 0))
}

fn written(entry: DatEntry, kind: Kind, (start, end): (u64, u64), blobs_missing: usize) -> Outcome {
    Outcome::Written {
        file: entry.path,
        kind,
        start,
        end,
        blobs_missing,
    }
}

/// Refuse an existing name before any work, as repozo does, then open the
/// temporary file.
fn start_file(repo: &Repository, dest: &DataFile, source: &Source) -> Result<AtomicFile> {
    let name = dest.name();
    if repo.entry(&name).is_some() {
        return Err(Error::WouldOverwrite {
            path: repo.display(&name),
        });
    }
    let mut f = repo.create(&name)?;
    f.set_permissions(source.permissions());
    Ok(f)
}

/// What [`commit_all`] puts into place.
struct Commit<'a> {
    /// The full backup whose `.dat` logs the new file.
    owner: &'a DataFile,
    dest: &'a DataFile,
    source: &'a Source,
    walk: &'a WalkResult,
    entry: &'a DatEntry,
}

/// Write the `.index` and the new `.dat` aside, then rename the data file,
/// the `.index` and the `.dat` into place, in that order.
///
/// Everything that can fail for want of space happens before the first
/// rename, so a full disk leaves the repository as it was; the `.dat`, the
/// commit point, is replaced whole, so it is never left half-appended.
/// Nothing is renamed if Data.fs was replaced meanwhile.
fn commit_all(
    repo: &Repository,
    c: &Commit<'_>,
    data: AtomicFile,
    blobs: Option<(&Manifest, PoolWriter<'_>)>,
    log: &Log,
) -> Result<()> {
    log!(log, "writing index");
    let index = write_aside(repo, &c.dest.index_name(), c.source, |w| {
        let dialect = index_file::dialect_for(c.walk.magic);
        index_file::save(w, c.walk.end, &c.walk.index, dialect).map(drop)
    })?;
    let mut log_text = if c.owner == c.dest {
        Vec::new()
    } else {
        repo.read(&c.owner.dat_name())?
    };
    log_text.extend_from_slice(c.entry.line().as_bytes());
    let dat = write_aside(repo, &c.owner.dat_name(), c.source, |w| {
        w.write_all(&log_text)
    })?;
    let (manifest, pool) = match blobs {
        Some((m, pool)) => {
            let text = m.text();
            let f = write_aside(repo, &c.dest.blobs_name(), c.source, |w| {
                w.write_all(text.as_bytes())
            })?;
            (Some(f), Some(pool))
        }
        None => (None, None),
    };
    // After every blob file was read: a pack that removed some meanwhile
    // replaced Data.fs, and the backup starts over instead of recording
    // them as missing.
    c.source.check_not_replaced()?;
    if let Some(pool) = pool {
        log!(log, "storing {} new blob files", pool.len());
        pool.commit()?;
    }
    let dir = repo.open_dir()?;
    // The manifest before the data file: a data file is never without
    // the blobs it needs, even when a crash leaves it without its `.dat`
    // line (recover then takes a full backup as found, as repozo does).
    if let Some(m) = manifest {
        m.commit_in(true, &dir)?;
    }
    data.commit_in(false, &dir)?;
    index.commit_in(true, &dir)?;
    dat.commit_in(true, &dir)
}

/// The blobs of a backup, read and stored in the pool (not yet named).
struct StoredBlobs {
    manifest: Manifest,
    /// `(oid, tid, why)` of the blob records whose file could not be read.
    missing: Vec<(u64, u64, String)>,
    /// Files copied (the others were pooled already).
    copied: usize,
}

/// Store the files of the blob records `walk` found: those the newest
/// chain's `manifests` list as pooled (same oid, tid and size: ZODB never
/// rewrites a committed blob file) are neither read nor copied again; the
/// rest are copied, hashed on the way. A file that cannot be read is
/// recorded as missing, never the end of the backup: Data.fs must not go
/// unsaved for one lost blob.
fn store_blobs<'r>(
    repo: &'r Repository,
    manifests: &[Result<Option<Manifest>>],
    source: &Source,
    dir: &BlobDir,
    walk: &WalkResult,
    log: &Log,
) -> Result<(StoredBlobs, PoolWriter<'r>)> {
    let known = blobs::known(manifests, log);
    let mut pool = repo.pool_writer(source.permissions());
    let mut entries = Vec::with_capacity(walk.blobs.len());
    let mut missing = Vec::new();
    for rec in &walk.blobs {
        match source.is_blob_behind(rec) {
            Ok(true) => {}
            Ok(false) => continue,
            // ZODB could not load that record either; the backup goes on.
            Err(e @ Error::Format { .. }) => {
                log.notice(format_args!("{e}: not followed for its blob"));
                continue;
            }
            Err(e) => return Err(e),
        }
        let (oid, tid) = (rec.oid, rec.tid);
        let shown = dir.shown_blob(oid, tid);
        let stored = match dir.open_blob(oid, tid) {
            Ok(mut f) => {
                let size = f.metadata().map_err(io_err(&shown, "cannot stat"))?.len();
                // Pooled under its oid, tid and size, and still there.
                let pooled = known.get(&(oid, tid)).and_then(|list| {
                    list.iter().find(|st| {
                        st.size == size
                            && repo.pooled_size(oid, tid, st).is_some_and(|n| n == st.size)
                    })
                });
                match pooled {
                    Some(st) => Some(st.clone()),
                    None => match pool.store(&mut f, &shown, oid, tid) {
                        Ok(st) => Some(st),
                        // Unreadable (an I/O error on its disk): as if missing.
                        Err(Error::Io {
                            path,
                            action,
                            source,
                        }) if path == shown => {
                            missing.push((oid, tid, format!("{path}: {action}: {source}")));
                            None
                        }
                        Err(e) => return Err(e),
                    },
                }
            }
            Err(e) => {
                missing.push((oid, tid, e.to_string()));
                None
            }
        };
        entries.push(BlobEntry { oid, tid, stored });
    }
    let copied = pool.len();
    Ok((
        StoredBlobs {
            manifest: Manifest {
                layout: dir.layout(),
                entries,
            },
            missing,
            copied,
        },
        pool,
    ))
}

/// A file of the repository written under a temporary name and fsync'd,
/// ready to be committed.
fn write_aside(
    repo: &Repository,
    name: &str,
    source: &Source,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> std::io::Result<()>,
) -> Result<AtomicFile> {
    let mut f = repo.create(name)?;
    f.set_permissions(source.permissions());
    let shown = f.shown().to_string();
    let mut w = BufWriter::new(f.file());
    fill(&mut w)
        .and_then(|()| w.flush())
        .map_err(io_err(&shown, "write"))?;
    drop(w);
    f.file().sync_all().map_err(io_err(&shown, "fsync"))?;
    Ok(f)
}

/// `-k`: keep only the newest full backup and its chain's metadata, and
/// drop what repair set aside more than [`ORPHAN_GRACE`] ago (kept that
/// long for whoever wants to look at it, never for ever).
fn delete_old_backups(repo: &Repository, log: &Log) -> Result<()> {
    let files = repo.data_files()?;
    let Some(newest_full) = files.iter().rev().find(|f| f.kind == Kind::Full) else {
        return Ok(());
    };
    // The backup is made by now: what cannot be removed (a directory
    // named like a backup file, a file we may not remove) is said and
    // skipped, never the end of the run, which would leave every older
    // backup behind it in place and fail every later `-k` the same way.
    for f in files.iter().filter(|f| *f != newest_full) {
        let name = f.name();
        let shown = repo.display(&name);
        if repo.entry(&name).is_some_and(|m| m.is_dir()) {
            log.notice(format_args!(
                "not removing {shown}: a directory, not a backup file"
            ));
            continue;
        }
        log!(log, "removing old backup file {name} (and .dat / .index)");
        for name in [f.dat_name(), f.index_name(), f.blobs_name()] {
            let _ = repo.remove(&name);
        }
        if let Err(e) = repo.remove(&name) {
            log.notice(format_args!("{}", io_err(&shown, "remove")(e)));
        }
    }
    let now = std::time::SystemTime::now();
    for name in repo.set_aside_files()? {
        let age = repo
            .entry(&name)
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok());
        if age.is_some_and(|a| a > ORPHAN_GRACE) {
            log!(
                log,
                "removing {}, set aside by a repair",
                repo.display(&name)
            );
            if let Err(e) = repo.remove(&name) {
                log.notice(format_args!(
                    "{}",
                    io_err(&repo.display(&name), "remove")(e)
                ));
            }
        }
    }
    Ok(())
}

/// How long `-k` keeps files that repair set aside.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The saved index to start the walk from: `Data.fs.index`, or the index of
/// the repository's last backup when `confirmed` says that this run found
/// the repository's bytes to be Data.fs's prefix up to its position,
/// whichever describes more of the file (`Data.fs.index` on a tie),
/// provided it passes FileStorage's sanity check. Without one the whole
/// file is walked, which gives the same index, only slower.
fn saved_index(
    repo: &Repository,
    source: &Source,
    file: &std::path::Path,
    confirmed: Option<(String, u64)>,
    limit: Option<u64>,
    log: &Log,
) -> Result<Option<Resume>> {
    // Data.fs.index is beside Data.fs; a repository index is opened
    // through the repository, as every repository file is.
    enum Saved {
        Beside(PathBuf),
        InRepository(String),
    }
    let open_saved = |at: &Saved, shown: &str| match at {
        Saved::Beside(path) => open::open_regular(path, shown),
        Saved::InRepository(name) => repo.open(name),
    };
    let mut candidates: Vec<(u64, Saved, String)> = Vec::new();
    let mut own_index = file.as_os_str().to_owned();
    own_index.push(".index");
    let own_index = PathBuf::from(own_index);
    let own_shown = own_index.to_string_lossy().into_owned();
    let own = (Saved::Beside(own_index), own_shown, None);
    let repo_index = confirmed.map(|(name, pos)| {
        let shown = repo.display(&name);
        (Saved::InRepository(name), shown, Some(pos))
    });
    for (at, shown, want) in std::iter::once(own).chain(repo_index) {
        let f = match open_saved(&at, &shown) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => {
                log!(log, "not using index {e}");
                continue;
            }
        };
        match index_file::read_pos(std::io::BufReader::new(f)) {
            Ok(pos) if want.is_some_and(|w| w != pos) => log!(
                log,
                "not using index {shown}: it describes {pos} bytes, the repository {} bytes",
                want.unwrap_or_default()
            ),
            Ok(pos) if limit.is_some_and(|l| pos > l) => log!(
                log,
                "not using index {shown}: it describes {pos} bytes, past the {} bytes of the repository, and the blob records after them are wanted",
                limit.unwrap_or_default()
            ),
            Ok(pos) if pos <= source.size() => candidates.push((pos, at, shown)),
            Ok(pos) => log!(log, "not using index {shown}: it describes {pos} bytes"),
            Err(e) => log!(log, "not using index {shown}: {e}"),
        }
    }
    // Stable: Data.fs.index stays first on a tie.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (pos, at, shown) in candidates {
        let loaded = open_saved(&at, &shown)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                index_file::load(std::io::BufReader::with_capacity(1 << 20, f))
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(ix) if source.index_is_sane(&ix.index, ix.pos)? => {
                log!(
                    log,
                    "reading the index from {shown}: {pos} bytes already indexed"
                );
                return Ok(Some(Resume {
                    pos: ix.pos,
                    index: ix.index,
                }));
            }
            Ok(_) => log!(
                log,
                "not using index {shown}: it does not match {}",
                source.shown()
            ),
            Err(e) => log!(log, "not using index {shown}: {e}"),
        }
    }
    Ok(None)
}
