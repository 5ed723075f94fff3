//! Recover and verify as a careless operator or a failing machine meets
//! them: two runs at once, files in the repository that are not what their
//! names say. Each test is named after the bug it pins down; each failed
//! before its fix.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::{read, run, with_repo, BIN, NOW};

/// The last backup of `testdata/repo-plain`.
const LAST: &str = "2024-01-03-12-45-30";
/// Data.fs as of the last backup of `testdata/repo-plain`.
const STATE: &str = "testdata/repo-plain/states/2024-01-03-12-45-30.fs";

/// A child process killed (and waited for) when dropped, a failed
/// assertion included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// Regression: two recoveries into one output shared `<output>.part`. The
/// second removed the first's `.part` as a leftover and wrote its own under
/// that name; the first then renamed the second's half-written file over
/// the output and exited 0 (seen with a 200 MB Data.fs: a 179 MB output,
/// no index, the second run killed). A `.part` that another run holds
/// locked is now refused, and each run holds its lock until its rename.
#[test]
fn regression_two_recoveries_into_one_output_never_rename_a_partial_file() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    fs::write(dir.join("out.fs"), b"old").unwrap();
    // Another run, still writing its `.part`: a process of its own, so
    // that no child forked by a test running beside this one holds the
    // lock on after it is released.
    fs::write(dir.join("out.fs.part"), b"half").unwrap();
    let mut other = KillOnDrop(
        Command::new("flock")
            .args(["-o", "out.fs.part", "-c", "echo locked; exec sleep 60"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut said = [0u8; 7];
    other
        .0
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut said)
        .unwrap();
    assert_eq!(&said, b"locked\n");
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"])
        .fails_with("out.fs.part: cannot create: another repozo run is writing it");
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), b"old");
    assert_eq!(fs::read(dir.join("out.fs.part")).unwrap(), b"half");
    assert!(!dir.join("out.fs.index").exists());

    // Once that run is gone, what it left is a leftover like any other.
    drop(other);
    run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).ok();
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), read(STATE));
    assert!(!dir.join("out.fs.part").exists());
    crate::common::assert_index_is_a_scan(
        &dir.join("out.fs"),
        &dir.join("out.fs.index"),
        "after the leftover",
    );
}

/// Regression: a backup's `.index` that was a FIFO made recover open it
/// and wait for a writer for ever, with the whole Data.fs in
/// `<output>.part`. A backup index that is no regular file is now skipped
/// with a message, as a damaged one is.
#[test]
fn regression_a_backup_index_that_is_a_fifo_never_hangs_a_recovery() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    let index = dir.join(format!("repo/{LAST}.index"));
    fs::remove_file(&index).unwrap();
    mkfifo(&index);
    fs::write(dir.join("out.fs.index"), b"stale").unwrap();
    let ran = run(dir, &["-R", "-r", "repo", "-o", "out.fs"]);
    ran.succeeds_saying(&format!(
        "Not restoring index file repo/{LAST}.index: cannot open: not a regular file"
    ));
    assert_eq!(fs::read(dir.join("out.fs")).unwrap(), read(STATE));
    assert!(!dir.join("out.fs.index").exists());
    assert!(!dir.join("out.fs.part").exists());
}

/// Regression: `-V` passed a `.dat` whose lines each name a good file but
/// do not follow one another (the last line repeated, two lines swapped),
/// which `-R` refuses: verify said the repository was fine, recover then
/// failed. Verify now checks that each line starts where the ones before
/// it end, with recover's message.
#[test]
fn regression_verify_passes_no_chain_that_recover_refuses() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    let dat = dir.join("repo/2024-01-01-10-00-00.dat");
    let good = fs::read_to_string(&dat).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let inc2 = format!("repo/{LAST}.deltafs");
    for (damage, ends) in [
        (format!("{good}{}\n", lines[2]), 66497),
        (format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]), 56535),
    ] {
        fs::write(&dat, damage).unwrap();
        let why = format!(
            "{inc2} starts at 61501, but the files before it end at {ends} \
             (repo/2024-01-01-10-00-00.dat)"
        );
        run(dir, &["-R", "-r", "repo", "-o", "out.fs"]).fails_with(&why);
        for quick in [&[][..], &["-Q"][..]] {
            let mut args = vec!["-V", "-r", "repo"];
            args.extend_from_slice(quick);
            run(dir, &args).fails_with(&why);
        }
    }
    fs::write(&dat, good).unwrap();
    run(dir, &["-V", "-r", "repo"]).ok();
}

/// Regression: `-V -Q` took a plain backup's length from `stat` whatever
/// the file was: a directory under the name was reported as "is 4096
/// bytes, should be …", a FIFO or a link to `/dev/zero` as "is 0 bytes",
/// where `-V` and `-R` say what is wrong. All three now say it.
#[test]
fn regression_quick_verify_names_a_backup_that_is_no_regular_file() {
    let t = with_repo("testdata/repo-plain");
    let dir = t.path();
    let name = "repo/2024-01-02-11-30-00.deltafs";
    let path = dir.join(name);
    let why = format!("{name}: cannot open: not a regular file");
    type Make = fn(&Path);
    let makes: [Make; 3] = [
        |p| fs::create_dir(p).unwrap(),
        mkfifo,
        |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
    ];
    for make in makes {
        fs::remove_file(&path)
            .or_else(|_| fs::remove_dir(&path))
            .unwrap();
        make(&path);
        for args in [&["-V", "-Q"][..], &["-V"][..], &["-R", "-o", "out.fs"][..]] {
            let mut args = args.to_vec();
            args.extend_from_slice(&["-r", "repo"]);
            run(dir, &args).fails_with(&why);
        }
    }
}

fn is_root() -> bool {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    String::from_utf8_lossy(&uid).trim() == "0"
}

/// Regression: where no thread could be started (`ulimit -u`, a cgroup's
/// `pids.max`), `-R` and `-V` panicked ("failed to spawn thread", exit
/// 101, a backtrace hint instead of one line). The md5 thread, the gzip
/// and writer pools and verify's workers now do their work on the
/// calling thread when they get no thread of their own. Run as `nobody`,
/// as `RLIMIT_NPROC` does not bind root; skipped when not root.
#[test]
fn regression_no_thread_to_spare_is_no_panic() {
    if !is_root() {
        eprintln!("SKIPPED regression_no_thread_to_spare_is_no_panic: needs root for setpriv");
        return;
    }
    let t = with_repo("testdata/repo-gzip");
    let dir = t.path();
    let chmod = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(dir, 0o777);
    chmod(&dir.join("repo"), 0o777);
    let state = read(STATE);
    fs::write(dir.join("Data.fs"), &state).unwrap();
    chmod(&dir.join("Data.fs"), 0o644);
    for args in [
        &["-R", "-v", "-w", "-o", "out.fs"][..],
        &["-R", "-v", "-o", "out.fs"][..],
        &["-V"][..],
        &["-V", "-Q"][..],
        // The backup's comparison of the repository with Data.fs read the
        // repository on a thread of its own, and panicked without one.
        &["-B", "-v", "-f", "Data.fs"][..],
        &["-B", "-F", "-z", "-f", "Data.fs"][..],
    ] {
        let ran = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["prlimit", "--nproc=1:1", BIN, "-r", "repo"])
            .args(args)
            .current_dir(dir)
            .env("REPOZO_TEST_NOW", NOW)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if args[0] == "-R" {
            assert_eq!(fs::read(dir.join("out.fs")).unwrap(), state);
        }
    }
}
