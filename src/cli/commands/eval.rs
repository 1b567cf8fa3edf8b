//! `headstart eval`: a bundle's metrics on labelled data, and the HTML report.

use std::path::PathBuf;

use clap::Args;
use headstart::backbone::BackboneRef;
use headstart::data::{Data, TextOptions};
use headstart::runtime::RuntimeOptions;
use headstart::workflow::report::{self, ReportInput, Samples};
use headstart::{Modality, workflow};

use crate::cli::failure::Outcome;
use crate::cli::flags::EmbedFlags;
use crate::cli::print::print_embed_summary;

#[derive(Args)]
pub struct EvalArgs {
    pub bundle: PathBuf,
    /// A labelled folder, a text table or an .npz from `headstart embed` (same backbone)
    pub input: PathBuf,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    pub backbone: Option<String>,
    /// Also write a self-contained HTML page: heatmap, misclassified thumbnails, PCA scatter
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Columns of a text table
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_column: String,
    #[arg(long, default_value = "label", value_name = "NAME")]
    pub label_column: String,
    #[command(flatten)]
    pub embed: EmbedFlags,
}

pub fn run(args: EvalArgs, runtime: RuntimeOptions) -> Outcome {
    let backbone = args.backbone.as_deref().map(BackboneRef::parse);
    let flags = &args.embed;
    let text = TextOptions::default()
        .text_column(&args.text_column)
        .label_column(&args.label_column);
    let data = Data::open(&args.input, &text)?;
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let result = workflow::evaluate_bundle(
        &args.bundle,
        &data,
        &runtime,
        backbone.as_ref(),
        &flags.options(),
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    let evaluation = result?;
    if let (Some(summary), false) = (&evaluation.summary, flags.quiet || flags.json) {
        print_embed_summary(summary, flags.verbose);
    }
    let metrics = &evaluation.metrics;
    if let Some(path) = &args.report {
        let set = &evaluation.set;
        let truth = set.labels.clone().unwrap_or_default();
        // The texts, in the rows' order, for the report's list of mistakes.
        let texts: Option<Vec<String>> = match &data {
            Data::Texts(texts) => Some(texts.items.iter().map(|item| item.text.clone()).collect()),
            _ => None,
        };
        let input = ReportInput {
            title: format!("{} on {}", args.bundle.display(), args.input.display()),
            metrics,
            class_names: &evaluation.bundle.info.class_names,
            embeddings: set.matrix(),
            truth: &truth,
            probabilities: evaluation.probabilities.view(),
            paths: &set.paths,
            samples: match &texts {
                Some(texts) => Samples::Texts(texts),
                None => {
                    Samples::Images(matches!(data, Data::Images(_)).then(|| args.input.clone()))
                }
            },
        };
        report::write_report(path, &input)?;
        if !flags.quiet && !flags.json {
            println!("wrote {}", path.display());
        }
    }
    if flags.json {
        let mut value = serde_json::to_value(metrics).unwrap_or_default();
        // Where the backbone ran, when this run embedded anything (an .npz was embedded elsewhere).
        if let (Some(summary), Some(object)) = (&evaluation.summary, value.as_object_mut()) {
            object.insert("device".into(), summary.device.to_string().into());
        }
        println!("{value}");
    } else {
        print!("{}", metrics.render());
    }
    Ok(())
}
