//! FileStorage's `_check_sanity`: which data records a saved index must
//! point at for FileStorage to trust it, found by following the trailers
//! back from the index's position. No file of its own: the caller reads.

use crate::filestorage::index::Index;
use crate::filestorage::records::{buf, DataHeader, Magic, TxnHeader, MAGIC_LEN, TRAILER_LEN};

/// How many data records of the last transactions a saved index is checked
/// against, as FileStorage's `_check_sanity`.
const SANITY_RECORDS: usize = 5;
/// FileStorage ignores a saved index for a position below this.
const SANITY_MIN_POS: u64 = 100;

/// The `(oid, offset)` of the data records that FileStorage's sanity check
/// looks up in an index for position `pos`: the first ones of the last
/// transaction before `pos` that is neither undone nor empty. `None` when
/// the bytes before `pos` do not end in such a transaction, so that no
/// index can be sane there. `read(buf, at)` fills `buf` from `at` and says
/// whether the file had that many bytes.
///
/// # Errors
/// Those of `read`.
pub(crate) fn records_to_check<E>(
    pos: u64,
    mut read: impl FnMut(&mut [u8], u64) -> Result<bool, E>,
) -> Result<Option<Vec<(u64, u64)>>, E> {
    let mut magic = [0u8; buf::MAGIC];
    if pos < SANITY_MIN_POS || !read(&mut magic, 0)? || Magic::from_bytes(&magic).is_none() {
        return Ok(None);
    }
    let mut end = pos;
    loop {
        if end < MAGIC_LEN + TRAILER_LEN {
            return Ok(None);
        }
        let mut t = [0u8; buf::TRAILER];
        if !read(&mut t, end - TRAILER_LEN)? {
            return Ok(None);
        }
        let tlen = u64::from_be_bytes(t);
        let Some(tpos) = (end - TRAILER_LEN)
            .checked_sub(tlen)
            .filter(|&p| p >= MAGIC_LEN)
        else {
            return Ok(None);
        };
        let mut hb = [0u8; buf::TRANS_HDR];
        if !read(&mut hb, tpos)? {
            return Ok(None);
        }
        let h = TxnHeader::parse(&hb);
        if h.tlen != tlen {
            return Ok(None);
        }
        end = tpos;
        if h.status == b'u' {
            continue;
        }
        if (h.status != b' ' && h.status != b'p') || tlen < h.header_len() {
            return Ok(None);
        }
        let tend = tpos + tlen;
        let mut opos = tpos + h.header_len();
        if opos == tend {
            continue;
        }
        let mut records = Vec::with_capacity(SANITY_RECORDS);
        while opos < tend && records.len() < SANITY_RECORDS {
            let mut db = [0u8; buf::DATA_HDR];
            if !read(&mut db, opos)? {
                return Ok(None);
            }
            let d = DataHeader::parse(&db);
            let rend = opos.saturating_add(d.record_len());
            if rend > tend || d.tloc != tpos || d.vlen != 0 {
                return Ok(None);
            }
            records.push((d.oid, opos));
            opos = rend;
        }
        return Ok(Some(records));
    }
}

/// Whether `index` gives each of `records` (from [`records_to_check`]) its
/// offset: the lookup half of the sanity check.
pub(crate) fn points_at(index: &Index, records: &[(u64, u64)]) -> bool {
    records
        .iter()
        .all(|&(oid, offset)| index.get(oid) == Some(offset))
}
