//! The edge proof on ARM: `examples/edge.rs` cross-compiled for aarch64-unknown-linux-gnu (Debian's cross gcc and
//! arm64 libc), run under qemu-aarch64 (Debian's qemu-user) with ONNX Runtime's aarch64 library from PyPI's
//! manylinux aarch64 wheel (sha256-pinned), on exported fp32 and int8 `--raw-input` files. Its answers are
//! ONNX Runtime's on x86 for the same files and pixels: the same top class, and probabilities within 1e-4 for
//! fp32 (1e-6 measured) and 1e-2 for int8 (4.8e-3 measured: ARM's integer kernels round otherwise than x86's
//! VNNI ones). Missing tools are installed with apt-get and rustup.
//!
//! ONNX Runtime reads the CPU's description (pytorch/cpuinfo) from /proc/cpuinfo, which qemu-user leaves as
//! the x86 host's; it crashes on that. So qemu runs in a private mount namespace (`unshare`) where
//! /proc/cpuinfo is an ARM one (Cortex-A72 cores, as on a Raspberry Pi 4): emulation, not a device's speed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{headstart_ok, train_small_bundle};
use headstart::home::RegistryFile;
use ndarray::Array2;
use ort::value::TensorRef;

const TARGET: &str = "aarch64-unknown-linux-gnu";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const PACKAGES: &[&str] = &[
    "qemu-user",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "libstdc++6-arm64-cross",
];
const FLOAT_TOLERANCE: f32 = 1e-4;
const INT8_TOLERANCE: f32 = 1e-2;

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tools_present() -> bool {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    found("qemu-aarch64")
        && found("aarch64-linux-gnu-gcc")
        && Path::new(SYSROOT).join("lib/libstdc++.so.6").exists()
}

/// Debian's cross toolchain and qemu, and Rust's aarch64 standard library.
fn ensure_tools() {
    if !tools_present() {
        if !Command::new("apt-cache")
            .args(["show", PACKAGES[0]])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            run(Command::new("apt-get").args(["update", "-qq"]));
        }
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"));
    }
    run(Command::new("rustup").args(["target", "add", TARGET]));
}

/// `examples/edge.rs` built for aarch64 (its own package, so nothing of headstart's training side is built).
fn cross_build_edge() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target/aarch64");
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "-q", "-p", "headstart-edge", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        ));
    let binary = target_dir.join(TARGET).join("debug/edge");
    // ELF's e_machine (bytes 18-19, little-endian): 183 is AArch64.
    let header = std::fs::read(&binary).unwrap();
    assert_eq!(
        (&header[..4], u16::from_le_bytes([header[18], header[19]])),
        (&b"\x7fELF"[..], 183),
        "{} is not an aarch64 program",
        binary.display()
    );
    binary
}

/// ONNX Runtime's aarch64 library, from the wheel ONNX Runtime publishes for it.
fn aarch64_runtime() -> PathBuf {
    let version = headstart::runtime::PINNED_VERSION;
    let spec = RegistryFile {
        package: format!("onnxruntime=={version}"),
        file: format!("onnxruntime/capi/libonnxruntime.so.{version}"),
        sha256: "8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467".into(),
        platform: Some("manylinux_2_28_aarch64".into()),
    };
    let dest = headstart::home::home()
        .unwrap()
        .join("runtime/linux-aarch64")
        .join(spec.file_name());
    headstart::home::ensure(&spec, &dest).unwrap();
    dest
}

/// A /proc/cpuinfo of Cortex-A72 cores, as many as this machine has (cpuinfo checks them against /sys).
fn arm_cpuinfo(dir: &Path) -> PathBuf {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut text = String::new();
    for core in 0..cores {
        text += &format!(
            "processor\t: {core}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n\
             CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n\
             CPU revision\t: 3\n\n"
        );
    }
    text += "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B\n";
    let path = dir.join("cpuinfo");
    std::fs::write(&path, text).unwrap();
    path
}

/// The edge program under qemu: (image, class, probability) lines, and the per-image milliseconds it reports.
fn run_on_arm(
    edge: &Path,
    runtime: &Path,
    cpuinfo: &Path,
    model: &Path,
    images: &[PathBuf],
) -> (Vec<Vec<f32>>, Vec<f64>) {
    let script = "mount --bind \"$1\" /proc/cpuinfo && shift && exec qemu-aarch64 -L \"$@\"";
    let output = Command::new("unshare")
        .args(["--mount", "--fork", "sh", "-c", script, "sh"])
        .arg(cpuinfo)
        .arg(SYSROOT)
        .arg(edge)
        .arg(model)
        .args(images)
        .env("ORT_DYLIB_PATH", runtime)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "qemu-aarch64: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Rows in class order (defective, functional) per image.
    let probabilities = images
        .iter()
        .map(|image| {
            let mut row: Vec<(String, f32)> = stdout
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split('\t');
                    let (path, class, p) = (fields.next()?, fields.next()?, fields.next()?);
                    (Path::new(path) == image.as_path())
                        .then(|| (class.to_string(), p.parse().unwrap()))
                })
                .collect();
            row.sort_by(|a, b| a.0.cmp(&b.0));
            row.into_iter().map(|(_, p)| p).collect()
        })
        .collect();
    let milliseconds = stderr
        .lines()
        .filter_map(|line| {
            line.split("inference ")
                .nth(1)?
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .collect();
    (probabilities, milliseconds)
}

/// The same file and pixels through ONNX Runtime on this machine.
fn run_on_x86(model: &Path, images: &[PathBuf]) -> Array2<f32> {
    let environment = headstart::runtime::environment(&Default::default()).unwrap();
    let mut session = ort::session::Session::builder(&environment)
        .unwrap()
        .commit_from_file(model)
        .unwrap();
    let mut rows = Vec::new();
    for image in images {
        let rgb = image::open(image).unwrap().to_rgb8();
        let (w, h) = rgb.dimensions();
        let pixels = TensorRef::from_array_view((
            [1usize, h as usize, w as usize, 3],
            rgb.as_raw().as_slice(),
        ))
        .unwrap();
        let outputs = session.run(ort::inputs!["pixels" => pixels]).unwrap();
        let (_, p) = outputs["probabilities"]
            .try_extract_tensor::<f32>()
            .unwrap();
        rows.extend_from_slice(p);
    }
    Array2::from_shape_vec((images.len(), rows.len() / images.len()), rows).unwrap()
}

#[test]
fn exported_fp32_and_int8_files_run_on_aarch64_as_on_x86() {
    ensure_tools();
    let edge = cross_build_edge();
    let runtime = aarch64_runtime();
    let dir = tempfile::tempdir().unwrap();
    let cpuinfo = arm_cpuinfo(dir.path());

    // 12 cells per class to train on; 3 others per class, at the model's 224x224, to classify.
    let data = dir.path().join("cells");
    let mut images = Vec::new();
    for class in ["defective", "functional"] {
        let entries = common::elpv_class(class);
        std::fs::create_dir_all(data.join(class)).unwrap();
        for file in &entries[..12] {
            std::fs::copy(file, data.join(class).join(file.file_name().unwrap())).unwrap();
        }
        for file in entries[12..].iter().step_by(11).take(3) {
            let cell = image::open(file).unwrap().resize_exact(
                224,
                224,
                image::imageops::FilterType::Triangle,
            );
            let path = dir.path().join(format!("{class}-{}.png", images.len()));
            cell.save(&path).unwrap();
            images.push(path);
        }
    }
    let mut report = Vec::new();
    for (precision, tolerance) in [("fp32", FLOAT_TOLERANCE), ("int8", INT8_TOLERANCE)] {
        let bundle = dir.path().join(format!("{precision}.hs"));
        let model = dir.path().join(format!("{precision}.onnx"));
        train_small_bundle(&data, &bundle, precision);
        headstart_ok(&[
            "export",
            bundle.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
            "--raw-input",
        ]);
        let x86 = run_on_x86(&model, &images);
        let (arm, milliseconds) = run_on_arm(&edge, &runtime, &cpuinfo, &model, &images);
        assert_eq!(arm.len(), images.len());
        let mut worst = 0.0f32;
        let top = |row: &[f32]| (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]));
        for (row, expected) in arm.iter().zip(x86.rows()) {
            assert_eq!(row.len(), expected.len(), "{precision}: {arm:?}");
            assert_eq!(top(row), top(&expected.to_vec()), "{precision}: top class");
            for (a, b) in row.iter().zip(expected) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(
            x86.iter().any(|p| (0.02..0.98).contains(p)),
            "{precision}: probabilities all near 0 or 1: {x86:?}"
        );
        report.push(format!(
            "{precision}: max |ARM - x86| {worst:.1e} over {} images; emulated ARM {:.0} ms per image (median)",
            images.len(),
            median(milliseconds)
        ));
        assert!(
            worst <= tolerance,
            "{precision}: ARM and x86 differ by {worst} (tolerance {tolerance})"
        );
    }
    eprintln!("{}", report.join("\n"));
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
