//! Files on disk: opening regular files without blocking, files that
//! appear under their final name only when complete, and the writer that
//! keeps the page cache clean (with reflink copies where the filesystem
//! shares extents).

pub(crate) mod atomic;
pub(crate) mod behind;
pub(crate) mod open;
