//! Bad inputs through the `headstart` binary: each is one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::onnx_proto::{FLOAT, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use common::{headstart, headstart_ok};
use headstart::backbone::{BackboneIdentity, BackboneRef, Features, InputSpec};
use headstart::bundle::Bundle;
use headstart::embeddings::EmbeddedSet;
use headstart::embeddings::npz::{NpyArray, NpyData, read_npz, write_npz};
use headstart::home::RegistryFile;
use prost::Message;

/// Runs a command that must fail, and returns its one error line.
fn fails(args: &[&str]) -> String {
    let (code, _, stderr) = headstart(args);
    assert_eq!(
        code, 1,
        "{args:?} should fail with exit 1; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?} should print one error line: {stderr}"
    );
    assert!(!stderr.lines().last().unwrap_or("").is_empty());
    errors[0].to_string()
}

fn efficientnet_path() -> PathBuf {
    headstart::zoo::onnx_path(&headstart::zoo::find("efficientnet-lite0").unwrap()).unwrap()
}

fn sample(name: &str) -> String {
    let photos = headstart::datasets::sample_photos().unwrap();
    photos
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn missing_model_file() {
    let err = fails(&["inspect", "/no/such/model.onnx"]);
    assert!(
        err.contains("/no/such/model.onnx") && err.contains("no such file"),
        "{err}"
    );
    let err = fails(&[
        "embed",
        "--backbone",
        "/no/such/model.onnx",
        &sample("coffee.png"),
    ]);
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn corrupt_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(efficientnet_path()).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"definitely not a protobuf \xff\xfe model").unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    for path in [&truncated, &garbage, &empty] {
        let path = path.to_str().unwrap();
        let err = fails(&["inspect", path]);
        assert!(
            err.contains(path) && err.contains("not a valid ONNX model"),
            "{err}"
        );
        let err = fails(&["embed", "--backbone", path, &sample("coffee.png")]);
        assert!(err.contains("not a valid ONNX model"), "{err}");
    }
}

#[test]
fn output_or_layer_that_does_not_exist() {
    let coffee = sample("coffee.png");
    let err = fails(&["embed", "--output", "nope", &coffee]);
    assert!(
        err.contains("no tensor named 'nope'") && err.contains("inspect"),
        "{err}"
    );
    let err = fails(&["embed", "--layer", "block", &coffee]);
    assert!(
        err.contains("no tensor named 'block'")
            && err.contains("similar:")
            && err.contains("block0"),
        "{err}"
    );
}

#[test]
fn models_whose_input_is_not_an_image() {
    let coffee = sample("coffee.png");
    let err = fails(&["embed", "--backbone", "all-minilm-l6-v2", &coffee]);
    assert!(
        err.contains("3 inputs") && err.contains("text model"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let vector_model = dir.path().join("vector.onnx");
    let graph = GraphProto {
        name: "vector".into(),
        node: vec![NodeProto::new("Relu", &["x"], &["y"])],
        input: vec![ValueInfoProto::tensor("x", FLOAT, &[None, Some(10)])],
        output: vec![ValueInfoProto::tensor("y", FLOAT, &[None, Some(10)])],
        ..Default::default()
    };
    std::fs::write(&vector_model, ModelProto::new(graph, 13).encode_to_vec()).unwrap();
    let err = fails(&[
        "embed",
        "--backbone",
        vector_model.to_str().unwrap(),
        &coffee,
    ]);
    assert!(
        err.contains("not an image") && err.contains("[N,3,H,W]"),
        "{err}"
    );
}

#[test]
fn runtime_that_is_too_old_or_missing() {
    let home = headstart::home::home().unwrap();
    let old = home.join("test-runtimes").join("libonnxruntime.so.1.20.1");
    let spec = RegistryFile {
        package: "onnxruntime==1.20.1".into(),
        file: "onnxruntime/capi/libonnxruntime.so.1.20.1".into(),
        sha256: "be3dd32e78f6906fd4fa6208dbd296031fa1c3ffb42b40f706cf68d3de269f2b".into(),
        platform: Some("manylinux_2_28_x86_64".into()),
    };
    headstart::home::ensure(&spec, &old).unwrap();
    let model = efficientnet_path();
    let err = fails(&[
        "inspect",
        model.to_str().unwrap(),
        "--ort-lib",
        old.to_str().unwrap(),
    ]);
    assert!(
        err.contains("1.20.1") && err.contains("needs 1.22 or newer"),
        "{err}"
    );

    let err = fails(&[
        "inspect",
        model.to_str().unwrap(),
        "--ort-lib",
        "/no/such/libonnxruntime.so",
    ]);
    assert!(err.contains("does not exist"), "{err}");

    let not_a_runtime = Path::new(env!("CARGO_BIN_EXE_headstart"));
    let err = fails(&[
        "inspect",
        model.to_str().unwrap(),
        "--ort-lib",
        not_a_runtime.to_str().unwrap(),
    ]);
    assert!(err.contains("ONNX Runtime"), "{err}");
}

#[test]
fn cuda_is_refused_with_the_reason() {
    let model = efficientnet_path();
    let (code, _, stderr) = headstart(&["inspect", model.to_str().unwrap(), "--device", "cuda"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--device cuda:") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn inspect_and_embed_work() {
    let model = efficientnet_path();
    let stdout = headstart_ok(&["inspect", model.to_str().unwrap(), "--layers"]);
    assert!(stdout.contains("ai.onnx 13"), "{stdout}");
    assert!(
        stdout.contains("image: Tensor<f32>(batch, 3, 224, 224)") || stdout.contains("image: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("features") && stdout.contains("logits") && stdout.contains("block15"),
        "{stdout}"
    );

    let stdout = headstart_ok(&["embed", &sample("coffee.png"), "--threads", "1"]);
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["embedding"].as_array().unwrap().len(), 1280);

    let stdout = headstart_ok(&["embed", "--text", "hello world", "good morning"]);
    assert_eq!(stdout.lines().count(), 2);
}

/// A small labelled set of made-up embeddings, as `headstart embed` would write it for `backbone`.
fn synthetic_set(backbone: &str) -> EmbeddedSet {
    let (rows, dim) = (24, 8);
    let labels: Vec<usize> = (0..rows).map(|i| i % 2).collect();
    let embeddings = (0..rows * dim)
        .map(|i| {
            let (row, column) = (i / dim, i % dim);
            let sign = if labels[row] == 0 { -1.0 } else { 1.0 };
            sign * (1.0 + column as f32 * 0.1) + (row as f32 * 0.37).sin() * 0.2
        })
        .collect();
    EmbeddedSet {
        dim,
        embeddings,
        labels: Some(labels),
        class_names: vec!["cat".into(), "dog".into()],
        paths: (0..rows).map(|i| format!("pets/{i}.jpg")).collect(),
        augmented: vec![false; rows],
        features: Features {
            source: BackboneRef::parse(backbone),
            backbone: BackboneIdentity {
                name: backbone.into(),
                sha256: format!(
                    "{:0>64}",
                    backbone
                        .bytes()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
                output: "features".into(),
                layer: None,
                joined: Vec::new(),
                pooling: Default::default(),
                normalize: true,
                precision: Default::default(),
                calibration: None,
            },
            input: InputSpec::Image(Default::default()),
        },
    }
}

/// The bad files of a user's own making: each is refused with one line, a non-zero exit and no output.
#[test]
fn bad_bundles_and_embedding_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    synthetic_set("net-a")
        .write_npz(Path::new(&path("a.npz")))
        .unwrap();
    synthetic_set("net-b")
        .write_npz(Path::new(&path("b.npz")))
        .unwrap();
    headstart_ok(&["train", &path("a.npz"), "-o", &path("a.hs"), "-q"]);

    // A bundle written by a newer headstart.
    let mut future = Bundle::load(Path::new(&path("a.hs"))).unwrap();
    future.info.format_version = headstart::bundle::FORMAT_VERSION + 1;
    future.save(Path::new(&path("future.hs"))).unwrap();
    let err = fails(&["eval", &path("future.hs"), &path("a.npz")]);
    assert!(
        err.contains("newer headstart") && err.contains("upgrade"),
        "{err}"
    );

    // A bundle used with another backbone's embeddings.
    let err = fails(&["eval", &path("a.hs"), &path("b.npz")]);
    assert!(
        err.contains("net-a") && err.contains("net-b") && err.contains("same backbone"),
        "{err}"
    );

    // Embeddings with NaN or Inf: training refuses them rather than fitting garbage.
    for (name, value) in [("nan.npz", f32::NAN), ("inf.npz", f32::INFINITY)] {
        let mut set = synthetic_set("net-a");
        set.embeddings[5 * set.dim + 3] = value;
        set.write_npz(Path::new(&path(name))).unwrap();
        let err = fails(&["train", &path(name), "-o", &path("nan.hs")]);
        assert!(
            err.contains(name) && err.contains("row 5 contains NaN or Inf"),
            "{err}"
        );
        assert!(!Path::new(&path("nan.hs")).exists());
    }

    // An .npz whose arrays disagree in length.
    let set = synthetic_set("net-a");
    let mut arrays: Vec<(String, NpyData)> = read_npz(Path::new(&path("a.npz"))).unwrap();
    for (name, data) in &mut arrays {
        if name == "labels" {
            *data = NpyData::I64 {
                shape: vec![set.rows() - 1],
                data: (1..set.rows()).map(|i| (i % 2) as i64).collect(),
            };
        }
    }
    let as_written: Vec<(&str, NpyArray)> = arrays
        .iter()
        .map(|(name, data)| (name.as_str(), as_array(data)))
        .collect();
    write_npz(Path::new(&path("short.npz")), &as_written).unwrap();
    let err = fails(&["train", &path("short.npz"), "-o", &path("short.hs")]);
    assert!(
        err.contains("mismatched lengths: 24 embeddings, 23 labels"),
        "{err}"
    );
    assert!(!Path::new(&path("short.hs")).exists());

    // A text table without the label column.
    std::fs::write(path("reviews.csv"), "review,stars\ngreat,5\nawful,1\n").unwrap();
    let err = fails(&["train", &path("reviews.csv"), "-o", &path("text.hs")]);
    assert!(
        err.contains("no column 'text'") && err.contains("--text-column"),
        "{err}"
    );
    let err = fails(&[
        "train",
        &path("reviews.csv"),
        "-o",
        &path("text.hs"),
        "--text-column",
        "review",
    ]);
    assert!(
        err.contains("no column 'label'") && err.contains("--label-column"),
        "{err}"
    );
}

fn as_array(data: &NpyData) -> NpyArray<'_> {
    match data {
        NpyData::F32 { shape, data } => NpyArray::F32 {
            shape: shape.clone(),
            data,
        },
        NpyData::I64 { shape, data } => NpyArray::I64 {
            shape: shape.clone(),
            data,
        },
        NpyData::Bool(data) => NpyArray::Bool(data),
        NpyData::Strings { shape, data } if shape.is_empty() => NpyArray::Str(&data[0]),
        NpyData::Strings { data, .. } => NpyArray::Strings(data),
    }
}

/// Output piped into a reader that stops early (`| head`) ends the process quietly, not with a panic.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(["embed", "--text", "one", "two", "three"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}
