//! genfs: write a large, valid ZODB FileStorage (`FS30`) for benchmarks.
//!
//! ```text
//! cargo run --release --example genfs -- --out Data.fs --size 2G --seed 1
//! cargo run --release --example genfs -- --out Data.fs --append 100M --seed 2
//! ```
//!
//! The file is what ZODB itself would write for a database of
//! `persistent.mapping.PersistentMapping` objects: oid 0 is the root mapping,
//! every other object is a PersistentMapping whose `data` dict holds a title,
//! a number, a text body and sometimes a persistent reference to another
//! (existing) object. Each data record is the two protocol-3 pickles ZODB's
//! `ObjectWriter` produces (class, then state, sharing one memo), so
//! `fstest`, `fsrefs`, `FileStorage` and `DB.open().root()` accept it.
//!
//! Content profile (chosen so that `--size 2G` gives roughly 4-5 million
//! data records and ~3 million distinct oids over a few thousand
//! transactions of 100-2000 records):
//! - ~60% of records create a new oid, the rest rewrite an existing one
//!   (mostly recent oids, some uniformly old ones), with `prev` pointing at
//!   that oid's previous data record;
//! - most pickles are 100-400 bytes; ~0.35% of oids are "large" and their
//!   records are 10-100 KB (log-uniform), which is about half the bytes
//!   (1% of records at that size would not fit 5 million records in 2 GiB);
//! - text is drawn from a small vocabulary plus numbers, so it gzips about
//!   like real pickles do (roughly 3-4x), neither zeros nor random bytes.
//!
//! Everything is deterministic from `--seed` (splitmix64), tids are real
//! ZODB TimeStamps that advance a few seconds per transaction.
//!
//! `--append SIZE` scans an existing FileStorage (any, not only genfs
//! output), finds its last tid, its highest oid and each oid's last data
//! record, then appends about SIZE bytes of new transactions that rewrite
//! existing objects (with correct `prev`) and add new ones.

// Test and benchmark data is built with deliberate truncating casts.
#![allow(clippy::cast_possible_truncation)]

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Instant;

use byteorder::{BigEndian, ByteOrder, ReadBytesExt};
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};
use clap::{Arg, Command};

const MAGIC: &[u8; 4] = b"FS30";
const TXN_HEADER: usize = 23;
const DATA_HEADER: usize = 42;
/// First tid of a fresh file (2021-05-12 00:32 UTC as a ZODB TimeStamp).
const START_TID: u64 = 0x03E0_0000_0000_0000;

// ---------------------------------------------------------------- PRNG

/// splitmix64: tiny, fast, good enough, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < p
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

fn mix(x: u64) -> u64 {
    let mut r = Rng(x);
    r.next()
}

// ---------------------------------------------------------------- text

/// A small vocabulary (split on whitespace) the text is made of.
const VOCAB: &str = "\
    the of and to in is for on with as by at from this that be are was or an it not which have \
    has will can all new more about page document folder image file news event user group \
    member portal site content title description text body summary created modified effective \
    expires language subject creator contributor rights workflow state published private \
    pending review owner manager editor reader viewer index catalog search query result object \
    persistent mapping tree bucket node leaf value key item list dict string number date time \
    zone utc version history revision comment reply discussion thread topic forum blog post \
    entry tag category keyword link url path http https www example com org net html css js \
    png jpg pdf doc xml json api rest view edit add delete move copy paste rename sort order \
    position parent child children sibling layout template macro slot fill define condition \
    repeat replace attributes omit tag script python zope plone zodb transaction commit abort \
    savepoint conflict error resolve retry log debug info warning critical message status code \
    request response header cookie session cache purge proxy server client port host name \
    address email phone city country street postal company department project task issue \
    milestone release build test report meeting agenda minutes budget invoice order payment \
    customer product price quantity total tax discount shipping delivery stock warehouse \
    january february march april may june july august september october november december \
    monday tuesday wednesday thursday friday yes no true false none null default custom first \
    last next previous open closed draft final archive backup restore import export";

/// A pool of ASCII text (words, numbers, punctuation) that record bodies are
/// sliced from. Large enough that gzip's 32 KiB window never sees repeats.
fn make_text_pool(rng: &mut Rng, len: usize) -> Vec<u8> {
    let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
    let mut pool = Vec::with_capacity(len + 64);
    while pool.len() < len {
        let r = rng.below(100);
        if r < 8 {
            // a number, as pickles of real data often hold
            let n = rng.below(if r < 2 { 1_000_000_000 } else { 10_000 });
            pool.extend_from_slice(n.to_string().as_bytes());
        } else if r < 10 {
            // an iso date
            let s = format!(
                "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}",
                rng.range(10, 25),
                rng.range(1, 12),
                rng.range(1, 28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            );
            pool.extend_from_slice(s.as_bytes());
        } else {
            // skewed word choice (Zipf-like): small indexes are more frequent
            let u = rng.unit();
            let i = ((u * u * u) * vocab.len() as f64) as usize;
            pool.extend_from_slice(vocab[i.min(vocab.len() - 1)].as_bytes());
        }
        let p = rng.below(20);
        pool.push(match p {
            0 => b'.',
            1 => b',',
            2 => b'/',
            3 => b'-',
            4 => b'\n',
            _ => b' ',
        });
    }
    pool.truncate(len);
    pool
}

// ---------------------------------------------------------------- pickles

/// The class pickle ZODB writes for a PersistentMapping (memo 0 = the class).
const CLASS_PICKLE: &[u8] = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.";

fn put_unicode(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'X');
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s);
}

fn put_memo(buf: &mut Vec<u8>, memo: &mut u8) {
    buf.push(b'q');
    buf.push(*memo);
    *memo = memo.wrapping_add(1);
}

/// A persistent reference `(oid, PersistentMapping)` exactly as ZODB writes
/// it in the state pickle: the class is fetched from memo 0 (the class
/// pickle shares the memo with the state pickle).
fn put_ref(buf: &mut Vec<u8>, oid: u64, memo: &mut u8) {
    buf.push(b'C');
    buf.push(8);
    buf.extend_from_slice(&oid.to_be_bytes());
    put_memo(buf, memo);
    buf.extend_from_slice(b"h\x00\x86");
    put_memo(buf, memo);
    buf.push(b'Q');
}

/// Pickle size without the body text and its 5-byte opcode+length.
fn state_overhead(title_len: usize, has_ref: bool) -> usize {
    let mut b = Vec::new();
    write_record_pickle(
        &mut b,
        &vec![b'a'; title_len],
        7,
        b"",
        if has_ref { Some(1) } else { None },
    );
    b.len()
}

/// Class pickle + state pickle of `{'data': {'title': .., 'n': .., 'body': .., ['ref': <obj>]}}`.
fn write_record_pickle(
    buf: &mut Vec<u8>,
    title: &[u8],
    n: i32,
    body: &[u8],
    reference: Option<u64>,
) {
    buf.extend_from_slice(CLASS_PICKLE);
    let mut memo = 1u8;
    buf.extend_from_slice(b"\x80\x03}");
    put_memo(buf, &mut memo);
    put_unicode(buf, b"data");
    put_memo(buf, &mut memo);
    buf.push(b'}');
    put_memo(buf, &mut memo);
    buf.push(b'(');
    put_unicode(buf, b"title");
    put_memo(buf, &mut memo);
    put_unicode(buf, title);
    put_memo(buf, &mut memo);
    put_unicode(buf, b"n");
    put_memo(buf, &mut memo);
    buf.push(b'J');
    buf.extend_from_slice(&n.to_le_bytes());
    put_unicode(buf, b"body");
    put_memo(buf, &mut memo);
    put_unicode(buf, body);
    put_memo(buf, &mut memo);
    if let Some(oid) = reference {
        put_unicode(buf, b"ref");
        put_memo(buf, &mut memo);
        put_ref(buf, oid, &mut memo);
    }
    buf.extend_from_slice(b"us.");
}

/// The root: `{'data': {'obj000001': <ref 1>, ...}}`.
fn write_root_pickle(buf: &mut Vec<u8>, children: &[u64]) {
    buf.extend_from_slice(CLASS_PICKLE);
    let mut memo = 1u8;
    buf.extend_from_slice(b"\x80\x03}");
    put_memo(buf, &mut memo);
    put_unicode(buf, b"data");
    put_memo(buf, &mut memo);
    buf.push(b'}');
    put_memo(buf, &mut memo);
    if !children.is_empty() {
        buf.push(b'(');
        for &oid in children {
            put_unicode(buf, format!("obj{oid:06}").as_bytes());
            put_memo(buf, &mut memo);
            put_ref(buf, oid, &mut memo);
        }
        buf.push(b'u');
    }
    buf.extend_from_slice(b"s.");
}

// ---------------------------------------------------------------- TimeStamps

fn tid_to_datetime(tid: u64) -> NaiveDateTime {
    let hi = tid >> 32;
    let lo = tid & 0xFFFF_FFFF;
    let minute = hi % 60;
    let v = hi / 60;
    let hour = v % 24;
    let v = v / 24;
    let day = v % 31 + 1;
    let v = v / 31;
    let month = v % 12 + 1;
    let year = v / 12 + 1900;
    let secs = lo as f64 * 60.0 / 4_294_967_296.0;
    // Clamp impossible days (e.g. Feb 31 from a raw tid) to the month's end.
    let mut d = day as u32;
    let date = loop {
        if let Some(date) = NaiveDate::from_ymd_opt(year as i32, month as u32, d) {
            break date;
        }
        d -= 1;
    };
    let micros = (secs * 1e6) as i64;
    date.and_hms_opt(hour as u32, minute as u32, 0).unwrap() + TimeDelta::microseconds(micros)
}

fn datetime_to_tid(t: &NaiveDateTime) -> u64 {
    let hi = ((((t.year() as u64 - 1900) * 12 + (t.month() as u64 - 1)) * 31
        + (t.day() as u64 - 1))
        * 24
        + t.hour() as u64)
        * 60
        + t.minute() as u64;
    let secs = t.second() as f64 + t.nanosecond() as f64 * 1e-9;
    let lo = ((secs / 60.0) * 4_294_967_296.0) as u64;
    (hi << 32) | lo.min(0xFFFF_FFFF)
}

struct Clock {
    now: NaiveDateTime,
    last: u64,
}

impl Clock {
    fn after(last: u64) -> Self {
        Clock {
            now: tid_to_datetime(last),
            last,
        }
    }
    /// Advance a pseudo-random 0.05-30 s and return a tid > the previous one.
    fn tick(&mut self, rng: &mut Rng) -> u64 {
        let ms = rng.range(50, 30_000) as i64;
        self.now += TimeDelta::milliseconds(ms);
        let mut tid = datetime_to_tid(&self.now);
        if tid <= self.last {
            tid = self.last + 1;
        }
        self.last = tid;
        tid
    }
}

// ---------------------------------------------------------------- generator

struct Gen {
    rng: Rng,
    pool: Vec<u8>,
    /// Position of each oid's last data record; 0 = no record yet.
    last_pos: Vec<u64>,
    next_oid: u64,
    distinct: u64,
    records: u64,
    txns: u64,
    pos: u64,
    seed: u64,
    p_new: f64,
    /// Reused buffers.
    txn: Vec<u8>,
    pickle: Vec<u8>,
}

const SMALL_MIN: u64 = 100;
const SMALL_MAX: u64 = 400;
/// Oids with `mix(oid ^ seed) % 10000 < LARGE_PER_10K` hold 10-100 KB.
const LARGE_PER_10K: u64 = 35;

impl Gen {
    fn is_large(&self, oid: u64) -> bool {
        oid != 0 && mix(oid ^ self.seed.rotate_left(17)) % 10_000 < LARGE_PER_10K
    }

    fn exists(&self, oid: u64) -> bool {
        (oid as usize) < self.last_pos.len() && self.last_pos[oid as usize] != 0
    }

    fn set_pos(&mut self, oid: u64, pos: u64) {
        let i = oid as usize;
        if i >= self.last_pos.len() {
            self.last_pos
                .resize((i + 1).max(self.last_pos.len() * 2), 0);
        }
        if self.last_pos[i] == 0 {
            self.distinct += 1;
        }
        self.last_pos[i] = pos;
    }

    /// An oid to rewrite, or None to create a new one.
    fn pick_update(&mut self, txn_pos: u64) -> Option<u64> {
        if self.next_oid < 64 {
            return None;
        }
        for _ in 0..4 {
            let n = self.next_oid;
            let oid = if self.rng.chance(0.7) {
                // hot set: the most recent 2% (at least 1000) oids
                let w = (n / 50).max(1000).min(n - 1);
                n - 1 - self.rng.below(w)
            } else {
                self.rng.range(1, n - 1)
            };
            // Not the root, must exist, at most once per transaction.
            if oid != 0 && self.exists(oid) && self.last_pos[oid as usize] < txn_pos {
                return Some(oid);
            }
        }
        None
    }

    /// A random existing oid to reference, other than `not`.
    fn pick_ref(&mut self, not: u64) -> Option<u64> {
        if self.next_oid < 2 {
            return None;
        }
        let oid = self.rng.range(1, self.next_oid - 1);
        (oid != not && self.exists(oid)).then_some(oid)
    }

    fn pickle_size(&mut self, oid: u64) -> u64 {
        if self.is_large(oid) {
            // log-uniform 10 KB - 100 KB
            (10_000.0 * 10f64.powf(self.rng.unit())) as u64
        } else {
            self.rng.range(SMALL_MIN, SMALL_MAX)
        }
    }

    fn build_pickle(&mut self, oid: u64, reference: Option<u64>) {
        let size = self.pickle_size(oid) as usize;
        let tl = self.rng.range(8, 40) as usize;
        let tstart = self.rng.below((self.pool.len() - tl) as u64) as usize;
        let over = state_overhead_cached(tl, reference.is_some());
        let blen = size.saturating_sub(over).max(1);
        let bstart = self.rng.below((self.pool.len() - blen) as u64) as usize;
        let n = self.rng.next() as i32;
        self.pickle.clear();
        let (title, body) = (
            &self.pool[tstart..tstart + tl],
            &self.pool[bstart..bstart + blen],
        );
        write_record_pickle(&mut self.pickle, title, n, body, reference);
    }

    fn push_record(&mut self, oid: u64, tid: u64, txn_pos: u64, rec_pos: u64) {
        let prev = if self.exists(oid) {
            self.last_pos[oid as usize]
        } else {
            0
        };
        let mut h = [0u8; DATA_HEADER];
        BigEndian::write_u64(&mut h[0..8], oid);
        BigEndian::write_u64(&mut h[8..16], tid);
        BigEndian::write_u64(&mut h[16..24], prev);
        BigEndian::write_u64(&mut h[24..32], txn_pos);
        BigEndian::write_u16(&mut h[32..34], 0);
        BigEndian::write_u64(&mut h[34..42], self.pickle.len() as u64);
        self.txn.extend_from_slice(&h);
        self.txn.extend_from_slice(&self.pickle);
        self.set_pos(oid, rec_pos);
        self.records += 1;
    }

    /// Build one transaction at `self.pos` into `self.txn`, of about
    /// `budget` bytes at most (at least one record).
    fn build_txn(&mut self, tid: u64, budget: u64) {
        let txn_pos = self.pos;
        self.txn.clear();
        let users: [&[u8]; 4] = [b"", b"/ admin", b"/Plone editor", b"/ acl_users batch"];
        let user = users[self.rng.below(users.len() as u64) as usize];
        let dl = self.rng.range(0, 60) as usize;
        let ds = self.rng.below((self.pool.len() - dl) as u64) as usize;
        let desc: Vec<u8> = self.pool[ds..ds + dl].to_vec();
        let mut h = [0u8; TXN_HEADER];
        BigEndian::write_u64(&mut h[0..8], tid);
        // tlen patched below
        h[16] = b' ';
        BigEndian::write_u16(&mut h[17..19], user.len() as u16);
        BigEndian::write_u16(&mut h[19..21], desc.len() as u16);
        BigEndian::write_u16(&mut h[21..23], 0);
        self.txn.extend_from_slice(&h);
        self.txn.extend_from_slice(user);
        self.txn.extend_from_slice(&desc);

        if self.next_oid == 0 {
            // The very first transaction: the root and its first children.
            let kids: Vec<u64> = (1..=16).collect();
            self.pickle.clear();
            write_root_pickle(&mut self.pickle, &kids);
            let p = txn_pos + self.txn.len() as u64;
            self.push_record(0, tid, txn_pos, p);
            self.next_oid = 1;
            for &k in &kids {
                let r = if k > 1 { Some(k - 1) } else { None };
                self.build_pickle(k, r);
                let p = txn_pos + self.txn.len() as u64;
                self.push_record(k, tid, txn_pos, p);
                self.next_oid = k + 1;
            }
        }

        // 100-2000 records, skewed toward smaller transactions.
        let u = self.rng.unit();
        let nrec = 100 + (u * u * 1900.0) as u64;
        for _ in 0..nrec {
            if self.txn.len() as u64 + 8 >= budget {
                break;
            }
            let oid = if self.rng.chance(self.p_new) {
                None
            } else {
                self.pick_update(txn_pos)
            };
            let oid = oid.unwrap_or_else(|| {
                let o = self.next_oid;
                self.next_oid += 1;
                o
            });
            let reference = if self.rng.chance(0.3) {
                self.pick_ref(oid)
            } else {
                None
            };
            self.build_pickle(oid, reference);
            let p = txn_pos + self.txn.len() as u64;
            self.push_record(oid, tid, txn_pos, p);
        }
        let tlen = self.txn.len() as u64;
        BigEndian::write_u64(&mut self.txn[8..16], tlen);
        self.txn.extend_from_slice(&tlen.to_be_bytes());
        self.txns += 1;
    }
}

fn state_overhead_cached(title_len: usize, has_ref: bool) -> usize {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<[usize; 2]>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..=64)
            .map(|l| [state_overhead(l, false), state_overhead(l, true)])
            .collect()
    });
    t[title_len][has_ref as usize]
}

// ---------------------------------------------------------------- scanning

struct Scan {
    end: u64,
    last_tid: u64,
    last_pos: Vec<u64>,
    max_oid: Option<u64>,
    distinct: u64,
    txns: u64,
    records: u64,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Walk an existing FileStorage: transaction headers and data record headers.
fn scan(path: &PathBuf) -> io::Result<Scan> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad(format!(
            "{}: not a FileStorage (magic {:?})",
            path.display(),
            magic
        )));
    }
    let mut s = Scan {
        end: 4,
        last_tid: 0,
        last_pos: Vec::new(),
        max_oid: None,
        distinct: 0,
        txns: 0,
        records: 0,
    };
    let mut pos = 4u64;
    let mut th = [0u8; TXN_HEADER];
    let mut dh = [0u8; DATA_HEADER];
    while pos < size {
        if pos + TXN_HEADER as u64 > size {
            return Err(bad(format!("truncated transaction header at {pos}")));
        }
        r.read_exact(&mut th)?;
        let tid = BigEndian::read_u64(&th[0..8]);
        let tlen = BigEndian::read_u64(&th[8..16]);
        let status = th[16];
        if tid <= s.last_tid && s.txns > 0 {
            return Err(bad(format!("tid not increasing at {pos}")));
        }
        if pos + tlen + 8 > size {
            return Err(bad(format!(
                "transaction at {pos} runs past the end of the file (incomplete?)"
            )));
        }
        if status == b'c' {
            return Err(bad(format!("checkpoint (status 'c') transaction at {pos}")));
        }
        let hl = (BigEndian::read_u16(&th[17..19]) as u64)
            + (BigEndian::read_u16(&th[19..21]) as u64)
            + (BigEndian::read_u16(&th[21..23]) as u64);
        r.seek_relative(hl as i64)?;
        let tend = pos + tlen;
        let mut dpos = pos + TXN_HEADER as u64 + hl;
        while dpos < tend {
            r.read_exact(&mut dh)?;
            let oid = BigEndian::read_u64(&dh[0..8]);
            let vlen = BigEndian::read_u16(&dh[32..34]) as u64;
            let plen = BigEndian::read_u64(&dh[34..42]);
            let mut rest = plen + if vlen > 0 { 16 + vlen } else { 0 };
            if plen == 0 {
                rest += 8; // backpointer
            }
            let i = oid as usize;
            if oid >= 1 << 32 {
                return Err(bad(format!(
                    "oid {oid:#x} too large for genfs's dense oid table"
                )));
            }
            if i >= s.last_pos.len() {
                s.last_pos.resize((i + 1).max(s.last_pos.len() * 2), 0);
            }
            if s.last_pos[i] == 0 {
                s.distinct += 1;
            }
            s.last_pos[i] = dpos;
            s.max_oid = Some(s.max_oid.map_or(oid, |m| m.max(oid)));
            s.records += 1;
            r.seek_relative(rest as i64)?;
            dpos += DATA_HEADER as u64 + rest;
        }
        if dpos != tend {
            return Err(bad(format!("data records overrun transaction at {pos}")));
        }
        let tl2 = r.read_u64::<BigEndian>()?;
        if tl2 != tlen {
            return Err(bad(format!("redundant length mismatch at {pos}")));
        }
        s.last_tid = tid;
        s.txns += 1;
        pos = tend + 8;
    }
    s.end = pos;
    Ok(s)
}

// ---------------------------------------------------------------- main

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let num = num.strip_suffix(['B', 'b']).unwrap_or(num);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (use e.g. 100M, 2G, 512K)"))?;
    Ok((v * mult as f64) as u64)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("genfs: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let m = Command::new("genfs")
        .about("Write a large valid ZODB FileStorage for benchmarks")
        .arg(
            Arg::new("out")
                .long("out")
                .short('o')
                .required(true)
                .help("Data.fs to write (or append to)"),
        )
        .arg(
            Arg::new("size")
                .long("size")
                .help("Size of a new file, e.g. 50M, 2G"),
        )
        .arg(
            Arg::new("append")
                .long("append")
                .help("Append about this many bytes to an existing FileStorage"),
        )
        .arg(
            Arg::new("seed")
                .long("seed")
                .default_value("1")
                .help("PRNG seed (u64)"),
        )
        .get_matches();
    let out = PathBuf::from(m.get_one::<String>("out").unwrap());
    let seed: u64 = m.get_one::<String>("seed").unwrap().parse()?;
    let size = m
        .get_one::<String>("size")
        .map(|s| parse_size(s))
        .transpose()?;
    let append = m
        .get_one::<String>("append")
        .map(|s| parse_size(s))
        .transpose()?;
    let start = Instant::now();

    let mut rng = Rng::new(seed);
    let pool = make_text_pool(&mut rng, 16 << 20);

    let (mut gen, clock, target, file, mode) = match (size, append) {
        (Some(size), None) => {
            let f = File::create(&out)?;
            let g = Gen {
                rng,
                pool,
                last_pos: Vec::with_capacity((size / 500) as usize + 1024),
                next_oid: 0,
                distinct: 0,
                records: 0,
                txns: 0,
                pos: 4,
                seed,
                p_new: 0.6,
                txn: Vec::with_capacity(8 << 20),
                pickle: Vec::with_capacity(128 << 10),
            };
            (
                g,
                Clock {
                    now: tid_to_datetime(START_TID),
                    last: START_TID - 1,
                },
                size.max(4 + 1),
                f,
                "wrote",
            )
        }
        (None, Some(extra)) => {
            let s = scan(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let mut f = OpenOptions::new().write(true).open(&out)?;
            // scan() ends at the file's size (it rejects a torn tail); append there.
            f.set_len(s.end)?;
            f.seek(SeekFrom::Start(s.end))?;
            let g = Gen {
                rng: Rng::new(mix(seed ^ s.last_tid)),
                pool,
                last_pos: s.last_pos,
                next_oid: s.max_oid.map_or(0, |m| m + 1),
                distinct: s.distinct,
                records: s.records,
                txns: s.txns,
                pos: s.end,
                seed,
                p_new: 0.4,
                txn: Vec::with_capacity(8 << 20),
                pickle: Vec::with_capacity(128 << 10),
            };
            let clock = if s.txns == 0 {
                Clock {
                    now: tid_to_datetime(START_TID),
                    last: START_TID - 1,
                }
            } else {
                Clock::after(s.last_tid)
            };
            (g, clock, s.end + extra, f, "appended")
        }
        _ => return Err("give exactly one of --size or --append".into()),
    };
    let mut clock = clock;
    let begin_pos = gen.pos;
    let (txns0, recs0) = (gen.txns, gen.records);
    let mut w = BufWriter::with_capacity(4 << 20, file);
    if gen.pos == 4 {
        w.write_all(MAGIC)?;
    }
    while gen.pos < target {
        let tid = clock.tick(&mut gen.rng);
        // Keep the final size close to the target.
        let budget = (target - gen.pos).max(TXN_HEADER as u64 + 300);
        gen.build_txn(tid, budget);
        w.write_all(&gen.txn)?;
        gen.pos += gen.txn.len() as u64;
    }
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    let secs = start.elapsed().as_secs_f64();
    let written = gen.pos - begin_pos;
    println!(
        "genfs: {mode} {} bytes to {} in {:.2}s ({:.0} MB/s); file {} bytes, {} transactions ({} new), {} data records ({} new), {} distinct oids, max oid {}, last tid {:016x}",
        written,
        out.display(),
        secs,
        written as f64 / 1e6 / secs.max(1e-9),
        gen.pos,
        gen.txns,
        gen.txns - txns0,
        gen.records,
        gen.records - recs0,
        gen.distinct,
        gen.next_oid.saturating_sub(1),
        clock.last
    );
    Ok(())
}
