//! Where `-R` writes and how the repository's lock is taken: what a user
//! sees (exit status, the one stderr line, the files left) when `-o` names
//! something that must not be replaced, when the repository is damaged in
//! ways that used to recover "successfully" into a file ZODB cannot open,
//! and when the lock file is not what it should be.
//!
//! Each test is named after the bug it pins down; each failed before its
//! fix.

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::io::Read;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_repozo");
const NOW: &str = "2030-01-01-00-00-00";
/// `testdata/repo-plain`'s files.
const FULL: &str = "2024-01-01-10-00-00";
const INC1: &str = "2024-01-02-11-30-00.deltafs";
/// Data.fs as of the last backup of `testdata/repo-plain`, and its index.
const STATE: &str = "testdata/repo-plain/states/2024-01-03-12-45-30.fs";
/// A run that takes longer is killed and fails its test (a hang).
const TIMEOUT: Duration = Duration::from_secs(10);
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
];

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    fs::read(fixture(rel)).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A temporary directory holding `repo`, a copy of a fixture repository.
fn with_repo(fixture_repo: &str) -> TempDir {
    let t = TempDir::new().unwrap();
    copy_dir(&fixture(fixture_repo), &t.path().join("repo"));
    t
}

/// What a run showed: its exit code (`None`: killed after [`TIMEOUT`] or
/// by a signal), stdout and stderr.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn ok(&self) {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
    }

    /// Exit 1 with exactly this one line on stderr.
    fn fails_with(&self, line: &str) {
        assert_eq!(self.code, Some(1), "stderr: {}", self.stderr);
        assert_eq!(self.stderr.trim_end(), line);
    }
}

fn run(dir: &Path, args: &[&str]) -> Ran {
    run_as(dir, &[], args, Stdio::piped())
}

/// Run the binary in `dir`, through `prefix` (`setpriv …`, `sh -c …`),
/// with this stdout; killed after [`TIMEOUT`].
fn run_as(dir: &Path, prefix: &[&str], args: &[&str], stdout: Stdio) -> Ran {
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

/// Every entry of `dir` (the lock file included) with its bytes, links
/// shown as `-> target`.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let v = if t.is_symlink() {
                let to = fs::read_link(e.path()).unwrap();
                format!("-> {}", to.display()).into_bytes()
            } else if t.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                b"(not a file)".to_vec()
            };
            (e.file_name().to_string_lossy().into_owned(), v)
        })
        .collect()
}

fn is_root() -> bool {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    String::from_utf8_lossy(&uid).trim() == "0"
}

/// Regression: a plain backup file whose length differs from its `.dat`
/// line (overwritten by a recovery into the repository, or truncated) was
/// spliced in without -w, exit 0, making a Data.fs whose later
/// transactions sit at the wrong offsets. It is refused before a byte is
/// written, to a file or stdout; a gzip'd file, whose size is known only
/// once inflated, fails the run with the old output kept.
#[test]
fn regression_recover_checks_backup_sizes_against_the_dat() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    let state = read(STATE);
    fs::write(dir.join(format!("repo/{INC1}")), &state).unwrap();
    fs::write(dir.join("out.fs"), b"keep me").unwrap();
    let want = format!("repo/{INC1} is {} bytes, should be 4966 bytes", state.len());
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).fails_with(&want);
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), b"keep me");
    assert!(!dir.join("out.fs.part").exists());
    let ran = run(dir, &["-R", "-r", "repo"]);
    ran.fails_with(&want);
    assert!(
        ran.stdout.is_empty(),
        "{} bytes on stdout",
        ran.stdout.len()
    );

    let t = with_repo("testdata/repo-gzip");
    let dir = t.path();
    let dat = dir.join(format!("repo/{FULL}.dat"));
    let text = fs::read_to_string(&dat).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut last: Vec<String> = lines[2].split(' ').map(String::from).collect();
    let end: u64 = last[2].parse().unwrap();
    let start: u64 = last[1].parse().unwrap();
    last[2] = (end + 1).to_string();
    lines[2] = last.join(" ");
    fs::write(&dat, lines.join("\n") + "\n").unwrap();
    fs::write(dir.join("out.fs"), b"keep me").unwrap();
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).fails_with(&format!(
        "repo/2024-01-03-12-45-30.deltafsz is {} bytes (when uncompressed), should be {} bytes",
        end - start,
        end - start + 1
    ));
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), b"keep me");
    assert!(!dir.join("out.fs.part").exists());
}

/// Regression: `-r ""` (an unset `$REPO` in a cron line) backed up into
/// the current directory, exit 0. A usage error, like an empty `-f`/`-o`.
#[test]
fn regression_empty_repository_option_is_a_usage_error() {
    let t = TempDir::new().unwrap();
    let dir = t.path();
    fs::copy(fixture("testdata/sample/Data.fs"), dir.join("Data.fs")).unwrap();
    let before = contents(dir);
    for args in [
        &["-B", "-r", "", "-f", "Data.fs"][..],
        &["-V", "-r", ""][..],
        &["-R", "-r", "", "-o", "out.fs"][..],
    ] {
        let ran = run(dir, args);
        assert_eq!(ran.code, Some(1), "{args:?}: {}", ran.stderr);
        assert_eq!(
            ran.stderr.lines().next(),
            Some("repozo: --repository must not be empty"),
            "{args:?}"
        );
        assert!(contents(dir) == before, "{args:?} changed the directory");
    }
}

/// Regression: with the full backup deleted, the increments alone were
/// "recovered", exit 0, into a file without the FileStorage magic, and
/// `-V` blamed a missing `.dat`. Both say what is wrong.
#[test]
fn regression_chain_without_full_backup_is_refused() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    fs::remove_file(dir.join(format!("repo/{FULL}.fs"))).unwrap();
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).fails_with("No full backup in repository");
    let d = "2024-01-02-12";
    run(dir, &["-R", "-r", "repo", "-D", d, "-o", "out.fs"])
        .fails_with(&format!("No full backup in repository before {d}"));
    assert!(!dir.join("out.fs").exists() && !dir.join("out.fs.part").exists());
    let ran = run(dir, &["-R", "-r", "repo"]);
    ran.fails_with("No full backup in repository");
    assert!(ran.stdout.is_empty());
    run(dir, &["-V", "-r", "repo"]).fails_with("No full backup in repository");
}

/// Regression: under umask 077 the lock file was made 0600, and every
/// other user who could read the repository was locked out of `-V` and
/// `-R` ("cannot open: Permission denied"). It is 0644 whatever the umask,
/// and a shared lock needs only to read it.
#[test]
fn regression_lock_file_is_readable_whatever_the_umask() {
    let t = TempDir::new().unwrap();
    let dir = t.path();
    fs::set_permissions(dir, Permissions::from_mode(0o755)).unwrap();
    fs::copy(fixture("testdata/sample/Data.fs"), dir.join("Data.fs")).unwrap();
    fs::create_dir(dir.join("repo")).unwrap();
    fs::set_permissions(dir.join("repo"), Permissions::from_mode(0o755)).unwrap();
    let umask_077 = ["sh", "-c", "umask 077; exec \"$0\" \"$@\""];
    let backup = ["-B", "-r", "repo", "-f", "Data.fs"];
    run_as(dir, &umask_077, &backup, Stdio::piped()).ok();
    let lock = dir.join("repo").join(repozo::lock::LOCK_NAME);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&lock), 0o644, "lock file mode {:o}", mode(&lock));
    // One left 0600 by an older repozo is opened up by its owner's next run.
    fs::set_permissions(&lock, Permissions::from_mode(0o600)).unwrap();
    run_as(dir, &umask_077, &backup, Stdio::piped()).ok();
    assert_eq!(mode(&lock), 0o644, "lock file mode {:o}", mode(&lock));

    if !is_root() {
        eprintln!("SKIPPED -V and -R as nobody: not root");
        return;
    }
    let probe = run_as(dir, &AS_NOBODY, &["-h"], Stdio::piped());
    if probe.code != Some(0) {
        eprintln!("SKIPPED -V and -R as nobody: setpriv cannot run the binary");
        return;
    }
    run_as(dir, &AS_NOBODY, &["-V", "-r", "repo"], Stdio::piped()).ok();
    let ran = run_as(dir, &AS_NOBODY, &["-R", "-r", "repo"], Stdio::piped());
    ran.ok();
    assert!(ran.stdout == read("testdata/sample/Data.fs"));
}

/// Regression: `-V` or `-R` with a mistyped `-r` naming some directory
/// left a `.repozo.lock` in it. A shared lock creates no lock file where
/// there is no backup.
#[test]
fn regression_shared_lock_creates_no_lock_file_outside_a_repository() {
    let t = TempDir::new().unwrap();
    let dir = t.path();
    fs::create_dir(dir.join("docs")).unwrap();
    fs::write(dir.join("docs/notes.txt"), b"mine").unwrap();
    for args in [
        &["-V", "-r", "docs"][..],
        &["-R", "-r", "docs", "-o", "out.fs"][..],
    ] {
        run(dir, args).fails_with("No files in repository");
        assert_eq!(
            contents(&dir.join("docs")).into_keys().collect::<Vec<_>>(),
            ["notes.txt"],
            "{args:?}"
        );
    }
}

/// Regression: a FIFO named `.repozo.lock` was opened and locked as if it
/// were the lock file (exit 0), and a symbolic link so named was followed,
/// creating its target outside the repository. Both are refused at once.
#[test]
fn regression_lock_file_fifo_or_symlink_is_refused_without_blocking() {
    for kind in ["fifo", "symlink"] {
        let t = with_repo("testdata/repo-plain");
        let dir = t.path();
        fs::copy(fixture(STATE), dir.join("Data.fs")).unwrap();
        let lock = dir.join("repo").join(repozo::lock::LOCK_NAME);
        if kind == "fifo" {
            assert!(Command::new("mkfifo")
                .arg(&lock)
                .status()
                .unwrap()
                .success());
        } else {
            symlink("../victim", &lock).unwrap();
        }
        for args in [
            &["-V", "-r", "repo"][..],
            &["-R", "-r", "repo", "-o", "out.fs"][..],
            &["-B", "-F", "-r", "repo", "-f", "Data.fs"][..],
        ] {
            run(dir, args).fails_with("repo/.repozo.lock: cannot lock: not a regular file");
            let t = fs::symlink_metadata(&lock).unwrap().file_type();
            assert!(t.is_fifo() || t.is_symlink(), "{kind} {args:?}: replaced");
            assert!(!dir.join("victim").exists(), "{kind} {args:?}");
            assert!(!dir.join("out.fs").exists(), "{kind} {args:?}");
        }
        assert_eq!(
            contents(&dir.join("repo")).len(),
            8,
            "{kind}: a backup was made"
        );
    }
}
