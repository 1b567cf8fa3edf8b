//! headstart from Python and on Ray, side by side with the CLI, in one run on the same ELPV images:
//! (a) `headstart embed` (the CLI's own embedding seconds), (b) `Embedder.embed_paths` from Python, rounds
//! interleaved; then (c) Ray Data through `headstart.ray.Embed` on a local cluster of one worker node, then
//! of two, each node one CPU and one actor with one thread (a worker is one core), Parquet written.
//!
//! cargo bench --bench python        (builds the wheel with --release into target/tmp/python/venv)
//!   HEADSTART_BENCH_IMAGES=N   ELPV images used (1024)

#[path = "../tests/python_env/mod.rs"]
mod python_env;

use std::path::Path;
use std::process::Command;

fn main() {
    let count = std::env::var("HEADSTART_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    let elpv = headstart::datasets::elpv_by_defect().expect("ELPV fetch");
    let python = python_env::python_with_wheel(&["--release"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_ray.py");
    let output = python_env::run(
        Command::new(python)
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_headstart"))
            .arg(&elpv)
            .arg(count.to_string()),
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
}
