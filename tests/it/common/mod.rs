//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// Appends valid FileStorage transactions (the record layout of
/// docs/format.md) to make databases of any size quickly.
pub struct Db {
    pub bytes: Vec<u8>,
    pub tid: u64,
    pub seed: u64,
}

impl Db {
    pub fn new() -> Db {
        Db {
            bytes: b"FS30".to_vec(),
            tid: 0x03e0_0000_0000_0000,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn rand(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// One transaction of `n` records of up to `max` bytes.
    pub fn txn(&mut self, n: usize, max: u64) {
        self.tid += 1;
        let tpos = self.bytes.len() as u64;
        // Distinct oids, as ZODB writes them: FileStorage's sanity check
        // (and so whether recover installs an index) assumes it.
        let mut recs: Vec<(u64, u64)> = Vec::with_capacity(n);
        while recs.len() < n.min(5000) {
            let oid = self.rand() % 5000;
            if recs.iter().all(|&(o, _)| o != oid) {
                let len = 1 + self.rand() % max;
                recs.push((oid, len));
            }
        }
        let body: u64 = recs.iter().map(|&(_, l)| 42 + l).sum();
        let tlen = 23 + body;
        let b = &mut self.bytes;
        b.extend_from_slice(&self.tid.to_be_bytes());
        b.extend_from_slice(&tlen.to_be_bytes());
        b.extend_from_slice(&[b' ', 0, 0, 0, 0, 0, 0]);
        for (oid, plen) in recs {
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&self.tid.to_be_bytes());
            b.extend_from_slice(&0u64.to_be_bytes());
            b.extend_from_slice(&tpos.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&plen.to_be_bytes());
            let start = b.len();
            b.resize(start + plen as usize, 0);
            for (i, x) in b[start..].iter_mut().enumerate() {
                *x = (i as u64 * 7 + oid) as u8 | 0x20;
            }
        }
        b.extend_from_slice(&tlen.to_be_bytes());
    }

    pub fn grow(&mut self, txns: usize) {
        for _ in 0..txns {
            self.txn(50, 2000);
        }
    }

    pub fn save(&self, path: &Path) {
        fs::write(path, &self.bytes).unwrap();
    }
}

/// The `.index` at `index` (a backup's, or one recover installed) says
/// exactly what a scan of `data` from its first byte finds: the same
/// position, the same oid -> offset map.
pub fn assert_index_is_a_scan(data: &Path, index: &Path, what: &str) {
    let saved = repozo::filestorage::index_file::load(std::io::BufReader::new(
        fs::File::open(index).unwrap_or_else(|e| panic!("{what}: {}: {e}", index.display())),
    ))
    .unwrap_or_else(|e| panic!("{what}: {}: {e}", index.display()));
    let src = repozo::datafs::Source::open(data.to_str().unwrap()).unwrap();
    let scan = src.walk(0, None, None).unwrap();
    assert_eq!(
        saved.pos,
        scan.end,
        "{what}: position of {}",
        index.display()
    );
    assert!(
        saved.index == scan.index,
        "{what}: {} differs from a scan of {}",
        index.display(),
        data.display()
    );
}

/// Run the binary in `dir`, with "now" fixed to `now` (or the real clock).
pub fn repozo(dir: &Path, now: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repozo"));
    c.args(args).current_dir(dir);
    match now {
        Some(now) => c.env("REPOZO_TEST_NOW", now),
        None => c.env_remove("REPOZO_TEST_NOW"),
    };
    c.output().unwrap()
}

pub fn ok(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what}: exit {:?}: {err}",
        out.status.code()
    );
    err
}

pub fn fails(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    err.trim_end().to_string()
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != repozo::repository::lock::LOCK_NAME)
        .collect();
    v.sort();
    v
}

/// A workspace with `repo/` and a Data.fs of `txns` transactions.
pub fn workspace(txns: usize) -> (TempDir, Db) {
    let t = TempDir::new().unwrap();
    fs::create_dir(t.path().join("repo")).unwrap();
    let mut db = Db::new();
    db.grow(txns);
    db.save(&t.path().join("Data.fs"));
    (t, db)
}

pub const B: &[&str] = &["-B", "-r", "repo", "-f", "Data.fs"];

pub fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

/// Recover into `out.fs` and check bytes and installed index.
pub fn recovers_to(dir: &Path, now: &str, want: &[u8], what: &str) {
    let _ = fs::remove_file(dir.join("out.fs"));
    ok(
        &repozo(dir, Some(now), &["-R", "-r", "repo", "-o", "out.fs"]),
        what,
    );
    assert!(
        fs::read(dir.join("out.fs")).unwrap() == want,
        "{what}: bytes"
    );
    assert_index_is_a_scan(&dir.join("out.fs"), &dir.join("out.fs.index"), what);
}
