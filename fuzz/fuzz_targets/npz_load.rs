//! Any bytes as an embeddings `.npz`: a checked set or a clear error, never a crash.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use headstart::embeddings::EmbeddedSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(set) = EmbeddedSet::read_npz_from(Cursor::new(bytes), Path::new("fuzz.npz")) else {
        return;
    };
    // What training reads from a set it was given.
    let matrix = set.matrix();
    assert_eq!(matrix.nrows(), set.rows());
    if let Some(labels) = &set.labels {
        assert_eq!(labels.len(), set.rows());
        assert!(labels.iter().all(|&l| l < set.class_names.len()));
    }
});
