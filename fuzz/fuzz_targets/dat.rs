//! Fuzz the `.dat` log parser.
//!
//! Asserts: `parse_dat` never panics; every entry it accepts has
//! `end >= start`, a 32-digit lowercase hex md5 and a path without
//! whitespace; writing the entries back with `DatEntry::line()` and parsing
//! again gives the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repozo::repository::parse_dat;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = parse_dat(data, "fuzz.dat") else {
        return;
    };
    for e in &entries {
        assert!(e.end >= e.start, "{e:?}");
        assert_eq!(e.size(), e.end - e.start);
        assert_eq!(e.md5.len(), 32, "{e:?}");
        assert!(
            e.md5
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{e:?}"
        );
        assert!(
            !e.path.is_empty() && !e.path.contains(char::is_whitespace),
            "{e:?}"
        );
        assert!(!e.file_name().contains('/'));
    }
    let text: String = entries.iter().map(|e| e.line()).collect();
    let again = parse_dat(text.as_bytes(), "fuzz.dat").expect("re-serialized entries parse");
    assert_eq!(again, entries);
});
