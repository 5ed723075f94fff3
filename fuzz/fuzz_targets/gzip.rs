//! Fuzz the gzip reader (`gzip::ParallelGunzip`) against flate2's
//! sequential `MultiGzDecoder`.
//!
//! Asserts: no panic; both give the same bytes, or the same error. How
//! many bytes come out before an error depends on how flate2 was fed the
//! input (it drops what a failing call inflated), so for files that start
//! with a member of ours, which we read member by member, only the bytes
//! both gave must agree; for any other file ours reads exactly as the
//! sequential reader does, so the count must match too (read 1 MiB at a
//! time, as the binary reads). Seeds are files our `ParallelGzip` writes,
//! several of them end to end, so that the fuzzer starts from members that
//! announce their length and mutates those.
#![no_main]

use std::io::{Read, Seek, Write};

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use repozo::codec::gzip::ParallelGunzip;

fn read_all(r: &mut impl Read) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let want = read_all(&mut MultiGzDecoder::new(data));
    let mut f = tempfile::tempfile().expect("a temporary file");
    f.write_all(data).expect("write");
    f.rewind().expect("rewind");
    let mut reader = ParallelGunzip::new(f);
    let got = read_all(&mut reader);
    assert_eq!(got.1, want.1, "error");
    let ours = data.len() >= 16 && data[..4] == [0x1f, 0x8b, 8, 4] && data[12..14] == *b"Rz";
    if want.1.is_none() || !ours {
        assert_eq!(
            got.0.len(),
            want.0.len(),
            "bytes before the end or the error"
        );
    }
    let common = got.0.len().min(want.0.len());
    assert!(got.0[..common] == want.0[..common], "content");
    if !ours {
        assert_eq!(reader.members_inflated_whole(), 0);
    }
});
