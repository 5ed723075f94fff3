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

fn listing(d: &std::path::Path, now: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-r", "repo"];
    all.extend(args);
    repozo_at(d, now, &all)
}

/// `--list` numbers the backups as `-D N` takes them, groups them by
/// chain, and sums them up; `--json` says the same as a document.
#[test]
fn the_list_shows_every_backup_and_the_health() {
    let t = tempfile::TempDir::new().unwrap();
    let d = t.path();
    copy_dir(&fixture("testdata/repo-plain"), &d.join("repo"));
    let now = "2024-01-04-00-00-00";
    let out = listing(d, now, &["-L"]);
    ok(&out, "-L");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "chain 2024-01-01-10-00-00: a full backup and 2 increment(s)"
    );
    for (line, (n, name, range, size)) in lines[2..5].iter().zip([
        (2, "2024-01-01-10-00-00.fs", "0-56535", 56535),
        (1, "2024-01-02-11-30-00.deltafs", "56535-61501", 4966),
        (0, "2024-01-03-12-45-30.deltafs", "61501-66497", 4996),
    ]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], n.to_string(), "{line}");
        assert_eq!(cols[1], name, "{line}");
        assert_eq!(cols[4], range, "{line}");
        assert_eq!(cols[5], size.to_string(), "{line}");
        assert_eq!(cols[6], "yes", "{line}");
    }
    assert!(
        text.contains("newest: 2024-01-03-12-45-30.deltafs (11h 14m old)"),
        "{text}"
    );
    assert!(text.contains("oldest state that can be recovered: 2024-01-01-10-00-00"));
    assert!(text.ends_with("health: ok\n"), "{text}");

    let out = listing(d, now, &["--list", "--json"]);
    ok(&out, "--json");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["chains"][0]["backups"][1]["end"], 61501);
    assert_eq!(doc["chains"][0]["backups"][0]["kind"], "full");
    assert_eq!(
        doc["summary"]["newest_age_seconds"],
        11 * 3600 + 14 * 60 + 30
    );
    assert_eq!(doc["health"]["ok"], true);

    // What -V -Q sees and what an interrupted run left: problems.
    fs::write(d.join("repo/tmp.tmp"), b"").unwrap();
    fs::write(d.join("repo/2024-01-03-12-45-31.deltafs"), b"stray").unwrap();
    let inc = d.join("repo/2024-01-02-11-30-00.deltafs");
    fs::OpenOptions::new()
        .write(true)
        .open(&inc)
        .unwrap()
        .set_len(100)
        .unwrap();
    let out = listing(d, now, &["-L"]);
    ok(&out, "-L, unhealthy");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.ends_with(
            "health: 3 problem(s)\n  repo/tmp.tmp: a temporary file left by an interrupted run\n  \
             repo/2024-01-03-12-45-31.deltafs: not in its chain's .dat log (left by an interrupted backup)\n  \
             repo/2024-01-02-11-30-00.deltafs is 100 bytes, should be 4966 bytes\n"
        ),
        "{text}"
    );
}

/// `--max-age`: one line and exit 0 when the newest backup is young
/// enough and the repository healthy, exit 1 with one line otherwise.
#[test]
fn max_age_is_a_monitoring_check() {
    let t = tempfile::TempDir::new().unwrap();
    let d = t.path();
    copy_dir(&fixture("testdata/repo-plain"), &d.join("repo"));
    let now = "2024-01-04-00-00-00";
    let out = listing(d, now, &["--max-age", "12h"]);
    ok(&out, "12h");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "repo: newest backup 2024-01-03-12-45-30.deltafs, 11h 14m old; healthy\n"
    );
    let err = fails(&listing(d, now, &["--max-age", "11h"]), "11h");
    assert_eq!(
        err,
        "repo: the newest backup, 2024-01-03-12-45-30.deltafs, is 11h 14m old, more than 11h 0m"
    );
    fs::remove_file(d.join("repo/2024-01-01-10-00-00.dat")).unwrap();
    let err = fails(&listing(d, now, &["--max-age", "1d"]), "no .dat");
    assert!(err.starts_with("repo: unhealthy: "), "{err}");
    let err = fails(&listing(d, now, &["--max-age", "soon"]), "bad duration");
    assert!(
        err.starts_with("repozo: invalid duration \"soon\""),
        "{err}"
    );
}

/// A repository of 20 days, 2024-01-01 (a Monday) to 2024-01-20: each day
/// a full backup at 02:00 and an increment at 14:00. Returns the
/// workspace and, per day, the database as its increment saw it.
fn twenty_days() -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let t = tempfile::TempDir::new().unwrap();
    let d = t.path();
    fs::create_dir(d.join("repo")).unwrap();
    let mut db = crate::common::Db::new();
    let mut states = Vec::new();
    for day in 1..=20 {
        for (hour, full) in [(2, true), (14, false)] {
            db.grow(2);
            db.save(&d.join("Data.fs"));
            let now = format!("2024-01-{day:02}-{hour:02}-00-00");
            let mut args = vec!["-B", "-r", "repo", "-f", "Data.fs"];
            if full {
                args.push("-F");
            }
            ok(&repozo_at(d, &now, &args), &now);
        }
        states.push(db.bytes.clone());
    }
    (t, states)
}

/// The days whose chains are in the repository.
fn chain_days(repo: &std::path::Path) -> Vec<u32> {
    let mut days: Vec<u32> = fs::read_dir(repo)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix("-02-00-00.fs")
                .map(|s| s[8..10].parse().unwrap())
        })
        .collect();
    days.sort_unstable();
    days
}

#[test]
fn retention_keeps_what_each_rule_says() {
    let (t, states) = twenty_days();
    let d = t.path();
    for (rules, want) in [
        (&["--keep-full", "3"][..], &[18, 19, 20][..]),
        (&["--keep-daily", "5"][..], &[16, 17, 18, 19, 20][..]),
        // The week of the 15th to the 21st, and that of the 8th to the 14th.
        (&["--keep-weekly", "2"][..], &[14, 20][..]),
        (&["--keep-monthly", "1"][..], &[20][..]),
        (
            &["--keep-daily", "2", "--keep-weekly", "3"][..],
            &[7, 14, 19, 20][..],
        ),
        (&["--keep-full", "0"][..], &[20][..]),
    ] {
        let w = tempfile::TempDir::new().unwrap();
        copy_dir(&d.join("repo"), &w.path().join("repo"));
        let before = crate::common::files(&w.path().join("repo"));
        // --dry-run names every file the real run removes, and removes none.
        let mut args = vec!["--prune", "--dry-run", "-r", "repo"];
        args.extend(rules);
        let out = repozo_at(w.path(), NOW, &args);
        ok(&out, "--dry-run");
        assert_eq!(
            crate::common::files(&w.path().join("repo")),
            before,
            "{rules:?}"
        );
        let said: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix("would remove repo/").unwrap().to_string())
            .collect();
        let mut args = vec!["--prune", "-r", "repo"];
        args.extend(rules);
        ok(&repozo_at(w.path(), NOW, &args), "--prune");
        assert_eq!(chain_days(&w.path().join("repo")), want, "{rules:?}");
        let after = crate::common::files(&w.path().join("repo"));
        let mut gone: Vec<String> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        let mut said = said;
        gone.sort();
        said.sort();
        assert_eq!(gone, said, "{rules:?}");
        // Every kept day recovers, by us and by Python's rules (-V of
        // the newest chain).
        for &day in want {
            let date = format!("2024-01-{day:02}-23-00-00");
            let r = repozo_at(
                w.path(),
                NOW,
                &["-R", "-r", "repo", "-o", "out.fs", "-D", &date],
            );
            ok(&r, &date);
            assert!(
                fs::read(w.path().join("out.fs")).unwrap() == states[day as usize - 1],
                "{date}"
            );
            for f in ["out.fs", "out.fs.index", "out.fs.lock"] {
                let _ = fs::remove_file(w.path().join(f));
            }
        }
        ok(&repozo_at(w.path(), NOW, &["-V", "-r", "repo"]), "-V");
    }
    // After a backup: the rules are applied once it is done.
    ok(
        &repozo_at(
            d,
            "2024-01-21-02-00-00",
            &["-B", "-r", "repo", "-f", "Data.fs", "--keep-daily", "2"],
        ),
        "-B --keep-daily 2",
    );
    // Nothing changed since the 20th: no backup, the rules all the same.
    assert_eq!(chain_days(&d.join("repo")), [19, 20]);
    assert!(!d.join("repo/2024-01-21-02-00-00.deltafs").exists());
    let err = fails(&repozo_at(d, NOW, &["--prune", "-r", "repo"]), "no rule");
    assert!(
        err.starts_with("repozo: --prune needs --keep-full"),
        "{err}"
    );
}

/// A prune killed at each of its removals leaves every kept chain
/// recoverable, and the next run finishes it.
#[test]
fn an_interrupted_prune_is_finished_by_the_next() {
    let (t, states) = twenty_days();
    let d = t.path();
    let mut n = 1;
    loop {
        let w = tempfile::TempDir::new().unwrap();
        copy_dir(&d.join("repo"), &w.path().join("repo"));
        let args = ["--prune", "-r", "repo", "--keep-daily", "3"];
        let Some(killed) =
            crate::crash::backup_killed_at(w.path(), NOW, &args, "unlink,unlinkat", n)
        else {
            eprintln!("SKIPPED an_interrupted_prune_is_finished_by_the_next: no strace");
            return;
        };
        for day in [18usize, 19, 20] {
            let date = format!("2024-01-{day:02}-23-00-00");
            let r = repozo_at(
                w.path(),
                NOW,
                &["-R", "-r", "repo", "-o", "out.fs", "-D", &date],
            );
            ok(&r, &format!("kill #{n}: {date}"));
            assert!(fs::read(w.path().join("out.fs")).unwrap() == states[day - 1]);
            for f in ["out.fs", "out.fs.index", "out.fs.lock"] {
                let _ = fs::remove_file(w.path().join(f));
            }
        }
        ok(&repozo_at(w.path(), NOW, &args), "the run after");
        assert_eq!(
            chain_days(&w.path().join("repo")),
            [18, 19, 20],
            "kill #{n}"
        );
        ok(&repozo_at(w.path(), NOW, &["-V", "-r", "repo"]), "-V");
        if !killed {
            break;
        }
        n += 1;
    }
    // 17 chains of two backups, each with an .index, and their .dat logs.
    assert!(n > 17 * 5, "{n} removals");
}

/// testdata/repo-plain in a temporary directory, with `change` applied to
/// its files (name -> bytes) and the `.dat` rewritten to match them, as a
/// careful forger (or a `.dat` repaired by hand) would.
/// A repository's data files by name.
type Files = std::collections::BTreeMap<String, Vec<u8>>;

/// A change to them.
type Forgery = Box<dyn FnOnce(&mut Files)>;

fn forged(change: impl FnOnce(&mut Files)) -> tempfile::TempDir {
    let t = tempfile::TempDir::new().unwrap();
    let d = t.path();
    copy_dir(&fixture("testdata/repo-plain"), &d.join("repo"));
    let names = [
        "2024-01-01-10-00-00.fs",
        "2024-01-02-11-30-00.deltafs",
        "2024-01-03-12-45-30.deltafs",
    ];
    let mut files: Files = names
        .iter()
        .map(|n| (n.to_string(), fs::read(d.join("repo").join(n)).unwrap()))
        .collect();
    change(&mut files);
    let mut dat = String::new();
    let mut at = 0;
    for n in names {
        let b = &files[n];
        fs::write(d.join("repo").join(n), b).unwrap();
        let sum = openssl::hash::hash(openssl::hash::MessageDigest::md5(), b).unwrap();
        let sum: String = sum.iter().map(|x| format!("{x:02x}")).collect();
        dat.push_str(&format!("repo/{n} {at} {} {sum}\n", at + b.len()));
        at += b.len();
    }
    fs::write(d.join("repo/2024-01-01-10-00-00.dat"), dat).unwrap();
    t
}

/// `-V --deep` passes what is sound and names what md5 cannot catch.
#[test]
fn deep_verify_finds_what_md5_cannot() {
    for r in ["testdata/repo-plain", "testdata/repo-gzip"] {
        let t = tempfile::TempDir::new().unwrap();
        copy_dir(&fixture(r), &t.path().join("repo"));
        ok(
            &repozo_at(t.path(), NOW, &["-V", "--deep", "-r", "repo"]),
            r,
        );
    }
    let inc1 = "2024-01-02-11-30-00.deltafs";
    // Each forgery passes -V (the .dat matches) and fails --deep.
    let cases: Vec<(&str, Forgery, String)> = vec![
        (
            "a damaged transaction length",
            Box::new(|f| f.get_mut(inc1).unwrap()[15] ^= 0x40),
            "repo/2024-01-02-11-30-00.deltafs: ".to_string(),
        ),
        (
            "a boundary moved",
            Box::new(|f| {
                let inc2 = "2024-01-03-12-45-30.deltafs";
                let moved: Vec<u8> = f.get_mut(inc2).unwrap().drain(..10).collect();
                f.get_mut(inc1).unwrap().extend(moved);
            }),
            "repo/2024-01-02-11-30-00.deltafs: ends at 61511, inside the transaction that starts at 61501".to_string(),
        ),
        (
            "a tid going back",
            Box::new(|f| f.get_mut(inc1).unwrap()[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1])),
            "repo/2024-01-02-11-30-00.deltafs: the transaction at 56535 has a tid not after the one before it".to_string(),
        ),
    ];
    for (what, change, says) in cases {
        let t = forged(change);
        ok(&repozo_at(t.path(), NOW, &["-V", "-r", "repo"]), what);
        let err = fails(
            &repozo_at(t.path(), NOW, &["-V", "--deep", "-r", "repo"]),
            what,
        );
        assert!(err.starts_with(&says), "{what}: {err}");
    }
    // A wrong .index: the full backup's in the place of the first increment's.
    let t = forged(|_| {});
    let repo = t.path().join("repo");
    fs::copy(
        repo.join("2024-01-01-10-00-00.index"),
        repo.join("2024-01-02-11-30-00.index"),
    )
    .unwrap();
    ok(
        &repozo_at(t.path(), NOW, &["-V", "-r", "repo"]),
        "-V, wrong index",
    );
    let err = fails(
        &repozo_at(t.path(), NOW, &["-V", "--deep", "-r", "repo"]),
        "wrong index",
    );
    assert_eq!(
        err,
        "repo/2024-01-02-11-30-00.index: it describes 56535 bytes, not 61501"
    );
    // The right position, one offset wrong.
    use repozo::filestorage::index_file;
    let path = repo.join("2024-01-02-11-30-00.index");
    let right = fs::read(fixture("testdata/repo-plain/2024-01-02-11-30-00.index")).unwrap();
    let mut ix = index_file::load(&right[..]).unwrap();
    let (oid, off) = ix.index.iter().nth(3).unwrap();
    ix.index.insert(oid, off + 1);
    let dialect = index_file::dialect_for(repozo::filestorage::records::Magic::Fs30);
    let bytes = index_file::save(Vec::new(), ix.pos, &ix.index, dialect).unwrap();
    fs::write(&path, bytes).unwrap();
    ok(
        &repozo_at(t.path(), NOW, &["-V", "-r", "repo"]),
        "-V, one offset",
    );
    let err = fails(
        &repozo_at(t.path(), NOW, &["-V", "--deep", "-r", "repo"]),
        "one offset",
    );
    assert_eq!(
        err,
        format!(
            "repo/2024-01-02-11-30-00.index: the offsets of the oids from {:#x} are not the chain's",
            oid >> 16 << 16
        )
    );
}

/// The progress line: shown under a pseudo-terminal (`script`) by -B, -R
/// and -V, with -v's messages whole above it; never when stderr is not a
/// terminal, nor with --no-progress.
#[test]
fn progress_shows_only_on_a_terminal() {
    let (t, _db) = crate::common::workspace(200);
    let d = t.path();
    let bin = env!("CARGO_BIN_EXE_repozo");
    let under_pty = |args: &str| -> String {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{bin} {args}"), "/dev/null"])
            .current_dir(d)
            .env("REPOZO_TEST_NOW", NOW)
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!("{args}: {o:?}"),
            Err(e) => panic!("script: {e}"),
        }
    };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED progress_shows_only_on_a_terminal: no script(1)");
        return;
    }
    let shown = under_pty("-B -v -r repo -f Data.fs");
    assert!(shown.contains("backing up "), "{shown}");
    assert!(shown.contains("writing index\r\n"), "{shown}");
    let shown = under_pty("-R -v -r repo -o out.fs");
    assert!(shown.contains("recovering "), "{shown}");
    assert!(shown.contains("Recovering file to out.fs\r\n"), "{shown}");
    let shown = under_pty("-V --deep -r repo");
    assert!(shown.contains("verifying "), "{shown}");
    let quiet = under_pty("-R --no-progress -r repo -o out2.fs");
    assert_eq!(quiet, "");
    // Not a terminal: nothing at all without -v.
    let out = repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out3.fs"]);
    assert_eq!(ok(&out, "no terminal"), "");
}

/// Hostile `.dat` logs and names: `--list` still lists, says what is
/// wrong under health, and never fails for it (exit 0), nor hangs.
#[test]
fn list_survives_hostile_dat_files_and_names() {
    use std::os::unix::ffi::OsStrExt;
    type Spoil = fn(&std::path::Path);
    let cases: [(&str, Spoil); 5] = [
        ("a junk .dat line", |r| {
            let dat = r.join("2024-01-01-10-00-00.dat");
            let mut t = fs::read(&dat).unwrap();
            t.extend_from_slice(b"junk\n");
            fs::write(dat, t).unwrap();
        }),
        ("a .dat that is a directory", |r| {
            fs::remove_file(r.join("2024-01-01-10-00-00.dat")).unwrap();
            fs::create_dir(r.join("2024-01-01-10-00-00.dat")).unwrap();
        }),
        ("a FIFO named like a backup", |r| {
            let st = std::process::Command::new("mkfifo")
                .arg(r.join("2024-01-04-00-00-00.deltafs"))
                .status()
                .unwrap();
            assert!(st.success());
        }),
        ("a name that is not UTF-8", |r| {
            let name = std::ffi::OsStr::from_bytes(b"2024-01-05-00-00-00\xff.deltafs");
            fs::write(r.join(name), b"x").unwrap();
        }),
        ("binary .dat", |r| {
            fs::write(r.join("2024-01-01-10-00-00.dat"), [0u8, 159, 146, 150, 10]).unwrap();
        }),
    ];
    for (what, spoil) in cases {
        let t = tempfile::TempDir::new().unwrap();
        let d = t.path();
        copy_dir(&fixture("testdata/repo-plain"), &d.join("repo"));
        spoil(&d.join("repo"));
        let out = crate::common::run(d, &["-L", "-r", "repo"]);
        assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("health: "), "{what}: {text}");
        let doc = crate::common::run(d, &["-L", "--json", "-r", "repo"]);
        assert_eq!(doc.code, Some(0), "{what}: {}", doc.stderr);
        let doc: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
        if what != "a name that is not UTF-8" {
            assert_eq!(doc["health"]["ok"], false, "{what}: {doc}");
        }
    }
}
