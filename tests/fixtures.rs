//! The library against the committed fixtures made by real ZODB
//! (`testdata/make_testdata.py`): every expected value comes from
//! `testdata/MANIFEST.json`, which the script filled from what ZODB said.

use std::fs;
use std::path::{Path, PathBuf};

use repozo::format::Magic;
use repozo::index_file::{self, IndexFileError};
use repozo::pickle::Dialect;
use repozo::source::Source;
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

fn walk(rel: &str) -> repozo::Result<repozo::format::WalkResult> {
    Source::open(&path(rel))?.walk(0, None)
}

fn index_bytes(result: &repozo::format::WalkResult) -> Vec<u8> {
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
