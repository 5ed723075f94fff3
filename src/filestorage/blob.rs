//! Blob records: which data records are `ZODB.blob.Blob` objects, and
//! where ZODB keeps their files.
//!
//! A blob record's pickle starts with the pickle of the class itself (ZODB's
//! `is_blob_record` loads that first pickle and asks whether it is `Blob`);
//! zc.zlibstorage stores records as `.z` followed by zlib data. The file of
//! a blob record is named by the record's oid and its transaction's tid:
//! `<oid path>/<tid repr>.blob`, the oid path being eight directories
//! `0x00/…/0x01` (bushy) or one `0x01` (lawn).

use std::fmt;

/// Bytes of a data record's pickle that [`is_blob`] needs at most, plain.
const PLAIN_HEAD: usize = 64;
/// Bytes of a `.z` record kept to inflate its head from.
pub(crate) const HEAD: usize = 256;

/// `cZODB.blob\nBlob\n`: the class by the GLOBAL opcode (protocols 0-3).
const GLOBAL: &[u8] = b"cZODB.blob\nBlob\n";

/// Whether the first bytes of a record's data (`head`, at most [`HEAD`],
/// fewer only when the record is shorter) are a blob's.
pub(crate) fn is_blob(head: &[u8]) -> bool {
    match head.strip_prefix(b".z") {
        Some(compressed) => is_blob_pickle(&inflate_head(compressed)),
        None => is_blob_pickle(&head[..head.len().min(PLAIN_HEAD)]),
    }
}

/// The first bytes a zlib stream inflates to, as far as `compressed` goes.
fn inflate_head(compressed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PLAIN_HEAD);
    let mut z = flate2::Decompress::new(true);
    // A truncated stream is expected here: only its start is at hand.
    let _ = z.decompress_vec(compressed, &mut out, flate2::FlushDecompress::Sync);
    out
}

/// Whether `p` starts with a pickle of exactly the class `ZODB.blob.Blob`:
/// an optional PROTO, the class by GLOBAL or STACK_GLOBAL, an optional
/// memo store, STOP.
fn is_blob_pickle(p: &[u8]) -> bool {
    let mut p = p;
    if let [0x80, _, rest @ ..] = p {
        p = rest;
    }
    // FRAME and its length (protocol 4 and later).
    if let [0x95, _, _, _, _, _, _, _, _, rest @ ..] = p {
        p = rest;
    }
    let Some(rest) = p.strip_prefix(GLOBAL).or_else(|| stack_global(p)) else {
        return false;
    };
    let rest = skip_memo(rest);
    rest.first() == Some(&b'.')
}

/// `ZODB.blob` and `Blob` as short unicode strings (each optionally
/// memoized), then STACK_GLOBAL: protocol 4 and later.
fn stack_global(p: &[u8]) -> Option<&[u8]> {
    let p = p.strip_prefix(b"\x8c\x09ZODB.blob")?;
    let p = p.strip_prefix(b"\x94").unwrap_or(p);
    let p = p.strip_prefix(b"\x8c\x04Blob")?;
    let p = p.strip_prefix(b"\x94").unwrap_or(p);
    p.strip_prefix(b"\x93")
}

/// Past one memo store: BINPUT, LONG_BINPUT, MEMOIZE or PUT.
fn skip_memo(p: &[u8]) -> &[u8] {
    match p {
        [b'q', _, rest @ ..] => rest,
        [b'r', _, _, _, _, rest @ ..] => rest,
        [0x94, rest @ ..] => rest,
        [b'p', rest @ ..] => match rest.iter().position(|&b| b == b'\n') {
            Some(i) => &rest[i + 1..],
            None => p,
        },
        _ => p,
    }
}

/// How a blob directory arranges its files (its `.layout` file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One directory per oid byte: `0x00/0x00/…/0x2a`.
    Bushy,
    /// One directory per oid: `0x2a` (deprecated in ZODB).
    Lawn,
}

impl Layout {
    /// The layout a `.layout` file names.
    pub fn parse(text: &str) -> Option<Layout> {
        match text.trim() {
            "bushy" => Some(Layout::Bushy),
            "lawn" => Some(Layout::Lawn),
            _ => None,
        }
    }

    /// The name its `.layout` file holds.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bushy => "bushy",
            Layout::Lawn => "lawn",
        }
    }

    /// The directories of `oid`, relative to the blob directory.
    pub fn oid_dirs(self, oid: u64) -> Vec<String> {
        match self {
            Layout::Bushy => oid
                .to_be_bytes()
                .iter()
                .map(|b| format!("0x{b:02x}"))
                .collect(),
            Layout::Lawn => vec![repr(oid)],
        }
    }

    /// The file of the blob `oid` written by `tid`, relative to the blob
    /// directory.
    pub fn file(self, oid: u64, tid: u64) -> String {
        let mut path = self.oid_dirs(oid).join("/");
        path.push('/');
        path.push_str(&file_name(tid));
        path
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `<tid repr>.blob`.
pub fn file_name(tid: u64) -> String {
    format!("{}.blob", repr(tid))
}

/// ZODB's `oid_repr`: hex without leading zeros, an even number of digits,
/// `0x00` for zero.
pub fn repr(n: u64) -> String {
    let digits = format!("{n:x}");
    if digits.len() % 2 == 1 {
        format!("0x0{digits}")
    } else {
        format!("0x{digits}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn blob_pickles_of_every_protocol_are_recognised() {
        let state = b"}q\x01.";
        for class in [
            &b"\x80\x03cZODB.blob\nBlob\nq\x00."[..],
            b"\x80\x02cZODB.blob\nBlob\nq\x01.",
            b"cZODB.blob\nBlob\np0\n.",
            b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x09ZODB.blob\x94\x8c\x04Blob\x94\x93\x94.",
            b"\x80\x04\x8c\x09ZODB.blob\x94\x8c\x04Blob\x94\x93\x94.",
        ] {
            let mut rec = class.to_vec();
            rec.extend_from_slice(state);
            assert!(is_blob(&rec), "{class:?}");
        }
        for other in [
            &b"\x80\x03cZODB.blob\nBlobX\nq\x00."[..],
            b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.",
            b"\x80\x03(cZODB.blob\nBlob\nq\x00Ntq\x01.",
            b"\x80\x03cZODB.blob\nBlob\nq\x00",
            b"",
        ] {
            assert!(!is_blob(other), "{other:?}");
        }
    }

    #[test]
    fn zlibstorage_records_are_inflated_first() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"\x80\x03cZODB.blob\nBlob\nq\x00.}q\x01.")
            .unwrap();
        z.write_all(&[7u8; 1000]).unwrap();
        let mut rec = b".z".to_vec();
        rec.extend(z.finish().unwrap());
        rec.truncate(HEAD);
        assert!(is_blob(&rec));
        assert!(!is_blob(b".zgarbage that is not zlib"));
    }

    #[test]
    fn paths_are_zodbs() {
        assert_eq!(repr(0), "0x00");
        assert_eq!(repr(0x1), "0x01");
        assert_eq!(repr(0x123), "0x0123");
        assert_eq!(repr(0x03e5_c3a1_b2c3_d4e5), "0x03e5c3a1b2c3d4e5");
        assert_eq!(
            Layout::Bushy.file(0x1a2b, 0x03e5_c3a1_b2c3_d4e5),
            "0x00/0x00/0x00/0x00/0x00/0x00/0x1a/0x2b/0x03e5c3a1b2c3d4e5.blob"
        );
        assert_eq!(Layout::Lawn.file(7, 0x10), "0x07/0x10.blob");
        assert_eq!(Layout::parse("bushy\n"), Some(Layout::Bushy));
        assert_eq!(Layout::parse("tree"), None);
    }
}
