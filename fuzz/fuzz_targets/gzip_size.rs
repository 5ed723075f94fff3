//! Fuzz `gzip_size::inflated_size` (two threads, one gzip member) against
//! flate2's sequential `MultiGzDecoder`.
//!
//! Asserts: no panic, no hang; an answer only for a file the sequential
//! reader reads without error, and then the size it reads. Seeds are
//! one-member files like Python's (level 9, a name in the header) of text
//! shaped like FileStorage records, big enough for the second thread to
//! find a block start, so that mutations land in both halves.
#![no_main]

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use repozo::codec::gzip_size::inflated_size;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let want = MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()
        .map(|n| n as u64);
    let mut f = tempfile::tempfile().expect("a temporary file");
    f.write_all(data).expect("write");
    if let Some(found) = inflated_size(&f, 0) {
        assert_eq!(Some(found.size), want, "an answer the sequential reader does not give");
    }
});
