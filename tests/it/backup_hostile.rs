//! The backup path as a careless operator or a failing machine hits it:
//! each test is named after the defect it proves fixed, and failed before
//! its fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{ok, recovers_to, repozo, with, workspace, B};

/// Run the binary in `dir` through `prefix` (`setpriv …`), if any.
fn repozo_as(dir: &Path, prefix: &[&str], now: Option<&str>, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_repozo");
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.args(args).current_dir(dir);
    match now {
        Some(now) => c.env("REPOZO_TEST_NOW", now),
        None => c.env_remove("REPOZO_TEST_NOW"),
    };
    c.output().unwrap()
}

/// Whether `setpriv` can run a command as `nobody` here (root only).
fn can_be_nobody() -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Repair read the newest chain's `.dat` and gave up the whole run on any
/// error but "not found": a `.dat` that could not be read (no permission,
/// a bad sector, a directory of that name) failed every backup from then
/// on, though the backup itself would have given the chain up for a full
/// one.
#[test]
fn regression_an_unreadable_newest_dat_blocks_no_backup() {
    for damage in ["a directory", "no permission"] {
        if damage == "no permission" && !can_be_nobody() {
            eprintln!("skipped {damage}: needs root and setpriv");
            continue;
        }
        let (t, mut db) = workspace(10);
        let prefix: &[&str] = if damage == "no permission" {
            fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let chown = Command::new("chown")
                .args(["-R", "nobody"])
                .arg(t.path())
                .status()
                .unwrap();
            assert!(chown.success());
            &[
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
            ]
        } else {
            &[]
        };
        ok(
            &repozo_as(t.path(), prefix, Some("2024-01-01-00-00-00"), B),
            damage,
        );
        let dat = t.path().join("repo/2024-01-01-00-00-00.dat");
        if damage == "a directory" {
            fs::remove_file(&dat).unwrap();
            fs::create_dir(&dat).unwrap();
        } else {
            fs::set_permissions(&dat, fs::Permissions::from_mode(0o000)).unwrap();
        }
        for (i, extra) in [&[][..], &["-Q"]].into_iter().enumerate() {
            db.grow(2);
            db.save(&t.path().join("Data.fs"));
            let now = format!("2024-01-0{}-00-00-00", i + 2);
            let err = ok(
                &repozo_as(t.path(), prefix, Some(&now), &with(B, extra)),
                damage,
            );
            assert!(
                t.path().join(format!("repo/{now}.fs")).exists() || i > 0,
                "{damage}: no full backup: {err}"
            );
            if i == 0 {
                assert!(err.contains("(full backup)"), "{damage}: not said: {err}");
            }
            recovers_to(t.path(), &now, &db.bytes, damage);
        }
        // The damaged file is left as it was, for whoever looks at it.
        let meta = fs::symlink_metadata(&dat).unwrap();
        assert_eq!(meta.is_dir(), damage == "a directory", "{damage}");
    }
}

/// Repair removed every file named like a temporary one and gave up the
/// run when it could not: a directory named `tmp.tmp` (or
/// `.repozo-x.tmp`) failed every backup from then on, though no backup
/// ever reads a leftover temporary file.
#[test]
fn regression_a_temporary_name_that_cannot_be_removed_blocks_no_backup() {
    for name in ["tmp.tmp", ".repozo-x.tmp"] {
        let (t, mut db) = workspace(10);
        ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), name);
        let odd = t.path().join("repo").join(name);
        fs::create_dir(&odd).unwrap();
        fs::write(odd.join("keep"), b"someone's").unwrap();
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        let err = ok(&repozo(t.path(), Some("2024-01-02-00-00-00"), B), name);
        assert!(err.contains(name), "{name}: not said: {err}");
        assert!(t.path().join("repo/2024-01-02-00-00-00.deltafs").exists());
        recovers_to(t.path(), "2024-01-02-00-00-00", &db.bytes, name);
        assert_eq!(fs::read(odd.join("keep")).unwrap(), b"someone's");
    }
}

/// `-k` ran after the new full backup was committed and gave up at the
/// first file it could not remove (a directory named like an old backup):
/// the run exited 1 though the backup was made, every backup after the
/// one in the way was kept, and every later `-F -k` failed the same way,
/// so old backups piled up for ever.
#[test]
fn regression_kill_old_is_not_stopped_by_what_it_cannot_remove() {
    let (t, mut db) = workspace(10);
    let repo = t.path().join("repo");
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "first");
    let odd = repo.join("2023-06-01-00-00-00.deltafs");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join("keep"), b"someone's").unwrap();
    for (i, now) in ["2024-01-02-00-00-00", "2024-01-03-00-00-00"]
        .into_iter()
        .enumerate()
    {
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        let err = ok(&repozo(t.path(), Some(now), &with(B, &["-F", "-k"])), now);
        assert!(
            err.contains("2023-06-01-00-00-00.deltafs"),
            "not said: {err}"
        );
        let mut left: Vec<String> = fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != repozo::repository::lock::LOCK_NAME)
            .collect();
        left.sort();
        let want = ["dat", "fs", "index"].map(|ext| format!("{now}.{ext}"));
        assert_eq!(
            left,
            [&["2023-06-01-00-00-00.deltafs".to_string()][..], &want].concat(),
            "run {i}"
        );
        recovers_to(t.path(), now, &db.bytes, now);
    }
    assert_eq!(fs::read(odd.join("keep")).unwrap(), b"someone's");
}

/// Python repozo writes a backup's `.index` before its data file; one that
/// died between, while the clock was ahead, left a lone `.index` dated in
/// the future, and every backup was refused ("did the clock go back?",
/// naming the `.index`) until the clock got there, though a lone `.index`
/// or `.dat` is in no chain and the new backup's stem was its own.
#[test]
fn regression_a_lone_future_index_or_dat_blocks_no_backup() {
    for lone in ["2099-01-01-00-00-00.index", "2099-01-01-00-00-00.dat"] {
        let (t, mut db) = workspace(10);
        ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), lone);
        fs::write(t.path().join("repo").join(lone), b"lone").unwrap();
        for (i, extra) in [&[][..], &["-Q"], &["-F"]].into_iter().enumerate() {
            db.grow(2);
            db.save(&t.path().join("Data.fs"));
            let now = format!("2024-01-0{}-00-00-00", i + 2);
            ok(&repozo(t.path(), Some(&now), &with(B, extra)), lone);
            recovers_to(t.path(), &now, &db.bytes, lone);
        }
        // A data file from the future still refuses, naming it.
        let repo = t.path().join("repo");
        let full = fs::read(repo.join("2024-01-04-00-00-00.fs")).unwrap();
        fs::write(repo.join("2098-01-01-00-00-00.fs"), &full).unwrap();
        let line = format!(
            "repo/2098-01-01-00-00-00.fs 0 {} {}\n",
            full.len(),
            "0".repeat(32)
        );
        fs::write(repo.join("2098-01-01-00-00-00.dat"), line).unwrap();
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        let out = repozo(t.path(), Some("2024-01-09-00-00-00"), B);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{lone}: {err}");
        assert!(
            err.starts_with("repo/2098-01-01-00-00-00.fs: cannot back up"),
            "{lone}: {err}"
        );
        assert_eq!(fs::read(t.path().join("repo").join(lone)).unwrap(), b"lone");
    }
}
