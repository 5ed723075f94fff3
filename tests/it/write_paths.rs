//! Which way bytes reach the disk, asserted rather than assumed: on a
//! filesystem that shares extents (btrfs here, on a loop device) recover
//! copies plain backups with `copy_file_range`, and the recovered file
//! shares its extents with the backup; elsewhere it writes them. Needs
//! root, `mkfs.btrfs` and a loop device: skipped, with a line on stderr,
//! where any is missing.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::common::{Db, Mounted};

/// `filefrag -v`'s flags for `path`'s extents include "shared".
fn shares_extents(path: &Path) -> bool {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("shared")
}

#[test]
fn recover_shares_extents_on_btrfs_and_writes_elsewhere() {
    let t = TempDir::new().unwrap();
    let img = t.path().join("btrfs.img");
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
    let ready = Command::new("mkfs.btrfs")
        .arg("-q")
        .arg(&img)
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!(
            "SKIPPED recover_shares_extents_on_btrfs_and_writes_elsewhere: \
             no mkfs.btrfs, loop device or permission to mount"
        );
        return;
    }
    let _m = Mounted(&mnt);
    let mut db = Db::new();
    db.grow(40);
    for (dir, on_btrfs) in [(mnt.as_path(), true), (t.path(), false)] {
        let w = dir.join("w");
        fs::create_dir_all(w.join("repo")).unwrap();
        db.save(&w.join("Data.fs"));
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
                .args(args)
                .current_dir(&w)
                .env("REPOZO_TEST_NOW", "2024-01-01-00-00-00")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        run(&["-B", "-r", "repo", "-f", "Data.fs"]);
        run(&["-R", "-r", "repo", "-o", "out.fs"]);
        assert!(fs::read(w.join("out.fs")).unwrap() == db.bytes);
        assert_eq!(
            shares_extents(&w.join("out.fs")),
            on_btrfs,
            "on btrfs: {on_btrfs}"
        );
    }
}
