//! Operating a repository (issue 13): `--version`, `-D N` for the N-th
//! newest backup.

use std::fs;

use crate::common::{copy_dir, fails, fixture, names, ok, repozo_at};

const NOW: &str = "2030-01-01-00-00-00";

#[test]
fn version_prints_the_crates() {
    let t = tempfile::TempDir::new().unwrap();
    let out = repozo_at(t.path(), NOW, &["--version"]);
    ok(&out, "--version");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("repozo {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `-D 0` is the newest backup's state, `-D 2` the oldest of three, as
/// `-D <its date>` gives it; past the oldest is an error leaving nothing.
#[test]
fn a_backup_number_is_its_date() {
    let t = tempfile::TempDir::new().unwrap();
    let d = t.path();
    copy_dir(&fixture("testdata/repo-plain"), &d.join("repo"));
    let stems = [
        "2024-01-03-12-45-30",
        "2024-01-02-11-30-00",
        "2024-01-01-10-00-00",
    ];
    for (n, stem) in stems.iter().enumerate() {
        let num = n.to_string();
        ok(
            &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "num.fs", "-D", &num]),
            &num,
        );
        ok(
            &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "date.fs", "-D", stem]),
            stem,
        );
        let want = fs::read(fixture(&format!("testdata/repo-plain/states/{stem}.fs"))).unwrap();
        assert!(fs::read(d.join("num.fs")).unwrap() == want, "-D {n}");
        assert!(fs::read(d.join("date.fs")).unwrap() == want, "-D {stem}");
        for f in [
            "num.fs",
            "num.fs.index",
            "num.fs.lock",
            "date.fs",
            "date.fs.index",
            "date.fs.lock",
        ] {
            let _ = fs::remove_file(d.join(f));
        }
    }
    let err = fails(
        &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out.fs", "-D", "3"]),
        "-D 3",
    );
    assert_eq!(
        err,
        "repo: no backup number 3: it holds 3 (0 is the newest)"
    );
    assert_eq!(names(d), ["repo"]);
}
