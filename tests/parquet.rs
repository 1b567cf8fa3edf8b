//! Parquet shards from the command line: shards that together are exactly the unsharded output, a re-run
//! that skips finished shards, train and eval on a folder of shards, and damaged shards refused clearly.

mod common;

use std::path::{Path, PathBuf};

use common::{headstart, headstart_ok};
use headstart::embeddings::EmbeddedSet;
use serde_json::Value;

/// 24 ELPV cells in two class folders, plus a file that is not an image.
fn small_set(dir: &Path) -> PathBuf {
    let elpv = headstart::datasets::elpv_by_defect().unwrap();
    let root = dir.join("cells");
    for class in ["defective", "functional"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(elpv.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in &files[..12] {
            std::fs::copy(file, root.join(class).join(file.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(root.join("functional/notes.png"), "not an image").unwrap();
    root
}

fn embed_json(args: &[&str]) -> Value {
    let (code, stdout, stderr) =
        headstart(&[&["embed", "--json", "--device", "cpu"], args].concat());
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn skipped_paths(summary: &Value) -> Vec<String> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shards_together_are_exactly_the_unsharded_output() {
    let dir = tempfile::tempdir().unwrap();
    let cells = small_set(dir.path());
    let cells = cells.to_str().unwrap();
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    let summary = embed_json(&[cells, "--format", "parquet", "-o", whole.to_str().unwrap()]);
    assert!(
        summary["output"]
            .as_str()
            .unwrap()
            .ends_with("part-00000-of-00001.parquet")
    );
    assert_eq!(skipped_paths(&summary), ["functional/notes.png"]);

    let mut shard_paths = Vec::new();
    let mut shard_skips = Vec::new();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let summary = embed_json(&[
            cells,
            "--format",
            "parquet",
            "--shard",
            &shard,
            "-o",
            parts.to_str().unwrap(),
        ]);
        let file = PathBuf::from(summary["output"].as_str().unwrap());
        assert_eq!(file, parts.join(format!("part-0000{k}-of-00003.parquet")));
        shard_paths.extend(EmbeddedSet::read(&file).unwrap().paths);
        shard_skips.extend(skipped_paths(&summary));
    }
    // Each file in exactly one shard; together, the same rows as one run.
    let together = EmbeddedSet::read(&parts).unwrap();
    let alone = EmbeddedSet::read(&whole).unwrap();
    assert_eq!(shard_paths.len(), 24);
    assert_eq!(together.paths, alone.paths);
    assert_eq!(together.embeddings, alone.embeddings);
    assert_eq!(together.labels, alone.labels);
    assert_eq!(together.class_names, ["defective", "functional"]);
    assert_eq!(shard_skips, ["functional/notes.png"]);

    // The same rows as the .npz of the same folder.
    let npz = dir.path().join("cells.npz");
    embed_json(&[cells, "-o", npz.to_str().unwrap()]);
    let from_npz = EmbeddedSet::read(&npz).unwrap();
    assert_eq!(alone.paths, from_npz.paths);
    assert_eq!(alone.embeddings, from_npz.embeddings);
    assert_eq!(alone.features.backbone, from_npz.features.backbone);

    // Train and eval take the folder of shards as they take the .npz: the same head, the same metrics.
    let eval = |bundle: &Path| {
        let stdout = headstart_ok(&[
            "eval",
            bundle.to_str().unwrap(),
            npz.to_str().unwrap(),
            "--json",
        ]);
        let mut metrics: Value = serde_json::from_str(&stdout).unwrap();
        metrics.as_object_mut().unwrap().remove("seconds");
        metrics
    };
    for (source, bundle) in [(&parts, "parts.hs"), (&npz, "npz.hs")] {
        headstart_ok(&[
            "train",
            source.to_str().unwrap(),
            "-o",
            dir.path().join(bundle).to_str().unwrap(),
        ]);
    }
    assert_eq!(
        eval(&dir.path().join("parts.hs")),
        eval(&dir.path().join("npz.hs"))
    );
    headstart_ok(&[
        "eval",
        dir.path().join("npz.hs").to_str().unwrap(),
        parts.to_str().unwrap(),
    ]);
}

#[test]
fn a_rerun_skips_finished_shards_and_refuses_another_backbones() {
    let dir = tempfile::tempdir().unwrap();
    let cells = small_set(dir.path());
    let cells = cells.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let first = embed_json(&[cells, "--format", "parquet", "--shard", "1/2", "-o", out]);
    let file = PathBuf::from(first["output"].as_str().unwrap());
    let written = std::fs::read(&file).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();

    let again = embed_json(&[cells, "--format", "parquet", "--shard", "1/2", "-o", out]);
    assert_eq!(again["already_written"], true);
    assert_eq!(std::fs::read(&file).unwrap(), written);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );
    let stdout = headstart_ok(&[
        "embed", cells, "--format", "parquet", "--shard", "1/2", "-o", out,
    ]);
    assert!(stdout.contains("shard 1/2 is already in"), "{stdout}");

    // Other settings make other embeddings: they do not go into this folder.
    let (code, _, stderr) = headstart(&[
        "embed",
        cells,
        "--format",
        "parquet",
        "--shard",
        "1/2",
        "--normalize",
        "-o",
        out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds embeddings of another backbone or preprocessing"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), written);

    // The other shard is still to do, and is done.
    let second = embed_json(&[cells, "--format", "parquet", "--shard", "0/2", "-o", out]);
    assert!(second.get("already_written").is_none());
    assert_eq!(EmbeddedSet::read(Path::new(out)).unwrap().rows(), 24);
}

#[test]
fn bad_shards_and_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cells = small_set(dir.path());
    let cells = cells.to_str().unwrap();
    let out = dir.path().join("out");
    embed_json(&[cells, "--format", "parquet", "-o", out.to_str().unwrap()]);
    let folder = out.to_str().unwrap();
    let train = |input: &str| {
        let bundle = dir.path().join("b.hs");
        let (code, _, stderr) = headstart(&["train", input, "-o", bundle.to_str().unwrap()]);
        assert!(!bundle.exists());
        (code, stderr)
    };

    // Not Parquet at all, though named so.
    std::fs::write(out.join("part-9.parquet"), b"PAR1 not really PAR1").unwrap();
    let (code, stderr) = train(folder);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("part-9.parquet: not a Parquet file"),
        "{stderr}"
    );
    // Cut short, as a copy interrupted mid-way leaves it.
    let whole = std::fs::read(out.join("part-00000-of-00001.parquet")).unwrap();
    std::fs::write(out.join("part-9.parquet"), &whole[..whole.len() / 2]).unwrap();
    let (code, stderr) = train(folder);
    assert_eq!(code, 1);
    assert!(stderr.contains("part-9.parquet"), "{stderr}");
    // Something else in the folder.
    std::fs::remove_file(out.join("part-9.parquet")).unwrap();
    std::fs::write(out.join("notes.txt"), "x").unwrap();
    let (code, stderr) = train(folder);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("notes.txt: not a .parquet file"),
        "{stderr}"
    );
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    // The same shard twice under another name: rows would count twice.
    std::fs::copy(
        out.join("part-00000-of-00001.parquet"),
        out.join("copy.parquet"),
    )
    .unwrap();
    let (code, stderr) = train(folder);
    assert_eq!(code, 1);
    assert!(stderr.contains("is in more than one row"), "{stderr}");

    for (args, message) in [
        (vec!["--shard", "3/3"], "K/N needs 0 <= K < N"),
        (vec!["--shard", "x"], "is not K/N"),
    ] {
        let (code, _, stderr) = headstart(
            &[
                &["embed", cells, "--format", "parquet", "-o", folder],
                &args[..],
            ]
            .concat(),
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let (code, _, stderr) = headstart(&["embed", cells, "--format", "parquet"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("pass -o OUT"), "{stderr}");
}
