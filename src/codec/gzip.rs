//! gzip on all cores, both ways.
//!
//! `.fsz` and `.deltafsz` files are gzip files that Python's gzip module
//! reads. We write them as a series of members, one per 1 MiB of input,
//! each compressed on its own by a pool of threads (`ParallelGzip`); a
//! file of several members is one gzip stream to every reader. Each member
//! says its own length in the header's extra field (subfield `Rz`, 4 bytes,
//! little endian: the whole member, header and trailer included), which
//! readers that do not know it skip, as RFC 1952 asks. With it,
//! [`ParallelGunzip`] finds the next member without inflating this one and
//! inflates several at once. Files without it (Python repozo's, or a member
//! whose length is wrong, or one that inflates to more than our writer puts
//! in a member) are read one member after the other, as before, from the
//! first member that cannot be taken whole. Zero bytes after a member are
//! padding, as for Python's gzip module and `gzip -t`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::thread;

use flate2::{Compression, GzBuilder};

use crate::pool::{stopped, Pool};
use crate::read_full;

/// gzip level for `.fsz`/`.deltafsz` files. Measured on generated
/// FileStorage data (docs/benchmarks.md): level 5 compresses within 2% of
/// Python repozo's level 9 and is faster here than level 6.
pub(crate) const GZIP_LEVEL: u32 = 5;

/// Input bytes per gzip member.
const GZIP_BLOCK: usize = 1 << 20;

/// The header we write: magic, deflate, FEXTRA, no time, no extra flags,
/// unknown OS, 8 bytes of extra field holding subfield `Rz` of 4 bytes.
const HEADER_LEN: usize = 20;
const FEXTRA: u8 = 4;
const SUBFIELD: [u8; 4] = [b'R', b'z', 4, 0];
/// Where the member's length sits in its header.
const LEN_AT: usize = 16;
/// Header, an empty deflate block, trailer: no member of ours is shorter.
const MIN_MEMBER: usize = HEADER_LEN + 2 + 8;
/// No member of ours is longer: incompressible input grows by a few bytes
/// per 16 KiB stored block, far below this.
const MAX_MEMBER: usize = 2 * GZIP_BLOCK;

fn threads() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

/// The member length our header announces, if `h` is such a header.
fn member_len(h: &[u8]) -> Option<usize> {
    let ours = h.len() >= HEADER_LEN
        && h[..4] == [0x1f, 0x8b, 8, FEXTRA]
        && h[10..12] == [8, 0]
        && h[12..16] == SUBFIELD;
    if !ours {
        return None;
    }
    let len = u32::from_le_bytes(h[LEN_AT..LEN_AT + 4].try_into().expect("4 bytes")) as usize;
    (MIN_MEMBER..=MAX_MEMBER).contains(&len).then_some(len)
}

/// Whether `h` starts with a member header of ours.
pub(crate) fn is_ours(h: &[u8]) -> bool {
    member_len(h).is_some()
}

/// One complete member of ours holding `input`, written into `out`
/// (emptied first, so that a buffer can be used again).
fn compress_member(input: &[u8], mut out: Vec<u8>, level: u32) -> io::Result<Vec<u8>> {
    out.clear();
    let mut placeholder = SUBFIELD.to_vec();
    placeholder.extend_from_slice(&[0; 4]);
    let mut enc = GzBuilder::new()
        .extra(placeholder)
        .write(out, Compression::new(level));
    enc.write_all(input)?;
    let mut member = enc.finish()?;
    let len = u32::try_from(member.len()).map_err(|_| io::Error::other("gzip member too long"))?;
    member[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
    debug_assert_eq!(member_len(&member), Some(member.len()));
    Ok(member)
}

/// Inflate `member` whole into `out` (emptied first); false if it is not
/// exactly one sound gzip member of at most [`GZIP_BLOCK`] bytes inflated
/// (then the sequential reader reads it, and says what is wrong).
///
/// `out` never grows past the member's ISIZE, nor past [`GZIP_BLOCK`]:
/// our writer puts no more in a member, and a crafted member that
/// inflates to gigabytes, several in flight, would otherwise take as many
/// gigabytes of memory. The sequential reader streams such a member.
fn inflate_member(member: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(isize) = member
        .last_chunk::<4>()
        .map(|t| u32::from_le_bytes(*t) as usize)
    else {
        return false;
    };
    if isize > GZIP_BLOCK {
        return false;
    }
    out.reserve_exact(isize);
    let mut dec = flate2::bufread::GzDecoder::new(member);
    // A member that inflates to more than its ISIZE is damaged; the read
    // of one byte more finds it, or reaches the trailer and checks it.
    if (&mut dec).take(isize as u64).read_to_end(out).is_err() {
        return false;
    }
    matches!(dec.read(&mut [0]), Ok(0)) && dec.into_inner().is_empty()
}

/// A block to compress and the buffer to compress it into; both come back.
type GzipJob = (Vec<u8>, Vec<u8>);
type GzipDone = (Vec<u8>, io::Result<Vec<u8>>);

/// gzip on all cores: the input is cut into blocks, each compressed into a
/// complete member by a pool of threads, and the members are written in
/// order. The cost in size is a few bytes per member and the dictionary
/// starting afresh every 1 MiB. Buffers go round rather than being
/// allocated per block, which keeps the allocator from holding on to
/// megabytes per thread.
pub(crate) struct ParallelGzip<W: Write> {
    /// Taken by `finish`.
    out: Option<W>,
    block: Vec<u8>,
    pool: Pool<GzipJob, GzipDone>,
    in_flight: VecDeque<Receiver<GzipDone>>,
    max_in_flight: usize,
    members: u64,
    spare_blocks: Vec<Vec<u8>>,
    spare_members: Vec<Vec<u8>>,
}

impl<W: Write> ParallelGzip<W> {
    /// Compress at `level` into `out`, with one thread per core.
    pub fn new(out: W, level: u32) -> ParallelGzip<W> {
        ParallelGzip::with_threads(out, level, threads())
    }

    /// Compress at `level` into `out` on `n` threads (at least one).
    pub(crate) fn with_threads(out: W, level: u32, n: usize) -> ParallelGzip<W> {
        let n = n.max(1);
        ParallelGzip {
            out: Some(out),
            block: Vec::with_capacity(GZIP_BLOCK),
            pool: Pool::new(n, move |(input, out): GzipJob| {
                let member = compress_member(&input, out, level);
                (input, member)
            }),
            in_flight: VecDeque::new(),
            max_in_flight: n + 1,
            members: 0,
            spare_blocks: Vec::new(),
            spare_members: Vec::new(),
        }
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.in_flight.pop_front() {
            let (input, member) = rx.recv().map_err(|_| stopped())?;
            self.spare_blocks.push(input);
            let member = member?;
            self.out
                .as_mut()
                .expect("open until finish")
                .write_all(&member)?;
            self.spare_members.push(member);
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        let mut next = self
            .spare_blocks
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK));
        next.clear();
        let input = std::mem::replace(&mut self.block, next);
        let out = self
            .spare_members
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK / 2));
        self.in_flight.push_back(self.pool.submit((input, out))?);
        self.members += 1;
        Ok(())
    }

    /// Compress what is left, write every member, stop the threads.
    ///
    /// # Errors
    /// I/O errors of `out`.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty input still becomes one (empty) member: a valid gzip file.
        if !self.block.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.out.take().expect("finished once"))
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let take = (GZIP_BLOCK - self.block.len()).min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == GZIP_BLOCK {
                self.submit()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// What the reader will hand out next, in order.
/// Each starts at a file offset (counted from where reading began), from
/// which a member that fails is read again the slow way.
enum Next {
    /// A member being inflated.
    Member(u64, Receiver<GunzipDone>),
    /// From here on the file is not a member we can take whole.
    Rest(u64),
}

/// flate2's `read::MultiGzDecoder` reads through a buffer of this size, and
/// how much input each inflate call gets decides how many bytes come out
/// before an error: with the same size, we report what it would.
const SEQUENTIAL_BUF: usize = 32 << 10;

/// The sequential reader: 1 MiB reads from the file, handed to the
/// decoder as `read::MultiGzDecoder` would hand them.
type Sequential = Members<BufReader<BufReader<File>>>;

/// gzip members one after the other, read as Python's gzip module reads
/// them: zero bytes after a member are padding (tape and some copy tools
/// leave them; `gzip -t` accepts them too), skipped before the next member
/// or the end. Otherwise as flate2's `bufread::MultiGzDecoder`, with the
/// same errors at the same places.
struct Members<R> {
    state: Between<R>,
}

enum Between<R> {
    Member(Box<flate2::bufread::GzDecoder<R>>),
    /// After a member: padding, then a member or the end.
    Padding(R),
    End,
}

impl<R: BufRead> Members<R> {
    /// Members from the start of a gzip file, where zeros are no padding:
    /// Python rejects such a file ("Not a gzipped file").
    fn at_start(r: R) -> Members<R> {
        Members {
            state: Between::Member(Box::new(flate2::bufread::GzDecoder::new(r))),
        }
    }

    /// Members from just after a member.
    fn after_member(r: R) -> Members<R> {
        Members {
            state: Between::Padding(r),
        }
    }
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                Between::Member(dec) => match dec.read(buf) {
                    Ok(0) => {
                        let Between::Member(dec) = std::mem::replace(&mut self.state, Between::End)
                        else {
                            unreachable!("in a member")
                        };
                        self.state = Between::Padding(dec.into_inner());
                    }
                    Ok(n) => return Ok(n),
                    Err(e) => {
                        // The decoder reads as ended after most errors;
                        // going on to a next member would hide the damage.
                        if e.kind() != io::ErrorKind::Interrupted {
                            self.state = Between::End;
                        }
                        return Err(e);
                    }
                },
                Between::Padding(r) => {
                    if skip_zeros(r)? {
                        let Between::Padding(r) = std::mem::replace(&mut self.state, Between::End)
                        else {
                            unreachable!("in padding")
                        };
                        self.state = Between::Member(Box::new(flate2::bufread::GzDecoder::new(r)));
                    } else {
                        self.state = Between::End;
                    }
                }
                Between::End => return Ok(0),
            }
        }
    }
}

/// Consume zero bytes; true if another byte follows, false at the end.
fn skip_zeros(r: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buf = match r.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        let more = zeros < buf.len();
        r.consume(zeros);
        if more {
            return Ok(true);
        }
    }
}

/// A member and the buffer to inflate it into; both come back.
type GunzipJob = (Vec<u8>, Vec<u8>);
type GunzipDone = (Vec<u8>, Option<Vec<u8>>);

/// Reads a gzip file as its uncompressed bytes, inflating our members (see
/// the module docs) on all cores and anything else one member after the
/// other. Errors are those of a sequential reader at the same place.
pub struct ParallelGunzip {
    /// `None` once the rest is read sequentially. Members are read whole,
    /// so no buffer in between.
    file: Option<File>,
    pool: Pools,
    queue: VecDeque<Next>,
    /// Buffers that go round, as in [`ParallelGzip`].
    spare_members: Vec<Vec<u8>>,
    spare_outs: Vec<Vec<u8>>,
    max_in_flight: usize,
    /// No more members to queue.
    ended: bool,
    /// Bytes read from the file so far.
    pos: u64,
    out: Vec<u8>,
    out_pos: usize,
    sequential: Option<Box<Sequential>>,
    /// Members inflated whole, apart from the rest.
    whole: u64,
}

/// The pool a reader inflates on.
enum Pools {
    Shared(&'static Pool<GunzipJob, GunzipDone>),
    #[cfg(test)]
    Own(Pool<GunzipJob, GunzipDone>),
}

impl Pools {
    fn get(&self) -> &Pool<GunzipJob, GunzipDone> {
        match self {
            Pools::Shared(p) => p,
            #[cfg(test)]
            Pools::Own(p) => p,
        }
    }
}

fn gunzip_pool(n: usize) -> Pool<GunzipJob, GunzipDone> {
    Pool::new(n, |(member, mut out): GunzipJob| {
        let whole = inflate_member(&member, &mut out);
        (member, whole.then_some(out))
    })
}

impl ParallelGunzip {
    /// Read the gzip file `file` from its current position, inflating on
    /// one thread per core.
    ///
    /// Every reader made this way shares one pool of that many threads:
    /// verify reads several files at once, and a pool each would run
    /// cores x cores threads on a large machine.
    pub fn new(file: File) -> ParallelGunzip {
        static SHARED: OnceLock<Pool<GunzipJob, GunzipDone>> = OnceLock::new();
        let n = threads();
        let pool = SHARED.get_or_init(|| gunzip_pool(n));
        ParallelGunzip::on(file, Pools::Shared(pool), n)
    }

    /// Read the gzip file `file` from its current position, inflating on
    /// a pool of its own of `n` threads (at least one).
    #[cfg(test)]
    pub(crate) fn with_threads(file: File, n: usize) -> ParallelGunzip {
        let n = n.max(1);
        ParallelGunzip::on(file, Pools::Own(gunzip_pool(n)), n)
    }

    fn on(file: File, pool: Pools, n: usize) -> ParallelGunzip {
        ParallelGunzip {
            file: Some(file),
            pool,
            queue: VecDeque::new(),
            spare_members: Vec::new(),
            spare_outs: Vec::new(),
            max_in_flight: n,
            ended: false,
            pos: 0,
            out: Vec::new(),
            out_pos: 0,
            sequential: None,
            whole: 0,
        }
    }

    /// How many members were inflated whole on the thread pool so far (the
    /// rest, if any, was read one member after the other).
    pub fn members_inflated_whole(&self) -> u64 {
        self.whole
    }

    /// Queue members until enough are in flight or the file stops being
    /// ours.
    fn fill_queue(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        while !self.ended && self.queue.len() < self.max_in_flight {
            let start = self.pos;
            let mut head = self.spare_members.pop().unwrap_or_default();
            head.clear();
            head.resize(HEADER_LEN, 0);
            let got = read_full(&mut head, |b, _| file.read(b))?;
            self.pos += got as u64;
            head.truncate(got);
            let Some(len) = member_len(&head) else {
                self.ended = true;
                // The end of the file after a member is the end; at its
                // start, the sequential reader says what an empty file is.
                // (The queue can be empty after a member: with one thread,
                // the only one in flight has just been handed out.)
                if got > 0 || start == 0 {
                    self.queue.push_back(Next::Rest(start));
                }
                break;
            };
            head.resize(len, 0);
            let got = read_full(&mut head[HEADER_LEN..], |b, _| file.read(b))?;
            self.pos += got as u64;
            if got < len - HEADER_LEN {
                self.ended = true;
                self.queue.push_back(Next::Rest(start));
                break;
            }
            let out = self.spare_outs.pop().unwrap_or_default();
            let job = self.pool.get().submit((head, out))?;
            self.queue.push_back(Next::Member(start, job));
        }
        Ok(())
    }

    /// Read the file from `start` on the slow way, as a sequential reader
    /// would have read it from there (same buffering, so the same errors).
    fn go_sequential(&mut self, start: u64) -> io::Result<()> {
        for next in self.queue.drain(..) {
            if let Next::Member(_, rx) = next {
                // Let the thread finish; its result is not wanted.
                let _ = rx.recv();
            }
        }
        let mut file = self.file.take().expect("sequential once");
        let back = i64::try_from(self.pos - start).map_err(io::Error::other)?;
        file.seek(SeekFrom::Current(-back))?;
        let r =
            BufReader::with_capacity(SEQUENTIAL_BUF, BufReader::with_capacity(GZIP_BLOCK, file));
        // Zeros at the start of a file are no padding; anywhere else
        // `start` is where a member of ours ended, and padding may follow.
        let members = if start == 0 {
            Members::at_start(r)
        } else {
            Members::after_member(r)
        };
        self.sequential = Some(Box::new(members));
        Ok(())
    }
}

impl Read for ParallelGunzip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if let Some(s) = self.sequential.as_mut() {
                return s.read(buf);
            }
            self.fill_queue()?;
            match self.queue.pop_front() {
                None => return Ok(0),
                Some(Next::Member(start, rx)) => match rx.recv().map_err(|_| stopped())? {
                    (member, Some(out)) => {
                        self.spare_members.push(member);
                        let done = std::mem::replace(&mut self.out, out);
                        self.spare_outs.push(done);
                        self.out_pos = 0;
                        self.whole += 1;
                        // Keep the threads busy while this one is handed out.
                        self.fill_queue()?;
                    }
                    (_, None) => self.go_sequential(start)?,
                },
                Some(Next::Rest(start)) => self.go_sequential(start)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use std::io::Seek;

    fn gunzip_sequential(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8 ^ (i / 100_000) as u8)
            .collect()
    }

    /// Thread counts every reader and writer is tested at: one thread is
    /// a path of its own (one member in flight), as is more threads than
    /// members.
    const THREADS: [usize; 3] = [1, 2, 8];

    fn gzip(input: &[u8]) -> Vec<u8> {
        gzip_on(input, 2)
    }

    fn gzip_on(input: &[u8], threads: usize) -> Vec<u8> {
        let mut z = ParallelGzip::with_threads(Vec::new(), GZIP_LEVEL, threads);
        for piece in input.chunks(100_003) {
            z.write_all(piece).unwrap();
        }
        z.finish().unwrap()
    }

    /// One plain member, as Python's gzip module writes it.
    fn python_like(input: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), Compression::new(9));
        enc.write_all(input).unwrap();
        enc.finish().unwrap()
    }

    fn in_file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    /// Reads like the binary: 1 MiB at a time, counting bytes before an
    /// error.
    fn read_all(r: &mut impl Read) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    const SIZES: [usize; 6] = [
        0,
        1,
        GZIP_BLOCK - 1,
        GZIP_BLOCK,
        3 * GZIP_BLOCK + 17,
        9 << 20,
    ];

    #[test]
    fn parallel_gzip_is_one_gzip_stream_of_the_input() {
        for threads in THREADS {
            for len in SIZES {
                let input = sample(len);
                let z = gzip_on(&input, threads);
                assert!(
                    gunzip_sequential(&z).unwrap() == input,
                    "length {len}, {threads} threads"
                );
            }
        }
    }

    /// Issue 10: verify reads several files at once, each with a reader
    /// that had a pool of its own: cores x cores threads.
    #[test]
    fn readers_made_with_new_share_one_pool() {
        let a = ParallelGunzip::new(in_file(&gzip(&sample(10))));
        let b = ParallelGunzip::new(in_file(&gzip(&sample(10))));
        let (Pools::Shared(a), Pools::Shared(b)) = (&a.pool, &b.pool) else {
            panic!("not the shared pool");
        };
        assert!(std::ptr::eq(*a, *b));
    }

    #[test]
    fn every_member_says_its_length() {
        for threads in THREADS {
            let z = gzip_on(&sample(3 * GZIP_BLOCK + 17), threads);
            let mut at = 0;
            let mut members = 0;
            while at < z.len() {
                let len = member_len(&z[at..]).expect("a member of ours");
                assert!(inflate_member(&z[at..at + len], &mut Vec::new()));
                at += len;
                members += 1;
            }
            assert_eq!((at, members), (z.len(), 4), "{threads} threads");
        }
    }

    #[test]
    fn parallel_gunzip_reads_ours_and_others() {
        for len in SIZES {
            let input = sample(len);
            let ours = gzip(&input);
            // A plain single-member file, as Python's gzip module writes it.
            let theirs = python_like(&input);
            for threads in THREADS {
                let at = format!("length {len}, {threads} threads");
                let mut r = ParallelGunzip::with_threads(in_file(&ours), threads);
                let (back, err) = read_all(&mut r);
                assert_eq!((back.len(), err), (len, None), "ours, {at}");
                assert!(back == input, "ours, {at}");
                let members = len.div_ceil(GZIP_BLOCK).max(1) as u64;
                assert_eq!(r.members_inflated_whole(), members, "{at}");
                let mut r = ParallelGunzip::with_threads(in_file(&theirs), threads);
                let (back, err) = read_all(&mut r);
                assert_eq!((back.len(), err), (len, None), "theirs, {at}");
                assert_eq!(r.members_inflated_whole(), 0, "{at}");
                assert!(back == input, "theirs, {at}");
            }
        }
    }

    /// A member of ours (its length right in the header) holding `input`,
    /// its trailer's ISIZE replaced by `isize` if given: what a crafted
    /// file can hold.
    fn crafted_member(input: &[u8], isize: Option<u32>) -> Vec<u8> {
        let mut m = compress_member(input, Vec::new(), GZIP_LEVEL).unwrap();
        if let Some(isize) = isize {
            let at = m.len() - 4;
            m[at..].copy_from_slice(&isize.to_le_bytes());
        }
        assert_eq!(member_len(&m), Some(m.len()));
        m
    }

    /// Our writer puts at most GZIP_BLOCK bytes in a member; a member that
    /// inflates to more (a crafted one: four that inflated to 2.1 GB each
    /// took the reader to 6.3 GB) is left to the sequential reader, which
    /// streams it.
    #[test]
    fn a_member_of_more_than_a_block_is_not_inflated_whole() {
        let big = vec![0u8; 3 * GZIP_BLOCK];
        let small = sample(GZIP_BLOCK);
        let mut z = crafted_member(&small, None);
        z.extend_from_slice(&crafted_member(&big, None));
        z.extend_from_slice(&crafted_member(&small[..1000], None));
        let mut want = small.clone();
        want.extend_from_slice(&big);
        want.extend_from_slice(&small[..1000]);
        for threads in THREADS {
            let mut r = ParallelGunzip::with_threads(in_file(&z), threads);
            let (got, err) = read_all(&mut r);
            assert_eq!((got.len(), err), (want.len(), None), "{threads} threads");
            assert!(got == want, "{threads} threads");
            assert_eq!(r.members_inflated_whole(), 1, "{threads} threads");
        }
    }

    /// However much a member inflates to, and whatever its trailer says,
    /// the buffer it is inflated into stays within a block.
    #[test]
    fn inflating_a_member_takes_at_most_a_block_of_memory() {
        let big = vec![0u8; 3 * GZIP_BLOCK];
        let block = GZIP_BLOCK as u32;
        for (what, isize) in [
            ("its ISIZE", None),
            ("ISIZE 100", Some(100)),
            ("ISIZE a block", Some(block)),
        ] {
            let mut out = Vec::new();
            assert!(
                !inflate_member(&crafted_member(&big, isize), &mut out),
                "{what}"
            );
            assert!(out.capacity() <= GZIP_BLOCK, "{what}: {}", out.capacity());
        }
        // A block is still taken whole, in a buffer of just that size.
        let mut out = Vec::new();
        assert!(inflate_member(
            &crafted_member(&big[..GZIP_BLOCK], None),
            &mut out
        ));
        assert_eq!((out.len(), out.capacity()), (GZIP_BLOCK, GZIP_BLOCK));
        // And an ISIZE smaller than the content is damage, found.
        let m = crafted_member(&sample(5000), Some(4999));
        assert!(!inflate_member(&m, &mut out));
    }

    /// Zero bytes after a member are padding (tape, some copy tools), as
    /// for `gzip -t` and Python's gzip module, which skips them after
    /// every member before it looks for the next one.
    #[test]
    fn zeros_after_a_member_are_padding() {
        let input = sample(3 * GZIP_BLOCK + 17);
        let ours = gzip(&input);
        let theirs = python_like(&input[..100_000]);
        let zeros = |n: usize| vec![0u8; n];
        let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
        for n in [
            1,
            2,
            7,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + 1,
            512,
            4096,
            5000,
        ] {
            cases.push((
                format!("ours + {n} zeros"),
                [&ours[..], &zeros(n)].concat(),
                input.clone(),
            ));
            let z = [&theirs[..], &zeros(n)].concat();
            cases.push((format!("theirs + {n} zeros"), z, input[..100_000].to_vec()));
        }
        let second = member_len(&ours).unwrap();
        let z = [&ours[..second], &zeros(3000), &ours[second..]].concat();
        cases.push(("ours, zeros between members".into(), z, input.clone()));
        let z = [&theirs[..], &zeros(100), &theirs[..], &zeros(1)].concat();
        let twice = [&input[..100_000], &input[..100_000]].concat();
        cases.push(("theirs, zeros between members".into(), z, twice));
        let z = [&theirs[..], &zeros(100), &ours[..second]].concat();
        let mixed = [&input[..100_000], &input[..GZIP_BLOCK]].concat();
        cases.push(("theirs, zeros, ours".into(), z, mixed));
        for (what, z, want) in cases {
            for threads in THREADS {
                let mut r = ParallelGunzip::with_threads(in_file(&z), threads);
                let (got, err) = read_all(&mut r);
                let what = format!("{what}, {threads} threads");
                assert_eq!((got.len(), err), (want.len(), None), "{what}");
                assert!(got == want, "{what}");
                // Padding at the end leaves our members to the threads.
                if what.starts_with("ours +") {
                    assert_eq!(r.members_inflated_whole(), 4, "{what}");
                }
            }
        }
    }

    /// Zeros are padding only after a member: a file that starts with them
    /// is not gzip (Python: "Not a gzipped file"), and what follows zeros
    /// must be a member.
    #[test]
    fn zeros_elsewhere_are_damage() {
        let ours = gzip(&sample(GZIP_BLOCK + 5));
        let theirs = python_like(&sample(1000));
        let cases = [
            ("zeros, then ours", [&[0u8; 30][..], &ours].concat()),
            ("zeros, then theirs", [&[0u8; 30][..], &theirs].concat()),
            ("zeros alone", vec![0u8; 30]),
            (
                "ours, zeros, garbage",
                [&ours[..], &[0; 30], b"not a gzip header"].concat(),
            ),
            (
                "theirs, zeros, garbage",
                [&theirs[..], &[0; 30], b"not a gzip header"].concat(),
            ),
        ];
        for (what, z) in cases {
            for threads in THREADS {
                let (_, err) = read_all(&mut ParallelGunzip::with_threads(in_file(&z), threads));
                let err = err.unwrap_or_else(|| panic!("{what}, {threads} threads: no error"));
                assert_eq!(err, "invalid gzip header", "{what}, {threads} threads");
            }
        }
    }

    /// A first member that cannot be taken whole is read exactly as the
    /// sequential reader reads the file, down to how many bytes come out
    /// before the error. Found by the `gzip` fuzz target (the input is
    /// its, a member of ours with bytes inserted, so its announced length
    /// is wrong): reading it again from a copy of its bytes fed flate2
    /// other pieces, and flate2 drops what a failing call inflated, so we
    /// said 4,793 bytes came out where the sequential reader says 0.
    #[test]
    fn regression_a_bad_first_member_reads_exactly_as_sequentially() {
        let bad = include_bytes!("../../fuzz/regressions/gzip-bad-first-member.fsz");
        let want = read_all(&mut MultiGzDecoder::new(&bad[..]));
        assert!(want.1.is_some(), "the input is damaged");
        for threads in THREADS {
            let mut r = ParallelGunzip::with_threads(in_file(bad), threads);
            let got = read_all(&mut r);
            assert_eq!(r.members_inflated_whole(), 0);
            assert_eq!(got.1, want.1, "error, {threads} threads");
            let (got, want) = (got.0.len(), want.0.len());
            assert_eq!(got, want, "bytes before the error, {threads} threads");
        }
    }

    /// Damage anywhere gives what the sequential reader gives: the same
    /// bytes before the error, and the same error.
    #[test]
    fn damage_reads_as_sequentially() {
        let input = sample(5 * GZIP_BLOCK + 999);
        let z = gzip(&input);
        let second = member_len(&z).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for at in [
            5,
            LEN_AT,
            LEN_AT + 1,
            second + 100,
            z.len() / 2,
            z.len() - 6,
        ] {
            let mut bad = z.clone();
            bad[at] ^= 0x55;
            cases.push((format!("flipped byte {at}"), bad));
        }
        for cut in [1, HEADER_LEN + 3, second, second + 7, z.len() - 3] {
            cases.push((format!("cut at {cut}"), z[..cut].to_vec()));
        }
        let mut trailing = z.clone();
        trailing.extend_from_slice(b"garbage");
        cases.push(("trailing garbage".into(), trailing));
        let mut doubled = z.clone();
        doubled.extend_from_slice(&z);
        cases.push(("two files in one".into(), doubled));
        for (what, bad) in cases {
            let want = read_all(&mut MultiGzDecoder::new(&bad[..]));
            for threads in THREADS {
                let got = read_all(&mut ParallelGunzip::with_threads(in_file(&bad), threads));
                let what = format!("{what}, {threads} threads");
                assert_eq!(got.1, want.1, "{what}: error");
                assert_eq!(got.0.len(), want.0.len(), "{what}: bytes before the error");
                assert!(got.0 == want.0, "{what}: content");
            }
        }
    }
}
