//! The library against the committed fixtures made by real ZODB
//! (`testdata/make_testdata.py`): every expected value comes from
//! `testdata/MANIFEST.json`, which the script filled from what ZODB said.

use std::fs;
use std::path::{Path, PathBuf};

use repozo::datafs::Source;
use repozo::filestorage::index_file::{self, IndexFileError};
use repozo::filestorage::pickle::Dialect;
use repozo::filestorage::records::Magic;
use repozo::Error;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> Value {
    let text = fs::read_to_string(root().join("testdata/MANIFEST.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn path(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

fn walk(rel: &str) -> repozo::Result<repozo::filestorage::records::WalkResult> {
    Source::open(path(rel))?.walk(0, None, None)
}

fn index_bytes(result: &repozo::filestorage::records::WalkResult) -> Vec<u8> {
    let dialect = index_file::dialect_for(result.magic);
    index_file::save(Vec::new(), result.end, &result.index, dialect).unwrap()
}

#[test]
fn walker_agrees_with_zodb_on_every_valid_database() {
    let m = manifest();
    let dbs = m["datafs"].as_object().unwrap();
    assert!(dbs.len() >= 5);
    for (rel, facts) in dbs {
        let r = walk(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(r.end, facts["end"].as_u64().unwrap(), "{rel}: end");
        assert_eq!(
            r.index.len() as u64,
            facts["oids"].as_u64().unwrap(),
            "{rel}: oids"
        );
        assert_eq!(
            format!("{:016x}", r.index.max_oid().unwrap()),
            facts["max_oid"].as_str().unwrap(),
            "{rel}: max oid"
        );
        assert_eq!(
            r.transactions,
            facts["transactions"].as_u64().unwrap(),
            "{rel}: transactions"
        );
        assert_eq!(r.magic, Magic::Fs30);
    }
}

#[test]
fn our_index_is_byte_identical_to_the_one_zodb_saved() {
    let m = manifest();
    let mut compared = 0;
    for (rel, facts) in m["datafs"].as_object().unwrap() {
        let zodb_index = format!("{rel}.index");
        if !root().join(&zodb_index).exists() {
            continue;
        }
        // ZODB saves its index at the end it found.
        assert_eq!(facts["index"]["pos"], facts["end"], "{rel}");
        let r = walk(rel).unwrap();
        let expected = fs::read(root().join(&zodb_index)).unwrap();
        assert!(index_bytes(&r) == expected, "{zodb_index} differs");
        let loaded = index_file::load(expected.as_slice()).unwrap();
        assert_eq!(loaded.pos, r.end);
        assert_eq!(loaded.index, r.index);
        compared += 1;
    }
    assert!(compared >= 4, "only {compared} indexes compared");
}

#[test]
fn torn_tails_are_left_out_like_zodb_read_only() {
    let m = manifest();
    let cases = m["truncated"].as_object().unwrap();
    assert_eq!(cases.len(), 3);
    for (rel, facts) in cases {
        let r = walk(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(r.end, facts["end"].as_u64().unwrap(), "{rel}");
        assert!(r.end < facts["size"].as_u64().unwrap(), "{rel}");
        let expected =
            fs::read(root().join(facts["expected_index"]["path"].as_str().unwrap())).unwrap();
        assert!(index_bytes(&r) == expected, "{rel}: index differs");
    }
}

#[test]
fn damaged_databases_are_errors_naming_file_and_zodbs_offset() {
    let m = manifest();
    let mut seen = 0;
    for (rel, facts) in m["damaged"].as_object().unwrap() {
        if !rel.ends_with(".fs") {
            continue;
        }
        seen += 1;
        let err = walk(rel).expect_err(rel);
        let msg = err.to_string();
        assert!(matches!(err, Error::Format { .. }), "{rel}: {msg}");
        assert!(msg.starts_with(&path(rel)), "{rel}: {msg}");
        let offset = facts.get("reported_offset").and_then(Value::as_u64);
        if let Some(offset) = offset.filter(|&o| o > 0) {
            assert!(
                msg.contains(&format!("offset {offset}")),
                "{rel}: ZODB says {}, we say {msg}",
                facts["zodb"]["message"]
            );
        } else {
            assert!(msg.contains("not a FileStorage"), "{rel}: {msg}");
        }
    }
    assert!(seen >= 6, "{seen} damaged databases");
}

#[test]
fn python2_era_files_get_python2_era_indexes() {
    let r = walk("testdata/fs21/Data.fs").unwrap();
    assert_eq!(r.magic, Magic::Fs21);
    let expected = fs::read(root().join("testdata/fs21/Data.fs.index")).unwrap();
    assert!(index_bytes(&r) == expected, "fs21 index differs");

    // The large-bucket variant uses BINSTRING; it describes manyoids/Data.fs.
    let many = walk("testdata/manyoids/Data.fs").unwrap();
    let old = fs::read(root().join("testdata/fs21/manyoids.index")).unwrap();
    let loaded = index_file::load(old.as_slice()).unwrap();
    assert_eq!((loaded.pos, &loaded.index), (many.end, &many.index));
    let ours = index_file::save(Vec::new(), many.end, &many.index, Dialect::Protocol1).unwrap();
    assert!(ours == old, "protocol 1 manyoids index differs");
}

#[test]
fn unreadable_indexes_are_clear_errors() {
    let load = |rel: &str| index_file::load(fs::read(root().join(rel)).unwrap().as_slice());
    assert!(matches!(
        load("testdata/fs21/old-dict.index"),
        Err(IndexFileError::OldStyle)
    ));
    let e = load("testdata/damaged/bad.index").unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = load("testdata/damaged/garbage.index").unwrap_err();
    assert!(!e.to_string().is_empty());
}

#[test]
fn indexes_in_repozo_repositories_load_and_match_their_backups() {
    let m = manifest();
    for (repo, facts) in m["repos"].as_object().unwrap() {
        for b in facts["backups"].as_array().unwrap() {
            let state = b["state"].as_str().unwrap();
            let index = Path::new(repo).join(format!("{}.index", b["timestamp"].as_str().unwrap()));
            let bytes = fs::read(root().join(&index)).unwrap();
            let r = walk(state).unwrap();
            assert_eq!(r.end, b["end"].as_u64().unwrap());
            assert!(index_bytes(&r) == bytes, "{} differs", index.display());
        }
    }
}

#[test]
fn a_walk_resumed_from_a_sane_saved_index_equals_a_full_walk() {
    use repozo::datafs::Resume;
    let m = manifest();
    let mut resumed = 0;
    for (rel, facts) in m["datafs"].as_object().unwrap() {
        let saved = root().join(format!("{rel}.index"));
        if !saved.exists() {
            continue;
        }
        let ix = index_file::load(fs::read(&saved).unwrap().as_slice()).unwrap();
        let src = Source::open(path(rel)).unwrap();
        if !src.index_is_sane(&ix.index, ix.pos).unwrap() {
            // FileStorage refuses indexes of tiny files too.
            assert!(ix.pos < 100, "{rel}: ZODB's own index judged insane");
            continue;
        }
        let full = src.walk(0, None, None).unwrap();
        let mut copied = Vec::new();
        let r = src
            .walk(
                0,
                Some(Resume {
                    pos: ix.pos,
                    index: ix.index,
                }),
                Some((&mut copied, "copy")),
            )
            .unwrap();
        assert_eq!((r.end, &r.index), (full.end, &full.index), "{rel}");
        assert_eq!(
            copied,
            fs::read(root().join(rel)).unwrap()[..full.end as usize],
            "{rel}"
        );
        assert_eq!(r.end, facts["end"].as_u64().unwrap());
        resumed += 1;
    }
    assert!(resumed >= 3, "{resumed}");

    // An index of an earlier state resumes into the later bytes.
    let states: Vec<_> = m["repos"]["testdata/repo-plain"]["backups"]
        .as_array()
        .unwrap()
        .clone();
    let early = index_file::load(
        fs::read(root().join(states[0]["index"].as_str().unwrap()))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let late = Source::open(path(states[2]["state"].as_str().unwrap())).unwrap();
    assert!(late.index_is_sane(&early.index, early.pos).unwrap());
    let start = states[1]["end"].as_u64().unwrap();
    let mut tail = Vec::new();
    let r = late
        .walk(
            start,
            Some(Resume {
                pos: early.pos,
                index: early.index,
            }),
            Some((&mut tail, "tail")),
        )
        .unwrap();
    let full = late.walk(0, None, None).unwrap();
    assert_eq!(r.index, full.index);
    let bytes = fs::read(path(states[2]["state"].as_str().unwrap())).unwrap();
    assert_eq!(tail, bytes[start as usize..]);
}

#[test]
fn indexes_of_other_databases_are_judged_insane() {
    let sample = Source::open(path("testdata/sample/Data.fs")).unwrap();
    let load =
        |rel: &str| index_file::load(fs::read(root().join(rel)).unwrap().as_slice()).unwrap();
    let own = load("testdata/sample/Data.fs.index");
    assert!(sample.index_is_sane(&own.index, own.pos).unwrap());
    for other in [
        "testdata/manyoids/Data.fs.index",
        "testdata/packed/Data.fs.index",
    ] {
        let ix = load(other);
        assert!(!sample.index_is_sane(&ix.index, ix.pos).unwrap(), "{other}");
    }
    // The right index at a position that is not a transaction's end.
    assert!(!sample.index_is_sane(&own.index, own.pos - 1).unwrap());
    // The newest record's entry (in the last transaction) pointing elsewhere.
    let mut bad = own.index.clone();
    let (oid, off) = bad.iter().max_by_key(|&(_, off)| off).unwrap();
    bad.insert(oid, off - 1);
    assert!(!sample.index_is_sane(&bad, own.pos).unwrap());
}

#[test]
fn a_pack_renaming_a_new_file_over_the_source_is_noticed() {
    let t = tempfile::TempDir::new().unwrap();
    let db = t.path().join("Data.fs");
    fs::copy(root().join("testdata/sample/Data.fs"), &db).unwrap();
    let src = Source::open(db.to_str().unwrap()).unwrap();
    src.check_not_replaced().unwrap();
    // What FileStorage.pack does: write Data.fs.pack, rename it over Data.fs.
    fs::copy(
        root().join("testdata/packed/Data.fs"),
        t.path().join("Data.fs.pack"),
    )
    .unwrap();
    fs::rename(t.path().join("Data.fs.pack"), &db).unwrap();
    let err = src.check_not_replaced().unwrap_err();
    assert!(matches!(err, Error::SourceReplaced { .. }), "{err}");
    assert!(err.to_string().contains("was replaced (packed?)"), "{err}");
    // The open handle still reads the old file, whole.
    let end = manifest()["datafs"]["testdata/sample/Data.fs"]["end"].clone();
    assert_eq!(src.walk(0, None, None).unwrap().end, end.as_u64().unwrap());
}
