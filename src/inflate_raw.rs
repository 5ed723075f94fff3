//! A raw deflate decoder that can start at any bit of a stream, with a
//! dictionary standing in for the output before it, and that stops at the
//! end of each deflate block when asked: zlib's `inflatePrime`,
//! `inflateSetDictionary` and `Z_BLOCK`, which flate2 does not expose.
//! They come from libz-rs-sys, the C interface of the same zlib-rs that
//! flate2 uses here; this module holds all the unsafe code that needs, so
//! that [`crate::gzip_size`] is safe Rust.

use libz_rs_sys as z;

/// Why a [`RawInflate`] stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not deflate data (zlib's `Z_DATA_ERROR`).
    Data,
    /// zlib refused the call (out of memory, or a state it does not allow).
    Stream(i32),
}

/// What one [`RawInflate::inflate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes taken; some of their bits may still wait in the decoder
    /// ([`RawInflate::pending_bits`]).
    pub consumed: usize,
    pub produced: usize,
    /// The last block has ended.
    pub end: bool,
}

/// Where [`RawInflate::inflate`] may return before its input is used up or
/// its output is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Only there (zlib's `Z_NO_FLUSH`).
    Never,
    /// Also at the end of each deflate block (`Z_BLOCK`).
    BlockEnd,
    /// Also after each block's header, before its first symbol (`Z_TREES`).
    Header,
}

/// A raw deflate stream (no zlib or gzip wrapper) with a 32 KiB window.
pub struct RawInflate {
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
    pub fn reset(&mut self) -> Result<(), InflateError> {
        // SAFETY: the stream was initialised by new.
        check(unsafe { z::inflateReset(&mut *self.strm) })
    }

    /// Put the low `bits` bits of `value` (at most 16) before the input,
    /// to start in the middle of a byte.
    pub fn prime(&mut self, bits: u8, value: u16) -> Result<(), InflateError> {
        // SAFETY: as in reset.
        check(unsafe { z::inflatePrime(&mut *self.strm, i32::from(bits), i32::from(value)) })
    }

    /// Make `dict` (at most the last 32 KiB are used) the output that
    /// came before, for back references to copy from.
    pub fn set_dictionary(&mut self, dict: &[u8]) -> Result<(), InflateError> {
        let len = u32::try_from(dict.len()).map_err(|_| InflateError::Stream(z::Z_STREAM_ERROR))?;
        // SAFETY: as in reset; dict is valid for len bytes and zlib only
        // reads it.
        check(unsafe { z::inflateSetDictionary(&mut *self.strm, dict.as_ptr(), len) })
    }

    /// Inflate from `input` into `output`, stopping early as `stop` says.
    pub fn inflate(
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
    pub fn pending_bits(&self) -> u64 {
        (self.strm.data_type & 63) as u64
    }

    /// The last call stopped between two deflate blocks.
    pub fn at_block_end(&self) -> bool {
        self.strm.data_type & 128 != 0
    }

    /// The last call stopped after a block's header, before its symbols.
    pub fn after_header(&self) -> bool {
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
