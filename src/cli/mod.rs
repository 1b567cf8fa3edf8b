//! The command line: the top-level parser, dispatch, and library errors in the command line's words. Each
//! command is a file in `commands/` (parse → call the library → print); argument groups that several share are
//! in `flags`, printing that several share in `print`.

mod commands;
mod failure;
mod flags;
mod http;
mod print;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use headstart::Error;
use headstart::runtime::{ConvSearch, Device, Precision, RuntimeOptions};

use failure::{Failure, Outcome};
use flags::flag;

use commands::{
    audit, cache, datasets, demo, doctor, embed, eval, export, inspect, models, predict, serve,
    studio, train,
};

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
    Demo(demo::DemoArgs),
    /// Embed a folder of images, a folder of .txt class folders or a text table into an .npz (-o), or files /
    /// texts (--text) as JSON lines on stdout
    Embed(Box<embed::EmbedArgs>),
    /// Train a head on labelled images or texts (embedded through the cache) or an .npz; writes a bundle
    Train(Box<train::TrainArgs>),
    /// Find what is wrong with labelled data before training on it: labels the out-of-fold probabilities
    /// contradict, duplicates (and leakage into --val), outliers
    Audit(Box<audit::AuditArgs>),
    /// Evaluate a bundle on labelled data or an .npz: accuracy, macro-F1, per-class metrics, confusion matrix
    Eval(Box<eval::EvalArgs>),
    /// Classify images, or texts with a text bundle: top-k classes with probabilities
    Predict(Box<predict::PredictArgs>),
    /// Serve bundles over HTTP: JSON answers, inputs from concurrent clients batched, bundles on one backbone
    /// sharing its runs
    Serve(Box<serve::ServeArgs>),
    /// The whole loop in a browser over a dataset folder: see and fix the data, train, try it, take the bundle
    Studio(Box<studio::StudioArgs>),
    /// Export a bundle as one ONNX file (backbone + pooling + head + softmax), or --head-only
    Export(export::ExportArgs),
    /// Show an ONNX file's inputs, outputs and opsets; --layers lists the tensors --layer can tap
    Inspect(inspect::InspectArgs),
    /// What runs where: ONNX Runtime and its providers, the NVIDIA driver and GPUs, the NVIDIA libraries
    /// loaded and where from; runs a small convolution on the device --device chooses
    Doctor(doctor::DoctorArgs),
    /// The model zoo
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Demo datasets from package registries
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Where the cache is and what it holds (embeddings per backbone configuration, models, datasets, ONNX
    /// Runtime); `cache clear` empties it
    Cache(cache::CacheArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = RuntimeOptions::default()
        .device(cli.device)
        .allow_cpu_nodes(cli.allow_cpu_nodes)
        .conv_search(cli.conv_search)
        .precision(cli.precision);
    runtime.library = cli.ort_lib.clone();
    runtime.threads = cli.threads;
    match run(cli.command, runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let message = match failure {
                Failure::Library(error) => in_flags(&error),
                Failure::Usage(message) => message,
            };
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, runtime: RuntimeOptions) -> Outcome {
    match command {
        Command::Demo(args) => demo::run(&args, &runtime),
        Command::Embed(args) => embed::run(*args, runtime),
        Command::Train(args) => train::run(*args, runtime),
        Command::Audit(args) => audit::run(*args, runtime),
        Command::Eval(args) => eval::run(*args, runtime),
        Command::Predict(args) => predict::run(*args, runtime),
        Command::Serve(args) => serve::run(&args, runtime),
        Command::Studio(args) => studio::run(&args, runtime),
        Command::Export(args) => export::run(&args, &runtime),
        Command::Inspect(args) => inspect::run(&args, &runtime),
        Command::Doctor(args) => doctor::run(&args, &runtime),
        Command::Models(command) => models::run(command),
        Command::Datasets(command) => datasets::run(command),
        Command::Cache(args) => cache::run(args),
    }
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
        Error::Int8Calibration {
            bundle,
            trained_in_int8: true,
        } => format!(
            "{} was trained with --precision int8: it is exported with its own calibration, without --calibration-data",
            bundle.display()
        ),
        Error::Int8Calibration {
            bundle,
            trained_in_int8: false,
        } => format!(
            "--int8 on {}, a bundle trained in fp32, calibrates on images like its training data: pass --calibration-data DIR (or train with --precision int8)",
            bundle.display()
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
                        let name = &quoted[..quoted.find('"').unwrap()];
                        // This scan's own text is found too; a parameter is a field name.
                        if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                            names.push(name.to_string());
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Every parameter error names the flag that sets it, or none when the command line has no such flag:
    /// never one that does not exist.
    #[test]
    fn every_parameter_error_names_its_flag_or_none() {
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
                None => {
                    assert_eq!(shown, format!("{} is wrong", name.replace('_', " ")));
                    let long = name.replace('_', "-");
                    assert!(!has_flag(&command, &long), "{name} has a flag: --{long}");
                }
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

    /// Whether `command` or one of its subcommands takes `--long`.
    fn has_flag(command: &clap::Command, long: &str) -> bool {
        command.get_arguments().any(|a| a.get_long() == Some(long))
            || command.get_subcommands().any(|c| has_flag(c, long))
    }
}
