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
//! Temporary files are removed. A data file not listed, and every file of
//! its chain after the first bad line, is renamed to `<name>.orphaned`
//! (with its `.index`), and the `.dat` is rewritten without the bad lines
//! (the old one kept as `<stem>.dat.orphaned`): the chain then ends at its
//! last good backup, and the next backup continues from there. Nothing is
//! deleted but temporary files. Every step is reported.

use std::fs;
use std::io;

use crate::atomic::{AtomicFile, TEMP_PREFIX, TEMP_SUFFIX};
use crate::error::{io_err, Result};
use crate::repository::{parse_dat, DatEntry, DataFile, Kind, Repository};

/// Python repozo's one temporary file name.
pub const PYTHON_TEMP: &str = "tmp.tmp";
/// Suffix given to files set aside.
pub const SET_ASIDE_SUFFIX: &str = ".orphaned";

/// Find and set aside what interrupted runs left; returns one message per
/// action taken, for stderr. The caller holds the exclusive lock.
///
/// # Errors
/// I/O errors reading the repository or renaming.
pub fn repair(repo: &Repository) -> Result<Vec<String>> {
    let mut said = Vec::new();
    remove_temporaries(repo, &mut said)?;
    let files = repo.data_files()?;
    let mut chains: Vec<Vec<DataFile>> = Vec::new();
    for f in files {
        match (f.kind, chains.last_mut()) {
            (Kind::Full, _) | (_, None) => chains.push(vec![f]),
            (Kind::Incremental, Some(chain)) => chain.push(f),
        }
    }
    let newest = chains.len().saturating_sub(1);
    for (i, chain) in chains.iter().enumerate() {
        repair_chain(repo, chain, i == newest, &mut said)?;
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
        if ours || name == PYTHON_TEMP {
            let shown = repo.display(&name);
            fs::remove_file(entry.path()).map_err(io_err(&shown, "remove"))?;
            said.push(format!(
                "removed {shown}, a temporary file left by an interrupted backup"
            ));
        }
    }
    Ok(())
}

fn repair_chain(
    repo: &Repository,
    chain: &[DataFile],
    newest: bool,
    said: &mut Vec<String>,
) -> Result<()> {
    let full = &chain[0];
    let dat_name = full.dat_name();
    let dat_shown = repo.display(&dat_name);
    let text = match fs::read(repo.path(&dat_name)) {
        Ok(t) => t,
        // The newest full backup without its log is one cut short before
        // its `.dat` was written; an incremental would have nowhere to be
        // logged. Older chains recover without a log: leave them be.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if newest {
                let why = format!("{dat_shown} is missing");
                for f in chain {
                    set_aside_backup(repo, f, &why, said)?;
                }
            }
            return Ok(());
        }
        Err(e) => return Err(io_err(&dat_shown, "read")(e)),
    };
    // A last line without its newline is an append cut short.
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => &text[..=i],
        None => &text[..0],
    };
    let torn = complete.len() < text.len();
    let mut entries = parse_dat(complete, &dat_shown)?;
    let mut reasons = Vec::new();
    if torn {
        reasons.push(format!(
            "its last line was cut short: {:?}",
            String::from_utf8_lossy(&text[complete.len()..])
        ));
    }
    // The first line whose file is missing or of the wrong size ends the
    // chain: everything after it depends on it.
    if let Some(bad) = entries.iter().position(|e| !matches_file(repo, chain, e)) {
        let e = &entries[bad];
        reasons.push(format!(
            "{} is missing or not {} bytes",
            repo.display(e.file_name()),
            e.size()
        ));
        entries.truncate(bad);
    }
    let listed: Vec<&str> = entries.iter().map(DatEntry::file_name).collect();
    let orphans: Vec<&DataFile> = chain
        .iter()
        .filter(|f| !listed.contains(&f.name().as_str()))
        .collect();
    if reasons.is_empty() && orphans.is_empty() {
        return Ok(());
    }
    if !reasons.is_empty() {
        set_aside(repo, &dat_name, "it is being rewritten", said)?;
        if !entries.is_empty() {
            let mut f = AtomicFile::create(&repo.path(&dat_name), &dat_shown)?;
            let body: String = entries.iter().map(DatEntry::line).collect();
            std::io::Write::write_all(f.file(), body.as_bytes())
                .map_err(io_err(&dat_shown, "write"))?;
            f.commit(true)?;
        }
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

/// Whether the file a `.dat` line names is there, in this chain, with the
/// size the line gives (for a gzip'd file, being there is all that is
/// checked: its size needs a full read, which verify does).
fn matches_file(repo: &Repository, chain: &[DataFile], e: &DatEntry) -> bool {
    let Some(f) = chain.iter().find(|f| f.name() == e.file_name()) else {
        return false;
    };
    match fs::metadata(repo.path(&f.name())) {
        Ok(m) => f.gzip || m.len() == e.size(),
        Err(_) => false,
    }
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

/// Rename `name` to `name.orphaned` (or `.orphaned.N` if that is taken).
fn set_aside(repo: &Repository, name: &str, why: &str, said: &mut Vec<String>) -> Result<()> {
    let mut target = format!("{name}{SET_ASIDE_SUFFIX}");
    let mut n = 1;
    while repo.path(&target).exists() {
        target = format!("{name}{SET_ASIDE_SUFFIX}.{n}");
        n += 1;
    }
    let shown = repo.display(name);
    fs::rename(repo.path(name), repo.path(&target)).map_err(io_err(&shown, "set aside"))?;
    crate::atomic::sync_dir(repo.dir()).map_err(io_err(repo.given(), "fsync"))?;
    said.push(format!(
        "set aside {shown} as {}: {why}",
        repo.display(&target)
    ));
    Ok(())
}
