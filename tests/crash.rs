//! Interrupted runs: `embed` and `train` killed (SIGKILL) at many points leave either the old output or a
//! complete new one, never a torn file, and a re-run finishes from the cache. A torn cache entry is
//! recomputed, not served.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headstart::backbone::{BackboneRef, ImageBackbone};
use headstart::bundle::Bundle;
use headstart::embeddings::{EmbedOptions, EmbeddedSet, embed_images};
use image::{Rgb, RgbImage};

/// `count` small images no cache has seen: their pixels depend on this run's clock.
fn fresh_images(root: &Path, count: usize) -> PathBuf {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let data = root.join("data");
    for i in 0..count {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let mut state = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let image = RgbImage::from_fn(48, 48, |x, y| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (state >> 59) as u8;
            let base = if i % 2 == 0 { 60 } else { 190 };
            Rgb([base + noise, (x * 5) as u8, (y * 5) as u8])
        });
        let path = data.join(class).join(format!("{i:04}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image.save(&path).unwrap();
    }
    data
}

/// Starts the binary and kills it after `after`; returns whether it had already exited on its own.
fn run_and_kill(args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    finished
}

fn no_partial_files(dir: &Path) {
    let partial: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    // A killed process cannot remove its temporary file; it must never be taken for the output.
    for name in &partial {
        assert!(name.starts_with(".headstart-"), "{name}");
    }
}

#[test]
fn killed_embed_and_train_leave_old_or_complete_outputs_and_resume_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = fresh_images(dir.path(), 160);
    let out = dir.path().join("out.npz");
    let bundle = dir.path().join("model.hs");
    let (data_arg, out_arg, bundle_arg) = (
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        bundle.to_str().unwrap(),
    );

    // Kill embed at increasing points: the output is absent or complete every time.
    let mut completed_at = None;
    for step in 1..=12u64 {
        let finished = run_and_kill(
            &["embed", data_arg, "-o", out_arg, "-q"],
            Duration::from_millis(150 * step),
        );
        if out.exists() {
            let set = EmbeddedSet::read_npz(&out).unwrap();
            assert_eq!(set.rows(), 160, "a complete output after {} ms", 150 * step);
        }
        no_partial_files(dir.path());
        if finished {
            completed_at = Some(step);
            break;
        }
        eprintln!(
            "embed killed after {} ms; output present: {}",
            150 * step,
            out.exists()
        );
    }
    // The re-run finishes, answered (at least partly) by the cache the killed runs filled.
    let output = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(["embed", data_arg, "-o", out_arg, "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["rows"], 160);
    eprintln!("re-run: {} of 160 from the cache", summary["from_cache"]);
    assert!(
        summary["from_cache"].as_u64().unwrap() > 0,
        "{summary} (completed at step {completed_at:?})"
    );

    // Kill embed of other images while that complete output is in place: the old file stays byte for byte
    // until the new one replaces it whole.
    let old = std::fs::read(&out).unwrap();
    let other = fresh_images(&dir.path().join("other"), 120);
    let mut outcomes = (0, 0);
    for step in 1..=12u64 {
        let finished = run_and_kill(
            &["embed", other.to_str().unwrap(), "-o", out_arg, "-q"],
            Duration::from_millis(150 * step),
        );
        let now = std::fs::read(&out).unwrap();
        if now == old {
            outcomes.0 += 1;
        } else {
            let set = EmbeddedSet::read_npz(&out).unwrap();
            assert_eq!(
                set.rows(),
                120,
                "neither the old output nor a complete new one"
            );
            outcomes.1 += 1;
        }
        no_partial_files(dir.path());
        if finished {
            break;
        }
    }
    eprintln!(
        "embed over an old output: old intact {} times, new complete {} times",
        outcomes.0, outcomes.1
    );
    assert!(
        outcomes.0 > 0,
        "no kill landed before the new output was written"
    );

    // Kill train at many points with an old bundle in place: old or new, always loadable.
    let status = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(["train", out_arg, "-o", bundle_arg, "-q", "--grid", "0.1"])
        .status()
        .unwrap();
    assert!(status.success());
    let old = std::fs::read(&bundle).unwrap();
    let (mut killed, mut replaced) = (0, 0);
    for step in 1..=150u64 {
        // A wide grid and many folds keep training busy long enough for kills at many points.
        let finished = run_and_kill(
            &[
                "train",
                out_arg,
                "-o",
                bundle_arg,
                "-q",
                "--folds",
                "8",
                "--grid",
                "0.001,0.003,0.01,0.03,0.1,0.3,1,3,10,30",
            ],
            Duration::from_millis(10 * step),
        );
        Bundle::load(&bundle).unwrap();
        if std::fs::read(&bundle).unwrap() != old {
            replaced += 1;
        }
        no_partial_files(dir.path());
        if finished {
            eprintln!("train finished before {} ms", 10 * step);
            break;
        }
        killed += 1;
    }
    eprintln!("train killed {killed} times; the bundle was replaced whole {replaced} times");
    assert!(
        killed >= 3,
        "train finished before it could be killed at several points"
    );
}

#[test]
fn a_torn_cache_entry_is_recomputed_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = fresh_images(dir.path(), 6);
    let cache = dir.path().join("cache");
    let options = EmbedOptions::default().cache_dir(cache.clone());
    let mut backbone = ImageBackbone::open(
        &BackboneRef::Zoo("efficientnet-lite0".into()),
        &Default::default(),
    )
    .unwrap();
    let listed = headstart::data::files::scan(&data).unwrap();
    let (first, _) = embed_images(&listed, &mut backbone, &options, &mut |_, _| {}).unwrap();
    let mut entries: Vec<PathBuf> = Vec::new();
    let mut stack = vec![cache.clone()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("configuration.json")
                && !path.ends_with(headstart::home::MARKER)
            {
                entries.push(path);
            }
        }
    }
    assert_eq!(entries.len(), 6);
    entries.sort();
    // Tear one entry (as a crash between write and rename could not, but a disk might) and flip a bit in another.
    let torn = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &torn[..torn.len() / 2]).unwrap();
    let mut flipped = std::fs::read(&entries[1]).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&entries[1], flipped).unwrap();

    let (second, summary) = embed_images(&listed, &mut backbone, &options, &mut |_, _| {}).unwrap();
    assert_eq!((summary.from_cache, summary.computed), (4, 2));
    let worst = first
        .embeddings
        .iter()
        .zip(&second.embeddings)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-4, "recomputed rows differ by {worst}");
}

/// Runs `script` with `sh` in a private mount namespace (`unshare`), where it may mount a small tmpfs: a
/// real full disk, seen by nothing outside. Returns (exit code, stdout, stderr).
fn in_mount_namespace(script: &str, args: &[&Path]) -> (i32, String, String) {
    let output = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args)
        .output()
        .expect("unshare (util-linux) runs: it gives this test a disk of its own to fill");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The embedding cache on a full disk: the cache only saves time, so `embed` says so once and writes a
/// complete output.
#[test]
fn a_cache_that_cannot_be_written_costs_one_warning_not_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = fresh_images(dir.path(), 6);
    let out = dir.path().join("out.npz");
    let cache = headstart::home::home().unwrap().join("embeddings");
    std::fs::create_dir_all(&cache).unwrap();
    let script = r#"
        mount -t tmpfs -o size=16k none "$1" || exit 90
        head -c 1M /dev/zero > "$1/filler" 2>/dev/null
        exec "$2" embed "$3" -o "$4"
    "#;
    let binary = Path::new(env!("CARGO_BIN_EXE_headstart"));
    let (code, stdout, stderr) = in_mount_namespace(script, &[&cache, binary, &data, &out]);
    assert_eq!(code, 0, "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    // Nothing but the one warning: no error, no second complaint.
    assert_eq!((warnings.len(), stderr.lines().count()), (1, 1), "{stderr}");
    assert!(
        warnings[0].contains("embedding cache cannot be written"),
        "{stderr}"
    );
    assert!(stdout.contains("0 from cache, 6 computed"), "{stdout}");
    let set = EmbeddedSet::read_npz(&out).unwrap();
    assert_eq!((set.rows(), set.dim), (6, 1280));
}

/// The output on a full disk: exactly one `error:` line, the old file byte for byte, no temporary file left.
#[test]
fn a_full_output_disk_is_one_error_line_and_the_old_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let small = fresh_images(&dir.path().join("small"), 2);
    let large = fresh_images(&dir.path().join("large"), 40);
    let old = dir.path().join("old.npz");
    let (code, _, stderr) = common::headstart(&[
        "embed",
        small.to_str().unwrap(),
        "-o",
        old.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    // 40 embeddings need about 200 kB; the disk holds the old output and little more.
    let script = r#"
        mount -t tmpfs -o size=64k none "$1" || exit 90
        cp "$4" "$1/out.npz"
        "$2" embed "$3" -o "$1/out.npz" --quiet
        echo "exit $?"
        cmp -s "$4" "$1/out.npz" && echo "old output kept"
        ls -A "$1"
    "#;
    let binary = Path::new(env!("CARGO_BIN_EXE_headstart"));
    let (code, stdout, stderr) = in_mount_namespace(script, &[&disk, binary, &large, &old]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["exit 1", "old output kept", "out.npz"], "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("ZipWriter"),
        "{stderr}"
    );
}
