//! The fuzz targets' seed files (`fuzz/seeds/`), through the same entry points under the normal test run:
//! every seed but the deliberately damaged images is a valid input, so a format change that breaks them shows
//! here rather than as a fuzzer that only explores error paths. Inputs that once crashed a target go into the
//! seeds too.
//!
//! The bundles and `.npz` files were written by `headstart embed` and `train` (logistic, centroid, knn) on an
//! eight-row sentiment CSV and on two of the seed images; write them again the same way when a format changes.
//! The Parquet seeds are `headstart embed --format parquet` of two seed images in class folders beside a file
//! that is not an image, and of a five-row sentiment CSV with an empty text; `damaged.*` ones once made the parquet
//! crate panic (found by `fuzz/run`). `refused.*` seeds are crafted files that must be refused (Parquet files
//! declaring more than they hold, damaged bundles): `HEADSTART_WRITE_FUZZ_SEEDS=1 cargo test --test strangers`
//! writes them again.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use headstart::backbone::ImagePreprocess;
use headstart::bundle::Bundle;
use headstart::data::decode::{DecodeOptions, decode_image};
use headstart::data::texts::{TableFormat, TextOptions, parse_table};
use headstart::embeddings::EmbeddedSet;
use headstart::embeddings::parquet::read_parquet_bytes;
use headstart::head::ClassScores;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

/// Every image seed decodes (every pixel, and as a 224x224 preprocessing needs it), except the damaged
/// ones (`truncated.*`, `corrupt.*`), which are refused with that reason and decode when damage is allowed.
#[test]
fn image_seeds_decode_and_preprocess() {
    let preprocess = ImagePreprocess::default();
    let strict = DecodeOptions::default()
        .max_pixels(4_000_000)
        .allow_truncated(false);
    let lenient = strict.allow_truncated(true);
    for path in seeds("image_decode") {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        let damage = ["truncated", "corrupt"]
            .into_iter()
            .find(|kind| name.starts_with(kind));
        for target in [None, Some(&preprocess)] {
            let image = match (damage, decode_image(&bytes, &strict, target)) {
                (None, Ok(image)) => image,
                (Some(kind), Err(reason)) => {
                    let expected = if kind == "corrupt" {
                        "corrupt data: "
                    } else {
                        "truncated: "
                    };
                    assert!(reason.starts_with(expected), "{name}: {reason}");
                    // Whatever the lenient decoders make of it, they make it without a panic.
                    let _ = decode_image(&bytes, &lenient, target);
                    continue;
                }
                (None, Err(reason)) => panic!("{name}: {reason}"),
                (Some(_), Ok(_)) => panic!("{name} decoded"),
            };
            let mut tensor = vec![0.0f32; preprocess.tensor_len()];
            preprocess.apply(&image, &mut tensor);
            assert!(tensor.iter().all(|v| v.is_finite()), "{name}");
        }
    }
}

/// Whether a seed is a crafted file that must be refused (`refused.*`, written by `tests/strangers.rs` with
/// `HEADSTART_WRITE_FUZZ_SEEDS` set); those must give an error, not a panic or a set.
fn refused(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("refused."))
}

#[test]
fn bundle_seeds_load_and_predict() {
    for path in seeds("bundle_load") {
        let bytes = std::fs::read(&path).unwrap();
        if refused(&path) {
            let error = Bundle::load_from(Cursor::new(bytes), &path).unwrap_err();
            assert!(error.to_string().contains("damaged bundle"), "{error}");
            continue;
        }
        let bundle = Bundle::load_from(Cursor::new(bytes), &path).unwrap_or_else(|e| panic!("{e}"));
        let embeddings = ndarray::Array2::<f32>::ones((2, bundle.head.dim()));
        let probabilities = bundle
            .head
            .probabilities(embeddings.view(), bundle.temperature);
        assert_eq!(probabilities.dim(), (2, bundle.info.class_names.len()));
    }
}

#[test]
fn npz_seeds_load() {
    for path in seeds("npz_load") {
        let bytes = std::fs::read(&path).unwrap();
        let set =
            EmbeddedSet::read_npz_from(Cursor::new(bytes), &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.rows() > 0 && set.matrix().ncols() == set.dim);
    }
}

#[test]
fn parquet_seeds_load() {
    for path in seeds("parquet_load") {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("damaged.") {
            // Inputs that once made the parquet crate panic: refused, with that said.
            let error = read_parquet_bytes(bytes, &path).unwrap_err().to_string();
            assert!(error.contains("damaged Parquet file"), "{name}: {error}");
            continue;
        }
        if refused(&path) {
            // Files declaring more than they hold, or a page header past its chunk: refused before decoding.
            let error = read_parquet_bytes(bytes, &path).unwrap_err().to_string();
            assert!(error.contains("row group 0"), "{name}: {error}");
            continue;
        }
        let set = read_parquet_bytes(bytes, &path).unwrap_or_else(|e| panic!("{e}"));
        // Each seed has a skipped input (null embedding), left out of the set.
        assert!(set.rows() > 0 && set.matrix().ncols() == set.dim);
        assert_eq!(set.labels.as_ref().map(Vec::len), Some(set.rows()));
    }
}

#[test]
fn text_table_seeds_parse_with_their_skips() {
    for path in seeds("text_table") {
        let bytes = std::fs::read(&path).unwrap();
        // The first byte picks the format, as in the fuzz target.
        let format = match bytes[0] % 3 {
            0 => TableFormat::Csv,
            1 => TableFormat::Tsv,
            _ => TableFormat::JsonLines,
        };
        let set = parse_table(&bytes[1..], format, &TextOptions::default(), &path)
            .unwrap_or_else(|e| panic!("{e}"));
        // Each seed mixes good rows with rows that must be skipped.
        assert!(
            !set.items.is_empty() && !set.skipped.is_empty(),
            "{}: {} rows, {} skipped",
            path.display(),
            set.items.len(),
            set.skipped.len()
        );
    }
}
