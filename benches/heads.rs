//! Head training, side by side with scikit-learn, in one run on the same embeddings, folds and grid:
//! headstart's cross-validated logistic search vs `LogisticRegression(lbfgs)` (benches/reference_heads.py).
//! Then every head (and the logistic head with linfa-logistic as its solver) on the same data: training time
//! (cross-validation included) and test accuracy.
//! Synthetic embeddings (D = 1,280, K = 10 Gaussian classes, 2,000 held-out rows), then the real ELPV
//! embeddings of the default backbone with the demo's split (1,800 train / 824 test, K = 2).
//!
//! cargo bench --bench heads          (HEADSTART_BENCH_SIZES=2000,10000 to choose the synthetic sizes;
//!                                     HEADSTART_BENCH_HEADS=0 for the scikit-learn table only)

use std::path::Path;
use std::time::Instant;

use common::rng::SplitMix64;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::embeddings::EmbedOptions;
use headstart::embeddings::npz::{NpyArray, write_npz};
use headstart::head::cv::stratified_folds;
use headstart::head::{ClassScores, HeadKind, Solver, TrainParams, train};
use headstart::{datasets, workflow, zoo};
use ndarray::{Array2, Axis};

mod common;

const D: usize = 1280;
const K: usize = 10;
const TEST: usize = 2000;

/// Training and test rows of one comparison.
struct Case {
    name: String,
    x_train: Array2<f32>,
    y_train: Vec<usize>,
    x_test: Array2<f32>,
    y_test: Vec<usize>,
    classes: usize,
}

fn main() {
    let sizes: Vec<usize> = std::env::var("HEADSTART_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2000]);
    println!(
        "| data | N | headstart s | scikit-learn s | time ratio | headstart acc | scikit-learn acc | difference |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut cases: Vec<Case> = sizes
        .into_iter()
        .map(|n| {
            let (x, y) = embeddings(n + TEST, 7);
            Case {
                name: format!("synthetic, K = {K}"),
                x_train: x.slice(ndarray::s![..n, ..]).to_owned(),
                y_train: y[..n].to_vec(),
                x_test: x.slice(ndarray::s![n.., ..]).to_owned(),
                y_test: y[n..].to_vec(),
                classes: K,
            }
        })
        .collect();
    cases.push(elpv());
    for case in &cases {
        compare(case);
    }
    if std::env::var("HEADSTART_BENCH_HEADS").as_deref() == Ok("0") {
        return;
    }
    println!("\n| data | N | head | train s | test accuracy |");
    println!("| --- | ---: | --- | ---: | ---: |");
    for case in &cases {
        every_head(case);
    }
}

/// Each head with the default protocol (5 folds, the default grid for logistic and linear-svm).
fn every_head(case: &Case) {
    let names: Vec<String> = (0..case.classes).map(|c| format!("class{c}")).collect();
    let variants = HeadKind::SINGLE_LABEL
        .into_iter()
        .map(|head| (head.name().to_string(), head, Solver::Lbfgs))
        .chain([(
            "logistic, linfa-logistic solver".to_string(),
            HeadKind::Logistic,
            Solver::Linfa,
        )]);
    for (label, head, solver) in variants {
        let params = TrainParams::default().head(head).solver(solver);
        let started = Instant::now();
        let row = match train(case.x_train.view(), &case.y_train, &names, &params) {
            Ok((trained, report)) => format!(
                "{:.2} | {:.4}",
                started.elapsed().as_secs_f64(),
                accuracy(
                    &trained.probabilities(case.x_test.view(), report.temperature),
                    &case.y_test
                )
            ),
            Err(why) => format!("not run: {why} |"),
        };
        println!(
            "| {} | {} | {label} | {row} |",
            case.name,
            case.y_train.len()
        );
    }
}

/// The demo's ELPV embeddings (through the cache) and its held-out split.
fn elpv() -> Case {
    let folder = datasets::elpv_by_defect().expect("fetches ELPV");
    let reference = BackboneRef::Zoo(zoo::default_for(headstart::Modality::Image).name);
    let data = headstart::Data::open(&folder, &Default::default()).expect("lists ELPV");
    let (set, _) = workflow::embeddings_for(
        &data,
        Some(&reference),
        &BackboneOptions::default(),
        &EmbedOptions::default(),
        &mut |_, _| {},
    )
    .expect("embeds ELPV");
    let (train_rows, test_rows) =
        workflow::stratified_split(&set, datasets::ELPV_TEST_FRACTION, datasets::ELPV_SEED)
            .expect("splits ELPV");
    let matrix = set.matrix();
    let all = set.labels.as_deref().expect("ELPV is labelled");
    let labels = |rows: &[usize]| -> Vec<usize> { rows.iter().map(|&i| all[i]).collect() };
    Case {
        name: "ELPV, K = 2".into(),
        x_train: matrix.select(Axis(0), &train_rows),
        y_train: labels(&train_rows),
        x_test: matrix.select(Axis(0), &test_rows),
        y_test: labels(&test_rows),
        classes: set.class_names.len(),
    }
}

fn compare(case: &Case) {
    let params = TrainParams::default();
    let (n, test) = (case.y_train.len(), case.y_test.len());
    let dim = case.x_train.ncols();
    let names: Vec<String> = (0..case.classes).map(|c| format!("class{c}")).collect();

    let started = Instant::now();
    let (head, report) =
        train(case.x_train.view(), &case.y_train, &names, &params).expect("training");
    let ours = started.elapsed().as_secs_f64();
    let ours_accuracy = accuracy(
        &head.probabilities(case.x_test.view(), report.temperature),
        &case.y_test,
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data.npz");
    let folds: Vec<i64> = stratified_folds(&case.y_train, params.folds, params.seed)
        .iter()
        .map(|&f| f as i64)
        .collect();
    let as_i64 = |v: &[usize]| v.iter().map(|&c| c as i64).collect::<Vec<i64>>();
    let grid: Vec<f32> = params.grid.iter().map(|&c| c as f32).collect();
    let (y_train64, y_test64) = (as_i64(&case.y_train), as_i64(&case.y_test));
    write_npz(
        &data,
        &[
            (
                "x_train",
                NpyArray::F32 {
                    shape: vec![n, dim],
                    data: case.x_train.as_slice().expect("contiguous"),
                },
            ),
            (
                "y_train",
                NpyArray::I64 {
                    shape: vec![n],
                    data: &y_train64,
                },
            ),
            (
                "folds",
                NpyArray::I64 {
                    shape: vec![n],
                    data: &folds,
                },
            ),
            (
                "x_test",
                NpyArray::F32 {
                    shape: vec![test, dim],
                    data: case.x_test.as_slice().expect("contiguous"),
                },
            ),
            (
                "y_test",
                NpyArray::I64 {
                    shape: vec![test],
                    data: &y_test64,
                },
            ),
            (
                "grid",
                NpyArray::F32 {
                    shape: vec![grid.len()],
                    data: &grid,
                },
            ),
        ],
    )
    .expect("writes the data");
    let name = &case.name;
    match scikit_learn(&data) {
        Ok((seconds, theirs)) => println!(
            "| {name} | {n} | {ours:.1} | {seconds:.1} | {:.2}x | {ours_accuracy:.4} | {theirs:.4} | {:+.4} |",
            ours / seconds,
            ours_accuracy - theirs
        ),
        Err(why) => {
            println!("| {name} | {n} | {ours:.1} | not run: {why} | | {ours_accuracy:.4} | | |")
        }
    }
}

/// K Gaussian classes: a random unit-scale mean each, unit noise per feature.
fn embeddings(n: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = SplitMix64(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
    let mut normal = move || {
        let (u, v) = (uniform().max(1e-12), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let means = Array2::from_shape_simple_fn((K, D), || 0.07 * normal());
    let y: Vec<usize> = (0..n).map(|i| i % K).collect();
    let x = Array2::from_shape_fn((n, D), |(i, j)| means[[y[i], j]] + normal());
    (x, y)
}

fn accuracy(probabilities: &Array2<f32>, truth: &[usize]) -> f64 {
    let correct = probabilities
        .rows()
        .into_iter()
        .zip(truth)
        .filter(|(r, t)| argmax(r.as_slice().unwrap_or(&[])) == **t);
    correct.count() as f64 / truth.len() as f64
}

/// Index of the largest value (the first one on ties), as the library decides a prediction.
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// benches/reference_heads.py on the same data: (seconds, test accuracy).
fn scikit_learn(data: &Path) -> Result<(f64, f64), String> {
    let result = common::python_reference(
        "reference_heads.py",
        "numpy, sklearn",
        &["numpy", "scikit-learn"],
        &[data.as_os_str()],
    )?;
    Ok((
        result["seconds"].as_f64().ok_or("no seconds")?,
        result["accuracy"].as_f64().ok_or("no accuracy")?,
    ))
}
