//! `headstart export`: a bundle as one ONNX file.

use std::path::PathBuf;

use clap::Args;
use headstart::backbone::{BackboneRef, CalibrationMethod, CalibrationSettings};
use headstart::export::{self, ExportOptions};
use headstart::runtime::RuntimeOptions;

use crate::cli::failure::Outcome;
use crate::cli::flags::parse_size;

#[derive(Args)]
pub struct ExportArgs {
    pub bundle: PathBuf,
    /// The ONNX file to write
    #[arg(long, short, value_name = "MODEL.onnx")]
    pub output_file: PathBuf,
    /// Only the head: embedding [N, D] in, probabilities out (for a device that already runs the backbone)
    #[arg(long, conflicts_with = "raw_input")]
    pub head_only: bool,
    /// Image bundles: uint8 RGB pixels [N, H, W, 3] in; resizing, cropping and normalisation in the graph
    #[arg(long)]
    pub raw_input: bool,
    /// The pixels' size for --raw-input: N or HxW (default: the model's input size)
    #[arg(long, value_parser = parse_size, requires = "raw_input")]
    pub raw_size: Option<(u32, u32)>,
    /// The bundle's backbone, if it is not where the bundle says
    #[arg(long, value_name = "NAME|PATH")]
    pub backbone: Option<String>,
    /// An int8 backbone (QDQ; about a quarter of the size). A bundle trained with --precision int8 is
    /// exported int8 anyway, with its own calibration
    #[arg(long, conflicts_with = "head_only")]
    pub int8: bool,
    /// With --int8 on a float bundle: a folder of images like the training data to calibrate on
    #[arg(long, value_name = "DIR", requires = "int8")]
    pub calibration_data: Option<PathBuf>,
    /// How many of those images to calibrate on
    #[arg(long, value_name = "N", default_value_t = CalibrationSettings::default().inputs)]
    pub calibration: usize,
    /// How each activation's range is read from the calibration images
    #[arg(long, value_enum, default_value_t = CalibrationMethod::Mse)]
    pub calibration_method: CalibrationMethod,
}

pub fn run(args: &ExportArgs, runtime: &RuntimeOptions) -> Outcome {
    let mut options = ExportOptions::default()
        .head_only(args.head_only)
        .raw_input(args.raw_input)
        .int8(args.int8);
    if let Some((height, width)) = args.raw_size {
        options = options.raw_size(height, width);
    }
    if let Some(images) = &args.calibration_data {
        let settings = CalibrationSettings::default()
            .inputs(args.calibration)
            .method(args.calibration_method);
        options = options.calibrate_on(images, settings);
    }
    let backbone = args.backbone.as_deref().map(BackboneRef::parse);
    let exported = export::export(
        &args.bundle,
        backbone.as_ref(),
        runtime,
        &options,
        &args.output_file,
    )?;
    println!(
        "wrote {} ({:.1} MB): inputs {}; outputs {} [N, {}], {} [N]; classes {}",
        exported.path.display(),
        exported.bytes as f64 / 1e6,
        exported.inputs.join(", "),
        export::PROBABILITIES,
        exported.classes.len(),
        export::CLASS_INDEX,
        exported.classes.join(", ")
    );
    Ok(())
}
