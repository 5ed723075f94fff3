//! What a FileStorage is, with no file of its own: the records of its
//! transaction log and the walker over them, the in-memory index, the
//! `.index` file format and the pickle subset it is written in, and the
//! sanity check that decides whether a saved index can be trusted.

pub mod blob;
pub mod index;
pub mod index_file;
pub mod pickle;
pub mod records;
pub(crate) mod sanity;
pub mod timestamp;
