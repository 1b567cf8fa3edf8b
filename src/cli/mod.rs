//! The command line: arguments (clap), printing, and the demos. Every flow it runs is a library function; this
//! module turns flags into options and results into text, and library errors into lines that name flags.

mod demo;
mod features;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use headstart::augment::Augment;
use headstart::backbone::{
    self, BackboneOptions, BackboneRef, CalibrationMethod, CalibrationSettings, ImageBackbone,
    TextBackbone,
};
use headstart::bundle::Bundle;
use headstart::classifier::Classifier;
use headstart::data::decode::{DecodeOptions, decode_image};
use headstart::data::multi_label::MultiLabelTable;
use headstart::data::{Data, Shard, TextOptions, files, texts};
use headstart::embeddings::{self, EmbedOptions, EmbedSummary, EmbeddedSet, parquet};
use headstart::head::{ClassWeight, HeadKind, NoveltyParams, Solver, TrainParams};
use headstart::pooling::Pooling;
use headstart::preprocess::{
    ColourOrder, Interpolation, JpegDecode, Layout, PreprocessOverrides, Resize,
};
use headstart::report::{self, ReportInput, Samples};
use headstart::runtime::{ConvSearch, Device, Precision, RuntimeOptions};
use headstart::zoo;
use headstart::{Error, Modality, Result, datasets, workflow};
use progress::Progress;

#[derive(Parser)]
#[command(
    name = "headstart",
    version,
    about = "Transfer learning without backprop: frozen ONNX backbones, small heads"
)]
struct Cli {
    /// libonnxruntime to load (default: ORT_DYLIB_PATH, beside the executable, the cache, Python's onnxruntime,
    /// else the pinned release is fetched from PyPI)
    #[arg(long, global = true, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Where to run the backbone
    #[arg(long, global = true, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// ONNX Runtime intra-op threads (default: one per core)
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Under --device cuda, let nodes ONNX Runtime has no CUDA kernel for run on the CPU
    #[arg(long, global = true)]
    allow_cpu_nodes: bool,
    /// How cuDNN picks convolution kernels: heuristic (instant) or exhaustive (times each, per input shape)
    #[arg(long, global = true, value_enum, default_value_t = ConvSearch::Heuristic)]
    conv_search: ConvSearch,
    /// Arithmetic of the backbone: fp16 runs on CUDA only (inputs and outputs stay float32)
    #[arg(long, global = true, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole job on real data: fetch the ELPV solar-cell images, embed, train, evaluate on a held-out split
    Demo {
        /// Instead: what the default backbones see in sample photos and sentences
        #[arg(long, conflicts_with = "text")]
        photos: bool,
        /// Instead: sentiment of the VADER movie-review snippets with the default text backbone
        #[arg(long)]
        text: bool,
    },
    /// Embed a folder of images, a folder of .txt class folders or a text table into an .npz (-o), or files /
    /// texts (--text) as JSON lines on stdout
    Embed(Box<EmbedArgs>),
    /// Train a head on labelled images or texts (embedded through the cache) or an .npz; writes a bundle
    Train(Box<TrainArgs>),
    /// Evaluate a bundle on labelled data or an .npz: accuracy, macro-F1, per-class metrics, confusion matrix
    Eval(Box<EvalArgs>),
    /// Classify images, or texts with a text bundle: top-k classes with probabilities
    Predict(Box<PredictArgs>),
    /// Export a bundle as one ONNX file (backbone + pooling + head + softmax), or --head-only
    Export(ExportArgs),
    /// Show an ONNX file's inputs, outputs and opsets; --layers lists the tensors --layer can tap
    Inspect {
        model: PathBuf,
        #[arg(long)]
        layers: bool,
    },
    /// What runs where: ONNX Runtime and its providers, the NVIDIA driver and GPUs, the NVIDIA libraries
    /// loaded and where from; runs a small convolution on the device --device chooses
    Doctor {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The model zoo
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Demo datasets from package registries
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Where the cache is and what it holds (embeddings per backbone configuration, models, datasets, ONNX
    /// Runtime); `cache clear` empties it
    Cache {
        #[command(subcommand)]
        action: Option<CacheCommand>,
        /// Print JSON instead of text
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove the embedding cache (embeddings are recomputed on the next run)
    Clear {
        /// Also remove what was fetched: the folders models, datasets, runtime, samples and python… (fetched
        /// again when needed); anything else there is left alone
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Fetch a dataset and print its folder: `elpv` (solar cells, defective/functional class folders),
    /// `camera-photos` and `wallpaper-photos` (unlabelled JPEGs from Debian, the photo benchmark's sets)
    Fetch { name: String },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the zoo's backbones, their sources and licences, and whether they are cached
    List,
    /// Fetch (or convert) backbones into the cache now instead of on first use
    Fetch {
        /// Zoo names; `all` fetches every one
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Args)]
struct EmbedArgs {
    /// A folder (one sub-folder per class, or flat; .txt files make it texts), a text table (.csv, .tsv,
    /// .jsonl), image files, or texts with --text
    #[arg(required = true)]
    inputs: Vec<String>,
    /// The .npz to write when embedding a folder or a table; with --format parquet, the folder for its shards
    #[arg(long, short, value_name = "OUT")]
    output_file: Option<PathBuf>,
    /// npz: one file of the embedded rows; parquet: OUT/part-K-of-N.parquet with one row per input (skipped
    /// ones with their reason) for Spark, DuckDB, Polars or Ray, skipped when an earlier run finished it
    #[arg(long, value_enum, default_value_t = SetFormat::Npz)]
    format: SetFormat,
    /// Embed only shard K of N (K from 0): a stable partition by path, for job arrays over many machines
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Inputs are texts, embedded with a text backbone
    #[arg(long)]
    text: bool,
    #[command(flatten)]
    text_flags: TextFlags,
    #[command(flatten)]
    embed: EmbedFlags,
    #[command(flatten)]
    backbone: BackboneArgs,
}

/// How text data is read (embed, train, eval).
#[derive(Args)]
struct TextFlags {
    /// The column of a text table that holds the text
    #[arg(long, default_value = "text", value_name = "NAME")]
    text_column: String,
    /// The column of a text table that holds the label
    #[arg(long, default_value = "label", value_name = "NAME")]
    label_column: String,
    /// tokenizer.json for a text backbone outside the zoo (default: beside the model)
    #[arg(long, value_name = "PATH")]
    tokenizer: Option<PathBuf>,
}

impl TextFlags {
    fn options(&self) -> TextOptions {
        TextOptions::default()
            .text_column(&self.text_column)
            .label_column(&self.label_column)
    }
}

/// How folders are embedded (embed, train, eval, predict).
#[derive(Args)]
struct EmbedFlags {
    /// Images (texts) per inference batch [default: 32 on the CPU, 256 on CUDA]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Decode threads (default: one per core)
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Neither read nor write the embedding cache
    #[arg(long)]
    no_cache: bool,
    /// Also embed augmented views of each image: flip, crop (comma-separated)
    #[arg(long, value_name = "VIEWS")]
    augment: Option<Augment>,
    /// Fail on the first file that cannot be embedded instead of skipping it
    #[arg(long)]
    strict: bool,
    /// Largest image to decode, in pixels
    #[arg(long, default_value_t = headstart::data::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Embed what decodes of truncated or corrupt images (the missing part grey) instead of skipping them
    #[arg(long)]
    allow_truncated: bool,
    /// No progress bar or summary
    #[arg(long, short)]
    quiet: bool,
    /// Also print the seconds spent in each stage (read, decode, preprocess, waiting, inference, write)
    #[arg(long, short)]
    verbose: bool,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

impl EmbedFlags {
    fn options(&self) -> EmbedOptions {
        let defaults = EmbedOptions::default();
        let workers = self.workers.unwrap_or(defaults.workers);
        EmbedOptions {
            batch_size: self.batch_size,
            ..defaults
        }
        .workers(workers)
        .use_cache(!self.no_cache)
        .augment(self.augment.unwrap_or_default())
        .strict(self.strict)
        .max_pixels(self.max_pixels)
        .allow_truncated(self.allow_truncated)
    }

    fn progress(&self, unit: &'static str) -> Progress {
        Progress::new(unit, !self.quiet && !self.json)
    }
}

#[derive(Args)]
struct TrainArgs {
    /// A folder with one sub-folder per class (images, or .txt files), a text table (.csv, .tsv, .jsonl), or an
    /// .npz from `headstart embed`
    input: PathBuf,
    /// The bundle to write
    #[arg(long, short, value_name = "MODEL.hs")]
    output_file: PathBuf,
    /// Add INPUT's examples (and classes) to this bundle, without embedding its data again: it must keep its
    /// training embeddings (--keep-embeddings), or have a gaussian-nb or knn head. Settings not given are the
    /// bundle's
    #[arg(long, value_name = "OLD.hs")]
    from: Option<PathBuf>,
    /// Keep the training embeddings in the bundle, so that examples can be added with --from
    #[arg(long)]
    keep_embeddings: bool,
    /// Several labels per input: INPUT is a table (.csv, .tsv, .jsonl) with a text column, or a `path` column of
    /// images, and a label column (`label` or `labels`) of `a|b` or JSON lists; one logistic model per label with
    /// its own threshold
    #[arg(long, conflicts_with_all = ["from", "keep_embeddings", "val"])]
    multi_label: bool,
    /// [default: logistic]
    #[arg(long, value_enum)]
    head: Option<HeadKind>,
    /// Hold out this fraction of each class for validation (stratified, seeded)
    #[arg(long, value_name = "F", conflicts_with = "val")]
    val_split: Option<f64>,
    /// Validate on this labelled folder, table or .npz instead
    #[arg(long, value_name = "DATA")]
    val: Option<PathBuf>,
    /// [default: none]
    #[arg(long, value_enum)]
    class_weight: Option<ClassWeight>,
    /// [default: 42]
    #[arg(long)]
    seed: Option<u64>,
    /// Cross-validation folds [default: 5]
    #[arg(long)]
    folds: Option<usize>,
    /// Inverse regularisation strengths to cross-validate (logistic, linear-svm), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    grid: Option<Vec<f64>>,
    /// Answer `unknown` for inputs far from all the training data; RATE is the fraction of known inputs to
    /// reject, measured on out-of-fold training data (the bundle keeps up to 10,000 training embeddings)
    #[arg(long, value_name = "RATE", num_args = 0..=1, default_missing_value = "0.05")]
    open_set: Option<f64>,
    /// The logistic head's solver: headstart's L-BFGS, or linfa-logistic as a (much slower) reference
    /// [default: lbfgs]
    #[arg(long, value_enum)]
    solver: Option<Solver>,
    /// Neighbours (knn) [default: 5]
    #[arg(long)]
    k: Option<usize>,
    /// L-BFGS iterations per logistic fit (scikit-learn's max_iter)
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_iterations: u64,
    /// The features to train on: the backbone's as given (its output, or --layer), or `auto`: its output,
    /// late layers found in its graph, their best pair and any --backbones, compared by cross-validation
    #[arg(long, value_enum, default_value_t, conflicts_with_all = ["from", "multi_label", "layer"])]
    features: features::FeatureChoice,
    /// With --features auto: other backbones of the same modality to try (zoo names or .onnx paths)
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    backbones: Vec<String>,
    /// With --features auto: start no candidate after this long (90s, 5m; the backbone's output always runs)
    #[arg(long, value_name = "TIME", value_parser = features::parse_duration)]
    budget: Option<std::time::Duration>,
    #[command(flatten)]
    text_flags: TextFlags,
    #[command(flatten)]
    embed: EmbedFlags,
    #[command(flatten)]
    backbone: BackboneArgs,
}

#[derive(Args)]
struct EvalArgs {
    bundle: PathBuf,
    /// A labelled folder, a text table or an .npz from `headstart embed` (same backbone)
    input: PathBuf,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    backbone: Option<String>,
    /// Also write a self-contained HTML page: heatmap, misclassified thumbnails, PCA scatter
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Columns of a text table
    #[arg(long, default_value = "text", value_name = "NAME")]
    text_column: String,
    #[arg(long, default_value = "label", value_name = "NAME")]
    label_column: String,
    #[command(flatten)]
    embed: EmbedFlags,
}

#[derive(Args)]
struct ExportArgs {
    bundle: PathBuf,
    /// The ONNX file to write
    #[arg(long, short, value_name = "MODEL.onnx")]
    output_file: PathBuf,
    /// Only the head: embedding [N, D] in, probabilities out (for a device that already runs the backbone)
    #[arg(long, conflicts_with = "raw_input")]
    head_only: bool,
    /// Image bundles: uint8 RGB pixels [N, H, W, 3] in; resizing, cropping and normalisation in the graph
    #[arg(long)]
    raw_input: bool,
    /// The pixels' size for --raw-input: N or HxW (default: the model's input size)
    #[arg(long, value_parser = parse_size, requires = "raw_input")]
    raw_size: Option<(u32, u32)>,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    backbone: Option<String>,
    /// An int8 backbone (QDQ; about a quarter of the size). A bundle trained with --precision int8 is
    /// exported int8 anyway, with its own calibration
    #[arg(long, conflicts_with = "head_only")]
    int8: bool,
    /// With --int8 on a float bundle: a folder of images like the training data to calibrate on
    #[arg(long, value_name = "DIR", requires = "int8")]
    calibration_data: Option<PathBuf>,
    /// How many of those images to calibrate on
    #[arg(long, value_name = "N", default_value_t = CalibrationSettings::default().inputs)]
    calibration: usize,
    /// How each activation's range is read from the calibration images
    #[arg(long, value_enum, default_value_t = CalibrationMethod::Mse)]
    calibration_method: CalibrationMethod,
}

#[derive(Args)]
struct PredictArgs {
    bundle: PathBuf,
    /// Image files or folders; for a text bundle, texts (none: one text per line on stdin)
    inputs: Vec<String>,
    /// Text bundle: read one text per line from FILE (`-`: stdin)
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    from: Option<PathBuf>,
    /// How many classes to show per input
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Answer `unknown` when the top probability is below P
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    min_confidence: f32,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    backbone: Option<String>,
    #[command(flatten)]
    embed: EmbedFlags,
}

/// How `embed` writes a data set's embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SetFormat {
    Npz,
    Parquet,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
struct BackboneArgs {
    /// A zoo name (`headstart models list`) or a path to an .onnx file
    #[arg(long, short)]
    backbone: Option<String>,
    /// Graph output to take features from
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
    /// Intermediate tensor to take features from (see `headstart inspect MODEL --layers`); given again,
    /// each tensor is pooled and the vectors joined in order
    #[arg(long, value_name = "TENSOR")]
    layer: Vec<String>,
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// L2-normalise embeddings
    #[arg(long)]
    normalize: bool,
    /// Preprocessing JSON (timm pretrained_cfg or Hugging Face preprocessor_config.json keys)
    #[arg(long, value_name = "FILE")]
    preprocess: Option<PathBuf>,
    /// Input size: N or HxW
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    #[arg(long, value_enum)]
    resize: Option<Resize>,
    /// Fraction of the resized image kept by the centre crop
    #[arg(long, value_name = "F")]
    crop_pct: Option<f32>,
    #[arg(long, value_enum)]
    interpolation: Option<Interpolation>,
    /// Per-channel mean in pixel units (0-255), model channel order: R,G,B or one value
    #[arg(long, value_parser = parse_triple)]
    mean: Option<[f32; 3]>,
    /// Per-channel std in pixel units (0-255)
    #[arg(long, value_parser = parse_triple)]
    std: Option<[f32; 3]>,
    #[arg(long, value_enum)]
    layout: Option<Layout>,
    #[arg(long, value_enum)]
    colour: Option<ColourOrder>,
    /// Decode every pixel of large JPEGs (default: at 1/2, 1/4 or 1/8 scale when still large enough)
    #[arg(long)]
    exact_decode: bool,
    /// With --precision int8: how many of the data's images calibrate the activation ranges
    #[arg(long, value_name = "N", default_value_t = CalibrationSettings::default().inputs)]
    calibration: usize,
    /// With --precision int8: how each activation's range is read from the calibration images
    #[arg(long, value_enum, default_value_t = CalibrationMethod::Mse)]
    calibration_method: CalibrationMethod,
}

fn parse_size(text: &str) -> std::result::Result<(u32, u32), String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=16384).contains(v))
    };
    match text.split_once(['x', 'X']) {
        Some((h, w)) => number(h).zip(number(w)),
        None => number(text).map(|n| (n, n)),
    }
    .ok_or_else(|| format!("'{text}' is not N or HxW with sizes from 1 to 16384"))
}

fn parse_triple(text: &str) -> std::result::Result<[f32; 3], String> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| format!("'{v}' is not a number"))
        })
        .collect::<std::result::Result<_, _>>()?;
    match values.as_slice() {
        [v] => Ok([*v; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err("give one value or three, comma-separated".into()),
    }
}

impl BackboneArgs {
    fn options(
        &self,
        runtime: RuntimeOptions,
        tokenizer: Option<PathBuf>,
    ) -> Result<BackboneOptions> {
        if self.std.is_some_and(|s| s.contains(&0.0)) {
            return Err(Error::Config("--std must not contain zero".into()));
        }
        Ok(BackboneOptions {
            tokenizer,
            runtime,
            output: self.output.clone(),
            layer: self.layer.first().cloned(),
            joined: self.layer.iter().skip(1).cloned().collect(),
            pooling: self.pooling,
            normalize: self.normalize.then_some(true),
            preprocess_file: self.preprocess.clone(),
            preprocess: PreprocessOverrides {
                size: self.size,
                resize: self.resize,
                crop_pct: self.crop_pct,
                interpolation: self.interpolation,
                mean: self.mean,
                std: self.std,
                layout: self.layout,
                colour: self.colour,
                jpeg_decode: self.exact_decode.then_some(JpegDecode::Exact),
            },
            calibration: None,
            calibrate: CalibrationSettings::default()
                .inputs(self.calibration)
                .method(self.calibration_method),
        })
    }

    fn reference(&self, modality: Modality) -> BackboneRef {
        self.given()
            .unwrap_or_else(|| BackboneRef::Zoo(zoo::default_for(modality).name))
    }

    /// The backbone named with --backbone, if any.
    fn given(&self) -> Option<BackboneRef> {
        self.backbone.as_deref().map(BackboneRef::parse)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = RuntimeOptions {
        library: cli.ort_lib.clone(),
        device: cli.device,
        threads: cli.threads,
        intra_op_spinning: None,
        allow_cpu_nodes: cli.allow_cpu_nodes,
        conv_search: cli.conv_search,
        precision: cli.precision,
    };
    match run(cli.command, runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", in_flags(&error));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, runtime: RuntimeOptions) -> Result<()> {
    match command {
        Command::Demo { photos: true, .. } => print_demo(&demo::run_photos(&runtime)?),
        Command::Demo { text: true, .. } => {
            let mut bar = Progress::new("texts", true);
            let result = demo::run_vader(&runtime, &mut |done, total| bar.update(done, total));
            bar.finish();
            print_held_out_job(
                "VADER movie-review snippets: positive (mean score > 0) vs negative, backbone all-minilm-l6-v2",
                "texts",
                datasets::VADER_SEED,
                &result?,
            );
        }
        Command::Demo { .. } => {
            let mut bar = Progress::new("images", true);
            let result = demo::run_elpv(&runtime, &mut |done, total| bar.update(done, total));
            bar.finish();
            print_held_out_job(
                "ELPV solar cells: defective (defect probability >= 0.5) vs functional, backbone efficientnet-lite0",
                "images",
                datasets::ELPV_SEED,
                &result?,
            );
        }
        Command::Embed(args) => embed(*args, runtime)?,
        Command::Train(args) => train(*args, runtime)?,
        Command::Eval(args) => eval(*args, runtime)?,
        Command::Predict(args) => predict(*args, runtime)?,
        Command::Export(args) => export(&args, &runtime)?,
        Command::Inspect { model, layers } => inspect(&model, layers, &runtime)?,
        Command::Models(ModelsCommand::List) => list_models()?,
        Command::Cache { action: None, json } => show_cache(json)?,
        Command::Cache {
            action: Some(CacheCommand::Clear { all }),
            json,
        } => clear_cache(all, json)?,
        Command::Datasets(DatasetsCommand::Fetch { name }) => match name.as_str() {
            "elpv" => println!("{}", datasets::elpv_by_defect()?.display()),
            "camera-photos" => println!("{}", datasets::camera_photos()?.display()),
            "wallpaper-photos" => println!("{}", datasets::nature_photos()?.display()),
            other => {
                return Err(Error::Config(format!(
                    "no dataset '{other}' (have: elpv, camera-photos, wallpaper-photos)"
                )));
            }
        },
        Command::Doctor { json } => {
            let diagnosis = headstart::runtime::doctor(&runtime)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&diagnosis).unwrap_or_default()
                );
            } else {
                print_diagnosis(&diagnosis);
            }
        }
        Command::Models(ModelsCommand::Fetch { names }) => {
            let wanted: Vec<zoo::ZooModel> = if names.iter().any(|n| n == "all") {
                zoo::models()
            } else {
                names.iter().map(|n| zoo::find(n)).collect::<Result<_>>()?
            };
            for model in wanted {
                let path = zoo::fetch_all(&model)?;
                println!("{}\t{}", model.name, path.display());
            }
        }
    }
    Ok(())
}

fn embed(args: EmbedArgs, runtime: RuntimeOptions) -> Result<()> {
    let options = args
        .backbone
        .options(runtime, args.text_flags.tokenizer.clone())?;
    // One folder or table is a data set for an .npz; anything else is files (or texts) to print.
    if let [single] = args.inputs.as_slice()
        && !args.text
    {
        let path = Path::new(single);
        match Data::open(path, &args.text_flags.options()) {
            // A single other file is an image to print, below.
            Ok(Data::Embeddings(_)) => {}
            Ok(data) => return embed_data(data, path, &args, &options),
            Err(error) if path.exists() => return Err(error),
            // Not there: the image decoder below says so.
            Err(_) => {}
        }
    }
    if let Some(out) = &args.output_file {
        return Err(Error::Config(format!(
            "-o {} writes a data set's embeddings: give one folder or text table",
            out.display()
        )));
    }
    if args.shard.is_some() || args.format != SetFormat::Npz {
        return Err(Error::Config(
            "--shard and --format are for a data set: give one folder or text table, and -o".into(),
        ));
    }
    let embeddings = if args.text {
        let mut backbone = TextBackbone::open(&args.backbone.reference(Modality::Text), &options)?;
        let texts: Vec<&str> = args.inputs.iter().map(String::as_str).collect();
        backbone.embed(&texts)?
    } else {
        // Read first: a bad input path should not wait for a backbone download.
        let files = args
            .inputs
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| Error::io(Path::new(p), e)))
            .collect::<Result<Vec<_>>>()?;
        let mut backbone =
            ImageBackbone::open(&args.backbone.reference(Modality::Image), &options)?;
        let decode = DecodeOptions {
            max_pixels: args.embed.max_pixels,
            allow_truncated: args.embed.allow_truncated,
        };
        let images = args
            .inputs
            .iter()
            .zip(&files)
            .map(|(path, bytes)| {
                decode_image(bytes, &decode, Some(backbone.preprocess()))
                    .map_err(|message| Error::input(Path::new(path), message))
            })
            .collect::<Result<Vec<_>>>()?;
        backbone.embed(&images)?
    };
    for (input, row) in args.inputs.iter().zip(embeddings.rows()) {
        let line = serde_json::json!({ "input": input, "embedding": row.to_vec() });
        println!("{line}");
    }
    Ok(())
}

fn embed_data(data: Data, path: &Path, args: &EmbedArgs, options: &BackboneOptions) -> Result<()> {
    let out = args.output_file.clone().ok_or_else(|| {
        Error::Config(format!(
            "embedding {} writes an .npz (or Parquet shards with --format parquet): pass -o OUT",
            path.display()
        ))
    })?;
    let data = match args.shard {
        Some(shard) => data.shard(shard),
        None => data,
    };
    let flags = &args.embed;
    let written = match args.format {
        SetFormat::Npz => {
            let (set, summary) =
                embed_with_progress(&data, args.backbone.given().as_ref(), options, flags)?;
            if set.rows() == 0 {
                return Err(Error::input(
                    path,
                    "nothing could be embedded; nothing written",
                ));
            }
            set.write_npz(&out)?;
            (out, set.dim, set.rows(), summary)
        }
        SetFormat::Parquet => {
            let Some(modality) = data.modality() else {
                return Err(Error::Config(format!(
                    "{} holds embeddings already: --format parquet embeds a folder or text table",
                    path.display()
                )));
            };
            let shard = args.shard.unwrap_or(Shard::WHOLE);
            let file = parquet::shard_path(&out, shard);
            // Open the backbone first: a finished shard is known by the backbone that made it.
            let mut backbone = workflow::open_backbone(
                &args.backbone.reference(modality),
                &data,
                options,
                &flags.options(),
            )?;
            if parquet::is_finished(&file, backbone.identity(), &backbone.input_spec())? {
                if flags.json {
                    println!(
                        "{}",
                        serde_json::json!({"output": file.display().to_string(), "already_written": true})
                    );
                } else if !flags.quiet {
                    println!("shard {shard} is already in {}: skipped", file.display());
                }
                return Ok(());
            }
            let mut bar = flags.progress(modality.unit());
            let result = embeddings::embed(
                &data,
                &mut backbone,
                &flags.options(),
                &mut |done, total| bar.update(done, total),
            );
            bar.finish();
            let (set, summary) = result?;
            let skipped = summary.as_ref().map_or(&[][..], |s| &s.skipped[..]);
            parquet::write_parquet(&set, skipped, &file)?;
            (file, set.dim, set.rows(), summary)
        }
    };
    let (out, dim, rows, summary) = written;
    if flags.json {
        let mut value = serde_json::to_value(&summary).unwrap_or_default();
        value["output"] = serde_json::json!(out.display().to_string());
        value["dim"] = serde_json::json!(dim);
        println!("{value}");
    } else if !flags.quiet {
        if let Some(summary) = &summary {
            print_embed_summary(summary, flags.verbose);
        }
        println!("-> {} [{rows} x {dim}]", out.display());
    }
    Ok(())
}

/// Embeddings of a folder or text table (with a progress bar), or an .npz.
fn embed_with_progress(
    data: &Data,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    flags: &EmbedFlags,
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let result = workflow::embeddings_for(
        data,
        backbone,
        options,
        &flags.options(),
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    result
}

fn print_embed_summary(summary: &EmbedSummary, verbose: bool) {
    let (things, unit) = match summary.truncated {
        Some(_) => ("texts", "texts"),
        None => ("files", "images"),
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

fn train(args: TrainArgs, runtime: RuntimeOptions) -> Result<()> {
    let options = args
        .backbone
        .options(runtime, args.text_flags.tokenizer.clone())?;
    let text = args.text_flags.options();
    let flags = &args.embed;
    if args.multi_label {
        return train_multi_label(&args, &options, &text);
    }
    let data = Data::open(&args.input, &text)?;
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
        return features::train_auto(&args, &options, &data, &validation, &params);
    }
    if !args.backbones.is_empty() || args.budget.is_some() {
        return Err(Error::Config(
            "--backbones and --budget are for --features auto".into(),
        ));
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

/// `train --json`'s fields for a bundle written to `output`.
fn trained_json(
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
fn print_trained(trained: &workflow::Trained, output: &Path) {
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

fn train_multi_label(
    args: &TrainArgs,
    options: &BackboneOptions,
    text: &TextOptions,
) -> Result<()> {
    let refused = [
        (args.head.is_some_and(|h| h != HeadKind::Logistic), "--head"),
        (
            args.class_weight == Some(ClassWeight::Balanced),
            "--class-weight balanced",
        ),
        (args.solver == Some(Solver::Linfa), "--solver linfa"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(given, _)| *given) {
        return Err(Error::Config(format!(
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
    TrainParams {
        head: args
            .head
            .or(before.map(|t| t.head))
            .unwrap_or(defaults.head),
        folds: args
            .folds
            .or(before.map(|t| t.folds))
            .unwrap_or(defaults.folds),
        grid: args.grid.clone().unwrap_or(defaults.grid),
        class_weight: args
            .class_weight
            .or(before.map(|t| t.class_weight))
            .unwrap_or(defaults.class_weight),
        solver: args
            .solver
            .or(before.and_then(|t| t.solver))
            .unwrap_or(defaults.solver),
        seed,
        k: args
            .k
            .or(before.and_then(|t| t.knn_k))
            .unwrap_or(defaults.k),
        max_iterations: args.max_iterations,
        open_set: rate.map(|rate| NoveltyParams {
            false_rejection: rate,
            seed,
            ..NoveltyParams::default()
        }),
        keep_embeddings: args.keep_embeddings || before.is_some_and(|t| t.keeps_embeddings),
    }
}

fn print_train_report(report: &headstart::head::TrainReport) {
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

fn eval(args: EvalArgs, runtime: RuntimeOptions) -> Result<()> {
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

fn predict(args: PredictArgs, runtime: RuntimeOptions) -> Result<()> {
    let backbone = args.backbone.as_deref().map(BackboneRef::parse);
    let mut classifier = Classifier::load(&args.bundle, &runtime, backbone.as_ref())?;
    let flags = &args.embed;
    let data = match classifier.modality() {
        Modality::Text => Data::Texts(texts_to_predict(&args)?),
        Modality::Image => {
            if args.inputs.is_empty() || args.from.is_some() {
                return Err(Error::Config(
                    "this bundle classifies images: give image files or folders".into(),
                ));
            }
            let paths: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
            Data::Images(files::from_inputs(&paths)?)
        }
    };
    let mut bar = flags.progress(classifier.modality().unit());
    let result = workflow::predict(
        &mut classifier,
        &data,
        &flags.options(),
        args.top_k,
        args.min_confidence,
        &mut |done, total| bar.update(done, total),
    );
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
                    let top: Vec<serde_json::Value> =
                        p.top.iter().map(|(c, prob)| serde_json::json!({"class": c, "probability": prob})).collect();
                    let mut item = serde_json::json!({column: path, "label": p.label.as_deref().unwrap_or("unknown"), "top": top});
                    if let Some(novelty) = p.novelty {
                        item["novelty"] = serde_json::json!(novelty);
                        item["novel"] = serde_json::json!(p.novel);
                    }
                    if let Some(labels) = &p.labels {
                        item["labels"] = serde_json::json!(labels);
                    }
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

/// Texts in a table are cut to this many characters (CSV and JSON carry them whole).
const TABLE_TEXT: usize = 100;

/// `text`, or its start and an ellipsis when it is longer than a table cell takes.
fn shortened(text: &str) -> String {
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
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// A text bundle's inputs: the arguments, else lines of --from FILE or of stdin.
fn texts_to_predict(args: &PredictArgs) -> Result<texts::TextDataset> {
    let (lines, skipped) = match (&args.from, args.inputs.is_empty()) {
        (None, false) => (args.inputs.clone(), Vec::new()),
        (Some(path), _) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            texts::read_lines(file, &path.display().to_string())?
        }
        _ => texts::read_lines(std::io::stdin().lock(), "stdin")?,
    };
    if lines.is_empty() {
        return Err(Error::Config(
            "no text to classify: give texts as arguments, --from FILE, or lines on stdin".into(),
        ));
    }
    let mut data = texts::unlabelled("input", lines);
    data.skipped = skipped;
    Ok(data)
}

/// The flag that sets a library option, by the option's field name; the field's name in words when no flag
/// sets it (a bundle's setting, a head's internal one), so an error never names a flag that does not exist.
fn flag(name: &'static str) -> String {
    let long = match name {
        "fraction" => "val-split".to_string(),
        "false_rejection" => "open-set".to_string(),
        other => other.replace('_', "-"),
    };
    if has_flag(&<Cli as clap::CommandFactory>::command(), &long) {
        format!("--{long}")
    } else {
        name.replace('_', " ")
    }
}

/// Whether `command` or one of its subcommands takes `--long`.
fn has_flag(command: &clap::Command, long: &str) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some(long))
        || command.get_subcommands().any(|c| has_flag(c, long))
}

/// A library error in the command line's words: where it names an option, the flag that sets it.
fn in_flags(error: &Error) -> String {
    match error {
        Error::InvalidParameter { name, message } => format!("{} {message}", flag(name)),
        Error::MissingColumn {
            path,
            role,
            wanted,
            available,
        } => format!(
            "{}: no column '{wanted}' (columns: {}); pass --{role}-column NAME",
            path.display(),
            available.join(", ")
        ),
        Error::TensorNotFound { path, .. } => format!(
            "{error}; `headstart inspect {} --layers` lists them",
            path.display()
        ),
        Error::TokenizerNotFound { model } => format!(
            "{}: no tokenizer.json beside it; pass --tokenizer PATH",
            model.display()
        ),
        Error::BundleBackboneNotFound { bundle, backbone } => format!(
            "{}: the bundle's backbone {backbone} is not there; pass --backbone PATH",
            bundle.display()
        ),
        other => other.to_string(),
    }
}

/// A text as one CSV field. One that a spreadsheet would run as a formula gets a leading `'`, as OWASP
/// advises against CSV injection.
fn csv_field(text: &str) -> String {
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

fn export(args: &ExportArgs, runtime: &RuntimeOptions) -> Result<()> {
    let mut options = headstart::export::ExportOptions {
        head_only: args.head_only,
        raw_input: args.raw_input,
        raw_size: args.raw_size,
        int8: None,
    };
    let backbone = args.backbone.as_deref().map(BackboneRef::parse);
    let bundle = Bundle::load(&args.bundle)?;
    let calibrate = args.int8 && bundle.info.backbone.calibration.is_none();
    let exported = match (&args.calibration_data, calibrate) {
        (Some(_), false) => {
            return Err(Error::Config(format!(
                "{} was trained with --precision int8: it is exported with its own calibration, without --calibration-data",
                args.bundle.display()
            )));
        }
        (None, true) => {
            return Err(Error::Config(format!(
                "--int8 on {}, a bundle trained in fp32, calibrates on images like its training data: pass --calibration-data DIR (or train with --precision int8)",
                args.bundle.display()
            )));
        }
        (Some(images), true) => {
            let classifier =
                Classifier::from_bundle(bundle, &args.bundle, runtime, backbone.as_ref())?;
            let settings = CalibrationSettings::default()
                .inputs(args.calibration)
                .method(args.calibration_method);
            options.int8 = Some(classifier.calibrate(images, settings)?);
            headstart::export::export_classifier(&classifier, &options, &args.output_file)?
        }
        (None, false) => headstart::export::export(
            &args.bundle,
            backbone.as_ref(),
            runtime,
            &options,
            &args.output_file,
        )?,
    };
    println!(
        "wrote {} ({:.1} MB): inputs {}; outputs {} [N, {}], {} [N]; classes {}",
        exported.path.display(),
        exported.bytes as f64 / 1e6,
        exported.inputs.join(", "),
        headstart::export::PROBABILITIES,
        exported.classes.len(),
        headstart::export::CLASS_INDEX,
        exported.classes.join(", ")
    );
    Ok(())
}

fn inspect(path: &std::path::Path, layers: bool, runtime: &RuntimeOptions) -> Result<()> {
    let report = backbone::inspect(path, runtime)?;
    let s = &report.summary;
    println!("{}", report.path.display());
    println!("  sha256     {}", report.sha256);
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    println!("  opset      {}", opsets.join(", "));
    println!(
        "  ir version {}   producer {}",
        s.ir_version,
        if s.producer.is_empty() {
            "-"
        } else {
            &s.producer
        }
    );
    println!(
        "  nodes      {}   initializers {}",
        s.node_count, s.initializer_count
    );
    println!("  inputs");
    for (name, ty) in &report.inputs {
        println!("    {name}: {ty}");
    }
    println!("  outputs");
    for (name, ty) in &report.outputs {
        println!("    {name}: {ty}");
    }
    if layers {
        println!("  tensors (for --layer)");
        for (name, op) in &s.tensors {
            println!("    {name}  ({op})");
        }
    }
    Ok(())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn show_cache(json: bool) -> Result<()> {
    let root = headstart::home::home()?;
    let parts = headstart::home::usage(&root)?;
    let embeddings = headstart::embeddings::cache::usage(&root.join("embeddings"))?;
    if json {
        let value = serde_json::json!({ "root": root, "parts": parts, "embeddings": embeddings });
        println!("{value}");
        return Ok(());
    }
    println!(
        "cache {} (HEADSTART_HOME moves it; `headstart cache clear` empties it)",
        root.display()
    );
    for part in &parts {
        println!(
            "{:<18} {:>10} files {:>11}",
            part.name,
            part.files,
            megabytes(part.bytes)
        );
        if part.name == "embeddings" {
            for configuration in &embeddings {
                println!(
                    "    {:>10} entries {:>11}  {}",
                    configuration.entries,
                    megabytes(configuration.bytes),
                    configuration
                        .description
                        .as_deref()
                        .unwrap_or("(configuration not recorded)")
                );
            }
        }
    }
    let total: u64 = parts.iter().map(|p| p.bytes).sum();
    println!("{:<18} {:>10}       {:>11}", "total", "", megabytes(total));
    Ok(())
}

fn clear_cache(everything: bool, json: bool) -> Result<()> {
    let root = headstart::home::home()?;
    let cleared = headstart::home::clear(&root, everything)?;
    if json {
        println!("{}", serde_json::to_string(&cleared).unwrap_or_default());
        return Ok(());
    }
    if cleared.removed.is_empty() {
        println!("nothing to remove in {}", root.display());
    }
    for part in &cleared.removed {
        println!(
            "removed {} ({} files, {})",
            root.join(&part.name).display(),
            part.files,
            megabytes(part.bytes)
        );
    }
    if !cleared.left_alone.is_empty() {
        // Folders from before markers were written are headstart's too, but cannot be told from the user's.
        println!(
            "left alone (no {} marker: not made by this headstart; delete them yourself if they are a cache): {}",
            headstart::home::MARKER,
            cleared.left_alone.join(", ")
        );
    }
    Ok(())
}

fn print_diagnosis(d: &headstart::runtime::Diagnosis) {
    println!(
        "ONNX Runtime  {} at {}",
        d.runtime_version,
        d.runtime_library.display()
    );
    println!("  build       {}", d.runtime_build);
    println!("  providers   {}", d.providers.join(", "));
    match (&d.driver, &d.driver_problem) {
        (Some(driver), _) => println!(
            "NVIDIA driver {} ({})",
            driver.version,
            if driver.gpus.is_empty() {
                "no GPU listed".to_string()
            } else {
                driver.gpus.join(", ")
            }
        ),
        (None, Some(problem)) => println!("NVIDIA driver: {problem}"),
        (None, None) => {}
    }
    for library in &d.nvidia_libraries {
        println!(
            "  loaded      {} from {} ({})",
            library.name,
            library.path.display(),
            library.source
        );
    }
    if let Some(problem) = &d.cuda_problem {
        println!("CUDA not used: {problem}");
    }
    println!(
        "device        {} (a test convolution ran there in {:.0} ms, start-up included)",
        d.device, d.check_ms
    );
    match (&d.placement, d.device.is_cuda()) {
        (Some(placement), _) => println!("  placement   {placement}"),
        (None, true) => println!("  placement   not reported by ONNX Runtime"),
        (None, false) => {}
    }
}

fn list_models() -> Result<()> {
    for model in zoo::models() {
        let default = if model.default { " (default)" } else { "" };
        println!(
            "{}{default}  [{}]  {}",
            model.name, model.modality, model.description
        );
        println!("    source   {}", model.onnx.origin());
        println!("    sha256   {}", model.onnx.sha256());
        let pooling = serde_json::to_value(model.pooling).unwrap_or_default();
        println!(
            "    features output '{}', pooling {}",
            model.output,
            pooling.as_str().unwrap_or("auto")
        );
        if let Some(p) = &model.preprocess {
            println!("    input    {}", p.describe());
        }
        if let Some(t) = &model.text {
            println!(
                "    input    tokenizer {} (max {} tokens)",
                t.tokenizer.package, t.max_length
            );
        }
        println!("    licence  {}", model.licence);
    }
    Ok(())
}

/// A demo job's output: what it is, what was embedded, the split, training, and the held-out metrics.
fn print_held_out_job(title: &str, unit: &str, seed: u64, report: &workflow::HeldOutReport) {
    println!("{title}");
    print_embed_summary(&report.embed, false);
    println!(
        "split: {} train / {} test {unit} (stratified, seed {seed})",
        report.train_rows, report.test_rows
    );
    print_train_report(&report.report);
    println!("\ntest set\n{}", report.test.render());
    println!("whole job: {:.1} s", report.seconds);
}

fn print_demo(report: &demo::DemoReport) {
    println!(
        "image backbone {} ({})",
        report.image_backbone, report.preprocess
    );
    for photo in &report.photos {
        let name = photo
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let top: Vec<String> = photo
            .top
            .iter()
            .map(|(label, p)| format!("{label} {:.0}%", p * 100.0))
            .collect();
        println!(
            "  {name:<22} {}-d embedding; ImageNet says: {}",
            photo.dim,
            top.join(" | ")
        );
    }
    println!(
        "  {:.1} ms per image (batch of {})",
        report.ms_per_image,
        report.photos.len()
    );
    println!("text backbone {}", report.text_backbone);
    for (a, b, cos) in &report.sentence_pairs {
        println!("  cos {cos:.3}  \"{a}\" ~ \"{b}\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names every `Error::parameter` in the library is given, read from the source.
    fn parameter_names() -> Vec<String> {
        let mut names = Vec::new();
        let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("Error::parameter(") {
                    let rest = text[at + "Error::parameter(".len()..].trim_start();
                    if let Some(quoted) = rest.strip_prefix('"') {
                        names.push(quoted[..quoted.find('"').unwrap()].to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Every parameter error names a flag the command line has, or none: never one that does not exist.
    #[test]
    fn every_parameter_error_names_a_real_flag_or_none() {
        let names = parameter_names();
        assert!(names.len() > 20, "{names:?}");
        let command = <Cli as clap::CommandFactory>::command();
        for name in names {
            let name: &'static str = name.leak();
            let shown = in_flags(&Error::InvalidParameter {
                name,
                message: "is wrong".into(),
            });
            match shown.strip_prefix("--") {
                Some(rest) => {
                    let long = rest.split(' ').next().unwrap();
                    assert!(has_flag(&command, long), "{name}: {shown}");
                }
                None => assert_eq!(shown, format!("{} is wrong", name.replace('_', " "))),
            }
        }
        for (name, expected) in [
            ("false_rejection", "--open-set"),
            ("fraction", "--val-split"),
            ("crop_pct", "--crop-pct"),
            ("std", "--std"),
            ("k", "--k"),
        ] {
            assert_eq!(flag(name), expected);
        }
        assert_eq!(flag("max_reference"), "max reference");
    }

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
