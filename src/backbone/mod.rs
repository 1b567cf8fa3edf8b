//! The backbone session: an ONNX file (from the zoo or any path) loaded into ONNX Runtime, with the feature
//! output chosen (or an intermediate layer tapped) and pooled into one vector per input. [`Backbone`] is either
//! kind; [`InputSpec`] says how its inputs become tensors, and with [`BackboneIdentity`] it is what a head
//! trained on its embeddings depends on.

pub mod calibrate;
mod features;
pub mod image;
pub mod text;

use std::fmt;
use std::path::{Path, PathBuf};

use ort::session::{Session, SessionOutputs};
use ort::value::{Outlet, TensorElementType, ValueType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::onnx;
use crate::pooling;
use crate::runtime::{
    self, BuiltSession, DeviceUsed, ModelBytes, Placement, Precision, RuntimeOptions,
};
use crate::zoo::{self, ZooModel};

pub use crate::onnx::ModelSummary;
pub use crate::onnx::int8::TensorRange;
pub use crate::pooling::Pooling;
pub use crate::preprocess::{
    ColourOrder, ImagePreprocess, Interpolation, JpegDecode, Layout, PreprocessOverrides, Resize,
};
pub use calibrate::{Calibration, CalibrationMethod, CalibrationSettings};
pub use features::Features;
pub use image::{BatchBuffer, ImageBackbone};
pub use text::{TextBackbone, TextInput, Tokenized};

/// An opened backbone of either kind. Boxed: both are large (preprocessing tables, a tokenizer).
pub enum Backbone {
    Image(Box<ImageBackbone>),
    Text(Box<TextBackbone>),
}

impl Backbone {
    /// Opens `reference` as a backbone for `modality`: a zoo model is fetched (or converted) first.
    pub fn open(
        reference: &BackboneRef,
        modality: Modality,
        options: &BackboneOptions,
    ) -> Result<Self> {
        Self::from_file(ModelFile::read(reference)?, modality, options)
    }

    pub(crate) fn from_file(
        file: ModelFile,
        modality: Modality,
        options: &BackboneOptions,
    ) -> Result<Self> {
        Ok(match modality {
            Modality::Image => {
                let mut options = options.clone();
                // Image embedding decodes on the other cores: spinning inference threads would starve it.
                options.runtime.intra_op_spinning.get_or_insert(false);
                Backbone::Image(Box::new(ImageBackbone::load(file, &options)?))
            }
            Modality::Text => Backbone::Text(Box::new(TextBackbone::load(file, options)?)),
        })
    }

    pub fn modality(&self) -> Modality {
        match self {
            Backbone::Image(_) => Modality::Image,
            Backbone::Text(_) => Modality::Text,
        }
    }

    fn model(&self) -> &LoadedModel {
        match self {
            Backbone::Image(b) => &b.model,
            Backbone::Text(b) => &b.model,
        }
    }

    pub fn identity(&self) -> &BackboneIdentity {
        &self.model().identity
    }

    /// The zoo name or path it was opened from.
    pub fn source(&self) -> &BackboneRef {
        &self.model().source
    }

    /// What identifies the embeddings it makes (see [`Features`]).
    pub fn features(&self) -> Features {
        Features {
            source: self.source().clone(),
            backbone: self.identity().clone(),
            input: self.input_spec(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.model().path
    }

    /// Where it runs.
    pub fn device(&self) -> &DeviceUsed {
        &self.model().device
    }

    /// The shape of a tensor features are pooled from, as ONNX Runtime infers it.
    pub(crate) fn tensor_shape(&self, tensor: &str) -> Option<Vec<i64>> {
        self.model().tensor_shape(tensor)
    }

    /// The length `tensor` pools to, worked out from the shape ONNX Runtime infers (unknown batch, spatial and
    /// token axes taken as 1: pooling does not keep them); `None` when it cannot tell.
    pub(crate) fn pooled_dim(&self, tensor: &str) -> Option<usize> {
        let probe: Vec<i64> = self
            .tensor_shape(tensor)?
            .iter()
            .map(|&d| d.max(1))
            .collect();
        let zeros = vec![0.0; usize::try_from(probe.iter().product::<i64>()).ok()?];
        let layout = match self {
            Backbone::Image(b) => b.preprocess().layout,
            Backbone::Text(_) => Layout::Nchw,
        };
        let (_, dim, _) =
            pooling::pool(&probe, &zeros, self.identity().pooling, layout, None).ok()?;
        Some(dim)
    }

    /// How inputs become this backbone's tensors.
    pub(crate) fn input_spec(&self) -> InputSpec {
        match self {
            Backbone::Image(b) => InputSpec::Image(b.preprocess().clone()),
            Backbone::Text(b) => InputSpec::Text(b.input().clone()),
        }
    }
}

/// How inputs became the backbone's tensors; a head is only valid for inputs made the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    Image(ImagePreprocess),
    Text(TextInput),
}

impl InputSpec {
    pub fn modality(&self) -> Modality {
        match self {
            InputSpec::Image(_) => Modality::Image,
            InputSpec::Text(_) => Modality::Text,
        }
    }
}

/// A backbone named by the user: a zoo name or a path to an `.onnx` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackboneRef {
    Zoo(String),
    File(PathBuf),
}

impl BackboneRef {
    /// The backbone `given`, else the zoo's default for `modality`.
    pub fn given_or_default(given: Option<&BackboneRef>, modality: Modality) -> Self {
        given
            .cloned()
            .unwrap_or_else(|| BackboneRef::Zoo(zoo::default_for(modality).name))
    }

    /// A zoo name if the zoo has it, else a path.
    pub fn parse(text: &str) -> Self {
        if zoo::models().iter().any(|m| m.name == text) {
            BackboneRef::Zoo(text.to_string())
        } else {
            BackboneRef::File(PathBuf::from(text))
        }
    }
}

impl fmt::Display for BackboneRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackboneRef::Zoo(name) => f.write_str(name),
            BackboneRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Everything about how a backbone is opened that a user can choose.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BackboneOptions {
    pub runtime: RuntimeOptions,
    /// The graph output to take features from (default: the zoo's, else the first output).
    pub output: Option<String>,
    /// An intermediate tensor to take features from instead; it is added to the graph's outputs.
    pub layer: Option<String>,
    /// More tensors (outputs or intermediate) pooled the same way, their vectors appended to the first's.
    pub joined: Vec<String>,
    pub pooling: Option<Pooling>,
    /// L2-normalise the pooled vectors (default: the zoo's choice, else off).
    pub normalize: Option<bool>,
    /// A preprocessing JSON file (timm / Hugging Face keys); overrides one found beside the model.
    pub preprocess_file: Option<PathBuf>,
    /// Preprocessing settings; override everything else.
    pub preprocess: PreprocessOverrides,
    /// Text backbones: a `tokenizer.json` (default: the zoo's, or the one beside the model).
    pub tokenizer: Option<PathBuf>,
    /// Under [`Precision::Int8`]: the activation ranges to quantise with (a bundle's or an `.npz`'s); `None`
    /// calibrates on the data being embedded, as `calibrate` says.
    pub calibration: Option<Calibration>,
    pub calibrate: CalibrationSettings,
}

setters!(BackboneOptions {
    runtime: RuntimeOptions,
    output: String,
    layer: String,
    joined: Vec<String>,
    pooling: Pooling,
    normalize: bool,
    preprocess_file: PathBuf,
    preprocess: PreprocessOverrides,
    tokenizer: PathBuf,
    calibration: Calibration,
    calibrate: CalibrationSettings,
});

/// What identifies the features a backbone makes: a head trained on them is only valid with the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneIdentity {
    pub name: String,
    pub sha256: String,
    pub output: String,
    pub layer: Option<String>,
    /// Further tensors pooled like `output`, their vectors appended in this order (a concatenation of taps).
    /// Left out of the serialized form when empty, keeping older caches and bundles valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<String>,
    pub pooling: Pooling,
    pub normalize: bool,
    /// fp16 vectors are near fp32 ones (a head serves both) but not equal, so they are cached apart; fp32 is
    /// left out of the serialized form, keeping older caches and bundles valid.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// int8: the ranges the model was quantised with. int8 features are not float ones: a head only serves
    /// features of the same calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

impl BackboneIdentity {
    /// The tensors features are pooled from, in the order their vectors are joined.
    pub fn tensors(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.output.as_str()).chain(self.joined.iter().map(String::as_str))
    }
}

/// A backbone's ONNX file read into memory and identified by its sha256, hashed once.
pub(crate) struct ModelFile {
    /// How the user named it (zoo name or path), to open it again.
    pub source: BackboneRef,
    pub path: PathBuf,
    pub zoo: Option<ZooModel>,
    pub bytes: Vec<u8>,
    /// Initializers kept in other files of the model's folder, checked.
    pub external: Vec<onnx::external::ExternalData>,
    /// Of the file and its external data.
    pub sha256: String,
}

impl ModelFile {
    /// Reads a zoo model (fetched or converted first, its sha256 verified there) or a file.
    pub fn read(reference: &BackboneRef) -> Result<Self> {
        let (path, zoo) = match reference {
            BackboneRef::Zoo(name) => {
                let model = zoo::find(name)?;
                (zoo::fetch_for_embedding(&model)?, Some(model))
            }
            BackboneRef::File(path) => (path.clone(), None),
        };
        let bytes = onnx::read_model_bytes(&path)?;
        let external = onnx::external::references(&path, &bytes)?;
        let sha256 = match (&zoo, external.is_empty()) {
            (Some(model), true) => model.onnx.sha256().to_string(),
            _ => onnx::external::identity(&bytes, &external)?,
        };
        Ok(ModelFile {
            source: reference.clone(),
            path,
            zoo,
            bytes,
            external,
            sha256,
        })
    }
}

/// An ONNX file loaded into a session, with its feature output resolved.
pub(crate) struct LoadedModel {
    /// How the user named it (zoo name or path), to open it again.
    pub source: BackboneRef,
    pub path: PathBuf,
    pub zoo: Option<ZooModel>,
    pub session: Session,
    pub identity: BackboneIdentity,
    pub device: DeviceUsed,
    /// Where ONNX Runtime put the nodes of a CUDA session.
    pub placement: Option<Placement>,
}

impl LoadedModel {
    /// Loads `file` as `options` say; `taps` are intermediate tensors exposed as extra outputs (calibration).
    pub fn load(file: ModelFile, options: &BackboneOptions, taps: &[String]) -> Result<Self> {
        let ModelFile {
            source,
            path,
            zoo,
            bytes,
            external,
            sha256,
        } = file;
        let summary = onnx::summarize(&path, &bytes)?;
        let output = match &options.layer {
            Some(layer) => layer.clone(),
            None => own_output(&path, zoo.as_ref(), &summary, options)?,
        };
        let features: Vec<&String> = std::iter::once(&output).chain(&options.joined).collect();
        for tensor in &features {
            if !summary.graph_outputs.contains(tensor) {
                onnx::check_tensor_exists(&path, &summary, tensor)?;
            }
        }
        let precision = options.runtime.precision;
        if precision == Precision::Fp16 {
            runtime::require_cuda(&options.runtime, "precision", "fp16")?;
        }
        let calibration = match precision {
            Precision::Int8 => Some(options.calibration.clone().ok_or_else(|| {
                Error::parameter(
                    "precision",
                    "int8 is calibrated on a data set: embed or train a folder of images (single files have none to calibrate on)",
                )
            })?),
            _ => None,
        };
        let mut extra: Vec<&str> = Vec::new();
        for tensor in taps.iter().chain(features.iter().copied()) {
            if !summary.graph_outputs.contains(tensor) && !extra.contains(&tensor.as_str()) {
                extra.push(tensor);
            }
        }
        // A model given to ONNX Runtime as bytes must hold its weights: it would look for external data
        // beside the working directory.
        let rewrites = !extra.is_empty() || calibration.is_some() || precision == Precision::Fp16;
        let bytes = match rewrites {
            true => onnx::external::inline(&path, bytes, &external)?,
            false => bytes,
        };
        let exposed = (!extra.is_empty()).then(|| onnx::with_extra_outputs(&bytes, &extra));
        let graph = exposed.as_deref().unwrap_or(&bytes);
        let rewritten = match (&calibration, precision) {
            (Some(calibration), _) => {
                Some(onnx::int8::quantize(&path, graph, &calibration.ranges)?)
            }
            (None, Precision::Fp16) => Some(onnx::fp16::to_fp16(&path, graph)?),
            (None, _) => exposed,
        };
        let built = match &rewritten {
            Some(bytes) => {
                runtime::build_session(&options.runtime, &path, ModelBytes::Memory(bytes))?
            }
            None => runtime::build_session(&options.runtime, &path, ModelBytes::File(&path))?,
        };
        let BuiltSession {
            session,
            device,
            placement,
        } = built;
        for tensor in &features {
            check_float_output(&path, &session, tensor)?;
        }
        let name = match &zoo {
            Some(model) => model.name.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let identity = BackboneIdentity {
            name,
            sha256,
            output,
            layer: options.layer.clone(),
            joined: options.joined.clone(),
            pooling: options
                .pooling
                .or(zoo.as_ref().map(|m| m.pooling))
                .unwrap_or_default(),
            normalize: options
                .normalize
                .or(zoo.as_ref().map(|m| m.normalize))
                .unwrap_or(false),
            precision,
            calibration,
        };
        Ok(LoadedModel {
            source,
            path,
            zoo,
            session,
            identity,
            device,
            placement,
        })
    }
}

/// The output features come from when no layer is named: the one asked for, else the zoo's, else the first.
fn own_output(
    path: &Path,
    zoo: Option<&ZooModel>,
    summary: &ModelSummary,
    options: &BackboneOptions,
) -> Result<String> {
    options
        .output
        .clone()
        .or_else(|| zoo.map(|m| m.output.clone()))
        .or_else(|| summary.graph_outputs.first().cloned())
        .ok_or_else(|| Error::model(path, "the model has no outputs"))
}

impl ModelFile {
    /// The graph output features come from when no layer is named (see [`BackboneOptions::output`]).
    pub(crate) fn own_output(&self, options: &BackboneOptions) -> Result<String> {
        let summary = onnx::summarize(&self.path, &self.bytes)?;
        own_output(&self.path, self.zoo.as_ref(), &summary, options)
    }
}

impl LoadedModel {
    /// A feature tensor's shape as ONNX Runtime infers it (−1: dynamic); `None` when it cannot tell.
    pub(crate) fn tensor_shape(&self, tensor: &str) -> Option<Vec<i64>> {
        self.session
            .outputs()
            .iter()
            .find(|o| o.name() == tensor)
            .and_then(tensor_shape)
            .map(|(_, shape)| shape)
            .filter(|shape| !shape.is_empty())
    }
}

/// Pools each feature tensor of a run's `outputs` (a model at `path`) and joins an input's vectors,
/// L2-normalised as a whole if `identity` says so: (dim, values).
pub(crate) fn pool_features(
    identity: &BackboneIdentity,
    path: &Path,
    outputs: &SessionOutputs,
    layout: Layout,
    mask: Option<&[i64]>,
) -> Result<(usize, Vec<f32>)> {
    let mut parts = Vec::new();
    for tensor in identity.tensors() {
        let value = outputs
            .get(tensor)
            .ok_or_else(|| Error::model(path, format!("ONNX Runtime returned no '{tensor}'")))?;
        let (shape, data) = value.try_extract_tensor::<f32>()?;
        let (rows, dim, values) = pooling::pool(shape, data, identity.pooling, layout, mask)
            .map_err(|e| Error::model(path, format!("output '{tensor}': {e}")))?;
        parts.push((rows, dim, values));
    }
    let (dim, mut values) = join_rows(parts);
    if identity.normalize {
        pooling::l2_normalize(&mut values, dim);
    }
    Ok((dim, values))
}

/// Row-major matrices of the same rows, (rows, dim, values) each, side by side: (dim, values).
fn join_rows(mut parts: Vec<(usize, usize, Vec<f32>)>) -> (usize, Vec<f32>) {
    if parts.len() == 1 {
        let (_, dim, values) = parts.remove(0);
        return (dim, values);
    }
    let rows = parts.iter().map(|p| p.0).min().unwrap_or(0);
    let dim = parts.iter().map(|p| p.1).sum();
    let mut values = Vec::with_capacity(rows * dim);
    for row in 0..rows {
        for (_, d, part) in &parts {
            values.extend_from_slice(&part[row * d..(row + 1) * d]);
        }
    }
    (dim, values)
}

fn check_float_output(path: &Path, session: &Session, output: &str) -> Result<()> {
    let outlet = session
        .outputs()
        .iter()
        .find(|o| o.name() == output)
        .ok_or_else(|| {
            Error::model(
                path,
                format!("ONNX Runtime does not expose output '{output}'"),
            )
        })?;
    match outlet.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => Ok(()),
        other => Err(Error::model(
            path,
            format!("output '{output}' is {other}, not a float32 tensor of features"),
        )),
    }
}

/// Tensor shape of an outlet, `-1` for dynamic dimensions; `None` for non-tensors.
pub(crate) fn tensor_shape(outlet: &Outlet) -> Option<(TensorElementType, Vec<i64>)> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

/// What `headstart inspect` reports about an ONNX file.
pub struct Inspection {
    pub path: PathBuf,
    pub sha256: String,
    pub summary: ModelSummary,
    /// (name, type as ONNX Runtime describes it)
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
}

/// Loads a model (any ONNX file) and describes it.
pub fn inspect(path: &Path, runtime: &RuntimeOptions) -> Result<Inspection> {
    let bytes = onnx::read_model_bytes(path)?;
    let summary = onnx::summarize(path, &bytes)?;
    let external = onnx::external::references(path, &bytes)?;
    let session = runtime::build_session(runtime, path, ModelBytes::File(path))?.session;
    let describe = |outlets: &[Outlet]| {
        outlets
            .iter()
            .map(|o| (o.name().to_string(), o.dtype().to_string()))
            .collect()
    };
    Ok(Inspection {
        path: path.to_path_buf(),
        sha256: onnx::external::identity(&bytes, &external)?,
        inputs: describe(session.inputs()),
        outputs: describe(session.outputs()),
        summary,
    })
}
