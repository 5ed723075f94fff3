//! Where `-R` writes and how the repository's lock is taken: what a user
//! sees (exit status, the one stderr line, the files left) when `-o` names
//! something that must not be replaced, when the repository is damaged in
//! ways that used to recover "successfully" into a file ZODB cannot open,
//! and when the lock file is not what it should be.
//!
//! Each test is named after the bug it pins down; each failed before its
//! fix. The real `/dev/null` is never handed to the binary as root: a
//! character device made with `mknod` in a temporary directory stands in.

use std::collections::BTreeMap;
use std::fs::{self, File, Permissions};
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::common::{fixture, read, run, run_as, with_repo, NOW};

/// `testdata/repo-plain`'s files.
const FULL: &str = "2024-01-01-10-00-00";
const INC1: &str = "2024-01-02-11-30-00.deltafs";
/// Data.fs as of the last backup of `testdata/repo-plain`, and its index.
const STATE: &str = "testdata/repo-plain/states/2024-01-03-12-45-30.fs";
const STATE_INDEX: &str = "testdata/repo-plain/2024-01-03-12-45-30.index";
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
];

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

/// A null character device (1, 3) at `path`, when root.
fn mknod_null(path: &Path) -> bool {
    is_root()
        && Command::new("mknod")
            .arg(path)
            .args(["c", "1", "3"])
            .status()
            .is_ok_and(|s| s.success())
}

fn is_char_device(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// Regression: `-o repo/<a backup file>` replaced the backup with the
/// recovered Data.fs and exited 0; every later recovery was silently
/// corrupt. Any output whose directory is the repository is refused, by
/// its name, through a symbolic link to the repository, or a new name.
#[test]
fn regression_output_in_the_repository_is_refused() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    symlink("repo", dir.join("alias")).unwrap();
    symlink(format!("repo/{INC1}"), dir.join("link.fs")).unwrap();
    let before = contents(&dir.join("repo"));
    for out in [
        format!("repo/{INC1}"),
        format!("repo/{FULL}.fs"),
        "repo/new.fs".to_string(),
        "alias/new.fs".to_string(),
        "link.fs".to_string(),
    ] {
        run(dir, &["-R", "-r", "repo", "-o", &out]).fails_with(&format!(
            "{out}: cannot recover into it: it is in the repository repo"
        ));
        let mut after = contents(&dir.join("repo"));
        after.remove(repozo::repository::lock::LOCK_NAME);
        let mut want = before.clone();
        want.remove(repozo::repository::lock::LOCK_NAME);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{out}"
        );
        assert!(after == want, "{out}: the repository changed");
    }
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).ok();
    assert!(fs::read(dir.join("out.fs")).unwrap() == read(STATE));
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

/// Regression: `-o` naming a FIFO or a character device replaced it with a
/// regular file, exit 0 (as root, `-o /dev/null` destroyed /dev/null).
/// Refused, and left as it was.
#[test]
fn regression_output_device_or_fifo_is_refused_not_replaced() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    assert!(Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .unwrap()
        .success());
    run(dir, &["-R", "-r", "repo", "-o", "fifo"])
        .fails_with("fifo: cannot recover into it: not a regular file");
    assert!(fs::symlink_metadata(dir.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(!dir.join("fifo.part").exists() && !dir.join("fifo.index").exists());

    // As root only a device of our own is risked; otherwise /dev/null,
    // which a user cannot replace even with the bug.
    let null = if mknod_null(&dir.join("null")) {
        "null".to_string()
    } else {
        assert!(!is_root(), "mknod failed as root");
        "/dev/null".to_string()
    };
    run(dir, &["-R", "-r", "repo", "-o", &null]).fails_with(&format!(
        "{null}: cannot recover into it: not a regular file"
    ));
    assert!(is_char_device(&dir.join(&null)), "{null} was replaced");
    assert!(!dir.join("null.part").exists());
}

/// Regression: with `-o` a link to `/proc/self/fd/1` (or `/dev/stdout`, or
/// a device that is stdout) the link or device was replaced by a regular
/// file and nothing reached stdout. What is our stdout is written to as a
/// stream, as without `-o`; nothing is left beside it.
#[test]
fn regression_output_that_is_stdout_is_streamed_not_replaced() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    let state = read(STATE);
    symlink("/proc/self/fd/1", dir.join("out.fs")).unwrap();
    for out in ["out.fs", "/dev/stdout"] {
        let ran = run(dir, &["-R", "-r", "repo", "-o", out]);
        ran.ok();
        assert!(
            ran.stdout == state,
            "{out}: {} bytes on stdout",
            ran.stdout.len()
        );
    }
    assert_eq!(
        fs::read_link(dir.join("out.fs")).unwrap(),
        Path::new("/proc/self/fd/1")
    );
    for left in ["out.fs.part", "out.fs.index"] {
        assert!(fs::symlink_metadata(dir.join(left)).is_err(), "{left} left");
    }

    let null = if mknod_null(&dir.join("null")) {
        dir.join("null")
    } else {
        assert!(!is_root(), "mknod failed as root");
        PathBuf::from("/dev/null")
    };
    let stdout = File::options().write(true).open(&null).unwrap();
    let out = null.to_str().unwrap();
    let ran = run_as(dir, &[], &["-R", "-r", "repo", "-o", out], stdout.into());
    ran.ok();
    assert!(is_char_device(&null), "{out} was replaced");
    assert!(!dir.join("null.part").exists() && !dir.join("null.index").exists());
}

/// Regression: `-o Data.fs`, a symbolic link to the real database, replaced
/// the link with a regular file and left its target stale (and its old
/// index beside it). The chain of links is followed; the target is
/// replaced, its index installed beside it, the links kept. A dangling
/// link's target is created.
#[test]
fn regression_output_symlink_is_followed_not_replaced() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    fs::create_dir(dir.join("data")).unwrap();
    fs::write(dir.join("data/Data.fs"), b"old database").unwrap();
    fs::write(dir.join("data/Data.fs.index"), b"stale").unwrap();
    symlink("data/Data.fs", dir.join("Data.fs")).unwrap();
    symlink("../Data.fs", dir.join("data/second")).unwrap();
    symlink("data/second", dir.join("first")).unwrap();
    symlink("data/new.fs", dir.join("new.fs")).unwrap();
    for (out, target) in [("first", "data/Data.fs"), ("new.fs", "data/new.fs")] {
        run(dir, &["-R", "-r", "repo", "-o", out]).ok();
        assert!(fs::read(dir.join(target)).unwrap() == read(STATE), "{out}");
        assert_eq!(
            fs::read(dir.join(format!("{target}.index"))).unwrap(),
            read(STATE_INDEX),
            "{out}"
        );
    }
    let links = [
        ("Data.fs", "data/Data.fs"),
        ("data/second", "../Data.fs"),
        ("first", "data/second"),
        ("new.fs", "data/new.fs"),
    ];
    for (link, to) in links {
        assert_eq!(fs::read_link(dir.join(link)).unwrap(), Path::new(to));
    }
    let mut left: Vec<String> = contents(dir).into_keys().collect();
    left.extend(
        contents(&dir.join("data"))
            .into_keys()
            .map(|n| format!("data/{n}")),
    );
    assert_eq!(
        left,
        [
            "Data.fs",
            "data",
            "first",
            // ZODB's locks, by the name given and the name it leads to,
            // taken (and left, as ZODB leaves them) by the recoveries
            // onto the existing file.
            "first.lock",
            "new.fs",
            "repo",
            "data/Data.fs",
            "data/Data.fs.index",
            "data/Data.fs.lock",
            "data/new.fs",
            "data/new.fs.index",
            "data/second",
        ]
    );
}

/// Regression: a symbolic link planted as `<output>.part` was followed and
/// its target overwritten with the recovery. The leftover is removed, its
/// target untouched, and nothing is created through a dangling one.
#[test]
fn regression_planted_part_symlink_is_not_followed() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    fs::write(dir.join("victim"), b"precious").unwrap();
    symlink("victim", dir.join("out.fs.part")).unwrap();
    symlink("elsewhere", dir.join("new.fs.part")).unwrap();
    for out in ["out.fs", "new.fs"] {
        run(dir, &["-R", "-r", "repo", "-o", out]).ok();
        let meta = fs::symlink_metadata(dir.join(out)).unwrap();
        assert!(meta.is_file(), "{out} is not a regular file");
        assert!(fs::read(dir.join(out)).unwrap() == read(STATE), "{out}");
        assert!(fs::symlink_metadata(dir.join(format!("{out}.part"))).is_err());
    }
    assert_eq!(fs::read(dir.join("victim")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(dir.join("elsewhere")).is_err());
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
    let lock = dir.join("repo").join(repozo::repository::lock::LOCK_NAME);
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
        let lock = dir.join("repo").join(repozo::repository::lock::LOCK_NAME);
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

/// Regression: a Data.fs holding only its magic (no transaction yet),
/// backed up and recovered, came back without its index ("does not match
/// the recovered file"): FileStorage's sanity check looks at nothing below
/// 100 bytes. Its one right index, empty at position 4, is installed.
#[test]
fn regression_empty_datafs_recovers_with_its_index() {
    let t = TempDir::new().unwrap();
    let dir = t.path();
    fs::write(dir.join("Data.fs"), b"FS30").unwrap();
    fs::create_dir(dir.join("repo")).unwrap();
    run(dir, &["-B", "-r", "repo", "-f", "Data.fs"]).ok();
    let ran = run(dir, &["-R", "-r", "repo", "-o", "out.fs"]);
    ran.ok();
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), b"FS30");
    assert_eq!(
        fs::read(dir.join("out.fs.index")).unwrap(),
        fs::read(dir.join(format!("repo/{NOW}.index"))).unwrap()
    );
}
