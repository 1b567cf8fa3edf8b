//! Helpers shared by the integration tests. Every test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use image::{DynamicImage, ImageFormat};

/// Runs the `headstart` binary; returns its exit code (-1 if killed), stdout and stderr.
pub fn headstart(args: &[&str]) -> (i32, String, String) {
    headstart_with_stdin(args, None)
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
    let site = headstart::fetch::python_packages(
        "python-reference",
        "numpy, onnxruntime, tokenizers",
        &[
            &format!("onnxruntime=={}", headstart::runtime::PINNED_VERSION),
            "tokenizers",
            "numpy",
        ],
    )
    .unwrap();
    let mut command = Command::new(headstart::fetch::python());
    command.envs(site.iter().map(|p| ("PYTHONPATH", p))).arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(script),
    );
    command
}
