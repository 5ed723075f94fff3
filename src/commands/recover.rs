//! `-R`: rebuild Data.fs as of a date from a full backup and its increments.
//!
//! The output is written to `<output>.part` and renamed over `<output>`
//! only when complete (and, with `-w`, verified), so a failed recovery
//! never replaces a database with less. The last file's `.index` is
//! installed as `<output>.index` when its position is the recovered size;
//! otherwise any old `<output>.index` is removed, because an index left from
//! another database must never sit beside the recovered one.
//!
//! `<output>` is the file `-o` leads to: a symbolic link is followed (the
//! `.part` and `.index` go beside its target, which is replaced; the link
//! stays). A device or FIFO is never replaced by a regular file: it is
//! written to as stdout when it is our stdout, refused otherwise; so is any
//! file in the repository, which a recovery would corrupt. A leftover
//! `<output>.part` is removed, never written through.
//!
//! The chain must start with a full backup, and each plain file must be as
//! long as its `.dat` line says before a byte is written, so that a damaged
//! repository fails the run instead of making a Data.fs that is not one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::blobdir::NewBlobDir;
use crate::codec::md5::Md5Thread;
use crate::datafs::{Resume, Source};
use crate::disk::atomic::{remove_temporaries_of, sync_dir, AtomicFile};
use crate::disk::behind::{clones_extents, BehindWriter};
use crate::disk::open;
use crate::error::{io_err, Error, Mismatch, Refusal, Result};
use crate::filestorage::blob::Layout;
use crate::filestorage::index::{Index, PREFIX_LEN};
use crate::filestorage::index_file;
use crate::filestorage::records::BlobRecord;
use crate::filestorage::records::MAGIC_LEN;
use crate::filestorage::sanity::points_at;
use crate::filestorage::timestamp::{last_tid_at, tid_hex, tid_time_text};
use crate::log;
use crate::log::Log;
use crate::repository::lock;
use crate::repository::{DatEntry, DataFile, Kind, Repository, Timestamp};

use super::history::{self, Wanted};
use super::in_place;

/// What `-R` was asked to do.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    pub(crate) repository: String,
    /// `-D`, already checked; `None` means now.
    pub(crate) date: Option<String>,
    /// `-D N`: the N-th newest backup's state (0: the newest).
    pub(crate) revision: Option<usize>,
    /// `-o`; `None` means stdout.
    pub(crate) output: Option<String>,
    pub(crate) with_verify: bool,
    /// `--blob-dir`: the blob directory to make hold the state's blobs.
    pub(crate) blob_dir: Option<PathBuf>,
    /// `-F`: never recover in place.
    pub(crate) full: bool,
    /// `-Q`: before recovering in place, check only the last range the
    /// output keeps.
    pub(crate) quick: bool,
    /// `--at`/`--at-tid`: end with this transaction, not a backup file.
    pub(crate) at: Option<PointInTime>,
}

/// The transaction `--at` or `--at-tid` ends the recovery with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointInTime {
    /// The last transaction at or before this UTC time.
    At(chrono::NaiveDateTime),
    /// Exactly this transaction.
    Tid(u64),
}

/// What a recovery uses: the chain's files up to the date (or the
/// transaction), its `.dat` log, and where `--at` cuts its last file.
type Chosen = (Vec<Piece>, Option<Vec<DatEntry>>, Option<Cut>);

/// A file of the chain, with the size its `.dat` line gives (none when
/// there is no usable log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) file: DataFile,
    pub(crate) logged_size: Option<u64>,
    /// `--at`: only this many of its bytes are recovered; `None`: all.
    pub(crate) keep: Option<u64>,
}

/// Where `--at`/`--at-tid` ends a recovery inside the chain's last file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// The last transaction kept.
    pub(crate) tid: u64,
    /// Where the last file starts in the Data.fs.
    pub(crate) start: u64,
    /// Where the recovered Data.fs ends: that transaction's end.
    pub(crate) end: u64,
}

/// Where the recovered bytes go.
enum Dest {
    Stdout,
    /// A regular file, to be replaced: the path `-o` leads to, and how it
    /// is shown.
    File {
        path: PathBuf,
        shown: String,
    },
}

/// What a recovery produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub(crate) bytes: u64,
    pub(crate) files: usize,
    /// Whether `<output>.index` was installed.
    pub(crate) index_installed: bool,
}

/// Recover as of `opts.date` (or `now`).
///
/// # Errors
/// No files for the date, missing or damaged backup files, a failed `-w`
/// check, I/O errors on the output (a closed pipe or a full disk among them).
pub(crate) fn recover(opts: &RecoverOptions, now: Timestamp, log: &Log) -> Result<Recovered> {
    let repo = Repository::new(&opts.repository);
    let _lock = lock::acquire(&repo, lock::Mode::Shared)?;
    let dest = match &opts.output {
        None => Dest::Stdout,
        Some(output) => destination(&repo, output)?,
    };
    if let (Some(dir), Dest::File { path, .. }) = (&opts.blob_dir, &dest) {
        // Replacing the blob directory removes what it holds: never the
        // repository, nor the database being recovered.
        let repository = format!("the repository {}", repo.given());
        let output = format!("the output {}", path.display());
        let others = [(repo.dir(), repository), (path.as_path(), output)];
        for (other, shown) in others {
            if open::nested(dir, other) {
                return Err(Error::Refused {
                    path: dir.to_string_lossy().into_owned(),
                    action: "cannot recover blobs into it",
                    why: Refusal::Overlaps { other: shown },
                });
            }
        }
    }
    let (chain, dat, cut) = match opts.at {
        None => {
            let date = match opts.revision {
                Some(n) => Some(revision_stem(&repo, n)?),
                None => opts.date.clone(),
            };
            let when = date.clone().unwrap_or_else(|| now.stem());
            let found = repo.find_files(&when, log)?;
            if found.is_empty() {
                return Err(Error::NoFiles {
                    before: date.clone(),
                });
            }
            // Increments alone (their full backup deleted) are no Data.fs:
            // without its magic and first transactions ZODB cannot open
            // what they make.
            if found[0].kind != Kind::Full {
                return Err(Error::NoFullBackup {
                    before: date.clone(),
                });
            }
            let (chain, dat) = chain_from_dat(&repo, &found, &when, log)?;
            (chain, dat, None)
        }
        Some(at) => point_in_time(&repo, at, log)?,
    };
    check_logged_sizes(&repo, &chain)?;
    let truth = if opts.with_verify {
        Some(expected_sizes_and_sums(&repo, &chain)?)
    } else {
        None
    };
    match dest {
        Dest::Stdout if opts.blob_dir.is_some() => Err(Error::Refused {
            path: opts.output.clone().unwrap_or_default(),
            action: "cannot recover blobs with it",
            why: Refusal::NotRegular,
        }),
        Dest::Stdout => {
            match &opts.output {
                Some(output) => log!(log, "Recovering file to {output} (our stdout)"),
                None => log!(log, "Recovering file to stdout"),
            }
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            let bytes = concat(
                &repo,
                &chain,
                Out::Stream(&mut out),
                "<stdout>",
                truth.as_ref(),
                log,
            )?;
            out.flush().map_err(io_err("<stdout>", "write"))?;
            Ok(Recovered {
                bytes,
                files: chain.len(),
                index_installed: false,
            })
        }
        Dest::File { path, shown } => {
            if opts.output.as_deref() == Some(shown.as_str()) {
                log!(log, "Recovering file to {shown}");
            } else {
                let given = opts.output.as_deref().unwrap_or_default();
                log!(log, "Recovering file to {shown}, which {given} leads to");
            }
            // Held until the recovery ends, in place or in full.
            let mut locks_held = None;
            if fs::symlink_metadata(&path).is_ok() {
                let given = opts.output.as_deref().unwrap_or(&shown);
                let locks = locks_held.insert(in_place::lock_output(given, &path, &shown)?);
                // Under its lock, the temporaries of FILE's index and marker
                // are a killed run's.
                for ext in ["index", in_place::MARKER_EXT] {
                    remove_temporaries_of(&PathBuf::from(format!("{shown}.{ext}")));
                }
                if opts.full {
                    log!(log, "Recovering in full: {shown}: -F given");
                } else {
                    let job = in_place::Job {
                        repo: &repo,
                        chain: &chain,
                        dat: dat.as_deref(),
                        output: &path,
                        shown: &shown,
                        quick: opts.quick,
                        truth: truth.as_ref(),
                        blob_dir: opts.blob_dir.as_deref(),
                        locks,
                        cut: cut.as_ref(),
                    };
                    if let Some(done) = in_place::recover_in_place(&job, log)? {
                        return Ok(done);
                    }
                }
            }
            recover_to_file(
                &repo,
                &chain,
                cut.as_ref(),
                (&path, &shown),
                truth.as_ref(),
                opts.blob_dir.as_deref(),
                log,
            )
        }
    }
}

/// `-D N`: the stem of the N-th newest backup file (0: the newest), the
/// date whose state it holds.
///
/// # Errors
/// The repository holds no N+1 backups, or cannot be read.
fn revision_stem(repo: &Repository, n: usize) -> Result<String> {
    let files = repo.data_files()?;
    match files.len().checked_sub(n + 1) {
        Some(i) => Ok(files[i].stem.clone()),
        None => Err(Error::NoRevision {
            repository: repo.given().to_string(),
            number: n,
            backups: files.len(),
        }),
    }
}

/// The chain `--at`/`--at-tid` asks for: the oldest holding the
/// transaction, up to the file that holds it, cut after it (no [`Cut`]
/// when it ends that file).
///
/// # Errors
/// No chain holds it; a file cannot be read or is damaged.
fn point_in_time(repo: &Repository, at: PointInTime, log: &Log) -> Result<Chosen> {
    let (wanted, shown) = match at {
        PointInTime::Tid(t) => (Wanted::Tid(t), tid_hex(t)),
        PointInTime::At(t) => {
            let shown = format!("at or before {}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
            match last_tid_at(t) {
                Some(bound) => (Wanted::AtOrBefore(bound), shown),
                None => {
                    return Err(Error::NoTransaction {
                        repository: repo.given().to_string(),
                        wanted: shown,
                    })
                }
            }
        }
    };
    let chains = history::chains(repo, log)?;
    let found = history::find(repo, &chains, wanted, &shown)?;
    let chain = &chains[found.chain];
    let k = found.piece;
    let mut pieces = chain.pieces[..=k].to_vec();
    let (start, end) = (chain.starts[k], found.end());
    let file = repo.display(&pieces[k].file.name());
    log!(
        log,
        "Recovering to transaction {} ({}) of {file}: {end} bytes",
        tid_hex(found.txn.tid),
        tid_time_text(found.txn.tid)
            .as_deref()
            .unwrap_or("no valid time")
    );
    for p in &pieces {
        log!(log, "\t{}", repo.display(&p.file.name()));
    }
    let cut = if chain.end(k) == Some(end) {
        None
    } else {
        pieces[k].keep = Some(end - start);
        Some(Cut {
            tid: found.txn.tid,
            start,
            end,
        })
    };
    Ok((pieces, chain.dat.clone(), cut))
}

/// Where `-o` sends the recovery; refused when replacing what it names
/// would destroy something: a directory, a device or FIFO (as root,
/// `-o /dev/null` would replace the device), a file of the repository.
///
/// # Errors
/// [`Error::Io`] on `output`, saying why.
fn destination(repo: &Repository, output: &str) -> Result<Dest> {
    let refuse = |why: Refusal| Error::Refused {
        path: output.to_string(),
        action: "cannot recover into it",
        why,
    };
    let unresolved = |e: io::Error| Error::Io {
        path: output.to_string(),
        action: "cannot recover into it",
        source: e,
    };
    let given = Path::new(output);
    let target = match fs::metadata(given) {
        Ok(m) if m.is_dir() => return Err(refuse(Refusal::IsDirectory)),
        Ok(m) if !m.is_file() => {
            // `-o /dev/stdout`, or a link to `/proc/self/fd/1`: the user
            // asked for a stream, which stdout is.
            return if open::is_stdout(given) {
                Ok(Dest::Stdout)
            } else {
                Err(refuse(Refusal::NotRegular))
            };
        }
        Ok(m) => {
            let target = open::final_target(given).map_err(unresolved)?;
            // A /proc/self/fd/N link names its file by a text that need not
            // be a path to it (a deleted file's ends in " (deleted)").
            let same = fs::symlink_metadata(&target)
                .is_ok_and(|t| (t.dev(), t.ino()) == (m.dev(), m.ino()));
            if !same {
                return Err(refuse(Refusal::LinkElsewhere));
            }
            target
        }
        // Missing, or a dangling link: the file to make is the one the
        // link names. Other errors (a loop, a directory we may not search)
        // come again from following the links, or later, when creating.
        Err(_) => open::final_target(given).map_err(unresolved)?,
    };
    if open::same_file(open::parent_dir(&target), repo.dir()) {
        return Err(refuse(Refusal::InRepository {
            repository: repo.given().to_string(),
        }));
    }
    let Some(shown) = target.to_str().map(str::to_string) else {
        return Err(refuse(Refusal::NotUtf8));
    };
    Ok(Dest::File {
        path: target,
        shown,
    })
}

/// Fail unless each plain file is as long as its `.dat` line says, before
/// a byte is written (stdout cannot be taken back). A file changed since
/// its backup, say overwritten by a recovery into the repository, would
/// otherwise be spliced in and shift everything after it.
///
/// # Errors
/// [`Error::Mismatch`] naming the file; the file cannot be opened.
fn check_logged_sizes(repo: &Repository, chain: &[Piece]) -> Result<()> {
    for p in chain.iter().filter(|p| !p.file.gzip) {
        let Some(want) = p.logged_size else {
            continue;
        };
        let name = p.file.name();
        let shown = repo.display(&name);
        let got = repo
            .open(&name)?
            .metadata()
            .map_err(io_err(&shown, "cannot stat"))?
            .len();
        if got != want {
            return Err(wrong_size(&shown, got, want, false));
        }
    }
    Ok(())
}

fn wrong_size(shown: &str, got: u64, want: u64, gzip: bool) -> Error {
    Error::Mismatch(Mismatch::Size {
        path: shown.to_string(),
        size: got,
        expected: want,
        gzip,
    })
}

/// The files to concatenate, as the full backup's `.dat` log records them.
///
/// repozo takes whatever files sort between the full backup and the date;
/// a missing increment then silently leaves a hole in the recovered file,
/// and a data file that no `.dat` line lists (left by an interrupted
/// backup) is spliced in. Where the log exists, we follow it: every file it
/// lists up to the date must be there and continue where the previous one
/// ended, and files it does not list are left out. Without a log we do as
/// repozo does.
///
/// # Errors
/// [`Error::Mismatch`] for a missing file or a gap.
pub(crate) fn chain_from_dat(
    repo: &Repository,
    found: &[DataFile],
    when: &str,
    log: &Log,
) -> Result<(Vec<Piece>, Option<Vec<DatEntry>>)> {
    let f = follow_dat(repo, found, when, log)?;
    match f.broken {
        Some(broken) => Err(broken),
        None => Ok((f.pieces, f.dat)),
    }
}

/// A chain as far as its `.dat` log could be followed.
pub(crate) struct Followed {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) dat: Option<Vec<DatEntry>>,
    /// What stopped it before the log's end: a missing file, a gap.
    pub(crate) broken: Option<Error>,
}

/// [`chain_from_dat`], giving the files before a missing file or a gap
/// and the error for it instead of failing: what `--transactions` and
/// `--at` can still read of a broken chain.
///
/// # Errors
/// The `.dat` cannot be read, or lists a name that is no backup's.
pub(crate) fn follow_dat(
    repo: &Repository,
    found: &[DataFile],
    when: &str,
    log: &Log,
) -> Result<Followed> {
    let as_found = || {
        found
            .iter()
            .map(|f| Piece {
                file: f.clone(),
                logged_size: None,
                keep: None,
            })
            .collect()
    };
    let full = &found[0];
    let dat_shown = repo.display(&full.dat_name());
    let Some(entries) = repo.read_dat(full)? else {
        log!(log, "no {dat_shown}: using the files as found");
        return Ok(Followed {
            pieces: as_found(),
            dat: None,
            broken: None,
        });
    };
    if entries.first().map(|e| e.file_name()) != Some(full.name().as_str()) {
        log!(
            log,
            "{dat_shown} does not start with {full}: using the files as found"
        );
        return Ok(Followed {
            pieces: as_found(),
            dat: None,
            broken: None,
        });
    }
    let on_disk: HashSet<&DataFile> = found.iter().collect();
    let mut chain = Vec::new();
    let mut end = 0;
    for e in &entries {
        let name = e.file_name();
        let shown = repo.display(name);
        let f = DataFile::parse(name).ok_or_else(|| {
            Error::Mismatch(Mismatch::NotABackupName {
                dat: dat_shown.clone(),
                listed: e.path.clone(),
            })
        })?;
        if f.stem.as_str() > when {
            break;
        }
        if !on_disk.contains(&f) {
            let missing = Error::Mismatch(Mismatch::Missing { path: shown });
            return Ok(Followed {
                pieces: chain,
                dat: Some(entries),
                broken: Some(missing),
            });
        }
        if e.start != end {
            let broken = gap(&shown, e.start, end, &dat_shown);
            return Ok(Followed {
                pieces: chain,
                dat: Some(entries),
                broken: Some(broken),
            });
        }
        end = e.end;
        chain.push(Piece {
            file: f,
            logged_size: Some(e.size()),
            keep: None,
        });
    }
    let listed: HashSet<&DataFile> = chain.iter().map(|p| &p.file).collect();
    for f in found.iter().filter(|f| !listed.contains(f)) {
        log.notice(format_args!(
            "leaving out {}: {dat_shown} does not list it (left by an interrupted backup?)",
            repo.display(&f.name())
        ));
    }
    Ok(Followed {
        pieces: chain,
        dat: Some(entries),
        broken: None,
    })
}

/// A `.dat` line whose range does not start where the lines before it
/// end (the first must start at 0): no Data.fs is made by concatenating
/// such files, so recover refuses them and verify reports them.
pub(crate) fn gap(shown: &str, start: u64, end: u64, dat_shown: &str) -> Error {
    Error::Mismatch(Mismatch::Gap {
        path: shown.to_string(),
        start,
        end,
        dat: dat_shown.to_string(),
    })
}

fn recover_to_file(
    repo: &Repository,
    chain: &[Piece],
    cut: Option<&Cut>,
    (output, shown): (&Path, &str),
    truth: Option<&HashMap<String, (u64, String)>>,
    blob_dir: Option<&Path>,
    log: &Log,
) -> Result<Recovered> {
    let part_shown = format!("{shown}.part");
    let part = PathBuf::from(&part_shown);
    let mut file = open::create_new(&part, &part_shown)?;
    let guard = PartFile(&part);
    let sizes = if clones_extents(&file) {
        concat_sizes(
            repo,
            chain,
            &mut Out::File(&mut file),
            &part_shown,
            truth,
            log,
            true,
        )?
    } else {
        let mut w = BehindWriter::new(&mut file);
        let n = concat_sizes(
            repo,
            chain,
            &mut Out::Stream(&mut w),
            &part_shown,
            truth,
            log,
            true,
        )?;
        w.finish().map_err(io_err(&part_shown, "write"))?;
        n
    };
    let bytes = sizes.iter().sum();
    file.sync_all().map_err(io_err(&part_shown, "fsync"))?;
    // The blob directory is built before anything is replaced, so that a
    // missing or damaged blob leaves the old database and blobs as they
    // were.
    let new_blobs = match blob_dir {
        Some(dir) => Some(recover_blobs(
            repo,
            chain,
            cut,
            (&part_shown, &sizes),
            dir,
            truth.is_some(),
            log,
        )?),
        None => None,
    };

    // Everything that can fail for want of space is done before the old
    // output or its index is touched: the new index is written aside now.
    let index_shown = format!("{shown}.index");
    let index_path = PathBuf::from(&index_shown);
    let new_index = new_index(
        repo,
        chain,
        cut,
        (&part_shown, bytes),
        &index_path,
        &index_shown,
        log,
    )?;
    // The old index goes first: a crash from here on leaves, at worst, a
    // database without an index, which ZODB rebuilds.
    match fs::remove_file(&index_path) {
        Ok(()) => log!(log, "Removed old index file {index_shown}"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&index_shown, "remove")(e)),
    }
    let replaced = new_blobs.map(NewBlobDir::install).transpose()?;
    fs::rename(&part, output).map_err(|e| {
        log!(
            log,
            "ZODB has been fully recovered as {part_shown}, but it cannot be renamed into : {shown}"
        );
        io_err(shown, "rename into place")(e)
    })?;
    std::mem::forget(guard);
    // Only now: its lock tells another run that `<output>.part` is no
    // leftover of ours to remove (`fsutil::create_new`).
    drop(file);
    let index_installed = new_index.is_some();
    if let Some(f) = new_index {
        f.commit(true)?;
    }
    // A killed in-place recovery's marker describes the file replaced.
    let _ = fs::remove_file(format!("{shown}.{}", in_place::MARKER_EXT));
    sync_dir(open::parent_dir(output)).map_err(io_err(shown, "fsync its directory"))?;
    // Only now that the recovered Data.fs is in place: until then, a kill
    // leaves the old blobs under a leftover's name, not half removed.
    if let Some(r) = replaced {
        r.remove(log);
    }
    Ok(Recovered {
        bytes,
        files: chain.len(),
        index_installed,
    })
}

/// Build the blob directory of the recovered state beside `dir`: every blob
/// file the chain's manifests list, copied from the pool (checked against
/// its md5 with `-w`, against its size always). A backup of the chain
/// without a manifest is refused if its range (found in the recovered
/// file `part`, `sizes` giving each backup's share) holds a blob record.
///
/// # Errors
/// A blob record with no blob backed up; a pooled file missing or damaged;
/// I/O errors.
fn recover_blobs(
    repo: &Repository,
    chain: &[Piece],
    cut: Option<&Cut>,
    (part, sizes): (&str, &[u64]),
    dir: &Path,
    with_verify: bool,
    log: &Log,
) -> Result<NewBlobDir> {
    let mut manifests = Vec::with_capacity(chain.len());
    let mut scanned: Option<(Source, Vec<BlobRecord>)> = None;
    let mut start = 0u64;
    for (p, size) in chain.iter().zip(sizes) {
        let end = start + size;
        let m = repo.read_manifest(&p.file)?;
        if m.is_none() {
            if scanned.is_none() {
                let source = Source::open(part)?;
                let walk = source.walk_with(0, None, None, true)?;
                scanned = Some((source, walk.blobs));
            }
            let (source, records) = scanned.as_ref().expect("scanned above");
            let mut blobs = 0;
            for r in records.iter().filter(|r| (start..end).contains(&r.pos)) {
                if source.is_blob_behind(r)? {
                    blobs += 1;
                }
            }
            if blobs > 0 {
                return Err(Error::Mismatch(Mismatch::NoManifest {
                    path: repo.display(&p.file.name()),
                    blobs,
                }));
            }
        }
        manifests.push(m);
        start = end;
    }
    let layout = manifests
        .iter()
        .rev()
        .flatten()
        .map(|m| m.layout)
        .next()
        .unwrap_or(Layout::Bushy);
    let mut new = NewBlobDir::beside(dir, layout)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    let last = chain.len() - 1;
    for (i, (p, m)) in chain.iter().zip(&manifests).enumerate() {
        let Some(m) = m else { continue };
        // Blobs of the transactions after a cut are no part of the state.
        let after = |tid: u64| i == last && cut.is_some_and(|c| tid > c.tid);
        for e in m.entries.iter().filter(|e| !after(e.tid)) {
            let Some(st) = &e.stored else {
                log.notice(format_args!(
                    "{}",
                    Mismatch::BlobMissing {
                        manifest: repo.display(&p.file.blobs_name()),
                        oid: e.oid,
                        tid: e.tid,
                    }
                ));
                continue;
            };
            let shown = repo.display_pooled(e, st);
            let mut src = repo.open_pooled(e, st)?;
            let want = with_verify.then_some(st.md5.as_str());
            let size = new.add(&mut src, &shown, e.oid, e.tid, want)?;
            if size != st.size {
                return Err(wrong_size(&shown, size, st.size, false));
            }
            files += 1;
            bytes += size;
        }
    }
    log!(
        log,
        "Recovered {files} blob files ({bytes} bytes) into {}",
        dir.display()
    );
    Ok(new)
}

/// Removes `<output>.part` unless recovery got as far as renaming it.
struct PartFile<'a>(&'a Path);

impl Drop for PartFile<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// The index to install beside a recovered Data.fs (`recovered`: its path
/// and length): the last file's `.index` as [`prepare_index`] vouches for
/// it; or, for a cut, the index of the file before it (checked as ZODB
/// checks one) continued by walking the recovered bytes after it, or, with
/// no such index, built by walking them all.
///
/// # Errors
/// The recovered file cannot be read or does not end with a complete
/// transaction; the index cannot be written.
pub(crate) fn new_index(
    repo: &Repository,
    chain: &[Piece],
    cut: Option<&Cut>,
    (recovered_path, recovered): (&str, u64),
    target: &Path,
    target_shown: &str,
    log: &Log,
) -> Result<Option<AtomicFile>> {
    let last = &chain.last().expect("a chain is never empty").file;
    let Some(cut) = cut else {
        return prepare_index(
            repo,
            last,
            recovered_path,
            target,
            target_shown,
            recovered,
            log,
        );
    };
    let source = Source::open(recovered_path)?.limit(recovered);
    let resume = match chain.len().checked_sub(2) {
        Some(before) => saved_index(repo, &chain[before].file, cut.start, &source, log)?,
        None => None,
    };
    let from = resume.as_ref().map_or(0, |r| r.pos);
    let walk = source.walk(recovered, resume, None)?;
    if walk.end != recovered {
        return Err(Error::Mismatch(Mismatch::Torn {
            path: recovered_path.to_string(),
            end: walk.end,
            expected: recovered,
        }));
    }
    log!(
        log,
        "Writing index file {target_shown}: {} objects, {} bytes walked",
        walk.index.len(),
        recovered - from
    );
    let mut f = AtomicFile::create(target, target_shown)?;
    if let Ok(m) = fs::metadata(recovered_path) {
        f.set_permissions(m.permissions());
    }
    let dialect = index_file::dialect_for(walk.magic);
    index_file::save(BufWriter::new(f.file()), recovered, &walk.index, dialect)
        .and_then(|mut w| w.flush())
        .map_err(io_err(target_shown, "write"))?;
    f.file().sync_all().map_err(io_err(target_shown, "fsync"))?;
    Ok(Some(f))
}

/// `file`'s `.index`, if it describes the recovered bytes up to `pos`
/// and passes ZODB's sanity check against them; otherwise say why not.
///
/// # Errors
/// I/O errors reading the recovered file.
fn saved_index(
    repo: &Repository,
    file: &DataFile,
    pos: u64,
    source: &Source,
    log: &Log,
) -> Result<Option<Resume>> {
    let shown = repo.display(&file.index_name());
    let loaded = repo
        .open(&file.index_name())
        .map_err(|e| e.to_string())
        .and_then(|f| {
            index_file::load(BufReader::with_capacity(1 << 20, f)).map_err(|e| e.to_string())
        });
    match loaded {
        Ok(ix) if ix.pos == pos && source.index_is_sane(&ix.index, pos)? => {
            log!(log, "Continuing index file {shown} ({pos} bytes)");
            Ok(Some(Resume {
                pos,
                index: ix.index,
            }))
        }
        Ok(ix) => {
            log!(
                log,
                "Not using index file {shown}: it describes {} bytes, not these {pos}, or does not match them",
                ix.pos
            );
            Ok(None)
        }
        Err(e) => {
            log!(log, "Not using index file {shown}: {e}");
            Ok(None)
        }
    }
}

/// Write the last backup's index, ready to be renamed into place, if it is
/// one we can vouch for: it reads as a whole with our own reader (which
/// runs no code, unlike a pickle loaded by ZODB), and FileStorage's sanity
/// check passes against the recovered bytes at exactly their size (for a
/// Data.fs that is only its magic, which that check passes over, the
/// index must be empty). Otherwise say why and install none.
pub(crate) fn prepare_index(
    repo: &Repository,
    last: &DataFile,
    recovered_path: &str,
    target: &Path,
    target_shown: &str,
    recovered: u64,
    log: &Log,
) -> Result<Option<AtomicFile>> {
    let source_shown = repo.display(&last.index_name());
    let mut file = match repo.open(&last.index_name()) {
        Ok(f) => f,
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            log!(log, "No index file to restore: {source_shown}");
            return Ok(None);
        }
        // Like a damaged index: ZODB rebuilds a missing one, so a file that
        // cannot be read (a FIFO planted there, say) costs only the index.
        Err(e) => {
            log.notice(format_args!("Not restoring index file {e}"));
            return Ok(None);
        }
    };
    // Checked as a stream, keeping only the buckets the sanity check looks
    // in: a 3-million-oid index is never held in memory.
    let source = Source::open(recovered_path)?;
    let wanted = source.sanity_records(recovered)?;
    // FileStorage checks no index below 100 bytes; a database with no
    // transaction has exactly one right index, the empty one.
    let magic_only = recovered == MAGIC_LEN && source.magic().is_ok();
    let mut kept = Index::new();
    let mut beyond = false;
    let mut entries = false;
    let read = index_file::for_each_bucket(BufReader::new(&file), |prefix, bucket| {
        beyond |= bucket.max_offset().is_some_and(|o| o >= recovered);
        entries |= !bucket.is_empty();
        let oid_prefix = |oid: u64| oid.to_be_bytes()[..PREFIX_LEN] == prefix;
        if wanted.iter().flatten().any(|&(oid, _)| oid_prefix(oid)) {
            kept.set_bucket(prefix, bucket);
        }
    });
    let why_not = match read {
        Err(e) => Some(e.to_string()),
        Ok(pos) if pos != recovered => Some(format!(
            "it describes {pos} bytes, not the {recovered} recovered"
        )),
        Ok(_) if magic_only => entries.then(|| "it does not match the recovered file".to_string()),
        Ok(_) => {
            let sane = !beyond && wanted.is_some_and(|records| points_at(&kept, &records));
            (!sane).then(|| "it does not match the recovered file".to_string())
        }
    };
    if let Some(why) = why_not {
        log.notice(format_args!(
            "Not restoring index file {source_shown}: {why}"
        ));
        return Ok(None);
    }
    log!(log, "Restoring index file {source_shown} to {target_shown}");
    let mut f = AtomicFile::create(target, target_shown)?;
    // As readable as the recovered file, not the temporary file's 0600:
    // whoever can open the database can use its index.
    if let Ok(m) = fs::metadata(recovered_path) {
        f.set_permissions(m.permissions());
    }
    file.seek(SeekFrom::Start(0))
        .map_err(io_err(&source_shown, "read"))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err(&source_shown, "read"))?;
        if n == 0 {
            break;
        }
        f.file()
            .write_all(&buf[..n])
            .map_err(io_err(target_shown, "write"))?;
    }
    f.file().sync_all().map_err(io_err(target_shown, "fsync"))?;
    Ok(Some(f))
}

/// The `.dat` log as `file name -> (size, md5)`, for `-w`.
fn expected_sizes_and_sums(
    repo: &Repository,
    chain: &[Piece],
) -> Result<HashMap<String, (u64, String)>> {
    let full = &chain[0].file;
    let entries = repo.read_dat_required(full)?;
    Ok(entries
        .into_iter()
        .map(|e| (e.file_name().to_string(), (e.size(), e.md5.clone())))
        .collect())
}

/// Where recovered bytes go.
pub(crate) enum Out<'a> {
    /// A file on a filesystem that shares extents: plain backups are
    /// copied into it by the kernel (`copy_file_range`, which reflinks
    /// there) when no checksum is wanted. Elsewhere the kernel's copy goes
    /// through the page cache, and a [`BehindWriter`] stream is faster.
    File(&'a mut File),
    Stream(&'a mut dyn Write),
}

impl Out<'_> {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Out::File(f) => f.write_all(b),
            Out::Stream(w) => w.write_all(b),
        }
    }
}

/// Write the chain's uncompressed bytes to `out`; returns the total.
///
/// md5 is computed only where it is used: per file for `-w`, over all for
/// the `-v` message; on a thread of its own, beside the copy.
fn concat(
    repo: &Repository,
    chain: &[Piece],
    mut out: Out<'_>,
    out_shown: &str,
    truth: Option<&HashMap<String, (u64, String)>>,
    log: &Log,
) -> Result<u64> {
    concat_sizes(repo, chain, &mut out, out_shown, truth, log, true).map(|sizes| sizes.iter().sum())
}

/// [`concat`], returning the bytes each file gave.
pub(crate) fn concat_sizes(
    repo: &Repository,
    chain: &[Piece],
    out: &mut Out<'_>,
    out_shown: &str,
    truth: Option<&HashMap<String, (u64, String)>>,
    log: &Log,
    summary: bool,
) -> Result<Vec<u64>> {
    let mut all = (summary && truth.is_none() && log.enabled()).then(Md5Thread::spawn);
    let expected = chain
        .iter()
        .map(|p| p.keep.or(p.logged_size).unwrap_or(0))
        .sum();
    log.start("recovering", expected);
    let sizes_or = concat_each(repo, chain, out, out_shown, truth, log, &mut all);
    log.done();
    let sizes = sizes_or?;
    let total: u64 = sizes.iter().sum();
    match all {
        Some(all) => log!(log, "Recovered {total} bytes, md5: {}", all.finish()?),
        None if truth.is_some() && summary => log!(log, "Recovered a total of {total} bytes"),
        None => {}
    }
    Ok(sizes)
}

/// [`concat_sizes`] without the summary: each file's bytes written.
fn concat_each(
    repo: &Repository,
    chain: &[Piece],
    out: &mut Out<'_>,
    out_shown: &str,
    truth: Option<&HashMap<String, (u64, String)>>,
    log: &Log,
    all: &mut Option<Md5Thread>,
) -> Result<Vec<u64>> {
    let mut sizes = Vec::with_capacity(chain.len());
    for p in chain {
        let f = &p.file;
        let name = f.name();
        let shown = repo.display(&name);
        let mut one = truth.is_some().then(Md5Thread::spawn);
        // A cut file is read whole when its md5 is checked, and when it is
        // gzip'd: Python repozo's are one gzip member, whose CRC is
        // checked only at its end.
        let mut room = p.keep.unwrap_or(u64::MAX);
        let whole = p.keep.is_none() || one.is_some() || f.gzip;
        let plain_copy = one.is_none() && all.is_none() && !f.gzip;
        let size = match (&mut *out, plain_copy) {
            (Out::File(dst), true) => {
                let src = repo.open(&name)?;
                let n = io::copy(&mut src.take(room), *dst).map_err(|e| Error::Io {
                    path: format!("{shown} -> {out_shown}"),
                    action: "copy",
                    source: e,
                })?;
                log.advance(n);
                n
            }
            _ => {
                let mut r = repo.reader(&name, f.gzip)?;
                let mut buf = vec![0u8; r.chunk_len()];
                let mut read = 0u64;
                loop {
                    let want = if whole {
                        buf.len()
                    } else {
                        crate::at_most(room, buf.len())
                    };
                    if want == 0 {
                        break;
                    }
                    let n = r.read_chunk(&mut buf[..want])?;
                    if n == 0 {
                        break;
                    }
                    let b = &buf[..n];
                    read += n as u64;
                    if let Some(h) = &mut one {
                        h.update(b);
                    }
                    let w = crate::at_most(room, n);
                    if let Some(h) = all.as_mut() {
                        h.update(&b[..w]);
                    }
                    log.advance(w as u64);
                    out.write_all(&b[..w]).map_err(io_err(out_shown, "write"))?;
                    room -= w as u64;
                }
                read
            }
        };
        let written = p.keep.map_or(size, |k| k.min(size));
        if p.keep.is_some_and(|k| k > written) {
            return Err(wrong_size(&shown, size, p.keep.unwrap_or(0), f.gzip));
        }
        sizes.push(written);
        if let (Some(truth), Some(one)) = (truth, one) {
            let (want_size, want_sum) = truth.get(&name).ok_or_else(|| {
                Error::Mismatch(Mismatch::NotListed {
                    path: shown.clone(),
                    dat: repo.display(&chain[0].file.dat_name()),
                })
            })?;
            let sum = one.finish()?;
            if size != *want_size {
                return Err(wrong_size(&shown, size, *want_size, false));
            }
            if sum != *want_sum {
                return Err(Error::Mismatch(Mismatch::Checksum {
                    path: shown,
                    sum,
                    expected: want_sum.clone(),
                    gzip: false,
                }));
            }
            log!(log, "Recovered chunk {shown} : {size} bytes, md5: {sum}");
        }
        // Checked before the copy for a plain file; a gzip'd one's size is
        // known only now, and a plain one may have changed since.
        if let Some(want) = p.logged_size.filter(|&want| whole && want != size) {
            return Err(wrong_size(&shown, size, want, f.gzip));
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn recover_destination_follows_links_and_refuses_the_repository() {
        let t = tempfile::TempDir::new().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("repo")).unwrap();
        fs::create_dir_all(d.join("sub")).unwrap();
        let repo = Repository::new(d.join("repo").to_str().unwrap());
        let at = |rel: &str| d.join(rel).to_str().unwrap().to_string();
        let refused = |rel: &str| match destination(&repo, &at(rel)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{rel} accepted"),
        };

        symlink("sub/new.fs", d.join("dangling")).unwrap();
        match destination(&repo, &at("dangling")).unwrap() {
            Dest::File { path, shown } => {
                assert_eq!(path, d.join("sub/new.fs"));
                assert_eq!(shown, at("sub/new.fs"));
            }
            Dest::Stdout => panic!("a dangling link is not stdout"),
        }
        symlink("repo/2024-01-01-00-00-00.fs", d.join("into")).unwrap();
        let repo_shown = at("repo");
        assert_eq!(
            refused("into"),
            format!(
                "{}: cannot recover into it: it is in the repository {repo_shown}",
                at("into")
            )
        );
        assert!(refused("repo/x.fs").ends_with(&format!("in the repository {repo_shown}")));
        assert!(refused("sub").ends_with(": cannot recover into it: it is a directory"));
        symlink("loop", d.join("loop")).unwrap();
        assert!(refused("loop").contains("cannot recover into it: Too many levels"));
    }
}
