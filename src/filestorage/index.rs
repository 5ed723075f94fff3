//! The in-memory FileStorage index: oid -> offset of the object's newest
//! data record, laid out like ZODB's `fsIndex`.
//!
//! ZODB splits each 8-byte oid into a 6-byte prefix and a 2-byte suffix and
//! keeps, per prefix, a bucket of 2-byte suffixes mapped to 6-byte offsets.
//! We keep the same shape (a sorted map of prefixes to buckets holding two
//! parallel sorted arrays), which costs about 8 bytes per oid and makes the
//! pickle form (`fsBucket.toString()`: all keys, then all values) a plain
//! copy. Offsets are limited to 48 bits, as in ZODB.

use std::collections::BTreeMap;

/// Largest offset the 6-byte values can hold.
pub const MAX_OFFSET: u64 = (1 << 48) - 1;
/// Bytes of a bucket key (the oid's low two bytes).
pub(crate) const SUFFIX_LEN: usize = 2;
/// Bytes of a bucket value (the offset's low six bytes).
pub(crate) const OFFSET_LEN: usize = 6;
/// Bytes of an oid prefix (the oid's high six bytes).
pub(crate) const PREFIX_LEN: usize = 6;

/// The suffix -> offset mapping of one oid prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    keys: Vec<u16>,
    values: Vec<[u8; OFFSET_LEN]>,
}

impl Bucket {
    /// Number of oids in the bucket.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the bucket holds no oid.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn insert(&mut self, suffix: u16, value: [u8; OFFSET_LEN]) {
        // New oids are handed out in increasing order, so appending is the
        // common case and stays O(1).
        if self.keys.last().is_none_or(|&last| last < suffix) {
            self.keys.push(suffix);
            self.values.push(value);
            return;
        }
        match self.find(suffix) {
            Ok(i) => self.values[i] = value,
            Err(i) => {
                self.keys.insert(i, suffix);
                self.values.insert(i, value);
            }
        }
    }

    /// Where `suffix` is (`Ok`) or would go (`Err`), as `binary_search`.
    ///
    /// Keys are distinct and sorted, so the i-th is at least `first + i`
    /// and at most `last - (len - 1 - i)`: a suffix can only sit within
    /// as many places of its gapless position as the bucket has gaps.
    /// ZODB hands out oids densely, so that window is usually one key,
    /// and a rewrite of an old object costs no binary search through the
    /// 128 KiB of a full bucket's keys (a tenth of a full backup's time).
    fn find(&self, suffix: u16) -> Result<usize, usize> {
        let (Some(&first), Some(&last)) = (self.keys.first(), self.keys.last()) else {
            return Err(0);
        };
        if suffix < first {
            return Err(0);
        }
        if suffix > last {
            return Err(self.keys.len());
        }
        let (s, top) = (usize::from(suffix), self.keys.len() - 1);
        let lo = top.saturating_sub(usize::from(last) - s);
        let hi = (s - usize::from(first)).min(top);
        match self.keys[lo..=hi].binary_search(&suffix) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    /// The largest offset in the bucket.
    pub(crate) fn max_offset(&self) -> Option<u64> {
        self.values.iter().map(offset_from_bytes).max()
    }

    fn get(&self, suffix: u16) -> Option<u64> {
        self.find(suffix)
            .ok()
            .map(|i| offset_from_bytes(&self.values[i]))
    }

    /// The bytes `fsBucket.toString()` gives: the 2-byte keys, then the
    /// 6-byte values, all big-endian.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_bytes(&mut out);
        out
    }

    /// Append [`Bucket::to_bytes`] to `out`, reusing its allocation.
    pub(crate) fn write_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.keys.len() * (SUFFIX_LEN + OFFSET_LEN));
        for k in &self.keys {
            out.extend_from_slice(&k.to_be_bytes());
        }
        for v in &self.values {
            out.extend_from_slice(v);
        }
    }

    /// Rebuild a bucket from `fsBucket.toString()` bytes.
    ///
    /// Returns `None` when the length is not a whole number of items or the
    /// keys are not strictly increasing (a BTree bucket's invariant).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Bucket> {
        let item = SUFFIX_LEN + OFFSET_LEN;
        if !bytes.len().is_multiple_of(item) {
            return None;
        }
        let n = bytes.len() / item;
        let (kb, vb) = bytes.split_at(n * SUFFIX_LEN);
        let keys: Vec<u16> = kb
            .chunks_exact(SUFFIX_LEN)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let values = vb
            .chunks_exact(OFFSET_LEN)
            .map(|c| c.try_into().expect("6-byte chunk"))
            .collect();
        Some(Bucket { keys, values })
    }
}

/// oid -> offset of the newest data record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    buckets: BTreeMap<u64, Bucket>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Record that `oid`'s newest data record is at `offset`.
    ///
    /// Offsets above [`MAX_OFFSET`] keep their low 48 bits, as `fsIndex`
    /// does; no FileStorage reaches 256 TiB.
    pub fn insert(&mut self, oid: u64, offset: u64) {
        let value = offset_to_bytes(offset);
        self.buckets
            .entry(oid >> 16)
            .or_default()
            .insert(low16(oid), value);
    }

    /// The offset recorded for `oid`.
    pub(crate) fn get(&self, oid: u64) -> Option<u64> {
        self.buckets.get(&(oid >> 16))?.get(low16(oid))
    }

    /// Number of oids.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Bucket::len).sum()
    }

    /// Whether no oid is recorded.
    pub fn is_empty(&self) -> bool {
        self.buckets.values().all(Bucket::is_empty)
    }

    /// The largest oid, as `fsIndex.maxKey()`.
    pub fn max_oid(&self) -> Option<u64> {
        let (prefix, bucket) = self.buckets.iter().rev().find(|(_, b)| !b.is_empty())?;
        Some(prefix << 16 | u64::from(*bucket.keys.last()?))
    }

    /// Prefixes (as 6 big-endian bytes) and their buckets, in sorted order:
    /// the order `fsIndex.save` writes them in.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = ([u8; PREFIX_LEN], &Bucket)> {
        self.buckets
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, b)| (prefix_to_bytes(*p), b))
    }

    /// Install a whole bucket for a prefix, replacing any there.
    pub(crate) fn set_bucket(&mut self, prefix: [u8; PREFIX_LEN], bucket: Bucket) {
        let mut p = [0u8; 8];
        p[2..].copy_from_slice(&prefix);
        self.buckets.insert(u64::from_be_bytes(p), bucket);
    }

    /// Every (oid, offset) pair in oid order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().flat_map(|(p, b)| {
            b.keys
                .iter()
                .zip(&b.values)
                .map(move |(k, v)| (p << 16 | u64::from(*k), offset_from_bytes(v)))
        })
    }
}

fn prefix_to_bytes(prefix: u64) -> [u8; PREFIX_LEN] {
    prefix.to_be_bytes()[2..].try_into().expect("6 bytes")
}

fn offset_to_bytes(offset: u64) -> [u8; OFFSET_LEN] {
    offset.to_be_bytes()[2..].try_into().expect("6 bytes")
}

fn offset_from_bytes(b: &[u8; OFFSET_LEN]) -> u64 {
    let mut full = [0u8; 8];
    full[2..].copy_from_slice(b);
    u64::from_be_bytes(full)
}

/// The low 16 bits of an oid: its key inside its bucket.
fn low16(oid: u64) -> u16 {
    let b = oid.to_be_bytes();
    u16::from_be_bytes([b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_the_newest_offset_and_splits_by_prefix() {
        let mut ix = Index::new();
        ix.insert(1, 100);
        ix.insert(0x1_0002, 200);
        ix.insert(1, 300);
        ix.insert(0, 50);
        assert_eq!(ix.get(1), Some(300));
        assert_eq!(ix.get(0), Some(50));
        assert_eq!(ix.get(2), None);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.max_oid(), Some(0x1_0002));
        let prefixes: Vec<_> = ix.buckets().map(|(p, _)| p).collect();
        assert_eq!(prefixes, vec![[0; 6], [0, 0, 0, 0, 0, 1]]);
    }

    #[test]
    fn bucket_bytes_are_keys_then_values() {
        let mut ix = Index::new();
        ix.insert(3, 0x0102);
        ix.insert(1, 0x0a0b0c);
        let (_, b) = ix.buckets().next().unwrap();
        assert_eq!(
            b.to_bytes(),
            vec![0, 1, 0, 3, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(Bucket::from_bytes(&b.to_bytes()).as_ref(), Some(b));
        assert_eq!(Bucket::from_bytes(&[0; 7]), None);
        assert_eq!(
            Bucket::from_bytes(&[0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    proptest! {
        #[test]
        fn agrees_with_a_btreemap(ops in proptest::collection::vec((0u64..300_000, 0u64..MAX_OFFSET), 0..500)) {
            let mut ix = Index::new();
            let mut model = BTreeMap::new();
            for (oid, off) in ops {
                ix.insert(oid, off);
                model.insert(oid, off);
            }
            prop_assert_eq!(ix.len(), model.len());
            let pairs: Vec<_> = ix.iter().collect();
            let expected: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(pairs, expected);
        }

        /// Dense buckets with a few gaps: the window `find` searches.
        #[test]
        fn finds_in_dense_buckets_as_a_binary_search(
            present in proptest::collection::vec(proptest::bool::weighted(0.9), 1..400),
            base in 0u64..65_000,
            probes in proptest::collection::vec(0u64..66_000, 0..50),
        ) {
            let mut ix = Index::new();
            let mut model = BTreeMap::new();
            for (i, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                let oid = (base + i as u64).min(0xffff);
                ix.insert(oid, i as u64);
                model.insert(oid, i as u64);
            }
            for (n, oid) in probes.into_iter().enumerate() {
                prop_assert_eq!(ix.get(oid), model.get(&oid).copied());
                ix.insert(oid, 1_000_000 + n as u64);
                model.insert(oid, 1_000_000 + n as u64);
            }
            let pairs: Vec<_> = ix.iter().collect();
            let expected: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(pairs, expected);
        }
    }
}
