//! `-L`/`--list`: what a repository holds and whether it is healthy, from
//! names, `.dat` logs and sizes (no hashing), as text or one JSON document
//! (docs/json.md); `--max-age` turns it into a monitoring check.

use std::io::{self, Write};

use chrono::Duration;
use serde_json::{json, Value};

use crate::disk::atomic::{TEMP_PREFIX, TEMP_SUFFIX};
use crate::error::{io_err, Error, Result};
use crate::log::Log;
use crate::repository::repair::PYTHON_TEMP;
use crate::repository::{lock, DatEntry, DataFile, Kind, Repository, Timestamp};

use super::verify::{verify, VerifyOptions};

/// The version of the JSON document `--list --json` prints.
pub const SCHEMA: u32 = 1;

/// What `--list` was asked to do.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub(crate) repository: String,
    /// `--json`: one JSON document.
    pub(crate) json: bool,
    /// `--max-age`: fail when the newest backup is older, or unhealthy.
    pub(crate) max_age: Option<Duration>,
}

/// One backup file, as listed.
struct Listed {
    number: usize,
    file: DataFile,
    /// Its Data.fs range, from the `.dat` log.
    range: Option<(u64, u64)>,
    size: u64,
    index: bool,
    /// Blob files and bytes its manifest lists, if it has one.
    blobs: Option<(u64, u64)>,
}

/// List the repository; with `--max-age`, fail when the newest backup is
/// older or the health check finds a problem.
///
/// # Errors
/// The repository cannot be read; the check fails ([`Error::Stale`]).
pub(crate) fn list(opts: &ListOptions, now: Timestamp, log: &Log) -> Result<()> {
    let repo = Repository::new(&opts.repository);
    let _lock = lock::acquire(&repo, lock::Mode::Shared)?;
    let files = repo.data_files()?;
    let (bytes, names) = repo.usage()?;
    let total = files.len();
    let mut chains: Vec<(Option<Vec<DatEntry>>, Vec<Listed>)> = Vec::new();
    let mut problems = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.name();
        let meta = repo.entry(&name);
        let listed = Listed {
            number: total - 1 - i,
            file: f.clone(),
            range: None,
            size: meta.map_or(0, |m| m.len()),
            index: repo.entry(&f.index_name()).is_some_and(|m| m.is_file()),
            blobs: repo.read_manifest(f).ok().flatten().map(|m| {
                let stored = m.entries.iter().filter_map(|e| e.stored.as_ref());
                stored.fold((0, 0), |(n, b), s| (n + 1, b + s.size))
            }),
        };
        match (f.kind, chains.last_mut()) {
            (Kind::Full, _) => {
                let dat = match repo.read_dat(f) {
                    Ok(d) => d,
                    Err(e) => {
                        problems.push(e.to_string());
                        None
                    }
                };
                chains.push((dat, vec![listed]));
            }
            (Kind::Incremental, Some((_, c))) => c.push(listed),
            (Kind::Incremental, None) => problems.push(format!(
                "{}: an increment with no full backup before it",
                repo.display(&name)
            )),
        }
    }
    for (dat, backups) in &mut chains {
        let Some(dat) = dat else { continue };
        for b in backups.iter_mut() {
            b.range = dat
                .iter()
                .find(|e| e.file_name() == b.file.name())
                .map(|e| (e.start, e.end));
        }
    }
    // What the next backup would repair: its temporaries, and files of
    // the newest chain its `.dat` does not list.
    for n in &names {
        if n == PYTHON_TEMP || (n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX)) {
            problems.push(format!(
                "{}: a temporary file left by an interrupted run",
                repo.display(n)
            ));
        }
    }
    if let Some((Some(_), backups)) = chains.last() {
        for b in backups.iter().filter(|b| b.range.is_none()) {
            problems.push(format!(
                "{}: not in its chain's .dat log (left by an interrupted backup)",
                repo.display(&b.file.name())
            ));
        }
    }
    // Sizes and presence, as -V -Q checks them.
    let quiet = Log::new(false);
    let checked = VerifyOptions {
        repository: opts.repository.clone(),
        quick: true,
        deep: false,
    };
    if let Err(e) = verify(&checked, now, &quiet) {
        problems.push(e.to_string());
    }
    problems.dedup();
    let newest = files.last();
    let age = newest
        .and_then(|f| Timestamp::parse_stem(&f.stem))
        .map(|t| now.since(&t));
    let oldest = chains
        .iter()
        .find_map(|(_, b)| b.first().map(|b| b.file.stem.clone()));
    let stale = match (opts.max_age, age) {
        (Some(max), Some(age)) if age > max => Some(format!(
            "{}: the newest backup, {}, is {} old, more than {}",
            repo.given(),
            newest.map(DataFile::name).unwrap_or_default(),
            show_age(age),
            show_age(max)
        )),
        (Some(_), None) => Some(format!("{}: no backup", repo.given())),
        _ => None,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = if opts.json {
        let doc = document(&repo, &chains, (bytes, age, &oldest, &problems), now);
        writeln!(out, "{doc}")
    } else if opts.max_age.is_none() {
        text(&mut out, &repo, &chains, (bytes, age, &oldest, &problems))
    } else {
        Ok(())
    };
    written
        .and_then(|()| out.flush())
        .map_err(io_err("<stdout>", "write"))?;
    let _ = log;
    if let Some(why) = stale {
        return Err(Error::Stale { why });
    }
    if opts.max_age.is_some() {
        if let Some(p) = problems.first() {
            return Err(Error::Stale {
                why: format!("{}: unhealthy: {p}", repo.given()),
            });
        }
        if !opts.json {
            let newest = newest.map(DataFile::name).unwrap_or_default();
            let age = age.map(show_age).unwrap_or_default();
            writeln!(
                out,
                "{}: newest backup {newest}, {age} old; healthy",
                repo.given()
            )
            .map_err(io_err("<stdout>", "write"))?;
        }
    }
    Ok(())
}

type Summary<'a> = (u64, Option<Duration>, &'a Option<String>, &'a [String]);

fn text(
    out: &mut impl Write,
    repo: &Repository,
    chains: &[(Option<Vec<DatEntry>>, Vec<Listed>)],
    (bytes, age, oldest, problems): Summary<'_>,
) -> io::Result<()> {
    let backups: usize = chains.iter().map(|(_, b)| b.len()).sum();
    for (dat, list) in chains {
        let first = &list[0].file;
        let log = if dat.is_some() { "" } else { ", no .dat log" };
        writeln!(
            out,
            "chain {}: a full backup and {} increment(s){log}",
            first.stem,
            list.len() - 1
        )?;
        writeln!(
            out,
            "  {:>4}  {:<28}  {:<11}  {:<4}  {:>25}  {:>14}  {:<5}  blobs",
            "#", "backup", "kind", "gzip", "bytes of Data.fs", "size on disk", "index"
        )?;
        for b in list {
            let range = b.range.map_or_else(
                || "not in the .dat".to_string(),
                |(s, e)| format!("{s}-{e}"),
            );
            let blobs = b.blobs.map_or_else(
                || "-".to_string(),
                |(n, by)| format!("{n} files, {by} bytes"),
            );
            writeln!(
                out,
                "  {:>4}  {:<28}  {:<11}  {:<4}  {:>25}  {:>14}  {:<5}  {blobs}",
                b.number,
                b.file.name(),
                kind(b.file.kind),
                if b.file.gzip { "yes" } else { "no" },
                range,
                b.size,
                if b.index { "yes" } else { "no" },
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "{}: {} chain(s), {backups} backup(s), {bytes} bytes on disk",
        repo.given(),
        chains.len()
    )?;
    match (chains.last().and_then(|(_, b)| b.last()), age) {
        (Some(b), Some(age)) => writeln!(out, "newest: {} ({} old)", b.file.name(), show_age(age))?,
        (Some(b), None) => writeln!(out, "newest: {}", b.file.name())?,
        _ => writeln!(out, "newest: none")?,
    }
    writeln!(
        out,
        "oldest state that can be recovered: {}",
        oldest.as_deref().unwrap_or("none")
    )?;
    if problems.is_empty() {
        writeln!(out, "health: ok")
    } else {
        writeln!(out, "health: {} problem(s)", problems.len())?;
        for p in problems {
            writeln!(out, "  {p}")?;
        }
        Ok(())
    }
}

fn document(
    repo: &Repository,
    chains: &[(Option<Vec<DatEntry>>, Vec<Listed>)],
    (bytes, age, oldest, problems): Summary<'_>,
    now: Timestamp,
) -> Value {
    let chain_docs: Vec<Value> = chains
        .iter()
        .map(|(dat, list)| {
            json!({
                "full": list[0].file.name(),
                "dat": dat.is_some(),
                "backups": list.iter().map(|b| json!({
                    "number": b.number,
                    "name": b.file.name(),
                    "kind": kind(b.file.kind),
                    "gzip": b.file.gzip,
                    "start": b.range.map(|r| r.0),
                    "end": b.range.map(|r| r.1),
                    "size": b.size,
                    "index": b.index,
                    "blob_files": b.blobs.map(|x| x.0),
                    "blob_bytes": b.blobs.map(|x| x.1),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let newest = chains.last().and_then(|(_, b)| b.last());
    json!({
        "schema": SCHEMA,
        "repository": repo.given(),
        "now": now.stem(),
        "chains": chain_docs,
        "summary": {
            "chains": chains.len(),
            "backups": chains.iter().map(|(_, b)| b.len()).sum::<usize>(),
            "bytes_on_disk": bytes,
            "newest": newest.map(|b| b.file.name()),
            "newest_age_seconds": age.map(|a| a.num_seconds()),
            "oldest_recoverable": oldest,
        },
        "health": {
            "ok": problems.is_empty(),
            "problems": problems,
        },
    })
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Full => "full",
        Kind::Incremental => "incremental",
    }
}

/// `3d 4h 5m` (days, hours and minutes; seconds under a minute).
pub(crate) fn show_age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, m) => format!("{d}d {h}h {m}m"),
    }
}

/// Read `--max-age`: a whole number and a unit, `s`, `m`, `h`, `d` or `w`
/// (`26h`, `8d`).
///
/// # Errors
/// A message naming the form.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected a number and s, m, h, d or w (26h, 8d)");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .filter(|&t| t <= 100 * 365 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(bad)
}
