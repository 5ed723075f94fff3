//! md5, as `.dat` logs and verify need it: OpenSSL's (the fastest we
//! measured, docs/benchmarks.md), on a thread of its own beside the copy
//! when threads can be had, and the hex form `hexdigest()` gives.

use std::fmt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use openssl::error::ErrorStack;
use openssl::hash::{Hasher, MessageDigest};

use crate::error::{io_err, Error, Result};

/// OpenSSL could not compute an md5: it has no md5 (a FIPS-only
/// configuration), or failed to allocate.
#[derive(Debug)]
pub struct Md5Error(ErrorStack);

impl fmt::Display for Md5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "md5: OpenSSL failed: {}", self.0)
    }
}

impl std::error::Error for Md5Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The one md5 of the crate. An OpenSSL failure is kept, and returned by
/// [`Md5::finish`], so that hashing inside a read loop needs no error path
/// of its own.
pub(crate) struct Md5 {
    state: std::result::Result<Hasher, ErrorStack>,
}

impl Md5 {
    pub(crate) fn new() -> Md5 {
        Md5 {
            state: Hasher::new(MessageDigest::md5()),
        }
    }

    /// Hash `bytes` next.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if let Ok(h) = &mut self.state {
            if let Err(e) = h.update(bytes) {
                self.state = Err(e);
            }
        }
    }

    /// The hex digest of everything passed to [`Md5::update`].
    ///
    /// # Errors
    /// [`Error::Md5`] if OpenSSL failed at any step.
    pub(crate) fn finish(self) -> Result<String> {
        let digest = self.state.and_then(|mut h| h.finish());
        digest.map(|d| hex(&d)).map_err(|e| Error::Md5(Md5Error(e)))
    }

    /// The hex md5 of `bytes`.
    ///
    /// # Errors
    /// As [`Md5::finish`].
    pub(crate) fn digest(bytes: &[u8]) -> Result<String> {
        let mut h = Md5::new();
        h.update(bytes);
        h.finish()
    }
}

/// Chunks queued for the md5 thread before a writer waits for it.
const MD5_QUEUE: usize = 2;

/// md5 computed on its own thread, so hashing overlaps reading and writing.
pub(crate) struct Md5Thread {
    tx: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<Result<String>>>,
    /// Where no thread could be started: the hash, computed in `update`.
    inline: Option<Md5>,
}

impl Md5Thread {
    /// Start the hashing thread.
    pub(crate) fn spawn() -> Md5Thread {
        let (tx, rx) = sync_channel::<Vec<u8>>(MD5_QUEUE);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(MD5_QUEUE + 2);
        let spawned = thread::Builder::new().spawn(move || {
            let mut h = Md5::new();
            for buf in rx {
                h.update(&buf);
                // Give the buffer back for reuse; if the writer is gone or
                // has enough spares, just drop it.
                let _ = spare_tx.try_send(buf);
            }
            h.finish()
        });
        match spawned {
            Ok(handle) => Md5Thread {
                tx: Some(tx),
                spare,
                handle: Some(handle),
                inline: None,
            },
            // A process limit (`ulimit -u`, a cgroup's `pids.max`): hashed
            // on the caller's thread, slower but never a panic.
            Err(_) => Md5Thread {
                tx: None,
                spare,
                handle: None,
                inline: Some(Md5::new()),
            },
        }
    }

    /// Hash `bytes` next.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.inline {
            h.update(bytes);
            return;
        }
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        if let Some(tx) = &self.tx {
            tx.send(buf).expect("the md5 thread outlives its sender");
        }
    }

    /// Hash `buf` next, taking it without a copy; returns an empty buffer
    /// to fill for the next call (one the thread is done with, when it has
    /// one).
    pub(crate) fn update_owned(&mut self, mut buf: Vec<u8>) -> Vec<u8> {
        if let Some(h) = &mut self.inline {
            h.update(&buf);
            buf.clear();
            return buf;
        }
        let mut spare = self.spare.try_recv().unwrap_or_default();
        spare.clear();
        if let Some(tx) = &self.tx {
            tx.send(buf).expect("the md5 thread outlives its sender");
        }
        spare
    }

    /// The hex digest of everything passed to [`Md5Thread::update`].
    ///
    /// # Errors
    /// As [`Md5::finish`].
    pub fn finish(mut self) -> Result<String> {
        if let Some(h) = self.inline.take() {
            return h.finish();
        }
        self.tx.take();
        self.handle
            .take()
            .expect("finished once")
            .join()
            .expect("the md5 thread does not panic")
    }
}

impl Drop for Md5Thread {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Lowercase hex, as `hexdigest()`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copy `src` to `dst` whole, hashing the bytes on the way. A file of
/// more than [`THREADED_FROM`] bytes is hashed on a thread of its own,
/// beside the copy; a smaller one (most blob files) here, where a thread
/// would cost more than it saves. Returns the size and the md5.
///
/// # Errors
/// Reading, said against `src_shown`; writing, against `dst_shown`.
pub(crate) fn copy_hashed(
    src: &mut impl std::io::Read,
    dst: &mut impl std::io::Write,
    src_shown: &str,
    dst_shown: &str,
) -> Result<(u64, String)> {
    let mut size = 0u64;
    let mut read = |buf: &mut [u8]| {
        crate::read_full(buf, |b, _| src.read(b)).map_err(io_err(src_shown, "read"))
    };
    // The first 64 KiB decide, so that a small file costs no large buffer.
    const SMALL: usize = 1 << 16;
    let mut buf = vec![0u8; SMALL];
    let mut n = read(&mut buf)?;
    if n == SMALL {
        buf.resize(THREADED_FROM, 0);
        n += read(&mut buf[SMALL..])?;
    }
    if n < THREADED_FROM {
        let sum = Md5::digest(&buf[..n])?;
        dst.write_all(&buf[..n])
            .map_err(io_err(dst_shown, "write"))?;
        return Ok((n as u64, sum));
    }
    let mut h = Md5Thread::spawn();
    while n > 0 {
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .map_err(io_err(dst_shown, "write"))?;
        size += n as u64;
        n = read(&mut buf)?;
    }
    Ok((size, h.finish()?))
}

/// Files this long or longer are hashed on a thread of their own.
pub(crate) const THREADED_FROM: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn copies_of_any_length_hash_as_md5_does() {
        for len in [
            0,
            1,
            THREADED_FROM - 1,
            THREADED_FROM,
            3 * THREADED_FROM + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            let (n, sum) = copy_hashed(&mut &data[..], &mut out, "src", "dst").unwrap();
            assert_eq!((n, out == data), (len as u64, true), "{len}");
            assert_eq!(sum, Md5::digest(&data).unwrap(), "{len}");
        }
    }

    #[test]
    fn md5_thread_matches_a_direct_digest() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31) as u8).collect();
        let mut t = Md5Thread::spawn();
        for c in data.chunks(65_537) {
            t.update(c);
        }
        assert_eq!(t.finish().unwrap(), Md5::digest(&data).unwrap());
    }

    /// An OpenSSL failure is kept past later updates and returned at the
    /// end, as our error.
    #[test]
    fn an_openssl_failure_is_an_error_not_a_panic() {
        let mut h = Md5 {
            state: Err(ErrorStack::get()),
        };
        h.update(b"more");
        assert!(matches!(h.finish(), Err(Error::Md5(_))));
    }

    /// RFC 1321's test suite, and a million bytes fed in uneven pieces.
    #[test]
    fn md5_is_rfc_1321s() {
        for (text, sum) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(Md5::digest(text.as_bytes()).unwrap(), sum, "{text:?}");
        }
        let mut h = Md5::new();
        let million = vec![b'a'; 1_000_000];
        for piece in million.chunks(4099) {
            h.update(piece);
        }
        assert_eq!(h.finish().unwrap(), "7707d6ae4e027c70eea2a935c2296f21");
    }
}
