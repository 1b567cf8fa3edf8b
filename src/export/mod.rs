//! Edge export: a bundle as one ONNX file a device runs with nothing but an ONNX runtime. The backbone's graph
//! is kept byte for byte (spliced field by field, not decoded); pooling, normalisation, the scaler, the head and the
//! softmax are appended as ONNX nodes, and class names, preprocessing and headstart's version go into the
//! model's metadata. `--raw-input` also builds the image preprocessing into the graph (8-bit RGB pixels in,
//! resized exactly as headstart resizes, see `resample.rs`); `--head-only` writes the head alone: embedding in,
//! probabilities out.
//!
//! Outputs of every variant: `probabilities` (float `[N, K]`) and `class_index` (int64 `[N]`).

mod resample;

use std::path::{Path, PathBuf};

use prost::Message;

use crate::atomic::write_atomic;
use crate::backbone::{
    Backbone, BackboneIdentity, BackboneRef, Calibration, CalibrationSettings, InputSpec,
};
use crate::bundle::Bundle;
use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::head::{ClassScores, Novelty};
use crate::onnx::builder::GraphBuilder;
use crate::onnx::proto::{
    DOUBLE, FLOAT, INT64, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, UINT8,
    ValueInfoProto,
};
use crate::onnx::splice::{GraphEdit, edit_model};
use crate::pooling::Pooling;
use crate::preprocess::{ColourOrder, ImagePreprocess, Layout};
use crate::runtime::RuntimeOptions;

pub use crate::onnx::builder::{CLASS_INDEX, LABELS, PROBABILITIES};
/// The output with each input's novelty score, in a file exported from a bundle with open-set rejection.
pub(crate) const NOVELTY: &str = "novelty";
/// The input of a head-only file.
pub const EMBEDDING: &str = "embedding";
/// The input of a `--raw-input` file: uint8 RGB [N, H, W, 3].
pub const PIXELS: &str = "pixels";

/// The opset of head-only files (and the least a backbone needs for the appended nodes as written).
const HEAD_ONLY_OPSET: i64 = 17;

/// What file [`export`] writes. A bundle trained in int8 is always exported int8, with its own calibration; one
/// trained in fp32 is exported int8 when asked, calibrated on a folder of images like its training data.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Only the head: embedding in, probabilities out.
    pub head_only: bool,
    /// Image bundles: 8-bit RGB pixels in, preprocessing in the graph.
    pub raw_input: bool,
    /// The (height, width) of the raw pixels (default: the model's input size).
    pub raw_size: Option<(u32, u32)>,
    /// An int8 backbone (QDQ).
    pub int8: bool,
    /// For int8 from a bundle trained in fp32: the images to calibrate on.
    pub calibration_images: Option<PathBuf>,
    pub calibration: CalibrationSettings,
}

impl ExportOptions {
    pub fn head_only(mut self, head_only: bool) -> Self {
        self.head_only = head_only;
        self
    }

    pub fn raw_input(mut self, raw_input: bool) -> Self {
        self.raw_input = raw_input;
        self
    }

    pub fn raw_size(mut self, height: u32, width: u32) -> Self {
        self.raw_size = Some((height, width));
        self
    }

    pub fn int8(mut self, int8: bool) -> Self {
        self.int8 = int8;
        self
    }

    /// int8, calibrated on the images of `folder` (for a bundle trained in fp32).
    pub fn calibrate_on(
        mut self,
        folder: impl Into<PathBuf>,
        settings: CalibrationSettings,
    ) -> Self {
        self.int8 = true;
        self.calibration_images = Some(folder.into());
        self.calibration = settings;
        self
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: usize,
    /// The file's inputs, in order.
    pub inputs: Vec<String>,
    pub classes: Vec<String>,
}

/// Exports the bundle at `bundle_path` to `out` (written atomically: a failure leaves no file, and an existing
/// file is replaced only by a complete one).
pub fn export(
    bundle_path: &Path,
    backbone: Option<&BackboneRef>,
    runtime: &RuntimeOptions,
    options: &ExportOptions,
    out: &Path,
) -> Result<Exported> {
    check_request(options, out)?;
    let bundle = Bundle::load(bundle_path)?;
    // Refused before the backbone is opened.
    let calibrate_on = int8_images(&bundle, bundle_path, options)?;
    if options.head_only {
        let (bytes, inputs) = head_only(&bundle)?;
        return write_exported(out, &bytes, inputs, &bundle);
    }
    let classifier = Classifier::from_bundle(bundle, bundle_path, runtime, backbone)?;
    write_with_backbone(&classifier, options, calibrate_on, out)
}

/// [`export`] for a bundle whose backbone is already open.
pub fn export_classifier(
    classifier: &Classifier,
    options: &ExportOptions,
    out: &Path,
) -> Result<Exported> {
    check_request(options, out)?;
    if options.head_only {
        let (bytes, inputs) = head_only(&classifier.bundle)?;
        return write_exported(out, &bytes, inputs, &classifier.bundle);
    }
    let calibrate_on = int8_images(&classifier.bundle, classifier.path(), options)?;
    write_with_backbone(classifier, options, calibrate_on, out)
}

/// The file with the classifier's backbone, made int8 with ranges measured on `calibrate_on`'s images when
/// given.
fn write_with_backbone(
    classifier: &Classifier,
    options: &ExportOptions,
    calibrate_on: Option<&Path>,
    out: &Path,
) -> Result<Exported> {
    let calibration = calibrate_on
        .map(|images| classifier.calibrate(images, options.calibration))
        .transpose()?;
    let (bytes, inputs) = with_backbone(classifier, options, calibration.as_ref())?;
    write_exported(out, &bytes, inputs, &classifier.bundle)
}

fn check_request(options: &ExportOptions, out: &Path) -> Result<()> {
    if matches!(out.extension(), Some(e) if e != "onnx") {
        return Err(Error::input(out, "give the exported file an .onnx name"));
    }
    if options.head_only && options.int8 {
        return Err(Error::Unsupported(
            "a head-only file has no backbone to make int8".into(),
        ));
    }
    if options.head_only && options.raw_input {
        return Err(Error::Unsupported(
            "raw pixel input builds image preprocessing into the backbone's graph; a head-only file has no backbone"
                .into(),
        ));
    }
    Ok(())
}

/// The images to calibrate on, for a bundle trained in fp32 asked for int8 (`None`: exported as trained).
/// Refuses a request the bundle cannot take: one trained in fp32 needs images to calibrate on, one trained in
/// int8 has its own calibration.
fn int8_images<'a>(
    bundle: &Bundle,
    path: &Path,
    options: &'a ExportOptions,
) -> Result<Option<&'a Path>> {
    let trained_in_int8 = bundle.info.features.backbone.calibration.is_some();
    let images = options.calibration_images.as_deref();
    let refused = match images {
        Some(_) => trained_in_int8,
        None => options.int8 && !trained_in_int8,
    };
    if refused {
        return Err(Error::Int8Calibration {
            bundle: path.to_path_buf(),
            trained_in_int8,
        });
    }
    Ok(images)
}

fn write_exported(
    out: &Path,
    bytes: &[u8],
    inputs: Vec<String>,
    bundle: &Bundle,
) -> Result<Exported> {
    write_atomic(out, |file| {
        file.write_all(bytes).map_err(|e| Error::io(out, e))
    })?;
    Ok(Exported {
        path: out.to_path_buf(),
        bytes: bytes.len(),
        inputs,
        classes: bundle.info.class_names.clone(),
    })
}

/// Export's own steps on a graph: raw pixel input, the head's outputs, novelty.
impl GraphBuilder {
    /// Rounds float64 sums to 8-bit values as fast_image_resize does: floor(x + 0.5), clipped to 0–255
    /// (truncating a non-negative value is its floor).
    fn round_to_u8(&mut self, x: &str) -> String {
        let half = self.doubles("half", &[], &[0.5]);
        let low = self.doubles("zero", &[], &[0.0]);
        let high = self.doubles("max_pixel", &[], &[255.5]);
        let shifted = self.node("Add", &[x, &half], |n| n);
        let clipped = self.node("Max", &[&shifted, &low], |n| n);
        let clipped = self.node("Min", &[&clipped, &high], |n| n);
        let integer = self.node("Cast", &[&clipped], |n| n.with_int("to", i64::from(INT64)));
        self.node("Cast", &[&integer], |n| n.with_int("to", i64::from(DOUBLE)))
    }

    /// `pixels` (uint8 RGB [N, H, W, 3]) → the backbone's input `input`, as [`ImagePreprocess::apply`] makes
    /// it: the resize (and crop) as two exact resampling passes, then colour order, mean and std, layout.
    fn raw_pixels(
        &mut self,
        preprocess: &ImagePreprocess,
        (height, width): (u32, u32),
        input: &str,
    ) -> Result<()> {
        if height == 0 || width == 0 {
            return Err(Error::parameter("raw_size", "must be at least 1x1"));
        }
        let (left, top, box_width, box_height) = preprocess.source_box(width, height);
        let unsupported = || {
            Error::Unsupported(format!(
                "raw pixel input cannot build {:?} resizing from ONNX nodes (bilinear and bicubic can be): \
                 export without it and resize on the device",
                preprocess.interpolation
            ))
        };
        let vertical = resample::axis_pass(
            preprocess.interpolation,
            height,
            top,
            box_height,
            preprocess.height,
        )
        .ok_or_else(unsupported)?;
        let horizontal = resample::axis_pass(
            preprocess.interpolation,
            width,
            left,
            box_width,
            preprocess.width,
        )
        .ok_or_else(unsupported)?;
        self.graph.input.push(ValueInfoProto::tensor(
            PIXELS,
            UINT8,
            &[
                None,
                Some(i64::from(height)),
                Some(i64::from(width)),
                Some(3),
            ],
        ));
        let values = self.node("Cast", &[PIXELS], |n| n.with_int("to", i64::from(DOUBLE)));
        // [N, 3, H, W]: each pass is a matrix product over one spatial axis.
        let planes = self.node("Transpose", &[&values], |n| {
            n.with_ints("perm", &[0, 3, 1, 2])
        });
        let v = self.doubles(
            "resize_rows",
            &[vertical.output as i64, vertical.input as i64],
            &vertical.matrix,
        );
        let mut rows = self.node("MatMul", &[&v, &planes], |n| n);
        if !vertical.copy {
            rows = self.round_to_u8(&rows);
        }
        let transposed: Vec<f64> = (0..horizontal.input)
            .flat_map(|i| (0..horizontal.output).map(move |o| (i, o)))
            .map(|(i, o)| horizontal.matrix[o * horizontal.input + i])
            .collect();
        let h = self.doubles(
            "resize_columns",
            &[horizontal.input as i64, horizontal.output as i64],
            &transposed,
        );
        let mut resized = self.node("MatMul", &[&rows, &h], |n| n);
        if !horizontal.copy {
            resized = self.round_to_u8(&resized);
        }
        let mut x = self.node("Cast", &[&resized], |n| n.with_int("to", i64::from(FLOAT)));
        if preprocess.colour == ColourOrder::Bgr {
            let order = self.int64s("bgr", &[3], &[2, 1, 0]);
            x = self.node("Gather", &[&x, &order], |n| n.with_int("axis", 1));
        }
        let mean = self.floats("mean", &[1, 3, 1, 1], &preprocess.mean);
        let inverse: Vec<f32> = preprocess.std.iter().map(|s| 1.0 / s).collect();
        let scale = self.floats("inverse_std", &[1, 3, 1, 1], &inverse);
        let centred = self.node("Sub", &[&x, &mean], |n| n);
        let mut normalised = self.node("Mul", &[&centred, &scale], |n| n);
        if preprocess.layout == Layout::Nhwc {
            normalised = self.node("Transpose", &[&normalised], |n| {
                n.with_ints("perm", &[0, 2, 3, 1])
            });
        }
        self.graph
            .node
            .push(NodeProto::new("Identity", &[&normalised], &[input]));
        Ok(())
    }

    /// The head on `embedding` [N, D]: its scores, the outputs it gives from them, and the novelty score.
    fn head(&mut self, bundle: &Bundle, embedding: &str) -> Result<()> {
        let model = bundle.head.model();
        let scores = model.lower(self, embedding)?;
        model.lower_outputs(self, &scores, bundle.temperature);
        if let Some(novelty) = &bundle.novelty {
            self.novelty(embedding, novelty)?;
        }
        Ok(())
    }

    /// [`Novelty::scores`] as an output: 1 − the k-th largest cosine similarity to the stored reference, which
    /// is the smallest of the k largest.
    fn novelty(&mut self, embedding: &str, novelty: &Novelty) -> Result<()> {
        let (m, d) = (novelty.reference.nrows(), novelty.reference.ncols());
        let k = novelty.k.min(m);
        if k == 0 {
            return Err(Error::Config(
                "damaged bundle: the open-set reference is empty".into(),
            ));
        }
        let transposed: Vec<f32> = novelty.reference.t().iter().copied().collect();
        let reference = self.floats("novelty_reference", &[d as i64, m as i64], &transposed);
        let unit = self.l2_normalize(embedding);
        let similarity = self.node("MatMul", &[&unit, &reference], |n| n);
        let (values, _) = self.top_k(&similarity, k, "novelty");
        let kth = self.reduce("ReduceMin", &values, &[1], false);
        let one = self.floats("one", &[], &[1.0]);
        self.graph
            .node
            .push(NodeProto::new("Sub", &[&one, &kth], &[NOVELTY]));
        self.graph
            .output
            .push(ValueInfoProto::tensor(NOVELTY, FLOAT, &[None]));
        Ok(())
    }
}

/// The class names, preprocessing or tokenizer, backbone and headstart version, as metadata properties.
fn metadata(bundle: &Bundle, variant: &str) -> Vec<StringStringEntryProto> {
    let info = &bundle.info;
    let json = |value: serde_json::Value| value.to_string();
    let (mut outputs, head_entries) = bundle.head.model().outputs_metadata();
    if bundle.novelty.is_some() {
        outputs.push_str(&format!(
            "; {NOVELTY}: float [N], unknown above headstart.novelty_threshold"
        ));
    }
    let mut entries = vec![
        ("headstart.version", env!("CARGO_PKG_VERSION").to_string()),
        ("headstart.variant", variant.to_string()),
        (
            "headstart.class_names",
            json(serde_json::json!(info.class_names)),
        ),
        // The ranges are in the graph already; the precision says they were used.
        (
            "headstart.backbone",
            json(serde_json::json!(BackboneIdentity {
                calibration: None,
                ..info.features.backbone.clone()
            })),
        ),
        ("headstart.outputs", outputs),
    ];
    entries.extend(head_entries);
    if let Some(novelty) = &bundle.novelty {
        entries.push(("headstart.novelty_threshold", novelty.threshold.to_string()));
    }
    entries.push(match &info.features.input {
        InputSpec::Image(preprocess) => {
            ("headstart.preprocess", json(serde_json::json!(preprocess)))
        }
        InputSpec::Text(text) => ("headstart.text", json(serde_json::json!(text))),
    });
    entries
        .into_iter()
        .map(|(key, value)| StringStringEntryProto {
            key: key.into(),
            value,
        })
        .collect()
}

fn head_only(bundle: &Bundle) -> Result<(Vec<u8>, Vec<String>)> {
    let mut builder = GraphBuilder::new(HEAD_ONLY_OPSET);
    builder.graph.name = "headstart_head".into();
    builder.graph.input = vec![ValueInfoProto::tensor(
        EMBEDDING,
        FLOAT,
        &[None, Some(bundle.head.dim() as i64)],
    )];
    builder.head(bundle, EMBEDDING)?;
    let mut model = ModelProto::new(builder.graph, HEAD_ONLY_OPSET);
    model.metadata_props = metadata(bundle, "head-only");
    Ok((model.encode_to_vec(), vec![EMBEDDING.to_string()]))
}

/// The file of a classifier with its backbone; `calibrated` makes a bundle trained in fp32 int8.
fn with_backbone(
    classifier: &Classifier,
    options: &ExportOptions,
    calibrated: Option<&Calibration>,
) -> Result<(Vec<u8>, Vec<String>)> {
    let bundle = &classifier.bundle;
    let identity = &bundle.info.features.backbone;
    let mut raw = None;
    let backbone = classifier.backbone();
    let path = backbone.path().to_path_buf();
    let (layout, mask) = match backbone {
        Backbone::Image(b) => {
            if options.raw_input {
                raw = Some((b.preprocess().clone(), b.input_name().to_string()));
            }
            (b.preprocess().layout, None)
        }
        Backbone::Text(_) if options.raw_input => {
            return Err(Error::Unsupported(
                "raw pixel input is for image bundles; a text bundle's file takes token ids".into(),
            ));
        }
        Backbone::Text(b) => {
            if !b.has_attention_mask() && identity.pooling != Pooling::Cls {
                return Err(Error::model(
                    &path,
                    "has no attention_mask input, which mean pooling needs in an exported file",
                ));
            }
            (Layout::Nchw, Some("attention_mask"))
        }
    };
    let bytes = crate::onnx::read_model_bytes(&path)?;
    // One self-contained file: external weights go inside it.
    let external = crate::onnx::external::references(&path, &bytes)?;
    let bytes = crate::onnx::external::inline(&path, bytes, &external)?;
    let int8 = identity.calibration.as_ref().or(calibrated);
    let bytes = match int8 {
        Some(calibration) => crate::onnx::int8::quantize(&path, &bytes, &calibration.ranges)?,
        None => bytes,
    };
    let parsed = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::model(&path, format!("not a valid ONNX model: {e}")))?;
    let opset = default_opset(&parsed.opset_import).ok_or_else(|| {
        Error::model(
            &path,
            "imports no default-domain opset: not an ONNX model headstart can extend",
        )
    })?;
    let mut builder = GraphBuilder::new(opset);
    let mut dropped = Vec::new();
    let mut raw_note = None;
    // The preprocessing makes the backbone's input: its nodes go before the backbone's.
    let mut before = Vec::new();
    if let Some((preprocess, input)) = &raw {
        let (height, width) = options
            .raw_size
            .unwrap_or((preprocess.height, preprocess.width));
        builder.raw_pixels(preprocess, (height, width), input)?;
        before = std::mem::take(&mut builder.graph.node);
        dropped.push(input.clone());
        raw_note = Some(format!(
            "{PIXELS}: uint8 [N, {height}, {width}, 3] RGB; resized, cropped and normalised in the graph"
        ));
    }
    let mut parts = Vec::new();
    for tensor in identity.tensors() {
        let shape = backbone.tensor_shape(tensor).ok_or_else(|| {
            Error::model(
                &path,
                format!(
                    "ONNX Runtime cannot tell the shape of '{tensor}', so the pooling cannot be written as nodes"
                ),
            )
        })?;
        parts.push(
            pool(&mut builder, tensor, &shape, identity.pooling, layout, mask)
                .map_err(|why| Error::model(&path, why))?,
        );
    }
    let pooled = match parts.as_slice() {
        [one] => one.clone(),
        joined => {
            let joined: Vec<&str> = joined.iter().map(String::as_str).collect();
            builder.node("Concat", &joined, |n| n.with_int("axis", 1))
        }
    };
    let embedding = if identity.normalize {
        builder.l2_normalize(&pooled)
    } else {
        pooled
    };
    builder.head(bundle, &embedding)?;
    let variant = match (mask, &raw_note) {
        (Some(_), _) => "text",
        (None, Some(_)) => "image, raw input",
        (None, None) => "image",
    };
    let mut metadata = metadata(bundle, variant);
    if let Some(calibration) = int8 {
        metadata.push(StringStringEntryProto {
            key: "headstart.precision".into(),
            value: format!(
                "int8 backbone (QDQ), calibrated on {} images ({:?})",
                calibration.inputs, calibration.method
            ),
        });
    }
    if let Some(note) = raw_note {
        metadata.push(StringStringEntryProto {
            key: "headstart.raw_input".into(),
            value: note,
        });
    }
    let edit = GraphEdit {
        drop_inputs: &dropped,
        drop_outputs: true,
        before,
        additions: builder.graph,
        metadata,
    };
    let edited = edit_model(&bytes, &edit)
        .ok_or_else(|| Error::model(&path, "not a well-formed ONNX file (truncated?)"))?;
    let graph = parsed.graph.unwrap_or_default();
    // Older exporters list initializers among the inputs too; they are not inputs a caller feeds.
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = if raw.is_some() {
        vec![PIXELS.to_string()]
    } else {
        graph
            .input
            .iter()
            .map(|i| i.name.clone())
            .filter(|name| !initializers.contains(&name.as_str()))
            .collect()
    };
    Ok((edited, inputs))
}

fn default_opset(imports: &[OperatorSetIdProto]) -> Option<i64> {
    imports
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// Pooling as nodes, mirroring [`crate::pooling::pool`] for the feature tensor's rank.
fn pool(
    builder: &mut GraphBuilder,
    features: &str,
    shape: &[i64],
    pooling: Pooling,
    layout: Layout,
    mask: Option<&str>,
) -> std::result::Result<String, String> {
    if pooling == Pooling::Flatten {
        return Ok(builder.node("Flatten", &[features], |n| n.with_int("axis", 1)));
    }
    match (shape.len(), pooling) {
        (2, Pooling::Auto | Pooling::Mean) => Ok(builder.node("Identity", &[features], |n| n)),
        (4, Pooling::Auto | Pooling::Mean) => {
            // As in pooling::pool: a 1x1 map says where its channels are.
            let layout = match (shape[1], shape[2], shape[3]) {
                (_, 1, 1) => Layout::Nchw,
                (1, 1, _) => Layout::Nhwc,
                _ => layout,
            };
            let axes: &[i64] = match layout {
                Layout::Nchw => &[2, 3],
                Layout::Nhwc => &[1, 2],
            };
            Ok(builder.reduce("ReduceMean", features, axes, false))
        }
        (3, Pooling::Cls) | (3, Pooling::Auto) if mask.is_none() || pooling == Pooling::Cls => {
            let first = builder.int64s("first_token", &[], &[0]);
            Ok(builder.node("Gather", &[features, &first], |n| n.with_int("axis", 1)))
        }
        (3, Pooling::Auto | Pooling::Mean) => match mask {
            Some(mask) => {
                let weights = builder.node("Cast", &[mask], |n| n.with_int("to", i64::from(FLOAT)));
                let weights3 = builder.unsqueeze(&weights, &[2]);
                let masked = builder.node("Mul", &[features, &weights3], |n| n);
                let sum = builder.reduce("ReduceSum", &masked, &[1], false);
                let count = builder.reduce("ReduceSum", &weights, &[1], true);
                // sentence-transformers clamps the token count at 1e-9.
                let floor = builder.floats("min_count", &[], &[1e-9]);
                let count = builder.node("Max", &[&count, &floor], |n| n);
                Ok(builder.node("Div", &[&sum, &count], |n| n))
            }
            None => Ok(builder.reduce("ReduceMean", features, &[1], false)),
        },
        (rank, pooling) => Err(format!(
            "cannot export {pooling:?} pooling of a rank-{rank} feature tensor"
        )),
    }
}
