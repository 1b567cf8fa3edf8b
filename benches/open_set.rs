//! Open-set rejection, measured: train on all classes but one, then score the known classes' held-out rows and
//! every row of the class left out. Reports the AUROC of known-vs-left-out for the novelty score (k-th nearest
//! training embedding) beside the softmax baseline (1 − the top probability), and the rates at the default
//! threshold (5 % false rejection, set on out-of-fold training data): left-out rows rejected, known rows rejected.
//!
//! Image data: ELPV's cells as four classes, cell type × defect (`mono-defective`, …). Text data: the
//! question-router table (examples/data/questions.csv, three classes), and that router asked movie-review
//! snippets (VADER) it was never meant for.
//!
//! cargo bench --bench open_set          (HEADSTART_BENCH_NOVELTY_K=5 to score by another neighbour)

use std::collections::HashMap;
use std::path::Path;

mod common;

use common::rng::SplitMix64;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::embeddings::{EmbedOptions, EmbeddedSet};
use headstart::head::cv::stratified_folds;
use headstart::head::{ClassScores, Novelty, NoveltyParams, TrainParams, train};
use headstart::{Data, datasets, workflow, zoo};
use ndarray::{Array2, Axis};

/// The fraction of each known class held out as known test rows.
const TEST_FRACTION: f64 = 0.3;

fn main() {
    println!(
        "| data | left out | known train / test | left-out rows | AUROC novelty | AUROC softmax | left-out rejected | known rejected |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let (matrix, labels, names) = elpv_four_classes();
    for left_out in 0..names.len() {
        measure("ELPV cells", &matrix, &labels, &names, left_out, None);
    }
    let (questions, question_labels, question_names) = embed_table(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/questions.csv"
    )));
    for left_out in 0..question_names.len() {
        measure(
            "questions",
            &questions,
            &question_labels,
            &question_names,
            left_out,
            None,
        );
    }
    let (reviews, _, _) = embed_table(&datasets::vader_movies().expect("fetches VADER"));
    let reviews = reviews.slice(ndarray::s![..500, ..]).to_owned();
    measure(
        "questions",
        &questions,
        &question_labels,
        &question_names,
        usize::MAX,
        Some(("500 movie reviews", &reviews)),
    );
}

/// Trains on every class but `left_out` (or on all, with `foreign` rows as the unknowns) and prints a row.
fn measure(
    data: &str,
    x: &Array2<f32>,
    y: &[usize],
    names: &[String],
    left_out: usize,
    foreign: Option<(&str, &Array2<f32>)>,
) {
    let mut rng = SplitMix64(42);
    let known_classes: Vec<usize> = (0..names.len()).filter(|&c| c != left_out).collect();
    let (mut train_rows, mut test_rows) = (Vec::new(), Vec::new());
    for &class in &known_classes {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut members);
        let test = (members.len() as f64 * TEST_FRACTION).round() as usize;
        test_rows.extend_from_slice(&members[..test]);
        train_rows.extend_from_slice(&members[test..]);
    }
    // Known classes renumbered 0..K-1.
    let renumber: HashMap<usize, usize> = known_classes
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, i))
        .collect();
    let x_train = x.select(Axis(0), &train_rows);
    let y_train: Vec<usize> = train_rows.iter().map(|&i| renumber[&y[i]]).collect();
    let train_names: Vec<String> = known_classes.iter().map(|&c| names[c].clone()).collect();
    let params = TrainParams::default();
    let (head, report) = train(x_train.view(), &y_train, &train_names, &params).expect("trains");
    let fold_of = stratified_folds(&y_train, params.folds, params.seed);
    let novelty_params = NoveltyParams::default().k(std::env::var("HEADSTART_BENCH_NOVELTY_K")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(NoveltyParams::default().k));
    let novelty = Novelty::fit(x_train.view(), &fold_of, params.folds, &novelty_params)
        .expect("fits the novelty score");

    let known = x.select(Axis(0), &test_rows);
    let (unknown, left_out_name) = match foreign {
        Some((name, rows)) => (rows.clone(), name.to_string()),
        None => {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == left_out).collect();
            (x.select(Axis(0), &rows), names[left_out].clone())
        }
    };
    let novelty_known = novelty.scores(known.view()).to_vec();
    let novelty_unknown = novelty.scores(unknown.view()).to_vec();
    let doubt = |rows: &Array2<f32>| -> Vec<f32> {
        head.probabilities(rows.view(), report.temperature)
            .rows()
            .into_iter()
            .map(|r| 1.0 - r.iter().copied().fold(0.0f32, f32::max))
            .collect()
    };
    let rejected = |scores: &[f32]| {
        scores.iter().filter(|&&s| novelty.is_novel(s)).count() as f64 / scores.len() as f64
    };
    println!(
        "| {data} | {left_out_name} | {} / {} | {} | {:.3} | {:.3} | {:.1}% | {:.1}% |",
        train_rows.len(),
        test_rows.len(),
        unknown.nrows(),
        auroc(&novelty_unknown, &novelty_known),
        auroc(&doubt(&unknown), &doubt(&known)),
        100.0 * rejected(&novelty_unknown),
        100.0 * rejected(&novelty_known),
    );
}

/// The probability that a random positive scores above a random negative (ties count half).
fn auroc(positives: &[f32], negatives: &[f32]) -> f64 {
    let mut wins = 0.0;
    for &p in positives {
        for &n in negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

fn embed(data: &Data) -> EmbeddedSet {
    let modality = data.modality().expect("images or texts");
    let reference = BackboneRef::Zoo(zoo::default_for(modality).name);
    workflow::embeddings_for(
        data,
        Some(&reference),
        &BackboneOptions::default(),
        &EmbedOptions::default(),
        &mut |_, _| {},
    )
    .expect("embeds")
    .0
}

/// ELPV's cells as cell type × defect, from its labels.csv (`images/cellNNNN.png probability type`).
fn elpv_four_classes() -> (Array2<f32>, Vec<usize>, Vec<String>) {
    let source = datasets::elpv().expect("fetches ELPV");
    let labels = std::fs::read_to_string(source.join("labels.csv")).expect("reads labels.csv");
    let class_of: HashMap<String, String> = labels
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [path, probability, cell_type] = fields.as_slice() else {
                return None;
            };
            let defect = if probability.parse::<f32>().ok()? >= 0.5 {
                "defective"
            } else {
                "functional"
            };
            let name = Path::new(path).file_name()?.to_string_lossy().to_string();
            Some((name, format!("{cell_type}-{defect}")))
        })
        .collect();
    let folder = datasets::elpv_by_defect().expect("fetches ELPV");
    let set = embed(&Data::open(&folder, &Default::default()).expect("lists ELPV"));
    let mut names: Vec<String> = class_of.values().cloned().collect();
    names.sort();
    names.dedup();
    let y: Vec<usize> = set
        .paths
        .iter()
        .map(|path| {
            let file = Path::new(path)
                .file_name()
                .expect("a file")
                .to_string_lossy();
            let class = &class_of[file.as_ref()];
            names.iter().position(|n| n == class).expect("a class")
        })
        .collect();
    (set.matrix().to_owned(), y, names)
}

/// A labelled text table's embeddings, labels and class names.
fn embed_table(path: &Path) -> (Array2<f32>, Vec<usize>, Vec<String>) {
    let set = embed(&Data::open(path, &Default::default()).expect("reads the table"));
    let labels = set.labels.clone().expect("labelled");
    (set.matrix().to_owned(), labels, set.class_names.clone())
}
