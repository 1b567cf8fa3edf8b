//! `headstart predict`: classes of images or texts as a table, CSV or JSON.

use std::path::PathBuf;

use clap::Args;
use headstart::backbone::BackboneRef;
use headstart::classifier::{Classifier, PredictOptions};
use headstart::data::{Data, files, texts};
use headstart::runtime::RuntimeOptions;
use headstart::{Error, Modality};

use crate::cli::failure::{Outcome, usage};
use crate::cli::flags::EmbedFlags;
use crate::cli::print::{self, csv_field, printable, shortened};

#[derive(Args)]
pub struct PredictArgs {
    pub bundle: PathBuf,
    /// Image files or folders; for a text bundle, texts (none: one text per line on stdin)
    pub inputs: Vec<String>,
    /// Text bundle: read one text per line from FILE (`-`: stdin)
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub from: Option<PathBuf>,
    /// How many classes to show per input
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Answer `unknown` when the top probability is below P
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub min_confidence: f32,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    pub backbone: Option<String>,
    #[command(flatten)]
    pub embed: EmbedFlags,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub fn run(args: PredictArgs, runtime: RuntimeOptions) -> Outcome {
    let backbone = args.backbone.as_deref().map(BackboneRef::parse);
    let mut classifier = Classifier::load(&args.bundle, &runtime, backbone.as_ref())?;
    let flags = &args.embed;
    let data = match classifier.modality() {
        Modality::Text => Data::Texts(texts_to_predict(&args)?),
        Modality::Image => {
            if args.inputs.is_empty() || args.from.is_some() {
                return Err(usage(
                    "this bundle classifies images: give image files or folders",
                ));
            }
            let paths: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
            Data::Images(files::from_inputs(&paths)?)
        }
    };
    let mut bar = flags.progress(classifier.modality().unit());
    let options = PredictOptions::default()
        .top_k(args.top_k)
        .min_confidence(args.min_confidence)
        .embed(flags.options());
    let result = classifier.predict(&data, &options, &mut |done, total| bar.update(done, total));
    bar.finish();
    let predicted = result?;
    let skipped = predicted
        .summary
        .map(|summary| summary.skipped)
        .unwrap_or_default();
    let column = match classifier.modality() {
        Modality::Text => "text",
        Modality::Image => "path",
    };
    let rows = &predicted.rows;
    match args.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(path, p)| {
                    let mut item = print::answer_json(p);
                    item[column] = serde_json::json!(path);
                    item
                })
                .collect();
            let skipped: Vec<serde_json::Value> = skipped
                .iter()
                .map(|s| serde_json::json!({"path": s.path, "reason": s.reason}))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "predictions": items,
                    "skipped": skipped,
                    "device": classifier.backbone().device().to_string(),
                })
            );
        }
        OutputFormat::Csv => {
            // As many class columns as a row can fill.
            let columns = args.top_k.min(classifier.bundle.info.class_names.len());
            let header: Vec<String> = (1..=columns)
                .flat_map(|i| [format!("class{i}"), format!("p{i}")])
                .collect();
            // A bundle with open-set rejection adds each input's novelty score.
            let open_set = classifier.bundle.novelty.is_some();
            let novelty_header = if open_set { "novelty," } else { "" };
            println!("{column},label,{novelty_header}{}", header.join(","));
            for (path, p) in rows {
                let top: Vec<String> = p
                    .top
                    .iter()
                    .flat_map(|(c, prob)| [csv_field(c), format!("{prob:.4}")])
                    .collect();
                let novelty = p.novelty.map_or(String::new(), |n| format!("{n:.4},"));
                println!(
                    "{},{},{novelty}{}",
                    csv_field(path),
                    csv_field(p.label.as_deref().unwrap_or("unknown")),
                    top.join(",")
                );
            }
        }
        OutputFormat::Table => {
            let rows: Vec<(String, _)> = rows
                .iter()
                .map(|(path, p)| (shortened(&printable(path)), p))
                .collect();
            let width = rows
                .iter()
                .map(|(path, _)| path.chars().count())
                .max()
                .unwrap_or(4)
                .max(4);
            for (path, p) in rows {
                let top: Vec<String> = p
                    .top
                    .iter()
                    .map(|(c, prob)| format!("{} {:.1}%", printable(c), prob * 100.0))
                    .collect();
                // Novel inputs say so: their top class is shown but not answered.
                let novelty = match p.novelty {
                    Some(n) if p.novel => format!("  (novel: {n:.2})"),
                    _ => String::new(),
                };
                println!(
                    "{path:<width$}  {:<12}  {}{novelty}",
                    printable(p.label.as_deref().unwrap_or("unknown")),
                    top.join("  ")
                );
            }
        }
    }
    if !matches!(args.format, OutputFormat::Json) {
        for skip in &skipped {
            eprintln!("skipped {}: {}", printable(&skip.path), skip.reason);
        }
    }
    Ok(())
}

/// A text bundle's inputs: the arguments, else lines of --from FILE or of stdin.
fn texts_to_predict(args: &PredictArgs) -> Outcome<texts::TextDataset> {
    let (lines, skipped) = match (&args.from, args.inputs.is_empty()) {
        (None, false) => (args.inputs.clone(), Vec::new()),
        (Some(path), _) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            texts::read_lines(file, &path.display().to_string())?
        }
        _ => texts::read_lines(std::io::stdin().lock(), "stdin")?,
    };
    if lines.is_empty() {
        return Err(usage(
            "no text to classify: give texts as arguments, --from FILE, or lines on stdin",
        ));
    }
    let mut data = texts::unlabelled("input", lines);
    data.skipped = skipped;
    Ok(data)
}
