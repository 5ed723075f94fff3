//! The subset of Python's pickle format that `.index` files use.
//!
//! `fsIndex.save` writes a stream of small pickles: an int, `(bytes, bytes)`
//! tuples, and `None`. Python 3 ZODB writes protocol 3 (`bytes` opcodes);
//! Python 2 ZODB wrote protocol 1 (`str` opcodes); ZODB 3.9 and before
//! pickled a whole dict. `Reader` is a small stack machine for the opcodes
//! those writers emit, and treats everything else (globals, reductions,
//! persistent ids) as an error: an index never needs code to be loaded.
//! Lengths come from untrusted bytes, so nothing is allocated ahead of the
//! bytes actually read. `Writer` emits exactly the opcodes ZODB's pickler
//! emits in `fast` mode (no memo), so that our files are byte-identical.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};

/// Protocol 2+ header opcode.
const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const INT: u8 = b'I';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG: u8 = b'L';
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const STRING: u8 = b'S';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const BINUNICODE: u8 = b'X';
const SHORT_BINUNICODE: u8 = 0x8c;
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const EMPTY_LIST: u8 = b']';
const LIST: u8 = b'l';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const DICT: u8 = b'd';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const PUT: u8 = b'p';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const GET: u8 = b'g';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const POP: u8 = b'0';

/// Deepest nesting of containers a reader accepts; an index needs two.
const MAX_DEPTH: usize = 64;
/// Most values on the stack at once; an index needs three.
const MAX_STACK: usize = 64 * 1024;
/// Memo references may copy at most this much, or four times the bytes
/// read, whichever is more: enough for any real pickle, and no way to grow
/// memory exponentially from a few bytes.
const MEMO_COPY_FLOOR: u64 = 1 << 20;
/// Longest text-mode line (INT, LONG, STRING, PUT) a reader accepts.
const MAX_LINE: usize = 4096;

/// A value an index pickle can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// Python 3 `bytes` or Python 2 `str`.
    Bytes(Vec<u8>),
    /// Python `unicode`/`str` text.
    Text(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

/// Dropping a value moves its children onto a list and drops them from
/// there, so that it never recurses, however deep a value nests (the
/// reader bounds the depth too; a value built otherwise is not bounded).
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
        }
    }
}

fn take_children(v: &mut Value, into: &mut Vec<Value>) {
    match v {
        Value::Tuple(items) | Value::List(items) => into.append(items),
        Value::Dict(pairs) => {
            for (k, x) in pairs.drain(..) {
                into.push(k);
                into.push(x);
            }
        }
        _ => {}
    }
}

impl Value {
    /// Python's truth value, which `fsIndex.load` uses to find the end.
    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Bytes(b) => !b.is_empty(),
            Value::Text(t) => !t.is_empty(),
            Value::Tuple(v) | Value::List(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }

    /// Roughly the memory a copy of this value takes: one per node, plus
    /// the bytes of strings.
    pub(crate) fn weight(&self) -> u64 {
        1 + match self {
            Value::Bytes(b) => b.len() as u64,
            Value::Text(t) => t.len() as u64,
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::weight).sum(),
            Value::Dict(d) => d.iter().map(|(k, v)| k.weight() + v.weight()).sum(),
            _ => 0,
        }
    }

    /// A short description for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Bytes(_) => "a byte string",
            Value::Text(_) => "a text string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
        }
    }
}

/// Why a pickle could not be read; offsets count from the stream's start.
#[derive(Debug)]
pub enum PickleError {
    /// An I/O error.
    Io(io::Error),
    /// The stream ended inside a pickle.
    Truncated {
        /// Where in the stream.
        offset: u64,
    },
    /// An opcode an index never holds.
    UnsupportedOpcode {
        /// Where in the stream.
        offset: u64,
        /// The opcode.
        opcode: u8,
    },
    /// The opcodes do not form a value (stack underflow, bad mark, bad text).
    Malformed {
        /// Where in the stream.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleError::Io(e) => write!(f, "{e}"),
            PickleError::Truncated { offset } => write!(f, "pickle truncated at offset {offset}"),
            PickleError::UnsupportedOpcode { offset, opcode } => {
                write!(f, "unexpected pickle opcode 0x{opcode:02x}")?;
                if opcode.is_ascii_graphic() {
                    write!(f, " ('{}')", *opcode as char)?;
                }
                write!(f, " at offset {offset}")
            }
            PickleError::Malformed { offset, reason } => {
                write!(f, "malformed pickle at offset {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for PickleError {}

/// A stack entry; a value carries how deeply it nests (0 for a scalar),
/// so that depth is bounded as values are built, never measured by
/// walking them (which would recurse as deep as the input says).
enum Slot {
    Mark,
    Value(Value, usize),
}

impl Slot {
    fn leaf(v: Value) -> Slot {
        Slot::Value(v, 0)
    }
}

/// Reads successive pickles from a stream.
pub(crate) struct Reader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Reader<R> {
    /// A reader at the start of `inner`.
    pub fn new(inner: R) -> Reader<R> {
        Reader { inner, offset: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Read one pickle up to and including its STOP opcode.
    ///
    /// Returns `Ok(None)` at a clean end of stream (no byte left).
    ///
    /// # Errors
    /// [`PickleError`] for I/O errors, truncation and opcodes outside the
    /// subset.
    pub fn load(&mut self) -> Result<Option<Value>, PickleError> {
        let mut stack: Vec<Slot> = Vec::new();
        let mut memo: HashMap<u64, (Value, usize)> = HashMap::new();
        let mut first = true;
        let start = self.offset;
        let mut marks = 0usize;
        let mut copied = 0u64;
        loop {
            let at = self.offset;
            let op = match self.byte_or_eof()? {
                Some(op) => op,
                None if first => return Ok(None),
                None => return Err(PickleError::Truncated { offset: at }),
            };
            first = false;
            let malformed = |reason| PickleError::Malformed { offset: at, reason };
            match op {
                PROTO => {
                    let v = self.byte()?;
                    if v > 5 {
                        return Err(malformed("unknown protocol version"));
                    }
                }
                STOP => {
                    return match (stack.pop(), stack.is_empty()) {
                        (Some(Slot::Value(v, _)), true) => Ok(Some(v)),
                        _ => Err(malformed("STOP without exactly one value on the stack")),
                    };
                }
                MARK => {
                    stack.push(Slot::Mark);
                    marks += 1;
                }
                NONE => stack.push(Slot::leaf(Value::None)),
                NEWTRUE => stack.push(Slot::leaf(Value::Bool(true))),
                NEWFALSE => stack.push(Slot::leaf(Value::Bool(false))),
                BININT => {
                    let b = self.array::<4>()?;
                    stack.push(Slot::leaf(Value::Int(i32::from_le_bytes(b).into())));
                }
                BININT1 => stack.push(Slot::leaf(Value::Int(self.byte()?.into()))),
                BININT2 => {
                    let b = self.array::<2>()?;
                    stack.push(Slot::leaf(Value::Int(u16::from_le_bytes(b).into())));
                }
                INT => {
                    let line = self.line()?;
                    let v = match line.as_slice() {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => Value::Int(parse_int(&line).ok_or(malformed("bad INT text"))?),
                    };
                    stack.push(Slot::leaf(v));
                }
                LONG => {
                    let mut line = self.line()?;
                    if line.last() == Some(&b'L') {
                        line.pop();
                    }
                    let v = parse_int(&line).ok_or(malformed("bad LONG text"))?;
                    stack.push(Slot::leaf(Value::Int(v)));
                }
                LONG1 | LONG4 => {
                    let n = if op == LONG1 {
                        u64::from(self.byte()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.array::<4>()?))
                    };
                    if n > 16 {
                        return Err(malformed("integer too large for an index"));
                    }
                    let b = self.bytes(n)?;
                    stack.push(Slot::leaf(Value::Int(decode_long(&b))));
                }
                SHORT_BINSTRING | SHORT_BINBYTES => {
                    let n = self.byte()?;
                    let b = self.bytes(n.into())?;
                    stack.push(Slot::leaf(Value::Bytes(b)));
                }
                BINSTRING | BINBYTES => {
                    let n = u32::from_le_bytes(self.array::<4>()?);
                    let b = self.bytes(n.into())?;
                    stack.push(Slot::leaf(Value::Bytes(b)));
                }
                STRING => {
                    let line = self.line()?;
                    let b = parse_string_repr(&line).ok_or(malformed("bad STRING text"))?;
                    stack.push(Slot::leaf(Value::Bytes(b)));
                }
                SHORT_BINUNICODE | BINUNICODE => {
                    let n = if op == SHORT_BINUNICODE {
                        u64::from(self.byte()?)
                    } else {
                        u64::from(u32::from_le_bytes(self.array::<4>()?))
                    };
                    let b = self.bytes(n)?;
                    let s = String::from_utf8(b).map_err(|_| malformed("text is not UTF-8"))?;
                    stack.push(Slot::leaf(Value::Text(s)));
                }
                EMPTY_TUPLE => stack.push(Slot::Value(Value::Tuple(Vec::new()), 1)),
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    let (items, d) =
                        pop_values(&mut stack, n).ok_or(malformed("stack underflow"))?;
                    stack.push(Slot::Value(Value::Tuple(items), d + 1));
                }
                TUPLE => {
                    let (items, d) = pop_to_mark(&mut stack, &mut marks)
                        .ok_or(malformed("TUPLE without MARK"))?;
                    stack.push(Slot::Value(Value::Tuple(items), d + 1));
                }
                EMPTY_LIST => stack.push(Slot::Value(Value::List(Vec::new()), 1)),
                LIST => {
                    let (items, d) = pop_to_mark(&mut stack, &mut marks)
                        .ok_or(malformed("LIST without MARK"))?;
                    stack.push(Slot::Value(Value::List(items), d + 1));
                }
                APPEND | APPENDS => {
                    let (items, d) = if op == APPEND {
                        pop_values(&mut stack, 1).ok_or(malformed("stack underflow"))?
                    } else {
                        pop_to_mark(&mut stack, &mut marks)
                            .ok_or(malformed("APPENDS without MARK"))?
                    };
                    match stack.last_mut() {
                        Some(Slot::Value(Value::List(l), depth)) => {
                            l.extend(items);
                            *depth = (*depth).max(d + 1);
                        }
                        _ => return Err(malformed("APPEND to something not a list")),
                    }
                }
                EMPTY_DICT => stack.push(Slot::Value(Value::Dict(Vec::new()), 1)),
                DICT | SETITEMS | SETITEM => {
                    let (items, d) = if op == SETITEM {
                        pop_values(&mut stack, 2).ok_or(malformed("stack underflow"))?
                    } else {
                        pop_to_mark(&mut stack, &mut marks)
                            .ok_or(malformed("dict items without MARK"))?
                    };
                    if items.len() % 2 != 0 {
                        return Err(malformed("odd number of dict items"));
                    }
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if op == DICT {
                        stack.push(Slot::Value(Value::Dict(pairs), d + 1));
                    } else {
                        match stack.last_mut() {
                            Some(Slot::Value(Value::Dict(dict), depth)) => {
                                dict.extend(pairs);
                                *depth = (*depth).max(d + 1);
                            }
                            _ => return Err(malformed("SETITEM on something not a dict")),
                        }
                    }
                }
                PUT | BINPUT | LONG_BINPUT => {
                    let key = match op {
                        PUT => parse_int(&self.line()?)
                            .and_then(|i| u64::try_from(i).ok())
                            .ok_or(malformed("bad PUT index"))?,
                        BINPUT => self.byte()?.into(),
                        _ => u32::from_le_bytes(self.array::<4>()?).into(),
                    };
                    match stack.last() {
                        Some(Slot::Value(v, depth)) => {
                            copied += v.weight();
                            if copied > MEMO_COPY_FLOOR.max(4 * (self.offset - start)) {
                                return Err(malformed(
                                    "memo references expand far beyond the input",
                                ));
                            }
                            memo.insert(key, (v.clone(), *depth));
                        }
                        _ => return Err(malformed("PUT with no value")),
                    }
                }
                GET | BINGET | LONG_BINGET => {
                    let key = match op {
                        GET => parse_int(&self.line()?)
                            .and_then(|i| u64::try_from(i).ok())
                            .ok_or(malformed("bad GET index"))?,
                        BINGET => self.byte()?.into(),
                        _ => u32::from_le_bytes(self.array::<4>()?).into(),
                    };
                    let (v, depth) = memo.get(&key).ok_or(malformed("GET of a missing memo"))?;
                    copied += v.weight();
                    if copied > MEMO_COPY_FLOOR.max(4 * (self.offset - start)) {
                        return Err(malformed("memo references expand far beyond the input"));
                    }
                    stack.push(Slot::Value(v.clone(), *depth));
                }
                POP => {
                    if let Slot::Mark = stack.pop().ok_or(malformed("stack underflow"))? {
                        marks -= 1;
                    }
                }
                _ => {
                    return Err(PickleError::UnsupportedOpcode {
                        offset: at,
                        opcode: op,
                    })
                }
            }
            let too_deep = matches!(stack.last(), Some(Slot::Value(_, d)) if *d > MAX_DEPTH);
            if stack.len() > MAX_STACK || marks > MAX_DEPTH || too_deep {
                return Err(malformed("nested too deeply"));
            }
        }
    }

    fn byte_or_eof(&mut self) -> Result<Option<u8>, PickleError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PickleError::Io(e)),
            }
        }
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        self.byte_or_eof()?.ok_or(PickleError::Truncated {
            offset: self.offset,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let v = self.bytes(N as u64)?;
        Ok(v.try_into().expect("exact length"))
    }

    /// Exactly `n` bytes; memory grows only with bytes that really arrive.
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, PickleError> {
        let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
        let got = (&mut self.inner)
            .take(n)
            .read_to_end(&mut out)
            .map_err(PickleError::Io)?;
        self.offset += got as u64;
        if (got as u64) < n {
            return Err(PickleError::Truncated {
                offset: self.offset,
            });
        }
        Ok(out)
    }

    fn line(&mut self) -> Result<Vec<u8>, PickleError> {
        let start = self.offset;
        let mut out = Vec::new();
        loop {
            let b = self.byte()?;
            if b == b'\n' {
                return Ok(out);
            }
            if out.len() >= MAX_LINE {
                return Err(PickleError::Malformed {
                    offset: start,
                    reason: "text line too long",
                });
            }
            out.push(b);
        }
    }
}

/// The top `n` values and how deeply the deepest nests.
fn pop_values(stack: &mut Vec<Slot>, n: usize) -> Option<(Vec<Value>, usize)> {
    if stack.len() < n {
        return None;
    }
    values(stack.split_off(stack.len() - n))
}

fn values(slots: Vec<Slot>) -> Option<(Vec<Value>, usize)> {
    let mut deepest = 0;
    let mut out = Vec::with_capacity(slots.len());
    for s in slots {
        match s {
            Slot::Value(v, d) => {
                deepest = deepest.max(d);
                out.push(v);
            }
            Slot::Mark => return None,
        }
    }
    Some((out, deepest))
}

/// Pop the values above the topmost mark, and the mark (`marks` counts the
/// marks on the stack).
fn pop_to_mark(stack: &mut Vec<Slot>, marks: &mut usize) -> Option<(Vec<Value>, usize)> {
    let mark = stack.iter().rposition(|s| matches!(s, Slot::Mark))?;
    let tail = stack.split_off(mark + 1);
    stack.pop();
    *marks -= 1;
    values(tail)
}

fn parse_int(text: &[u8]) -> Option<i128> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Two's-complement little-endian, as `pickle.decode_long`.
fn decode_long(b: &[u8]) -> i128 {
    if b.is_empty() {
        return 0;
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let mut full = [if negative { 0xff } else { 0 }; 16];
    full[..b.len()].copy_from_slice(b);
    i128::from_le_bytes(full)
}

/// Two's-complement little-endian in the fewest bytes, as `pickle.encode_long`.
fn encode_long(v: u64) -> Vec<u8> {
    if v == 0 {
        return Vec::new();
    }
    let nbytes = ((64 - v.leading_zeros()) >> 3) as usize + 1;
    let mut b = (u128::from(v)).to_le_bytes().to_vec();
    b.truncate(nbytes);
    b
}

/// The Python 2 `repr` of a str, as the text-mode STRING opcode holds it.
fn parse_string_repr(line: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = line.split_first()?;
    if (q != b'\'' && q != b'"') || rest.last() != Some(&q) {
        return None;
    }
    let body = &rest[..rest.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Which pickler's output to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// ZODB 5/6 on Python 3: protocol 3, `bytes`.
    Protocol3,
    /// ZODB on Python 2 (cPickle): protocol 1, `str`.
    Protocol1,
}

/// Writes pickles the way ZODB's pickler does in `fast` mode.
pub(crate) struct Writer<W> {
    inner: W,
    dialect: Dialect,
}

impl<W: Write> Writer<W> {
    /// A writer of `dialect` pickles into `inner`.
    pub fn new(inner: W, dialect: Dialect) -> Writer<W> {
        Writer { inner, dialect }
    }

    /// The underlying writer.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }

    fn begin(&mut self) -> io::Result<()> {
        match self.dialect {
            Dialect::Protocol3 => self.inner.write_all(&[PROTO, 3]),
            Dialect::Protocol1 => Ok(()),
        }
    }

    /// One pickle holding a non-negative int.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub(crate) fn dump_int(&mut self, v: u64) -> io::Result<()> {
        self.begin()?;
        if let Ok(b) = u8::try_from(v) {
            self.inner.write_all(&[BININT1, b])?;
        } else if let Ok(w) = u16::try_from(v) {
            self.inner.write_all(&[BININT2])?;
            self.inner.write_all(&w.to_le_bytes())?;
        } else if let Some(d) = u32::try_from(v).ok().filter(|&d| d < 0x8000_0000) {
            // BININT is signed: the top bit is for LONG1.
            self.inner.write_all(&[BININT])?;
            self.inner.write_all(&d.to_le_bytes())?;
        } else {
            match self.dialect {
                Dialect::Protocol3 => {
                    let b = encode_long(v);
                    self.inner.write_all(&[LONG1, small_len(b.len())?])?;
                    self.inner.write_all(&b)?;
                }
                // cPickle writes a Python 2 int too wide for BININT as text.
                Dialect::Protocol1 => writeln!(self.inner, "I{v}")?,
            }
        }
        self.inner.write_all(&[STOP])
    }

    /// One pickle holding a 2-tuple of byte strings.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub(crate) fn dump_pair(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        self.begin()?;
        match self.dialect {
            Dialect::Protocol3 => {
                self.bytes(a)?;
                self.bytes(b)?;
                self.inner.write_all(&[TUPLE2, STOP])
            }
            Dialect::Protocol1 => {
                self.inner.write_all(&[MARK])?;
                self.bytes(a)?;
                self.bytes(b)?;
                self.inner.write_all(&[TUPLE, STOP])
            }
        }
    }

    /// One pickle holding `None`.
    ///
    /// # Errors
    /// I/O errors of the underlying writer.
    pub(crate) fn dump_none(&mut self) -> io::Result<()> {
        self.begin()?;
        self.inner.write_all(&[NONE, STOP])
    }

    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        let (short, long) = match self.dialect {
            Dialect::Protocol3 => (SHORT_BINBYTES, BINBYTES),
            Dialect::Protocol1 => (SHORT_BINSTRING, BINSTRING),
        };
        if b.len() < 0x100 {
            self.inner.write_all(&[short, small_len(b.len())?])?;
        } else {
            let n = u32::try_from(b.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string over 4 GiB"))?;
            self.inner.write_all(&[long])?;
            self.inner.write_all(&n.to_le_bytes())?;
        }
        self.inner.write_all(b)
    }
}

/// A length that a one-byte length field must hold.
fn small_len(n: usize) -> io::Result<u8> {
    u8::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "over 255 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load_all(bytes: &[u8]) -> Result<Vec<Value>, PickleError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(v) = r.load()? {
            out.push(v);
        }
        Ok(out)
    }

    #[test]
    fn protocol3_matches_zodb_bytes() {
        // fsIndex.save(1095, ...) of a 4-object database, as ZODB 6.4 wrote it.
        let mut w = Writer::new(Vec::new(), Dialect::Protocol3);
        w.dump_int(1095).unwrap();
        w.dump_pair(&[0; 6], &[0, 0, 0, 1]).unwrap();
        w.dump_none().unwrap();
        assert_eq!(
            w.into_inner(),
            b"\x80\x03M\x47\x04.\x80\x03C\x06\0\0\0\0\0\0C\x04\0\0\0\x01\x86.\x80\x03N.".to_vec()
        );
    }

    #[test]
    fn large_positions_use_long1_or_int_text() {
        let mut w = Writer::new(Vec::new(), Dialect::Protocol3);
        w.dump_int(1 << 31).unwrap();
        assert_eq!(w.into_inner(), b"\x80\x03\x8a\x05\0\0\0\x80\0.".to_vec());
        let mut w = Writer::new(Vec::new(), Dialect::Protocol1);
        w.dump_int(1 << 33).unwrap();
        assert_eq!(w.into_inner(), b"I8589934592\n.".to_vec());
    }

    #[test]
    fn reads_python2_opcodes() {
        let p = b"K\x05.(U\x02abT\x03\x00\x00\x00xyzt.L99L\n.S'a\\x00\\n'\n.N.";
        let v = load_all(p).unwrap();
        assert_eq!(
            v,
            vec![
                Value::Int(5),
                Value::Tuple(vec![
                    Value::Bytes(b"ab".to_vec()),
                    Value::Bytes(b"xyz".to_vec())
                ]),
                Value::Int(99),
                Value::Bytes(b"a\0\n".to_vec()),
                Value::None
            ]
        );
    }

    #[test]
    fn refuses_code_and_truncation() {
        assert!(matches!(
            load_all(b"cos\nsystem\n."),
            Err(PickleError::UnsupportedOpcode {
                offset: 0,
                opcode: b'c'
            })
        ));
        assert!(matches!(
            load_all(b"\x80\x03B\xff\xff\xff\x7fab"),
            Err(PickleError::Truncated { .. })
        ));
        assert!(matches!(
            load_all(b"\x80\x03K"),
            Err(PickleError::Truncated { .. })
        ));
        assert!(matches!(
            load_all(b"t."),
            Err(PickleError::Malformed { .. })
        ));
    }

    /// Fuzzing find: memo references doubling a list 40 times asked for
    /// terabytes from 328 bytes.
    #[test]
    fn regression_memo_doubling_is_refused() {
        let mut p = b"\x80\x02Nq\x00".to_vec();
        for _ in 0..40 {
            p.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        p.extend_from_slice(b"h\x00.");
        assert!(matches!(load_all(&p), Err(PickleError::Malformed { .. })));
    }

    /// Fuzzing find: PUT copies were not counted, so storing a large value
    /// in the memo again and again took minutes.
    #[test]
    fn regression_repeated_puts_are_counted() {
        let mut p = b"\x80\x02Nq\x00".to_vec();
        for _ in 0..20 {
            p.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        for _ in 0..200 {
            p.extend_from_slice(b"q\x00");
        }
        p.push(b'.');
        // Refused by the copy budget, which bounds the work whatever the
        // input (no clock: a test of time fails on a slow machine).
        match load_all(&p) {
            Err(PickleError::Malformed { reason, .. }) => {
                assert_eq!(reason, "memo references expand far beyond the input")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Issue 10: a million TUPLE1 opcodes over one value nest a million
    /// deep with no MARK at all; building (and dropping, and weighing) such
    /// a value overflowed the stack and aborted the process.
    #[test]
    fn regression_values_nested_without_marks_are_refused() {
        for op in [TUPLE1, TUPLE2, TUPLE3] {
            let width = usize::from(op - TUPLE1 + 1);
            let mut p = b"\x80\x03".to_vec();
            p.extend(std::iter::repeat_n(b'N', width));
            for _ in 0..1_000_000 {
                p.extend(std::iter::repeat_n(b'N', width - 1));
                p.push(op);
            }
            p.push(b'.');
            match load_all(&p) {
                Err(PickleError::Malformed { reason, .. }) => {
                    assert_eq!(reason, "nested too deeply")
                }
                other => panic!("{other:?}"),
            }
        }
        // Lists and dicts built by APPEND and SETITEM count too.
        let mut p = b"\x80\x03]".to_vec();
        p.extend(std::iter::repeat_n(EMPTY_LIST, 100));
        p.extend(std::iter::repeat_n(APPEND, 100));
        p.push(b'.');
        assert!(matches!(load_all(&p), Err(PickleError::Malformed { .. })));
        // And nesting to the bound is still fine.
        let mut p = b"\x80\x03N".to_vec();
        p.extend(std::iter::repeat_n(TUPLE1, MAX_DEPTH));
        p.push(b'.');
        assert!(load_all(&p).is_ok());
    }

    /// Issue 10: dropping a value a million deep recursed a million frames
    /// and overflowed the stack; it is a loop now.
    #[test]
    fn dropping_a_deep_value_does_not_recurse() {
        let mut v = Value::None;
        for i in 0..1_000_000 {
            v = match i % 3 {
                0 => Value::Tuple(vec![v]),
                1 => Value::List(vec![Value::Int(1), v]),
                _ => Value::Dict(vec![(Value::None, v)]),
            };
        }
        drop(v);
    }

    /// Fuzzing find: a long flat stack made every opcode rescan it.
    #[test]
    fn regression_a_deep_stack_is_refused_quickly() {
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b'N', 200_000));
        // Refused as soon as the stack passes its bound, not at the end.
        match load_all(&p) {
            Err(PickleError::Malformed { offset, reason }) => {
                assert_eq!(reason, "nested too deeply");
                assert_eq!(offset, 2 + MAX_STACK as u64);
            }
            other => panic!("{other:?}"),
        }
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b'(', 100));
        assert!(matches!(load_all(&p), Err(PickleError::Malformed { .. })));
    }

    proptest! {
        #[test]
        fn writer_output_reads_back(pos in any::<u64>(), a in proptest::collection::vec(any::<u8>(), 0..300), b in proptest::collection::vec(any::<u8>(), 0..300)) {
            for d in [Dialect::Protocol1, Dialect::Protocol3] {
                let mut w = Writer::new(Vec::new(), d);
                w.dump_int(pos).unwrap();
                w.dump_pair(&a, &b).unwrap();
                w.dump_none().unwrap();
                let v = load_all(&w.into_inner()).unwrap();
                prop_assert_eq!(v, vec![
                    Value::Int(pos.into()),
                    Value::Tuple(vec![Value::Bytes(a.clone()), Value::Bytes(b.clone())]),
                    Value::None,
                ]);
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = load_all(&bytes);
        }
    }
}
