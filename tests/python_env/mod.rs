//! The Python package in a virtual environment of its own, for tests/python.rs and benches/python.rs: the
//! requirements of python/tests/requirements.txt from PyPI, and the wheel maturin builds from python/.
// Each user compiles its own copy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the environment and wheels live: inside the target folder, reused while the requirements stay.
pub fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("python")
}

/// The environment's python with the wheel built by `profile_args` (`[]` for the dev profile, `["--release"]`)
/// installed; the environment is made first if it is missing or out of date.
pub fn python_with_wheel(profile_args: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = work_dir();
    let python = environment(root, &work.join("venv"));
    let wheel = build_wheel(
        root,
        &work.join("wheels"),
        &work.join("venv/bin/maturin"),
        profile_args,
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--force-reinstall", "--no-deps"])
        .arg(&wheel));
    python
}

/// A virtual environment with python/tests/requirements.txt installed; reused while that file is unchanged.
pub fn environment(root: &Path, venv: &Path) -> PathBuf {
    let requirements = root.join("python/tests/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let installed = venv.join("requirements.installed");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&installed).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(venv);
        run(Command::new(headstart::home::python())
            .args(["-m", "venv"])
            .arg(venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements));
        std::fs::write(&installed, wanted).unwrap();
    }
    python
}

/// Builds the wheel with the cargo running this test, into the same target folder (dependencies are already
/// built there), and returns its path.
pub fn build_wheel(root: &Path, out: &Path, maturin: &Path, profile_args: &[&str]) -> PathBuf {
    let _ = std::fs::remove_dir_all(out);
    let cargo = Path::new(env!("CARGO"));
    let path = std::env::join_paths(cargo.parent().into_iter().map(Path::to_path_buf).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    run(Command::new(maturin)
        .args(["build", "--strip"])
        .args(profile_args)
        .arg("--manifest-path")
        .arg(root.join("python/Cargo.toml"))
        .arg("--out")
        .arg(out)
        .env("PATH", path));
    let wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel expected in {}", out.display());
    wheels[0].clone()
}

/// Runs `command`; a failure fails the test with what it printed.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
