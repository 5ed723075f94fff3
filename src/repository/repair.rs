//! What an interrupted run leaves in a repository, found and set aside
//! before a backup decides anything.
//!
//! A backup writes its data file, then its `.index`, then its `.dat` line,
//! each complete and fsync'd before the next, so a crash can leave only:
//! a temporary file (ours, or Python repozo's `tmp.tmp`); a data file that
//! no `.dat` line lists (Python repozo leaves the same between its rename
//! and its append, and a later `-Q` backup of Python's then builds a broken
//! chain on it); or a last `.dat` line cut short by the crash. Damage from
//! outside can add a `.dat` line whose file is missing or of the wrong size.
//!
//! A complete line that does not parse is damage, not a crash's trace: the
//! chain is left as it is, and the backup starts a new one.
//!
//! Only the newest chain is looked at: a backup only ever appends to it,
//! so nothing an interrupted run left can be elsewhere, and damage in an
//! older chain is not a new backup's concern (recover and verify report it).
//!
//! Temporary files are removed. A data file not listed, and every file of
//! the chain after the first bad line, is renamed to `<name>.orphaned`
//! (with its `.index`), and the `.dat` is rewritten without the bad lines:
//! the chain then ends at its last good backup, and the next backup
//! continues from there. The old `.dat` is kept as `<stem>.dat.orphaned`
//! (a hard link, made only once the new `.dat` is written and fsync'd), so
//! a full disk or a crash during the repair leaves the old `.dat` or the
//! new one in place, never neither. Nothing is deleted but temporary files.
//! Every step is reported.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;

use crate::disk::atomic::{is_recent, TEMP_PREFIX, TEMP_SUFFIX};
use crate::error::{io_err, Error, Result};
use crate::repository::{parse_dat_line, DatEntry, DataFile, Kind, Repository};

/// Python repozo's one temporary file name.
pub(crate) const PYTHON_TEMP: &str = "tmp.tmp";
/// Suffix given to files set aside.
pub(crate) const SET_ASIDE_SUFFIX: &str = ".orphaned";

/// Find and set aside what interrupted runs left; returns one message per
/// action taken, for stderr. The caller holds the exclusive lock.
///
/// # Errors
/// I/O errors reading the repository or renaming.
pub(crate) fn repair(repo: &Repository) -> Result<Vec<String>> {
    let mut said = Vec::new();
    remove_temporaries(repo, &mut said)?;
    let files = repo.data_files()?;
    // Increments with no full backup before them (it was deleted) are no
    // crash's trace: the backup starts a new chain and leaves them be.
    if let Some(newest) = files.iter().rposition(|f| f.kind == Kind::Full) {
        repair_chain(repo, &files[newest..], &mut said)?;
    }
    Ok(said)
}

fn remove_temporaries(repo: &Repository, said: &mut Vec<String>) -> Result<()> {
    let dir = repo.dir();
    let entries = fs::read_dir(dir).map_err(io_err(repo.given(), "cannot list"))?;
    for entry in entries {
        let entry = entry.map_err(io_err(repo.given(), "cannot list"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let ours = name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX);
        if !(ours || name == PYTHON_TEMP) {
            continue;
        }
        let shown = repo.display(&name);
        // Only a file can be a backup's temporary: a directory of that
        // name is someone else's, and left alone. A leftover that cannot
        // be removed is reported, not fatal: no backup ever reads one
        // (ours get fresh unique names), so it must not stop every
        // backup from now on.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            said.push(format!(
                "left {shown} alone: a directory, not a temporary file"
            ));
            continue;
        }
        // Python repozo takes no lock: a tmp.tmp written to lately may be a
        // Python run's at work now. Nothing reads it, so it can wait.
        if !ours && is_recent(&entry, PYTHON_TEMP_GRACE) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => said.push(format!(
                "removed {shown}, a temporary file left by an interrupted backup"
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => said.push(format!(
                "could not remove {shown}, a temporary file left by an interrupted backup: {e}"
            )),
        }
    }
    Ok(())
}

/// How long a `tmp.tmp` must have been left unwritten before it is taken
/// for a dead run's.
pub(crate) const PYTHON_TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

fn repair_chain(repo: &Repository, chain: &[DataFile], said: &mut Vec<String>) -> Result<()> {
    let full = &chain[0];
    let dat_name = full.dat_name();
    let dat_shown = repo.display(&dat_name);
    let text = match repo.read(&dat_name) {
        Ok(t) => t,
        // The newest full backup without its log is one cut short before
        // its `.dat` was written; an incremental would have nowhere to be
        // logged.
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            let why = format!("{dat_shown} is missing");
            for f in chain {
                set_aside_backup(repo, f, &why, said)?;
            }
            return Ok(());
        }
        // Unreadable (no permission, a bad sector, a directory of that
        // name): not what a crash leaves, but damage, like a line that
        // does not parse. Nothing is changed; the backup gives the chain
        // up for a full one and says why.
        Err(_) => return Ok(()),
    };
    let on_disk: HashMap<String, &DataFile> = chain.iter().map(|f| (f.name(), f)).collect();
    let mut entries = Vec::new();
    let mut reasons = Vec::new();
    // A last line without its newline is an append cut short, unless it is
    // whole and its file is there: then only the newline is missing.
    let mut lacks_newline = false;
    for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = line.ends_with(b"\n");
        let entry = match parse_dat_line(line, &dat_shown, i + 1) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            // Not what a crash leaves, but damage: nothing here is
            // changed, and the backup gives the chain up for a full one.
            Err(_) if complete => return Ok(()),
            Err(_) => {
                reasons.push(format!(
                    "its last line was cut short: {:?}",
                    String::from_utf8_lossy(line)
                ));
                break;
            }
        };
        if !matches_file(repo, &on_disk, &entry) {
            reasons.push(if complete {
                format!(
                    "{} is missing or not {} bytes",
                    repo.display(entry.file_name()),
                    entry.size()
                )
            } else {
                format!(
                    "its last line was cut short: {:?}",
                    String::from_utf8_lossy(line)
                )
            });
            break;
        }
        lacks_newline = !complete;
        entries.push(entry);
    }
    let listed: HashSet<&str> = entries.iter().map(DatEntry::file_name).collect();
    let orphans: Vec<&DataFile> = chain
        .iter()
        .filter(|f| !listed.contains(f.name().as_str()))
        .collect();
    if !reasons.is_empty() || lacks_newline {
        if lacks_newline && reasons.is_empty() {
            reasons.push("its last line lacked its newline".into());
        }
        rewrite_dat(repo, &dat_name, &entries, said)?;
        said.push(format!(
            "rewrote {dat_shown} without its bad lines ({})",
            reasons.join("; ")
        ));
    }
    let why = format!("no line of {dat_shown} accounts for it");
    for f in orphans {
        set_aside_backup(repo, f, &why, said)?;
    }
    Ok(())
}

/// Replace the `.dat` by `entries`, keeping the old one as
/// `<name>.orphaned`: the new one is written and fsync'd first, so a full
/// disk changes nothing; the old one is kept by a second name (a hard
/// link, or a copy where links are refused) before the new one is renamed
/// over it. With no entries left the old one is only set aside.
fn rewrite_dat(
    repo: &Repository,
    dat_name: &str,
    entries: &[DatEntry],
    said: &mut Vec<String>,
) -> Result<()> {
    let dat_shown = repo.display(dat_name);
    if entries.is_empty() {
        return set_aside(repo, dat_name, "it is being rewritten", said);
    }
    let mut new = repo.create(dat_name)?;
    let body: String = entries.iter().map(DatEntry::line).collect();
    std::io::Write::write_all(new.file(), body.as_bytes()).map_err(io_err(&dat_shown, "write"))?;
    let kept = free_name(repo, dat_name);
    let kept_shown = repo.display(&kept);
    if fs::hard_link(repo.path(dat_name), repo.path(&kept)).is_err() {
        let old = repo.read(dat_name)?;
        let mut copy = repo.create(&kept)?;
        std::io::Write::write_all(copy.file(), &old).map_err(io_err(&kept_shown, "write"))?;
        copy.commit(false)?;
    }
    said.push(format!(
        "kept {dat_shown} as {kept_shown}: it is being rewritten"
    ));
    new.commit(true)
}

/// Whether the file a `.dat` line names is there, in this chain, with the
/// size the line gives (for a gzip'd file, being there is all that is
/// checked: its size needs a full read, which verify does).
fn matches_file(repo: &Repository, on_disk: &HashMap<String, &DataFile>, e: &DatEntry) -> bool {
    let Some(f) = on_disk.get(e.file_name()) else {
        return false;
    };
    repo.entry(e.file_name())
        .is_some_and(|m| m.is_file() && (f.gzip || m.len() == e.size()))
}

/// Set aside a data file and its `.index`.
fn set_aside_backup(
    repo: &Repository,
    f: &DataFile,
    why: &str,
    said: &mut Vec<String>,
) -> Result<()> {
    set_aside(repo, &f.name(), why, said)?;
    if repo.path(&f.index_name()).exists() {
        set_aside(repo, &f.index_name(), why, said)?;
    }
    Ok(())
}

/// `name.orphaned`, or `name.orphaned.N` for the first N free.
fn free_name(repo: &Repository, name: &str) -> String {
    let mut target = format!("{name}{SET_ASIDE_SUFFIX}");
    let mut n = 1;
    while repo.entry(&target).is_some() {
        target = format!("{name}{SET_ASIDE_SUFFIX}.{n}");
        n += 1;
    }
    target
}

/// Rename `name` to `name.orphaned` (or `.orphaned.N` if that is taken).
fn set_aside(repo: &Repository, name: &str, why: &str, said: &mut Vec<String>) -> Result<()> {
    let target = free_name(repo, name);
    let shown = repo.display(name);
    fs::rename(repo.path(name), repo.path(&target)).map_err(io_err(&shown, "set aside"))?;
    crate::disk::atomic::sync_dir(repo.dir()).map_err(io_err(repo.given(), "fsync"))?;
    said.push(format!(
        "set aside {shown} as {}: {why}",
        repo.display(&target)
    ));
    Ok(())
}
