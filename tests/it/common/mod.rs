//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use repozo::testing::{Builder, Txn};
use tempfile::TempDir;

/// A database that grows by random transactions: the crate's one test
/// builder, with a random source for oids and sizes.
pub struct Db {
    b: Builder,
    pub seed: u64,
}

impl std::ops::Deref for Db {
    type Target = Builder;
    fn deref(&self) -> &Builder {
        &self.b
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Builder {
        &mut self.b
    }
}

impl Db {
    pub fn new() -> Db {
        Db {
            b: Builder::new(),
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
        let t = Txn {
            tid_step: 1,
            status: b' ',
            meta: [b"", b"", b""],
            records: &recs,
        };
        self.b.append(&t, |oid, buf| {
            for (i, x) in buf.iter_mut().enumerate() {
                *x = (i as u64 * 7 + oid) as u8 | 0x20;
            }
        });
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

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_repozo");
/// "Now" for the runs of [`run`]: after every fixture's backups.
pub const NOW: &str = "2030-01-01-00-00-00";
/// A run that takes longer is killed and fails its test (a hang).
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    fs::read(fixture(rel)).unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A temporary directory holding `repo`, a copy of a fixture repository.
pub fn with_repo(fixture_repo: &str) -> TempDir {
    let t = TempDir::new().unwrap();
    copy_dir(&fixture(fixture_repo), &t.path().join("repo"));
    t
}

/// What a run showed: its exit code (`None`: killed after [`TIMEOUT`] or
/// by a signal), stdout and stderr.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
    }

    /// Exit 1 with exactly this one line on stderr.
    pub fn fails_with(&self, line: &str) {
        assert_eq!(self.code, Some(1), "stderr: {}", self.stderr);
        assert_eq!(self.stderr.trim_end(), line);
    }

    /// Exit 0 with exactly this one line on stderr.
    pub fn succeeds_saying(&self, line: &str) {
        self.ok();
        assert_eq!(self.stderr.trim_end(), line);
    }
}

pub fn run(dir: &Path, args: &[&str]) -> Ran {
    run_as(dir, &[], args, Stdio::piped())
}

/// Run the binary in `dir`, through `prefix` (`setpriv …`, `sh -c …`),
/// with this stdout; killed after [`TIMEOUT`].
pub fn run_as(dir: &Path, prefix: &[&str], args: &[&str], stdout: Stdio) -> Ran {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .env("REPOZO_TEST_NOW", NOW)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ran {
        code,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// Run the binary in `dir` with "now" fixed to `now`.
pub fn repozo_at(dir: &Path, now: &str, args: &[&str]) -> Output {
    repozo(dir, Some(now), args)
}

/// A mount, unmounted when dropped.
pub struct Mounted<'a>(pub &'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// Mount a tmpfs of `size` (`1m`) on `dir`; `None` where that is not
/// allowed (not root), for tests that then say SKIPPED.
pub fn mount_tmpfs<'a>(dir: &'a Path, size: &str) -> Option<Mounted<'a>> {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
        .then_some(Mounted(dir))
}

/// Every regular file under `dir` (links and `tmp/` left out), by path
/// relative to it, with its bytes.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if t.is_dir() && rel != "tmp" {
                walk(base, &e.path(), out);
            } else if t.is_file() {
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
