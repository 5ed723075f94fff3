//! FileStorage bytes for tests, written record by record as
//! docs/format.md lays them out: the one builder the unit tests, the
//! integration tests and the property tests share. Compiled for tests and
//! with the `testing` feature only.

use std::collections::BTreeMap;

use crate::filestorage::records::{DATA_HDR_LEN, MAGIC_FS30, TRAILER_LEN, TRANS_HDR_LEN};

/// The tid the first transaction gets (plus its step).
pub const FIRST_TID: u64 = 0x03d0_0000_0000_0000;

/// A FileStorage being written in memory.
#[derive(Debug, Clone)]
pub struct Builder {
    /// The file so far.
    pub bytes: Vec<u8>,
    /// The last transaction's tid.
    pub tid: u64,
    /// Each oid's newest data record, for `prev` and back pointers.
    newest: BTreeMap<u64, u64>,
}

/// One transaction to append.
#[derive(Debug, Clone)]
pub struct Txn<'a> {
    /// How far the tid moves on from the last one.
    pub tid_step: u64,
    /// `' '`, `'p'`, `'u'` or `'c'`.
    pub status: u8,
    /// The user, description and extension fields.
    pub meta: [&'a [u8]; 3],
    /// `(oid, pickle length)` per data record; length 0 writes a back
    /// pointer to the oid's previous record.
    pub records: &'a [(u64, u64)],
}

/// Where an appended transaction landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Where its header starts.
    pub pos: u64,
    /// Where its trailer starts; the transaction ends 8 bytes later.
    pub trailer: u64,
    /// `(oid, offset)` of each data record.
    pub records: Vec<(u64, u64)>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A file holding only the `FS30` magic.
    pub fn new() -> Builder {
        Builder {
            bytes: MAGIC_FS30.to_vec(),
            tid: FIRST_TID,
            newest: BTreeMap::new(),
        }
    }

    /// Append `t`, filling each pickle of length `n` for `oid` with
    /// `payload(oid, buffer)`.
    pub fn append(&mut self, t: &Txn<'_>, mut payload: impl FnMut(u64, &mut [u8])) -> Placed {
        self.tid += t.tid_step;
        let tpos = self.bytes.len() as u64;
        let body: u64 = t
            .records
            .iter()
            .map(|&(_, plen)| DATA_HDR_LEN + if plen == 0 { 8 } else { plen })
            .sum();
        let meta: u64 = t.meta.iter().map(|m| m.len() as u64).sum();
        let tlen = TRANS_HDR_LEN + meta + body;
        let b = &mut self.bytes;
        b.extend_from_slice(&self.tid.to_be_bytes());
        b.extend_from_slice(&tlen.to_be_bytes());
        b.push(t.status);
        for m in t.meta {
            let len = u16::try_from(m.len()).expect("a test's metadata is short");
            b.extend_from_slice(&len.to_be_bytes());
        }
        for m in t.meta {
            b.extend_from_slice(m);
        }
        let mut records = Vec::with_capacity(t.records.len());
        for &(oid, plen) in t.records {
            let pos = b.len() as u64;
            let prev = self.newest.get(&oid).copied().unwrap_or(0);
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&self.tid.to_be_bytes());
            b.extend_from_slice(&prev.to_be_bytes());
            b.extend_from_slice(&tpos.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&plen.to_be_bytes());
            if plen == 0 {
                b.extend_from_slice(&prev.to_be_bytes());
            } else {
                let start = b.len();
                let len = usize::try_from(plen).expect("a test's pickle fits in memory");
                b.resize(start + len, 0);
                payload(oid, &mut b[start..]);
            }
            self.newest.insert(oid, pos);
            records.push((oid, pos));
        }
        debug_assert_eq!(b.len() as u64, tpos + tlen);
        let trailer = b.len() as u64;
        b.extend_from_slice(&tlen.to_be_bytes());
        debug_assert_eq!(b.len() as u64, trailer + TRAILER_LEN);
        Placed {
            pos: tpos,
            trailer,
            records,
        }
    }

    /// Append a transaction with `status` holding `(oid, pickle length)`
    /// records, user "user" and description "descr", pickles of `p`;
    /// returns its offset.
    pub fn txn(&mut self, status: u8, records: &[(u64, u64)]) -> u64 {
        let t = Txn {
            tid_step: 1,
            status,
            meta: [b"user", b"descr", b""],
            records,
        };
        self.append(&t, |_, buf| buf.fill(b'p')).pos
    }
}
