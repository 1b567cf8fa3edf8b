//! Printing that several commands share: the embedding summary, the training report, safe table cells.

use std::path::Path;

use headstart::embeddings::EmbedSummary;
use headstart::head::TrainReport;
use headstart::workflow;
use headstart::{Modality, Prediction};

use super::flags::flag;

pub fn print_embed_summary(summary: &EmbedSummary, verbose: bool) {
    let (things, unit) = match summary.modality {
        Modality::Text => ("texts", "texts"),
        Modality::Image => ("files", "images"),
    };
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "embedded {} of {} {things} ({} rows: {} from cache, {} computed) in {:.1} s, {:.1} {unit}/s on {}",
        summary.embedded,
        summary.files,
        summary.rows,
        summary.from_cache,
        summary.computed,
        summary.seconds,
        summary.per_second,
        summary.device
    );
    if !summary.precision.is_fp32() {
        println!("  the backbone ran in {}", summary.precision);
    }
    if verbose {
        let s = &summary.stages;
        println!(
            "stages (s, summed over threads): read {:.2}, decode {:.2}, preprocess {:.2}, waiting for input {:.2}, \
             inference {:.2} (batches of {}), write {:.2}",
            s.read, s.decode, s.preprocess, s.waiting, s.inference, summary.batch_size, s.write
        );
        match (&summary.placement, summary.device.is_cuda()) {
            (Some(placement), _) => println!("{placement}"),
            (None, true) => println!("ONNX Runtime did not report where it placed the nodes"),
            (None, false) => {}
        }
    }
    if let Some(truncated @ 1..) = summary.truncated {
        println!("truncated {truncated} texts longer than the backbone's maximum length");
    }
    if !summary.skipped.is_empty() {
        println!("skipped {}:", summary.skipped.len());
        for skip in &summary.skipped {
            println!("  {}: {}", printable(&skip.path), skip.reason);
        }
    }
    for class in &summary.empty_classes {
        println!("empty class folder: {class}");
    }
}

pub fn print_train_report(report: &TrainReport) {
    for warning in &report.warnings {
        println!("warning: {}", warning.describe(flag));
    }
    println!(
        "trained {} head on {} embeddings in {:.2} s",
        report.head, report.samples, report.seconds
    );
    if !report.cv.is_empty() {
        let grid: Vec<String> = report
            .cv
            .iter()
            .map(|(c, acc)| format!("C={c}: {acc:.4}"))
            .collect();
        println!(
            "  {}-fold cross-validated accuracy: {}",
            report.folds,
            grid.join("  ")
        );
    }
    if let Some(c) = report.chosen_c {
        println!("  chosen C = {c}");
    }
    println!(
        "  out-of-fold accuracy {:.4}, calibrated temperature {:.3}",
        report.cv_accuracy, report.temperature
    );
}

/// `train --json`'s fields for a bundle written to `output`.
pub fn trained_json(
    trained: &workflow::Trained,
    summary: &Option<EmbedSummary>,
    output: &Path,
) -> serde_json::Value {
    serde_json::json!({
        "bundle": output.display().to_string(),
        "embed": summary,
        "train": trained.report,
        "open_set": trained.bundle.info.training.open_set,
        "validation": trained.validation,
    })
}

/// What `train` says about a bundle written to `output`: training, open-set threshold, validation metrics.
pub fn print_trained(trained: &workflow::Trained, output: &Path) {
    print_train_report(&trained.report);
    if let Some(open_set) = &trained.bundle.info.training.open_set {
        println!(
            "  open-set: unknown beyond novelty {:.4} ({:.1}% of out-of-fold training inputs; {} reference embeddings)",
            open_set.threshold,
            open_set.false_rejection * 100.0,
            open_set.reference
        );
    }
    if let Some(metrics) = &trained.validation {
        println!(
            "\nvalidation ({} samples)\n{}",
            metrics.samples,
            metrics.render()
        );
    }
    println!("wrote {}", output.display());
}

/// Texts in a table are cut to this many characters (CSV and JSON carry them whole).
pub const TABLE_TEXT: usize = 100;

/// `text`, or its start and an ellipsis when it is longer than a table cell takes.
pub fn shortened(text: &str) -> String {
    if text.chars().nth(TABLE_TEXT).is_none() {
        return text.to_string();
    }
    let end = text
        .char_indices()
        .nth(TABLE_TEXT - 1)
        .map_or(text.len(), |(at, _)| at);
    format!("{}…", &text[..end])
}

/// `text` with control characters escaped (`\n`, `\u{1b}`): a file name cannot move the cursor or
/// colour the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// A text as one CSV field. One that a spreadsheet would run as a formula gets a leading `'`, as OWASP
/// advises against CSV injection.
pub fn csv_field(text: &str) -> String {
    let text = match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One answer as `predict --format json` and `headstart serve` give it: the label ("unknown" for none), the top
/// classes with their probabilities, and the novelty and labels where the bundle gives them.
pub fn answer_json(answer: &Prediction) -> serde_json::Value {
    let top: Vec<serde_json::Value> = answer
        .top
        .iter()
        .map(|(class, probability)| serde_json::json!({"class": class, "probability": probability}))
        .collect();
    let label = answer.label.as_deref().unwrap_or("unknown");
    let mut item = serde_json::json!({"label": label, "top": top});
    if let Some(novelty) = answer.novelty {
        item["novelty"] = serde_json::json!(novelty);
        item["novel"] = serde_json::json!(answer.novel);
    }
    if let Some(labels) = &answer.labels {
        item["labels"] = serde_json::json!(labels);
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@sum"), "'@sum");
        assert_eq!(csv_field("-2"), "'-2");
    }

    #[test]
    fn long_texts_are_cut_for_a_table() {
        assert_eq!(shortened("short"), "short");
        assert_eq!(shortened(&"a".repeat(TABLE_TEXT)), "a".repeat(TABLE_TEXT));
        let long = "é".repeat(5_000_000);
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), TABLE_TEXT);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("cat\u{1b}[31m.png"), "cat\\u{1b}[31m.png");
        assert_eq!(printable("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(printable("ünïcode ok"), "ünïcode ok");
    }
}
