//! Shared by the benches: running a Python reference script from benches/, and medians of rounds.
// Each bench compiles its own copy and uses only part of it.
#![allow(dead_code)]

// The library's seeded generator, compiled into the benches too, so their data is the same on every machine
// without making it part of the library's API.
#[path = "../../src/rng.rs"]
pub mod rng;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Runs `benches/{script}` with `args` (installing `packages` into the cache when `imports` fail) and parses
/// the JSON it prints; the error is the script's last line of stderr.
pub fn python_reference(
    script: &str,
    imports: &str,
    packages: &[&str],
    args: &[&OsStr],
) -> Result<serde_json::Value, String> {
    python_reference_in("python-bench", script, imports, packages, args)
}

/// [`python_reference`] with its packages in their own folder of the cache, `site`: for pins that would clash
/// with the other benches' packages.
pub fn python_reference_in(
    site: &str,
    script: &str,
    imports: &str,
    packages: &[&str],
    args: &[&OsStr],
) -> Result<serde_json::Value, String> {
    let site =
        headstart::home::python_packages(site, imports, packages).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(script);
    let output = Command::new(headstart::home::python())
        .envs(site.iter().map(|p| ("PYTHONPATH", p)))
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// The middle of `values` (the upper one of two for an even count); NaN when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
