//! The FileStorage on-disk format: a streaming walker over the transaction log.
//!
//! A `Data.fs` is a 4-byte magic followed by transaction records. Each
//! transaction is a 23-byte header, the user/description/extension strings,
//! its data records (42-byte header, then the pickle or, when the data length
//! is zero, an 8-byte back pointer), and finally the transaction length
//! repeated as an 8-byte trailer.
//!
//! [`Walker`] is a push parser: it is fed the file's bytes in chunks of any
//! size, so that the same chunks can also go to md5 and to the backup writer
//! without reading the file twice. It decides where the backup ends exactly
//! as ZODB's read-only `read_index` does: a short header, a transaction that
//! runs past the end of the file, or a checkpoint (`c`) status marks an
//! incomplete tail, which is left out. Damage in the middle of the file is an
//! error naming the offset. While walking it builds the [`Index`]: oid ->
//! offset of the newest data record, what `fsIndex` holds after `read_index`.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use crate::filestorage::blob;
use crate::filestorage::index::Index;

/// Length of the magic at the start of the file.
pub(crate) const MAGIC_LEN: u64 = 4;
/// Magic of files written by ZODB on Python 3.
pub const MAGIC_FS30: [u8; 4] = *b"FS30";
/// Magic of files written by ZODB on Python 2.
pub const MAGIC_FS21: [u8; 4] = *b"FS21";
/// tid(8) length(8) status(1) user length(2) description length(2) extension length(2).
pub const TRANS_HDR_LEN: u64 = 23;
/// oid(8) tid(8) prev(8) transaction position(8) version length(2) data length(8).
pub const DATA_HDR_LEN: u64 = 42;
/// A data record with a zero data length carries this many bytes of back pointer.
pub(crate) const BACK_POINTER_LEN: u64 = 8;
/// The redundant copy of the transaction length after each transaction.
pub(crate) const TRAILER_LEN: u64 = 8;

/// The same lengths as buffer sizes. File positions are `u64`, buffers
/// `usize`; these small constants convert without loss, and this is the
/// one place that converts them.
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod buf {
    /// [`super::MAGIC_LEN`].
    pub(crate) const MAGIC: usize = super::MAGIC_LEN as usize;
    /// [`super::TRANS_HDR_LEN`].
    pub(crate) const TRANS_HDR: usize = super::TRANS_HDR_LEN as usize;
    /// [`super::DATA_HDR_LEN`].
    pub(crate) const DATA_HDR: usize = super::DATA_HDR_LEN as usize;
    /// [`super::TRAILER_LEN`].
    pub(crate) const TRAILER: usize = super::TRAILER_LEN as usize;
    /// [`super::BACK_POINTER_LEN`].
    pub(crate) const BACK_POINTER: usize = super::BACK_POINTER_LEN as usize;
}

/// Which ZODB wrote the file, as told by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `FS30`: ZODB 5/6 on Python 3; indexes are protocol 3 pickles.
    Fs30,
    /// `FS21`: ZODB 3.x-5.x on Python 2; indexes are protocol 1 pickles.
    Fs21,
}

impl Magic {
    /// Recognise a magic, or `None` when it is not a FileStorage's.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Magic> {
        match bytes {
            b"FS30" => Some(Magic::Fs30),
            b"FS21" => Some(Magic::Fs21),
            _ => None,
        }
    }
}

/// A transaction record's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnHeader {
    pub(crate) tid: u64,
    pub(crate) tlen: u64,
    pub(crate) status: u8,
    pub(crate) ulen: u16,
    pub(crate) dlen: u16,
    pub(crate) elen: u16,
}

impl TxnHeader {
    /// Decode the 23 header bytes.
    pub fn parse(b: &[u8; buf::TRANS_HDR]) -> TxnHeader {
        TxnHeader {
            tid: BigEndian::read_u64(&b[0..8]),
            tlen: BigEndian::read_u64(&b[8..16]),
            status: b[16],
            ulen: BigEndian::read_u16(&b[17..19]),
            dlen: BigEndian::read_u16(&b[19..21]),
            elen: BigEndian::read_u16(&b[21..23]),
        }
    }

    /// Header plus user, description and extension: where data records start.
    pub(crate) fn header_len(&self) -> u64 {
        TRANS_HDR_LEN + u64::from(self.ulen) + u64::from(self.dlen) + u64::from(self.elen)
    }
}

/// A data record's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataHeader {
    pub(crate) oid: u64,
    pub(crate) tid: u64,
    pub(crate) prev: u64,
    pub(crate) tloc: u64,
    pub(crate) vlen: u16,
    pub(crate) plen: u64,
}

impl DataHeader {
    /// Decode the 42 header bytes.
    pub fn parse(b: &[u8; buf::DATA_HDR]) -> DataHeader {
        DataHeader {
            oid: BigEndian::read_u64(&b[0..8]),
            tid: BigEndian::read_u64(&b[8..16]),
            prev: BigEndian::read_u64(&b[16..24]),
            tloc: BigEndian::read_u64(&b[24..32]),
            vlen: BigEndian::read_u16(&b[32..34]),
            plen: BigEndian::read_u64(&b[34..42]),
        }
    }

    /// Header plus pickle, or header plus back pointer when there is no
    /// pickle; saturating, since `plen` comes from the file.
    pub(crate) fn record_len(&self) -> u64 {
        DATA_HDR_LEN.saturating_add(if self.plen == 0 {
            BACK_POINTER_LEN
        } else {
            self.plen
        })
    }
}

/// Damage found while walking; offsets are absolute positions in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The file is shorter than a magic or does not start with one.
    NotFileStorage {
        /// What was found.
        found: Vec<u8>,
    },
    /// A transaction header's length is smaller than its own header, and the
    /// file's last trailer says the damage is not just a torn tail.
    InvalidTxnHeader {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// The length its header gives.
        tlen: u64,
        /// The length of the header alone.
        header_len: u64,
    },
    /// The trailer (at `trailer_offset`) after the transaction at `offset`
    /// disagrees with its header.
    TxnLengthMismatch {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// Where its trailer starts.
        trailer_offset: u64,
        /// The length its header gives.
        header: u64,
        /// The length its trailer gives.
        trailer: u64,
    },
    /// A data record reaches past the end of its transaction.
    DataExceedsTxn {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// Where the record ends.
        record_end: u64,
        /// Where its transaction ends.
        txn_end: u64,
    },
    /// A data record's transaction position is not its transaction's.
    DataTxnPointer {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// What was found.
        found: u64,
        /// What was expected.
        expected: u64,
    },
    /// A data record carries a version, which ZODB dropped in 3.9.
    VersionRecord {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// The version's length.
        vlen: u16,
    },
    /// The file ended before a transaction it had promised was complete.
    UnexpectedEof {
        /// Where the record or transaction starts in the file.
        offset: u64,
        /// What was expected.
        expected: u64,
    },
    /// An undo record's back pointer leads nowhere sensible.
    BadBackPointer {
        /// The record (or the one pointed at) holding the pointer.
        offset: u64,
        /// Where it points.
        target: u64,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NotFileStorage { found } => {
                write!(f, "not a FileStorage file (magic {})", show_bytes(found))
            }
            FormatError::InvalidTxnHeader { offset, tlen, header_len } => write!(
                f,
                "invalid transaction header at offset {offset}: length {tlen} is smaller than the header's {header_len} bytes"
            ),
            FormatError::TxnLengthMismatch {
                offset,
                trailer_offset,
                header,
                trailer,
            } => write!(
                f,
                "redundant transaction length check failed at offset {trailer_offset}: the transaction at {offset} says {header}, its trailer says {trailer}"
            ),
            FormatError::DataExceedsTxn { offset, record_end, txn_end } => write!(
                f,
                "data record at offset {offset} exceeds its transaction: record ends at {record_end}, transaction at {txn_end}"
            ),
            FormatError::DataTxnPointer { offset, found, expected } => write!(
                f,
                "data record at offset {offset} does not point to its transaction: {found} != {expected}"
            ),
            FormatError::VersionRecord { offset, vlen } => write!(
                f,
                "data record at offset {offset} has a version (length {vlen}); versions are not supported"
            ),
            FormatError::UnexpectedEof { offset, expected } => write!(
                f,
                "file ends at offset {offset}, inside a transaction that should end at {expected}"
            ),
            FormatError::BadBackPointer { offset, target } => write!(
                f,
                "data record at offset {offset} points back to {target}, where no earlier record of its object is"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

fn show_bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "missing: the file is empty".to_string();
    }
    let mut s = String::from("b'");
    for &c in b {
        if c.is_ascii_graphic() && c != b'\'' && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s.push('\'');
    s
}

/// What a complete walk found.
#[derive(Debug)]
pub struct WalkResult {
    /// The file's magic.
    pub magic: Magic,
    /// End of the last complete transaction: the length a backup copies.
    pub end: u64,
    /// oid -> offset of the newest data record, for the bytes up to `end`.
    pub index: Index,
    /// Transactions walked (including undone ones).
    pub transactions: u64,
    /// Data records indexed.
    pub records: u64,
    /// The blob records walked, in file order, when asked for
    /// ([`Walker::find_blobs`]).
    pub blobs: Vec<BlobRecord>,
}

/// A data record that is a blob, or may be one: its data lives elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRecord {
    /// The object.
    pub oid: u64,
    /// The transaction that wrote the record, which names the blob file.
    pub tid: u64,
    /// Where the record starts.
    pub pos: u64,
    /// `None` for a blob pickle; for a record without data (undo), where
    /// the data it stands for is, to be followed and checked.
    pub back_pointer: Option<u64>,
}

/// A complete transaction, as `--transactions` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnInfo {
    /// Where its header starts in the Data.fs.
    pub pos: u64,
    /// Its transaction id, which is also its commit time.
    pub tid: u64,
    /// `' '`, `'p'` (packed) or `'u'` (undone: not read further).
    pub status: u8,
    /// Bytes of the record, its trailer included: the Data.fs is
    /// `pos + size` long right after its commit.
    pub size: u64,
    /// The user ZODB recorded (`transaction.setUser`).
    pub user: Vec<u8>,
    /// The description (`transaction.note`).
    pub description: Vec<u8>,
    /// How many data records it holds (0 for an undone one).
    pub records: u64,
}

/// The transactions being noted: those complete, and the one under way.
#[derive(Debug, Default)]
struct TxnNotes {
    found: Vec<TxnInfo>,
    /// User and description of the current transaction.
    meta: Vec<u8>,
    records: u64,
}

/// The first bytes of the data record being skipped, kept to tell a blob.
#[derive(Debug, Default)]
struct BlobScan {
    found: Vec<BlobRecord>,
    /// The record whose head is being kept, and how many bytes it needs.
    current: Option<(DataHeader, u64, usize)>,
    head: Vec<u8>,
}

impl BlobScan {
    fn start(&mut self, h: DataHeader, pos: u64) {
        let want = if h.plen == 0 {
            buf::BACK_POINTER
        } else {
            crate::at_most(h.plen, blob::HEAD)
        };
        self.head.clear();
        self.current = Some((h, pos, want));
    }

    fn take(&mut self, body: &[u8]) {
        let Some((_, _, want)) = self.current else {
            return;
        };
        let n = (want - self.head.len()).min(body.len());
        self.head.extend_from_slice(&body[..n]);
        if self.head.len() == want {
            self.decide();
        }
    }

    fn decide(&mut self) {
        let Some((h, pos, _)) = self.current.take() else {
            return;
        };
        let back_pointer = if h.plen == 0 {
            match <[u8; 8]>::try_from(&self.head[..]) {
                // An undone creation: no object, no blob.
                Ok(b) if u64::from_be_bytes(b) != 0 => Some(u64::from_be_bytes(b)),
                _ => return,
            }
        } else if blob::is_blob(&self.head) {
            None
        } else {
            return;
        };
        self.found.push(BlobRecord {
            oid: h.oid,
            tid: h.tid,
            pos,
            back_pointer,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Magic,
    TxnHeader,
    /// Skipping user, description, extension.
    TxnMeta,
    DataHeader,
    /// Skipping a pickle or a back pointer.
    DataBody,
    /// Skipping an undone transaction's body.
    Undone,
    Trailer,
    Done,
}

/// Walks a FileStorage fed in chunks; see the module documentation.
pub struct Walker {
    file_size: u64,
    last_trailer: Option<u64>,
    state: State,
    /// Absolute position of the next byte to be fed.
    pos: u64,
    /// Bytes collected for a header that straddles chunks.
    buf: Vec<u8>,
    /// Bytes still to skip in a skipping state.
    skip: u64,
    magic: Option<Magic>,
    txn_pos: u64,
    txn: Option<TxnHeader>,
    end: Option<u64>,
    index: Index,
    transactions: u64,
    records: u64,
    blobs: Option<BlobScan>,
    notes: Option<TxnNotes>,
    indexing: bool,
}

impl Walker {
    /// A walker for a file of `file_size` bytes, starting at offset 0.
    ///
    /// `last_trailer` is the file's last 8 bytes read as a number, which
    /// ZODB consults to tell a torn tail from damage in the middle; pass
    /// `None` if the file is shorter than 8 bytes.
    pub fn new(file_size: u64, last_trailer: Option<u64>) -> Walker {
        Walker {
            file_size,
            last_trailer,
            state: State::Magic,
            pos: 0,
            buf: Vec::with_capacity(buf::DATA_HDR),
            skip: 0,
            magic: None,
            txn_pos: 0,
            txn: None,
            end: None,
            index: Index::new(),
            transactions: 0,
            records: 0,
            blobs: None,
            notes: None,
            indexing: true,
        }
    }

    /// Also note every complete transaction walked, to be taken with
    /// [`Walker::take_transactions`].
    pub fn note_transactions(&mut self) {
        self.notes = Some(TxnNotes::default());
    }

    /// Build no index: a walk that only lists transactions.
    pub fn without_index(&mut self) {
        self.indexing = false;
    }

    /// The transactions completed since the last call (with
    /// [`Walker::note_transactions`]).
    pub fn take_transactions(&mut self) -> Vec<TxnInfo> {
        self.notes
            .as_mut()
            .map(|n| std::mem::take(&mut n.found))
            .unwrap_or_default()
    }

    /// How many of the next bytes the walk does not need to see: the rest
    /// of a data record's body (unless blobs are looked for) or of an
    /// undone transaction. A reader that can seek passes over them with
    /// [`Walker::skip_bytes`].
    pub fn skippable(&self) -> u64 {
        match self.state {
            State::DataBody if self.blobs.is_none() => self.skip,
            State::Undone => self.skip,
            _ => 0,
        }
    }

    /// Pass over `n` bytes, at most [`Walker::skippable`], unread.
    ///
    /// # Errors
    /// As [`Walker::feed`].
    pub fn skip_bytes(&mut self, n: u64) -> Result<(), FormatError> {
        let n = n.min(self.skippable());
        if n == 0 {
            return Ok(());
        }
        self.skip -= n;
        self.pos += n;
        if self.skip == 0 {
            self.after_skip()?;
        }
        Ok(())
    }

    /// Also note every blob record walked (see [`WalkResult::blobs`]).
    pub fn find_blobs(&mut self) {
        self.blobs = Some(BlobScan::default());
    }

    /// Continue after a known-good prefix: `index` describes the file up to
    /// `start`, which must be the end of a complete transaction.
    pub(crate) fn resume(
        file_size: u64,
        last_trailer: Option<u64>,
        magic: Magic,
        start: u64,
        index: Index,
    ) -> Walker {
        let mut w = Walker::new(file_size, last_trailer);
        w.magic = Some(magic);
        w.pos = start;
        w.index = index;
        w.enter_txn_header();
        w
    }

    /// The index of the transactions walked so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The blob records found so far (with [`Walker::find_blobs`]).
    pub fn blobs_found(&self) -> &[BlobRecord] {
        self.blobs.as_ref().map_or(&[], |s| &s.found)
    }

    /// Position of the next byte the walker expects.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The end of the backup, once it is known.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// All bytes before this position are certainly part of the backup:
    /// they belong to the magic or to transactions found complete.
    ///
    /// A caller that copies while walking emits bytes up to
    /// `min(committed(), position())`.
    pub fn committed(&self) -> u64 {
        match self.state {
            State::Done => self.end.unwrap_or(self.txn_pos),
            State::Magic => 0,
            State::TxnHeader => self.txn_pos,
            _ => match self.txn {
                Some(h) => self.txn_pos + h.tlen + TRAILER_LEN,
                None => self.txn_pos,
            },
        }
    }

    /// Whether the bytes fed so far end where a transaction may start:
    /// after the magic or a complete transaction.
    pub fn at_boundary(&self) -> bool {
        self.state == State::TxnHeader && self.buf.is_empty()
    }

    /// Whether the walk has found its end; further bytes are ignored.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed the next bytes of the file.
    ///
    /// # Errors
    /// A [`FormatError`] naming the offset of the damage.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), FormatError> {
        while !data.is_empty() {
            match self.state {
                State::Done => return Ok(()),
                State::TxnMeta | State::DataBody | State::Undone => {
                    let n = crate::at_most(self.skip, data.len());
                    if let (State::DataBody, Some(scan)) = (self.state, &mut self.blobs) {
                        scan.take(&data[..n]);
                    }
                    if let (State::TxnMeta, Some(notes), Some(h)) =
                        (self.state, &mut self.notes, self.txn)
                    {
                        let want = usize::from(h.ulen) + usize::from(h.dlen);
                        let more = want.saturating_sub(notes.meta.len()).min(n);
                        notes.meta.extend_from_slice(&data[..more]);
                    }
                    self.skip -= n as u64;
                    self.pos += n as u64;
                    data = &data[n..];
                    if self.skip == 0 {
                        self.after_skip()?;
                    }
                }
                State::Magic | State::TxnHeader | State::DataHeader | State::Trailer => {
                    let need = self.need();
                    let mut hdr = [0u8; buf::DATA_HDR];
                    let got = if self.buf.is_empty() && data.len() >= need {
                        hdr[..need].copy_from_slice(&data[..need]);
                        data = &data[need..];
                        true
                    } else {
                        let n = (need - self.buf.len()).min(data.len());
                        self.buf.extend_from_slice(&data[..n]);
                        data = &data[n..];
                        if self.buf.len() == need {
                            hdr[..need].copy_from_slice(&self.buf);
                            self.buf.clear();
                            true
                        } else {
                            false
                        }
                    };
                    if got {
                        let start = self.pos;
                        self.pos += need as u64;
                        self.on_fixed(start, &hdr[..need])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Conclude the walk after the last byte was fed.
    ///
    /// # Errors
    /// [`FormatError::NotFileStorage`] for a file shorter than its magic,
    /// [`FormatError::UnexpectedEof`] if the bytes fed fell short of the
    /// file size given to [`Walker::new`].
    pub fn finish(self) -> Result<WalkResult, FormatError> {
        let end = match self.state {
            State::Done => self.end.unwrap_or(self.txn_pos),
            State::Magic => {
                return Err(FormatError::NotFileStorage {
                    found: self.buf.clone(),
                })
            }
            _ => {
                return Err(FormatError::UnexpectedEof {
                    offset: self.pos,
                    expected: self.committed().max(self.file_size),
                })
            }
        };
        Ok(WalkResult {
            magic: self.magic.unwrap_or(Magic::Fs30),
            end,
            index: self.index,
            transactions: self.transactions,
            records: self.records,
            // Records of a torn tail are no part of the backup.
            blobs: self
                .blobs
                .map(|s| s.found.into_iter().filter(|b| b.pos < end).collect())
                .unwrap_or_default(),
        })
    }

    fn need(&self) -> usize {
        match self.state {
            State::Magic => buf::MAGIC,
            State::TxnHeader => buf::TRANS_HDR,
            State::DataHeader => buf::DATA_HDR,
            _ => buf::TRAILER,
        }
    }

    fn finish_at(&mut self, end: u64) {
        self.end = Some(end);
        self.state = State::Done;
        self.txn = None;
    }

    /// At a transaction boundary: decide from the file size alone whether a
    /// header can follow, as `read_index` does with its short read.
    fn enter_txn_header(&mut self) {
        self.txn_pos = self.pos;
        self.txn = None;
        if self.file_size.saturating_sub(self.pos) < TRANS_HDR_LEN {
            self.finish_at(self.pos);
        } else {
            self.state = State::TxnHeader;
        }
    }

    fn on_fixed(&mut self, start: u64, b: &[u8]) -> Result<(), FormatError> {
        match self.state {
            State::Magic => {
                self.magic = Some(
                    Magic::from_bytes(b)
                        .ok_or_else(|| FormatError::NotFileStorage { found: b.to_vec() })?,
                );
                self.enter_txn_header();
            }
            State::TxnHeader => {
                let h = TxnHeader::parse(b.try_into().expect("23 bytes"));
                self.on_txn_header(start, h)?;
            }
            State::DataHeader => {
                let h = DataHeader::parse(b.try_into().expect("42 bytes"));
                self.on_data_header(start, h)?;
            }
            State::Trailer => {
                let trailer = BigEndian::read_u64(b);
                let h = self.txn.expect("trailer follows a header");
                if trailer != h.tlen {
                    return Err(FormatError::TxnLengthMismatch {
                        offset: self.txn_pos,
                        trailer_offset: start,
                        header: h.tlen,
                        trailer,
                    });
                }
                self.transactions += 1;
                if let Some(notes) = &mut self.notes {
                    let ulen = usize::from(h.ulen).min(notes.meta.len());
                    let (user, description) = notes.meta.split_at(ulen);
                    let info = TxnInfo {
                        pos: self.txn_pos,
                        tid: h.tid,
                        status: h.status,
                        size: h.tlen + TRAILER_LEN,
                        user: user.to_vec(),
                        description: description.to_vec(),
                        records: notes.records,
                    };
                    notes.found.push(info);
                    notes.meta.clear();
                    notes.records = 0;
                }
                self.enter_txn_header();
            }
            _ => unreachable!("skipping states read no fixed fields"),
        }
        Ok(())
    }

    fn on_txn_header(&mut self, tpos: u64, h: TxnHeader) -> Result<(), FormatError> {
        // A transaction that runs past the end, or a checkpoint left by a
        // commit in progress, is a torn tail: the backup ends before it.
        let past_end = tpos
            .checked_add(h.tlen)
            .and_then(|e| e.checked_add(TRAILER_LEN))
            .is_none_or(|e| e > self.file_size);
        if past_end || h.status == b'c' {
            self.finish_at(tpos);
            return Ok(());
        }
        if h.tlen < h.header_len() {
            // ZODB looks at the file's last trailer: if it could not describe
            // a transaction, the junk is at the end and is left out.
            let plausible = self.last_trailer.is_some_and(|rtl| {
                rtl >= TRANS_HDR_LEN && self.file_size.checked_sub(rtl).is_some_and(|d| d >= tpos)
            });
            if !plausible {
                self.finish_at(tpos);
                return Ok(());
            }
            return Err(FormatError::InvalidTxnHeader {
                offset: tpos,
                tlen: h.tlen,
                header_len: h.header_len(),
            });
        }
        self.txn = Some(h);
        if h.status == b'u' {
            self.state = State::Undone;
            self.skip = h.tlen - TRANS_HDR_LEN;
        } else {
            self.state = State::TxnMeta;
            self.skip = h.header_len() - TRANS_HDR_LEN;
        }
        if self.skip == 0 {
            self.after_skip()?;
        }
        Ok(())
    }

    fn on_data_header(&mut self, pos: u64, h: DataHeader) -> Result<(), FormatError> {
        let txn = self.txn.expect("data records are inside a transaction");
        let txn_end = self.txn_pos + txn.tlen;
        let record_end = pos.saturating_add(h.record_len());
        if record_end > txn_end {
            return Err(FormatError::DataExceedsTxn {
                offset: pos,
                record_end,
                txn_end,
            });
        }
        if h.tloc != self.txn_pos {
            return Err(FormatError::DataTxnPointer {
                offset: pos,
                found: h.tloc,
                expected: self.txn_pos,
            });
        }
        if h.vlen != 0 {
            return Err(FormatError::VersionRecord {
                offset: pos,
                vlen: h.vlen,
            });
        }
        if self.indexing {
            self.index.insert(h.oid, pos);
        }
        self.records += 1;
        if let Some(notes) = &mut self.notes {
            notes.records += 1;
        }
        if let Some(scan) = &mut self.blobs {
            scan.start(h, pos);
        }
        self.state = State::DataBody;
        self.skip = h.record_len() - DATA_HDR_LEN;
        Ok(())
    }

    /// A skip finished: go on to what follows it.
    fn after_skip(&mut self) -> Result<(), FormatError> {
        let txn = self.txn.expect("skips happen inside a transaction");
        let txn_end = self.txn_pos + txn.tlen;
        match self.state {
            State::Undone => self.state = State::Trailer,
            State::TxnMeta | State::DataBody => {
                let left = txn_end - self.pos;
                if left == 0 {
                    self.state = State::Trailer;
                } else if left < DATA_HDR_LEN {
                    return Err(FormatError::DataExceedsTxn {
                        offset: self.pos,
                        record_end: self.pos + DATA_HDR_LEN,
                        txn_end,
                    });
                } else {
                    self.state = State::DataHeader;
                }
            }
            _ => unreachable!("only skipping states end a skip"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Builder;

    fn walk_chunked(bytes: &[u8], chunk: usize) -> Result<WalkResult, FormatError> {
        let last = (bytes.len() >= 8).then(|| BigEndian::read_u64(&bytes[bytes.len() - 8..]));
        let mut w = Walker::new(bytes.len() as u64, last);
        for c in bytes.chunks(chunk.max(1)) {
            w.feed(c)?;
        }
        w.finish()
    }

    #[test]
    fn walks_records_and_indexes_newest_position() {
        let mut b = Builder::new();
        b.txn(b' ', &[(0, 10), (1, 20)]);
        let t2 = b.txn(b' ', &[(1, 5)]);
        b.txn(b'p', &[(7, 0)]);
        for chunk in [1, 3, 7, 23, 4096] {
            let r = walk_chunked(&b.bytes, chunk).unwrap();
            assert_eq!(r.end, b.bytes.len() as u64);
            assert_eq!(r.transactions, 3);
            assert_eq!(r.records, 4);
            assert_eq!(r.index.len(), 3);
            assert_eq!(r.index.get(1), Some(t2 + 23 + 9));
            assert_eq!(r.magic, Magic::Fs30);
        }
    }

    /// Noted transactions are the same fed byte by byte, in chunks, or
    /// with the bodies passed over unread, and the index is left empty
    /// when not wanted.
    #[test]
    fn transactions_are_noted_with_bodies_skipped() {
        let mut b = Builder::new();
        let t1 = b.append(
            &crate::testing::Txn {
                tid_step: 5,
                status: b' ',
                meta: [b"alice", b"add \"x\"\n", b"ext"],
                records: &[(0, 10), (1, 5000)],
            },
            |_, buf| buf.fill(7),
        );
        b.txn(b'u', &[(2, 10)]);
        let t3 = b.append(
            &crate::testing::Txn {
                tid_step: 1,
                status: b'p',
                meta: [b"", b"", b""],
                records: &[(1, 0)],
            },
            |_, _| {},
        );
        let want = |w: &mut Walker| {
            let got = w.take_transactions();
            assert_eq!(got.len(), 3);
            assert_eq!(got[0].pos, t1.pos);
            assert_eq!(got[0].size, t1.trailer + 8 - t1.pos);
            assert_eq!(
                (&got[0].user[..], &got[0].description[..]),
                (&b"alice"[..], &b"add \"x\"\n"[..])
            );
            assert_eq!(got[0].records, 2);
            assert_eq!((got[1].status, got[1].records), (b'u', 0));
            assert_eq!(
                (got[2].status, got[2].records, got[2].pos),
                (b'p', 1, t3.pos)
            );
            assert_eq!(got[2].tid, got[0].tid + 2);
            assert!(got[2].user.is_empty());
        };
        let size = b.bytes.len() as u64;
        for chunk in [1, 9, 64, 1 << 20] {
            let mut w = Walker::new(size, None);
            w.note_transactions();
            w.without_index();
            for c in b.bytes.chunks(chunk) {
                w.feed(c).unwrap();
            }
            want(&mut w);
            assert!(w.finish().unwrap().index.is_empty());
        }
        // Fed 16 bytes at a time, passing over whatever may be skipped.
        let mut w = Walker::new(size, None);
        w.note_transactions();
        let (mut read, mut passed) = (0u64, 0u64);
        while read < size {
            let s = w.skippable();
            w.skip_bytes(s).unwrap();
            read += s;
            passed += s;
            let end = (read + 16).min(size);
            w.feed(&b.bytes[read as usize..end as usize]).unwrap();
            read = end;
        }
        // Most of the 5000-byte pickle was never read.
        assert!(passed > 4900, "{passed}");
        want(&mut w);
        assert_eq!(w.finish().unwrap().end, size);
    }

    #[test]
    fn undone_transactions_are_not_indexed() {
        let mut b = Builder::new();
        b.txn(b' ', &[(0, 10)]);
        b.txn(b'u', &[(5, 10)]);
        let r = walk_chunked(&b.bytes, 5).unwrap();
        assert_eq!(r.index.get(5), None);
        assert_eq!(r.end, b.bytes.len() as u64);
    }

    #[test]
    fn torn_tails_end_the_backup_before_them() {
        let mut b = Builder::new();
        b.txn(b' ', &[(0, 10)]);
        let good = b.bytes.len();
        b.txn(b' ', &[(1, 10)]);
        for cut in good + 1..b.bytes.len() {
            let r = walk_chunked(&b.bytes[..cut], 6).unwrap();
            assert_eq!(r.end, good as u64, "cut at {cut}");
            assert_eq!(r.index.get(1), None);
        }
        let mut c = b.bytes.clone();
        c[good + 16] = b'c';
        assert_eq!(walk_chunked(&c, 100).unwrap().end, good as u64);
    }

    #[test]
    fn committed_never_passes_an_undecided_header() {
        let mut b = Builder::new();
        b.txn(b' ', &[(0, 10)]);
        let good = b.bytes.len() as u64;
        b.txn(b'c', &[(1, 10)]);
        let mut w = Walker::new(b.bytes.len() as u64, None);
        for byte in &b.bytes {
            w.feed(std::slice::from_ref(byte)).unwrap();
            assert!(w.committed() <= good);
        }
        assert_eq!(w.finish().unwrap().end, good);
    }

    #[test]
    fn damage_in_the_middle_names_the_offset() {
        let mut b = Builder::new();
        let t1 = b.txn(b' ', &[(0, 10)]);
        b.txn(b' ', &[(1, 10)]);
        let t1_end = b.bytes.len() - (23 + 9 + 52 + 8);

        let mut bad = b.bytes.clone();
        bad[t1_end - 1] ^= 1;
        assert!(matches!(
            walk_chunked(&bad, 9),
            Err(FormatError::TxnLengthMismatch { offset, .. }) if offset == t1
        ));

        let mut bad = b.bytes.clone();
        let rec = (t1 + 23 + 9) as usize;
        bad[rec + 31] ^= 1;
        assert!(matches!(
            walk_chunked(&bad, 9),
            Err(FormatError::DataTxnPointer { offset, .. }) if offset == rec as u64
        ));

        let mut bad = b.bytes.clone();
        bad[rec + 41] = 200;
        assert!(matches!(
            walk_chunked(&bad, 9),
            Err(FormatError::DataExceedsTxn { offset, .. }) if offset == rec as u64
        ));
    }

    /// Fuzzer find: a too-short transaction length with a last trailer
    /// larger than the file overflowed `file_size - rtl`. ZODB reads it as a
    /// torn tail.
    #[test]
    fn regression_last_trailer_larger_than_the_file() {
        let mut f = MAGIC_FS30.to_vec();
        f.extend_from_slice(&[0; 16]);
        f.push(b' ');
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[0xff; 8]);
        let r = walk_chunked(&f, 64).unwrap();
        assert_eq!(r.end, 4);
    }

    /// A data length of `u64::MAX` overflowed `DATA_HDR_LEN + plen`.
    #[test]
    fn regression_huge_data_length_is_damage_not_overflow() {
        let mut b = Builder::new();
        b.txn(b' ', &[(0, 10)]);
        let rec = 4 + 23 + 9;
        b.bytes[rec + 34..rec + 42].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            walk_chunked(&b.bytes, 7),
            Err(FormatError::DataExceedsTxn { offset, .. }) if offset == rec as u64
        ));
    }

    #[test]
    fn wrong_magic_and_short_files_are_not_filestorages() {
        assert!(matches!(
            walk_chunked(b"FS99xxxxxxxx", 4),
            Err(FormatError::NotFileStorage { .. })
        ));
        assert!(matches!(
            walk_chunked(b"FS", 4),
            Err(FormatError::NotFileStorage { .. })
        ));
        let mut fs21 = MAGIC_FS21.to_vec();
        fs21.extend_from_slice(&[0; 5]);
        let r = walk_chunked(&fs21, 2).unwrap();
        assert_eq!((r.magic, r.end), (Magic::Fs21, 4));
    }
}
