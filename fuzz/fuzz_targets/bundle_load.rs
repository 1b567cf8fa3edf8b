//! Any bytes as a bundle: a loaded bundle or a clear error; a loaded one predicts without panicking.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use headstart::bundle::Bundle;
use headstart::head::ClassScores;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(bundle) = Bundle::load_from(Cursor::new(bytes), Path::new("fuzz.hs")) else {
        return;
    };
    // What `predict` does once the backbone's embedding size matches the head's.
    let embeddings = ndarray::Array2::<f32>::ones((2, bundle.head.dim()));
    let probabilities = bundle
        .head
        .probabilities(embeddings.view(), bundle.temperature);
    assert_eq!(probabilities.dim(), (2, bundle.head.classes()));
});
