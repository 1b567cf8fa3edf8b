//! Edge export: the exported file, run by ONNX Runtime (the ort crate, and Python's onnxruntime as a second
//! runtime), gives the probabilities `headstart predict` gives, for image and text bundles, whole and head-only.

mod common;

use std::path::{Path, PathBuf};

use common::{
    elpv_cells, elpv_class, headstart, headstart_ok, python_reference, train_small_bundle,
};
use headstart::backbone::{BackboneRef, ImageBackbone, TextBackbone};
use headstart::bundle::Bundle;
use headstart::classifier::Classifier;
use headstart::embeddings::npz::{NpyArray, write_npz};
use headstart::export::PIXELS;
use ndarray::Array2;
use ort::value::TensorRef;

const TOLERANCE: f32 = 1e-4;

/// Runs an ONNX file with the ort crate; inputs are (name, shape, values) of f32 or i64.
enum Input<'a> {
    F32(&'a str, Vec<i64>, &'a [f32]),
    I64(&'a str, Vec<i64>, &'a [i64]),
    U8(&'a str, Vec<i64>, &'a [u8]),
}

fn run_ort(model: &Path, inputs: &[Input]) -> (Array2<f32>, Vec<i64>) {
    let environment = headstart::runtime::environment(&Default::default()).unwrap();
    let mut session = ort::session::Session::builder(&environment)
        .unwrap()
        .commit_from_file(model)
        .unwrap();
    let feed: Vec<(&str, ort::session::SessionInputValue)> = inputs
        .iter()
        .map(|input| match input {
            Input::F32(name, shape, data) => (
                *name,
                TensorRef::from_array_view((shape.clone(), *data))
                    .unwrap()
                    .into(),
            ),
            Input::I64(name, shape, data) => (
                *name,
                TensorRef::from_array_view((shape.clone(), *data))
                    .unwrap()
                    .into(),
            ),
            Input::U8(name, shape, data) => (
                *name,
                TensorRef::from_array_view((shape.clone(), *data))
                    .unwrap()
                    .into(),
            ),
        })
        .collect();
    let outputs = session.run(feed).unwrap();
    let (shape, probabilities) = outputs["probabilities"]
        .try_extract_tensor::<f32>()
        .unwrap();
    let probabilities = Array2::from_shape_vec(
        (shape[0] as usize, shape[1] as usize),
        probabilities.to_vec(),
    )
    .unwrap();
    let (_, index) = outputs["class_index"].try_extract_tensor::<i64>().unwrap();
    (probabilities, index.to_vec())
}

/// What a head-only file gives for embeddings: probabilities, and the outputs only some files have.
struct HeadOutputs {
    probabilities: Vec<f32>,
    novelty: Option<Vec<f32>>,
    labels: Option<Vec<bool>>,
}

fn run_head_only(model: &Path, embeddings: &Array2<f32>) -> HeadOutputs {
    let environment = headstart::runtime::environment(&Default::default()).unwrap();
    let mut session = ort::session::Session::builder(&environment)
        .unwrap()
        .commit_from_file(model)
        .unwrap();
    let shape = vec![embeddings.nrows() as i64, embeddings.ncols() as i64];
    let input = TensorRef::from_array_view((shape, embeddings.as_slice().unwrap())).unwrap();
    let outputs = session.run(ort::inputs!["embedding" => input]).unwrap();
    let floats = |name: &str| {
        outputs
            .get(name)
            .map(|v| v.try_extract_tensor::<f32>().unwrap().1.to_vec())
    };
    HeadOutputs {
        probabilities: floats("probabilities").unwrap(),
        novelty: floats("novelty"),
        labels: outputs
            .get("labels")
            .map(|v| v.try_extract_tensor::<bool>().unwrap().1.to_vec()),
    }
}

/// The ONNX project's checker (full) and strict shape inference accept every file.
fn assert_spec_clean(models: &[PathBuf]) {
    let output = python_reference("check_onnx.py")
        .args(models)
        .output()
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("ok"),
        "onnx.checker: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same file and inputs through Python's onnxruntime.
fn run_python(model: &Path, inputs: &[Input], scratch: &Path) -> (Array2<f32>, Vec<i64>) {
    // The npz writer has no uint8: pixels travel as int64, and the script casts to the input's type.
    let widened: Vec<Vec<i64>> = inputs
        .iter()
        .map(|input| match input {
            Input::U8(_, _, data) => data.iter().map(|&v| i64::from(v)).collect(),
            _ => Vec::new(),
        })
        .collect();
    let arrays: Vec<(&str, NpyArray)> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| match input {
            Input::F32(name, shape, data) => (
                *name,
                NpyArray::F32 {
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data,
                },
            ),
            Input::I64(name, shape, data) => (
                *name,
                NpyArray::I64 {
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data,
                },
            ),
            Input::U8(name, shape, _) => (
                *name,
                NpyArray::I64 {
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    data: &widened[i],
                },
            ),
        })
        .collect();
    let npz = scratch.join("inputs.npz");
    write_npz(&npz, &arrays).unwrap();
    let output = python_reference("run_exported.py")
        .arg(model)
        .arg(&npz)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(result["probabilities"].clone()).unwrap();
    let k = rows[0].len();
    let flat: Vec<f32> = rows.concat();
    (
        Array2::from_shape_vec((flat.len() / k, k), flat).unwrap(),
        serde_json::from_value(result["class_index"].clone()).unwrap(),
    )
}

fn assert_close(what: &str, got: &(Array2<f32>, Vec<i64>), expected: &Array2<f32>) {
    assert_eq!(got.0.dim(), expected.dim(), "{what}");
    let worst = (&got.0 - expected)
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("{what}: max |difference| {worst:.2e}");
    assert!(worst <= TOLERANCE, "{what}: max |difference| {worst}");
    for (row, &index) in expected.rows().into_iter().zip(&got.1) {
        let best = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(index as usize, best, "{what}: class_index");
    }
}

#[test]
fn image_bundles_export_whole_and_head_only_with_the_same_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = elpv_cells(dir.path(), 12);
    let images: Vec<_> = files
        .iter()
        .step_by(4)
        .map(|f| headstart::data::decode::open_image(f).unwrap())
        .collect();
    for head in ["logistic", "centroid", "knn", "gaussian-nb", "linear-svm"] {
        let bundle = dir.path().join(format!("{head}.hs"));
        headstart_ok(&[
            "train",
            data.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--head",
            head,
            "--grid",
            "0.1",
            "-q",
        ]);
        let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
        let expected = classifier.predict_images(&images).unwrap();

        let whole = dir.path().join(format!("{head}.onnx"));
        let stdout = headstart_ok(&[
            "export",
            bundle.to_str().unwrap(),
            "-o",
            whole.to_str().unwrap(),
        ]);
        assert!(stdout.contains("classes defective, functional"), "{stdout}");
        let mut backbone = ImageBackbone::open(
            &BackboneRef::Zoo("efficientnet-lite0".into()),
            &Default::default(),
        )
        .unwrap();
        let preprocess = backbone.preprocess().clone();
        let mut pixels = vec![0.0f32; images.len() * preprocess.tensor_len()];
        for (image, slot) in images
            .iter()
            .zip(pixels.chunks_exact_mut(preprocess.tensor_len()))
        {
            preprocess.apply(image, slot);
        }
        let shape = preprocess.batch_shape(images.len()).to_vec();
        let input = [Input::F32(backbone.input_name(), shape, &pixels)];
        assert_close(
            &format!("{head} whole, ort"),
            &run_ort(&whole, &input),
            &expected,
        );
        assert_close(
            &format!("{head} whole, Python onnxruntime"),
            &run_python(&whole, &input, dir.path()),
            &expected,
        );

        // --raw-input: 8-bit RGB pixels in, headstart's resize and crop built into the graph. At the cells'
        // own 300x300, and at the default size (the model's 224x224; the same cells shrunk to it first).
        let small: Vec<_> = images
            .iter()
            .map(|i| i.resize_exact(224, 224, image::imageops::FilterType::Triangle))
            .collect();
        for (size, batch) in [(Some("300"), &images), (None, &small)] {
            let raw = dir.path().join(format!("{head}-raw.onnx"));
            let mut args = vec![
                "export",
                bundle.to_str().unwrap(),
                "-o",
                raw.to_str().unwrap(),
                "--raw-input",
            ];
            if let Some(size) = size {
                args.extend(["--raw-size", size]);
            }
            let stdout = headstart_ok(&args);
            assert!(stdout.contains("inputs pixels;"), "{stdout}");
            let expected = classifier.predict_images(batch).unwrap();
            let (h, w) = (batch[0].height() as i64, batch[0].width() as i64);
            let bytes: Vec<u8> = batch.iter().flat_map(|i| i.to_rgb8().into_raw()).collect();
            let input = [Input::U8(PIXELS, vec![batch.len() as i64, h, w, 3], &bytes)];
            let what = format!("{head} raw input {h}x{w}");
            assert_close(&format!("{what}, ort"), &run_ort(&raw, &input), &expected);
            assert_close(
                &format!("{what}, Python onnxruntime"),
                &run_python(&raw, &input, dir.path()),
                &expected,
            );
            // The preprocessing nodes come before the backbone's, as the ONNX spec requires.
            assert_spec_clean(&[raw]);
        }

        let head_file = dir.path().join(format!("{head}-head.onnx"));
        headstart_ok(&[
            "export",
            bundle.to_str().unwrap(),
            "-o",
            head_file.to_str().unwrap(),
            "--head-only",
        ]);
        // Tiny, but for kNN, which carries its training embeddings.
        let size = std::fs::metadata(&head_file).unwrap().len();
        if head == "knn" {
            assert!(size > 1280 * 4 * 10, "{size} bytes");
        } else {
            assert!(size < 64 * 1024, "{size} bytes");
        }
        let embeddings = backbone.embed(&images).unwrap();
        let values: Vec<f32> = embeddings.iter().copied().collect();
        let input = [Input::F32(
            "embedding",
            vec![images.len() as i64, embeddings.ncols() as i64],
            &values,
        )];
        assert_close(
            &format!("{head} head-only, ort"),
            &run_ort(&head_file, &input),
            &expected,
        );
        assert_close(
            &format!("{head} head-only, Python onnxruntime"),
            &run_python(&head_file, &input, dir.path()),
            &expected,
        );
        assert_spec_clean(&[whole, head_file]);
    }
}

#[test]
fn text_bundles_export_whole_and_head_only_with_the_same_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let table = common::vader_table(dir.path(), 60);
    let bundle = dir.path().join("sentiment.hs");
    headstart_ok(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--grid",
        "0.1",
        "-q",
    ]);
    let long = "An overlong, overstuffed, overwrought film. ".repeat(40);
    let texts = [
        "A wonderful, moving film.",
        "Dull and far too long.",
        "It is a movie.",
        long.as_str(),
    ];
    let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
    let expected = classifier.predict_texts(&texts).unwrap();

    let whole = dir.path().join("sentiment.onnx");
    let stdout = headstart_ok(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        whole.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("input_ids, attention_mask, token_type_ids"),
        "{stdout}"
    );
    // Token ids as a device would make them: the same tokenizer, truncated, padded to the longest.
    let mut backbone = TextBackbone::open(
        &BackboneRef::Zoo("all-minilm-l6-v2".into()),
        &Default::default(),
    )
    .unwrap();
    let tokens = backbone.tokenize(&texts).unwrap();
    let encodings: Vec<&tokenizers::Encoding> = tokens.iter().map(|t| &t.encoding).collect();
    let longest = encodings.iter().map(|e| e.len()).max().unwrap();
    let padded = |get: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
        encodings
            .iter()
            .flat_map(|e| {
                let mut row: Vec<i64> = get(e).iter().map(|&v| i64::from(v)).collect();
                row.resize(longest, 0);
                row
            })
            .collect()
    };
    let (ids, mask, types) = (
        padded(tokenizers::Encoding::get_ids),
        padded(tokenizers::Encoding::get_attention_mask),
        padded(tokenizers::Encoding::get_type_ids),
    );
    let shape = vec![texts.len() as i64, longest as i64];
    let input = [
        Input::I64("input_ids", shape.clone(), &ids),
        Input::I64("attention_mask", shape.clone(), &mask),
        Input::I64("token_type_ids", shape, &types),
    ];
    assert_close("text whole, ort", &run_ort(&whole, &input), &expected);
    assert_close(
        "text whole, Python onnxruntime",
        &run_python(&whole, &input, dir.path()),
        &expected,
    );

    // Two tensors joined (an earlier layer's tokens and the output's, each mean-pooled with the mask, then
    // normalised together): the file pools and joins them as predict does.
    let joined = dir.path().join("joined.hs");
    let joined_file = dir.path().join("joined.onnx");
    headstart_ok(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        joined.to_str().unwrap(),
        "--grid",
        "0.1",
        "--layer",
        "layer_norm_10",
        "--layer",
        "last_hidden_state",
        "-q",
    ]);
    headstart_ok(&[
        "export",
        joined.to_str().unwrap(),
        "-o",
        joined_file.to_str().unwrap(),
    ]);
    let mut classifier = Classifier::load(&joined, &Default::default(), None).unwrap();
    let identity = &classifier.bundle.info.features.backbone;
    assert_eq!(identity.layer.as_deref(), Some("layer_norm_10"));
    assert_eq!(identity.joined, ["last_hidden_state"]);
    let joined_expected = classifier.predict_texts(&texts).unwrap();
    assert_close(
        "text, two layers joined, ort",
        &run_ort(&joined_file, &input),
        &joined_expected,
    );

    let head_file = dir.path().join("sentiment-head.onnx");
    headstart_ok(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        head_file.to_str().unwrap(),
        "--head-only",
    ]);
    // Text files take token ids: --raw-input is refused.
    let (code, _, stderr) = headstart(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        dir.path().join("raw.onnx").to_str().unwrap(),
        "--raw-input",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("raw pixel input is for image bundles"),
        "{stderr}"
    );

    let embeddings = backbone.embed(&texts).unwrap();
    let values: Vec<f32> = embeddings.iter().copied().collect();
    let input = [Input::F32(
        "embedding",
        vec![texts.len() as i64, 384],
        &values,
    )];
    assert_close(
        "text head-only, ort",
        &run_ort(&head_file, &input),
        &expected,
    );
    assert_close(
        "text head-only, Python onnxruntime",
        &run_python(&head_file, &input, dir.path()),
        &expected,
    );
}

#[test]
fn export_errors_are_clear_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 12);
    // A bundle trained on a copy of the backbone that is then removed.
    let model =
        headstart::zoo::onnx_path(&headstart::zoo::find("efficientnet-lite0").unwrap()).unwrap();
    let copy = dir.path().join("backbone.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let bundle = dir.path().join("cells.hs");
    headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--backbone",
        copy.to_str().unwrap(),
        "--grid",
        "0.1",
        "-q",
    ]);
    std::fs::remove_file(&copy).unwrap();
    let out = dir.path().join("cells.onnx");
    let (code, _, stderr) = headstart(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is not there") && stderr.contains("--backbone"),
        "{stderr}"
    );
    assert!(!out.exists());
    // Pointing at the backbone works; the head alone never needs it.
    headstart_ok(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--backbone",
        model.to_str().unwrap(),
    ]);

    // An output path that cannot be written: the old file stays as it was, no partial file appears.
    let before = std::fs::read(&out).unwrap();
    let blocked = out.join("inside-a-file.onnx");
    let (code, _, stderr) = headstart(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        blocked.to_str().unwrap(),
        "--head-only",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Nearest-neighbour resizing is not built into a --raw-input graph: a clear error, no file.
    let nearest = dir.path().join("nearest.hs");
    headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        nearest.to_str().unwrap(),
        "--interpolation",
        "nearest",
        "--grid",
        "0.1",
        "-q",
    ]);
    let raw_out = dir.path().join("nearest.onnx");
    let (code, _, stderr) = headstart(&[
        "export",
        nearest.to_str().unwrap(),
        "-o",
        raw_out.to_str().unwrap(),
        "--raw-input",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot build Nearest resizing"), "{stderr}");
    assert!(!raw_out.exists());
}

/// --raw-input through a tapped intermediate layer (4-D, pooled in the graph) and through a TensorFlow-layout
/// backbone (open-nsfw: BGR, NHWC, mean subtraction, its pooled layer tapped by the zoo).
#[test]
fn raw_input_covers_tapped_layers_and_bgr_nhwc_backbones() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = elpv_cells(dir.path(), 12);
    let images: Vec<_> = files
        .iter()
        .step_by(6)
        .map(|f| headstart::data::decode::open_image(f).unwrap())
        .collect();
    let bytes: Vec<u8> = images.iter().flat_map(|i| i.to_rgb8().into_raw()).collect();
    let input = [Input::U8(
        PIXELS,
        vec![images.len() as i64, 300, 300, 3],
        &bytes,
    )];
    // open-nsfw's opset 9 also takes the older forms of TopK and ReduceSum (kNN head).
    let cases: [(&str, &[&str]); 5] = [
        ("tapped", &["--layer", "block3"]),
        // Two taps of different shapes, each pooled, joined in the graph.
        (
            "joined",
            &["--layer", "block15", "--layer", "conv_head.conv"],
        ),
        // Whatever cross-validation chooses (a tap, a pair or the output) is what predict and export use.
        ("auto", &["--features", "auto"]),
        ("open-nsfw", &["--backbone", "open-nsfw"]),
        (
            "open-nsfw-knn",
            &["--backbone", "open-nsfw", "--head", "knn"],
        ),
    ];
    for (name, extra) in cases {
        let bundle = dir.path().join(format!("{name}.hs"));
        let mut args = vec![
            "train",
            data.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--grid",
            "0.1",
            "-q",
        ];
        args.extend_from_slice(extra);
        headstart_ok(&args);
        let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
        if name == "joined" {
            let identity = &classifier.bundle.info.features.backbone;
            assert_eq!(identity.layer.as_deref(), Some("block15"));
            assert_eq!(identity.joined, ["conv_head.conv"]);
        }
        let expected = classifier.predict_images(&images).unwrap();
        let raw = dir.path().join(format!("{name}.onnx"));
        headstart_ok(&[
            "export",
            bundle.to_str().unwrap(),
            "-o",
            raw.to_str().unwrap(),
            "--raw-input",
            "--raw-size",
            "300",
        ]);
        assert_close(
            &format!("{name} raw input, ort"),
            &run_ort(&raw, &input),
            &expected,
        );
        assert_close(
            &format!("{name} raw input, Python onnxruntime"),
            &run_python(&raw, &input, dir.path()),
            &expected,
        );
    }
}

/// Open-set rejection on real embeddings: trained on ELPV cells with `--open-set`, the bundle answers `unknown`
/// for photos (nothing like a solar cell) and keeps most unseen cells known; the exported file's `novelty`
/// output is the library's score.
#[test]
fn open_set_rejects_photos_and_exports_its_novelty_score() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 12);
    let bundle = dir.path().join("cells.hs");
    let stdout = headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--grid",
        "0.1",
        "--open-set",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["open_set"]["reference"], 24);
    assert!(report["open_set"]["false_rejection"].as_f64().unwrap() <= 0.05);
    assert_eq!(Bundle::load(&bundle).unwrap().info.format_version, 2);

    // Cells the head has not seen, and photos.
    let mut unseen = Vec::new();
    for class in ["defective", "functional"] {
        unseen.extend(elpv_class(class).into_iter().skip(12).take(20));
    }
    let photos = headstart::datasets::sample_photos().unwrap();
    let mut args = vec![
        "predict".to_string(),
        bundle.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(
        unseen
            .iter()
            .chain(&photos)
            .map(|p| p.display().to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = headstart_ok(&args);
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), unseen.len() + photos.len());
    let (cells, pictures) = predictions.split_at(unseen.len());
    for picture in pictures {
        assert_eq!(picture["novel"], true, "{picture}");
        assert_eq!(picture["label"], "unknown", "{picture}");
    }
    let novel_cells = cells.iter().filter(|c| c["novel"] == true).count();
    assert!(
        novel_cells * 4 <= cells.len(),
        "{novel_cells} of {} unseen cells are novel",
        cells.len()
    );

    // The head-only export scores novelty as the library does.
    let head_file = dir.path().join("cells-head.onnx");
    let (code, _, stderr) = headstart(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        head_file.to_str().unwrap(),
        "--head-only",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
    let images = headstart::Data::Images(headstart::data::files::from_paths(&unseen));
    let (set, _) = classifier
        .embed(&images, &Default::default(), &mut |_, _| {})
        .unwrap();
    let expected = classifier
        .bundle
        .novelty_scores(set.matrix())
        .unwrap()
        .unwrap();
    assert_spec_clean(std::slice::from_ref(&head_file));
    let outputs = run_head_only(&head_file, &set.matrix().to_owned());
    let novelty = outputs.novelty.unwrap();
    assert_eq!(novelty.len(), expected.len());
    for (got, want) in novelty.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "novelty {got} vs {want}");
    }

    // The library example answers the same way: `unknown` for the photos, a class for the cells.
    let example = classify_example();
    let output = std::process::Command::new(&example)
        .arg(&bundle)
        .arg(&unseen[0])
        .args(&photos)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(answers.len(), 1 + photos.len(), "{stdout}");
    // Photos are unknown for their novelty: their top probability is above the example's 60 % minimum.
    for (line, photo) in answers[1..].iter().zip(&photos) {
        let top = line
            .strip_prefix(&format!("{}: unknown [(", photo.display()))
            .and_then(|rest| rest.split([',', ')']).nth(1))
            .and_then(|p| p.trim().parse::<f32>().ok());
        assert!(top.is_some_and(|p| p >= 0.6), "{line}\n{stdout}");
    }
    assert!(
        answers[0].starts_with(&format!("{}: ", unseen[0].display())),
        "{stdout}"
    );
}

/// `examples/classify.rs` as `cargo test` builds it, beside the test programs.
fn classify_example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let example = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/classify");
    assert!(
        example.exists(),
        "{} is not built: `cargo test` builds the examples (or `cargo build --example classify`)",
        example.display()
    );
    example
}

/// Multi-label on real images: ELPV cells tagged with their cell type (`mono` or `poly`), and `defective` when
/// they are, in a `path,labels` table. Training reports cross-validated and held-out metrics per label, predict
/// answers every label at or above its threshold, and the head-only export gives the same probabilities and
/// labels.
#[test]
fn multi_label_images_train_predict_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let source = headstart::datasets::elpv().unwrap();
    let listing = std::fs::read_to_string(source.join("labels.csv")).unwrap();
    let mut taken = std::collections::HashMap::new();
    let mut table = String::from("path,labels\n");
    std::fs::create_dir_all(dir.path().join("cells")).unwrap();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [path, probability, kind] = fields.as_slice() else {
            continue;
        };
        let defective = probability.parse::<f32>().unwrap() >= 0.5;
        let count = taken.entry((kind.to_string(), defective)).or_insert(0);
        if *count == 15 {
            continue;
        }
        *count += 1;
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        std::fs::copy(source.join(path), dir.path().join("cells").join(&name)).unwrap();
        let tags = if defective {
            format!("{kind}|defective")
        } else {
            kind.to_string()
        };
        table.push_str(&format!("cells/{name},{tags}\n"));
    }
    let table_path = dir.path().join("tags.csv");
    std::fs::write(&table_path, table).unwrap();
    let bundle = dir.path().join("tags.hs");
    let stdout = headstart_ok(&[
        "train",
        table_path.to_str().unwrap(),
        "--multi-label",
        "--val-split",
        "0.25",
        "-o",
        bundle.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let train = &report["train"];
    let labels: Vec<&str> = train["cross_validated"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["defective", "mono", "poly"]);
    assert_eq!(train["thresholds"].as_array().unwrap().len(), 3);
    let validation = &report["validation"];
    assert_eq!(validation["samples"], 16);
    for key in ["macro_f1", "subset_accuracy"] {
        assert!(
            validation[key].as_f64().unwrap() > 0.5,
            "{key}: {validation}"
        );
    }
    assert!(
        validation["micro"]["f1"].as_f64().unwrap() > 0.7,
        "{validation}"
    );
    let loaded = Bundle::load(&bundle).unwrap();
    assert_eq!(loaded.info.training.head, headstart::HeadKind::MultiLabel);
    assert_eq!(loaded.info.format_version, 2);

    // predict: every label at or above its threshold, as the library computes them.
    let cells: Vec<PathBuf> = {
        let mut all: Vec<PathBuf> = std::fs::read_dir(dir.path().join("cells"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        all.sort();
        all.into_iter().step_by(6).collect()
    };
    let mut args = vec![
        "predict".to_string(),
        bundle.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(cells.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = headstart_ok(&args);
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
    let expected = classifier.predict_paths(&cells).unwrap();
    let head = loaded.head.multi_label().unwrap();
    let names = &loaded.info.class_names;
    for (prediction, row) in answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(head.labels(expected.view()))
    {
        let want: Vec<&str> = row.iter().map(|&l| names[l].as_str()).collect();
        let got: Vec<&str> = prediction["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{prediction}");
        // Exactly one cell type each.
        assert!(
            got.contains(&"mono") ^ got.contains(&"poly") || got.len() < 2,
            "{got:?}"
        );
    }

    // The head-only export: sigmoid probabilities and the labels at or above their thresholds.
    let head_file = dir.path().join("tags-head.onnx");
    headstart_ok(&[
        "export",
        bundle.to_str().unwrap(),
        "-o",
        head_file.to_str().unwrap(),
        "--head-only",
    ]);
    let images = headstart::Data::Images(headstart::data::files::from_paths(&cells));
    let (set, _) = classifier
        .embed(&images, &Default::default(), &mut |_, _| {})
        .unwrap();
    assert_spec_clean(std::slice::from_ref(&head_file));
    let outputs = run_head_only(&head_file, &set.matrix().to_owned());
    let (probabilities, flags) = (outputs.probabilities, outputs.labels.unwrap());
    for (got, want) in probabilities.iter().zip(expected.iter()) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    let library: Vec<bool> = expected
        .indexed_iter()
        .map(|((_, k), &p)| p >= head.thresholds[k])
        .collect();
    assert_eq!(flags, library);
}

/// int8: a bundle trained with `--precision int8` predicts and exports with the same int8 arithmetic (the
/// file is its QDQ backbone plus the head, a quarter of the float file's size); a float bundle exported with
/// `--int8` is calibrated on the folder given. Every file passes the ONNX checker.
#[test]
fn int8_bundles_predict_and_export_the_same_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = elpv_cells(dir.path(), 12);
    // Cells the head has not seen, so probabilities are not all 0 and 1.
    let images: Vec<_> = ["defective", "functional"]
        .iter()
        .flat_map(|class| elpv_class(class).into_iter().skip(12).step_by(7).take(4))
        .map(|f| headstart::data::decode::open_image(&f).unwrap())
        .collect();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (int8, float) = (path("int8.hs"), path("float.hs"));
    train_small_bundle(&data, Path::new(&int8), "int8");
    train_small_bundle(&data, Path::new(&float), "fp32");
    let info = Bundle::load(Path::new(&int8)).unwrap().info;
    let calibration = info
        .features
        .backbone
        .calibration
        .expect("an int8 bundle keeps its ranges");
    assert_eq!(calibration.inputs, 16);
    assert!(calibration.ranges.iter().any(|r| !r.means.is_empty()));

    // predict follows the bundle's precision: no flag needed, and int8 differs from float.
    let mut int8_classifier =
        Classifier::load(Path::new(&int8), &Default::default(), None).unwrap();
    let expected = int8_classifier.predict_images(&images).unwrap();
    assert!(
        expected.iter().any(|p| (0.05..0.95).contains(p)),
        "{expected:?}"
    );
    let mut float_classifier =
        Classifier::load(Path::new(&float), &Default::default(), None).unwrap();
    let float_expected = float_classifier.predict_images(&images).unwrap();

    let export = |bundle: &str, out: &str, extra: &[&str]| {
        headstart_ok(&[&["export", bundle, "-o", out], extra].concat())
    };
    let (whole, raw, float_whole, float_int8) = (
        path("int8.onnx"),
        path("int8-raw.onnx"),
        path("float.onnx"),
        path("float-int8.onnx"),
    );
    export(&int8, &whole, &[]);
    export(&int8, &raw, &["--raw-input", "--raw-size", "300"]);
    export(&float, &float_whole, &[]);
    export(
        &float,
        &float_int8,
        &[
            "--int8",
            "--calibration-data",
            data.to_str().unwrap(),
            "--calibration",
            "16",
        ],
    );
    let size = |p: &str| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&whole) / size(&float_whole);
    eprintln!("int8 file {:.0} bytes, {ratio:.3} of float", size(&whole));
    assert!(ratio <= 0.35, "int8 file is {ratio:.3} of the float one");
    assert!(size(&float_int8) / size(&float_whole) <= 0.35);

    let backbone = ImageBackbone::open(
        &BackboneRef::Zoo("efficientnet-lite0".into()),
        &Default::default(),
    )
    .unwrap();
    let preprocess = backbone.preprocess().clone();
    let mut tensor = vec![0.0f32; images.len() * preprocess.tensor_len()];
    for (image, slot) in images
        .iter()
        .zip(tensor.chunks_exact_mut(preprocess.tensor_len()))
    {
        preprocess.apply(image, slot);
    }
    let shape = preprocess.batch_shape(images.len()).to_vec();
    let input = [Input::F32(backbone.input_name(), shape, &tensor)];
    assert_close(
        "int8 whole, ort",
        &run_ort(Path::new(&whole), &input),
        &expected,
    );
    assert_close(
        "int8 whole, Python onnxruntime",
        &run_python(Path::new(&whole), &input, dir.path()),
        &expected,
    );
    let bytes: Vec<u8> = images.iter().flat_map(|i| i.to_rgb8().into_raw()).collect();
    let pixels = [Input::U8(
        PIXELS,
        vec![images.len() as i64, 300, 300, 3],
        &bytes,
    )];
    assert_close(
        "int8 raw input, ort",
        &run_ort(Path::new(&raw), &pixels),
        &expected,
    );

    // The float bundle's head on its int8 backbone: near the float file, not equal to it.
    let (near, _) = run_ort(Path::new(&float_int8), &input);
    let worst = (&near - &float_expected)
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("float bundle, int8 file: max |difference| from float {worst:.2e}");
    assert!(worst > 0.0 && worst < 0.2, "{worst}");
    assert_spec_clean(&[whole.into(), raw.into(), float_int8.into()]);

    // Precision mismatches are refused with what to do.
    let (code, _, stderr) = headstart(&["export", &float, "-o", &path("x.onnx"), "--int8"]);
    assert!(
        code != 0 && stderr.contains("--calibration-data"),
        "{stderr}"
    );
    let (code, _, stderr) = headstart(&[
        "predict",
        &float,
        files[0].to_str().unwrap(),
        "--precision",
        "int8",
    ]);
    assert!(
        code != 0 && stderr.contains("trained on float features"),
        "{stderr}"
    );
    let (code, _, stderr) =
        headstart(&["embed", files[0].to_str().unwrap(), "--precision", "int8"]);
    assert!(
        code != 0 && stderr.contains("calibrated on a data set"),
        "{stderr}"
    );
    assert!(!Path::new(&path("x.onnx")).exists());

    // An int8 .npz trains a bundle with its calibration, which predicts as the one trained from the folder.
    let npz = path("int8.npz");
    headstart_ok(&[
        "embed",
        data.to_str().unwrap(),
        "-o",
        &npz,
        "--precision",
        "int8",
        "--calibration",
        "16",
        "-q",
    ]);
    let from_npz = path("from-npz.hs");
    headstart_ok(&["train", &npz, "-o", &from_npz, "--grid", "0.0003", "-q"]);
    let again = Bundle::load(Path::new(&from_npz))
        .unwrap()
        .info
        .features
        .backbone;
    assert_eq!(again.calibration.as_ref(), Some(&calibration));
    let mut classifier = Classifier::load(Path::new(&from_npz), &Default::default(), None).unwrap();
    let probabilities = classifier.predict_images(&images).unwrap();
    let worst = (&probabilities - &expected)
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(worst <= TOLERANCE, "{worst}");
}

/// The fp32 `--raw-input` file runs in tract, a second runtime that is not ONNX Runtime (pure Rust, as on ARM
/// boards), with ONNX Runtime's probabilities to 1e-4 (2.4e-7 measured); so does the int8 file, to 1e-2.
#[test]
fn raw_input_files_run_in_tract_as_in_onnx_runtime() {
    use tract_onnx::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = elpv_cells(dir.path(), 12);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let cells: Vec<_> = files
        .iter()
        .step_by(5)
        .map(|f| headstart::data::decode::open_image(f).unwrap().to_rgb8())
        .collect();
    let (height, width) = (cells[0].height() as usize, cells[0].width() as usize);
    let pixels: Vec<u8> = cells.iter().flat_map(|c| c.as_raw().clone()).collect();
    let shape = [cells.len(), height, width, 3];
    // int8: tract's integer arithmetic rounds otherwise than ONNX Runtime's fused kernels (2.5e-3 measured).
    for (precision, tolerance) in [("fp32", TOLERANCE), ("int8", 1e-2)] {
        let (bundle, model) = (
            path(&format!("{precision}.hs")),
            path(&format!("{precision}.onnx")),
        );
        train_small_bundle(&data, Path::new(&bundle), precision);
        headstart_ok(&[
            "export",
            &bundle,
            "-o",
            &model,
            "--raw-input",
            "--raw-size",
            "300",
        ]);
        let (expected, _) = run_ort(
            Path::new(&model),
            &[Input::U8(
                PIXELS,
                shape.iter().map(|&d| d as i64).collect(),
                &pixels,
            )],
        );
        let runnable = tract_onnx::onnx()
            .model_for_path(&model)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap_or_else(|e| panic!("tract cannot run the {precision} file: {e:?}"));
        let input: Tensor = tract_ndarray::Array4::from_shape_vec(shape, pixels.clone())
            .unwrap()
            .into();
        let outputs = runnable.run(tvec!(input.into())).unwrap();
        let probabilities = outputs[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(probabilities.shape(), expected.shape());
        let worst = probabilities
            .iter()
            .zip(expected.iter())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!(
            "{precision} raw input, tract against ONNX Runtime: max |difference| {worst:.2e}"
        );
        assert!(
            expected.iter().any(|p| (0.02..0.98).contains(p)),
            "{expected:?}"
        );
        assert!(worst <= tolerance, "{precision}: tract differs by {worst}");
    }
}
