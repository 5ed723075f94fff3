//! The transactions a repository holds: its chains, each backup file
//! walked header to header (a plain file seeking over the data records, a
//! gzip'd one inflated as a stream; no pickle is read), and the search for
//! the transaction `--at` or `--at-tid` names.
//!
//! Several chains may hold the same transaction (full backups without a
//! pack in between). The oldest chain holding it is the one used: after a
//! pack, a newer chain no longer has the revisions an earlier state needs.

use std::io::Read;
use std::os::unix::fs::FileExt;

use crate::error::{io_err, Error, Mismatch, Result};
use crate::filestorage::index::Index;
use crate::filestorage::records::{buf, Magic, TxnInfo, Walker, TRAILER_LEN};
use crate::log::Log;
use crate::repository::{DatEntry, Kind, Repository};

use super::recover::{follow_dat, Piece};

/// Bytes read at a time from a plain file: headers are small, and the
/// data between them is passed over once it is longer than this.
const BLOCK: usize = 32 << 10;

/// A full backup and its increments.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub(crate) pieces: Vec<Piece>,
    /// Where each piece starts in the Data.fs.
    pub(crate) starts: Vec<u64>,
    /// Its `.dat` log, if it has one.
    pub(crate) dat: Option<Vec<DatEntry>>,
    /// Why it stops before its `.dat` log's end (a file missing, a gap).
    pub(crate) broken: Option<String>,
}

impl Chain {
    /// Where piece `i` ends, if its size is known without reading it.
    pub(crate) fn end(&self, i: usize) -> Option<u64> {
        self.starts
            .get(i + 1)
            .copied()
            .or_else(|| self.pieces[i].logged_size.map(|size| self.starts[i] + size))
    }
}

/// Every chain of the repository, oldest first, each as its `.dat` lists
/// it (every line, whatever its date). A chain broken by a missing file
/// or a gap is kept up to the break, one that cannot be read at all
/// without its files, each with [`Chain::broken`] and a line on stderr.
///
/// # Errors
/// The repository cannot be read.
pub(crate) fn chains(repo: &Repository, log: &Log) -> Result<Vec<Chain>> {
    let mut groups: Vec<Vec<_>> = Vec::new();
    for f in repo.data_files()? {
        match (f.kind, groups.last_mut()) {
            (Kind::Full, _) => groups.push(vec![f]),
            (Kind::Incremental, Some(g)) => g.push(f),
            // Increments whose full backup is gone are no Data.fs.
            (Kind::Incremental, None) => {}
        }
    }
    let mut chains = Vec::with_capacity(groups.len());
    for group in groups {
        let full = repo.display(&group[0].name());
        let followed = follow_dat(repo, &group, "9999", log).and_then(|f| {
            let (pieces, dat) = (f.pieces, f.dat);
            let broken = f.broken.map(|e| e.to_string());
            if let Some(why) = &broken {
                log.notice(format_args!(
                    "the chain of {full} is read only up to the break: {why}"
                ));
            }
            starts(repo, &pieces).map(|s| (pieces, s, dat, broken))
        });
        // A chain left out whole stays as one without files: what it
        // held is unknown, which --at and --transactions must say.
        let chain = match followed {
            Ok((pieces, starts, dat, broken)) => Chain {
                pieces,
                starts,
                dat,
                broken,
            },
            Err(e) => {
                log.notice(format_args!("leaving out the chain of {full}: {e}"));
                Chain {
                    pieces: Vec::new(),
                    starts: Vec::new(),
                    dat: None,
                    broken: Some(e.to_string()),
                }
            }
        };
        chains.push(chain);
    }
    Ok(chains)
}

/// Where each piece starts: from the `.dat` sizes, or else from the files
/// (a gzip'd one inflated to be measured).
fn starts(repo: &Repository, pieces: &[Piece]) -> Result<Vec<u64>> {
    let mut starts = Vec::with_capacity(pieces.len());
    let mut at = 0u64;
    for p in pieces {
        starts.push(at);
        let size = match p.logged_size {
            Some(size) => size,
            None => measure(repo, p)?,
        };
        at += size;
    }
    Ok(starts)
}

/// The uncompressed size of a piece's file.
fn measure(repo: &Repository, p: &Piece) -> Result<u64> {
    let name = p.file.name();
    if p.file.gzip {
        repo.reader(&name, true)?.for_each_chunk(|_| Ok(()))
    } else {
        let shown = repo.display(&name);
        Ok(repo
            .open(&name)?
            .metadata()
            .map_err(io_err(&shown, "cannot stat"))?
            .len())
    }
}

/// The tid of the first transaction of piece `i`, if it holds one.
///
/// # Errors
/// The file cannot be read.
pub(crate) fn first_tid(repo: &Repository, chain: &Chain, i: usize) -> Result<Option<u64>> {
    let p = &chain.pieces[i];
    let name = p.file.name();
    let shown = repo.display(&name);
    let skip = if i == 0 { buf::MAGIC } else { 0 };
    let mut head = vec![0u8; skip + 8];
    let file = repo.open(&name)?;
    let got = if p.file.gzip {
        let mut gz = flate2::read::MultiGzDecoder::new(file);
        crate::read_full(&mut head, |b, _| gz.read(b))
    } else {
        crate::read_full(&mut head, |b, at| file.read_at(b, at as u64))
    }
    .map_err(io_err(&shown, "read"))?;
    Ok((got == head.len()).then(|| u64::from_be_bytes(head[skip..].try_into().expect("8 bytes"))))
}

/// Walk piece `i` of `chain`, passing each complete transaction (undone
/// ones left out, as ZODB's iterator leaves them) to `each`, which says
/// whether to go on.
///
/// # Errors
/// The file cannot be read, is damaged, or its transactions do not fill
/// it; errors of `each`.
pub(crate) fn walk_piece(
    repo: &Repository,
    chain: &Chain,
    i: usize,
    mut each: impl FnMut(&TxnInfo) -> Result<bool>,
) -> Result<()> {
    let p = &chain.pieces[i];
    let name = p.file.name();
    let shown = repo.display(&name);
    let start = chain.starts[i];
    let file = repo.open(&name)?;
    let plain_len = if p.file.gzip {
        None
    } else {
        Some(
            file.metadata()
                .map_err(io_err(&shown, "cannot stat"))?
                .len(),
        )
    };
    let wrong_size = |size: u64, expected: u64| {
        Error::Mismatch(Mismatch::Size {
            path: shown.clone(),
            size,
            expected,
            gzip: p.file.gzip,
        })
    };
    // Walked against a wrong size, a file would be blamed for the `.dat`
    // log's error (or the next file for this one's).
    if let (Some(len), Some(logged)) = (plain_len, p.logged_size) {
        if len != logged {
            return Err(wrong_size(len, logged));
        }
    }
    let end = chain.end(i).or(plain_len.map(|n| start + n));
    let last_trailer = match plain_len {
        Some(n) if n >= TRAILER_LEN => {
            let mut b = [0u8; buf::TRAILER];
            file.read_exact_at(&mut b, n - TRAILER_LEN)
                .map_err(io_err(&shown, "read"))?;
            Some(u64::from_be_bytes(b))
        }
        _ => None,
    };
    // A gzip'd file of unknown size: the walk ends where its data does.
    let size = end.unwrap_or(u64::MAX);
    let mut walker = if i == 0 {
        Walker::new(size, last_trailer)
    } else {
        Walker::resume(size, last_trailer, Magic::Fs30, start, Index::new())
    };
    walker.without_index();
    walker.note_transactions();
    let format = |source| Error::Format {
        path: shown.clone(),
        source,
    };
    // Feed bytes read; false once `each` wants no more.
    let mut feed = |walker: &mut Walker, bytes: &[u8]| -> Result<bool> {
        walker.feed(bytes).map_err(format)?;
        for t in walker.take_transactions() {
            if t.status != b'u' && !each(&t)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let mut block = vec![0u8; BLOCK];
    let mut read = 0u64;
    let mut stopped = false;
    if let Some(len) = plain_len {
        while read < len && !walker.is_done() {
            let skip = walker.skippable().min(len - read);
            walker.skip_bytes(skip).map_err(format)?;
            read += skip;
            let want = crate::at_most(len - read, BLOCK);
            let n = crate::read_full(&mut block[..want], |b, at| {
                file.read_at(b, read + at as u64)
            })
            .map_err(io_err(&shown, "read"))?;
            read += n as u64;
            stopped = n > 0 && !feed(&mut walker, &block[..n])?;
            if n == 0 || stopped {
                break;
            }
        }
    } else {
        let mut r = repo.reader(&name, true)?;
        block.resize(r.chunk_len(), 0);
        loop {
            let n = r.read_chunk(&mut block)?;
            read += n as u64;
            stopped = n > 0 && !feed(&mut walker, &block[..n])?;
            if n == 0 || stopped {
                break;
            }
        }
    }
    // `each` has what it wanted: the rest of the file is not its concern.
    if stopped {
        return Ok(());
    }
    if let Some(logged) = p.logged_size.filter(|&l| p.file.gzip && l != read) {
        return Err(wrong_size(read, logged));
    }
    let expected = end.unwrap_or(start + read);
    let done = if end.is_none() && walker.at_boundary() {
        walker.position()
    } else {
        walker.finish().map_err(format)?.end
    };
    if done != expected {
        return Err(Error::Mismatch(Mismatch::Torn {
            path: shown,
            end: done,
            expected,
        }));
    }
    Ok(())
}

/// What `--at` or `--at-tid` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Exactly this transaction.
    Tid(u64),
    /// The last transaction whose tid is at most this.
    AtOrBefore(u64),
}

/// The transaction a recovery ends with, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) chain: usize,
    /// The piece of the chain that holds it.
    pub(crate) piece: usize,
    pub(crate) txn: TxnInfo,
}

impl Found {
    /// The Data.fs length right after its commit.
    pub(crate) fn end(&self) -> u64 {
        self.txn.pos + self.txn.size
    }
}

/// Find the transaction `wanted` names: in each chain, only the one file
/// whose first transaction is the last not after it is walked, and only up
/// to it.
///
/// A chain broken by a missing file cannot say what that file held: an
/// answer that may lie there is an error, unless a newer chain (whose
/// full backup holds that time) gives it.
///
/// # Errors
/// No chain holds it ([`Error::NoTransaction`]), or only the missing part
/// of a broken chain may ([`Error::Broken`]); files that cannot be read.
pub(crate) fn find(
    repo: &Repository,
    chains: &[Chain],
    wanted: Wanted,
    wanted_shown: &str,
) -> Result<Found> {
    let bound = match wanted {
        Wanted::Tid(t) | Wanted::AtOrBefore(t) => t,
    };
    let mut best: Option<Found> = None;
    // The newest broken chain that could not tell, and why.
    let mut doubt: Option<(usize, &str)> = None;
    for (c, chain) in chains.iter().enumerate() {
        if let (true, Some(why)) = (chain.pieces.is_empty(), chain.broken.as_deref()) {
            doubt = Some((c, why));
            continue;
        }
        let mut firsts: Vec<Option<u64>> = Vec::with_capacity(chain.pieces.len());
        for i in 0..chain.pieces.len() {
            let first = first_tid(repo, chain, i)?;
            // The search relies on tids in order, which ZODB only warns of.
            if let (Some(t), Some(before)) = (first, firsts.iter().rev().flatten().next()) {
                if t <= *before {
                    return Err(tids_back(repo, chain, i, chain.starts[i]));
                }
            }
            firsts.push(first);
        }
        // Files before the first whose transactions come after it; a
        // file with none (an empty full backup) counts as before.
        let candidates = firsts
            .iter()
            .take_while(|f| f.is_none_or(|t| t <= bound))
            .count();
        for piece in (0..candidates).rev() {
            if firsts[piece].is_none() {
                continue;
            }
            let mut hit: Option<TxnInfo> = None;
            // Whether the walk reached past the transaction wanted.
            let mut settled = false;
            let mut last = 0u64;
            walk_piece(repo, chain, piece, |t| {
                if t.tid <= last {
                    return Err(tids_back(repo, chain, piece, t.pos));
                }
                last = t.tid;
                if t.tid > bound {
                    settled = true;
                    return Ok(false);
                }
                match wanted {
                    Wanted::Tid(x) if t.tid == x => {
                        hit = Some(t.clone());
                        settled = true;
                        Ok(false)
                    }
                    Wanted::Tid(_) => Ok(true),
                    Wanted::AtOrBefore(_) => {
                        hit = Some(t.clone());
                        Ok(true)
                    }
                }
            })?;
            let at_break = piece + 1 == chain.pieces.len() && !settled;
            if let (true, Some(why)) = (at_break, chain.broken.as_deref()) {
                doubt = Some((c, why));
                break;
            }
            if let Some(txn) = hit {
                if best.as_ref().is_none_or(|b| txn.tid > b.txn.tid) {
                    best = Some(Found {
                        chain: c,
                        piece,
                        txn,
                    });
                }
                break;
            }
            if matches!(wanted, Wanted::Tid(_)) {
                break;
            }
        }
        if matches!(wanted, Wanted::Tid(_)) && best.is_some() {
            break;
        }
    }
    match (best, doubt) {
        // The very transaction asked for: no other can be it.
        (Some(b), _) if matches!(wanted, Wanted::Tid(_)) => Ok(b),
        (Some(b), Some((c, _))) if b.chain > c => Ok(b),
        (_, Some((_, why))) => Err(Error::Broken {
            why: why.to_string(),
            wanted: wanted_shown.to_string(),
        }),
        (Some(b), None) => Ok(b),
        (None, None) => Err(Error::NoTransaction {
            repository: repo.given().to_string(),
            wanted: wanted_shown.to_string(),
        }),
    }
}

fn tids_back(repo: &Repository, chain: &Chain, piece: usize, offset: u64) -> Error {
    Error::Mismatch(Mismatch::TidsBack {
        path: repo.display(&chain.pieces[piece].file.name()),
        offset,
    })
}
