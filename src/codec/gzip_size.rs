//! The inflated size of a one-member gzip file, found on two cores.
//!
//! `-V -Q` inflates a `.fsz` whole: that is how Python repozo learns its
//! size, and how it finds damage in it. Files we write are many members,
//! inflated on all cores ([`crate::codec::gzip`]); Python repozo writes one member,
//! which a plain decoder can only inflate from start to end on one core.
//!
//! Here a second thread starts two thirds of the way in. Deflate has no
//! markers, so it tries each bit from there until one reads as the header
//! of a compressed block (zlib checks its Huffman tables), then inflates
//! on. What it cannot know is the 32 KiB of output before that point, which
//! back references copy from; in FileStorage data, copies of copies of it
//! go on to the end (a class name copied from the last record, and so on).
//! So it inflates twice, with two stand-ins for that window that differ in
//! every byte and together name the position each byte was copied from:
//! where the outputs differ, the byte came from that position of the
//! window. `crate::codec::crc_later` keeps track of those and corrects the CRC
//! at the end. The first thread inflates from the start, stopping at every
//! block end near that point; if one ends exactly at the second thread's
//! bit, that was a real block start (a decoder's whole state at a block
//! start is the bit and the window), its last 32 KiB are the real window,
//! and the two CRC-32s combine into the one the trailer holds. Inflating
//! twice costs the second thread twice as much per byte, hence the split
//! at two thirds.
//!
//! Anything unexpected (no block found, a guess that was not a block start,
//! damage, a second member, trailing bytes, a CRC or length that does not
//! match) gives `None`, and the caller reads the file the usual way, which
//! gives the usual error. So the answer is either the sequential reader's
//! or none.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;

use crc32fast::Hasher;

use crate::codec::crc_later::{self, Deferred, WINDOW};
use crate::codec::inflate_raw::{RawInflate, Step, Stop};

/// Smaller files are not worth a second thread.
pub const MIN_SPLIT: u64 = 4 << 20;
/// Input read at a time.
use crate::CHUNK;
/// Output taken per call while inflating twice.
const PROBE: usize = crc_later::MAX_RUN;
/// Input bytes whose bits are tried as a block start. A deflate block is
/// at most about 100 KB of input (16 Ki symbols of at most 48 bits, or a
/// 64 KiB stored block), so this spans two or more.
const SCAN: u64 = 256 << 10;
/// Bytes enough for any block header (at most 17 + 19 * 3 + 316 * 7 bits).
const HEADER_MAX: usize = 320;
/// Output a guess must inflate to without error before the first thread
/// is told of it.
const TRIAL: u64 = 1 << 20;
/// Output all the guesses that came to nothing may inflate to. With
/// [`SCAN`], this bounds how long the first thread can wait for the second,
/// whatever the input (tens of milliseconds, beside seconds of inflating).
const SEARCH_BUDGET: u64 = 8 * TRIAL;
/// Where the second thread starts, as a fraction of the compressed bytes.
const SPLIT_NUM: u64 = 7;
const SPLIT_DEN: u64 = 10;

/// What [`inflated_size`] learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Bytes the file inflates to.
    pub size: u64,
    /// Both threads did part of it (false: the first did it all).
    pub split: bool,
}

/// The size `file` inflates to, if it is one sound gzip member and nothing
/// else, and at least `min` bytes long (smaller files are read on one core
/// anyway); `None` otherwise, and for files that are ours (many members,
/// which [`crate::codec::gzip::ParallelGunzip`] reads in parallel already).
pub fn inflated_size(file: &File, min: u64) -> Option<Inflated> {
    let len = file.metadata().ok()?.len();
    if len < min.max(64) {
        return None;
    }
    let mut head = vec![0; 64 << 10];
    let got = read_at_most(file, &mut head, 0)?;
    let body = header_len(&head[..got])? as u64;
    if crate::codec::gzip::is_ours(&head[..got]) || body + 8 > len {
        return None;
    }
    let split = body + (len - 8 - body) / SPLIT_DEN * SPLIT_NUM;
    let shared = Shared {
        verdict: Mutex::new(Verdict::Pending),
        published: Condvar::new(),
        give_up: AtomicBool::new(false),
    };
    let (first, second) = thread::scope(|scope| {
        let second = thread::Builder::new().spawn_scoped(scope, || {
            // Whatever happens there, the first thread must not wait on.
            let _failed_unless_found = FailOnDrop(&shared);
            second_part(file, split, &shared)
        });
        if second.is_err() {
            shared.publish(Verdict::Failed);
        }
        let first = first_part(file, body, split * 8, &shared);
        if !matches!(first, Some(First::Until { .. })) {
            shared.give_up.store(true, Ordering::Relaxed);
        }
        (first, second.ok().and_then(|h| h.join().ok().flatten()))
    });
    let (crc, size, end, split) = match (first?, second) {
        (First::Whole { crc, size, end }, _) => (crc, size, end, false),
        (
            First::Until {
                mut crc,
                size,
                window,
            },
            Some(rest),
        ) => {
            let fix = rest.deferred.correction(&window, stand_in_0);
            let rest_crc = rest.crc.finalize() ^ fix;
            crc.combine(&Hasher::new_with_initial_len(rest_crc, rest.size));
            (crc, size + rest.size, rest.end, true)
        }
        (First::Until { .. }, None) => return None,
    };
    let mut trailer = [0; 8];
    let sound = end + 8 == len
        && read_at_most(file, &mut trailer, end)? == 8
        && trailer[..4] == crc.finalize().to_le_bytes()
        // ISIZE is the size modulo 2^32: its low four bytes.
        && trailer[4..] == size.to_le_bytes()[..4];
    sound.then_some(Inflated { size, split })
}

/// The two stand-ins for the window: they differ at every position, and
/// the pair of bytes names the position (the low byte, and the high one
/// plus one added to it).
fn stand_in_0(pos: usize) -> u8 {
    pos.to_le_bytes()[0]
}

fn stand_in_1(pos: usize) -> u8 {
    let b = pos.to_le_bytes();
    b[0].wrapping_add(b[1]).wrapping_add(1)
}

/// The window position a differing pair of output bytes was copied from.
fn copied_from(b0: u8, b1: u8) -> Option<u16> {
    let high = b1.wrapping_sub(b0).wrapping_sub(1);
    (usize::from(high) < WINDOW >> 8).then_some(u16::from(high) << 8 | u16::from(b0))
}
/// Length of the gzip header at the start of `h`, if it is one (RFC 1952)
/// that needs nothing unusual.
fn header_len(h: &[u8]) -> Option<usize> {
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    const FHCRC: u8 = 2;
    if h.len() < 10 || h[..3] != [0x1f, 0x8b, 8] || h[3] & 0xe0 != 0 {
        return None;
    }
    let flags = h[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let xlen = u16::from_le_bytes([*h.get(at)?, *h.get(at + 1)?]) as usize;
        at += 2 + xlen;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            at += h.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        // Rare; the sequential reader checks it.
        return None;
    }
    (at <= h.len()).then_some(at)
}

/// `pread` until `buf` is full or the file ends; the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> Option<usize> {
    crate::read_full(buf, |b, done| file.read_at(b, at + done as u64)).ok()
}

/// What the second thread tells the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pending,
    /// A block seems to start at this bit.
    Found(u64),
    Failed,
}

struct Shared {
    verdict: Mutex<Verdict>,
    published: Condvar,
    /// The first thread no longer needs the second.
    give_up: AtomicBool,
}

impl Shared {
    /// Say `v` unless something was said already.
    fn publish(&self, v: Verdict) {
        let mut verdict = self.verdict.lock().unwrap_or_else(|e| e.into_inner());
        if *verdict == Verdict::Pending {
            *verdict = v;
            self.published.notify_all();
        }
    }

    fn wait(&self) -> Verdict {
        let mut verdict = self.verdict.lock().unwrap_or_else(|e| e.into_inner());
        while *verdict == Verdict::Pending {
            verdict = self
                .published
                .wait(verdict)
                .unwrap_or_else(|e| e.into_inner());
        }
        *verdict
    }
}

/// Publishes [`Verdict::Failed`] when dropped, if nothing was published.
struct FailOnDrop<'a>(&'a Shared);

impl Drop for FailOnDrop<'_> {
    fn drop(&mut self) {
        self.0.publish(Verdict::Failed);
    }
}

/// Input read from a file in chunks, for a decoder that takes what it needs.
struct Input<'f> {
    file: &'f File,
    /// File offset of `buf[0]`.
    at: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<'f> Input<'f> {
    fn new(file: &'f File, at: u64) -> Input<'f> {
        Input {
            file,
            at,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
        }
    }

    /// The bytes not yet taken; reads more when none are left. Empty at
    /// the end of the file (or on a read error, which the sequential
    /// reader will report).
    fn pending(&mut self) -> &[u8] {
        if self.start == self.end {
            self.at += self.end as u64;
            self.start = 0;
            self.end = read_at_most(self.file, &mut self.buf, self.at).unwrap_or(0);
        }
        &self.buf[self.start..self.end]
    }

    fn take(&mut self, n: usize) {
        self.start += n;
    }

    /// File offset of the next byte not taken.
    fn offset(&self) -> u64 {
        self.at + self.start as u64
    }
}

/// The file's bit that `z`, fed from `input`, decodes next (after the
/// last block: the padding before the trailer).
fn next_bit(input: &Input, z: &RawInflate) -> u64 {
    (input.offset() * 8).saturating_sub(z.pending_bits())
}

/// How far the first thread got.
enum First {
    /// To the end of the member, whose trailer is at `end`.
    Whole { crc: Hasher, size: u64, end: u64 },
    /// To the block start where the second thread began; `window` is the
    /// output's last 32 KiB.
    Until {
        crc: Hasher,
        size: u64,
        window: Vec<u8>,
    },
}

/// The last [`WINDOW`] bytes of output.
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, out: &[u8]) {
        if out.len() >= WINDOW {
            self.0.clear();
            self.0.extend_from_slice(&out[out.len() - WINDOW..]);
        } else {
            self.0.extend_from_slice(out);
            if self.0.len() > 4 * WINDOW {
                self.0.drain(..self.0.len() - WINDOW);
            }
        }
    }

    fn window(mut self) -> Option<Vec<u8>> {
        let n = self.0.len();
        (n >= WINDOW).then(|| self.0.split_off(n - WINDOW))
    }
}

/// Inflate from `body` (the first byte after the header), checking the
/// second thread's guess at the first block end at or after bit `split`.
/// It waits there for the guess; the second thread's search is bounded
/// ([`SCAN`], [`SEARCH_BUDGET`]), so the wait is too.
fn first_part(file: &File, body: u64, split: u64, shared: &Shared) -> Option<First> {
    let mut z = RawInflate::new()?;
    let mut input = Input::new(file, body);
    let mut out = vec![0; CHUNK];
    let mut crc = Hasher::new();
    let mut size = 0u64;
    let mut tail = Tail(Vec::with_capacity(5 * WINDOW));
    // Asked once, at the first block end from `split` on; then the bit to
    // check, until it is passed.
    let mut asked = false;
    let mut guess: Option<u64> = None;
    loop {
        // Up to the split, never past it, so that the first block end from
        // there on is seen; from there, stop at block ends while a guess
        // may still come true.
        let before_split = (split / 8).saturating_sub(8).saturating_sub(input.offset());
        let watching = !asked || guess.is_some();
        let stop = if before_split == 0 && watching {
            Stop::BlockEnd
        } else {
            Stop::Never
        };
        let pending = input.pending();
        let at_eof = pending.is_empty();
        let pending = match usize::try_from(before_split) {
            Ok(0) | Err(_) => pending,
            Ok(n) => &pending[..n.min(pending.len())],
        };
        let Step {
            consumed,
            produced,
            end,
        } = z.inflate(pending, &mut out, stop).ok()?;
        input.take(consumed);
        crc.update(&out[..produced]);
        if watching {
            tail.push(&out[..produced]);
        }
        size += produced as u64;
        if end {
            let end = next_bit(&input, &z).div_ceil(8);
            return Some(First::Whole { crc, size, end });
        }
        if consumed == 0 && produced == 0 && at_eof {
            return None; // truncated
        }
        if stop == Stop::BlockEnd && z.at_block_end() {
            let bit = next_bit(&input, &z);
            if !asked && bit >= split {
                asked = true;
                if let Verdict::Found(start) = shared.wait() {
                    guess = Some(start);
                }
            }
            if let Some(start) = guess {
                if bit == start {
                    let window = tail.window()?;
                    return Some(First::Until { crc, size, window });
                }
                if bit > start {
                    shared.give_up.store(true, Ordering::Relaxed);
                    guess = None;
                }
            }
        }
    }
}

/// What the second thread inflated, with placeholders for the window.
struct Rest {
    /// CRC-32 of the output with [`stand_in_0`]'s bytes as placeholders.
    crc: Hasher,
    deferred: Deferred,
    size: u64,
    /// File offset of the trailer.
    end: u64,
}

/// Find a block start from byte `split` on, publish it once it has
/// inflated [`TRIAL`] bytes, and inflate the rest of the member from it.
fn second_part(file: &File, split: u64, shared: &Shared) -> Option<Rest> {
    let mut scan = vec![0; usize::try_from(SCAN).ok()? + HEADER_MAX];
    let got = read_at_most(file, &mut scan, split)?;
    let scan = &scan[..got];
    let mut probe = RawInflate::new()?;
    let mut twins = [RawInflate::new()?, RawInflate::new()?];
    let stand_ins: [Vec<u8>; 2] = [
        (0..WINDOW).map(stand_in_0).collect(),
        (0..WINDOW).map(stand_in_1).collect(),
    ];
    let last_bit = 8 * (got.saturating_sub(HEADER_MAX) as u64);
    let mut budget = SEARCH_BUDGET;
    for bit in 0..last_bit {
        if shared.give_up.load(Ordering::Relaxed) {
            return None;
        }
        let at = (bit / 8) as usize;
        let shift = (bit % 8) as u8;
        if !may_start_dynamic_block(scan, bit) || !header_reads(&mut probe, scan, at, shift) {
            continue;
        }
        for (z, w) in twins.iter_mut().zip(&stand_ins) {
            start_at(z, scan, at, shift).ok()?;
            z.set_dictionary(w).ok()?;
        }
        let from = split + at as u64 + u64::from(shift != 0);
        match inflate_twice(&mut twins, file, from, 8 * split + bit, shared, &mut budget) {
            Twice::NotABlock => continue,
            Twice::Failed => return None,
            Twice::Done(rest) => return Some(rest),
        }
    }
    None
}

/// Whether the bits at `bit` could begin a compressed block with its own
/// Huffman tables: BTYPE 2, at most 286 literal/length and 30 distance
/// codes. The check zlib makes of the rest is dearer, so this skips most
/// bits cheaply.
fn may_start_dynamic_block(scan: &[u8], bit: u64) -> bool {
    let at = (bit / 8) as usize;
    let Some(b) = scan.get(at..at + 3) else {
        return false;
    };
    let bits = (u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16) >> (bit % 8);
    let hlit = (bits >> 3) & 31;
    let hdist = (bits >> 8) & 31;
    bits & 6 == 0b100 && hlit <= 29 && hdist <= 29
}

/// Prepare `z` to read the stream from bit `shift` of `scan[at]`.
fn start_at(
    z: &mut RawInflate,
    scan: &[u8],
    at: usize,
    shift: u8,
) -> Result<(), crate::codec::inflate_raw::InflateError> {
    z.reset()?;
    if shift != 0 {
        z.prime(8 - shift, u16::from(scan[at] >> shift))?;
    }
    Ok(())
}

/// Whether zlib reads a whole block header at that bit.
fn header_reads(z: &mut RawInflate, scan: &[u8], at: usize, shift: u8) -> bool {
    if start_at(z, scan, at, shift).is_err() {
        return false;
    }
    let from = at + usize::from(shift != 0);
    let Some(input) = scan.get(from..(from + HEADER_MAX).min(scan.len())) else {
        return false;
    };
    let mut none = [0; 1];
    matches!(z.inflate(input, &mut none, Stop::Header), Ok(s) if s.produced == 0 && !s.end)
        && z.after_header()
}

enum Twice {
    /// It broke before the first thread was told: not a block start.
    NotABlock,
    /// It broke later, the first thread gave up on it, or the search ran
    /// out of [`SEARCH_BUDGET`].
    Failed,
    Done(Rest),
}

/// Where `a` and `b` differ, the window position each byte was copied
/// from, into `copies`; false if a pair names no position.
fn find_copies(a: &[u8], b: &[u8], copies: &mut Vec<(usize, u16)>) -> bool {
    // Most of the output is equal: compare long stretches first, then
    // words, then bytes.
    const STRETCH: usize = 64;
    let n = a.len().min(b.len());
    let mut at = 0;
    while at < n {
        let end = (at + STRETCH).min(n);
        if a[at..end] != b[at..end] {
            for i in at..end {
                if a[i] != b[i] {
                    let Some(pos) = copied_from(a[i], b[i]) else {
                        return false;
                    };
                    copies.push((i, pos));
                }
            }
        }
        at = end;
    }
    true
}

/// Inflate both stand-ins side by side from file offset `from` (bit
/// `start` of the file) to the end of the member; output made before the
/// first thread is told counts against `budget`.
fn inflate_twice(
    twins: &mut [RawInflate; 2],
    file: &File,
    from: u64,
    start: u64,
    shared: &Shared,
    budget: &mut u64,
) -> Twice {
    let mut input = Input::new(file, from);
    let mut outs = [vec![0; PROBE], vec![0; PROBE]];
    let mut crc = Hasher::new();
    let mut deferred = Deferred::default();
    let mut copies = Vec::new();
    let mut told = false;
    let broke = |told| {
        if told {
            Twice::Failed
        } else {
            Twice::NotABlock
        }
    };
    loop {
        if shared.give_up.load(Ordering::Relaxed) {
            return Twice::Failed;
        }
        let pending = input.pending();
        let at_eof = pending.is_empty();
        let [z0, z1] = twins;
        let [o0, o1] = &mut outs;
        let (Ok(s0), Ok(s1)) = (
            z0.inflate(pending, o0, Stop::Never),
            z1.inflate(pending, o1, Stop::Never),
        ) else {
            return broke(told);
        };
        if s0 != s1 || (s0.consumed == 0 && s0.produced == 0 && at_eof) {
            return broke(told);
        }
        input.take(s0.consumed);
        let n = s0.produced;
        if !told {
            let Some(left) = budget.checked_sub(n as u64) else {
                return Twice::Failed;
            };
            *budget = left;
        }
        copies.clear();
        if !find_copies(&o0[..n], &o1[..n], &mut copies) {
            return broke(told);
        }
        crc.update(&o0[..n]);
        deferred.add_run(n, copies.iter().copied());
        if s0.end {
            let end = next_bit(&input, z0).div_ceil(8);
            if !told {
                shared.publish(Verdict::Found(start));
            }
            let size = deferred.len();
            return Twice::Done(Rest {
                crc,
                deferred,
                size,
                end,
            });
        }
        if !told && deferred.len() >= TRIAL {
            shared.publish(Verdict::Found(start));
            told = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use flate2::{Compression, GzBuilder};
    use std::io::{Read, Seek, Write};

    /// Text shaped like FileStorage records: the same class names and keys
    /// over and over (so copies of copies reach back a long way), with
    /// words and numbers that vary.
    fn records(len: usize) -> Vec<u8> {
        let mut seed = 42u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let words: Vec<String> = (0..400)
            .map(|i| {
                let n = 3 + i % 9;
                (0..n)
                    .map(|k| (b'a' + ((i * 7 + k * 13) % 26) as u8) as char)
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(len + 200);
        while out.len() < len {
            out.extend_from_slice(
                b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x01.}q\x02U\x04data}q\x03(",
            );
            for _ in 0..next() % 12 {
                out.extend_from_slice(words[next() % words.len()].as_bytes());
                out.push(b' ');
                out.extend_from_slice(format!("{}", next() % 100_000).as_bytes());
            }
            out.extend_from_slice(b"u.");
        }
        out.truncate(len);
        out
    }

    /// gzip as Python's gzip module writes it: one member, level 9, the
    /// file's name in the header.
    fn python_like(data: &[u8], level: u32) -> Vec<u8> {
        let mut z = GzBuilder::new()
            .filename("Data.fs")
            .write(Vec::new(), Compression::new(level));
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    fn in_file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn sequential(bytes: &[u8]) -> Option<u64> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out).ok()?;
        Some(out.len() as u64)
    }

    /// What [`inflated_size`] finds in `len` bytes of records gzip'd at
    /// `level`, with what it should find on `split`.
    fn check_records(len: usize, level: u32, split: bool) {
        let gz = python_like(&records(len), level);
        let want = Inflated {
            size: len as u64,
            split,
        };
        assert_eq!(inflated_size(&in_file(&gz), 0), Some(want), "level {level}");
    }

    #[test]
    fn a_python_like_file_is_inflated_on_two_threads() {
        check_records(3 << 20, 9, true);
    }

    #[test]
    fn the_window_is_copied_from_up_to_the_end() {
        // What makes the CRC correction necessary: output derived from the
        // window before the split never stops in such data.
        let data = records(3 << 20);
        let gz = python_like(&data, 9);
        let split = 10 + 8 + (gz.len() as u64 - 8 - 18) / SPLIT_DEN * SPLIT_NUM;
        let file = in_file(&gz);
        let shared = Shared {
            verdict: Mutex::new(Verdict::Pending),
            published: Condvar::new(),
            give_up: AtomicBool::new(false),
        };
        let rest = second_part(&file, split, &shared).expect("a block start found");
        assert!(rest.deferred.correction(&[0; WINDOW], stand_in_0) != 0);
        assert!(matches!(*shared.verdict.lock().unwrap(), Verdict::Found(_)));
    }

    #[test]
    fn small_files_and_ours_are_left_alone() {
        let data = records(1 << 20);
        let gz = python_like(&data, 6);
        assert_eq!(inflated_size(&in_file(&gz), gz.len() as u64 + 1), None);
        let mut ours = crate::codec::gzip::ParallelGzip::new(Vec::new(), 5);
        ours.write_all(&data).unwrap();
        let ours = ours.finish().unwrap();
        assert_eq!(inflated_size(&in_file(&ours), 0), None);
    }

    #[test]
    fn without_compressed_blocks_the_first_thread_does_it_all() {
        check_records(1 << 20, 0, false);
    }

    /// The last half is random bytes, which zlib stores as they are: the
    /// second thread searches random bits for a block start, finds none
    /// that lasts, and the first does it all.
    #[test]
    fn no_block_start_in_the_second_part_leaves_it_to_the_first() {
        let mut data = records(1 << 20);
        let mut seed = 9u64;
        data.extend((0..1 << 20).map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        }));
        let gz = python_like(&data, 9);
        let want = Inflated {
            size: data.len() as u64,
            split: false,
        };
        assert_eq!(inflated_size(&in_file(&gz), 0), Some(want));
    }

    /// Damage anywhere: whenever we answer, a sequential reader reads the
    /// file to the same size; whenever it fails, we do not answer.
    #[test]
    fn damage_gives_no_answer_or_the_sequential_one() {
        let data = records(1 << 20);
        let gz = python_like(&data, 9);
        let n = gz.len();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        let split = 18 + (n - 26) / SPLIT_DEN as usize * SPLIT_NUM as usize;
        let mut spots: Vec<usize> = (0..40).map(|k| k * n / 40).collect();
        spots.extend([
            3,
            9,
            12,
            split - 1,
            split,
            split + 1,
            split + 200,
            n - 9,
            n - 8,
            n - 5,
            n - 1,
        ]);
        for at in spots {
            for bit in [0u8, 5] {
                let mut g = gz.clone();
                g[at] ^= 1 << bit;
                cases.push((format!("bit {bit} of byte {at} flipped"), g));
            }
        }
        for cut in [n / 2, split + 10, n - 20, n - 8, n - 1] {
            cases.push((format!("cut at {cut}"), gz[..cut].to_vec()));
        }
        let mut trailing = gz.clone();
        trailing.push(0);
        cases.push(("a trailing zero".into(), trailing));
        let mut two = gz.clone();
        two.extend_from_slice(&python_like(b"more", 9));
        cases.push(("a second member".into(), two));
        let mut answered = 0;
        for (what, g) in &cases {
            let ours = inflated_size(&in_file(g), 0);
            let theirs = sequential(g);
            if let Some(found) = ours {
                answered += 1;
                assert_eq!(Some(found.size), theirs, "{what}");
            }
            if theirs.is_none() {
                assert_eq!(ours, None, "{what}");
            }
        }
        // Flips in MTIME or in the name are no damage to any reader.
        assert!(answered < cases.len() / 4, "{answered} of {}", cases.len());
    }

    /// Zero padding after the member (tape, some copy tools) is no
    /// damage to Python's reader or ours, but this one does not know it:
    /// it must leave such a file to the reader rather than say a size.
    #[test]
    fn zero_padding_is_left_to_the_reader() {
        let data = records(1 << 20);
        let gz = python_like(&data, 9);
        assert!(inflated_size(&in_file(&gz), 0).is_some());
        for n in [1, 8, 9, 5000] {
            let padded = [&gz[..], &vec![0; n]].concat();
            assert_eq!(inflated_size(&in_file(&padded), 0), None, "{n} zeros");
            let mut file = in_file(&padded);
            file.rewind().unwrap();
            let mut back = Vec::new();
            crate::codec::gzip::ParallelGunzip::new(file)
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "{n} zeros");
        }
    }

    #[test]
    fn header_lengths() {
        let plain = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(header_len(&plain), Some(10));
        let mut named = plain.to_vec();
        named[3] = 8;
        named.extend_from_slice(b"Data.fs\0");
        assert_eq!(header_len(&named), Some(18));
        let mut extra = plain.to_vec();
        extra[3] = 4 | 16;
        extra.extend_from_slice(&[2, 0, 9, 9]);
        extra.extend_from_slice(b"a comment\0");
        assert_eq!(header_len(&extra), Some(24));
        let mut crc = plain.to_vec();
        crc[3] = 2;
        assert_eq!(header_len(&crc), None);
        assert_eq!(header_len(&named[..15]), None, "name not ended");
        assert_eq!(header_len(&plain[..9]), None);
        assert_eq!(header_len(&[0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 0]), None);
    }
}
