//! The `repozo` binary as users run it: exit codes, messages and the files
//! it leaves, on the committed fixtures (see `testdata/README.md`).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{copy_dir, fixture, repozo_at};

fn manifest() -> Value {
    serde_json::from_str(&fs::read_to_string(fixture("testdata/MANIFEST.json")).unwrap()).unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory's entries, less the repository lock file (which is not a
/// backup and is never removed).
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != repozo::repository::lock::LOCK_NAME)
        .collect()
}

/// A temp dir holding a copy of a fixture Data.fs and an empty repository.
fn workspace(db: &str) -> TempDir {
    let t = TempDir::new().unwrap();
    fs::copy(fixture(db), t.path().join("Data.fs")).unwrap();
    fs::create_dir(t.path().join("repo")).unwrap();
    t
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let t = TempDir::new().unwrap();
    let out = repozo_at(t.path(), "2024-01-01-00-00-00", &["-h"]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    for opt in [
        "--backup",
        "--recover",
        "--verify",
        "--verbose",
        "--repository",
        "--file",
        "--full",
        "--quick",
        "--gzip",
        "--kill-old-on-full",
        "--date",
        "--output",
        "--with-verify",
    ] {
        assert!(text.contains(opt), "usage lacks {opt}");
    }
}

#[test]
fn usage_errors_exit_1_with_the_reason() {
    let t = TempDir::new().unwrap();
    for (args, reason) in [
        (
            &["-r", "x"][..],
            "Either --backup, --recover or --verify is required",
        ),
        (&["-B", "-R", "-r", "x"][..], "mutually exclusive"),
        (&["-V"][..], "--repository is required"),
        (&["-B", "-r", "x"][..], "--file is required in backup mode"),
        (&["-V", "-r", "x", "stray"][..], "Invalid arguments: stray"),
        (&["-V", "-r", "x", "--nope"][..], "--nope"),
        (&["-R", "-r", "x", "-D", "14/05/2010"][..], "invalid date"),
    ] {
        let err = fails(&repozo_at(t.path(), "2024-01-01-00-00-00", args));
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}

#[test]
fn full_then_incremental_backup_names_files_and_logs_like_repozo() {
    let m = manifest();
    let plain = &m["repos"]["testdata/repo-plain"];
    let backups = plain["backups"].as_array().unwrap();
    let t = TempDir::new().unwrap();
    fs::create_dir(t.path().join("repo")).unwrap();
    let mut expected_dat = String::new();
    for b in backups {
        let stamp = b["timestamp"].as_str().unwrap();
        fs::copy(
            fixture(b["state"].as_str().unwrap()),
            t.path().join("Data.fs"),
        )
        .unwrap();
        ok(&repozo_at(
            t.path(),
            stamp,
            &["-B", "-r", "repo", "-f", "Data.fs"],
        ));
        let name = Path::new(b["file"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        expected_dat.push_str(&format!(
            "repo/{name} {} {} {}\n",
            b["start"],
            b["end"],
            b["md5"].as_str().unwrap()
        ));
        // Same bytes as Python repozo's file, and the same index.
        assert_eq!(
            fs::read(t.path().join("repo").join(&name)).unwrap(),
            fs::read(fixture(b["file"].as_str().unwrap())).unwrap(),
            "{name}"
        );
        assert_eq!(
            fs::read(t.path().join(format!("repo/{stamp}.index"))).unwrap(),
            fs::read(fixture(b["index"].as_str().unwrap())).unwrap(),
            "{stamp}.index"
        );
    }
    let first = backups[0]["timestamp"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(t.path().join(format!("repo/{first}.dat"))).unwrap(),
        expected_dat
    );
    // Nothing changed: nothing written, in either mode.
    let before = listing(&t.path().join("repo"));
    for extra in [&[][..], &["-Q"][..]] {
        let mut args = vec!["-B", "-r", "repo", "-f", "Data.fs", "-v"];
        args.extend_from_slice(extra);
        let out = repozo_at(t.path(), "2024-02-01-00-00-00", &args);
        ok(&out);
        assert!(String::from_utf8_lossy(&out.stderr).contains("No changes, nothing to do"));
        assert_eq!(listing(&t.path().join("repo")), before);
    }
}

#[test]
fn quick_mode_increments_and_detects_a_changed_file() {
    let m = manifest();
    let states: Vec<String> = m["repos"]["testdata/repo-plain"]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_string())
        .collect();
    let t = workspace(&states[0]);
    ok(&repozo_at(
        t.path(),
        "2024-01-01-00-00-00",
        &["-BQzr", "repo", "-f", "Data.fs"],
    ));
    fs::copy(fixture(&states[1]), t.path().join("Data.fs")).unwrap();
    ok(&repozo_at(
        t.path(),
        "2024-01-02-00-00-00",
        &[
            "--backup",
            "--quick",
            "--gzip",
            "--repository=repo",
            "--file=Data.fs",
        ],
    ));
    assert!(listing(&t.path().join("repo")).contains("2024-01-02-00-00-00.deltafsz"));
    // A different database of the same size or more: the prefix changed.
    fs::copy(
        fixture("testdata/manyoids/Data.fs"),
        t.path().join("Data.fs"),
    )
    .unwrap();
    let out = repozo_at(
        t.path(),
        "2024-01-03-00-00-00",
        &["-BQz", "-v", "-r", "repo", "-f", "Data.fs"],
    );
    ok(&out);
    assert!(listing(&t.path().join("repo")).contains("2024-01-03-00-00-00.fsz"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("full backup"), "{log}");
}

#[test]
fn a_backup_never_overwrites_and_kill_old_keeps_the_newest_chain() {
    let t = workspace("testdata/sample/Data.fs");
    ok(&repozo_at(
        t.path(),
        "2024-01-01-00-00-00",
        &["-B", "-r", "repo", "-f", "Data.fs"],
    ));
    let err = fails(&repozo_at(
        t.path(),
        "2024-01-01-00-00-00",
        &["-B", "-F", "-r", "repo", "-f", "Data.fs"],
    ));
    assert_eq!(
        err.trim(),
        "repo/2024-01-01-00-00-00.fs: cannot back up: a backup of this second (2024-01-01-00-00-00) exists already; try again in a second"
    );
    ok(&repozo_at(
        t.path(),
        "2024-01-02-00-00-00",
        &["-B", "-F", "-k", "-r", "repo", "-f", "Data.fs"],
    ));
    assert_eq!(
        listing(&t.path().join("repo")),
        [
            "2024-01-02-00-00-00.dat",
            "2024-01-02-00-00-00.fs",
            "2024-01-02-00-00-00.index"
        ]
        .map(String::from)
        .into()
    );
}

#[test]
fn backups_keep_the_databases_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let t = workspace("testdata/sample/Data.fs");
    fs::set_permissions(t.path().join("Data.fs"), fs::Permissions::from_mode(0o600)).unwrap();
    ok(&repozo_at(
        t.path(),
        "2024-01-01-00-00-00",
        &["-B", "-z", "-r", "repo", "-f", "Data.fs"],
    ));
    for name in listing(&t.path().join("repo")) {
        let mode = fs::metadata(t.path().join("repo").join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn an_incomplete_tail_is_not_backed_up() {
    let m = manifest();
    for (rel, facts) in m["truncated"].as_object().unwrap() {
        let t = workspace(rel);
        ok(&repozo_at(
            t.path(),
            "2024-01-01-00-00-00",
            &["-B", "-r", "repo", "-f", "Data.fs"],
        ));
        let backup = fs::read(t.path().join("repo/2024-01-01-00-00-00.fs")).unwrap();
        assert_eq!(backup.len() as u64, facts["end"].as_u64().unwrap(), "{rel}");
        assert_eq!(
            fs::read(t.path().join("repo/2024-01-01-00-00-00.index")).unwrap(),
            fs::read(fixture(facts["expected_index"]["path"].as_str().unwrap())).unwrap()
        );
        // The torn tail is still there: nothing to add.
        let out = repozo_at(
            t.path(),
            "2024-01-02-00-00-00",
            &["-B", "-r", "repo", "-f", "Data.fs"],
        );
        ok(&out);
        assert_eq!(listing(&t.path().join("repo")).len(), 3, "{rel}");
    }
}

#[test]
fn damaged_databases_fail_and_leave_the_repository_untouched() {
    let m = manifest();
    for (rel, _) in m["damaged"].as_object().unwrap() {
        if !rel.ends_with(".fs") {
            continue;
        }
        let t = workspace(rel);
        let err = fails(&repozo_at(
            t.path(),
            "2024-01-01-00-00-00",
            &["-B", "-r", "repo", "-f", "Data.fs"],
        ));
        assert!(err.starts_with("Data.fs: "), "{rel}: {err}");
        assert_eq!(err.lines().count(), 1, "{rel}: {err}");
        assert!(listing(&t.path().join("repo")).is_empty(), "{rel}");
    }
    let t = TempDir::new().unwrap();
    let err = fails(&repozo_at(
        t.path(),
        "2024-01-01-00-00-00",
        &["-B", "-r", "nowhere", "-f", "Data.fs"],
    ));
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn recover_at_every_date_matches_python_repozo() {
    let m = manifest();
    for (repo, facts) in m["repos"].as_object().unwrap() {
        for case in facts["recover"].as_array().unwrap() {
            // No date means now, which is after every backup.
            let date = case["date"].as_str().unwrap_or("2030-01-01-00-00-00");
            let t = TempDir::new().unwrap();
            copy_dir(&fixture(repo), &t.path().join("repo"));
            let args: &[&str] = if case["date"].is_null() {
                &["-R", "-r", "repo", "-o", "out.fs"]
            } else {
                &["-R", "-r", "repo", "-D", date, "-o", "out.fs"]
            };
            let out = repozo_at(t.path(), "2030-01-01-00-00-00", args);
            if let Some(error) = case.get("error") {
                assert_eq!(fails(&out).trim(), error.as_str().unwrap(), "{repo} {date}");
                assert!(!t.path().join("out.fs").exists());
                continue;
            }
            ok(&out);
            let got = fs::read(t.path().join("out.fs")).unwrap();
            let want = fs::read(fixture(case["state"].as_str().unwrap())).unwrap();
            assert!(got == want, "{repo} at {date}");
            assert_eq!(
                fs::read(t.path().join("out.fs.index")).unwrap(),
                fs::read(fixture(case["index"].as_str().unwrap())).unwrap(),
                "{repo} at {date}: index"
            );
            // The index is as readable as the file it belongs to.
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| fs::metadata(t.path().join(p)).unwrap().permissions().mode();
            assert_eq!(mode("out.fs.index"), mode("out.fs"), "{repo} at {date}");
            assert!(!t.path().join("out.fs.part").exists());
            // -w agrees, and so does stdout.
            ok(&repozo_at(
                t.path(),
                "2030-01-01-00-00-00",
                &["-R", "-w", "-r", "repo", "-D", date, "-o", "w.fs"],
            ));
            assert!(fs::read(t.path().join("w.fs")).unwrap() == want);
            let out = repozo_at(
                t.path(),
                "2030-01-01-00-00-00",
                &["-R", "-r", "repo", "-D", date],
            );
            ok(&out);
            assert!(out.stdout == want, "{repo} at {date}: stdout");
        }
    }
}

#[test]
fn recover_replaces_a_stale_index_and_never_leaves_one_from_another_database() {
    let t = TempDir::new().unwrap();
    copy_dir(&fixture("testdata/repo-plain"), &t.path().join("repo"));
    fs::write(t.path().join("out.fs"), b"old database").unwrap();
    fs::write(t.path().join("out.fs.index"), b"stale").unwrap();
    fs::remove_file(t.path().join("repo/2024-01-03-12-45-30.index")).unwrap();
    ok(&repozo_at(
        t.path(),
        "2030-01-01-00-00-00",
        &["-R", "-r", "repo", "-o", "out.fs"],
    ));
    assert!(!t.path().join("out.fs.index").exists());
    assert!(fs::read(t.path().join("out.fs"))
        .unwrap()
        .starts_with(b"FS30"));
}

#[test]
fn verify_reports_the_first_bad_file_in_repozos_words() {
    for repo in ["testdata/repo-plain", "testdata/repo-gzip"] {
        let gz = repo.ends_with("gzip");
        let when = if gz { " (when uncompressed)" } else { "" };
        let inc = if gz {
            "2024-01-02-11-30-00.deltafsz"
        } else {
            "2024-01-02-11-30-00.deltafs"
        };
        let setup = || {
            let t = TempDir::new().unwrap();
            copy_dir(&fixture(repo), &t.path().join(repo));
            t
        };
        let t = setup();
        ok(&repozo_at(
            t.path(),
            "2030-01-01-00-00-00",
            &["-V", "-r", repo],
        ));
        ok(&repozo_at(
            t.path(),
            "2030-01-01-00-00-00",
            &["-V", "-Q", "-r", repo],
        ));

        let t = setup();
        fs::remove_file(t.path().join(repo).join(inc)).unwrap();
        let err = fails(&repozo_at(
            t.path(),
            "2030-01-01-00-00-00",
            &["-V", "-r", repo],
        ));
        assert_eq!(err.trim(), format!("{repo}/{inc} is missing"));

        if !gz {
            let t = setup();
            let p = t.path().join(repo).join(inc);
            let mut bytes = fs::read(&p).unwrap();
            bytes[100] ^= 0xff;
            fs::write(&p, &bytes).unwrap();
            let err = fails(&repozo_at(
                t.path(),
                "2030-01-01-00-00-00",
                &["-V", "-r", repo],
            ));
            assert!(
                err.starts_with(&format!("{repo}/{inc} has checksum ")),
                "{err}"
            );
            ok(&repozo_at(
                t.path(),
                "2030-01-01-00-00-00",
                &["-V", "-Q", "-r", repo],
            ));
            bytes.truncate(1000);
            fs::write(&p, &bytes).unwrap();
            let err = fails(&repozo_at(
                t.path(),
                "2030-01-01-00-00-00",
                &["-V", "-Q", "-r", repo],
            ));
            assert!(
                err.contains(&format!("{inc} is 1000 bytes{when}, should be 4966 bytes")),
                "{err}"
            );
        }
    }
}

#[test]
fn corrupt_gzip_backups_fail_recovery_naming_the_file() {
    for bad in ["corrupt.fsz", "truncated.fsz"] {
        let t = TempDir::new().unwrap();
        fs::create_dir(t.path().join("repo")).unwrap();
        fs::copy(
            fixture(&format!("testdata/damaged/{bad}")),
            t.path().join("repo/2024-01-01-00-00-00.fsz"),
        )
        .unwrap();
        fs::write(t.path().join("out.fs"), b"keep me").unwrap();
        let err = fails(&repozo_at(
            t.path(),
            "2030-01-01-00-00-00",
            &["-R", "-r", "repo", "-o", "out.fs"],
        ));
        assert!(err.contains("repo/2024-01-01-00-00-00.fsz"), "{bad}: {err}");
        assert_eq!(
            fs::read(t.path().join("out.fs")).unwrap(),
            b"keep me",
            "{bad}"
        );
        assert!(!t.path().join("out.fs.part").exists(), "{bad}");
    }
}

#[test]
fn a_locked_repository_is_refused_and_the_lock_dies_with_its_holder() {
    let t = workspace("testdata/sample/Data.fs");
    let now = "2024-01-01-00-00-00";
    ok(&repozo_at(
        t.path(),
        now,
        &["-B", "-r", "repo", "-f", "Data.fs"],
    ));
    let lock_path = t
        .path()
        .join("repo")
        .join(repozo::repository::lock::LOCK_NAME);
    let holder = fs::File::open(&lock_path).unwrap();

    // A backup in progress (an exclusive holder) keeps everyone out.
    holder.lock().unwrap();
    let before = listing(&t.path().join("repo"));
    for args in [
        &["-B", "-F", "-r", "repo", "-f", "Data.fs"][..],
        &["-R", "-r", "repo", "-o", "out.fs"][..],
        &["-V", "-r", "repo"][..],
    ] {
        let err = fails(&repozo_at(t.path(), "2024-01-02-00-00-00", args));
        assert_eq!(
            err.trim(),
            "repo: repository is locked by another repozo run (lock held on repo/.repozo.lock); try again when it has finished",
            "{args:?}"
        );
    }
    assert_eq!(listing(&t.path().join("repo")), before);
    assert!(!t.path().join("out.fs").exists());

    // Readers share: verify and recover run beside each other, a backup waits.
    holder.unlock().unwrap();
    holder.lock_shared().unwrap();
    ok(&repozo_at(t.path(), now, &["-V", "-r", "repo"]));
    ok(&repozo_at(
        t.path(),
        now,
        &["-R", "-r", "repo", "-o", "out.fs"],
    ));
    fails(&repozo_at(
        t.path(),
        "2024-01-02-00-00-00",
        &["-B", "-F", "-r", "repo", "-f", "Data.fs"],
    ));

    // The lock goes with its holder.
    drop(holder);
    ok(&repozo_at(
        t.path(),
        "2024-01-02-00-00-00",
        &["-B", "-F", "-r", "repo", "-f", "Data.fs"],
    ));
}

#[test]
fn recover_follows_the_dat_log_and_leaves_out_files_it_does_not_list() {
    let m = manifest();
    let backups = m["repos"]["testdata/repo-plain"]["backups"]
        .as_array()
        .unwrap()
        .clone();
    let t = TempDir::new().unwrap();
    copy_dir(&fixture("testdata/repo-plain"), &t.path().join("repo"));
    // The last increment's line never made it to the log (a crash).
    let dat = t.path().join("repo/2024-01-01-10-00-00.dat");
    let text = fs::read_to_string(&dat).unwrap();
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    fs::write(&dat, kept).unwrap();
    for args in [
        &["-R", "-r", "repo", "-o", "out.fs"][..],
        &["-R", "-w", "-r", "repo", "-o", "out.fs"][..],
    ] {
        let out = repozo_at(t.path(), "2030-01-01-00-00-00", args);
        ok(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("leaving out repo/2024-01-03-12-45-30.deltafs"),
            "{err}"
        );
        let want = fs::read(fixture(backups[1]["state"].as_str().unwrap())).unwrap();
        assert!(
            fs::read(t.path().join("out.fs")).unwrap() == want,
            "{args:?}"
        );
        assert_eq!(
            fs::read(t.path().join("out.fs.index")).unwrap(),
            fs::read(fixture(backups[1]["index"].as_str().unwrap())).unwrap()
        );
    }
}
