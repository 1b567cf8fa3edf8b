//! Argument groups that several commands share: how data is read, how it is embedded, which backbone.

use std::path::PathBuf;

use clap::Args;
use headstart::Augment;
use headstart::Modality;
use headstart::audit::{Apply, amend, read_fixes};
use headstart::backbone::Pooling;
use headstart::backbone::{BackboneOptions, BackboneRef, CalibrationMethod, CalibrationSettings};
use headstart::backbone::{
    ColourOrder, Interpolation, JpegDecode, Layout, PreprocessOverrides, Resize,
};
use headstart::data::{Data, TextOptions};
use headstart::embeddings::EmbedOptions;
use headstart::runtime::RuntimeOptions;

use super::progress::Progress;
use crate::cli::failure::{Outcome, usage};

/// How text data is read (embed, train, eval).
#[derive(Args)]
pub struct TextFlags {
    /// The column of a text table that holds the text
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_column: String,
    /// The column of a text table that holds the label
    #[arg(long, default_value = "label", value_name = "NAME")]
    pub label_column: String,
    /// tokenizer.json for a text backbone outside the zoo (default: beside the model)
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
}

impl TextFlags {
    pub fn options(&self) -> TextOptions {
        TextOptions::default()
            .text_column(&self.text_column)
            .label_column(&self.label_column)
    }
}

/// Fixes written by `headstart audit --write-fixes`, applied to what is trained (train, audit). The files stay
/// where they are.
#[derive(Args)]
pub struct FixFlags {
    /// Leave out the inputs this fixes file (from `headstart audit --write-fixes`) marks `exclude`
    #[arg(long, value_name = "FIXES.csv")]
    pub exclude: Option<PathBuf>,
    /// Train the inputs this fixes file marks `relabel` as its `suggested` class
    #[arg(long, value_name = "FIXES.csv")]
    pub relabel: Option<PathBuf>,
}

impl FixFlags {
    /// `data` with the fixes applied; what they did is said on stderr unless `quiet`.
    pub fn apply(&self, mut data: Data, quiet: bool) -> Outcome<Data> {
        for (file, apply) in [
            (&self.exclude, Apply::Exclusions),
            (&self.relabel, Apply::Relabels),
        ] {
            let Some(file) = file else { continue };
            // The library knows the rows, not the file they came from: its complaints name the file here.
            let (amended, done) =
                amend(data, &read_fixes(file)?, apply).map_err(|error| match error {
                    headstart::Error::TrainingData(message) => {
                        headstart::Error::input(file, message)
                    }
                    other => other,
                })?;
            data = amended;
            if quiet {
                continue;
            }
            match apply {
                Apply::Exclusions => {
                    eprintln!("{}: left out {} inputs", file.display(), done.excluded)
                }
                Apply::Relabels => {
                    eprintln!("{}: relabelled {} inputs", file.display(), done.relabelled)
                }
            }
            if let Some(first) = done.missing.first() {
                eprintln!(
                    "warning: {}: {} of its inputs are not in the data (moved or renamed since the audit?), e.g. {first}; skipped",
                    file.display(),
                    done.missing.len()
                );
            }
        }
        Ok(data)
    }
}

/// How folders are embedded (embed, train, eval, predict).
#[derive(Args)]
pub struct EmbedFlags {
    /// Images (texts) per inference batch [default: 32 on the CPU, 256 on CUDA]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Decode threads (default: one per core)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Neither read nor write the embedding cache
    #[arg(long)]
    pub no_cache: bool,
    /// Also embed augmented views of each image: flip, crop (comma-separated)
    #[arg(long, value_name = "VIEWS")]
    pub augment: Option<Augment>,
    /// Fail on the first file that cannot be embedded instead of skipping it
    #[arg(long)]
    pub strict: bool,
    /// Largest image to decode, in pixels
    #[arg(long, default_value_t = headstart::data::decode::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Embed what decodes of truncated or corrupt images (the missing part grey) instead of skipping them
    #[arg(long)]
    pub allow_truncated: bool,
    /// No progress bar or summary
    #[arg(long, short)]
    pub quiet: bool,
    /// Also print the seconds spent in each stage (read, decode, preprocess, waiting, inference, write)
    #[arg(long, short)]
    pub verbose: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

impl EmbedFlags {
    pub fn options(&self) -> EmbedOptions {
        let defaults = EmbedOptions::default();
        let workers = self.workers.unwrap_or(defaults.workers);
        let mut options = defaults
            .workers(workers)
            .use_cache(!self.no_cache)
            .augment(self.augment.unwrap_or_default())
            .strict(self.strict)
            .max_pixels(self.max_pixels)
            .allow_truncated(self.allow_truncated);
        options.batch_size = self.batch_size;
        options
    }

    pub fn progress(&self, unit: &'static str) -> Progress {
        Progress::new(unit, !self.quiet && !self.json)
    }
}

#[derive(Args)]
pub struct BackboneArgs {
    /// A zoo name (`headstart models list`) or a path to an .onnx file
    #[arg(long, short)]
    pub backbone: Option<String>,
    /// Graph output to take features from
    #[arg(long, value_name = "NAME")]
    pub output: Option<String>,
    /// Intermediate tensor to take features from (see `headstart inspect MODEL --layers`); given again,
    /// each tensor is pooled and the vectors joined in order
    #[arg(long, value_name = "TENSOR")]
    pub layer: Vec<String>,
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings
    #[arg(long)]
    pub normalize: bool,
    /// Preprocessing JSON (timm pretrained_cfg or Hugging Face preprocessor_config.json keys)
    #[arg(long, value_name = "FILE")]
    pub preprocess: Option<PathBuf>,
    /// Input size: N or HxW
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    #[arg(long, value_enum)]
    pub resize: Option<Resize>,
    /// Fraction of the resized image kept by the centre crop
    #[arg(long, value_name = "F")]
    pub crop_pct: Option<f32>,
    #[arg(long, value_enum)]
    pub interpolation: Option<Interpolation>,
    /// Per-channel mean in pixel units (0-255), model channel order: R,G,B or one value
    #[arg(long, value_parser = parse_triple)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel std in pixel units (0-255)
    #[arg(long, value_parser = parse_triple)]
    pub std: Option<[f32; 3]>,
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    #[arg(long, value_enum)]
    pub colour: Option<ColourOrder>,
    /// Decode every pixel of large JPEGs (default: at 1/2, 1/4 or 1/8 scale when still large enough)
    #[arg(long)]
    pub exact_decode: bool,
    /// With --precision int8: how many of the data's images calibrate the activation ranges
    #[arg(long, value_name = "N", default_value_t = CalibrationSettings::default().inputs)]
    pub calibration: usize,
    /// With --precision int8: how each activation's range is read from the calibration images
    #[arg(long, value_enum, default_value_t = CalibrationMethod::Mse)]
    pub calibration_method: CalibrationMethod,
}

pub fn parse_size(text: &str) -> std::result::Result<(u32, u32), String> {
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
    pub fn options(
        &self,
        runtime: RuntimeOptions,
        tokenizer: Option<PathBuf>,
    ) -> Outcome<BackboneOptions> {
        if self.std.is_some_and(|s| s.contains(&0.0)) {
            return Err(usage("--std must not contain zero"));
        }
        // Flags not given leave the option unset: the bundle's, the zoo's or the model's own setting holds.
        let mut preprocess = PreprocessOverrides::default();
        preprocess.size = self.size;
        preprocess.resize = self.resize;
        preprocess.crop_pct = self.crop_pct;
        preprocess.interpolation = self.interpolation;
        preprocess.mean = self.mean;
        preprocess.std = self.std;
        preprocess.layout = self.layout;
        preprocess.colour = self.colour;
        preprocess.jpeg_decode = self.exact_decode.then_some(JpegDecode::Exact);
        let mut options = BackboneOptions::default()
            .runtime(runtime)
            .joined(self.layer.iter().skip(1).cloned().collect())
            .preprocess(preprocess)
            .calibrate(
                CalibrationSettings::default()
                    .inputs(self.calibration)
                    .method(self.calibration_method),
            );
        options.tokenizer = tokenizer;
        options.output = self.output.clone();
        options.layer = self.layer.first().cloned();
        options.pooling = self.pooling;
        options.normalize = self.normalize.then_some(true);
        options.preprocess_file = self.preprocess.clone();
        Ok(options)
    }

    pub fn reference(&self, modality: Modality) -> BackboneRef {
        BackboneRef::given_or_default(self.given().as_ref(), modality)
    }

    /// The backbone named with --backbone, if any.
    pub fn given(&self) -> Option<BackboneRef> {
        self.backbone.as_deref().map(BackboneRef::parse)
    }
}

/// The flag that sets a library option, by the option's field name; the field's name in words when no flag
/// sets it (a bundle's setting, a head's internal one), so an error never names a flag that does not exist.
/// A test in `cli` holds this against the parser, both ways.
pub fn flag(name: &'static str) -> String {
    match name {
        "fraction" => "--val-split".into(),
        "false_rejection" => "--open-set".into(),
        _ if WITHOUT_FLAG.contains(&name) => name.replace('_', " "),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The library options that no flag sets.
pub const WITHOUT_FLAG: [&str; 8] = [
    "c",
    "classes",
    "content",
    "max_reference",
    "models",
    "pixels",
    "tolerance",
    "var_smoothing",
];
