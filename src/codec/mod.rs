//! Byte transforms with no knowledge of FileStorage or of repositories:
//! gzip on all cores, md5 on a thread of its own, the two-thread size
//! reader of one-member gzip files,
//! its raw inflater and deferred CRC. The raw inflater holds the crate's
//! only `unsafe` code.

pub(crate) mod crc_later;
pub mod gzip;
pub mod gzip_size;
#[allow(unsafe_code)]
pub(crate) mod inflate_raw;
pub(crate) mod md5;
