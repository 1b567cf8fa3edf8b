//! Helpers shared by the integration tests. Every test binary compiles this module and uses part of it.
#![allow(dead_code)]

// The ONNX messages the library writes with, compiled into the tests too: they build hostile models by hand,
// and the messages are not part of the library's API.
#[path = "../../src/onnx/proto.rs"]
pub mod onnx_proto;
pub mod running;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use image::{DynamicImage, ImageFormat};

/// Runs the binary like [`headstart`] and also returns its peak resident memory in MiB, read from
/// `/proc/PID/status` (VmHWM) every few milliseconds until it exits.
pub fn headstart_peak_memory(args: &[&str]) -> (i32, String, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let high_water = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        peak_kib = peak_kib.max(high_water.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
        peak_kib / 1024,
    )
}

/// Runs the `headstart` binary; returns its exit code (-1 if killed), stdout and stderr.
pub fn headstart(args: &[&str]) -> (i32, String, String) {
    headstart_with_stdin(args, None)
}

/// Runs `headstart` and asserts it succeeded; returns its stdout.
pub fn headstart_ok(args: &[&str]) -> String {
    headstart_ok_with_stdin(args, None)
}

/// [`headstart_ok`] with `stdin` as its standard input.
pub fn headstart_ok_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> String {
    let (code, stdout, stderr) = headstart_with_stdin(args, stdin);
    assert_eq!(code, 0, "headstart {}: {stderr}", args.join(" "));
    stdout
}

/// Trains `bundle` on the class folders at `data` in `precision` (`fp32` or `int8`, calibrated on 16 images)
/// with a strongly regularised logistic head, so probabilities of unseen images are not all 0 and 1.
pub fn train_small_bundle(data: &Path, bundle: &Path, precision: &str) {
    headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--grid",
        "0.0003",
        "--precision",
        precision,
        "--calibration",
        "16",
        "-q",
    ]);
}

/// Runs `headstart ARGS` with `HEADSTART_HOME` set to `home`, asserts it succeeded and reads its JSON output.
pub fn headstart_json_in_home(home: &Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .env("HEADSTART_HOME", home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// [`headstart`] with `stdin` as its standard input (none: an empty one).
pub fn headstart_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(bytes), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(bytes).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// JPEG bytes with an EXIF orientation tag inserted after the start-of-image marker.
pub fn jpeg_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let mut tiff = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A command that runs `tests/data/{script}` with the reference Python packages (onnxruntime pinned to
/// headstart's version, tokenizers, numpy), installed into the cache when they are missing.
pub fn python_reference(script: &str) -> Command {
    let site = headstart::home::python_packages(
        "python-reference",
        "numpy, onnx, onnxruntime, tokenizers",
        &[
            &format!("onnxruntime=={}", headstart::runtime::PINNED_VERSION),
            "onnx==1.23.2",
            "tokenizers",
            "numpy",
        ],
    )
    .unwrap();
    let mut command = Command::new(headstart::home::python());
    command.envs(site.iter().map(|p| ("PYTHONPATH", p))).arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(script),
    );
    command
}

/// The ELPV cells of `class` ("defective" or "functional"), sorted by file name.
pub fn elpv_class(class: &str) -> Vec<PathBuf> {
    let source = headstart::datasets::elpv_by_defect().unwrap();
    let mut cells: Vec<PathBuf> = std::fs::read_dir(source.join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cells.sort();
    cells
}

/// The first `per_class` cells of each class, copied as class folders into `root/cells`; returns the folder and
/// the copies.
pub fn elpv_cells(root: &Path, per_class: usize) -> (PathBuf, Vec<PathBuf>) {
    let data = root.join("cells");
    let mut copies = Vec::new();
    for class in ["defective", "functional"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for file in elpv_class(class).into_iter().take(per_class) {
            let target = data.join(class).join(file.file_name().unwrap());
            std::fs::copy(&file, &target).unwrap();
            copies.push(target);
        }
    }
    (data, copies)
}

/// The first `per_class` negative and positive VADER movie snippets as a `.jsonl` table (`text`, `label`) in `dir`.
pub fn vader_table(dir: &Path, per_class: usize) -> PathBuf {
    let movies = headstart::data::texts::load_table(
        &headstart::datasets::vader_movies().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let mut lines = String::new();
    for label in 0..2 {
        for item in movies
            .items
            .iter()
            .filter(|i| i.label == Some(label))
            .take(per_class)
        {
            let row = serde_json::json!({"text": item.text, "label": movies.classes[label]});
            lines.push_str(&format!("{row}\n"));
        }
    }
    let table = dir.join("reviews.jsonl");
    std::fs::write(&table, lines).unwrap();
    table
}
