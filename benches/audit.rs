//! The data audit side by side in one run on the same embeddings: headstart's audit against cleanlab 2.9.0
//! (benches/reference_audit.py), embedding excluded from both.
//! - Label issues: confident learning over headstart's head's out-of-fold probabilities, against cleanlab's
//!   `find_label_issues` on 5-fold out-of-fold probabilities of a scikit-learn logistic regression. ELPV cells
//!   (defective / functional) and VADER's movie snippets (positive / negative, all-MiniLM-L6-v2) with a seeded
//!   fraction of the labels flipped (5 % and 20 %): precision, recall and F1 of the flagged rows against the flipped
//!   ones, precision at k = the number flipped, and the seconds each took.
//! - Near copies and the whole audit: the ELPV cells plus near copies of some of them (re-encoded as JPEG and a
//!   little brighter), half in their own class and half in the other: how many of the planted pairs each finds
//!   and how many pairs it flags, and the seconds of the whole audit (headstart: labels, duplicates, outliers;
//!   cleanlab: cross_val_predict and Datalab's label, near_duplicate and outlier checks).
//!
//! cargo bench --bench audit
//!   HEADSTART_BENCH_IMAGES=N   ELPV images used (2000)
//!   HEADSTART_BENCH_TEXTS=N    movie snippets used (2000)
//!   HEADSTART_BENCH_COPIES=N   near copies planted (100)

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use headstart::audit::{Audit, AuditOptions, AuditSet, audit};
use headstart::data::{Data, TextOptions};
use headstart::embeddings::EmbeddedSet;
use headstart::{datasets, workflow};

mod common;

fn main() {
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let work = tempfile::tempdir().expect("temp dir");
    let elpv = datasets::elpv_by_defect().expect("ELPV fetch");
    let cells = sample(&embedded(&elpv), setting("HEADSTART_BENCH_IMAGES", 2000));
    label_issues(work.path(), "ELPV cells", &cells);

    let table = work.path().join("snippets.jsonl");
    let snippets = std::fs::read_to_string(datasets::vader_movies().expect("VADER fetch"))
        .expect("the snippets");
    let mut lines: Vec<&str> = snippets.lines().collect();
    common::rng::SplitMix64(5).shuffle(&mut lines);
    lines.truncate(setting("HEADSTART_BENCH_TEXTS", 2000));
    std::fs::write(&table, lines.join("\n")).expect("a table");
    label_issues(work.path(), "VADER movie snippets", &embedded(&table));

    near_copies(
        work.path(),
        &elpv,
        &cells,
        setting("HEADSTART_BENCH_COPIES", 100),
    );
}

fn embedded(path: &Path) -> EmbeddedSet {
    let data = Data::open(path, &TextOptions::default()).expect("the data opens");
    workflow::embeddings_for(
        &data,
        None,
        &Default::default(),
        &Default::default(),
        &mut |_, _| {},
    )
    .expect("embeddings")
    .0
}

/// `count` rows of `set` drawn at random (seeded), in their order.
fn sample(set: &EmbeddedSet, count: usize) -> EmbeddedSet {
    let mut rows: Vec<usize> = (0..set.rows()).collect();
    common::rng::SplitMix64(7).shuffle(&mut rows);
    rows.truncate(count);
    rows.sort_unstable();
    set.select(&rows)
}

fn label_issues(work: &Path, name: &str, set: &EmbeddedSet) {
    println!(
        "\n## Label issues on {} {name} ({} classes), labels flipped at random\n",
        set.rows(),
        set.class_names.len()
    );
    println!("| flipped | tool | flagged | precision | recall | F1 | precision at k | seconds |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for rate in [0.05, 0.20] {
        let (noisy, flipped) = flip(set, rate, 11);
        let (found, seconds) = timed_audit(&noisy);
        let row_of = |path: &str| noisy.paths.iter().position(|p| p == path).expect("row");
        let ranked: Vec<usize> = found.label_issues.iter().map(|i| row_of(&i.path)).collect();
        report(rate, "headstart audit", &ranked, &flipped, seconds);
        match cleanlab(work, &noisy, "labels") {
            Ok(result) => report(
                rate,
                "cleanlab + scikit-learn",
                &rows_in(&result["ranked"]),
                &flipped,
                result["seconds"].as_f64().unwrap_or(f64::NAN),
            ),
            Err(why) => println!(
                "| {:.0} % | cleanlab | not run: {why} | | | | | |",
                rate * 100.0
            ),
        }
    }
}

/// `cells` and near copies of `count` of them (every other one filed in the other class): the pairs each audit
/// finds, and the whole audit's time.
fn near_copies(work: &Path, elpv: &Path, cells: &EmbeddedSet, count: usize) {
    let copies_dir = work.join("copies");
    std::fs::create_dir_all(&copies_dir).expect("a folder");
    let mut originals: Vec<usize> = (0..cells.rows()).collect();
    common::rng::SplitMix64(13).shuffle(&mut originals);
    originals.truncate(count);
    let copies: Vec<PathBuf> = originals
        .iter()
        .map(|&row| {
            let copy = copies_dir.join(format!("copy-{row}.jpg"));
            let picture = image::open(elpv.join(&cells.paths[row]))
                .expect("a cell")
                .brighten(4);
            let mut bytes = Vec::new();
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
            picture.to_rgb8().write_with_encoder(encoder).expect("JPEG");
            std::fs::write(&copy, bytes).expect("written");
            copy
        })
        .collect();
    let copied = embedded_files(&copies);
    let labels = cells.labels.as_ref().expect("labelled");
    let classes = cells.class_names.len();
    let mut set = cells.clone();
    set.embeddings.extend_from_slice(&copied.embeddings);
    set.paths.extend(copied.paths.iter().cloned());
    set.augmented.extend(copied.augmented.iter().copied());
    let with_copies = set.labels.as_mut().expect("labelled");
    for (i, &row) in originals.iter().enumerate() {
        with_copies.push((labels[row] + i % 2) % classes);
    }
    let planted: Vec<(usize, usize)> = originals
        .iter()
        .enumerate()
        .map(|(i, &row)| (row, cells.rows() + i))
        .collect();

    println!(
        "\n## Near copies and the whole audit: {} ELPV cells and {count} near copies of them (JPEG quality 90, a \
         little brighter; every other one in the other class)\n",
        cells.rows()
    );
    println!(
        "| tool | planted pairs found | recall | pairs flagged | flagged / planted | label issues | outliers | seconds (whole audit) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (found, seconds) = timed_audit(&set);
    let row_of = |path: &String| set.paths.iter().position(|p| p == path).expect("row");
    let groups: Vec<Vec<usize>> = found
        .duplicates
        .iter()
        .map(|g| g.paths.iter().map(row_of).collect())
        .collect();
    pairs_row(
        "headstart audit",
        &groups,
        &planted,
        found.label_issues.len(),
        found.outliers.len(),
        seconds,
    );
    match cleanlab(work, &set, "datalab") {
        Ok(result) => {
            let groups: Vec<Vec<usize>> = result["near_duplicate_pairs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(rows_in)
                .collect();
            let count = |field: &str| result[field].as_u64().unwrap_or(0) as usize;
            pairs_row(
                "cleanlab Datalab + scikit-learn",
                &groups,
                &planted,
                count("label_issues"),
                count("outliers"),
                result["seconds"].as_f64().unwrap_or(f64::NAN),
            );
        }
        Err(why) => println!("| cleanlab | not run: {why} | | | | | | |"),
    }
}

/// headstart's whole audit of `set` (every row its own content: no exact copies) and its seconds.
fn timed_audit(set: &EmbeddedSet) -> (Audit, f64) {
    let content: Vec<String> = (0..set.rows()).map(|row| row.to_string()).collect();
    let started = Instant::now();
    let found = audit(
        &AuditSet {
            set,
            content: &content,
        },
        None,
        &AuditOptions::default(),
    )
    .expect("audit");
    (found, started.elapsed().as_secs_f64())
}

/// Embeddings of image files, unlabelled, in the order given.
fn embedded_files(paths: &[PathBuf]) -> EmbeddedSet {
    workflow::embeddings_for(
        &Data::image_files(paths),
        None,
        &Default::default(),
        &Default::default(),
        &mut |_, _| {},
    )
    .expect("embeddings")
    .0
}

/// A table row: the planted pairs among the pairs within `groups`.
fn pairs_row(
    tool: &str,
    groups: &[Vec<usize>],
    planted: &[(usize, usize)],
    label_issues: usize,
    outliers: usize,
    seconds: f64,
) {
    let mut pairs: HashSet<(usize, usize)> = HashSet::new();
    for group in groups {
        for (i, &a) in group.iter().enumerate() {
            for &b in &group[i + 1..] {
                pairs.insert((a.min(b), a.max(b)));
            }
        }
    }
    let found = planted
        .iter()
        .filter(|&&(a, b)| pairs.contains(&(a.min(b), a.max(b))))
        .count();
    println!(
        "| {tool} | {found} of {} | {:.3} | {} | {:.2} | {label_issues} | {outliers} | {seconds:.2} |",
        planted.len(),
        found as f64 / planted.len().max(1) as f64,
        pairs.len(),
        pairs.len() as f64 / planted.len().max(1) as f64
    );
}

fn rows_in(value: &serde_json::Value) -> Vec<usize> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64().map(|v| v as usize))
        .collect()
}

/// `set` with a seeded `rate` of its labels moved to another class, and which rows were.
fn flip(set: &EmbeddedSet, rate: f64, seed: u64) -> (EmbeddedSet, HashSet<usize>) {
    let mut noisy = set.clone();
    let labels = noisy.labels.as_mut().expect("labelled");
    let mut rows: Vec<usize> = (0..labels.len()).collect();
    common::rng::SplitMix64(seed).shuffle(&mut rows);
    let classes = set.class_names.len();
    let flipped: HashSet<usize> = rows
        .into_iter()
        .take((labels.len() as f64 * rate).round() as usize)
        .collect();
    for &row in &flipped {
        labels[row] = (labels[row] + 1) % classes;
    }
    (noisy, flipped)
}

fn report(rate: f64, tool: &str, ranked: &[usize], flipped: &HashSet<usize>, seconds: f64) {
    let hits = ranked.iter().filter(|r| flipped.contains(r)).count() as f64;
    let precision = hits / ranked.len().max(1) as f64;
    let recall = hits / flipped.len().max(1) as f64;
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let k = flipped.len();
    let at_k = ranked
        .iter()
        .take(k)
        .filter(|r| flipped.contains(r))
        .count() as f64
        / k.max(1) as f64;
    println!(
        "| {:.0} % | {tool} | {} | {precision:.3} | {recall:.3} | {f1:.3} | {at_k:.3} | {seconds:.2} |",
        rate * 100.0,
        ranked.len()
    );
}

/// benches/reference_audit.py (`mode`: labels, or datalab) on the same embeddings and labels: its answer.
fn cleanlab(work: &Path, set: &EmbeddedSet, mode: &str) -> Result<serde_json::Value, String> {
    let npz = work.join("noisy.npz");
    set.write_npz(&npz).map_err(|e| e.to_string())?;
    let labels = work.join("labels.json");
    let json = serde_json::to_string(set.labels.as_ref().ok_or("unlabelled")?)
        .map_err(|e| e.to_string())?;
    std::fs::write(&labels, json).map_err(|e| e.to_string())?;
    // Datalab turns its data into a Hugging Face `datasets` table; datasets 5.2.0 with pyarrow 26.0.1 (the newest)
    // fail there (dill cannot pickle pyarrow's MonthDayNano), 3.6.0 with 20.0.0 work.
    common::python_reference_in(
        "python-audit-bench",
        "reference_audit.py",
        "numpy, sklearn, cleanlab, datasets",
        &[
            "numpy",
            "scikit-learn",
            "cleanlab[datalab]==2.9.0",
            "datasets==3.6.0",
            "pyarrow==20.0.0",
        ],
        &[OsStr::new(mode), npz.as_os_str(), labels.as_os_str()],
    )
}
