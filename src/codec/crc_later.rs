//! The CRC-32 of data in which some bytes are placeholders for bytes of a
//! 32 KiB window that is known only at the end.
//!
//! [`crate::codec::gzip_size`] inflates the second half of a gzip member before
//! the output preceding it (the window its back references copy from) is
//! known. Bytes copied from there are placeholders; the CRC-32 the trailer
//! holds is still computable, because CRC-32 is linear: for two messages of
//! the same length, `crc(a) ^ crc(b)` is the CRC without its initial and
//! final inversion (`lin`) of `a ^ b`. So the real CRC is the CRC of the
//! output with the placeholders in it, corrected by `lin` of a message that
//! is zero except where placeholders stand, and there holds the real byte
//! xor the placeholder. A byte `v` followed by `k` bytes contributes
//! `table[v] * x^(8k)` (arithmetic on polynomials modulo CRC-32's). Summed
//! per window position, what is kept while inflating is one polynomial per
//! position, 128 KiB in all, however many placeholders there are.
//!
//! The arithmetic is zlib's (crc32.c: `multmodp`, `x2nmodp`): polynomials
//! are 32 bits, bit-reflected, so `1` is `1 << 31`.

use std::sync::OnceLock;

/// CRC-32 (reflected) of IEEE 802.3, as gzip uses.
const POLY: u32 = 0xedb8_8320;
/// The polynomial `1`.
const ONE: u32 = 1 << 31;

/// Positions the deferred bytes can stand for.
pub(crate) const WINDOW: usize = 32 << 10;
/// Longest run of output handed to [`Deferred::add_run`] at once.
pub(crate) const MAX_RUN: usize = 64 << 10;

struct Tables {
    /// `lin` of each single byte.
    byte: [u32; 256],
    /// `x^(2^k)`.
    x2k: [u32; 32],
    /// `x^(-8j)` for `j` in `0..=MAX_RUN`.
    back: Vec<u32>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut byte = [0u32; 256];
        for (v, e) in (0u32..).zip(byte.iter_mut()) {
            let mut c = v;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *e = c;
        }
        // Which byte's entry has this top byte (they all differ), to run a
        // zero byte backwards.
        let mut by_top = [0u8; 256];
        for (v, e) in (0u8..=255).zip(byte.iter()) {
            by_top[usize::from(e.to_be_bytes()[0])] = v;
        }
        let mut x2k = [0u32; 32];
        let mut p = ONE >> 1; // x^1
        for e in &mut x2k {
            *e = p;
            p = mul(p, p);
        }
        let mut back = Vec::with_capacity(MAX_RUN + 1);
        let mut c = ONE;
        for _ in 0..=MAX_RUN {
            back.push(c);
            // Undo one zero byte: (c >> 8) ^ byte[c & 0xff].
            let low = by_top[(c >> 24) as usize];
            c = ((c ^ byte[low as usize]) << 8) | u32::from(low);
        }
        Tables { byte, x2k, back }
    })
}

/// `a * b` modulo CRC-32's polynomial.
pub(crate) fn mul(a: u32, mut b: u32) -> u32 {
    let mut m = ONE;
    let mut p = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(8n)`: `n` zero bytes.
pub(crate) fn zeros(mut n: u64) -> u32 {
    let t = tables();
    let mut p = ONE;
    let mut k = 3;
    while n != 0 {
        if n & 1 != 0 {
            p = mul(t.x2k[k % 32], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The placeholders of a message being read from its start: where each
/// stands and for which window position.
pub(crate) struct Deferred {
    /// Per window position, the sum of `x^(-8i)` over the offsets `i` of
    /// its placeholders (so shifting by the message's length at the end
    /// gives each its `x^(8k)`).
    sums: Vec<u32>,
    /// The same, for the run being added, relative to its start.
    run: Vec<u32>,
    touched: Vec<u16>,
    /// `x^(-8s)` for the start `s` of the next run.
    at: u32,
    len: u64,
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred {
            sums: vec![0; WINDOW],
            run: vec![0; WINDOW],
            touched: Vec::new(),
            at: ONE,
            len: 0,
        }
    }
}

impl Deferred {
    /// Bytes of message so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The next `len` bytes (at most [`MAX_RUN`]), with placeholders at
    /// the given offsets into them, for the given window positions.
    pub(crate) fn add_run(
        &mut self,
        len: usize,
        placeholders: impl IntoIterator<Item = (usize, u16)>,
    ) {
        let t = tables();
        for (offset, pos) in placeholders {
            let r = &mut self.run[pos as usize % WINDOW];
            if *r == 0 {
                // Pushed again if it cancels out and comes back: harmless,
                // the second take finds 0.
                self.touched.push(pos);
            }
            *r ^= t.back[offset.min(MAX_RUN)];
        }
        for &pos in &self.touched {
            let r = std::mem::take(&mut self.run[pos as usize % WINDOW]);
            self.sums[pos as usize % WINDOW] ^= mul(self.at, r);
        }
        self.touched.clear();
        self.at = mul(self.at, t.back[len.min(MAX_RUN)]);
        self.len += len as u64;
    }

    /// `lin` of the difference between the real message and the one with
    /// placeholders: `window` holds the real bytes, `stand_in(pos)` the
    /// placeholder for window position `pos`. Xor it into the placeholder
    /// message's CRC to get the real one.
    pub(crate) fn correction(&self, window: &[u8], stand_in: impl Fn(usize) -> u8) -> u32 {
        if self.len == 0 {
            return 0;
        }
        let t = tables();
        let mut sum = 0;
        for (pos, &s) in self.sums.iter().enumerate() {
            if s != 0 {
                let diff = window.get(pos).copied().unwrap_or(0) ^ stand_in(pos);
                sum ^= mul(s, t.byte[diff as usize]);
            }
        }
        mul(zeros(self.len - 1), sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(data: &[u8]) -> u32 {
        crc32fast::hash(data)
    }

    #[test]
    fn zeros_shift_as_crc32_combine_does() {
        let a = b"the first part";
        let b = vec![7u8; 1000];
        let mut whole = a.to_vec();
        whole.extend_from_slice(&b);
        assert_eq!(mul(zeros(b.len() as u64), crc(a)) ^ crc(&b), crc(&whole));
    }

    #[test]
    fn running_a_zero_byte_backwards_undoes_it() {
        let t = tables();
        let distinct: std::collections::HashSet<u32> = t.byte.iter().map(|e| e >> 24).collect();
        assert_eq!(distinct.len(), 256);
        for j in [1usize, 2, 100, MAX_RUN] {
            assert_eq!(
                mul(t.back[j], zeros(j as u64)),
                ONE,
                "x^-8j * x^8j for j = {j}"
            );
        }
    }

    /// The real CRC from the placeholder message and the correction, for
    /// messages cut into runs of several lengths.
    #[test]
    fn correction_gives_the_real_crc() {
        let window: Vec<u8> = (0..WINDOW).map(|i| (i * 7 + 3) as u8).collect();
        let stand_in = |pos: usize| (pos % 251) as u8;
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for total in [1usize, 5, 1000, 200_000] {
            let mut real = Vec::new();
            let mut placeholder_msg = Vec::new();
            let mut d = Deferred::default();
            while real.len() < total {
                let len = (next() % MAX_RUN + 1).min(total - real.len());
                let mut marks = Vec::new();
                for off in 0..len {
                    if next() % 3 == 0 {
                        let pos = next() % WINDOW;
                        marks.push((off, pos as u16));
                        real.push(window[pos]);
                        placeholder_msg.push(stand_in(pos));
                    } else {
                        let b = next() as u8;
                        real.push(b);
                        placeholder_msg.push(b);
                    }
                }
                d.add_run(len, marks);
            }
            assert_eq!(d.len(), total as u64);
            let fixed = crc(&placeholder_msg) ^ d.correction(&window, stand_in);
            assert_eq!(fixed, crc(&real), "{total} bytes");
        }
    }
}
