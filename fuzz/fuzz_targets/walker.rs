//! Fuzz the FileStorage walker.
//!
//! Input layout: byte 0 gives `k = byte0 % 16`, the next `k` bytes are chunk
//! sizes (each `b + 1`, used in turn, cyclically), and the rest is the file.
//! With `k == 0` the file is fed in one piece.
//!
//! Asserts: no panic; on success `4 <= end <= file_size`; `committed()` seen
//! after each feed never exceeds the end found; feeding in one piece gives
//! the same outcome (end, index, counts, or the same error) as the chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repozo::filestorage::records::{FormatError, WalkResult, Walker};

fn last_trailer(file: &[u8]) -> Option<u64> {
    let n = file.len();
    (n >= 8).then(|| u64::from_be_bytes(file[n - 8..].try_into().unwrap()))
}

/// Walk `file` in the given chunk sizes; returns the outcome and the largest
/// `committed()` seen after any feed.
fn walk(file: &[u8], sizes: &[usize]) -> (Result<WalkResult, FormatError>, u64) {
    let mut w = Walker::new(file.len() as u64, last_trailer(file));
    let mut max_committed = w.committed();
    let mut rest = file;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            sizes[i % sizes.len()].min(rest.len())
        };
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if let Err(e) = w.feed(chunk) {
            return (Err(e), max_committed);
        }
        max_committed = max_committed.max(w.committed());
        if w.is_done() {
            // Further bytes are ignored; feeding them must stay harmless.
            let end = w.committed();
            w.feed(rest).expect("feeding after the end is a no-op");
            assert_eq!(w.committed(), end, "bytes after the end moved it");
            break;
        }
    }
    (w.finish(), max_committed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, file) = rest.split_at(k);
    let sizes: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();
    let file_size = file.len() as u64;

    let (chunked, max_committed) = walk(file, &sizes);
    let (whole, _) = walk(file, &[]);

    match (&chunked, &whole) {
        (Ok(c), Ok(w)) => {
            assert!(
                c.end <= file_size,
                "end {} past file size {file_size}",
                c.end
            );
            assert!(c.end >= 4, "end {} inside the magic", c.end);
            assert!(
                max_committed <= c.end,
                "committed() reached {max_committed}, past the end {}",
                c.end
            );
            assert_eq!(c.end, w.end);
            assert_eq!(c.magic, w.magic);
            assert_eq!(c.transactions, w.transactions);
            assert_eq!(c.records, w.records);
            assert_eq!(c.index, w.index);
            assert!(c.index.iter().all(|(_, off)| off < c.end));
        }
        (Err(c), Err(w)) => assert_eq!(c, w),
        _ => panic!("chunked {chunked:?} but whole {whole:?}"),
    }
});
