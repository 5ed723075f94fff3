//! The binary on one CPU. The gzip reader and writer size their thread
//! pools from the cores they may use, so a machine (or a container, or a
//! `taskset`) with one core takes paths that the usual test machine never
//! does: `-z` backups once could not be read back there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary in `dir` on CPU 0 alone, "now" fixed to `now`; `None` if
/// `taskset` is not there or cannot pin (some sandboxes forbid it).
fn on_one_cpu(dir: &Path, now: &str, args: &[&str]) -> Option<Output> {
    let out = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_repozo")])
        .args(args)
        .current_dir(dir)
        .env("REPOZO_TEST_NOW", now)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.starts_with("taskset:") {
        return None;
    }
    Some(out)
}

fn ok(what: &str, out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{text}",
        out.status.code()
    );
    text
}

#[test]
fn gzip_backups_work_on_one_cpu() {
    let probe = Command::new("taskset").args(["-c", "0", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED gzip_backups_work_on_one_cpu: taskset missing or not allowed");
        return;
    }
    let t = TempDir::new().unwrap();
    let dir = t.path();
    let source = root().join("testdata/sample/Data.fs");
    fs::copy(&source, dir.join("Data.fs")).unwrap();
    fs::create_dir(dir.join("repo")).unwrap();
    let now = "2024-06-01-00-00-00";
    let run =
        |now: &str, args: &[&str]| on_one_cpu(dir, now, args).expect("taskset worked a moment ago");

    ok(
        "-B -z",
        &run(now, &["-B", "-z", "-r", "repo", "-f", "Data.fs"]),
    );
    ok("-V", &run(now, &["-V", "-r", "repo"]));
    ok("-V -Q", &run(now, &["-V", "-Q", "-r", "repo"]));
    ok("-R", &run(now, &["-R", "-r", "repo", "-o", "out.fs"]));
    assert!(
        fs::read(dir.join("out.fs")).unwrap() == fs::read(&source).unwrap(),
        "-R gave back other bytes than were backed up"
    );
    let again = ok(
        "second -B -z",
        &run(
            "2024-06-02-00-00-00",
            &["-B", "-v", "-z", "-r", "repo", "-f", "Data.fs"],
        ),
    );
    assert!(
        again.contains("nothing to do"),
        "second -B -z said:\n{again}"
    );
}
