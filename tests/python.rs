//! The Python package, tested for real: maturin builds the wheel from python/, it is installed into a fresh
//! virtual environment (maturin, pytest, numpy, pyarrow and Ray from PyPI inside it), and pytest runs
//! python/tests against the `headstart` binary built here.

mod python_env;

use std::path::Path;
use std::process::Command;

#[test]
fn python_package_passes_its_tests() {
    let python = python_env::python_with_wheel(&[]);
    let output = python_env::run(
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "python/tests",
                "-q",
                "-p",
                "no:cacheprovider",
            ])
            .env("HEADSTART_CLI", env!("CARGO_BIN_EXE_headstart"))
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR"))),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
