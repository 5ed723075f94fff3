//! What an operator, a cron table or a misbehaving machine does to a
//! repository, and what a backup must do about it: never lose a backup,
//! never block the next one, never write an index of other bytes. Each test
//! is named after the defect it proves fixed; each failed before its fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    assert_index_is_a_scan, fails, mount_tmpfs, names, ok, recovers_to, repozo, with, workspace,
    Db, B,
};

/// Issue 16, A(2): a byte changed inside the backed-up range makes the next
/// backup full, and it carried the repository's `.index` of the old bytes.
#[test]
fn regression_a_full_backup_never_starts_from_the_repositorys_index() {
    for quick in [false, true] {
        let (t, mut db) = workspace(30);
        let extra: &[&str] = if quick { &["-Q"] } else { &[] };
        ok(
            &repozo(t.path(), Some("2024-01-01-00-00-00"), &with(B, extra)),
            "first",
        );
        // An oid byte of a record in the middle: same shapes, so the old
        // index passes FileStorage's position-only sanity check.
        let first_data = 4 + 23;
        let mut bytes = db.bytes.clone();
        bytes[first_data + 7] ^= 0x01;
        db.bytes = bytes;
        db.grow(3);
        db.save(&t.path().join("Data.fs"));
        let err = ok(
            &repozo(t.path(), Some("2024-01-02-00-00-00"), &with(B, &["-v"])),
            "second",
        );
        assert!(err.contains("full backup"), "{err}");
        assert!(!err.contains("reading the index from repo/"), "{err}");
        assert_index_is_a_scan(
            &t.path().join("Data.fs"),
            &t.path().join("repo/2024-01-02-00-00-00.index"),
            "the full backup's index",
        );
        recovers_to(t.path(), "2024-01-02-00-00-00", &db.bytes, "recover");
    }
}

/// Issue 16, B: after an empty increment `[E, E)` (Python repozo writes one
/// when only a commit in progress follows E), `-Q` compared the md5 of
/// nothing and appended a packed file's tail to the old bytes.
#[test]
fn regression_quick_mode_is_never_confirmed_by_an_empty_range() {
    let (t, _) = workspace(20);
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "full");
    let dat = t.path().join("repo/2024-01-01-00-00-00.dat");
    let text = fs::read_to_string(&dat).unwrap();
    let end: u64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Python's empty increment: an empty file, its line and its index.
    fs::write(t.path().join("repo/2024-01-01-00-01-00.deltafs"), b"").unwrap();
    fs::copy(
        t.path().join("repo/2024-01-01-00-00-00.index"),
        t.path().join("repo/2024-01-01-00-01-00.index"),
    )
    .unwrap();
    let md5_of_nothing = "d41d8cd98f00b204e9800998ecf8427e";
    fs::write(
        &dat,
        format!("{text}repo/2024-01-01-00-01-00.deltafs {end} {end} {md5_of_nothing}\n"),
    )
    .unwrap();
    // A pack, then commits past E: another database, longer.
    let mut other = Db::new();
    other.seed = 12345;
    while (other.bytes.len() as u64) < end + 5000 {
        other.grow(1);
    }
    other.save(&t.path().join("Data.fs"));
    let err = ok(
        &repozo(
            t.path(),
            Some("2024-01-02-00-00-00"),
            &with(B, &["-Q", "-v"]),
        ),
        "quick backup",
    );
    assert!(err.contains("full backup"), "{err}");
    assert!(t.path().join("repo/2024-01-02-00-00-00.fs").exists());
    recovers_to(t.path(), "2024-01-02-00-00-00", &other.bytes, "recover");
}

/// Issue 16, 2: a space in the repository path made every later backup
/// and recover fail ("expected 4 fields, found 5"); a tab likewise. A line
/// break cannot be written to the `.dat` log at all: refused.
#[test]
fn regression_a_repository_path_with_spaces_and_tabs_keeps_working() {
    for repo in ["my repo", "tab\there", " lead and trail "] {
        let (t, mut db) = workspace(10);
        fs::create_dir(t.path().join(repo)).unwrap();
        let b = ["-B", "-r", repo, "-f", "Data.fs"];
        ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), &b), repo);
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        ok(&repozo(t.path(), Some("2024-01-02-00-00-00"), &b), repo);
        assert!(t
            .path()
            .join(repo)
            .join("2024-01-02-00-00-00.deltafs")
            .exists());
        let q = ["-B", "-Q", "-r", repo, "-f", "Data.fs"];
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        ok(&repozo(t.path(), Some("2024-01-03-00-00-00"), &q), repo);
        ok(
            &repozo(t.path(), Some("2024-01-03-00-00-00"), &["-V", "-r", repo]),
            repo,
        );
        let r = ["-R", "-w", "-r", repo, "-o", "out.fs"];
        ok(&repozo(t.path(), Some("2024-01-03-00-00-00"), &r), repo);
        assert!(
            fs::read(t.path().join("out.fs")).unwrap() == db.bytes,
            "{repo}"
        );
    }
    let (t, _) = workspace(3);
    fs::create_dir(t.path().join("new\nline")).unwrap();
    let err = fails(
        &repozo(
            t.path(),
            Some("2024-01-01-00-00-00"),
            &["-B", "-r", "new\nline", "-f", "Data.fs"],
        ),
        "newline",
    );
    assert_eq!(
        err,
        "new\nline: cannot back up into it: a line break in the repository path cannot be written to the .dat log"
    );
    assert!(names(&t.path().join("new\nline")).is_empty());
}

/// Issue 16, 4: a full backup and an incremental in the same second shared
/// a stem: the increment overwrote the full's `.index` and the chain broke.
#[test]
fn regression_two_backups_in_one_second_never_share_a_stem() {
    // With the clock fixed (it cannot move on), the second is refused.
    let (t, mut db) = workspace(10);
    let now = Some("2024-01-01-00-00-00");
    ok(&repozo(t.path(), now, &with(B, &["-F"])), "full");
    let before = names(&t.path().join("repo"));
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    let err = fails(&repozo(t.path(), now, B), "same second");
    assert_eq!(
        err,
        "repo/2024-01-01-00-00-00.fs: cannot back up: a backup of this second (2024-01-01-00-00-00) exists already; try again in a second"
    );
    assert_eq!(names(&t.path().join("repo")), before);
    // With the real clock, the second waits for the next second.
    let (t, mut db) = workspace(10);
    for i in 0..4 {
        db.grow(1);
        db.save(&t.path().join("Data.fs"));
        let extra: &[&str] = if i % 2 == 0 { &["-F"] } else { &[] };
        ok(&repozo(t.path(), None, &with(B, extra)), "real clock");
    }
    let data: Vec<String> = names(&t.path().join("repo"))
        .into_iter()
        .filter(|n| n.ends_with(".fs") || n.ends_with(".deltafs"))
        .collect();
    assert_eq!(data.len(), 4, "{data:?}");
    ok(&repozo(t.path(), None, &["-V", "-r", "repo"]), "verify");
    let out = repozo(t.path(), None, &["-R", "-r", "repo", "-o", "out.fs"]);
    ok(&out, "recover");
    assert!(fs::read(t.path().join("out.fs")).unwrap() == db.bytes);
}

/// Issue 16, 5: a clock gone back named a backup before the newest; `-R`
/// then failed and `-F -k` deleted the newer backups.
#[test]
fn regression_a_backup_never_sorts_before_the_newest() {
    let (t, mut db) = workspace(10);
    ok(&repozo(t.path(), Some("2024-01-05-00-00-00"), B), "full");
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    ok(
        &repozo(t.path(), Some("2024-01-06-00-00-00"), B),
        "incremental",
    );
    let before = names(&t.path().join("repo"));
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    for extra in [&[][..], &["-Q"], &["-F", "-k"]] {
        let err = fails(
            &repozo(t.path(), Some("2024-01-02-00-00-00"), &with(B, extra)),
            "clock back",
        );
        assert_eq!(
            err,
            "repo/2024-01-06-00-00-00.deltafs: cannot back up: this backup is newer than the time now (2024-01-02-00-00-00); did the clock go back?"
        );
        assert_eq!(names(&t.path().join("repo")), before);
    }
    // Nothing to back up is no error, whatever the clock says.
    db.save(&t.path().join("Data.fs"));
    let mut same = Db::new();
    same.grow(10);
    same.grow(2);
    same.save(&t.path().join("Data.fs"));
    ok(
        &repozo(t.path(), Some("2024-01-02-00-00-00"), B),
        "nothing new",
    );
    assert_eq!(names(&t.path().join("repo")), before);
}

/// Issue 16, 6: one bad line in an old chain's `.dat` blocked every backup,
/// `-F` too. Issue 16, 7 and the same for the newest chain: a damaged
/// current backup or `.dat` line gives the chain up for a full backup,
/// said on stderr, and leaves the old files as they are.
#[test]
fn regression_damage_never_blocks_the_next_backup() {
    for damage in ["old dat", "newest dat", "newest fsz", "newest full missing"] {
        let (t, mut db) = workspace(10);
        let gz: &[&str] = if damage == "newest fsz" { &["-z"] } else { &[] };
        ok(
            &repozo(t.path(), Some("2024-01-01-00-00-00"), &with(B, gz)),
            damage,
        );
        db.grow(2);
        db.save(&t.path().join("Data.fs"));
        ok(
            &repozo(t.path(), Some("2024-01-02-00-00-00"), &with(B, gz)),
            damage,
        );
        if damage == "old dat" {
            db.grow(2);
            db.save(&t.path().join("Data.fs"));
            ok(
                &repozo(t.path(), Some("2024-01-03-00-00-00"), &with(B, &["-F"])),
                damage,
            );
        }
        let repo = t.path().join("repo");
        match damage {
            "old dat" | "newest dat" => {
                let dat = repo.join("2024-01-01-00-00-00.dat");
                let text = fs::read_to_string(&dat).unwrap();
                fs::write(&dat, text.replacen(" 0 ", " zero ", 1)).unwrap();
            }
            "newest fsz" => {
                let f = repo.join("2024-01-01-00-00-00.fsz");
                let mut b = fs::read(&f).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                b[mid + 1] ^= 0xff;
                fs::write(&f, b).unwrap();
            }
            _ => fs::remove_file(repo.join("2024-01-01-00-00-00.fs")).unwrap(),
        }
        let before = names(&repo);
        for (i, extra) in [&[][..], &["-Q"], &["-F"]].into_iter().enumerate() {
            db.grow(2);
            db.save(&t.path().join("Data.fs"));
            let now = format!("2024-01-1{i}-00-00-00");
            let err = ok(
                &repozo(t.path(), Some(&now), &with(B, &with(extra, gz))),
                damage,
            );
            // The old chain's damage is no concern of a backup that
            // continues the newest one; once a full backup replaced the
            // damaged newest chain, the next one continues the new chain.
            let full = i == 2 || (i == 0 && damage != "old dat");
            let kind = if full { "fs" } else { "deltafs" };
            let z = if gz.is_empty() { "" } else { "z" };
            let made = repo.join(format!("{now}.{kind}{z}"));
            assert!(made.exists(), "{damage} {extra:?}: no {kind}: {err}");
            if damage != "old dat" && extra.is_empty() && i == 0 {
                assert!(err.contains("(full backup)"), "{damage}: not said: {err}");
            }
            recovers_to(t.path(), &now, &db.bytes, damage);
        }
        for name in &before {
            assert!(repo.join(name).exists(), "{damage}: {name} was moved");
        }
    }
}

/// Issue 16, 3: a torn `.dat` line and a full disk: repair renamed the
/// `.dat` aside, could not write its replacement, and the next run set
/// the whole chain aside. Needs a tmpfs (root); skipped otherwise.
#[test]
fn regression_a_full_disk_during_repair_loses_nothing() {
    let (t, mut db) = workspace(10);
    let mnt = t.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let Some(_mounted) = mount_tmpfs(&mnt, "1m") else {
        eprintln!(
            "SKIPPED regression_a_full_disk_during_repair_loses_nothing: cannot mount a tmpfs"
        );
        return;
    };
    fs::create_dir(mnt.join("repo")).unwrap();
    let b = ["-B", "-r", "small/repo", "-f", "Data.fs"];
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), &b), "full");
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    ok(
        &repozo(t.path(), Some("2024-01-02-00-00-00"), &b),
        "incremental",
    );
    let dat = mnt.join("repo/2024-01-01-00-00-00.dat");
    let good = fs::read(&dat).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(b"small/repo/2024-01-03-00-00-00.deltafs 12");
    fs::write(&dat, &torn).unwrap();
    // Fill the disk.
    let filler = mnt.join("filler");
    let mut size = 1 << 20;
    while size > 0 {
        let f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&filler)
            .unwrap();
        if std::io::Write::write_all(&mut &f, &vec![1u8; size]).is_err() {
            size /= 2;
        }
    }
    let before = names(&mnt.join("repo"));
    let err = fails(
        &repozo(t.path(), Some("2024-01-04-00-00-00"), &b),
        "full disk",
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(names(&mnt.join("repo")), before, "{err}");
    assert!(fs::read(&dat).unwrap() == torn);
    fs::remove_file(&filler).unwrap();
    let err = ok(&repozo(t.path(), Some("2024-01-05-00-00-00"), &b), "after");
    assert!(err.contains("cut short"), "{err}");
    let r = ["-R", "-r", "small/repo", "-o", "out.fs"];
    ok(
        &repozo(t.path(), Some("2024-01-05-00-00-00"), &r),
        "recover",
    );
    assert!(fs::read(t.path().join("out.fs")).unwrap() == db.bytes);
    assert_eq!(
        fs::read(mnt.join("repo/2024-01-01-00-00-00.dat.orphaned")).unwrap(),
        torn
    );
}

/// Issue 16, smaller: a last line that only lacks its newline is whole: it
/// is completed, not treated as torn with its backup set aside.
#[test]
fn regression_a_last_line_without_its_newline_is_kept() {
    let (t, mut db) = workspace(10);
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "full");
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    ok(
        &repozo(t.path(), Some("2024-01-02-00-00-00"), B),
        "incremental",
    );
    let dat = t.path().join("repo/2024-01-01-00-00-00.dat");
    let text = fs::read_to_string(&dat).unwrap();
    fs::write(&dat, text.trim_end_matches('\n')).unwrap();
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    let err = ok(&repozo(t.path(), Some("2024-01-03-00-00-00"), B), "next");
    assert!(err.contains("lacked its newline"), "{err}");
    assert!(!err.contains("set aside"), "{err}");
    assert!(t.path().join("repo/2024-01-02-00-00-00.deltafs").exists());
    assert!(t.path().join("repo/2024-01-03-00-00-00.deltafs").exists());
    assert_eq!(fs::read_to_string(&dat).unwrap().lines().count(), 3);
    recovers_to(t.path(), "2024-01-03-00-00-00", &db.bytes, "recover");
}

/// Issue 16, smaller: setuid, setgid and world-writable bits of Data.fs
/// were copied to the backup files.
#[test]
fn regression_backups_get_only_safe_permission_bits() {
    let (t, _) = workspace(5);
    let data = t.path().join("Data.fs");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o6777)).unwrap();
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "backup");
    for name in [
        "2024-01-01-00-00-00.fs",
        "2024-01-01-00-00-00.index",
        "2024-01-01-00-00-00.dat",
    ] {
        let mode = fs::metadata(t.path().join("repo").join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o664, "{name}");
    }
}

/// Issue 16, smaller: `*.orphaned` files were never removed; `-k` removes
/// those older than the grace period, and only those.
#[test]
fn kill_old_removes_what_repair_set_aside_long_ago() {
    let (t, mut db) = workspace(5);
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "full");
    let repo = t.path().join("repo");
    let old = repo.join("2024-01-01-00-00-30.deltafs.orphaned");
    let young = repo.join("2024-01-01-00-00-40.deltafs.orphaned.1");
    let other = repo.join("notes.orphaned.txt");
    for f in [&old, &young, &other] {
        fs::write(f, b"x").unwrap();
    }
    let long_ago = std::time::SystemTime::now() - repozo::commands::backup::ORPHAN_GRACE * 2;
    for f in [&old, &other] {
        fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    db.grow(2);
    db.save(&t.path().join("Data.fs"));
    ok(
        &repozo(
            t.path(),
            Some("2024-01-02-00-00-00"),
            &with(B, &["-F", "-k"]),
        ),
        "-k",
    );
    assert!(!old.exists());
    assert!(young.exists());
    assert!(other.exists(), "not a name repair gives");
}

/// Found trying `ulimit -n`: with few descriptors left, the directory
/// fsync after the data file's rename failed, leaving a data file without
/// its `.dat` line. The directory is now opened before the first rename.
#[test]
fn regression_running_out_of_descriptors_renames_nothing() {
    let (t, db) = workspace(5);
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 8 && exec \"$0\" -B -r repo -f Data.fs")
        .arg(env!("CARGO_BIN_EXE_repozo"))
        .current_dir(t.path())
        .env("REPOZO_TEST_NOW", "2024-01-01-00-00-00")
        .output()
        .unwrap();
    let err = fails(&out, "ulimit -n 8");
    assert!(err.contains("Too many open files"), "{err}");
    assert!(names(&t.path().join("repo")).is_empty(), "{err}");
    ok(&repozo(t.path(), Some("2024-01-01-00-00-01"), B), "after");
    recovers_to(t.path(), "2024-01-01-00-00-01", &db.bytes, "recover");
}

/// Issue 16, smaller: a `-f` path that is not UTF-8 was a usage error;
/// Python backs it up (Unix paths are bytes). Its `.index` beside it is
/// found under the same bytes.
#[test]
fn regression_a_data_fs_path_of_any_bytes_is_backed_up() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (t, db) = workspace(8);
    let name = OsStr::from_bytes(b"D\xffata.fs");
    // A first backup only makes the index that will sit beside the file.
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "first");
    let mut index = name.to_owned();
    index.push(".index");
    fs::copy(
        t.path().join("repo/2024-01-01-00-00-00.index"),
        t.path().join(&index),
    )
    .unwrap();
    fs::rename(t.path().join("Data.fs"), t.path().join(name)).unwrap();
    fs::remove_dir_all(t.path().join("repo")).unwrap();
    fs::create_dir(t.path().join("repo")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .args(["-B", "-v", "-r", "repo", "-f"])
        .arg(name)
        .current_dir(t.path())
        .env("REPOZO_TEST_NOW", "2024-01-02-00-00-00")
        .output()
        .unwrap();
    let err = ok(&out, "odd bytes");
    assert!(
        err.contains("reading the index from D\u{fffd}ata.fs.index"),
        "{err}"
    );
    recovers_to(t.path(), "2024-01-02-00-00-00", &db.bytes, "recover");
}

/// Issue 10, 1: a 1 MB `Data.fs.index` of a million nested TUPLE1s made
/// `-B` abort with a stack overflow (exit 134); as a backup's `.index` it
/// must not crash `-R` either. Both ignore it and go on.
#[test]
fn regression_a_deeply_nested_index_is_ignored_not_a_crash() {
    let mut evil = b"\x80\x03N".to_vec();
    evil.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    evil.push(b'.');
    let (t, db) = workspace(8);
    fs::write(t.path().join("Data.fs.index"), &evil).unwrap();
    let err = ok(
        &repozo(t.path(), Some("2024-01-01-00-00-00"), &with(B, &["-v"])),
        "backup",
    );
    assert!(err.contains("not using index Data.fs.index"), "{err}");
    fs::write(t.path().join("repo/2024-01-01-00-00-00.index"), &evil).unwrap();
    let out = repozo(
        t.path(),
        Some("2024-01-01-00-00-00"),
        &["-R", "-r", "repo", "-o", "out.fs"],
    );
    let err = ok(&out, "recover");
    assert!(err.contains("Not restoring index file"), "{err}");
    assert!(fs::read(t.path().join("out.fs")).unwrap() == db.bytes);
    assert!(!t.path().join("out.fs.index").exists());
}

/// Run with a deadline: a hang is a failure, not a stuck test.
fn repozo_within(dir: &Path, now: &str, args: &[&str], secs: u64) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .args(args)
        .current_dir(dir)
        .env("REPOZO_TEST_NOW", now)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Issue 10, 2: a FIFO named `Data.fs.index` hung `-B`, one named like the
/// last backup's `.index` hung `-R`, a FIFO `.dat` hung `-V`. Every file
/// opened by name is opened non-blocking and judged by its fstat.
#[test]
fn regression_fifos_named_like_our_files_never_hang() {
    let mkfifo = |p: &Path| {
        let _ = fs::remove_file(p);
        assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    };
    let (t, db) = workspace(8);
    ok(&repozo(t.path(), Some("2024-01-01-00-00-00"), B), "first");
    mkfifo(&t.path().join("Data.fs.index"));
    let out = repozo_within(t.path(), "2024-01-02-00-00-00", &with(B, &["-F", "-v"]), 10)
        .expect("-B hung on a FIFO Data.fs.index");
    let err = ok(&out, "backup");
    assert!(err.contains("not a regular file"), "{err}");
    mkfifo(&t.path().join("repo/2024-01-02-00-00-00.index"));
    let r = ["-R", "-r", "repo", "-o", "out.fs"];
    let out =
        repozo_within(t.path(), "2024-01-02-00-00-00", &r, 10).expect("-R hung on a FIFO .index");
    let err = ok(&out, "recover");
    assert_eq!(
        err.trim_end(),
        "Not restoring index file repo/2024-01-02-00-00-00.index: cannot open: not a regular file"
    );
    assert!(fs::read(t.path().join("out.fs")).unwrap() == db.bytes);
    assert!(!t.path().join("out.fs.index").exists());
    mkfifo(&t.path().join("repo/2024-01-02-00-00-00.dat"));
    let out = repozo_within(t.path(), "2024-01-02-00-00-00", &["-V", "-r", "repo"], 10)
        .expect("-V hung on a FIFO .dat");
    let err = fails(&out, "verify");
    assert_eq!(
        err,
        "repo/2024-01-02-00-00-00.dat: cannot open: not a regular file"
    );
}

/// Issue 10: a failing disk under a `.fsz` was reported as "corrupt gzip
/// data". EIO is injected on the reads of that one file with strace
/// (skipped where strace is missing or cannot trace).
#[test]
fn regression_a_failing_disk_is_not_corrupt_gzip_data() {
    let (t, _) = workspace(8);
    ok(
        &repozo(t.path(), Some("2024-01-01-00-00-00"), &with(B, &["-z"])),
        "backup",
    );
    let fsz = "repo/2024-01-01-00-00-00.fsz";
    let traced = |args: &[&str]| {
        Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-P", fsz])
            .args([
                "-e",
                "trace=read,pread64",
                "-e",
                "inject=read,pread64:error=EIO",
            ])
            .arg(env!("CARGO_BIN_EXE_repozo"))
            .args(args)
            .current_dir(t.path())
            .env("REPOZO_TEST_NOW", "2024-01-01-00-00-00")
            .output()
    };
    match traced(&["-V", "-r", "repo"]) {
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("PTRACE") => {}
        _ => {
            eprintln!("SKIPPED regression_a_failing_disk_is_not_corrupt_gzip_data: no strace");
            return;
        }
    }
    for args in [
        &["-V", "-r", "repo"][..],
        &["-R", "-r", "repo", "-o", "out.fs"],
    ] {
        let out = traced(args).unwrap();
        let err = fails(&out, "EIO");
        let last = err.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            format!("{fsz}: read: Input/output error (os error 5)"),
            "{args:?}"
        );
        assert!(!t.path().join("out.fs").exists());
    }
}
