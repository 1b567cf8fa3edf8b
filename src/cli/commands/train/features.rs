//! `train --features auto`: the search's progress lines and its table, around [`workflow::search_features`].

use std::path::Path;
use std::time::Duration;

use headstart::Modality;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::data::Data;
use headstart::head::TrainParams;
use headstart::workflow::{self, FeatureSearch, SearchEvent, SearchSettings, Validation};

use crate::cli::failure::Outcome;
use crate::cli::flags::EmbedFlags;
use crate::cli::print::{print_embed_summary, print_trained, trained_json};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FeatureChoice {
    /// The backbone's output, or the --layer given
    #[default]
    Given,
    /// Chosen by cross-validation among candidates
    Auto,
}

/// "90s", "5m", "1h" or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a time such as 90s or 5m"))?;
    let seconds = match unit {
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown time unit '{other}' (use s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("'{text}' is not a time of zero or more"))
}

/// Trains on the features the search chooses and writes the bundle to `output`.
#[allow(clippy::too_many_arguments)]
pub fn train_auto(
    data: &Data,
    validation: &Validation,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    flags: &EmbedFlags,
    params: &TrainParams,
    settings: &SearchSettings,
    output: &Path,
) -> Outcome {
    let talk = !flags.quiet && !flags.json;
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let mut events = |event: SearchEvent| {
        if !talk {
            return;
        }
        match event {
            SearchEvent::Starting {
                index,
                planned,
                candidate,
            } => eprintln!("candidate {}/{planned}: {candidate}", index + 1),
            SearchEvent::Scored(scored) => eprintln!(
                "  {}-d, cross-validated {:.4} ± {:.4} over {} folds{}, embedded in {:.1} s{}",
                scored.dim,
                scored.cv_accuracy,
                scored.fold_spread(),
                scored.fold_accuracies.len(),
                scored
                    .validation_accuracy
                    .map_or(String::new(), |a| format!(", validation {a:.4}")),
                scored.embed_seconds,
                match (scored.embedded_together, scored.from_cache) {
                    (true, 0) => " (one pass for the backbone's tensors)".to_string(),
                    (true, n) =>
                        format!(" (one pass for the backbone's tensors; {n} from the cache)"),
                    (false, 0) => String::new(),
                    (false, n) => format!(" ({n} from the cache)"),
                }
            ),
            SearchEvent::OutOfTime(left) => eprintln!(
                "the budget is spent: {} candidate(s) not tried ({})",
                left.len(),
                left.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    };
    let result = workflow::search_features(
        data,
        validation,
        backbone,
        options,
        &flags.options(),
        params,
        settings,
        &mut events,
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    let search = result?;
    let trained = &search.run.trained;
    trained.bundle.save(output)?;
    if flags.json {
        let candidates: Vec<serde_json::Value> = search
            .scored
            .iter()
            .map(|s| {
                let mut value = serde_json::to_value(s).unwrap_or_default();
                value["fold_spread"] = s.fold_spread().into();
                value
            })
            .collect();
        let mut value = trained_json(trained, &search.run.summary, output);
        value["features"] = serde_json::json!({
            "candidates": candidates,
            "chosen": search.chosen,
            "not_tried": search.not_tried,
            "seconds": search.seconds,
        });
        println!("{value}");
    } else if !flags.quiet {
        if let Some(summary) = &search.run.summary {
            print_embed_summary(summary, flags.verbose);
        }
        print_search(&search);
        print_trained(trained, output);
    }
    Ok(())
}

fn print_search(search: &FeatureSearch) {
    println!(
        "features by {}-fold cross-validation on the training rows ({} candidates, {:.1} s):",
        search.scored[search.chosen].fold_accuracies.len(),
        search.scored.len(),
        search.seconds
    );
    println!(
        "    {:<56} {:>6} {:>8} {:>8} {:>10} {:>8}",
        "candidate", "dim", "cv", "± folds", "validation", "embed s"
    );
    for (i, scored) in search.scored.iter().enumerate() {
        println!(
            "  {} {:<56} {:>6} {:>8.4} {:>8.4} {:>10} {:>8.1}",
            if i == search.chosen { "*" } else { " " },
            scored.candidate.to_string(),
            scored.dim,
            scored.cv_accuracy,
            scored.fold_spread(),
            scored
                .validation_accuracy
                .map_or("-".to_string(), |a| format!("{a:.4}")),
            scored.embed_seconds
        );
    }
    println!("  * chosen; its bundle predicts and exports like any other\n");
}
