//! Retention: which chains to keep (`--keep-full`, `--keep-daily`,
//! `--keep-weekly`, `--keep-monthly`) and removing the others, after `-B`
//! or alone with `--prune`; `--dry-run` only says what would go.
//!
//! A chain is a full backup and its increments; it counts for the day,
//! week (ISO, from Monday) and month of its newest backup. `--keep-daily
//! N` keeps the newest chain of each of the N most recent days that have
//! one (as restic and backy count): a week without backups never empties
//! the repository. The newest chain is always kept.
//!
//! A chain goes newest file first, each backup with its `.index` and blob
//! manifest, its `.dat` log last: a run stopped half way leaves a chain
//! whose `.dat` still names what is gone, which recover reports as missing
//! and the next prune removes. Blob files no remaining backup needs go
//! last.

use std::collections::HashSet;
use std::io::Write;

use chrono::{Datelike, NaiveDate};

use crate::error::{io_err, Result};
use crate::log;
use crate::log::Log;
use crate::repository::{lock, DataFile, Kind, Repository};

/// How many chains to keep; `None` means that rule is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub(crate) full: Option<usize>,
    pub(crate) daily: Option<usize>,
    pub(crate) weekly: Option<usize>,
    pub(crate) monthly: Option<usize>,
    /// `--dry-run`: say what would be removed, remove nothing.
    pub(crate) dry_run: bool,
}

impl Retention {
    /// Whether any rule is given.
    pub(crate) fn any(&self) -> bool {
        self.full.is_some()
            || self.daily.is_some()
            || self.weekly.is_some()
            || self.monthly.is_some()
    }
}

/// What `--prune` was asked to do.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub(crate) repository: String,
    pub(crate) keep: Retention,
}

/// `--prune`: apply the rules under the repository's exclusive lock.
///
/// # Errors
/// As [`apply`]; the lock is held by another run.
pub(crate) fn prune(opts: &PruneOptions, log: &Log) -> Result<Vec<String>> {
    let repo = Repository::new(&opts.repository);
    let _lock = lock::acquire(&repo, lock::Mode::Exclusive)?;
    apply(&repo, &opts.keep, log)
}

/// The chains of the repository, oldest first; increments with no full
/// backup before them belong to none and are left alone.
fn chains(files: Vec<DataFile>) -> Vec<Vec<DataFile>> {
    let mut chains: Vec<Vec<DataFile>> = Vec::new();
    for f in files {
        match (f.kind, chains.last_mut()) {
            (Kind::Full, _) => chains.push(vec![f]),
            (Kind::Incremental, Some(c)) => c.push(f),
            (Kind::Incremental, None) => {}
        }
    }
    chains
}

/// Which of `chains` (oldest first) the rules keep.
fn kept(chains: &[Vec<DataFile>], keep: &Retention) -> HashSet<usize> {
    let day = |c: &Vec<DataFile>| -> Option<NaiveDate> {
        let stem = &c.last()?.stem;
        NaiveDate::parse_from_str(stem.get(..10)?, "%Y-%m-%d").ok()
    };
    let mut kept = HashSet::new();
    let newest_first = || (0..chains.len()).rev();
    if let Some(i) = newest_first().next() {
        kept.insert(i);
    }
    if let Some(n) = keep.full {
        kept.extend(newest_first().take(n));
    }
    // The newest chain of each of the `n` most recent periods with one.
    let mut by_period = |n: Option<usize>, period: &dyn Fn(NaiveDate) -> (i32, u32)| {
        let Some(n) = n else { return };
        let mut seen = HashSet::new();
        for i in newest_first() {
            if seen.len() == n {
                break;
            }
            if let Some(d) = day(&chains[i]) {
                if seen.insert(period(d)) {
                    kept.insert(i);
                }
            }
        }
    };
    by_period(keep.daily, &|d| (d.year(), d.ordinal()));
    by_period(keep.weekly, &|d| {
        let w = d.iso_week();
        (w.year(), w.week())
    });
    by_period(keep.monthly, &|d| (d.year(), d.month()));
    kept
}

/// Remove the chains the rules do not keep; returns the files removed (or,
/// with `--dry-run`, that would be). The caller holds the exclusive lock.
///
/// # Errors
/// The repository cannot be read. A file that cannot be removed is said
/// on stderr and the chain's `.dat` kept, so the next run tries again.
pub(crate) fn apply(repo: &Repository, keep: &Retention, log: &Log) -> Result<Vec<String>> {
    let chains = chains(repo.data_files()?);
    let kept = kept(&chains, keep);
    let mut removed = Vec::new();
    let mut any = false;
    for (i, chain) in chains.iter().enumerate() {
        if kept.contains(&i) {
            continue;
        }
        any = true;
        let full = &chain[0];
        log!(
            log,
            "{} chain {} ({} backup file(s))",
            if keep.dry_run {
                "would remove"
            } else {
                "removing"
            },
            full.stem,
            chain.len()
        );
        let mut complete = true;
        for f in chain.iter().rev() {
            let name = f.name();
            if repo.entry(&name).is_some_and(|m| m.is_dir()) {
                log.notice(format_args!(
                    "not removing {}: a directory, not a backup file",
                    repo.display(&name)
                ));
                complete = false;
                continue;
            }
            for n in [f.blobs_name(), f.index_name(), name] {
                if repo.entry(&n).is_none() {
                    continue;
                }
                if !keep.dry_run {
                    if let Err(e) = repo.remove(&n) {
                        log.notice(format_args!("{}", io_err(&repo.display(&n), "remove")(e)));
                        complete = false;
                        continue;
                    }
                }
                removed.push(repo.display(&n));
            }
        }
        let dat = full.dat_name();
        if complete && repo.entry(&dat).is_some() {
            if !keep.dry_run {
                if let Err(e) = repo.remove(&dat) {
                    log.notice(format_args!("{}", io_err(&repo.display(&dat), "remove")(e)));
                    continue;
                }
            }
            removed.push(repo.display(&dat));
        }
    }
    if any && !keep.dry_run && repo.entry(crate::repository::blobs::POOL).is_some() {
        repo.collect_blob_garbage(log)?;
    }
    if !keep.dry_run {
        if let Ok(dir) = repo.open_dir() {
            let _ = dir.sync_all();
        }
    }
    Ok(removed)
}

/// `--dry-run`: a line on stdout for each file that would be removed.
///
/// # Errors
/// stdout cannot be written.
pub(crate) fn say_would_remove(removed: &[String]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in removed {
        writeln!(out, "would remove {r}").map_err(io_err("<stdout>", "write"))?;
    }
    out.flush().map_err(io_err("<stdout>", "write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(stems: &[&str]) -> Vec<DataFile> {
        stems
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let kind = if i == 0 { "fs" } else { "deltafs" };
                DataFile::parse(&format!("{s}.{kind}")).unwrap()
            })
            .collect()
    }

    /// Nightly chains over 70 days, one full a day: which the rules keep.
    #[test]
    fn the_rules_keep_the_newest_chain_of_each_period() {
        let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let chains: Vec<Vec<DataFile>> = (0..70)
            .map(|i| {
                let d = start + chrono::Duration::days(i);
                let stem = format!("{}-02-00-00", d.format("%Y-%m-%d"));
                chain_of(&[&stem])
            })
            .collect();
        let keep = |r: Retention| {
            let mut v: Vec<usize> = kept(&chains, &r).into_iter().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(keep(Retention::default()), [69]);
        assert_eq!(
            keep(Retention {
                full: Some(3),
                ..Retention::default()
            }),
            [67, 68, 69]
        );
        assert_eq!(
            keep(Retention {
                daily: Some(2),
                ..Retention::default()
            }),
            [68, 69]
        );
        // 2024-03-10 (day 69) is a Sunday: its week began on the 4th (63).
        assert_eq!(
            keep(Retention {
                weekly: Some(3),
                ..Retention::default()
            }),
            [55, 62, 69]
        );
        // The newest of March (69), February (59), January (30).
        assert_eq!(
            keep(Retention {
                monthly: Some(5),
                ..Retention::default()
            }),
            [30, 59, 69]
        );
        assert_eq!(
            keep(Retention {
                daily: Some(1),
                monthly: Some(2),
                ..Retention::default()
            }),
            [59, 69]
        );
    }
}
