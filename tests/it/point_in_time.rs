//! Point in time: `--transactions` lists every transaction a repository
//! holds, and `-R --at`/`--at-tid` recover the Data.fs as it was right
//! after any of them, with an index that is what a scan finds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use repozo::filestorage::timestamp::{last_tid_at, tid_hex, tid_time_text};
use repozo::repository::parse_utc;
use repozo::testing::{Builder, Txn};
use serde_json::Value;
use tempfile::TempDir;

use crate::common::{assert_index_is_a_scan, fails, names, ok, repozo_at};

/// One committed transaction, as the test wrote it.
#[derive(Debug, Clone)]
struct Committed {
    tid: u64,
    /// Data.fs's length right after it.
    end: u64,
    user: String,
    note: String,
    records: u64,
    /// The backup file that holds it.
    file: String,
}

struct History {
    t: TempDir,
    txns: Vec<Committed>,
    /// Data.fs as it was at the last backup.
    last: Vec<u8>,
}

fn stamp(i: usize) -> String {
    format!("2024-03-{:02}-00-00-00", i + 10)
}

const NOW: &str = "2024-04-01-00-00-00";

/// A repository of a full backup and two increments (of `per` transactions
/// each, and a full one of 2 * `per`), each transaction a minute and a bit
/// after the one before, with a user and a note of its own.
fn history(gzip: bool, per: usize) -> History {
    history_of(gzip, per, 100)
}

/// [`history`], the pickles `base` bytes or a little more.
fn history_of(gzip: bool, per: usize, base: u64) -> History {
    let t = TempDir::new().unwrap();
    let d = t.path();
    fs::create_dir(d.join("repo")).unwrap();
    let mut b = Builder::new();
    b.tid = last_tid_at(parse_utc("2024-03-05T14:00:00Z").unwrap()).unwrap() & !0xffff_ffff;
    let mut txns = Vec::new();
    for backup in 0..3 {
        let count = if backup == 0 { 2 * per } else { per };
        let first = txns.len();
        for _ in 0..count {
            let n = txns.len();
            let user = format!("/plone user{n}");
            let note = format!("edit \"{n}\"\nline two é");
            let records: Vec<(u64, u64)> = (0..1 + n as u64 % 4)
                .map(|r| (r * 7 + n as u64 % 5, base + 37 * r + n as u64))
                .collect();
            let placed = b.append(
                &Txn {
                    tid_step: (1 << 32) + 0x0123_4567,
                    status: b' ',
                    meta: [user.as_bytes(), note.as_bytes(), b""],
                    records: &records,
                },
                |oid, buf| buf.fill(oid as u8 | 0x40),
            );
            txns.push(Committed {
                tid: b.tid,
                end: placed.trailer + 8,
                user,
                note,
                records: records.len() as u64,
                file: String::new(),
            });
        }
        fs::write(d.join("Data.fs"), &b.bytes).unwrap();
        let mut args = vec!["-B", "-r", "repo", "-f", "Data.fs"];
        if gzip {
            args.push("-z");
        }
        ok(&repozo_at(d, &stamp(backup), &args), "backup");
        let ext = match (backup, gzip) {
            (0, false) => "fs",
            (0, true) => "fsz",
            (_, false) => "deltafs",
            (_, true) => "deltafsz",
        };
        for c in &mut txns[first..] {
            c.file = format!("{}.{ext}", stamp(backup));
        }
    }
    History {
        t,
        txns,
        last: b.bytes.clone(),
    }
}

fn list(d: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--transactions", "--json", "-r", "repo"];
    args.extend(extra);
    let out = repozo_at(d, NOW, &args);
    ok(&out, "--transactions");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Recover with `args` into `out.fs`, which must then be the Data.fs of
/// `want` bytes with an index a scan agrees with.
fn recovers(h: &History, args: &[&str], want: u64, what: &str) -> String {
    let d = h.t.path();
    let mut all = vec!["-R", "-v", "-r", "repo", "-o", "out.fs"];
    all.extend(args);
    let err = ok(&repozo_at(d, NOW, &all), what);
    let got = fs::read(d.join("out.fs")).unwrap();
    assert_eq!(got.len() as u64, want, "{what}: length");
    assert!(got == h.last[..got.len()], "{what}: bytes");
    assert_index_is_a_scan(&d.join("out.fs"), &d.join("out.fs.index"), what);
    err
}

#[test]
fn every_transaction_is_listed_once_with_its_file() {
    for gzip in [false, true] {
        let h = history(gzip, 6);
        let d = h.t.path();
        let listed = list(d, &[]);
        assert_eq!(listed.len(), h.txns.len(), "gzip {gzip}");
        for (l, c) in listed.iter().zip(&h.txns) {
            assert_eq!(l["tid"], tid_hex(c.tid));
            assert_eq!(l["time"], tid_time_text(c.tid).unwrap());
            assert_eq!(l["end"], c.end);
            assert_eq!(
                l["offset"].as_u64().unwrap() + l["size"].as_u64().unwrap(),
                c.end
            );
            assert_eq!(l["user"], c.user.as_str());
            assert_eq!(l["description"], c.note.as_str());
            assert_eq!(l["records"], c.records);
            assert_eq!(l["file"], c.file.as_str(), "{l}");
        }
        // The text form: a header, then a line each, the notes escaped.
        let out = repozo_at(d, NOW, &["--transactions", "-r", "repo"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "tid  time  size  records  file  user  description"
        );
        assert_eq!(lines.len(), h.txns.len() + 1);
        let c = &h.txns[7];
        assert!(
            lines[8].starts_with(&tid_hex(c.tid))
                && lines[8].ends_with(&format!(
                    "  {}  \"/plone user7\"  \"edit \\\"7\\\"\\nline two é\"",
                    c.file
                )),
            "{}",
            lines[8]
        );
        // --since and --until keep the transactions at or between them,
        // to the microsecond shown.
        let (a, b) = (&listed[3]["time"], &listed[9]["time"]);
        let window = list(
            d,
            &[
                "--since",
                a.as_str().unwrap(),
                "--until",
                b.as_str().unwrap(),
            ],
        );
        assert_eq!(window.len(), 7);
        assert_eq!(window[0]["tid"], listed[3]["tid"]);
        assert_eq!(window[6]["tid"], listed[9]["tid"]);
    }
}

#[test]
fn every_transaction_recovers_its_state() {
    for gzip in [false, true] {
        let h = history(gzip, 4);
        for (i, c) in h.txns.iter().enumerate() {
            let what = format!("gzip {gzip}, transaction {i}");
            let err = recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, &what);
            assert!(
                err.contains(&format!("of repo/{}", c.file)),
                "{what}: {err}"
            );
            let time = tid_time_text(c.tid).unwrap();
            recovers(&h, &["--at", &time], c.end, &what);
            // Before the next transaction's time: still this one.
            let next_us = parse_utc(&time).unwrap() + chrono::Duration::seconds(30);
            let between = next_us.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            recovers(&h, &["--at", &between], c.end, &what);
            for name in ["out.fs", "out.fs.index", "out.fs.lock"] {
                fs::remove_file(h.t.path().join(name)).unwrap();
            }
        }
        // To stdout: the same bytes, and no index.
        let c = &h.txns[9];
        let d = h.t.path();
        let out = repozo_at(d, NOW, &["-R", "-r", "repo", "--at-tid", &tid_hex(c.tid)]);
        ok(&out, "to stdout");
        assert!(out.stdout == h.last[..c.end as usize]);
        assert_eq!(names(d), ["Data.fs", "repo"]);
    }
}

#[test]
fn what_the_repository_lacks_is_an_error_that_leaves_nothing() {
    let h = history(false, 3);
    let d = h.t.path();
    let first = tid_time_text(h.txns[0].tid).unwrap();
    let before = parse_utc(&first).unwrap() - chrono::Duration::microseconds(1);
    let before = before.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let lacking = tid_hex(h.txns[4].tid + 1);
    for (args, says) in [
        (
            vec!["--at", before.as_str()],
            format!("repo: no transaction at or before {before} in the repository"),
        ),
        (
            vec!["--at-tid", lacking.as_str()],
            format!("repo: no transaction {lacking} in the repository"),
        ),
        (
            vec!["--at-tid", "12345"],
            "repozo: invalid tid \"12345\": expected 16 hex digits, as --transactions shows (0x03f7048afccccccc)".to_string(),
        ),
        (
            vec!["--at", "2024-03-05", "-D", "2024-03-05"],
            "repozo: --date, --at and --at-tid are mutually exclusive".to_string(),
        ),
    ] {
        let mut all = vec!["-R", "-r", "repo", "-o", "out.fs"];
        all.extend(&args);
        let err = fails(&repozo_at(d, NOW, &all), &format!("{args:?}"));
        assert_eq!(err.lines().next().unwrap(), says);
        assert_eq!(names(d), ["Data.fs", "repo"], "{args:?}");
    }
    // The first transaction's own time is no error.
    recovers(&h, &["--at", &first], h.txns[0].end, "first");
}

/// `-w` reads the cut file whole to check it, and writes only its prefix;
/// without `-w` the bytes after the cut are not even read.
#[test]
fn with_verify_checks_the_cut_file_whole() {
    let h = history(false, 4);
    let d = h.t.path();
    let c = &h.txns[9];
    let inc = d.join("repo").join(&c.file);
    let mut bytes = fs::read(&inc).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    fs::write(&inc, &bytes).unwrap();
    let tid = tid_hex(c.tid);
    let err = fails(
        &repozo_at(
            d,
            NOW,
            &["-R", "-w", "-r", "repo", "-o", "out.fs", "--at-tid", &tid],
        ),
        "-w",
    );
    assert!(
        err.contains(&format!("repo/{} has checksum", c.file)),
        "{err}"
    );
    assert_eq!(names(d), ["Data.fs", "repo"]);
    recovers(&h, &["--at-tid", &tid], c.end, "without -w");
    // out.fs now ends inside that increment, as it should: in place, -w
    // still checks the increment against its md5, and a full recovery
    // then fails the same way, leaving out.fs as it was.
    let before = fs::read(d.join("out.fs")).unwrap();
    let err = fails(
        &repozo_at(
            d,
            NOW,
            &[
                "-R", "-w", "-v", "-r", "repo", "-o", "out.fs", "--at-tid", &tid,
            ],
        ),
        "-w in place",
    );
    assert!(err.contains("Recovering in full: out.fs: "), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("repo/{} has checksum", c.file)),
        "{err}"
    );
    assert!(fs::read(d.join("out.fs")).unwrap() == before);
}

/// Temporary files a killed run left beside an existing output (its index
/// and marker being written) go with the next run onto that output, which
/// holds its lock; another output's stay.
#[test]
fn a_killed_runs_temporaries_beside_the_output_go() {
    let h = history(false, 3);
    let d = h.t.path();
    ok(
        &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out.fs"]),
        "first",
    );
    let ours = [
        ".repozo-out.fs.index.AbC123.tmp",
        ".repozo-out.fs.recovering.XyZ789.tmp",
    ];
    let others = [
        ".repozo-out.fs2.index.AbC123.tmp",
        ".repozo-out.fs.index.toolong.tmp",
    ];
    for n in ours.iter().chain(&others) {
        fs::write(d.join(n), b"left").unwrap();
    }
    let c = &h.txns[4];
    recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "in place");
    for n in ours {
        assert!(!d.join(n).exists(), "{n}");
    }
    for n in others {
        assert!(d.join(n).exists(), "{n}");
    }
}

/// An existing output is cut back to a transaction inside a backup file,
/// or appended to up to one, in place; so is one an earlier --at left
/// inside an increment, once its bytes are shown to be that file's. One
/// left inside the full backup is recovered in full.
#[test]
fn an_existing_output_is_cut_or_appended_in_place() {
    for gzip in [false, true] {
        let h = history(gzip, 4);
        let d = h.t.path();
        ok(
            &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out.fs"]),
            "newest",
        );
        let ino = fs::metadata(d.join("out.fs")).unwrap().ino();
        let newest = h.txns.len() - 1;
        // (transaction, options, what -v says); None: the newest, no --at.
        let steps: [(Option<usize>, &[&str], &str); 6] = [
            (Some(10), &[], "truncating it to"),
            (Some(9), &["-Q"], "truncating it to"),
            (Some(14), &["-w"], "appending 2 backup file(s)"),
            (Some(14), &[], "nothing to change"),
            (None, &["-Q"], "appending 1 backup file(s)"),
            (Some(5), &[], "truncating it to"),
        ];
        for (i, extra, says) in steps {
            let what = format!("gzip {gzip}: to {i:?} {extra:?}");
            let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            if let Some(i) = i {
                args.extend(["--at-tid".to_string(), tid_hex(h.txns[i].tid)]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let c = &h.txns[i.unwrap_or(newest)];
            let err = recovers(&h, &args, c.end, &what);
            assert!(err.contains("Recovering in place: "), "{what}: {err}");
            assert!(err.contains(says), "{what}: {err}");
            assert_eq!(fs::metadata(d.join("out.fs")).unwrap().ino(), ino, "{what}");
            assert!(!d.join("out.fs.recovering").exists());
        }
        // Inside the full backup: no state to start from.
        let c = &h.txns[9];
        let err = recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "from the full");
        assert!(
            err.contains("Recovering in full: out.fs: its length"),
            "{err}"
        );
        assert!(err.contains("is inside the full backup"), "{err}");
        // Other bytes of the right length are no state either.
        let mut bytes = fs::read(d.join("out.fs")).unwrap();
        let last = bytes.len() - 30;
        bytes[last] ^= 1;
        fs::write(d.join("out.fs"), &bytes).unwrap();
        let c = &h.txns[8];
        let err = recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "changed bytes");
        assert!(
            err.contains("Recovering in full: out.fs: its byte"),
            "{err}"
        );
    }
}

/// Two chains holding the same transactions (a second full backup): each
/// is listed once, from the oldest chain, which is also the one recovered
/// from.
#[test]
fn the_oldest_chain_holding_a_transaction_is_used() {
    let h = history(false, 3);
    let d = h.t.path();
    ok(
        &repozo_at(
            d,
            "2024-03-20-00-00-00",
            &["-B", "-F", "-r", "repo", "-f", "Data.fs"],
        ),
        "second full backup",
    );
    let listed = list(d, &[]);
    assert_eq!(listed.len(), h.txns.len());
    assert!(listed.iter().all(|l| l["file"] != "2024-03-20-00-00-00.fs"));
    let c = &h.txns[1];
    let err = recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "old chain");
    assert!(
        err.contains(&format!("of repo/{}", h.txns[0].file)),
        "{err}"
    );
    // Without the first chain, the second one holds them all.
    for f in fs::read_dir(d.join("repo")).unwrap() {
        let f = f.unwrap().path();
        if !f.to_string_lossy().contains("2024-03-20") {
            fs::remove_file(f).unwrap();
        }
    }
    let listed = list(d, &[]);
    assert_eq!(listed.len(), h.txns.len());
    assert!(listed.iter().all(|l| l["file"] == "2024-03-20-00-00-00.fs"));
    recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "new chain");
}

/// A backup file cut short is named, with where its transactions end.
#[test]
fn a_damaged_backup_file_is_named() {
    let h = history(false, 3);
    let d = h.t.path();
    let inc = d.join("repo").join(&h.txns[h.txns.len() - 1].file);
    let len = fs::metadata(&inc).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&inc).unwrap();
    f.set_len(len - 5).unwrap();
    let err = fails(
        &repozo_at(d, NOW, &["--transactions", "-r", "repo"]),
        "--transactions",
    );
    assert!(
        err.starts_with(&format!("repo/{}", h.txns[h.txns.len() - 1].file)),
        "{err}"
    );
}

/// A chain missing a middle increment is read up to the break: what it
/// holds before it is listed and recovered, and a time whose transaction
/// may be in the missing file is an error, not an older state.
#[test]
fn a_broken_chain_is_read_up_to_the_break() {
    let h = history(false, 3);
    let d = h.t.path();
    let middle = h.txns[6].file.clone();
    fs::remove_file(d.join("repo").join(&middle)).unwrap();
    let out = repozo_at(d, NOW, &["--transactions", "--json", "-r", "repo"]);
    // What it holds before the break is listed; the run fails, so that a
    // script does not take the part for the whole.
    let err = fails(&out, "--transactions");
    let full = &h.txns[0].file;
    assert_eq!(
        err,
        format!(
            "the chain of repo/{full} is read only up to the break: repo/{middle} is missing\n\
             repo/{middle} is missing: the transactions listed are not all the repository holds"
        )
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), 6);
    let c = &h.txns[5];
    recovers(
        &h,
        &["--at-tid", &tid_hex(c.tid)],
        c.end,
        "before the break",
    );
    for name in ["out.fs", "out.fs.index"] {
        fs::remove_file(d.join(name)).unwrap();
    }
    for at in [tid_time_text(c.tid).unwrap(), "2030-01-01".to_string()] {
        let err = fails(
            &repozo_at(d, NOW, &["-R", "-r", "repo", "-o", "out.fs", "--at", &at]),
            "past the break",
        );
        assert!(
            err.ends_with(&format!(
                "repo/{middle} is missing: the transaction at or before {} may be in it",
                parse_utc(&at).unwrap().format("%Y-%m-%dT%H:%M:%S%.6fZ")
            )),
            "{err}"
        );
        assert_eq!(names(d), ["Data.fs", "repo"]);
    }
}

/// A gzip'd backup of one member (as Python repozo writes them) has its
/// CRC at the end: a file cut by --at is inflated to its end all the
/// same, so a damaged one fails instead of giving bad bytes.
#[test]
fn a_cut_gzip_file_is_checked_to_its_end() {
    // Increments of 4 transactions of 1 to 4 pickles of 800 KB: the cut
    // comes megabytes before the member's end.
    let h = history_of(false, 4, 800_000);
    let d = h.t.path();
    let inc = h.txns[8].file.clone();
    let plain = d.join("repo").join(&inc);
    let gz = Command::new("gzip").arg("-n").arg(&plain).status().unwrap();
    assert!(gz.success());
    let zipped = d.join("repo").join(format!("{inc}z"));
    fs::rename(plain.with_extension("deltafs.gz"), &zipped).unwrap();
    let dat = d.join("repo").join(format!("{}.dat", stamp(0)));
    let text = fs::read_to_string(&dat).unwrap();
    fs::write(&dat, text.replace(&inc, &format!("{inc}z"))).unwrap();
    let c = &h.txns[8];
    recovers(&h, &["--at-tid", &tid_hex(c.tid)], c.end, "a good member");
    for name in ["out.fs", "out.fs.index"] {
        fs::remove_file(d.join(name)).unwrap();
    }
    // The stored CRC, 8 bytes from the end.
    let mut bytes = fs::read(&zipped).unwrap();
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    fs::write(&zipped, &bytes).unwrap();
    let err = fails(
        &repozo_at(
            d,
            NOW,
            &[
                "-R",
                "-r",
                "repo",
                "-o",
                "out.fs",
                "--at-tid",
                &tid_hex(c.tid),
            ],
        ),
        "a bad CRC",
    );
    assert!(
        err.starts_with(&format!("repo/{inc}z: corrupt gzip data after")),
        "{err}"
    );
    assert_eq!(names(d), ["Data.fs", "repo"]);
}

/// A `.dat` line whose size is not its file's is named as such, not
/// blamed on the file after it.
#[test]
fn a_dat_size_that_is_not_the_files_is_named() {
    let h = history(false, 3);
    let d = h.t.path();
    let inc = &h.txns[6].file;
    let size = fs::metadata(d.join("repo").join(inc)).unwrap().len();
    let dat = d.join("repo").join(format!("{}.dat", stamp(0)));
    let text = fs::read_to_string(&dat).unwrap();
    // The increment's line ends 100 bytes early; the next starts there.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let f: Vec<&str> = lines[1].split(' ').collect();
    let end: u64 = f[2].parse().unwrap();
    lines[1] = format!("{} {} {} {}", f[0], f[1], end - 100, f[3]);
    let g: Vec<&str> = lines[2].split(' ').collect();
    lines[2] = format!("{} {} {} {}", g[0], end - 100, g[2], g[3]);
    fs::write(&dat, lines.join("\n") + "\n").unwrap();
    let err = fails(
        &repozo_at(d, NOW, &["--transactions", "-r", "repo"]),
        "--transactions",
    );
    assert_eq!(
        err,
        format!("repo/{inc} is {size} bytes, should be {} bytes", size - 100)
    );
}
