//! `embed` on folders: real images and real backbones, awkward inputs, the cache, the .npz format.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::jpeg_with_orientation;
use headstart::Augment;
use headstart::backbone::JpegDecode;
use headstart::backbone::{BackboneRef, ImageBackbone, InputSpec};
use headstart::classifier::Classifier;
use headstart::data::files as dataset;
use headstart::datasets::sample_photos;
use headstart::embeddings::cosine;
use headstart::embeddings::npz::{NpyData, read_npz};
use headstart::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed_images};
use image::{DynamicImage, ImageFormat};

fn backbone() -> ImageBackbone {
    ImageBackbone::open(
        &BackboneRef::Zoo("efficientnet-lite0".into()),
        &Default::default(),
    )
    .unwrap()
}

fn run(dir: &Path, options: &EmbedOptions) -> (EmbeddedSet, EmbedSummary) {
    let data = dataset::scan(dir).unwrap();
    embed_images(&data, &mut backbone(), options, &mut |_, _| {}).unwrap()
}

fn save(image: &DynamicImage, path: &Path, format: ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save_with_format(path, format).unwrap();
}

fn photo(name: &str) -> PathBuf {
    sample_photos()
        .unwrap()
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap()
}

fn elpv_cell(name: &str) -> PathBuf {
    headstart::datasets::elpv()
        .unwrap()
        .join("images")
        .join(name)
}

fn embedding_of(set: &EmbeddedSet, path: &str) -> Vec<f32> {
    let row = set
        .paths
        .iter()
        .position(|p| p == path)
        .unwrap_or_else(|| panic!("{path} not embedded"));
    set.embeddings[row * set.dim..(row + 1) * set.dim].to_vec()
}

#[test]
fn awkward_images_are_converted_and_oriented() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let coffee = image::open(photo("coffee.png")).unwrap();
    let small = coffee.resize_exact(120, 80, image::imageops::FilterType::Triangle);
    save(&small, &root.join("upright/coffee.png"), ImageFormat::Png);
    // The same picture stored rotated 90° clockwise... plus an EXIF tag saying "rotate it back".
    let stored = small.rotate270();
    std::fs::create_dir_all(root.join("exif")).unwrap();
    std::fs::write(
        root.join("exif/rotated.jpg"),
        jpeg_with_orientation(&stored, 6),
    )
    .unwrap();
    std::fs::write(
        root.join("exif/untagged.jpg"),
        jpeg_with_orientation(&stored, 1),
    )
    .unwrap();
    save(
        &DynamicImage::ImageLuma8(small.to_luma8()),
        &root.join("modes/gray.png"),
        ImageFormat::Png,
    );
    save(
        &DynamicImage::ImageRgba8(small.to_rgba8()),
        &root.join("modes/alpha.png"),
        ImageFormat::Png,
    );
    save(
        &DynamicImage::ImageRgb16(small.to_rgb16()),
        &root.join("modes/sixteen.png"),
        ImageFormat::Png,
    );
    save(&small, &root.join("modes/palette.gif"), ImageFormat::Gif);
    save(&small, &root.join("modes/image.webp"), ImageFormat::WebP);
    save(&small, &root.join("modes/image.bmp"), ImageFormat::Bmp);
    save(&small, &root.join("modes/image.tiff"), ImageFormat::Tiff);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg"),
        root.join("modes/cmyk.jpg"),
    )
    .unwrap();
    // A PNG named .jpg: the content decides.
    save(&small, &root.join("modes/misnamed.jpg"), ImageFormat::Png);

    let (set, summary) = run(root, &EmbedOptions::default().use_cache(false));
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_eq!(set.rows(), 12);
    assert_eq!(set.class_names, ["exif", "modes", "upright"]);
    let upright = embedding_of(&set, "upright/coffee.png");
    let rotated = cosine(&upright, &embedding_of(&set, "exif/rotated.jpg"));
    let untagged = cosine(&upright, &embedding_of(&set, "exif/untagged.jpg"));
    assert!(
        rotated > 0.9 && rotated > untagged + 0.05,
        "EXIF orientation applied: cos {rotated} vs {untagged} without"
    );
    for name in [
        "alpha.png",
        "sixteen.png",
        "palette.gif",
        "image.webp",
        "image.bmp",
        "image.tiff",
        "misnamed.jpg",
        "cmyk.jpg",
    ] {
        let similarity = cosine(&upright, &embedding_of(&set, &format!("modes/{name}")));
        assert!(similarity > 0.9, "{name}: cos {similarity}");
    }
    assert!(cosine(&upright, &embedding_of(&set, "modes/gray.png")) > 0.7);
}

#[test]
fn skips_empty_classes_and_flat_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cat = image::open(photo("chelsea.png"))
        .unwrap()
        .thumbnail(100, 100);
    save(&cat, &root.join("cats/cat.png"), ImageFormat::Png);
    std::fs::write(root.join("cats/notes.png"), b"this is text, not a PNG").unwrap();
    let png = std::fs::read(root.join("cats/cat.png")).unwrap();
    std::fs::write(root.join("cats/truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::create_dir_all(root.join("dogs")).unwrap();
    std::fs::write(root.join("README.txt"), b"about this dataset").unwrap();

    let (set, summary) = run(root, &EmbedOptions::default().use_cache(false));
    assert_eq!(set.rows(), 1);
    assert_eq!(set.labels, Some(vec![0]));
    assert_eq!(summary.empty_classes, ["dogs"]);
    let reasons: Vec<(&str, &str)> = summary
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].0 == "README.txt" && reasons[0].1.contains("not inside a class folder"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "cats/notes.png" && reasons[1].1.contains("not an image"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == "cats/truncated.png" && reasons[2].1.starts_with("truncated: "),
        "{reasons:?}"
    );

    let data = dataset::scan(root).unwrap();
    let strict = EmbedOptions::default().use_cache(false).strict(true);
    let err = embed_images(&data, &mut backbone(), &strict, &mut |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("notes.png") && err.contains("strict"), "{err}");

    let flat = tempfile::tempdir().unwrap();
    save(&cat, &flat.path().join("a.png"), ImageFormat::Png);
    save(&cat.fliph(), &flat.path().join("b.png"), ImageFormat::Png);
    let (set, _) = run(flat.path(), &EmbedOptions::default().use_cache(false));
    assert_eq!(set.labels, None);
    assert!(set.class_names.is_empty());
}

#[test]
fn cache_hits_partial_cache_and_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    let root = &dir.path().join("data");
    for (i, name) in ["chelsea.png", "coffee.png", "rocket.jpg"]
        .iter()
        .enumerate()
    {
        let image = image::open(photo(name)).unwrap().thumbnail(160, 160);
        save(
            &image,
            &root.join(format!("class{}/{name}.png", i % 2)),
            ImageFormat::Png,
        );
    }
    let options = EmbedOptions::default().cache_dir(dir.path().join("cache"));
    let (first, summary) = run(root, &options);
    assert_eq!((summary.from_cache, summary.computed), (0, 3));
    let (second, summary) = run(root, &options);
    assert_eq!(
        (summary.from_cache, summary.computed),
        (3, 0),
        "everything from the cache"
    );
    assert_eq!(first.embeddings, second.embeddings);

    let extra = image::open(photo("astronaut.png"))
        .unwrap()
        .thumbnail(150, 150);
    save(&extra, &root.join("class1/astronaut.png"), ImageFormat::Png);
    let (_, summary) = run(root, &options);
    assert_eq!(
        (summary.from_cache, summary.computed),
        (3, 1),
        "only the new image is embedded"
    );

    let augmented = options.augment(Augment {
        flip: true,
        crop: true,
    });
    let (set, summary) = run(root, &augmented);
    assert_eq!(set.rows(), 12);
    assert_eq!((summary.from_cache, summary.computed), (4, 8));
    assert_eq!(set.augmented.iter().filter(|a| **a).count(), 8);
    assert_eq!(&set.augmented[..3], [false, true, true]);
    assert_eq!(set.paths[0], set.paths[1]);
    assert_ne!(
        set.embeddings[..set.dim],
        set.embeddings[set.dim..2 * set.dim],
        "a flipped view differs"
    );

    // `headstart cache` names the configuration and counts its entries; `cache clear` empties the embedding
    // cache, `--all` also what was fetched, and nothing else in the folder: only what headstart made.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("models/m")).unwrap();
    std::fs::rename(dir.path().join("cache"), home.join("embeddings")).unwrap();
    std::fs::write(home.join("models/m/model.onnx"), b"onnx").unwrap();
    std::fs::write(home.join("mine.txt"), b"keep me").unwrap();
    let cache_command =
        |args: &[&str]| common::headstart_json_in_home(&home, &[&["cache"], args].concat());
    let shown = cache_command(&["--json"]);
    let configurations = shown["embeddings"].as_array().unwrap();
    assert_eq!(configurations.len(), 1);
    assert_eq!(configurations[0]["entries"], 12);
    let described = configurations[0]["description"].as_str().unwrap();
    assert!(
        described.starts_with("efficientnet-lite0, features, images 224x224"),
        "{described}"
    );
    let parts: Vec<&str> = shown["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["embeddings", "models"]);

    // The embedding cache headstart made goes; `models/` was made by hand here, so it stays.
    let cleared = cache_command(&["clear", "--json"]);
    assert_eq!(cleared["removed"][0]["name"], "embeddings");
    assert!(!home.join("embeddings").exists() && home.join("models").exists());
    let cleared = cache_command(&["clear", "--all", "--json"]);
    assert_eq!(cleared["removed"], serde_json::json!([]));
    assert_eq!(
        cleared["left_alone"],
        serde_json::json!(["mine.txt", "models"])
    );
    assert!(home.join("models/m/model.onnx").exists());
    assert_eq!(std::fs::read(home.join("mine.txt")).unwrap(), b"keep me");
}

/// Embeddings equal those of an independent Python path (Pillow + onnxruntime: `benches/reference_embed.py vectors`).
#[test]
fn embeddings_match_an_independent_reference() {
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/reference_embeddings.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("elpv")).unwrap();
    std::fs::copy(photo("chelsea.png"), root.join("chelsea.png")).unwrap();
    std::fs::copy(photo("coffee.png"), root.join("coffee.png")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg"),
        root.join("cmyk.jpg"),
    )
    .unwrap();
    std::fs::copy(elpv_cell("cell0001.png"), root.join("cell0001.png")).unwrap();
    std::fs::remove_dir(root.join("elpv")).unwrap();
    let (set, _) = run(root, &EmbedOptions::default().use_cache(false));
    for (name, key) in [
        ("chelsea.png", "chelsea.png"),
        ("coffee.png", "coffee.png"),
        ("cmyk.jpg", "cmyk.jpg"),
        ("cell0001.png", "elpv/cell0001.png"),
    ] {
        let expected: Vec<f32> = reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let similarity = cosine(&embedding_of(&set, name), &expected);
        assert!(
            similarity >= 0.999,
            "{name}: cosine {similarity} with the Python reference"
        );
    }
}

#[test]
fn npz_output_is_complete_and_numpy_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for (i, name) in ["cell0001.png", "cell0002.png", "cell0004.png"]
        .iter()
        .enumerate()
    {
        let class = if i == 2 { "functional" } else { "defective" };
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::fs::copy(elpv_cell(name), root.join(class).join(name)).unwrap();
    }
    let out = dir.path().join("out.npz");
    let status = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args([
            "embed",
            root.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(summary["embedded"], 3);
    assert_eq!(summary["dim"], 1280);

    let arrays = read_npz(&out).unwrap();
    let get = |name: &str| {
        arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    assert!(matches!(get("embeddings"), NpyData::F32 { shape, .. } if shape == [3, 1280]));
    assert_eq!(
        get("labels"),
        NpyData::I64 {
            shape: vec![3],
            data: vec![0, 0, 1]
        }
    );
    assert_eq!(
        get("class_names"),
        NpyData::Strings {
            shape: vec![2],
            data: vec!["defective".into(), "functional".into()]
        }
    );
    assert!(matches!(get("backbone_sha256"), NpyData::Strings { data, .. } if data[0].len() == 64));

    let pythonpath = headstart::home::python_packages("python", "numpy", &["numpy"]).unwrap();
    let script = format!(
        "import numpy as np; d = np.load({:?}); print(d['embeddings'].shape, d['embeddings'].dtype, list(d['labels']), \
         list(d['class_names']), list(d['paths']), str(d['backbone']))",
        out.to_str().unwrap()
    );
    let numpy = Command::new(headstart::home::python())
        .envs(pythonpath.iter().map(|p| ("PYTHONPATH", p)))
        .args(["-c", &script])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&numpy.stdout);
    assert!(
        numpy.status.success(),
        "{}",
        String::from_utf8_lossy(&numpy.stderr)
    );
    assert!(
        printed.contains("(3, 1280) float32 [np.int64(0), np.int64(0), np.int64(1)]")
            || printed.contains("(3, 1280) float32 [0, 0, 1]"),
        "{printed}"
    );
    assert!(
        printed.contains("'defective/cell0001.png'") && printed.contains("efficientnet-lite0"),
        "{printed}"
    );
}

/// The 14 camera photos hard-linked into `dir`, `copies` times each, under distinct names.
fn photo_folder(dir: &Path, copies: usize) -> Vec<PathBuf> {
    let source = headstart::datasets::camera_photos().unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    assert_eq!(photos.len(), PHOTOS);
    std::fs::create_dir_all(dir).unwrap();
    for copy in 0..copies {
        for photo in &photos {
            let name = format!("{copy}-{}", photo.file_name().unwrap().to_string_lossy());
            std::fs::hard_link(photo, dir.join(name)).unwrap();
        }
    }
    photos
}

const PHOTOS: usize = 14;

fn jpeg_decode_of(set: &EmbeddedSet) -> JpegDecode {
    match &set.features.input {
        InputSpec::Image(preprocess) => preprocess.jpeg_decode,
        InputSpec::Text(_) => panic!("an image set"),
    }
}

/// Photos decoded at reduced scale embed within cosine 0.995 of full decoding, the .npz says which decoding
/// made it, and peak memory stays flat: once the pipeline's buffers and ONNX Runtime's arena are at their
/// steady size (a few full batches), twice the photos need no more memory.
#[test]
fn photos_embed_at_reduced_scale_close_to_full_decoding_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let folder = |copies: usize| {
        let folder = dir.path().join(format!("{copies}x"));
        photo_folder(&folder, copies);
        folder
    };
    let (once, eight_times, sixteen_times) = (folder(1), folder(8), folder(16));
    let embed = |folder: &Path, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "embed",
            folder.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--no-cache",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr, peak_mib) = common::headstart_peak_memory(&args);
        assert_eq!(code, 0, "{stderr}");
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(summary["skipped"], serde_json::json!([]), "{stdout}");
        (EmbeddedSet::read_npz(&out).unwrap(), peak_mib)
    };
    let (scaled, _) = embed(&once, "scaled.npz", &[]);
    let (exact, _) = embed(&once, "exact.npz", &["--exact-decode"]);
    assert_eq!(jpeg_decode_of(&scaled), JpegDecode::Scaled);
    assert_eq!(jpeg_decode_of(&exact), JpegDecode::Exact);
    let similarities: Vec<f32> = (0..PHOTOS)
        .map(|i| {
            cosine(
                scaled.matrix().row(i).as_slice().unwrap(),
                exact.matrix().row(i).as_slice().unwrap(),
            )
        })
        .collect();
    let lowest = similarities.iter().copied().fold(1.0f32, f32::min);
    let (_, peak_8x) = embed(&eight_times, "8x.npz", &[]);
    let (_, peak_16x) = embed(&sixteen_times, "16x.npz", &[]);
    let (_, peak_8x_exact) = embed(&eight_times, "8x-exact.npz", &["--exact-decode"]);
    let (n8, n16) = (8 * PHOTOS, 16 * PHOTOS);
    eprintln!(
        "photos: lowest cosine to full decoding {lowest:.5}; peak resident memory {peak_8x} MiB for {n8} \
         photos, {peak_16x} MiB for {n16}, {peak_8x_exact} MiB for {n8} decoding every pixel"
    );
    assert!(lowest >= 0.995, "{similarities:?}");
    assert!(peak_16x < 1024, "{peak_16x} MiB");
    assert!(
        peak_16x <= peak_8x + 48,
        "{peak_16x} MiB for {n16} photos against {peak_8x} MiB for {n8}"
    );
}

/// A bundle decodes what it predicts as its training embeddings were decoded: predicting a photo's file gives
/// the probabilities of that photo's row, for a scaled and for an exact bundle.
#[test]
fn bundles_decode_photos_as_their_embeddings_were_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("photos");
    let photos = photo_folder(&dir.path().join("all"), 1);
    for (i, photo) in photos.iter().enumerate() {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let target = tree.join(class).join(photo.file_name().unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::hard_link(photo, &target).unwrap();
    }
    for (decode, extra) in [
        (JpegDecode::Scaled, None),
        (JpegDecode::Exact, Some("--exact-decode")),
    ] {
        let npz = dir.path().join(format!("{decode:?}.npz"));
        let bundle = dir.path().join(format!("{decode:?}.hs"));
        let mut args = vec![
            "embed",
            tree.to_str().unwrap(),
            "-o",
            npz.to_str().unwrap(),
            "--no-cache",
            "-q",
        ];
        args.extend(extra);
        let (code, _, stderr) = common::headstart(&args);
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = common::headstart(&[
            "train",
            npz.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--folds",
            "3",
        ]);
        assert_eq!(code, 0, "{stderr}");
        let set = EmbeddedSet::read_npz(&npz).unwrap();
        assert_eq!(jpeg_decode_of(&set), decode);
        let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
        let from_rows = classifier.predict_embeddings(set.matrix()).unwrap();
        for (row, path) in set.paths.iter().enumerate() {
            let from_file = classifier.predict_path(&tree.join(path)).unwrap();
            for (a, b) in from_file.iter().zip(from_rows.row(row)) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{decode:?} {path}: {from_file:?} against {:?}",
                    from_rows.row(row)
                );
            }
        }
    }
}

/// The cache tells a photo's reduced-scale rows from its full decoding's, while a PNG's row (which no JPEG
/// decoding touches) answers both.
#[test]
fn the_cache_keeps_reduced_and_full_decodings_of_a_photo_apart() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("photos");
    photo_folder(&folder, 1);
    let cat = image::open(photo("chelsea.png")).unwrap();
    save(&cat, &folder.join("cat.png"), ImageFormat::Png);
    let options = EmbedOptions::default().cache_dir(dir.path().join("cache"));
    let data = dataset::scan(&folder).unwrap();
    let mut scaled = backbone();
    let mut exact_options = headstart::backbone::BackboneOptions::default();
    exact_options.preprocess.jpeg_decode = Some(JpegDecode::Exact);
    let mut exact = ImageBackbone::open(
        &BackboneRef::Zoo("efficientnet-lite0".into()),
        &exact_options,
    )
    .unwrap();
    let embed = |backbone: &mut ImageBackbone| {
        embed_images(&data, backbone, &options, &mut |_, _| {}).unwrap()
    };
    let (first, summary) = embed(&mut scaled);
    assert_eq!(summary.computed, PHOTOS + 1);
    let (full, summary) = embed(&mut exact);
    assert_eq!(
        summary.computed, PHOTOS,
        "only the photos are decoded again"
    );
    assert_eq!(embed(&mut exact).1.computed, 0);
    assert_eq!(embed(&mut scaled).1.computed, 0);
    let uncached = options.clone().use_cache(false);
    let (fresh, _) = embed_images(&data, &mut exact, &uncached, &mut |_, _| {}).unwrap();
    assert_eq!(full.embeddings, fresh.embeddings);
    assert_ne!(first.embeddings, full.embeddings);
}
