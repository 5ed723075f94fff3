//! `-V --deep`: the chain read as one FileStorage, in one pass over its
//! bytes that also gives each file's size and md5: every transaction
//! complete and well formed, every backup file ending on a transaction
//! boundary, tids increasing across files, each backup's `.index` the
//! index of the chain up to its end, and each blob manifest's records
//! those of its range. What md5 cannot catch: a backup of an already
//! damaged Data.fs, a `.dat` rewritten to match a changed file, a wrong
//! `.index`.

use std::collections::BTreeSet;
use std::io::BufReader;

use crate::codec::md5::Md5Thread;
use crate::error::{Error, Mismatch, Result};
use crate::filestorage::index_file;
use crate::filestorage::records::Walker;
use crate::log;
use crate::log::Log;
use crate::repository::{DatEntry, DataFile, Repository};

/// Walk the chain `entries` lists (already checked to follow one another),
/// judging each file by `judge` (its measured size and, unless `quick`,
/// md5) as it ends, then its index and blob manifest.
///
/// # Errors
/// The first problem, naming its file and offset.
pub(crate) fn verify_deep(
    repo: &Repository,
    entries: &[DatEntry],
    quick: bool,
    log: &Log,
    mut judge: impl FnMut(&DatEntry, u64, Option<String>) -> Result<()>,
) -> Result<()> {
    let total = entries.last().map_or(0, |e| e.end);
    let mut walker = Walker::new(total, None);
    walker.note_transactions();
    // What nothing is compared with is not gathered: the index without an
    // `.index` (Python repozo writes none), the blob records without a
    // manifest.
    let files: Vec<DataFile> = entries
        .iter()
        .filter_map(|e| DataFile::parse(e.file_name()))
        .collect();
    if !files.iter().any(|f| repo.entry(&f.index_name()).is_some()) {
        walker.without_index();
    }
    if files.iter().any(|f| repo.entry(&f.blobs_name()).is_some()) {
        walker.find_blobs();
    }
    let mut last_tid: Option<u64> = None;
    let mut blobs_seen = 0;
    for e in entries {
        let name = e.file_name();
        let shown = repo.display(name);
        let gzip = DataFile::parse(name).map_or(name.ends_with("fsz"), |f| f.gzip);
        log!(log, "Verifying {shown} as part of the FileStorage");
        let mut r = match repo.reader(name, gzip) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Mismatch(Mismatch::Missing { path: shown }))
            }
            other => other?,
        };
        let mut h = (!quick).then(Md5Thread::spawn);
        let format = |source| Error::Format {
            path: shown.clone(),
            source,
        };
        let mut buf = vec![0u8; r.chunk_len()];
        let mut size = 0u64;
        loop {
            let n = r.read_chunk(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(h) = &mut h {
                h.update(&buf[..n]);
            }
            walker.feed(&buf[..n]).map_err(format)?;
            size += n as u64;
            log.advance(n as u64);
            for t in walker.take_transactions() {
                if last_tid.is_some_and(|before| t.tid <= before) {
                    return Err(Error::Mismatch(Mismatch::TidsBack {
                        path: shown.clone(),
                        offset: t.pos,
                    }));
                }
                last_tid = Some(t.tid);
            }
        }
        judge(e, size, h.map(Md5Thread::finish).transpose()?)?;
        // The size is the log's: the walk must have found every
        // transaction of the file complete, the last ending with it.
        if walker.is_done() && walker.committed() != e.end {
            return Err(Error::Mismatch(Mismatch::Torn {
                path: shown,
                end: walker.committed(),
                expected: e.end,
            }));
        }
        let at_its_end = walker.at_boundary() && walker.position() == e.end;
        if !walker.is_done() && !at_its_end {
            return Err(Error::Mismatch(Mismatch::NotAtBoundary {
                path: shown,
                end: e.end,
                txn: walker.committed(),
            }));
        }
        let Some(file) = DataFile::parse(name) else {
            continue;
        };
        check_index(repo, &file, e.end, &walker)?;
        check_blobs(repo, &file, e, &walker, &mut blobs_seen)?;
    }
    Ok(())
}

/// The backup's `.index`, when there is one, must be the walk's index at
/// its end: compared bucket by bucket as the file is read, never loaded
/// whole beside the walk's.
fn check_index(repo: &Repository, file: &DataFile, end: u64, walker: &Walker) -> Result<()> {
    let name = file.index_name();
    let shown = repo.display(&name);
    let f = match repo.open(&name) {
        Ok(f) => f,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let mut ours = walker.index().buckets();
    let mut differs: Option<String> = None;
    let pos = index_file::for_each_bucket(BufReader::with_capacity(1 << 20, f), |prefix, b| {
        if differs.is_some() {
            return;
        }
        let oid = |p: [u8; 6]| {
            let mut full = [0u8; 8];
            full[..6].copy_from_slice(&p);
            u64::from_be_bytes(full)
        };
        match ours.next() {
            Some((p, mine)) if p == prefix && *mine == b => {}
            Some((p, _)) if p == prefix => {
                differs = Some(format!(
                    "the offsets of the oids from {:#x} are not the chain's",
                    oid(p)
                ));
            }
            Some((p, _)) => {
                differs = Some(format!(
                    "it holds the oids from {:#x} where the chain holds those from {:#x}",
                    oid(prefix),
                    oid(p)
                ));
            }
            None => {
                differs = Some(format!(
                    "it holds the oids from {:#x}, which the chain does not",
                    oid(prefix)
                ));
            }
        }
    })
    .map_err(|source| Error::IndexFile {
        path: shown.clone(),
        source,
    })?;
    let why = if pos != end {
        Some(format!("it describes {pos} bytes, not {end}"))
    } else if differs.is_some() {
        differs
    } else {
        ours.next().map(|(p, _)| {
            let mut full = [0u8; 8];
            full[..6].copy_from_slice(&p);
            format!(
                "it lacks the oids from {:#x}, which the chain holds",
                u64::from_be_bytes(full)
            )
        })
    };
    match why {
        Some(why) => Err(Error::Mismatch(Mismatch::IndexDiffers { path: shown, why })),
        None => Ok(()),
    }
}

/// A blob manifest, when there is one, must list the blob records of its
/// range: every record that is a blob pickle, and no record outside the
/// range. (A record that undoes to a blob, a back pointer, may be listed;
/// following it would need the bytes it points back to.)
fn check_blobs(
    repo: &Repository,
    file: &DataFile,
    e: &DatEntry,
    walker: &Walker,
    seen: &mut usize,
) -> Result<()> {
    let records = walker.blobs_found();
    let range: Vec<_> = records[*seen..]
        .iter()
        .take_while(|r| r.pos < e.end)
        .collect();
    *seen += range.len();
    let Some(m) = repo.read_manifest(file)? else {
        return Ok(());
    };
    let shown = repo.display(&file.blobs_name());
    let listed: BTreeSet<(u64, u64)> = m.entries.iter().map(|b| (b.oid, b.tid)).collect();
    let pickles: BTreeSet<(u64, u64)> = range
        .iter()
        .filter(|r| r.back_pointer.is_none())
        .map(|r| (r.oid, r.tid))
        .collect();
    let any: BTreeSet<(u64, u64)> = range.iter().map(|r| (r.oid, r.tid)).collect();
    let why = if let Some((oid, tid)) = pickles.difference(&listed).next() {
        Some(format!(
            "the blob record of oid {oid:#x} tid {tid:#018x} in its range is not listed"
        ))
    } else {
        listed.difference(&any).next().map(|(oid, tid)| {
            format!("it lists oid {oid:#x} tid {tid:#018x}, which no blob record of its range is")
        })
    };
    match why {
        Some(why) => Err(Error::Mismatch(Mismatch::IndexDiffers { path: shown, why })),
        None => Ok(()),
    }
}
