//! The `headstart` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use headstart::backbone::{self, BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::embed::{self, Augment, EmbedOptions};
use headstart::pooling::Pooling;
use headstart::preprocess::{ColourOrder, Interpolation, Layout, PreprocessOverrides, Resize};
use headstart::progress::Progress;
use headstart::runtime::{Device, RuntimeOptions};
use headstart::zoo::{self, Modality};
use headstart::{Result, dataset, datasets, decode, demo};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the default backbones on sample photos and sentences and show what they see
    Demo,
    /// Embed a folder of images into an .npz (-o), or files / texts (--text) as JSON lines on stdout
    Embed(Box<EmbedArgs>),
    /// Show an ONNX file's inputs, outputs and opsets; --layers lists the tensors --layer can tap
    Inspect {
        model: PathBuf,
        #[arg(long)]
        layers: bool,
    },
    /// The model zoo
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Demo datasets from package registries
    #[command(subcommand)]
    Datasets(DatasetsCommand),
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Fetch a dataset and print its class-folder path: `elpv` (solar cells, defective/functional)
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
    /// A folder (one sub-folder per class, or flat), image files, or texts with --text
    #[arg(required = true)]
    inputs: Vec<String>,
    /// The .npz to write when embedding a folder
    #[arg(long, short, value_name = "OUT.npz")]
    output_file: Option<PathBuf>,
    /// Images per inference batch
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
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
    #[arg(long, default_value_t = headstart::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// No progress bar or summary
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON summary (counts, skips, seconds, images/s) instead of the text one
    #[arg(long)]
    json: bool,
    /// Inputs are texts, embedded with a text backbone
    #[arg(long)]
    text: bool,
    /// tokenizer.json for a text backbone outside the zoo (default: beside the model)
    #[arg(long, value_name = "PATH")]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    backbone: BackboneArgs,
}

#[derive(Args)]
struct BackboneArgs {
    /// A zoo name (`headstart models list`) or a path to an .onnx file
    #[arg(long, short)]
    backbone: Option<String>,
    /// Graph output to take features from
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
    /// Intermediate tensor to take features from (see `headstart inspect MODEL --layers`)
    #[arg(long, value_name = "TENSOR")]
    layer: Option<String>,
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
    fn options(&self, runtime: RuntimeOptions) -> Result<BackboneOptions> {
        if self.std.is_some_and(|s| s.contains(&0.0)) {
            return Err(headstart::Error::Config(
                "--std must not contain zero".into(),
            ));
        }
        Ok(BackboneOptions {
            runtime,
            output: self.output.clone(),
            layer: self.layer.clone(),
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
            },
        })
    }

    fn reference(&self, modality: Modality) -> BackboneRef {
        match &self.backbone {
            Some(name) => BackboneRef::parse(name),
            None => BackboneRef::Zoo(zoo::default_for(modality).name),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = RuntimeOptions {
        library: cli.ort_lib.clone(),
        device: cli.device,
        threads: cli.threads,
        intra_op_spinning: None,
    };
    match run(cli.command, runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, runtime: RuntimeOptions) -> Result<()> {
    match command {
        Command::Demo => print_demo(&demo::run(&runtime)?),
        Command::Embed(args) => embed(*args, runtime)?,
        Command::Inspect { model, layers } => inspect(&model, layers, &runtime)?,
        Command::Models(ModelsCommand::List) => list_models()?,
        Command::Datasets(DatasetsCommand::Fetch { name }) => match name.as_str() {
            "elpv" => println!("{}", datasets::elpv_by_defect()?.display()),
            other => {
                return Err(headstart::Error::Config(format!(
                    "no dataset '{other}' (have: elpv)"
                )));
            }
        },
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
    let options = args.backbone.options(runtime)?;
    let folder = match args.inputs.as_slice() {
        [single] if !args.text && std::path::Path::new(single).is_dir() => {
            Some(PathBuf::from(single))
        }
        _ => None,
    };
    if let Some(folder) = folder {
        return embed_folder(&folder, &args, &options);
    }
    if let Some(out) = &args.output_file {
        return Err(headstart::Error::Config(format!(
            "-o {} writes a folder's embeddings: give one folder of images",
            out.display()
        )));
    }
    let embeddings = if args.text {
        let mut backbone = TextBackbone::open(
            &args.backbone.reference(Modality::Text),
            args.tokenizer.as_deref(),
            &options,
        )?;
        let texts: Vec<&str> = args.inputs.iter().map(String::as_str).collect();
        backbone.embed(&texts)?
    } else {
        // Decode first: a bad input path should not wait for a backbone download.
        let images = args
            .inputs
            .iter()
            .map(|p| decode::open_image(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut backbone =
            ImageBackbone::open(&args.backbone.reference(Modality::Image), &options)?;
        backbone.embed(&images)?
    };
    for (input, row) in args.inputs.iter().zip(embeddings.rows()) {
        let line = serde_json::json!({ "input": input, "embedding": row.to_vec() });
        println!("{line}");
    }
    Ok(())
}

fn embed_folder(
    folder: &std::path::Path,
    args: &EmbedArgs,
    options: &BackboneOptions,
) -> Result<()> {
    let out = args.output_file.clone().ok_or_else(|| {
        headstart::Error::Config(format!(
            "embedding the folder {} writes an .npz: pass -o OUT.npz",
            folder.display()
        ))
    })?;
    let dataset = dataset::scan(folder)?;
    // Decode workers share the cores with ONNX Runtime: its idle threads must not spin.
    let mut options = options.clone();
    options.runtime.intra_op_spinning = Some(false);
    let mut backbone = ImageBackbone::open(&args.backbone.reference(Modality::Image), &options)?;
    let embed_options = EmbedOptions {
        batch_size: args.batch_size,
        workers: args.workers.unwrap_or(EmbedOptions::default().workers),
        use_cache: !args.no_cache,
        cache_dir: None,
        augment: args.augment.unwrap_or_default(),
        strict: args.strict,
        max_pixels: args.max_pixels,
    };
    let mut bar = Progress::new(dataset.items.len(), "images", !args.quiet && !args.json);
    let result = embed::embed_dataset(&dataset, &mut backbone, &embed_options, &mut |done, _| {
        bar.update(done)
    });
    bar.finish();
    let (set, summary) = result?;
    if set.rows() == 0 {
        return Err(headstart::Error::input(
            folder,
            "no image could be embedded; nothing written",
        ));
    }
    set.write_npz(&out)?;
    if args.json {
        let mut value = serde_json::to_value(&summary).unwrap_or_default();
        value["output"] = serde_json::json!(out.display().to_string());
        value["dim"] = serde_json::json!(set.dim);
        println!("{value}");
    } else if !args.quiet {
        println!(
            "embedded {} of {} files ({} rows: {} from cache, {} computed) in {:.1} s, {:.1} images/s -> {} [{} x {}]",
            summary.embedded,
            summary.files,
            summary.rows,
            summary.from_cache,
            summary.computed,
            summary.seconds,
            summary.images_per_second,
            out.display(),
            set.rows(),
            set.dim
        );
        if !summary.skipped.is_empty() {
            println!("skipped {}:", summary.skipped.len());
            for skip in &summary.skipped {
                println!("  {}: {}", skip.path, skip.reason);
            }
        }
        for class in &summary.empty_classes {
            println!("empty class folder: {class}");
        }
    }
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

fn list_models() -> Result<()> {
    for model in zoo::models() {
        let default = if model.default { " (default)" } else { "" };
        let modality = match model.modality {
            Modality::Image => "image",
            Modality::Text => "text",
        };
        println!(
            "{}{default}  [{modality}]  {}",
            model.name, model.description
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
