//! train / eval / predict through the binary, on real ELPV images and the real default backbone.

mod common;

use std::path::{Path, PathBuf};

use common::{elpv_cells, headstart, headstart_ok};
use headstart::bundle::Bundle;
use headstart::classifier::Classifier;
use headstart::embeddings::EmbeddedSet;
use headstart::head::ClassScores;
use headstart::head::Head::{GaussianNb, Knn};

/// `--val DATA` embeds the validation folder with the training data's backbone (one session for both).
#[test]
fn validation_data_is_embedded_by_the_same_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 40);
    let bundle = dir.path().join("cells.hs");
    let stdout = headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--val",
        data.to_str().unwrap(),
        "--grid",
        "0.01,1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["train"]["samples"], 80);
    assert_eq!(report["validation"]["samples"], 80);
    let accuracy = report["validation"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.7,
        "accuracy on its own training cells {accuracy}"
    );
}

/// Every head through the CLI on the same cells, and the logistic head with linfa-logistic as its solver: each
/// trains, validates, and is recorded in its bundle (format 2 for the heads older headstarts do not know).
#[test]
fn every_head_and_the_linfa_solver_train_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 40);
    let mut out_of_fold = Vec::new();
    for (head, solver) in [
        ("logistic", "lbfgs"),
        ("logistic", "linfa"),
        ("centroid", "lbfgs"),
        ("knn", "lbfgs"),
        ("gaussian-nb", "lbfgs"),
        ("linear-svm", "lbfgs"),
    ] {
        let bundle = dir.path().join(format!("{head}-{solver}.hs"));
        let stdout = headstart_ok(&[
            "train",
            data.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--head",
            head,
            "--solver",
            solver,
            "--grid",
            "0.01,1",
            "--val-split",
            "0.25",
            "--json",
        ]);
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["train"]["head"], head);
        let accuracy = report["validation"]["accuracy"].as_f64().unwrap();
        assert!(
            accuracy >= 0.6,
            "{head}, {solver}: validation accuracy {accuracy}"
        );
        let grid_searched = matches!(head, "logistic" | "linear-svm");
        assert_eq!(
            report["train"]["chosen_c"].is_number(),
            grid_searched,
            "{head}"
        );
        let loaded = Bundle::load(&bundle).unwrap();
        assert_eq!(loaded.info.training.head.name(), head);
        let new_head = matches!(head, "gaussian-nb" | "linear-svm");
        assert_eq!(loaded.info.format_version, if new_head { 2 } else { 1 });
        let recorded = loaded
            .info
            .training
            .solver
            .map(|s| format!("{s:?}").to_lowercase());
        assert_eq!(recorded.as_deref(), (head == "logistic").then_some(solver));
        if head == "logistic" {
            out_of_fold.push(report["train"]["cv_accuracy"].as_f64().unwrap());
        }
    }
    // The two solvers minimise the same objective.
    assert!(
        (out_of_fold[0] - out_of_fold[1]).abs() <= 0.05,
        "out-of-fold accuracy: lbfgs {}, linfa {}",
        out_of_fold[0],
        out_of_fold[1]
    );
}

#[test]
fn train_eval_predict_and_bundle_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 40);
    let bundle = dir.path().join("cells.hs");
    let stdout = headstart_ok(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--val-split",
        "0.25",
        "--grid",
        "0.01,1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["train"]["samples"], 60);
    assert_eq!(report["validation"]["samples"], 20);
    let accuracy = report["validation"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.6, "validation accuracy {accuracy}");
    assert!(report["train"]["chosen_c"].is_number());

    let loaded = Bundle::load(&bundle).unwrap();
    assert_eq!(loaded.info.class_names, ["defective", "functional"]);
    assert_eq!(loaded.info.features.backbone.name, "efficientnet-lite0");
    assert_eq!(loaded.info.training.samples, 60);

    // The library and the CLI give the same probabilities, and saving again changes nothing.
    let mut classifier = Classifier::load(&bundle, &Default::default(), None).unwrap();
    let cell = data
        .join("defective")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let library = classifier.predict_path(&cell).unwrap();
    let resaved = dir.path().join("again.hs");
    loaded.save(&resaved).unwrap();
    let stdout = headstart_ok(&[
        "predict",
        resaved.to_str().unwrap(),
        cell.to_str().unwrap(),
        "--format",
        "json",
        "--top-k",
        "2",
    ]);
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Where the backbone ran: the CPU on a machine without an NVIDIA GPU, else CUDA.
    let device = answer["device"].as_str().unwrap();
    assert!(device == "cpu" || device.starts_with("cuda:"), "{device}");
    let top = &answer["predictions"][0]["top"];
    for entry in top.as_array().unwrap() {
        let class = entry["class"].as_str().unwrap();
        let index = classifier
            .class_names()
            .iter()
            .position(|c| c == class)
            .unwrap();
        assert!((entry["probability"].as_f64().unwrap() as f32 - library[index]).abs() < 1e-5);
    }

    // eval on a folder, and on an .npz of the same images.
    let stdout = headstart_ok(&[
        "eval",
        bundle.to_str().unwrap(),
        data.to_str().unwrap(),
        "--json",
    ]);
    let metrics: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(metrics["samples"], 80);
    assert_eq!(metrics["confusion"].as_array().unwrap().len(), 2);
    assert_eq!(metrics["device"].as_str(), Some(device));
    let npz = dir.path().join("cells.npz");
    assert_eq!(
        headstart(&[
            "embed",
            data.to_str().unwrap(),
            "-o",
            npz.to_str().unwrap(),
            "-q"
        ])
        .0,
        0
    );
    let stdout = headstart_ok(&["eval", bundle.to_str().unwrap(), npz.to_str().unwrap()]);
    assert!(
        stdout.contains("macro-F1")
            && stdout.contains("confusion matrix")
            && stdout.contains("defective"),
        "{stdout}"
    );

    // --min-confidence: nothing is that sure, so everything is unknown.
    let stdout = headstart_ok(&[
        "predict",
        bundle.to_str().unwrap(),
        data.to_str().unwrap(),
        "--min-confidence",
        "1.0",
        "--format",
        "csv",
    ]);
    assert_eq!(stdout.lines().count(), 81);
    assert!(
        stdout
            .lines()
            .skip(1)
            .all(|l| l.split(',').nth(1) == Some("unknown")),
        "{stdout}"
    );
    // Two classes: two class columns in the header as in every row (not the three --top-k asks for).
    let header = stdout.lines().next().unwrap();
    assert_eq!(header, "path,label,class1,p1,class2,p2");
    assert!(
        stdout.lines().all(|l| l.split(',').count() == 6),
        "{stdout}"
    );
}

#[test]
fn mismatched_backbone_and_bad_training_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = elpv_cells(dir.path(), 40);
    let bundle = dir.path().join("cells.hs");
    assert_eq!(
        headstart(&[
            "train",
            data.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--head",
            "centroid",
            "-q"
        ])
        .0,
        0
    );

    let (code, _, stderr) = headstart(&[
        "predict",
        bundle.to_str().unwrap(),
        data.to_str().unwrap(),
        "--backbone",
        "open-nsfw",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("trained on backbone efficientnet-lite0") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let other = dir.path().join("other.npz");
    headstart_ok(&[
        "embed",
        data.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
        "--backbone",
        "open-nsfw",
        "-q",
    ]);
    let (code, _, stderr) = headstart(&["eval", bundle.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("use the same backbone"), "{stderr}");

    // A bundle whose head does not fit the backbone's embeddings (tampered with): an error, not a panic.
    let mut damaged = Bundle::load(&bundle).unwrap();
    damaged.head = headstart::head::Head::Centroid(headstart::head::Centroid {
        centroids: ndarray::Array2::eye(2),
    });
    let damaged_path = dir.path().join("damaged.hs");
    damaged.save(&damaged_path).unwrap();
    let (code, _, stderr) = headstart(&[
        "predict",
        damaged_path.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("damaged bundle") && !stderr.contains("panicked"),
        "{stderr}"
    );

    // One class only.
    std::fs::remove_dir_all(data.join("functional")).unwrap();
    let (code, _, stderr) = headstart(&[
        "train",
        data.to_str().unwrap(),
        "-o",
        dir.path().join("one.hs").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("at least two classes") && !dir.path().join("one.hs").exists(),
        "{stderr}"
    );

    // A flat (unlabelled) folder.
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for file in data.join("defective").read_dir().unwrap().take(3) {
        let file = file.unwrap().path();
        std::fs::copy(&file, flat.join(file.file_name().unwrap())).unwrap();
    }
    let (code, _, stderr) = headstart(&[
        "train",
        flat.to_str().unwrap(),
        "-o",
        dir.path().join("flat.hs").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("labelled"), "{stderr}");

    // A file that is no bundle.
    let (code, _, stderr) = headstart(&["predict", data.to_str().unwrap(), data.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let _ = EmbeddedSet::read_npz(&other).unwrap();
}

/// The README's main job end to end (all 2,624 ELPV cells, the stated split): the logistic head must reach the
/// 0.826 test accuracy a Python logistic probe measured on the same backbone's features.
#[test]
fn elpv_main_job_reaches_the_python_probe_accuracy() {
    let runtime = headstart::runtime::RuntimeOptions::default();
    let job = headstart::workflow::train_and_test(
        &headstart::datasets::elpv_by_defect().unwrap(),
        headstart::datasets::ELPV_TEST_FRACTION,
        headstart::datasets::ELPV_SEED,
        &runtime,
        &mut |_, _| {},
        std::time::Instant::now(),
    )
    .unwrap();
    let skipped: Vec<String> = (job.embed.skipped.iter().take(5))
        .map(|s| format!("{}: {}", s.path, s.reason))
        .collect();
    assert_eq!(
        job.embed.skipped.len(),
        0,
        "skipped, first ones: {skipped:?}"
    );
    assert_eq!((job.train_rows, job.test_rows), (1800, 824));
    assert_eq!(job.test.samples, 824);
    assert!(
        job.test.accuracy >= 0.826,
        "test accuracy {:.4} (chosen C {:?})",
        job.test.accuracy,
        job.report.chosen_c
    );
}

/// The `bundle` entry of a bundle file, as JSON.
fn bundle_json(path: &Path) -> serde_json::Value {
    let arrays = headstart::embeddings::npz::read_npz(path).unwrap();
    let Some((_, headstart::embeddings::npz::NpyData::Strings { data, .. })) =
        arrays.iter().find(|(name, _)| name == "bundle")
    else {
        panic!("{}: no bundle entry", path.display());
    };
    serde_json::from_str(&data[0]).unwrap()
}

/// The top classes and probabilities of each answer of `predict --format json`.
fn answers(json: &serde_json::Value) -> Vec<Vec<(String, f64)>> {
    json["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["class"].as_str().unwrap().to_string(),
                        t["probability"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Bundles written by headstart before bundles held an `InputSpec` (commit 4584c38; how they were made is in
/// tests/data/format1/README.md) load, predict what that headstart predicted, and are written back with the
/// same metadata, so older headstarts read what this one writes.
#[test]
fn format_1_bundles_from_before_load_predict_and_save_as_they_did() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("predictions.json")).unwrap()).unwrap();
    let cells = headstart::datasets::elpv_by_defect().unwrap();
    let image_inputs = [
        cells.join("defective/cell0001.png"),
        cells.join("functional/cell0004.png"),
    ];
    let image_bundle = dir.join("image.hs");
    let text_bundle = dir.join("text.hs");
    let mut image_args = vec![
        "predict",
        image_bundle.to_str().unwrap(),
        "--format",
        "json",
    ];
    image_args.extend(image_inputs.iter().map(|p| p.to_str().unwrap()));
    let text_args = [
        "predict",
        text_bundle.to_str().unwrap(),
        "--format",
        "json",
        "Where is my parcel?",
        "I was charged twice for one order",
    ];
    for (kind, args) in [("image", image_args), ("text", text_args.to_vec())] {
        let stdout = headstart_ok(&args);
        let now = answers(&serde_json::from_str(&stdout).unwrap());
        let then = answers(&recorded[kind]);
        assert_eq!(now.len(), then.len(), "{kind}");
        for (now, then) in now.iter().zip(&then) {
            assert_eq!(now.len(), then.len(), "{kind}");
            for ((class, p), (class_then, p_then)) in now.iter().zip(then) {
                assert_eq!(class, class_then, "{kind}");
                assert!((p - p_then).abs() < 1e-5, "{kind}: {p} now, {p_then} then");
            }
        }
    }
    let saved = tempfile::tempdir().unwrap();
    for (name, modality) in [
        ("image.hs", headstart::Modality::Image),
        ("text.hs", headstart::Modality::Text),
    ] {
        let bundle = Bundle::load(&dir.join(name)).unwrap();
        assert_eq!(bundle.info.features.input.modality(), modality);
        let again = saved.path().join(name);
        bundle.save(&again).unwrap();
        assert_eq!(bundle_json(&again), bundle_json(&dir.join(name)), "{name}");
    }
}

/// `train --from` adds examples and a class to a bundle without embedding its data again, and gets what training
/// on all of it at once gets: exactly, for a bundle that keeps its embeddings; from the head's own arrays for
/// gaussian-nb (its statistics, to float rounding) and knn (the same answers). Other heads need kept embeddings.
#[test]
fn adding_examples_and_a_class_equals_training_on_the_union() {
    let dir = tempfile::tempdir().unwrap();
    let (defective, functional) = (
        common::elpv_class("defective"),
        common::elpv_class("functional"),
    );
    // The first set: 15 cells of each class. More: 10 of each, and 10 cells under a new class.
    let place = |folder: &str, class: &str, files: &[PathBuf]| {
        for set in [folder, "union"] {
            let target = dir.path().join(set).join(class);
            std::fs::create_dir_all(&target).unwrap();
            for file in files {
                std::fs::copy(file, target.join(file.file_name().unwrap())).unwrap();
            }
        }
    };
    place("first", "defective", &defective[..15]);
    place("first", "functional", &functional[..15]);
    place("more", "defective", &defective[15..25]);
    place("more", "functional", &functional[15..25]);
    place("more", "unsure", &functional[25..35]);
    let path = |name: &str| dir.path().join(name).display().to_string();
    let train = |args: &[&str]| {
        let mut all = vec!["train", "--grid", "0.01,1", "-q"];
        all.extend_from_slice(args);
        headstart_ok(&all);
    };
    for (head, keep) in [("logistic", true), ("gaussian-nb", false), ("knn", false)] {
        let keep: &[&str] = if keep { &["--keep-embeddings"] } else { &[] };
        let (first, added, union) = (
            path(&format!("{head}-first.hs")),
            path(&format!("{head}-added.hs")),
            path(&format!("{head}-union.hs")),
        );
        train(
            &[
                &[path("first").as_str(), "--head", head, "-o", &first],
                keep,
            ]
            .concat(),
        );
        train(&[path("more").as_str(), "--from", &first, "-o", &added]);
        train(
            &[
                &[path("union").as_str(), "--head", head, "-o", &union],
                keep,
            ]
            .concat(),
        );
        let (added, union) = (
            Bundle::load(added.as_ref()).unwrap(),
            Bundle::load(union.as_ref()).unwrap(),
        );
        assert_eq!(
            added.info.class_names,
            ["defective", "functional", "unsure"]
        );
        assert_eq!(added.info.class_names, union.info.class_names);
        assert_eq!(added.info.training.samples, 60);
        assert_eq!(added.info.training.head, union.info.training.head);
        match (&added.head, &union.head) {
            (_, _) if head == "logistic" => {
                assert_eq!(added.head, union.head);
                assert_eq!(added.temperature, union.temperature);
                assert_eq!(added.training_embeddings, union.training_embeddings);
                assert!(added.training_embeddings.is_some());
            }
            (GaussianNb(a), GaussianNb(u)) => {
                assert_eq!(a.counts, u.counts);
                for (x, y) in a
                    .means
                    .iter()
                    .chain(&a.variances)
                    .zip(u.means.iter().chain(&u.variances))
                {
                    assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{x} vs {y}");
                }
                assert!(
                    (&a.log_priors - &u.log_priors)
                        .iter()
                        .all(|v| v.abs() < 1e-5)
                );
            }
            (Knn(a), Knn(u)) => {
                assert_eq!(a.embeddings.nrows(), u.embeddings.nrows());
                let unseen =
                    ndarray::Array2::from_shape_fn((20, a.embeddings.ncols()), |(i, j)| {
                        u.embeddings[[(i * 3) % u.embeddings.nrows(), j]]
                            + 0.01 * ((i + j) % 7) as f32
                    });
                assert_eq!(
                    added.head.probabilities(unseen.view(), 1.0),
                    union.head.probabilities(unseen.view(), 1.0)
                );
            }
            other => panic!("{head}: {other:?}"),
        }
    }
    // A logistic head without kept embeddings cannot add examples.
    let plain = path("plain.hs");
    train(&[path("first").as_str(), "-o", &plain]);
    let (code, _, stderr) = headstart(&[
        "train",
        &path("more"),
        "--from",
        &plain,
        "-o",
        &path("never.hs"),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("keeps no training embeddings"), "{stderr}");
    assert!(!dir.path().join("never.hs").exists());
}
