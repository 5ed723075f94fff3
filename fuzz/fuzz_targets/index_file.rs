//! Fuzz the `.index` reader (and the pickle reader under it).
//!
//! Asserts: `load` and `read_pos` never panic; `read_pos` agrees with a
//! successful `load`; what loads, saved again as protocol 3 and as protocol 1,
//! loads back to the same `IndexFile`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repozo::filestorage::index_file::{self, IndexFile};
use repozo::filestorage::pickle::Dialect;

fuzz_target!(|data: &[u8]| {
    let pos = index_file::read_pos(data);
    let Ok(loaded) = index_file::load(data) else {
        return;
    };
    assert_eq!(pos.ok(), Some(loaded.pos), "read_pos disagrees with load");
    for dialect in [Dialect::Protocol3, Dialect::Protocol1] {
        let bytes = index_file::save(Vec::new(), loaded.pos, &loaded.index, dialect)
            .expect("writing to a Vec");
        let back: IndexFile = index_file::load(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{dialect:?} re-save does not load: {e}"));
        // Empty buckets are not written; compare what the index holds.
        assert_eq!(back.pos, loaded.pos);
        assert_eq!(
            back.index.iter().collect::<Vec<_>>(),
            loaded.index.iter().collect::<Vec<_>>(),
            "{dialect:?} round trip"
        );
    }
});
