//! `--transactions`: the transactions a repository holds, oldest first,
//! each once (from the oldest chain holding it), as text or JSON lines.

use std::io::{self, BufWriter, Write};

use chrono::NaiveDateTime;

use crate::error::{io_err, Error, Mismatch, Result};
use crate::filestorage::records::TxnInfo;
use crate::filestorage::timestamp::{last_tid_at, tid_hex, tid_time_text};
use crate::log;
use crate::log::Log;
use crate::repository::{lock, Repository};

use super::history::{self, first_tid};

/// What `--transactions` was asked to show.
#[derive(Debug, Clone)]
pub struct TransactionsOptions {
    pub(crate) repository: String,
    /// `--since`: only transactions at or after this UTC time.
    pub(crate) since: Option<NaiveDateTime>,
    /// `--until`: only transactions at or before this UTC time.
    pub(crate) until: Option<NaiveDateTime>,
    /// `--json`: one JSON object a line.
    pub(crate) json: bool,
}

/// List the transactions; returns how many were shown.
///
/// # Errors
/// The repository cannot be read; a backup file is damaged. A reader
/// that goes away (`| head`) ends the listing quietly.
pub(crate) fn transactions(opts: &TransactionsOptions, log: &Log) -> Result<u64> {
    let repo = Repository::new(&opts.repository);
    let _lock = lock::acquire(&repo, lock::Mode::Shared)?;
    let chains = history::chains(&repo, log)?;
    // Transactions at or below `lower` are not shown: older chains had
    // them, or they are before --since. None above `upper` are.
    let since = opts.since.and_then(|t| {
        t.checked_sub_signed(chrono::Duration::microseconds(1))
            .and_then(last_tid_at)
    });
    // None at all when --until is before any tid can be (1900).
    let upper = match opts.until {
        Some(t) => last_tid_at(t),
        None => Some(u64::MAX),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut shown = 0u64;
    let mut seen: Option<u64> = None;
    let result = (|| -> Result<()> {
        if !opts.json {
            writeln!(out, "tid  time  size  records  file  user  description")
                .map_err(io_err("<stdout>", "write"))?;
        }
        let Some(upper) = upper else {
            return out.flush().map_err(io_err("<stdout>", "write"));
        };
        for chain in &chains {
            // The tid before, when the file before was walked.
            let mut prev: Option<u64> = None;
            let lower = seen.max(since);
            let mut firsts = Vec::with_capacity(chain.pieces.len());
            for i in 0..chain.pieces.len() {
                firsts.push(first_tid(&repo, chain, i)?);
            }
            for i in 0..chain.pieces.len() {
                // Every transaction of a file is older than the next
                // file's first.
                let all_older = firsts
                    .get(i + 1)
                    .copied()
                    .flatten()
                    .is_some_and(|next| lower.is_some_and(|low| next.saturating_sub(1) <= low));
                if all_older {
                    prev = None;
                    continue;
                }
                if firsts[i].is_some_and(|first| first > upper) {
                    break;
                }
                let file = chain.pieces[i].file.name();
                let mut past = false;
                history::walk_piece(&repo, chain, i, |t| {
                    // ZODB only warns of such a file; our search by time
                    // or tid cannot find its way in it.
                    if prev.is_some_and(|p| t.tid <= p) {
                        log.notice(format_args!(
                            "{}",
                            Mismatch::TidsBack {
                                path: repo.display(&file),
                                offset: t.pos,
                            }
                        ));
                    }
                    prev = Some(t.tid);
                    if t.tid > upper {
                        past = true;
                        return Ok(false);
                    }
                    seen = seen.max(Some(t.tid));
                    if lower.is_none_or(|low| t.tid > low) {
                        show(&mut out, t, &file, opts.json).map_err(io_err("<stdout>", "write"))?;
                        shown += 1;
                    }
                    Ok(true)
                })?;
                if past {
                    break;
                }
            }
        }
        out.flush().map_err(io_err("<stdout>", "write"))
    })();
    match result {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    log!(log, "{shown} transactions in {} chains", chains.len());
    // What could not be read is an error once the rest is shown: a
    // script must not take a part for the whole.
    match chains.iter().find_map(|c| c.broken.as_deref()) {
        Some(why) => Err(Error::Incomplete {
            why: why.to_string(),
        }),
        None => Ok(shown),
    }
}

fn show(out: &mut impl Write, t: &TxnInfo, file: &str, json: bool) -> io::Result<()> {
    let user = String::from_utf8_lossy(&t.user);
    let description = String::from_utf8_lossy(&t.description);
    let time = tid_time_text(t.tid);
    if json {
        let line = serde_json::json!({
            "tid": tid_hex(t.tid),
            "time": time,
            "user": user,
            "description": description,
            "size": t.size,
            "records": t.records,
            "file": file,
            "offset": t.pos,
            "end": t.pos + t.size,
        });
        writeln!(out, "{line}")
    } else {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        writeln!(
            out,
            "{}  {}  {}  {}  {file}  {}  {}",
            tid_hex(t.tid),
            time.as_deref().unwrap_or("-"),
            t.size,
            t.records,
            quoted(&user),
            quoted(&description)
        )
    }
}
