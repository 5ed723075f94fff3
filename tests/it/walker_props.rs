//! Property tests of `format::Walker` over generated FileStorage logs.
//!
//! Each case builds a `Data.fs` (the layout of docs/format.md) from a random
//! list of transactions and computes, next to it, what `read_index` would
//! make of it: for every oid the offset of its newest data record, undone
//! (`u`) transactions not indexed. The walker, fed the file in random chunk
//! sizes, must agree with that model for the whole file, for any prefix of
//! it (a torn tail is left out, never an error), and for a checkpoint (`c`)
//! last transaction; damage to a transaction that is followed by another is
//! an error, never a panic; and `committed()` never runs ahead of the end.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index as Pick;
use repozo::filestorage::records::{FormatError, WalkResult, Walker, TRANS_HDR_LEN};
use repozo::testing::{Builder, Txn};

/// One generated transaction: its status, user/description/extension and
/// its `(oid, pickle length)` records (0 writes an 8-byte back pointer).
#[derive(Debug, Clone)]
struct TxnSpec {
    status: u8,
    tid_step: u64,
    user: Vec<u8>,
    descr: Vec<u8>,
    ext: Vec<u8>,
    records: Vec<(u64, u64)>,
}

/// Where a transaction landed in the generated file.
#[derive(Debug, Clone)]
struct TxnInfo {
    pos: u64,
    status: u8,
    /// Offset of the trailer; the transaction ends 8 bytes later.
    trailer: u64,
    /// `(oid, offset)` of each data record.
    records: Vec<(u64, u64)>,
}

impl TxnInfo {
    fn end(&self) -> u64 {
        self.trailer + 8
    }
}

#[derive(Debug, Clone)]
struct Log {
    bytes: Vec<u8>,
    txns: Vec<TxnInfo>,
}

/// What a walk of the first `n` transactions must report.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    end: u64,
    index: Vec<(u64, u64)>,
    transactions: u64,
    records: u64,
}

impl Log {
    fn build(specs: &[TxnSpec], seed: u64) -> Log {
        let mut b = Builder::new();
        let mut txns = Vec::new();
        let mut fill = seed | 1;
        for spec in specs {
            let t = Txn {
                tid_step: spec.tid_step,
                status: spec.status,
                meta: [&spec.user, &spec.descr, &spec.ext],
                records: &spec.records,
            };
            // Arbitrary pickle bytes, which may look like headers.
            let placed = b.append(&t, |_, buf| {
                for x in buf {
                    fill ^= fill << 13;
                    fill ^= fill >> 7;
                    fill ^= fill << 17;
                    *x = fill as u8;
                }
            });
            txns.push(TxnInfo {
                pos: placed.pos,
                status: spec.status,
                trailer: placed.trailer,
                records: placed.records,
            });
        }
        Log {
            bytes: b.bytes,
            txns,
        }
    }

    /// The model: the walk result when the first `n` transactions are the
    /// complete ones.
    fn expected(&self, n: usize) -> Expected {
        let mut index = BTreeMap::new();
        let mut records = 0;
        for t in self.txns[..n].iter().filter(|t| t.status != b'u') {
            for &(oid, pos) in &t.records {
                index.insert(oid, pos);
                records += 1;
            }
        }
        Expected {
            end: if n == 0 { 4 } else { self.txns[n - 1].end() },
            index: index.into_iter().collect(),
            transactions: n as u64,
            records,
        }
    }
}

fn observed(r: &WalkResult) -> Expected {
    Expected {
        end: r.end,
        index: r.index.iter().collect(),
        transactions: r.transactions,
        records: r.records,
    }
}

/// Walk `file` fed in `sizes` (used cyclically), as a backup would: every
/// byte is fed, also after the walk found its end. Returns the outcome and
/// `committed()` as seen after each feed.
fn walk(file: &[u8], sizes: &[usize]) -> (Result<WalkResult, FormatError>, Vec<u64>) {
    let n = file.len();
    let last = (n >= 8).then(|| u64::from_be_bytes(file[n - 8..].try_into().unwrap()));
    let mut w = Walker::new(n as u64, last);
    let mut seen = vec![w.committed()];
    let mut rest = file;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if let Err(e) = w.feed(chunk) {
            return (Err(e), seen);
        }
        seen.push(w.committed());
    }
    (w.finish(), seen)
}

/// Walk and check the outcome against the model, and `committed()` against
/// the end found.
fn check_walk(file: &[u8], sizes: &[usize], want: &Expected) -> Result<(), TestCaseError> {
    let (result, seen) = walk(file, sizes);
    let r = match result {
        Ok(r) => r,
        Err(e) => return Err(TestCaseError::fail(format!("walk failed: {e}"))),
    };
    prop_assert_eq!(&observed(&r), want);
    for pair in seen.windows(2) {
        prop_assert!(pair[0] <= pair[1], "committed() went back: {:?}", pair);
    }
    let max = seen.iter().copied().max().unwrap_or(0);
    prop_assert!(max <= r.end, "committed() reached {}, end {}", max, r.end);
    Ok(())
}

fn status() -> impl Strategy<Value = u8> {
    prop_oneof![8 => Just(b' '), 1 => Just(b'p'), 1 => Just(b'u')]
}

fn meta() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..20)
}

fn record() -> impl Strategy<Value = (u64, u64)> {
    (0..50u64, prop_oneof![1 => Just(0u64), 3 => 1..200u64])
}

fn txn() -> impl Strategy<Value = TxnSpec> {
    (
        status(),
        1..1u64 << 32,
        meta(),
        meta(),
        meta(),
        prop::collection::vec(record(), 0..8),
    )
        .prop_map(|(status, tid_step, user, descr, ext, records)| TxnSpec {
            status,
            tid_step,
            user,
            descr,
            ext,
            records,
        })
}

fn log(txns: std::ops::Range<usize>) -> impl Strategy<Value = Log> {
    (prop::collection::vec(txn(), txns), any::<u64>())
        .prop_map(|(specs, seed)| Log::build(&specs, seed))
}

/// Chunk sizes: mostly small, to split every header, some large.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![3 => 1..50usize, 1 => 1..5000usize, 1 => Just(1usize << 20)],
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// (a) The whole file, in any chunk sizes: exactly the model.
    #[test]
    fn whole_log_matches_model(log in log(0..30), sizes in chunk_sizes()) {
        let want = log.expected(log.txns.len());
        prop_assert_eq!(want.end, log.bytes.len() as u64);
        check_walk(&log.bytes, &sizes, &want)?;
    }

    /// (b) Any prefix of the file (at least the magic): the backup ends after
    /// the last transaction that lies wholly inside it, and never fails.
    #[test]
    fn any_prefix_ends_after_last_complete_txn(
        log in log(0..30),
        cuts in prop::collection::vec(any::<Pick>(), 1..8),
        sizes in chunk_sizes(),
    ) {
        let len = log.bytes.len();
        // Random cuts, plus each transaction's end and the bytes around it.
        let mut points: Vec<usize> = cuts.iter().map(|c| 4 + c.index(len - 3)).collect();
        for t in &log.txns {
            let e = t.end() as usize;
            points.extend([e - 1, e, (e + 1).min(len)]);
            points.push(t.pos as usize + TRANS_HDR_LEN as usize - 1);
        }
        for cut in points {
            let n = log.txns.iter().take_while(|t| t.end() <= cut as u64).count();
            let want = log.expected(n);
            check_walk(&log.bytes[..cut], &sizes, &want)
                .map_err(|e| TestCaseError::fail(format!("cut at {cut}: {e}")))?;
        }
    }

    /// (c) A checkpoint status on the last transaction: a commit in
    /// progress, left out of the backup.
    #[test]
    fn checkpoint_last_txn_is_left_out(log in log(1..30), sizes in chunk_sizes()) {
        let mut log = log;
        let n = log.txns.len();
        let last = log.txns[n - 1].pos as usize;
        log.bytes[last + 16] = b'c';
        log.txns[n - 1].status = b'c';
        let want = log.expected(n - 1);
        check_walk(&log.bytes, &sizes, &want)?;
    }

    /// (d) A damaged trailer or data record `tloc` in a transaction followed
    /// by another: an error naming it, never a panic, in any chunk sizes.
    #[test]
    fn damage_in_the_middle_is_an_error(
        log in log(2..30),
        which in any::<Pick>(),
        record in any::<Pick>(),
        bit in 0..64u32,
        tloc in any::<bool>(),
        sizes in chunk_sizes(),
    ) {
        let mut bytes = log.bytes.clone();
        let mask = 1u64 << bit;
        let middle = &log.txns[..log.txns.len() - 1];
        // Undone transactions are skipped unread: their records are not
        // checked, so only the others can have their tloc damaged.
        let with_records: Vec<&TxnInfo> = middle
            .iter()
            .filter(|t| t.status != b'u' && !t.records.is_empty())
            .collect();
        let want = if tloc && !with_records.is_empty() {
            let t = with_records[which.index(with_records.len())];
            let (_, pos) = t.records[record.index(t.records.len())];
            let at = pos as usize + 24;
            let found = t.pos ^ mask;
            bytes[at..at + 8].copy_from_slice(&found.to_be_bytes());
            FormatError::DataTxnPointer { offset: pos, found, expected: t.pos }
        } else {
            let t = &middle[which.index(middle.len())];
            let at = t.trailer as usize;
            let tlen = t.trailer - t.pos;
            let trailer = tlen ^ mask;
            bytes[at..at + 8].copy_from_slice(&trailer.to_be_bytes());
            FormatError::TxnLengthMismatch {
                offset: t.pos,
                trailer_offset: t.trailer,
                header: tlen,
                trailer,
            }
        };
        let (result, _) = walk(&bytes, &sizes);
        match result {
            Err(e) => prop_assert_eq!(e, want),
            Ok(r) => prop_assert!(false, "damage not found; walk ended at {}", r.end),
        }
    }
}

/// Prefixes shorter than the magic are not a FileStorage.
#[test]
fn prefix_shorter_than_magic_is_an_error() {
    for cut in 0..4 {
        let (result, _) = walk(&b"FS30"[..cut], &[1]);
        assert!(
            matches!(result, Err(FormatError::NotFileStorage { .. })),
            "cut {cut}: {result:?}"
        );
    }
}
