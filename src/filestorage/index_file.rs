//! The `.index` file: the pickle form of an [`Index`] that
//! `fsIndex.save(pos, file)` writes and `fsIndex.load` reads.
//!
//! The file is a stream of pickles: the FileStorage position the index
//! describes, one `(prefix, bucket bytes)` tuple per 6-byte oid prefix in
//! sorted order, then `None`. A `FS30` database gets protocol 3 pickles (what
//! ZODB 5/6 on Python 3 writes), a `FS21` one protocol 1 with Python 2
//! strings (what ZODB on Python 2 wrote), so that the ZODB which opens the
//! database can read its index.

use std::fmt;
use std::io::{self, Read, Write};

use crate::filestorage::index::{Bucket, Index, PREFIX_LEN};
use crate::filestorage::pickle::{Dialect, PickleError, Reader, Value, Writer};
use crate::filestorage::records::Magic;

/// An index file's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The FileStorage position the index is valid up to.
    pub pos: u64,
    /// The oid -> offset map.
    pub index: Index,
}

/// Why an index file could not be read.
#[derive(Debug)]
pub enum IndexFileError {
    /// A pickle could not be read.
    Pickle(PickleError),
    /// The file is empty.
    Empty,
    /// The first pickle is a dict: the format of ZODB 3.9 and before.
    OldStyle,
    /// A pickle holds something other than what `fsIndex.save` writes.
    Unexpected {
        /// Where in the file.
        offset: u64,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// A bucket's bytes are not a whole number of sorted items.
    BadBucket {
        /// Where in the file.
        offset: u64,
        /// The length found.
        len: usize,
    },
    /// A prefix is not 6 bytes.
    BadPrefix {
        /// Where in the file.
        offset: u64,
        /// The length found.
        len: usize,
    },
    /// Prefixes are not in increasing order.
    PrefixOrder {
        /// Where in the file.
        offset: u64,
    },
    /// The stream ended before the closing `None`.
    MissingEnd {
        /// Where in the file.
        offset: u64,
    },
}

impl fmt::Display for IndexFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexFileError::Pickle(e) => write!(f, "{e}"),
            IndexFileError::Empty => write!(f, "empty index file"),
            IndexFileError::OldStyle => write!(
                f,
                "old-style index (a pickled dict, ZODB 3.9 or earlier); not supported"
            ),
            IndexFileError::Unexpected {
                offset,
                expected,
                found,
            } => write!(f, "expected {expected} at offset {offset}, found {found}"),
            IndexFileError::BadBucket { offset, len } => write!(
                f,
                "bucket of {len} bytes at offset {offset} is not a sorted run of 8-byte items"
            ),
            IndexFileError::BadPrefix { offset, len } => {
                write!(
                    f,
                    "oid prefix of {len} bytes at offset {offset}, expected 6"
                )
            }
            IndexFileError::PrefixOrder { offset } => {
                write!(f, "oid prefixes out of order at offset {offset}")
            }
            IndexFileError::MissingEnd { offset } => {
                write!(f, "index truncated at offset {offset}: no closing None")
            }
        }
    }
}

impl std::error::Error for IndexFileError {}

impl From<PickleError> for IndexFileError {
    fn from(e: PickleError) -> Self {
        IndexFileError::Pickle(e)
    }
}

/// The pickle dialect of the ZODB that reads a database with `magic`.
pub fn dialect_for(magic: Magic) -> Dialect {
    match magic {
        Magic::Fs30 => Dialect::Protocol3,
        Magic::Fs21 => Dialect::Protocol1,
    }
}

/// Write `index`, valid up to `pos`, as `fsIndex.save` does.
///
/// # Errors
/// I/O errors of `out`.
pub fn save<W: Write>(out: W, pos: u64, index: &Index, dialect: Dialect) -> io::Result<W> {
    let mut w = Writer::new(out, dialect);
    w.dump_int(pos)?;
    let mut bytes = Vec::new();
    for (prefix, bucket) in index.buckets() {
        bytes.clear();
        bucket.write_bytes(&mut bytes);
        w.dump_pair(&prefix, &bytes)?;
    }
    w.dump_none()?;
    Ok(w.into_inner())
}

/// Read only the position an index file describes (its first pickle).
///
/// # Errors
/// [`IndexFileError`] if the first pickle is not an int.
pub fn read_pos<R: Read>(input: R) -> Result<u64, IndexFileError> {
    let mut r = Reader::new(input);
    first_pos(&mut r)
}

fn first_pos<R: Read>(r: &mut Reader<R>) -> Result<u64, IndexFileError> {
    match r.load()? {
        None => Err(IndexFileError::Empty),
        Some(Value::Int(i)) => u64::try_from(i).map_err(|_| IndexFileError::Unexpected {
            offset: 0,
            expected: "a position between 0 and 2**64",
            found: "an int outside that range",
        }),
        Some(Value::Dict(_)) => Err(IndexFileError::OldStyle),
        Some(v) => Err(IndexFileError::Unexpected {
            offset: 0,
            expected: "the position (an int)",
            found: v.kind(),
        }),
    }
}

/// Read an index file of any era since ZODB 3.10.
///
/// # Errors
/// [`IndexFileError`] for anything `fsIndex.save` would not have written.
pub fn load<R: Read>(input: R) -> Result<IndexFile, IndexFileError> {
    let mut index = Index::new();
    let pos = for_each_bucket(input, |prefix, bucket| index.set_bucket(prefix, bucket))?;
    Ok(IndexFile { pos, index })
}

/// Read an index file as [`load`] does, handing each bucket to `f` in
/// prefix order instead of keeping them; returns the position. Checking a
/// file this way costs the memory of one bucket, not of the index.
///
/// # Errors
/// As [`load`].
pub(crate) fn for_each_bucket<R: Read>(
    input: R,
    mut f: impl FnMut([u8; PREFIX_LEN], Bucket),
) -> Result<u64, IndexFileError> {
    let mut r = Reader::new(input);
    let pos = first_pos(&mut r)?;
    let mut last: Option<[u8; PREFIX_LEN]> = None;
    loop {
        let offset = r.offset();
        let v = r.load()?.ok_or(IndexFileError::MissingEnd { offset })?;
        if !v.is_truthy() {
            return Ok(pos);
        }
        let mut v = v;
        let (prefix, bucket) = match &mut v {
            Value::Tuple(items) if items.len() == 2 => {
                let mut it = std::mem::take(items).into_iter();
                (it.next().expect("2 items"), it.next().expect("2 items"))
            }
            other => {
                return Err(IndexFileError::Unexpected {
                    offset,
                    expected: "a (prefix, bucket) tuple",
                    found: other.kind(),
                })
            }
        };
        let prefix = as_bytes(prefix, offset, "a prefix string")?;
        let bucket = as_bytes(bucket, offset, "a bucket string")?;
        let prefix: [u8; PREFIX_LEN] =
            prefix
                .as_slice()
                .try_into()
                .map_err(|_| IndexFileError::BadPrefix {
                    offset,
                    len: prefix.len(),
                })?;
        if last.is_some_and(|l| l >= prefix) {
            return Err(IndexFileError::PrefixOrder { offset });
        }
        last = Some(prefix);
        let b = Bucket::from_bytes(&bucket).ok_or(IndexFileError::BadBucket {
            offset,
            len: bucket.len(),
        })?;
        f(prefix, b);
    }
}

/// Python's `ensure_bytes`: text keys of an index unpickled with an encoding
/// become ASCII bytes.
fn as_bytes(mut v: Value, offset: u64, expected: &'static str) -> Result<Vec<u8>, IndexFileError> {
    match &mut v {
        Value::Bytes(b) => Ok(std::mem::take(b)),
        Value::Text(t) if t.is_ascii() => Ok(std::mem::take(t).into_bytes()),
        other => Err(IndexFileError::Unexpected {
            offset,
            expected,
            found: other.kind(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_in_both_dialects() {
        let mut ix = Index::new();
        for oid in 0..70_000u64 {
            ix.insert(oid, oid * 3 + 4);
        }
        for d in [Dialect::Protocol3, Dialect::Protocol1] {
            let bytes = save(Vec::new(), 1 << 40, &ix, d).unwrap();
            let back = load(bytes.as_slice()).unwrap();
            assert_eq!(back.pos, 1 << 40);
            assert_eq!(back.index, ix);
            assert_eq!(read_pos(bytes.as_slice()).unwrap(), 1 << 40);
        }
    }

    #[test]
    fn refuses_what_save_never_writes() {
        assert!(matches!(load(&b""[..]), Err(IndexFileError::Empty)));
        assert!(matches!(load(&b"}."[..]), Err(IndexFileError::OldStyle)));
        assert!(matches!(
            load(&b"K\x05."[..]),
            Err(IndexFileError::MissingEnd { offset: 3 })
        ));
        assert!(matches!(
            load(&b"K\x05.(U\x03abcU\x00t.N."[..]),
            Err(IndexFileError::BadPrefix { len: 3, .. })
        ));
        assert!(matches!(
            load(&b"K\x05.(U\x06abcdefU\x03xyzt.N."[..]),
            Err(IndexFileError::BadBucket { len: 3, .. })
        ));
        assert!(matches!(
            load(&b"K\x05.K\x01.N."[..]),
            Err(IndexFileError::Unexpected { .. })
        ));
    }

    proptest! {
        #[test]
        fn index_pickle_index(pairs in proptest::collection::vec((any::<u64>(), 0u64..(1 << 48)), 0..300), pos in any::<u64>()) {
            let mut ix = Index::new();
            for (oid, off) in pairs {
                ix.insert(oid, off);
            }
            let bytes = save(Vec::new(), pos, &ix, Dialect::Protocol3).unwrap();
            let back = load(bytes.as_slice()).unwrap();
            prop_assert_eq!(back, IndexFile { pos, index: ix });
        }
    }
}
