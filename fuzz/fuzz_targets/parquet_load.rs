//! Any bytes as a Parquet file of embeddings: a checked set or a clear error, never a crash.
#![no_main]

use std::path::Path;

use headstart::embeddings::parquet::read_parquet_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(set) = read_parquet_bytes(bytes.to_vec(), Path::new("fuzz.parquet")) else {
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
