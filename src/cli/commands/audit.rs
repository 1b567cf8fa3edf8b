//! `headstart audit`: what is wrong with labelled data before it is trained on.

use std::path::PathBuf;

use clap::Args;
use headstart::Modality;
use headstart::audit::{Action, Audit, AuditOptions, write_fixes};
use headstart::data::Data;
use headstart::head::{HeadKind, TrainParams};
use headstart::runtime::RuntimeOptions;
use headstart::workflow::report::{AuditPage, Shown, write_audit_report};
use headstart::workflow::{self, AuditRun};

use crate::cli::failure::Outcome;
use crate::cli::flags::{BackboneArgs, EmbedFlags, FixFlags, TextFlags};
use crate::cli::print::print_embed_summary;

#[derive(Args)]
pub struct AuditArgs {
    /// A folder with one sub-folder per class (images, or .txt files), a text table (.csv, .tsv, .jsonl), or an
    /// .npz from `headstart embed`
    pub input: PathBuf,
    /// Also look for inputs of this labelled folder, table or .npz that are in INPUT too (leakage)
    #[arg(long, value_name = "DATA")]
    pub val: Option<PathBuf>,
    /// The head whose out-of-fold probabilities judge the labels [default: logistic]
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
    /// Cross-validation folds [default: 5]
    #[arg(long)]
    pub folds: Option<usize>,
    /// [default: 42]
    #[arg(long)]
    pub seed: Option<u64>,
    /// The cosine similarity from which two inputs count as the same [default: calibrated on the data]
    #[arg(long, value_name = "SIMILARITY")]
    pub same_input_similarity: Option<f32>,
    /// Write an HTML page of what was found: thumbnails or texts beside typical inputs of their classes
    #[arg(long, value_name = "AUDIT.html")]
    pub report: Option<PathBuf>,
    /// Write a fixes file: one row per flagged input (path, given, action, suggested, reason) with the action
    /// suggested (relabel, exclude, keep), to edit and give to `headstart train --exclude / --relabel`
    #[arg(long, value_name = "FIXES.csv")]
    pub write_fixes: Option<PathBuf>,
    /// Rows listed per kind of problem on the terminal (--json lists them all)
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub show: usize,
    #[command(flatten)]
    pub fixes: FixFlags,
    #[command(flatten)]
    pub text_flags: TextFlags,
    #[command(flatten)]
    pub embed: EmbedFlags,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

pub fn run(args: AuditArgs, runtime: RuntimeOptions) -> Outcome {
    let options = args
        .backbone
        .options(runtime, args.text_flags.tokenizer.clone())?;
    let text = args.text_flags.options();
    let flags = &args.embed;
    let data = args
        .fixes
        .apply(Data::open(&args.input, &text)?, flags.quiet)?;
    let validation = args
        .val
        .as_deref()
        .map(|path| Data::open(path, &text))
        .transpose()?;
    let defaults = TrainParams::default();
    let train = TrainParams::default()
        .head(args.head.unwrap_or(defaults.head))
        .folds(args.folds.unwrap_or(defaults.folds))
        .seed(args.seed.unwrap_or(defaults.seed));
    let mut audit_options = AuditOptions::default().train(train);
    if let Some(similarity) = args.same_input_similarity {
        audit_options = audit_options.same_input_similarity(similarity);
    }
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let result = workflow::audit_data(
        &data,
        validation.as_ref(),
        args.backbone.given().as_ref(),
        &options,
        &flags.options(),
        &audit_options,
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    let AuditRun { audit, summary } = result?;
    let fixes = audit.fixes();
    if let Some(path) = &args.write_fixes {
        write_fixes(path, &fixes)?;
    }
    if let Some(path) = &args.report {
        let page = AuditPage {
            title: format!("Audit of {}", args.input.display()),
            audit: &audit,
            train: Shown::of(&data),
            validation: validation.as_ref().map(Shown::of),
        };
        write_audit_report(path, &page)?;
    }
    if flags.json {
        let value = serde_json::json!({
            "label_issues": audit.label_issues,
            "duplicates": audit.duplicates,
            "leakage": audit.leakage,
            "outliers": audit.outliers,
            "summary": audit.summary,
            "fixes": fixes,
            "embed": summary,
        });
        println!("{value}");
        return Ok(());
    }
    if let (Some(summary), false) = (&summary, flags.quiet) {
        print_embed_summary(summary, flags.verbose);
    }
    if !flags.quiet {
        print_audit(&audit, args.show);
        if let Some(path) = &args.report {
            println!("\nwrote {}", path.display());
        }
        if let Some(path) = &args.write_fixes {
            let count = |action: Action| fixes.iter().filter(|f| f.action == action).count();
            println!(
                "\nwrote {}: {} to relabel, {} to leave out, {} to keep — edit the action column, then \
                 `headstart train ... --exclude {0} --relabel {0}`",
                path.display(),
                count(Action::Relabel),
                count(Action::Exclude),
                count(Action::Keep)
            );
        }
    }
    Ok(())
}

fn print_audit(audit: &Audit, show: usize) {
    let summary = &audit.summary;
    let classes: Vec<String> = summary
        .classes
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "audited {} inputs ({} classes: {})",
        summary.rows,
        summary.classes.len(),
        classes.join(", ")
    );
    println!(
        "\nlabel issues: {} (estimated label noise {:.1} %)",
        summary.label_issues,
        summary.noise_rate * 100.0
    );
    if !audit.label_issues.is_empty() {
        println!("  score  given -> suggested  path");
        for issue in audit.label_issues.iter().take(show) {
            println!(
                "  {:.3}  {} -> {}  {}",
                issue.score, issue.given, issue.suggested, issue.path
            );
        }
        more(audit.label_issues.len(), show);
    }
    let cuts: Vec<String> = summary
        .same_input_ratios
        .iter()
        .map(|cut| {
            format!(
                "{:.3} of the distance to their {}th nearest input",
                cut.ratio, cut.neighbour
            )
        })
        .collect();
    let cut = if cuts.is_empty() {
        "from the similarity given".to_string()
    } else {
        format!("closer than {}", cuts.join(" or "))
    };
    println!(
        "\nduplicates: {} groups, {} of them across classes (the same input: {cut})",
        summary.duplicate_groups, summary.conflicting_groups
    );
    for group in audit.duplicates.iter().take(show) {
        let kind = match (group.exact, group.conflicting) {
            (true, true) => "exact, across classes",
            (true, false) => "exact",
            (false, true) => "near, across classes",
            (false, false) => "near",
        };
        let members: Vec<String> = group
            .paths
            .iter()
            .zip(&group.classes)
            .map(|(path, class)| format!("{path} ({class})"))
            .collect();
        println!("  {:.4} {kind}: {}", group.similarity, members.join(", "));
    }
    more(audit.duplicates.len(), show);
    if summary.leaked > 0 {
        println!(
            "\nleakage: {} validation inputs are in the training data",
            summary.leaked
        );
        for leak in audit.leakage.iter().take(show) {
            let how = if leak.exact { "exact" } else { "near" };
            println!(
                "  {:.4} {how}: {} = {}",
                leak.similarity, leak.validation, leak.train
            );
        }
        more(audit.leakage.len(), show);
    }
    println!(
        "\noutliers: {} (far from the other inputs, for their class: distance to the 5th nearest)",
        summary.outliers
    );
    for outlier in audit.outliers.iter().take(show) {
        println!(
            "  {:.3}  {}  ({})",
            outlier.score, outlier.path, outlier.class
        );
    }
    more(audit.outliers.len(), show);
    println!(
        "\ncross-validated accuracy {:.4}; {:.4} on the inputs nothing was flagged on",
        summary.cv_accuracy, summary.cv_accuracy_unflagged
    );
}

fn more(total: usize, shown: usize) {
    if total > shown {
        println!("  … and {} more (--json lists them all)", total - shown);
    }
}
