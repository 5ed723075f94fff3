//! A raw deflate decoder that can start at any bit of a stream, with a
//! dictionary standing in for the output before it, and that stops at the
//! end of each deflate block when asked: zlib's `inflatePrime`,
//! `inflateSetDictionary` and `Z_BLOCK`, which flate2 does not expose.
//! They come from libz-rs-sys, the C interface of the same zlib-rs that
//! flate2 uses here; this module holds all the unsafe code that needs, so
//! that [`crate::codec::gzip_size`] is safe Rust.

use libz_rs_sys as z;

/// Why a [`RawInflate`] stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Not deflate data (zlib's `Z_DATA_ERROR`).
    Data,
    /// zlib refused the call (out of memory, or a state it does not allow).
    Stream(i32),
}

/// What one [`RawInflate::inflate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Input bytes taken; some of their bits may still wait in the decoder
    /// ([`RawInflate::pending_bits`]).
    pub(crate) consumed: usize,
    pub(crate) produced: usize,
    /// The last block has ended.
    pub(crate) end: bool,
}

/// Where [`RawInflate::inflate`] may return before its input is used up or
/// its output is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Only there (zlib's `Z_NO_FLUSH`).
    Never,
    /// Also at the end of each deflate block (`Z_BLOCK`).
    BlockEnd,
    /// Also after each block's header, before its first symbol (`Z_TREES`).
    Header,
}

/// A raw deflate stream (no zlib or gzip wrapper) with a 32 KiB window.
pub(crate) struct RawInflate {
    /// Boxed: zlib's state points back at the stream, which must not move.
    strm: Box<z::z_stream>,
}

// SAFETY: the stream owns its state and buffers; nothing in it is tied to
// the thread that made it.
unsafe impl Send for RawInflate {}

impl RawInflate {
    /// `None` if zlib cannot set one up (out of memory).
    pub fn new() -> Option<RawInflate> {
        // Default fills in Rust's allocator, as inflateInit2_ requires.
        let mut strm = Box::new(z::z_stream::default());
        let size = i32::try_from(std::mem::size_of::<z::z_stream>()).ok()?;
        // SAFETY: strm is a valid, boxed stream with its allocator set and
        // the version string is zlib's own.
        let ret = unsafe { z::inflateInit2_(&mut *strm, -15, z::zlibVersion(), size) };
        (ret == z::Z_OK).then_some(RawInflate { strm })
    }

    /// Start a new stream: no window, nothing pending, counters at 0.
    pub(crate) fn reset(&mut self) -> Result<(), InflateError> {
        // SAFETY: the stream was initialised by new.
        check(unsafe { z::inflateReset(&mut *self.strm) })
    }

    /// Put the low `bits` bits of `value` (at most 16) before the input,
    /// to start in the middle of a byte.
    pub(crate) fn prime(&mut self, bits: u8, value: u16) -> Result<(), InflateError> {
        // SAFETY: as in reset.
        check(unsafe { z::inflatePrime(&mut *self.strm, i32::from(bits), i32::from(value)) })
    }

    /// Make `dict` (at most the last 32 KiB are used) the output that
    /// came before, for back references to copy from.
    pub(crate) fn set_dictionary(&mut self, dict: &[u8]) -> Result<(), InflateError> {
        let len = u32::try_from(dict.len()).map_err(|_| InflateError::Stream(z::Z_STREAM_ERROR))?;
        // SAFETY: as in reset; dict is valid for len bytes and zlib only
        // reads it.
        check(unsafe { z::inflateSetDictionary(&mut *self.strm, dict.as_ptr(), len) })
    }

    /// Inflate from `input` into `output`, stopping early as `stop` says.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        stop: Stop,
    ) -> Result<Step, InflateError> {
        let avail_in = u32::try_from(input.len()).unwrap_or(u32::MAX);
        let avail_out = u32::try_from(output.len()).unwrap_or(u32::MAX);
        let s = &mut *self.strm;
        s.next_in = input.as_ptr();
        s.avail_in = avail_in;
        s.next_out = output.as_mut_ptr();
        s.avail_out = avail_out;
        let flush = match stop {
            Stop::Never => z::Z_NO_FLUSH,
            Stop::BlockEnd => z::Z_BLOCK,
            Stop::Header => z::Z_TREES,
        };
        // SAFETY: next_in/avail_in and next_out/avail_out describe the two
        // slices, which outlive the call; zlib writes only to output.
        let ret = unsafe { z::inflate(s, flush) };
        let step = Step {
            consumed: (avail_in - s.avail_in) as usize,
            produced: (avail_out - s.avail_out) as usize,
            end: ret == z::Z_STREAM_END,
        };
        // No pointers into the caller's slices stay behind.
        s.next_in = std::ptr::null();
        s.avail_in = 0;
        s.next_out = std::ptr::null_mut();
        s.avail_out = 0;
        match ret {
            z::Z_OK | z::Z_STREAM_END | z::Z_BUF_ERROR => Ok(step),
            z::Z_DATA_ERROR | z::Z_NEED_DICT => Err(InflateError::Data),
            other => Err(InflateError::Stream(other)),
        }
    }

    /// Bits taken from the input that are not decoded yet: the stream's
    /// next bit is this many bits before the end of what was consumed.
    pub(crate) fn pending_bits(&self) -> u64 {
        (self.strm.data_type & 63) as u64
    }

    /// The last call stopped between two deflate blocks.
    pub(crate) fn at_block_end(&self) -> bool {
        self.strm.data_type & 128 != 0
    }

    /// The last call stopped after a block's header, before its symbols.
    pub(crate) fn after_header(&self) -> bool {
        self.strm.data_type & 256 != 0
    }
}

impl Drop for RawInflate {
    fn drop(&mut self) {
        // SAFETY: initialised by new, ended once, here.
        unsafe { z::inflateEnd(&mut *self.strm) };
    }
}

fn check(ret: i32) -> Result<(), InflateError> {
    if ret == z::Z_OK {
        Ok(())
    } else {
        Err(InflateError::Stream(ret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::DeflateEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn text(len: usize) -> Vec<u8> {
        let mut seed = 7u64;
        (0..len)
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                if i % 40 < 30 {
                    b"persistent.mapping PersistentMapping "[i % 37]
                } else {
                    b'a' + (seed >> 60) as u8
                }
            })
            .collect()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::new(9));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Inflate `deflate` whole, stopping at block ends: the output and the
    /// bit and output offset of every block end.
    fn with_block_ends(deflate: &[u8]) -> (Vec<u8>, Vec<(u64, usize)>) {
        let mut z = RawInflate::new().unwrap();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut taken = 0;
        let mut buf = vec![0; 4096];
        loop {
            let step = z
                .inflate(&deflate[taken..], &mut buf, Stop::BlockEnd)
                .unwrap();
            taken += step.consumed;
            out.extend_from_slice(&buf[..step.produced]);
            if step.end {
                return (out, ends);
            }
            if z.at_block_end() {
                ends.push((taken as u64 * 8 - z.pending_bits(), out.len()));
            }
        }
    }

    /// From every block end, a decoder started at that bit with the
    /// output before it as its dictionary inflates exactly the rest: the
    /// bit positions are right, and prime and set_dictionary work.
    #[test]
    fn a_decoder_started_at_any_block_end_inflates_the_rest() {
        let data = text(600_000);
        let deflate = deflate(&data);
        let (out, ends) = with_block_ends(&deflate);
        assert_eq!(out, data);
        let blocks = ends
            .iter()
            .filter(|&&(_, at)| at > 0 && at < data.len())
            .count();
        assert!(blocks >= 3, "{blocks} block ends inside");
        let mut z = RawInflate::new().unwrap();
        // After the last block there is nothing left to start from.
        for &(bit, at) in ends.iter().filter(|&&(_, at)| at < data.len()) {
            z.reset().unwrap();
            let (byte, shift) = ((bit / 8) as usize, (bit % 8) as u8);
            let mut from = byte;
            if shift != 0 {
                z.prime(8 - shift, u16::from(deflate[byte] >> shift))
                    .unwrap();
                from += 1;
            }
            z.set_dictionary(&out[at.saturating_sub(32 << 10)..at])
                .unwrap();
            let mut rest = vec![0; data.len() - at + 1];
            let step = z.inflate(&deflate[from..], &mut rest, Stop::Never).unwrap();
            assert!(step.end, "from bit {bit}");
            assert_eq!(&rest[..step.produced], &data[at..], "from bit {bit}");
        }
    }

    #[test]
    fn a_header_stop_comes_before_any_output_and_garbage_is_an_error() {
        let data = text(100_000);
        let deflate = deflate(&data);
        let mut z = RawInflate::new().unwrap();
        let mut out = vec![0; 1 << 20];
        let step = z.inflate(&deflate, &mut out, Stop::Header).unwrap();
        assert_eq!(step.produced, 0);
        assert!(z.after_header() && !z.at_block_end());
        z.reset().unwrap();
        // BTYPE 3 is no block type.
        assert_eq!(
            z.inflate(&[0b110, 0, 0, 0], &mut out, Stop::Never),
            Err(InflateError::Data)
        );
    }
}
