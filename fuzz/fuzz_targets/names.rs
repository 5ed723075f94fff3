//! Fuzz the repository's name and date parsers.
//!
//! Asserts: `parse_date`, `DataFile::parse` and `Timestamp::parse_stem`
//! never panic; a parsed data file name prints back as itself;
//! `parse_date` returns its input unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repozo::repository::{parse_date, DataFile, Timestamp};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_date(s) {
        assert_eq!(d, s);
    }
    let _ = Timestamp::parse_stem(s);
    let parsed = DataFile::parse(s);
    assert_eq!(
        parsed.as_ref().map(DataFile::name).as_deref(),
        parsed.as_ref().map(|_| s)
    );
    if let Some(f) = parsed {
        assert_eq!(f.stem.len(), 19);
        assert!(f.index_name().starts_with(&f.stem));
    }
});
