//! repozo: full and incremental backups of a ZODB FileStorage, compatible
//! with ZODB's `repozo` script, that also write the FileStorage index.
//!
//! The folders are the layers, each using only those before it
//! (docs/architecture.md): [`filestorage`] is FileStorage knowledge with no
//! I/O, [`codec`] and `disk` move bytes, [`datafs`] reads the Data.fs
//! being backed up, [`repository`] is the only place that opens repository
//! files, and [`commands`] holds the modes; [`cli`] turns repozo's flags
//! into a checked [`cli::Plan`].

// The library itself is checked for truncating casts; its unit tests
// build data with deliberate ones.
#![cfg_attr(test, allow(clippy::cast_possible_truncation))]
#![deny(unsafe_code)]

pub mod blobdir;
pub mod cli;
pub mod codec;
pub mod commands;
pub mod datafs;
pub(crate) mod disk;
pub mod entry;
pub mod error;
pub mod filestorage;
pub(crate) mod log;
pub mod manual;
pub(crate) mod pool;
pub mod repository;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};

/// Bytes read or handed on per call wherever a file is streamed: Data.fs,
/// backup files, inflated output.
pub(crate) const CHUNK: usize = 1 << 20;

use cli::{Checked, Plan};
use repository::Timestamp;

/// Run a checked plan. `-h` is the caller's business (it prints usage).
///
/// # Errors
/// Whatever the mode fails with; see [`Error`].
pub fn run(checked: &Checked) -> Result<()> {
    let log = log::Log::with_progress(checked.verbose, checked.progress);
    for note in &checked.notes {
        log!(log, "{note}");
    }
    let now = Timestamp::now()?;
    match &checked.plan {
        Plan::Help | Plan::Version | Plan::Manpage | Plan::Completions(_) => Ok(()),
        Plan::Backup(o) => commands::backup::backup(o, now, &log).map(drop),
        Plan::Recover(o) => commands::recover::recover(o, now, &log).map(drop),
        Plan::Verify(o) => commands::verify::verify(o, now, &log).map(drop),
        Plan::List(o) => commands::list::list(o, now, &log),
        Plan::Prune(o) => {
            let removed = commands::prune::prune(o, &log)?;
            if o.keep.dry_run {
                commands::prune::say_would_remove(&removed)?;
            }
            Ok(())
        }
        Plan::Transactions(o) => commands::transactions::transactions(o, &log).map(drop),
    }
}

/// Read until `buf` is full or `read` says the end (0); returns the bytes
/// read. `read` gets the rest of `buf` and how many bytes are in already
/// (for positioned reads).
pub(crate) fn read_full(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8], usize) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match read(&mut buf[got..], got) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `n` bytes as a `usize`, at most `max`: for a count kept in `u64` (file
/// positions are) that a buffer of `max` bytes bounds.
pub(crate) fn at_most(n: u64, max: usize) -> usize {
    usize::try_from(n).map_or(max, |n| n.min(max))
}
