//! repozo: full and incremental backups of a ZODB FileStorage, compatible
//! with ZODB's `repozo` script, that also write the FileStorage index.
//!
//! The modules follow the concepts: [`format`] walks `Data.fs`, [`index`]
//! holds the oid -> offset map, [`pickle`] and [`index_file`] read and write
//! its `.index` form, [`repository`] names and lists backup files and their
//! `.dat` log, [`backup`], [`recover`] and [`verify`] are the three modes,
//! and [`cli`] turns repozo's flags into a checked [`cli::Plan`].

pub mod atomic;
pub mod backup;
pub mod cli;
pub mod crc_later;
pub mod data_reader;
pub mod direct;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod gzip;
pub mod gzip_size;
pub mod index;
pub mod index_file;
pub mod inflate_raw;
pub mod lock;
pub mod log;
pub mod pickle;
pub mod pool;
pub mod recover;
pub mod repair;
pub mod repository;
pub mod source;
pub mod verify;

pub use error::{Error, Result};

use cli::{Checked, Plan};
use repository::Timestamp;

/// Run a checked plan. `-h` is the caller's business (it prints usage).
///
/// # Errors
/// Whatever the mode fails with; see [`Error`].
pub fn run(checked: &Checked) -> Result<()> {
    let log = log::Log::new(checked.verbose);
    for note in &checked.notes {
        log!(log, "{note}");
    }
    let now = Timestamp::now().map_err(Error::Clock)?;
    match &checked.plan {
        Plan::Help => Ok(()),
        Plan::Backup(o) => backup::backup(o, now, &log).map(drop),
        Plan::Recover(o) => recover::recover(o, now, &log).map(drop),
        Plan::Verify(o) => verify::verify(o, now, &log).map(drop),
    }
}
