//! `--blob-dir`: backups of the blob files a Data.fs range refers to, on
//! the real-ZODB fixtures in testdata/blobs (made by make_blobdata.py),
//! and what hostile blob directories and damaged repositories do.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use tempfile::TempDir;

use crate::common::{fails, files, fixture, mount_tmpfs, ok, repozo_at, run};

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A workspace with `repo/`, `Data.fs` and `blobstorage/` copied from the
/// fixture of this layout.
fn site(layout: &str) -> TempDir {
    let t = TempDir::new().unwrap();
    let d = t.path();
    fs::create_dir(d.join("repo")).unwrap();
    let src = fixture(&format!("testdata/blobs/{layout}"));
    fs::copy(src.join("Data.fs"), d.join("Data.fs")).unwrap();
    copy_tree(&src.join("blobstorage"), &d.join("blobstorage"));
    t
}

pub const BACKUP: &[&str] = &[
    "-B",
    "-r",
    "repo",
    "-f",
    "Data.fs",
    "--blob-dir",
    "blobstorage",
];
const RECOVER: &[&str] = &[
    "-R",
    "-r",
    "repo",
    "-o",
    "out/Data.fs",
    "--blob-dir",
    "out/blobs",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

/// The pool's files.
fn pooled(d: &Path) -> Vec<String> {
    let pool = d.join("repo/blobs");
    if !pool.exists() {
        return Vec::new();
    }
    files(&pool).into_keys().collect()
}

#[test]
fn both_layouts_recover_exactly_the_blob_files_zodb_wrote() {
    for layout in ["bushy", "lawn"] {
        let t = site(layout);
        let d = t.path();
        ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), layout);
        fs::create_dir(d.join("out")).unwrap();
        ok(&repozo_at(d, "2024-01-02-00-00-00", RECOVER), layout);
        assert!(
            fs::read(d.join("out/Data.fs")).unwrap() == fs::read(d.join("Data.fs")).unwrap(),
            "{layout}: Data.fs"
        );
        assert_eq!(
            files(&d.join("out/blobs")),
            files(&d.join("blobstorage")),
            "{layout}: the blob directory, .layout included"
        );
        // ZODB's six blob files, one of them the undo's copy: pooled once.
        assert_eq!(pooled(d).len(), 6, "{layout}");
        for (rel, _) in files(&d.join("out/blobs")) {
            let mode = fs::metadata(d.join("out/blobs").join(&rel))
                .unwrap()
                .permissions()
                .mode();
            if rel.ends_with(".blob") {
                assert_eq!(mode & 0o777, 0o444, "{layout}: {rel}");
            }
        }
        ok(
            &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
            layout,
        );
    }
}

#[test]
fn an_increment_stores_only_its_new_blobs_and_recovers_each_date() {
    let t = site("bushy");
    let d = t.path();
    // The first state: the fixture cut after its first transaction, and
    // the blob files that existed then.
    let full = fs::read(d.join("Data.fs")).unwrap();
    let walk = repozo::datafs::Source::open(d.join("Data.fs"))
        .unwrap()
        .walk(0, None, None)
        .unwrap();
    // ZODB's root object, then the three blobs, ...
    assert_eq!(walk.transactions, 5);
    let first_end = transaction_ends(&full)[1];
    fs::write(d.join("Data.fs"), &full[..first_end]).unwrap();
    let all = files(&d.join("blobstorage"));
    let first_tid_files: Vec<String> = {
        let names: Vec<&String> = all.keys().filter(|k| k.ends_with(".blob")).collect();
        let oldest = names
            .iter()
            .map(|k| k.rsplit('/').next().unwrap().to_string())
            .min()
            .unwrap();
        names
            .into_iter()
            .filter(|k| k.ends_with(&oldest))
            .cloned()
            .collect()
    };
    assert_eq!(first_tid_files.len(), 3);
    let later: Vec<&String> = all
        .keys()
        .filter(|k| k.ends_with(".blob") && !first_tid_files.contains(k))
        .collect();
    let hidden = d.join("later");
    for k in &later {
        fs::create_dir_all(hidden.join(k).parent().unwrap()).unwrap();
        fs::rename(d.join("blobstorage").join(k), hidden.join(k)).unwrap();
    }
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "full");
    assert_eq!(pooled(d).len(), 3);
    let state1 = files(&d.join("blobstorage"));

    fs::write(d.join("Data.fs"), &full).unwrap();
    for k in &later {
        fs::rename(hidden.join(k), d.join("blobstorage").join(k)).unwrap();
    }
    let err = ok(
        &repozo_at(d, "2024-01-02-00-00-00", &with(BACKUP, &["-v", "-Q", "-z"])),
        "increment",
    );
    assert!(err.contains("doing incremental"), "{err}");
    assert!(
        err.contains("3 blob records in the range, 3 blob files copied"),
        "{err}"
    );
    assert_eq!(pooled(d).len(), 6);
    fs::create_dir(d.join("out")).unwrap();
    ok(
        &repozo_at(
            d,
            "2024-01-03-00-00-00",
            &with(RECOVER, &["-D", "2024-01-01-12"]),
        ),
        "recover the first state",
    );
    assert_eq!(files(&d.join("out/blobs")), state1, "first state's blobs");
    assert!(fs::read(d.join("out/Data.fs")).unwrap() == full[..first_end]);
    // Recovering the newest state over it leaves exactly that state.
    ok(
        &repozo_at(d, "2024-01-03-00-00-00", &with(RECOVER, &["-w"])),
        "recover the newest state",
    );
    assert_eq!(files(&d.join("out/blobs")), files(&d.join("blobstorage")));
    assert!(fs::read(d.join("out/Data.fs")).unwrap() == full);
    // Nothing new: nothing stored, nothing read again.
    let err = ok(
        &repozo_at(d, "2024-01-04-00-00-00", &with(BACKUP, &["-v", "-F"])),
        "full again",
    );
    assert!(
        err.contains("6 blob records in the range, 0 blob files copied"),
        "{err}"
    );
    assert_eq!(pooled(d).len(), 6);
}

/// Where each transaction of a FileStorage ends.
fn transaction_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 4;
    while pos < bytes.len() {
        let tlen = u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        pos += tlen as usize + 8;
        ends.push(pos);
    }
    ends
}

#[test]
fn a_missing_blob_is_recorded_the_backup_completes_and_verify_fails() {
    let t = site("bushy");
    let d = t.path();
    let victim = files(&d.join("blobstorage"))
        .into_keys()
        .find(|k| k.ends_with(".blob"))
        .unwrap();
    fs::remove_file(d.join("blobstorage").join(&victim)).unwrap();
    let out = repozo_at(d, "2024-01-01-00-00-00", BACKUP);
    let err = ok(&out, "backup with a blob gone");
    assert!(err.contains("is missing, recorded as such"), "{err}");
    assert!(err.contains(&victim), "{err}");
    assert!(d.join("repo/2024-01-01-00-00-00.fs").exists());
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
        "verify",
    );
    assert!(
        err.contains("was missing from the blob directory when it was backed up"),
        "{err}"
    );
}

#[test]
fn links_fifos_and_unknown_layouts_in_the_blob_directory() {
    let t = site("bushy");
    let d = t.path();
    let blobs: Vec<String> = files(&d.join("blobstorage"))
        .into_keys()
        .filter(|k| k.ends_with(".blob"))
        .collect();
    // A blob file replaced by a link out of the directory, another by a
    // FIFO: neither is followed nor waited on.
    fs::write(d.join("secret"), b"not a blob").unwrap();
    fs::remove_file(d.join("blobstorage").join(&blobs[0])).unwrap();
    symlink(d.join("secret"), d.join("blobstorage").join(&blobs[0])).unwrap();
    fs::remove_file(d.join("blobstorage").join(&blobs[1])).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.join("blobstorage").join(&blobs[1]),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let r = run(d, BACKUP);
    r.ok();
    assert!(
        r.stderr
            .contains("a symbolic link on the way (not followed)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    for f in pooled(d) {
        let bytes = fs::read(d.join("repo/blobs").join(&f)).unwrap();
        assert!(bytes != b"not a blob", "{f} holds the link's target");
    }

    // A directory on the way that is a link: not followed either.
    let t = site("bushy");
    let d = t.path();
    let top = d.join("blobstorage/0x00");
    fs::rename(&top, d.join("elsewhere")).unwrap();
    symlink(d.join("elsewhere"), &top).unwrap();
    // Every blob behind it: no backup that passes for one.
    run(d, BACKUP).fails_with(
        "blobstorage: cannot back up blobs from it: none of the 6 blob files the backup needs is there (the site's blob directory, mounted?)",
    );
    assert!(pooled(d).is_empty());

    // A layout ZODB does not know: refused before anything is written.
    let t = site("bushy");
    let d = t.path();
    fs::write(d.join("blobstorage/.layout"), "tree").unwrap();
    let r = run(d, BACKUP);
    r.fails_with(
        "blobstorage/.layout: read: unknown blob directory layout \"tree\" (ZODB knows bushy and lawn)",
    );
    assert!(fs::read_dir(d.join("repo")).unwrap().all(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".repozo")));
    // Not a directory at all.
    run(d, &with(&BACKUP[..5], &["--blob-dir", "Data.fs"]))
        .fails_with("Data.fs: cannot back up blobs from it: not a directory");
}

#[test]
fn damaged_pool_files_fail_verify_and_leave_a_recovery_target_alone() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "backup");
    let victim = pooled(d)
        .into_iter()
        .find(|f| !f.contains("d41d8cd98f00b204e9800998ecf8427e"))
        .unwrap();
    let path = d.join("repo/blobs").join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
        "verify",
    );
    assert!(
        err.contains(&victim) && err.contains("has checksum"),
        "{err}"
    );
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-Q", "-r", "repo"]),
        "-V -Q only sizes",
    );
    // An existing database and blob directory stay as they were.
    fs::create_dir_all(d.join("out/blobs")).unwrap();
    fs::write(d.join("out/Data.fs"), b"old database").unwrap();
    fs::write(d.join("out/blobs/old"), b"old blob").unwrap();
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &with(RECOVER, &["-w"])),
        "recover -w",
    );
    assert!(err.contains(&victim), "{err}");
    assert_eq!(fs::read(d.join("out/Data.fs")).unwrap(), b"old database");
    assert_eq!(files(&d.join("out/blobs")).len(), 1);
    let mut leftovers: Vec<_> = fs::read_dir(d.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    leftovers.sort();
    // ZODB's lock file, taken (and left, as ZODB leaves it) by a recovery
    // onto an existing Data.fs.
    assert_eq!(leftovers, ["Data.fs", "Data.fs.lock", "blobs"]);
    // Truncated: -V -Q sees it.
    fs::write(&path, &bytes[..1]).unwrap();
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-Q", "-r", "repo"]),
        "verify -Q",
    );
    assert!(
        err.contains(&victim) && err.contains("bytes, should be"),
        "{err}"
    );
    // Gone: named.
    fs::remove_file(&path).unwrap();
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-Q", "-r", "repo"]),
        "verify -Q",
    );
    assert!(err.ends_with(&format!("{victim} is missing")), "{err}");
}

#[test]
fn a_backup_without_blobs_is_followed_by_a_full_one_and_refused_in_recovery() {
    let t = site("bushy");
    let d = t.path();
    let plain = &BACKUP[..5];
    ok(&repozo_at(d, "2024-01-01-00-00-00", plain), "without blobs");
    assert!(pooled(d).is_empty());
    fs::create_dir(d.join("out")).unwrap();
    let err = fails(&repozo_at(d, "2024-01-02-00-00-00", RECOVER), "recover");
    assert_eq!(
        err,
        "repo/2024-01-01-00-00-00.fs holds 6 blob records but no blob files (backed up without --blob-dir)"
    );
    assert!(!d.join("out/Data.fs").exists() && !d.join("out/blobs").exists());
    // The next blob backup cannot continue that chain.
    fs::write(
        d.join("Data.fs"),
        [fs::read(d.join("Data.fs")).unwrap(), extra_transaction(d)].concat(),
    )
    .unwrap();
    let err = ok(
        &repozo_at(d, "2024-01-03-00-00-00", &with(BACKUP, &["-v"])),
        "blob backup",
    );
    assert!(
        err.contains("was backed up without its blobs (full backup)"),
        "{err}"
    );
    assert!(d.join("repo/2024-01-03-00-00-00.fs").exists());
    ok(&repozo_at(d, "2024-01-04-00-00-00", RECOVER), "recover");
    assert_eq!(files(&d.join("out/blobs")), files(&d.join("blobstorage")));
}

/// A transaction with one small non-blob record, after the fixture's last.
fn extra_transaction(d: &Path) -> Vec<u8> {
    let bytes = fs::read(d.join("Data.fs")).unwrap();
    let walk = repozo::datafs::Source::open(d.join("Data.fs"))
        .unwrap()
        .walk(0, None, None)
        .unwrap();
    let last_tid = {
        // The last transaction's tid: its header is at end - tlen - 8.
        let end = walk.end as usize;
        let tlen = u64::from_be_bytes(bytes[end - 8..end].try_into().unwrap()) as usize;
        u64::from_be_bytes(bytes[end - 8 - tlen..end - tlen].try_into().unwrap())
    };
    let pos = bytes.len() as u64;
    let tid = last_tid + 1;
    let pickle = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.}q\x01.";
    let data_len = 42 + pickle.len() as u64;
    let tlen = 23 + data_len;
    let mut t = Vec::new();
    t.extend_from_slice(&tid.to_be_bytes());
    t.extend_from_slice(&tlen.to_be_bytes());
    t.push(b' ');
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t.extend_from_slice(&0x7777u64.to_be_bytes());
    t.extend_from_slice(&tid.to_be_bytes());
    t.extend_from_slice(&0u64.to_be_bytes());
    t.extend_from_slice(&pos.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes());
    t.extend_from_slice(&(pickle.len() as u64).to_be_bytes());
    t.extend_from_slice(pickle);
    t.extend_from_slice(&tlen.to_be_bytes());
    t
}

#[test]
fn kill_old_drops_the_pool_files_no_backup_needs() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
    assert_eq!(pooled(d).len(), 6);
    // Data.fs as a pack would leave it: only the first three blobs.
    let full = fs::read(d.join("Data.fs")).unwrap();
    fs::write(d.join("Data.fs"), &full[..transaction_ends(&full)[1]]).unwrap();
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &with(BACKUP, &["-F", "-k"])),
        "full -k",
    );
    assert_eq!(pooled(d).len(), 3);
    let names: Vec<String> = fs::read_dir(d.join("repo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("2024"))
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("2024-01-02")),
        "{names:?}"
    );
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
        "verify",
    );
}

#[test]
fn an_empty_or_unmounted_blob_dir_is_refused_and_removes_nothing() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
    fs::create_dir(d.join("unmounted")).unwrap();
    let args = [
        "-B",
        "-F",
        "-k",
        "-r",
        "repo",
        "-f",
        "Data.fs",
        "--blob-dir",
        "unmounted",
    ];
    let err = fails(&repozo_at(d, "2024-01-02-00-00-00", &args), "empty dir");
    assert!(err.contains("none of the 6 blob files"), "{err}");
    assert_eq!(pooled(d).len(), 6);
    // One blob missing: the backup is made, but -k removes nothing that
    // an older backup holds.
    let victim = files(&d.join("blobstorage"))
        .into_keys()
        .find(|k| k.ends_with(".blob"))
        .unwrap();
    fs::remove_file(d.join("blobstorage").join(&victim)).unwrap();
    let err = ok(
        &repozo_at(d, "2024-01-03-00-00-00", &with(BACKUP, &["-F", "-k"])),
        "one missing",
    );
    assert!(err.contains("not removing older backups"), "{err}");
    assert!(d.join("repo/2024-01-01-00-00-00.fs").exists());
    assert_eq!(pooled(d).len(), 6);
}

#[test]
fn a_blob_dir_overlapping_the_repository_or_the_output_is_refused() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
    fs::create_dir(d.join("out")).unwrap();
    fs::write(d.join("out/Data.fs"), b"old").unwrap();
    let before = files(&d.join("repo"));
    for dir in ["repo", "repo/blobs", ".", "out", "out/Data.fs"] {
        let args = ["-R", "-r", "repo", "-o", "out/Data.fs", "--blob-dir", dir];
        let err = fails(&repozo_at(d, "2024-01-02-00-00-00", &args), dir);
        assert!(
            err.contains("cannot recover blobs into it: it is, holds or lies in"),
            "{err}"
        );
    }
    assert_eq!(files(&d.join("repo")), before);
    assert_eq!(fs::read(d.join("out/Data.fs")).unwrap(), b"old");
    let args = ["-B", "-r", "repo", "-f", "Data.fs", "--blob-dir", "repo"];
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &args),
        "backup from the repository",
    );
    assert!(
        err.contains("it is, holds or lies in the repository repo"),
        "{err}"
    );
}

#[test]
fn damaged_manifests_and_pool_files_are_found_and_replaced() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
    let manifest = d.join("repo/2024-01-01-00-00-00.blobs");
    let text = fs::read_to_string(&manifest).unwrap();
    // Lines lost: verify and recover say so.
    let cut: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    fs::write(&manifest, cut).unwrap();
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
        "cut",
    );
    assert!(
        err.contains("no end line: the manifest was cut short"),
        "{err}"
    );
    fs::create_dir(d.join("out")).unwrap();
    fails(
        &repozo_at(d, "2024-01-02-00-00-00", RECOVER),
        "recover a cut manifest",
    );
    // ... and the next blob backup does not stop on it: a full one.
    let err = ok(
        &repozo_at(d, "2024-01-02-00-00-00", &with(BACKUP, &["-v"])),
        "next",
    );
    assert!(
        err.contains("the chain's blobs cannot be read (full backup)"),
        "{err}"
    );
    fs::write(&manifest, &text).unwrap();
    // A pool file cut short is replaced by the next backup that copies it.
    let victim = pooled(d)
        .into_iter()
        .find(|f| !f.contains("d41d8cd98f00b204e9800998ecf8427e"))
        .unwrap();
    let path = d.join("repo/blobs").join(&victim);
    let good = fs::read(&path).unwrap();
    fs::write(&path, &good[..1]).unwrap();
    ok(
        &repozo_at(d, "2024-01-03-00-00-00", &with(BACKUP, &["-F"])),
        "-F",
    );
    assert_eq!(fs::read(&path).unwrap(), good);
    ok(
        &repozo_at(d, "2024-01-03-00-00-00", &["-V", "-r", "repo"]),
        "verify",
    );
    // Pool files are as readable as Data.fs, as the data files are.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), mode(&d.join("Data.fs")) & 0o664);
}

/// A blob directory that is a mount point cannot be renamed: recovered
/// into entry by entry. Needs a tmpfs (root); skipped otherwise.
#[test]
fn a_blob_dir_that_is_a_mount_point_is_recovered_into() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "backup");
    let mnt = d.join("out/blobs");
    fs::create_dir_all(&mnt).unwrap();
    let Some(_mounted) = mount_tmpfs(&mnt, "4m") else {
        eprintln!(
            "SKIPPED a_blob_dir_that_is_a_mount_point_is_recovered_into: cannot mount a tmpfs"
        );
        return;
    };
    fs::write(mnt.join("stale"), b"x").unwrap();
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", RECOVER),
        "into a mount point",
    );
    assert_eq!(files(&mnt), files(&d.join("blobstorage")));
    let names: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn blob_dir_usage_errors() {
    let t = TempDir::new().unwrap();
    let d = t.path();
    for (args, want) in [
        (
            &["-R", "-r", "repo", "--blob-dir", "b"][..],
            "--blob-dir needs --output in recover mode: blob files cannot go to stdout",
        ),
        (
            &["-V", "-r", "repo", "--blob-dir", "b"],
            "--blob-dir is not used in verify mode: -V checks the blob files the repository holds",
        ),
        (
            &["-B", "-r", "repo", "-f", "D", "--blob-dir", ""],
            "--blob-dir must not be empty",
        ),
    ] {
        let r = run(d, args);
        assert_eq!(r.code, Some(1), "{args:?}");
        assert!(
            r.stderr.starts_with(&format!("repozo: {want}\n")),
            "{}",
            r.stderr
        );
    }
}

/// Blob backups killed at every step (strace, as in `crash`): recovery
/// gives a state that was backed up with exactly its blob files, and the
/// next backup repairs what was left, verifies and recovers exactly.
#[test]
fn blob_backups_killed_at_every_step_lose_nothing() {
    let calls = [
        "rename,renameat,renameat2",
        "fsync,fdatasync,syncfs",
        "write,pwrite64",
        "openat",
        "unlink,unlinkat",
    ];
    let src = fixture("testdata/blobs/bushy");
    let full = fs::read(src.join("Data.fs")).unwrap();
    let cut = transaction_ends(&full)[1];
    let mut kills = 0;
    for mode in [&[][..], &["-F", "-k"]] {
        for call in calls {
            for n in 1..=80 {
                let t = site("bushy");
                let d = t.path();
                fs::write(d.join("Data.fs"), &full[..cut]).unwrap();
                ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
                fs::create_dir(d.join("out")).unwrap();
                ok(&repozo_at(d, "2024-01-01-00-00-00", RECOVER), "first state");
                let first = files(&d.join("out/blobs"));
                fs::write(d.join("Data.fs"), &full).unwrap();
                let args = with(BACKUP, mode);
                let what = format!("{mode:?} killed at {call} #{n}");
                let Some(killed) =
                    crate::crash::backup_killed_at(d, "2024-01-02-00-00-00", &args, call, n)
                else {
                    eprintln!("SKIPPED blob_backups_killed_at_every_step_lose_nothing: no strace");
                    return;
                };
                ok(&repozo_at(d, "2024-01-03-00-00-00", RECOVER), &what);
                let got = fs::read(d.join("out/Data.fs")).unwrap();
                let blobs = files(&d.join("out/blobs"));
                if got == full[..cut] {
                    assert_eq!(blobs, first, "{what}: the first state's blobs");
                } else {
                    assert!(got == full, "{what}: recovered no backed-up state");
                    assert_eq!(blobs, files(&d.join("blobstorage")), "{what}");
                }
                if !killed {
                    break;
                }
                kills += 1;
                ok(
                    &repozo_at(d, "2024-01-04-00-00-00", BACKUP),
                    &format!("{what}: the next backup"),
                );
                ok(
                    &repozo_at(d, "2024-01-04-00-00-00", &["-V", "-r", "repo"]),
                    &format!("{what}: verify"),
                );
                ok(&repozo_at(d, "2024-01-05-00-00-00", RECOVER), &what);
                assert!(fs::read(d.join("out/Data.fs")).unwrap() == full, "{what}");
                assert_eq!(files(&d.join("out/blobs")), files(&d.join("blobstorage")));
            }
        }
    }
    assert!(kills > 40, "only {kills} kills");
}

/// `-V --deep`: a blob manifest that lost a line passes `-V` (every file
/// it lists is sound) and fails `--deep`, which compares it with the blob
/// records of its range.
#[test]
fn deep_verify_compares_a_manifest_with_its_range() {
    let t = site("bushy");
    let d = t.path();
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "backup");
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "--deep", "-r", "repo"]),
        "sound",
    );
    let manifest = d.join("repo/2024-01-01-00-00-00.blobs");
    let text = fs::read_to_string(&manifest).unwrap();
    // The last entry goes, and the end line counts one fewer.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.pop();
    let dropped = lines.pop().unwrap();
    let entries = lines.len() - 2;
    lines.push(format!("end {entries}"));
    fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "-r", "repo"]),
        "-V",
    );
    let err = fails(
        &repozo_at(d, "2024-01-02-00-00-00", &["-V", "--deep", "-r", "repo"]),
        "--deep",
    );
    let oid = u64::from_str_radix(&dropped[..16], 16).unwrap();
    assert!(
        err.starts_with(&format!(
            "repo/2024-01-01-00-00-00.blobs: the blob record of oid {oid:#x} tid 0x{}",
            &dropped[17..33]
        )),
        "{err}"
    );
}

/// Retention removes the pool files no remaining backup needs, and keeps
/// those a kept one does: what is left verifies and recovers.
#[test]
fn prune_drops_the_pool_files_no_kept_backup_needs() {
    let t = site("bushy");
    let d = t.path();
    let full = fs::read(d.join("Data.fs")).unwrap();
    let ends = transaction_ends(&full);
    // A chain of all six blobs, then one of the first three (a pack).
    ok(&repozo_at(d, "2024-01-01-00-00-00", BACKUP), "first");
    fs::write(d.join("Data.fs"), &full[..ends[1]]).unwrap();
    ok(
        &repozo_at(d, "2024-01-02-00-00-00", &with(BACKUP, &["-F"])),
        "second",
    );
    assert_eq!(pooled(d).len(), 6);
    let dry = repozo_at(
        d,
        "2024-01-03-00-00-00",
        &["--prune", "--dry-run", "--keep-full", "1", "-r", "repo"],
    );
    ok(&dry, "dry run");
    assert_eq!(pooled(d).len(), 6);
    ok(
        &repozo_at(
            d,
            "2024-01-03-00-00-00",
            &["--prune", "--keep-full", "1", "-r", "repo"],
        ),
        "prune",
    );
    assert_eq!(pooled(d).len(), 3);
    ok(
        &repozo_at(d, "2024-01-03-00-00-00", &["-V", "-r", "repo"]),
        "verify",
    );
    fs::create_dir(d.join("out")).unwrap();
    ok(&repozo_at(d, "2024-01-03-00-00-00", RECOVER), "recover");
    assert!(fs::read(d.join("out/Data.fs")).unwrap() == full[..ends[1]]);
}
