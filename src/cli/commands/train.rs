//! `headstart train`: a bundle from labelled data, single- or multi-label, or grown from an old bundle.

mod features;

use std::path::PathBuf;

use clap::Args;
use headstart::Modality;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::bundle::Bundle;
use headstart::data::multi_label::MultiLabelTable;
use headstart::data::{Data, TextOptions};
use headstart::head::{ClassWeight, HeadKind, NoveltyParams, Solver, TrainParams};
use headstart::runtime::RuntimeOptions;
use headstart::workflow::{self, SearchSettings};

use crate::cli::failure::{Outcome, usage};
use crate::cli::flags::{BackboneArgs, EmbedFlags, FixFlags, TextFlags, flag};
use crate::cli::print::{print_embed_summary, print_trained, trained_json};

#[derive(Args)]
pub struct TrainArgs {
    /// A folder with one sub-folder per class (images, or .txt files), a text table (.csv, .tsv, .jsonl), or an
    /// .npz from `headstart embed`
    pub input: PathBuf,
    /// The bundle to write
    #[arg(long, short, value_name = "MODEL.hs")]
    pub output_file: PathBuf,
    /// Add INPUT's examples (and classes) to this bundle, without embedding its data again: it must keep its
    /// training embeddings (--keep-embeddings), or have a gaussian-nb or knn head. Settings not given are the
    /// bundle's
    #[arg(long, value_name = "OLD.hs")]
    pub from: Option<PathBuf>,
    /// Keep the training embeddings in the bundle, so that examples can be added with --from
    #[arg(long)]
    pub keep_embeddings: bool,
    /// Several labels per input: INPUT is a table (.csv, .tsv, .jsonl) with a text column, or a `path` column of
    /// images, and a label column (`label` or `labels`) of `a|b` or JSON lists; one logistic model per label with
    /// its own threshold
    #[arg(long, conflicts_with_all = ["from", "keep_embeddings", "val", "exclude", "relabel"])]
    pub multi_label: bool,
    /// [default: logistic]
    #[arg(long, value_enum)]
    pub head: Option<HeadKind>,
    /// Hold out this fraction of each class for validation (stratified, seeded)
    #[arg(long, value_name = "F", conflicts_with = "val")]
    pub val_split: Option<f64>,
    /// Validate on this labelled folder, table or .npz instead
    #[arg(long, value_name = "DATA")]
    pub val: Option<PathBuf>,
    /// [default: none]
    #[arg(long, value_enum)]
    pub class_weight: Option<ClassWeight>,
    /// [default: 42]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Cross-validation folds [default: 5]
    #[arg(long)]
    pub folds: Option<usize>,
    /// Inverse regularisation strengths to cross-validate (logistic, linear-svm), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    pub grid: Option<Vec<f64>>,
    /// Answer `unknown` for inputs far from all the training data; RATE is the fraction of known inputs to
    /// reject, measured on out-of-fold training data (the bundle keeps up to 10,000 training embeddings)
    #[arg(long, value_name = "RATE", num_args = 0..=1, default_missing_value = "0.05")]
    pub open_set: Option<f64>,
    /// The logistic head's solver: headstart's L-BFGS, or linfa-logistic as a (much slower) reference
    /// [default: lbfgs]
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Neighbours (knn) [default: 5]
    #[arg(long)]
    pub k: Option<usize>,
    /// L-BFGS iterations per logistic fit (scikit-learn's max_iter)
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_iterations: u64,
    /// The features to train on: the backbone's as given (its output, or --layer), or `auto`: its output,
    /// late layers found in its graph, their best pair and any --backbones, compared by cross-validation
    #[arg(long, value_enum, default_value_t, conflicts_with_all = ["from", "multi_label", "layer"])]
    pub features: features::FeatureChoice,
    /// With --features auto: other backbones of the same modality to try (zoo names or .onnx paths)
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub backbones: Vec<String>,
    /// With --features auto: start no candidate after this long (90s, 5m; the backbone's output always runs)
    #[arg(long, value_name = "TIME", value_parser = features::parse_duration)]
    pub budget: Option<std::time::Duration>,
    #[command(flatten)]
    pub fixes: FixFlags,
    #[command(flatten)]
    pub text_flags: TextFlags,
    #[command(flatten)]
    pub embed: EmbedFlags,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

pub fn run(args: TrainArgs, runtime: RuntimeOptions) -> Outcome {
    let options = args
        .backbone
        .options(runtime, args.text_flags.tokenizer.clone())?;
    let text = args.text_flags.options();
    let flags = &args.embed;
    if args.multi_label {
        return train_multi_label(&args, &options, &text);
    }
    let data = args
        .fixes
        .apply(Data::open(&args.input, &text)?, flags.quiet)?;
    let validation_data = args
        .val
        .as_deref()
        .map(|path| Data::open(path, &text))
        .transpose()?;
    let old = args.from.as_deref().map(Bundle::load).transpose()?;
    let params = train_params(&args, old.as_ref());
    let validation = match (&validation_data, args.val_split) {
        (Some(other), _) => workflow::Validation::Data(other),
        (None, Some(fraction)) => workflow::Validation::Split {
            fraction,
            seed: params.seed,
        },
        (None, None) => workflow::Validation::None,
    };
    if args.features == features::FeatureChoice::Auto {
        let mut settings = SearchSettings::default().backbones(
            args.backbones
                .iter()
                .map(|b| BackboneRef::parse(b))
                .collect(),
        );
        if let Some(budget) = args.budget {
            settings = settings.budget(budget);
        }
        return features::train_auto(
            &data,
            &validation,
            args.backbone.given().as_ref(),
            &options,
            flags,
            &params,
            &settings,
            &args.output_file,
        );
    }
    if !args.backbones.is_empty() || args.budget.is_some() {
        return Err(usage("--backbones and --budget are for --features auto"));
    }
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let result = match (&old, &args.from) {
        (Some(old), Some(origin)) => workflow::train_from(
            old,
            origin,
            &data,
            &validation,
            &options.runtime,
            args.backbone.given().as_ref(),
            &flags.options(),
            &params,
            &mut |done, total| bar.update(done, total),
        ),
        _ => workflow::train(
            &data,
            &validation,
            args.backbone.given().as_ref(),
            &options,
            &flags.options(),
            &params,
            &mut |done, total| bar.update(done, total),
        ),
    };
    bar.finish();
    let workflow::TrainRun {
        trained, summary, ..
    } = result?;
    if let (Some(summary), false) = (&summary, flags.quiet || flags.json) {
        print_embed_summary(summary, flags.verbose);
    }
    trained.bundle.save(&args.output_file)?;
    if flags.json {
        println!("{}", trained_json(&trained, &summary, &args.output_file));
    } else if !flags.quiet {
        print_trained(&trained, &args.output_file);
    }
    Ok(())
}

fn train_multi_label(args: &TrainArgs, options: &BackboneOptions, text: &TextOptions) -> Outcome {
    let refused = [
        (args.head.is_some_and(|h| h != HeadKind::Logistic), "--head"),
        (
            args.class_weight == Some(ClassWeight::Balanced),
            "--class-weight balanced",
        ),
        (args.solver == Some(Solver::Linfa), "--solver linfa"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "--multi-label trains one logistic model per label; {flag} does not apply"
        )));
    }
    let flags = &args.embed;
    let table = MultiLabelTable::open(&args.input, text)?;
    let params = train_params(args, None);
    let mut bar = flags.progress(table.data.modality().map_or("rows", Modality::unit));
    let result = workflow::train_multi_label(
        &table,
        args.val_split.map(|fraction| (fraction, params.seed)),
        args.backbone.given().as_ref(),
        options,
        &flags.options(),
        &params,
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    let run = result?;
    if let (Some(summary), false) = (&run.summary, flags.quiet || flags.json) {
        print_embed_summary(summary, flags.verbose);
    }
    run.bundle.save(&args.output_file)?;
    if flags.json {
        let value = serde_json::json!({
            "bundle": args.output_file.display().to_string(),
            "embed": run.summary,
            "train": run.report,
            "open_set": run.bundle.info.training.open_set,
            "validation": run.validation,
        });
        println!("{value}");
    } else if !flags.quiet {
        let report = &run.report;
        for warning in &report.warnings {
            println!("warning: {}", warning.describe(flag));
        }
        println!(
            "trained a multi-label head ({} labels) on {} embeddings in {:.2} s",
            report.thresholds.len(),
            report.samples,
            report.seconds
        );
        let grid: Vec<String> = report
            .cv
            .iter()
            .map(|(c, f1)| format!("C={c}: {f1:.4}"))
            .collect();
        println!(
            "  {}-fold cross-validated micro F1: {}",
            report.folds,
            grid.join("  ")
        );
        println!("  chosen C = {}; thresholds per label:", report.chosen_c);
        for ((name, _), threshold) in report.cross_validated.labels.iter().zip(&report.thresholds) {
            println!("    {name}: {threshold:.3}");
        }
        println!("\nout of fold\n{}", report.cross_validated.render());
        if let Some(metrics) = &run.validation {
            println!("validation\n{}", metrics.render());
        }
        println!("wrote {}", args.output_file.display());
    }
    Ok(())
}

/// The training settings: the flags given, else (with --from) the old bundle's, else the defaults.
fn train_params(args: &TrainArgs, old: Option<&Bundle>) -> TrainParams {
    let defaults = TrainParams::default();
    let before = old.map(|b| &b.info.training);
    let seed = args
        .seed
        .or(before.map(|t| t.seed))
        .unwrap_or(defaults.seed);
    let rate = args
        .open_set
        .or(before.and_then(|t| t.open_set.as_ref()).map(|o| o.rate));
    let mut params = TrainParams::default()
        .head(
            args.head
                .or(before.map(|t| t.head))
                .unwrap_or(defaults.head),
        )
        .folds(
            args.folds
                .or(before.map(|t| t.folds))
                .unwrap_or(defaults.folds),
        )
        .grid(args.grid.clone().unwrap_or(defaults.grid))
        .class_weight(
            args.class_weight
                .or(before.map(|t| t.class_weight))
                .unwrap_or(defaults.class_weight),
        )
        .solver(
            args.solver
                .or(before.and_then(|t| t.solver))
                .unwrap_or(defaults.solver),
        )
        .seed(seed)
        .k(args
            .k
            .or(before.and_then(|t| t.knn_k))
            .unwrap_or(defaults.k))
        .max_iterations(args.max_iterations)
        .keep_embeddings(args.keep_embeddings || before.is_some_and(|t| t.keeps_embeddings));
    params.open_set = rate.map(|rate| NoveltyParams::default().false_rejection(rate).seed(seed));
    params
}
