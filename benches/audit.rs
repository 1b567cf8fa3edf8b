//! Label issues, side by side in one run on the same embeddings: headstart's audit (confident learning over its
//! head's out-of-fold probabilities) against cleanlab (`find_label_issues` on 5-fold out-of-fold probabilities of a
//! scikit-learn logistic regression; benches/reference_audit.py). ELPV cells (defective / functional) with a seeded
//! fraction of the labels flipped (5 % and 20 %): precision, recall and F1 of the flagged rows against the flipped
//! ones, precision at k = the number flipped, and the seconds each took (embedding excluded from both).
//!
//! cargo bench --bench audit
//!   HEADSTART_BENCH_IMAGES=N   ELPV images used (2000)

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use headstart::audit::{AuditOptions, AuditSet, audit};
use headstart::data::{Data, TextOptions};
use headstart::embeddings::EmbeddedSet;
use headstart::{datasets, workflow};

mod common;

fn main() {
    let count = std::env::var("HEADSTART_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let elpv = datasets::elpv_by_defect().expect("ELPV fetch");
    let data = Data::open(&elpv, &TextOptions::default()).expect("ELPV opens");
    let (set, _) = workflow::embeddings_for(
        &data,
        None,
        &Default::default(),
        &Default::default(),
        &mut |_, _| {},
    )
    .expect("embeddings");
    let mut rows: Vec<usize> = (0..set.rows()).collect();
    common::rng::SplitMix64(7).shuffle(&mut rows);
    rows.truncate(count);
    rows.sort_unstable();
    let set = set.select(&rows);
    let work = tempfile::tempdir().expect("temp dir");
    println!(
        "\n## Label issues on {} ELPV cells ({} classes), labels flipped at random\n",
        set.rows(),
        set.class_names.len()
    );
    println!("| flipped | tool | flagged | precision | recall | F1 | precision at k | seconds |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for rate in [0.05, 0.20] {
        let (noisy, flipped) = flip(&set, rate, 11);
        let content: Vec<String> = (0..noisy.rows()).map(|row| row.to_string()).collect();
        let started = Instant::now();
        let found = audit(
            &AuditSet {
                set: &noisy,
                content: &content,
            },
            None,
            &AuditOptions::default(),
        )
        .expect("audit");
        let seconds = started.elapsed().as_secs_f64();
        let row_of = |path: &str| noisy.paths.iter().position(|p| p == path).expect("row");
        let ranked: Vec<usize> = found.label_issues.iter().map(|i| row_of(&i.path)).collect();
        report(rate, "headstart audit", &ranked, &flipped, seconds);
        match cleanlab(work.path(), &noisy) {
            Ok((ranked, seconds)) => {
                report(rate, "cleanlab + scikit-learn", &ranked, &flipped, seconds)
            }
            Err(why) => println!(
                "| {:.0} % | cleanlab | not run: {why} | | | | | |",
                rate * 100.0
            ),
        }
    }
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

/// benches/reference_audit.py on the same embeddings and noisy labels: its ranked rows and seconds.
fn cleanlab(work: &Path, set: &EmbeddedSet) -> Result<(Vec<usize>, f64), String> {
    let npz = work.join("noisy.npz");
    set.write_npz(&npz).map_err(|e| e.to_string())?;
    let labels = work.join("labels.json");
    let json = serde_json::to_string(set.labels.as_ref().ok_or("unlabelled")?)
        .map_err(|e| e.to_string())?;
    std::fs::write(&labels, json).map_err(|e| e.to_string())?;
    let result = common::python_reference(
        "reference_audit.py",
        "numpy, sklearn, cleanlab",
        &["numpy", "scikit-learn", "cleanlab==2.9.0"],
        &[npz.as_os_str(), labels.as_os_str()],
    )?;
    let ranked = result["ranked"]
        .as_array()
        .ok_or("no ranking")?
        .iter()
        .filter_map(|v| v.as_u64().map(|v| v as usize))
        .collect();
    let seconds = result["seconds"].as_f64().ok_or("no time")?;
    Ok((ranked, seconds))
}
