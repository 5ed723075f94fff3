//! `-R -o FILE` onto an existing FILE: a standby brought forward by
//! appending, rolled back by truncating, always in place when FILE holds
//! the chain's prefix and in full otherwise; killed at every step and
//! finished by the next run; failing without losing FILE's state.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tempfile::TempDir;

use crate::common::{
    assert_index_is_a_scan, fails, files, fixture, mount_tmpfs, ok, repozo_at, Db,
};
use crate::crash::backup_killed_at;

fn stamp(i: usize) -> String {
    format!("2024-01-{:02}-00-00-00", i + 1)
}

/// A repository of a full backup and `increments` increments of a growing
/// database, and the database's bytes at each backup.
fn chain(increments: usize, gzip: bool) -> (TempDir, Vec<Vec<u8>>) {
    chain_of(increments, 4, gzip)
}

/// [`chain`], each increment `txns` transactions or more (of 50 KB or so).
fn chain_of(increments: usize, txns: usize, gzip: bool) -> (TempDir, Vec<Vec<u8>>) {
    let t = TempDir::new().unwrap();
    let d = t.path();
    fs::create_dir(d.join("repo")).unwrap();
    let mut db = Db::new();
    let mut states = Vec::new();
    for i in 0..=increments {
        db.grow(if i == 0 { 30 } else { txns + i });
        db.save(&d.join("Data.fs"));
        let mut args = vec!["-B", "-r", "repo", "-f", "Data.fs"];
        if gzip {
            args.push("-z");
        }
        ok(&repozo_at(d, &stamp(i), &args), "backup");
        states.push(db.bytes.clone());
    }
    (t, states)
}

const NOW: &str = "2024-02-01-00-00-00";

/// Recover `-D date` (the newest without one) into `out.fs`, with `extra`
/// options and `-v`; the stderr.
fn recover(d: &Path, date: Option<usize>, extra: &[&str]) -> String {
    let out = recover_output(d, date, extra);
    ok(&out, &format!("recover to {date:?} {extra:?}"))
}

fn recover_output(d: &Path, date: Option<usize>, extra: &[&str]) -> std::process::Output {
    let s = date.map(stamp);
    let mut args = vec!["-R", "-v", "-r", "repo", "-o", "out.fs"];
    if let Some(s) = &s {
        args.extend(["-D", s]);
    }
    args.extend_from_slice(extra);
    repozo_at(d, NOW, &args)
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

/// out.fs is `want`, with an index that describes it, and nothing of an
/// in-place run is left beside it.
fn assert_state(d: &Path, want: &[u8], what: &str) {
    assert!(fs::read(d.join("out.fs")).unwrap() == want, "{what}: bytes");
    assert_index_is_a_scan(&d.join("out.fs"), &d.join("out.fs.index"), what);
    for left in ["out.fs.recovering", "out.fs.part"] {
        assert!(!d.join(left).exists(), "{what}: {left} left");
    }
}

#[test]
fn a_standby_follows_every_date_forward_and_back_in_place() {
    for gzip in [false, true] {
        let (t, states) = chain(4, gzip);
        let d = t.path();
        let err = recover(d, Some(0), &[]);
        assert!(!err.contains("Recovering in"), "a new file: {err}");
        let first = ino(&d.join("out.fs"));
        assert_state(d, &states[0], "the first state");
        let mut dates: Vec<usize> = (1..states.len()).collect();
        dates.extend((0..states.len() - 1).rev());
        dates.extend([2, 2]);
        for (step, &i) in dates.iter().enumerate() {
            let quick: &[&str] = if step % 2 == 0 { &[] } else { &["-Q"] };
            let err = recover(d, Some(i), quick);
            let what = format!("gzip {gzip}, step {step} to state {i} {quick:?}");
            assert!(err.contains("Recovering in place: out.fs"), "{what}: {err}");
            assert_eq!(ino(&d.join("out.fs")), first, "{what}: replaced");
            assert_state(d, &states[i], &what);
            // ZODB's lock file, made for the run, is left as ZODB leaves it.
            assert!(d.join("out.fs.lock").is_file(), "{what}");
        }
        // The newest by default; with -w the appended files are checked.
        recover(d, Some(0), &[]);
        let err = recover(d, None, &["-w"]);
        assert!(err.contains("Recovering in place"), "{err}");
        assert!(err.contains("md5:"), "-w says what it checked: {err}");
        assert_state(d, states.last().unwrap(), "newest with -w");
        // -F: the old way.
        let err = recover(d, Some(1), &["-F"]);
        assert!(
            err.contains("Recovering in full: out.fs: -F given"),
            "{err}"
        );
        assert_ne!(ino(&d.join("out.fs")), first);
        assert_state(d, &states[1], "-F");
    }
}

#[test]
fn a_standby_that_is_no_prefix_of_the_chain_is_recovered_in_full() {
    let (t, states) = chain(3, false);
    let d = t.path();
    let full_after = |extra: &[&str], want: &[u8], expect: &str, what: &str| {
        let before = ino(&d.join("out.fs"));
        let err = recover(d, None, extra);
        assert!(
            err.contains(&format!("Recovering in full: out.fs: {expect}")),
            "{what}: {err}"
        );
        assert_ne!(ino(&d.join("out.fs")), before, "{what}: in place");
        assert_state(d, want, what);
    };
    let newest = states.last().unwrap();

    // Cut inside a transaction, or past the newest backup's end.
    recover(d, Some(1), &[]);
    let len = states[1].len() as u64;
    fs::File::options()
        .write(true)
        .open(d.join("out.fs"))
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    full_after(&[], newest, "its length", "cut short");
    let mut longer = newest.clone();
    longer.extend_from_slice(b"trailing junk");
    fs::write(d.join("out.fs"), &longer).unwrap();
    full_after(&[], newest, "its length", "longer");

    // One byte changed in the first range: found by default, and by -Q
    // when it is in the last range kept, not otherwise (its documented
    // trade).
    for (at, extra, found) in [
        (100, &[][..], true),
        (100, &["-Q"][..], false),
        (states[1].len() - 20, &["-Q"][..], true),
    ] {
        recover(d, Some(1), &["-F"]);
        let mut bytes = fs::read(d.join("out.fs")).unwrap();
        bytes[at] ^= 0x40;
        fs::write(d.join("out.fs"), &bytes).unwrap();
        let what = format!("byte {at} changed, {extra:?}");
        if found {
            full_after(extra, newest, "its bytes", &what);
        } else {
            let err = recover(d, None, extra);
            assert!(err.contains("Recovering in place"), "{what}: {err}");
        }
    }

    // A hard link elsewhere would change too; a running ZODB holds
    // FILE.lock, which we must not change FILE under.
    recover(d, Some(1), &[]);
    fs::hard_link(d.join("out.fs"), d.join("snapshot.fs")).unwrap();
    full_after(&[], newest, "it has 2 hard links", "hard link");
    assert!(fs::read(d.join("snapshot.fs")).unwrap() == states[1]);
    // A reader (a read-only FileStorage takes no lock) keeps the old file
    // through a full recovery; it would read a changed one.
    recover(d, Some(1), &[]);
    let reader = fs::File::open(d.join("out.fs")).unwrap();
    full_after(&[], newest, "process", "a reader");
    drop(reader);
    // A writer, or another recovery, holds ZODB's lock, by the name given
    // or the name it leads to: its file is neither changed nor replaced.
    recover(d, Some(1), &[]);
    fs::create_dir(d.join("via")).unwrap();
    std::os::unix::fs::symlink("../out.fs", d.join("via/link.fs")).unwrap();
    // (the lock held, the -o given, the lock as the message shows it)
    for (held, given, said) in [
        ("out.fs.lock", "out.fs", "out.fs.lock"),
        ("via/link.fs.lock", "via/link.fs", "via/link.fs.lock"),
        ("out.fs.lock", "via/link.fs", "via/../out.fs.lock"),
    ] {
        let lock = fs::File::create(d.join(held)).unwrap();
        lock.lock().unwrap();
        let target = if given == "out.fs" {
            "out.fs"
        } else {
            "via/../out.fs"
        };
        for extra in [&[][..], &["-F"][..]] {
            let mut args = vec!["-R", "-r", "repo", "-o", given];
            args.extend_from_slice(extra);
            let err = fails(&repozo_at(d, NOW, &args), "locked");
            assert_eq!(
                err,
                format!(
                    "{target}: cannot recover into it: {said} is locked: a running ZODB (or another recovery) has it open; stop it first"
                ),
                "{given} {extra:?}"
            );
            assert!(fs::read(d.join("out.fs")).unwrap() == states[1]);
        }
    }

    // A writer that took its lock by a name we do not know (or none), and
    // a lock that is a link (zc.lockfile follows it, and so do we): its
    // file is neither changed nor replaced.
    let writer = fs::File::options()
        .write(true)
        .open(d.join("out.fs"))
        .unwrap();
    for extra in [&[][..], &["-F"][..]] {
        let mut args = vec!["-R", "-r", "repo", "-o", "out.fs"];
        args.extend_from_slice(extra);
        let err = fails(&repozo_at(d, NOW, &args), "a writer");
        assert!(
            err.starts_with("out.fs: cannot recover into it: process "),
            "{err}"
        );
        assert!(
            err.ends_with("has it open for writing; stop it first"),
            "{err}"
        );
    }
    drop(writer);
    let _ = fs::remove_file(d.join("out.fs.lock"));
    let held = fs::File::create(d.join("elsewhere.lock")).unwrap();
    held.lock().unwrap();
    std::os::unix::fs::symlink("elsewhere.lock", d.join("out.fs.lock")).unwrap();
    let err = fails(
        &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out.fs"]),
        "lock link",
    );
    assert!(err.ends_with("out.fs.lock is locked: a running ZODB (or another recovery) has it open; stop it first"), "{err}");
    assert!(fs::read(d.join("out.fs")).unwrap() == states[1]);
    drop(held);
    fs::remove_file(d.join("out.fs.lock")).unwrap();

    // A pack: the next full backup starts another chain, of which the
    // standby is no prefix.
    let mut packed = Db::new();
    packed.grow(12);
    packed.save(&d.join("Data.fs"));
    ok(
        &repozo_at(
            d,
            "2024-01-20-00-00-00",
            &["-B", "-r", "repo", "-f", "Data.fs"],
        ),
        "full after a pack",
    );
    full_after(&[], &packed.bytes, "its", "after a pack");
}

/// Every step of an in-place recovery, killed in turn: whatever a kill
/// leaves, an index beside FILE describes FILE, and the same command run
/// again finishes the job in place.
#[test]
fn in_place_recoveries_killed_at_every_step_are_finished_by_the_next_run() {
    let calls = [
        "write,pwrite64,copy_file_range",
        "ftruncate",
        "fsync,fdatasync",
        "rename,renameat,renameat2",
        "unlink,unlinkat",
        "openat",
    ];
    let mut kills = 0;
    let mut torn = 0;
    for gzip in [false, true] {
        // Increments of a few MB: appended in several writes.
        let (t, states) = chain_of(3, 60, gzip);
        let d = t.path();
        // Forward from the first state, back from the newest.
        for (from, to) in [(0, 3), (3, 1)] {
            for call in calls {
                for n in 1..=60 {
                    recover(d, Some(from), &["-F"]);
                    let what = format!("gzip {gzip}, {from} -> {to}, killed at {call} #{n}");
                    let date = stamp(to);
                    let args = ["-R", "-r", "repo", "-o", "out.fs", "-D", &date];
                    let Some(killed) = backup_killed_at(d, NOW, &args, call, n) else {
                        eprintln!("SKIPPED in_place_recoveries_killed_at_every_step: no strace");
                        return;
                    };
                    let out = d.join("out.fs");
                    if d.join("out.fs.index").exists() {
                        assert_index_is_a_scan(&out, &d.join("out.fs.index"), &what);
                    }
                    // FILE is never between two states without saying so.
                    let len = fs::metadata(&out).unwrap().len() as usize;
                    if !states.iter().any(|s| s.len() == len) {
                        assert!(d.join("out.fs.recovering").exists(), "{what}: no marker");
                        torn += 1;
                    }
                    let err = recover(d, Some(to), &["-Q"]);
                    assert!(err.contains("Recovering in place"), "{what}: {err}");
                    assert_state(d, &states[to], &what);
                    if !killed {
                        break;
                    }
                    kills += 1;
                }
            }
        }
    }
    assert!(kills > 60, "only {kills} kills");
    assert!(torn > 4, "only {torn} kills mid-append");
}

#[test]
fn a_failed_append_leaves_the_standby_at_its_state() {
    let (t, states) = chain(2, true);
    let d = t.path();
    recover(d, Some(0), &[]);
    let repo = d.join("repo");
    let last = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deltafsz"))
        .max()
        .unwrap();
    let good = fs::read(&last).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&last, &bad).unwrap();
    let err = fails(&recover_output(d, None, &[]), "a damaged increment");
    assert!(err.contains(".deltafsz"), "{err}");
    assert!(fs::read(d.join("out.fs")).unwrap() == states[0]);
    fs::write(&last, &good).unwrap();
    let err = recover(d, None, &[]);
    assert!(err.contains("Recovering in place"), "{err}");
    assert_state(d, &states[2], "after the repair");

    // A disk too small for the target: FILE is cut back, the next run
    // (with room) finishes.
    let small = d.join("small");
    fs::create_dir(&small).unwrap();
    let need = states[2].len();
    let size = format!("{}k", (states[0].len() + need / 4) / 1024 + 8);
    let Some(_mount) = mount_tmpfs(&small, &size) else {
        eprintln!("SKIPPED a_failed_append_leaves_the_standby_at_its_state: no tmpfs");
        return;
    };
    fs::write(small.join("Data.fs"), &states[0]).unwrap();
    let args = ["-R", "-r", "repo", "-o", "small/Data.fs", "-D", &stamp(2)];
    let err = fails(&repozo_at(d, NOW, &args), "a full disk");
    assert!(err.contains("small/Data.fs"), "{err}");
    assert!(fs::read(small.join("Data.fs")).unwrap() == states[0]);
}

/// The blob fixture cut after each of its transactions, backed up with
/// its blob files of the time; a standby with a blob directory follows
/// each date in place.
#[test]
fn the_blob_directory_follows_in_place() {
    let t = TempDir::new().unwrap();
    let d = t.path();
    fs::create_dir(d.join("repo")).unwrap();
    let src = fixture("testdata/blobs/bushy");
    let full = fs::read(src.join("Data.fs")).unwrap();
    let all = files(&src.join("blobstorage"));
    let mut states = Vec::new();
    let mut pos = 4;
    let mut i = 0;
    while pos < full.len() {
        let tid = u64::from_be_bytes(full[pos..pos + 8].try_into().unwrap());
        let tlen = u64::from_be_bytes(full[pos + 8..pos + 16].try_into().unwrap());
        pos += tlen as usize + 8;
        let blobs: BTreeMap<String, Vec<u8>> = all
            .iter()
            .filter(|(k, _)| {
                k.as_str() == ".layout"
                    || k.rsplit('/')
                        .next()
                        .and_then(|n| n.strip_prefix("0x"))
                        .and_then(|n| n.strip_suffix(".blob"))
                        .is_some_and(|h| u64::from_str_radix(h, 16).unwrap() <= tid)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = fs::remove_dir_all(d.join("blobstorage"));
        write_files(&d.join("blobstorage"), &blobs);
        fs::write(d.join("Data.fs"), &full[..pos]).unwrap();
        ok(&repozo_at(d, &stamp(i), crate::blobs::BACKUP), "backup");
        states.push((full[..pos].to_vec(), blobs));
        i += 1;
    }
    assert!(states.len() >= 4);
    let blob_recover = |date: usize, extra: &[&str]| {
        let s = stamp(date);
        let mut args = vec![
            "-R",
            "-v",
            "-r",
            "repo",
            "-o",
            "out.fs",
            "--blob-dir",
            "blobs",
            "-D",
            &s,
        ];
        args.extend_from_slice(extra);
        ok(&repozo_at(d, NOW, &args), &format!("recover {date}"))
    };
    blob_recover(0, &[]);
    let first = ino(&d.join("out.fs"));
    let mut dates: Vec<usize> = (1..states.len()).collect();
    dates.extend((0..states.len() - 1).rev());
    for i in dates {
        let err = blob_recover(i, &[]);
        assert!(err.contains("Recovering in place"), "{i}: {err}");
        assert_eq!(ino(&d.join("out.fs")), first);
        assert!(fs::read(d.join("out.fs")).unwrap() == states[i].0, "{i}");
        assert_eq!(files(&d.join("blobs")), states[i].1, "blobs of state {i}");
    }
    // ZODB's tmp directory is left alone.
    fs::create_dir_all(d.join("blobs/tmp")).unwrap();
    fs::write(d.join("blobs/tmp/uncommitted"), b"x").unwrap();
    let newest = states.len() - 1;
    let err = blob_recover(newest, &["-Q"]);
    assert!(err.contains("Recovering in place"), "{err}");
    assert!(d.join("blobs/tmp/uncommitted").exists());
    assert_eq!(files(&d.join("blobs")), states[newest].1);

    // A blob file changed, one missing, one that no backup made: in full.
    let (name, _) = states[newest]
        .1
        .iter()
        .find(|(k, v)| k.ends_with(".blob") && !v.is_empty())
        .unwrap();
    let path = d.join("blobs").join(name);
    let size = fs::metadata(&path).unwrap().len();
    let mut perm = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&path, perm).unwrap();
    fs::write(&path, vec![b'?'; size as usize]).unwrap();
    let err = blob_recover(newest, &[]);
    assert!(
        err.contains("Recovering in full") && err.contains("md5"),
        "{err}"
    );
    assert_eq!(files(&d.join("blobs")), states[newest].1);
    fs::write(d.join("blobs/0x00/stray.blob"), b"?").unwrap();
    let err = blob_recover(newest, &[]);
    assert!(err.contains("is no blob file of the chain"), "{err}");
    assert_eq!(files(&d.join("blobs")), states[newest].1);
    let path = d.join("blobs").join(name);
    fs::remove_file(&path).unwrap();
    let err = blob_recover(newest, &[]);
    assert!(err.contains("is missing"), "{err}");
    assert_eq!(files(&d.join("blobs")), states[newest].1);
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

/// `-Q` compares a large plain range in two halves at once: a changed
/// byte in either is found, and named.
#[test]
fn a_quick_check_finds_a_change_in_either_half_of_a_large_range() {
    let (t, states) = chain_of(2, 400, false);
    let d = t.path();
    let (start, end) = (states[0].len(), states[1].len());
    assert!(
        end - start > 16 << 20,
        "the range is not large: {}",
        end - start
    );
    for at in [start + 1000, end - 1000] {
        recover(d, Some(1), &["-F"]);
        let mut bytes = fs::read(d.join("out.fs")).unwrap();
        bytes[at] ^= 0x01;
        fs::write(d.join("out.fs"), &bytes).unwrap();
        let err = recover(d, None, &["-Q"]);
        assert!(
            err.contains(&format!(
                "its bytes {start}-{end} are not the chain's (byte {at} differs"
            )),
            "{at}: {err}"
        );
        assert_state(d, &states[2], "after the full recovery");
    }
    recover(d, Some(1), &["-F"]);
    let err = recover(d, None, &["-Q"]);
    assert!(err.contains("Recovering in place"), "{err}");
    assert_state(d, &states[2], "in place");
}
