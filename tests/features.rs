//! `train --features auto`: candidates from the graph, scored by the head's cross-validation, the best kept in
//! the bundle; a second run embeds nothing; the budget and the refusals.

mod common;

use common::{elpv_cells, headstart, headstart_ok};
use headstart::bundle::Bundle;
use serde_json::Value;

fn candidates(report: &Value) -> &Vec<Value> {
    report["features"]["candidates"].as_array().unwrap()
}

fn tensors(candidate: &Value) -> Vec<String> {
    serde_json::from_value(candidate["candidate"]["tensors"].clone()).unwrap()
}

#[test]
fn the_best_candidate_by_cross_validation_goes_into_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (data, files) = elpv_cells(dir.path(), 20);
    let bundle = dir.path().join("auto.hs");
    let args = [
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--features",
        "auto",
        "--backbones",
        "open-nsfw",
        "--grid",
        "0.01,0.1",
        "--json",
    ];
    let first: Value = serde_json::from_str(&headstart_ok(&args)).unwrap();
    let scored = candidates(&first);
    let names: Vec<Vec<String>> = scored.iter().map(tensors).collect();
    // The output; block outputs and expansions found in EfficientNet-Lite0's graph, latest first; the best two
    // joined; then the other backbone's output.
    assert_eq!(names[0], Vec::<String>::new());
    assert_eq!(
        names[1..5],
        [
            vec!["block15".to_string()],
            vec!["block14".into()],
            vec!["conv_head.conv".into()],
            vec!["blocks_15__expand_conv.conv".into()],
        ]
    );
    assert_eq!(names[5].len(), 2);
    assert_eq!(scored[6]["candidate"]["backbone"], "open-nsfw");
    assert_eq!(scored.len(), 7);
    let cv = |c: &Value| c["cv_accuracy"].as_f64().unwrap();
    for candidate in scored {
        assert!((0.0..=1.0).contains(&cv(candidate)), "{candidate}");
        assert_eq!(candidate["fold_accuracies"].as_array().unwrap().len(), 5);
        assert!(candidate["dim"].as_u64().unwrap() > 0);
    }
    // EfficientNet-Lite0's tensors were embedded in one pass; open-nsfw on its own.
    let together: Vec<bool> = scored
        .iter()
        .map(|c| c["embedded_together"].as_bool().unwrap())
        .collect();
    assert_eq!(together, [true, true, true, true, true, true, false]);
    // A tensor cut from that pass scores as it does embedded on its own.
    let alone: Value = serde_json::from_str(&headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        dir.path().join("alone.hs").to_str().unwrap(),
        "--layer",
        "conv_head.conv",
        "--grid",
        "0.01,0.1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(alone["train"]["cv_accuracy"], scored[3]["cv_accuracy"]);
    assert_eq!(
        alone["train"]["fold_accuracies"],
        scored[3]["fold_accuracies"]
    );
    // The pair is the two best single tensors of the first backbone, the better one first.
    let mut singles: Vec<&Value> = scored[..5].iter().collect();
    singles.sort_by(|a, b| cv(b).total_cmp(&cv(a)));
    let tensor = |c: &Value| {
        tensors(c)
            .first()
            .cloned()
            .unwrap_or_else(|| "features".into())
    };
    assert_eq!(names[5], [tensor(singles[0]), tensor(singles[1])]);
    // The chosen one is the best (the earliest on a tie), and the bundle holds its features.
    let chosen = first["features"]["chosen"].as_u64().unwrap() as usize;
    let best = scored.iter().map(cv).fold(f64::MIN, f64::max);
    assert_eq!(cv(&scored[chosen]), best);
    assert!(scored[..chosen].iter().all(|c| cv(c) < best));
    let identity = Bundle::load(&bundle).unwrap().info.features.backbone;
    let kept: Vec<String> = identity
        .layer
        .iter()
        .chain(&identity.joined)
        .cloned()
        .collect();
    assert_eq!(kept, names[chosen]);
    assert_eq!(first["train"]["cv_accuracy"].as_f64().unwrap(), best);
    let predicted = headstart_ok(&[
        "predict",
        bundle.to_str().unwrap(),
        files[0].to_str().unwrap(),
    ]);
    assert!(
        predicted.contains("defective") || predicted.contains("functional"),
        "{predicted}"
    );

    // Again: every vector comes from the cache, and the scores are the same.
    let second: Value = serde_json::from_str(&headstart_ok(&args)).unwrap();
    for (again, before) in candidates(&second).iter().zip(scored) {
        assert_eq!(again["from_cache"], 40, "{again}");
        assert_eq!(again["cv_accuracy"], before["cv_accuracy"]);
    }
    assert_eq!(second["features"]["chosen"], first["features"]["chosen"]);
}

#[test]
fn text_candidates_are_the_last_transformer_layers() {
    let dir = tempfile::tempdir().unwrap();
    let table = common::vader_table(dir.path(), 30);
    let bundle = dir.path().join("auto.hs");
    let report: Value = serde_json::from_str(&headstart_ok(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--features",
        "auto",
        "--grid",
        "0.1",
        "--json",
    ]))
    .unwrap();
    let names: Vec<Vec<String>> = candidates(&report).iter().map(tensors).collect();
    assert_eq!(names[1], ["layer_norm_11"]);
    assert_eq!(names[2], ["layer_norm_10"]);
    assert_eq!(names.len(), 4);
    // Cut from the one pass and normalised again, layer_norm_10 scores as it does embedded on its own.
    let alone: Value = serde_json::from_str(&headstart_ok(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        dir.path().join("alone.hs").to_str().unwrap(),
        "--layer",
        "layer_norm_10",
        "--grid",
        "0.1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        alone["train"]["cv_accuracy"],
        candidates(&report)[2]["cv_accuracy"]
    );
    let predicted = headstart_ok(&[
        "predict",
        bundle.to_str().unwrap(),
        "A wonderful, moving film.",
    ]);
    assert!(
        predicted.contains("positive") || predicted.contains("negative"),
        "{predicted}"
    );
}

#[test]
fn the_budget_and_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 6);
    let bundle = dir.path().join("auto.hs");
    let data = data.to_str().unwrap();
    let out = bundle.to_str().unwrap();
    // A spent budget still trains on the backbone's output and names what it did not try.
    let report: Value = serde_json::from_str(&headstart_ok(&[
        "train",
        data,
        "-o",
        out,
        "--features",
        "auto",
        "--budget",
        "0s",
        "--folds",
        "2",
        "--json",
    ]))
    .unwrap();
    assert_eq!(candidates(&report).len(), 1);
    assert_eq!(report["features"]["not_tried"].as_array().unwrap().len(), 4);
    assert!(bundle.exists());

    let refused = |args: &[&str], expected: &str| {
        let (code, _, stderr) = headstart(args);
        assert_ne!(code, 0);
        assert!(stderr.contains(expected), "{stderr}");
    };
    refused(
        &[
            "train",
            data,
            "-o",
            out,
            "--features",
            "auto",
            "--layer",
            "block15",
        ],
        "cannot be used with",
    );
    refused(
        &["train", data, "-o", out, "--backbones", "open-nsfw"],
        "--backbones and --budget are for --features auto",
    );
    refused(
        &[
            "train",
            data,
            "-o",
            out,
            "--features",
            "auto",
            "--budget",
            "soon",
        ],
        "not a time",
    );
    // Other backbones that cannot work are refused before anything is embedded.
    refused(
        &[
            "train",
            data,
            "-o",
            out,
            "--features",
            "auto",
            "--backbones",
            "nope.onnx",
        ],
        "nope.onnx",
    );
    refused(
        &[
            "train",
            data,
            "-o",
            out,
            "--features",
            "auto",
            "--backbones",
            "all-minilm-l6-v2",
        ],
        "all-minilm-l6-v2 is a backbone for texts, and this data is images",
    );
    let npz = dir.path().join("cells.npz");
    headstart_ok(&["embed", data, "-o", npz.to_str().unwrap(), "-q"]);
    refused(
        &[
            "train",
            npz.to_str().unwrap(),
            "-o",
            out,
            "--features",
            "auto",
        ],
        "an embeddings file's features are fixed",
    );
}
