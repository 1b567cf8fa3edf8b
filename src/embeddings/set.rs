//! What embedding makes: an [`EmbeddedSet`] (one row per embedded view, with labels, paths and the backbone
//! that made them), the [`EmbedSummary`] of a run, and the [`EmbedOptions`] that shape it. The set's `.npz`
//! format (numpy opens it) is read and written here.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::npz::{NpyArray, NpyData, read_npz_from, write_npz};
use crate::augment::Augment;
use crate::backbone::{BackboneIdentity, BackboneRef, Features, InputSpec};
use crate::data::Skip;
use crate::data::decode::{DEFAULT_MAX_PIXELS, DecodeOptions};
use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::runtime::{DeviceUsed, Placement, Precision};

/// How a dataset is embedded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbedOptions {
    /// Inputs per inference batch; `None`: the device's default ([`EmbedOptions::batch_size_on`]).
    pub batch_size: Option<usize>,
    /// Decode threads.
    pub workers: usize,
    pub use_cache: bool,
    /// Where the cache lives (default: `$HEADSTART_HOME/embeddings`).
    pub cache_dir: Option<PathBuf>,
    pub augment: Augment,
    /// Any skipped file is an error.
    pub strict: bool,
    pub max_pixels: u64,
    /// Embed what decodes of truncated or corrupt images instead of skipping them.
    pub allow_truncated: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_size: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            use_cache: true,
            cache_dir: None,
            augment: Augment::default(),
            strict: false,
            max_pixels: DEFAULT_MAX_PIXELS,
            allow_truncated: false,
        }
    }
}

impl EmbedOptions {
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// The batch size on `device`: the one set, else 32 on the CPU (larger batches gain nothing there) and 256
    /// on CUDA (small batches leave the GPU idle between launches).
    pub fn batch_size_on(&self, device: &DeviceUsed) -> usize {
        let default = if device.is_cuda() { 256 } else { 32 };
        self.batch_size.unwrap_or(default).max(1)
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Whether to read and write the embedding cache.
    pub fn use_cache(mut self, use_cache: bool) -> Self {
        self.use_cache = use_cache;
        self
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    pub fn max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    pub fn allow_truncated(mut self, allow: bool) -> Self {
        self.allow_truncated = allow;
        self
    }

    pub(crate) fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: self.max_pixels,
            allow_truncated: self.allow_truncated,
        }
    }
}

/// Embeddings of a dataset, one row per embedded view, in dataset order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedSet {
    pub dim: usize,
    /// Row-major, rows × dim.
    pub embeddings: Vec<f32>,
    /// Class index per row; `None` for unlabelled data.
    pub labels: Option<Vec<usize>>,
    pub class_names: Vec<String>,
    /// Paths relative to the dataset folder (images), or `file:line` / relative paths (texts).
    pub paths: Vec<String>,
    /// Whether a row is an augmented view.
    pub augmented: Vec<bool>,
    /// What made them.
    pub features: Features,
}

/// The `labels` value of an unlabelled row in the `.npz` (numpy has no missing integers).
const UNLABELLED: i64 = -1;

impl EmbeddedSet {
    pub fn rows(&self) -> usize {
        self.paths.len()
    }

    /// Writes the `.npz` described in docs/embedding.md, atomically.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        let metadata = feature_metadata(&self.features);
        let labels: Vec<i64> = match &self.labels {
            Some(labels) => labels.iter().map(|&l| l as i64).collect(),
            None => vec![UNLABELLED; self.rows()],
        };
        write_npz(
            path,
            &[
                (
                    "embeddings",
                    NpyArray::F32 {
                        shape: vec![self.rows(), self.dim],
                        data: &self.embeddings,
                    },
                ),
                (
                    "labels",
                    NpyArray::I64 {
                        shape: vec![self.rows()],
                        data: &labels,
                    },
                ),
                ("class_names", NpyArray::Strings(&self.class_names)),
                ("paths", NpyArray::Strings(&self.paths)),
                ("augmented", NpyArray::Bool(&self.augmented)),
            ]
            .into_iter()
            .chain(
                metadata
                    .iter()
                    .map(|(key, value)| (*key, NpyArray::Str(value))),
            )
            .collect::<Vec<_>>(),
        )
    }

    /// Reads an `.npz` written by [`EmbeddedSet::write_npz`], checking that its arrays fit together.
    pub fn read_npz(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Self::read_npz_from(std::io::BufReader::new(file), path)
    }

    /// [`EmbeddedSet::read_npz`] from memory or any seekable stream; `origin` names it in errors.
    pub fn read_npz_from(
        reader: impl std::io::Read + std::io::Seek,
        origin: &Path,
    ) -> Result<Self> {
        let bad = |message: String| Error::input(origin, message);
        let mut arrays = read_npz_from(reader, origin)?;
        // Arrays are taken out, not copied: the embeddings may be most of the memory there is.
        let mut take = |name: &str| {
            arrays
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| arrays.swap_remove(i).1)
                .ok_or_else(|| bad(format!("no '{name}' array: not written by headstart embed")))
        };
        let NpyData::F32 {
            shape,
            data: embeddings,
        } = take("embeddings")?
        else {
            return Err(bad("'embeddings' is not float32".into()));
        };
        let [rows, dim] = shape[..] else {
            return Err(bad("'embeddings' is not a matrix".into()));
        };
        let NpyData::I64 { data: labels, .. } = take("labels")? else {
            return Err(bad("'labels' is not int64".into()));
        };
        let NpyData::Bool(augmented) = take("augmented")? else {
            return Err(bad("'augmented' is not bool".into()));
        };
        let mut strings = |name: &str| -> Result<Vec<String>> {
            match take(name)? {
                NpyData::Strings { data, .. } => Ok(data),
                _ => Err(bad(format!("'{name}' is not a list of strings"))),
            }
        };
        let class_names = strings("class_names")?;
        let paths = strings("paths")?;
        let backbone_source = strings("backbone_source")?.pop().unwrap_or_default();
        let backbone_config = strings("backbone_config")?.pop().unwrap_or_default();
        let input = match strings("text_input") {
            Ok(text) => InputSpec::Text(
                serde_json::from_str(text.first().map_or("", String::as_str))
                    .map_err(|e| bad(format!("bad text_input: {e}")))?,
            ),
            Err(_) => InputSpec::Image(
                serde_json::from_str(strings("preprocess")?.first().map_or("", String::as_str))
                    .map_err(|e| bad(format!("bad preprocess: {e}")))?,
            ),
        };
        if [labels.len(), paths.len(), augmented.len()]
            .iter()
            .any(|&n| n != rows)
        {
            return Err(bad(format!(
                "mismatched lengths: {rows} embeddings, {} labels, {} paths, {} augmented flags",
                labels.len(),
                paths.len(),
                augmented.len()
            )));
        }
        if let Some(bad_label) = labels
            .iter()
            .find(|&&l| l < UNLABELLED || l >= class_names.len() as i64)
        {
            return Err(bad(format!("label {bad_label} is not a class index")));
        }
        let unlabelled = labels.iter().filter(|&&l| l == UNLABELLED).count();
        let labels = match unlabelled {
            0 if !class_names.is_empty() => Some(labels.iter().map(|&l| l as usize).collect()),
            n if n == rows => None,
            _ => {
                return Err(bad(format!(
                    "{unlabelled} of {rows} rows are unlabelled: label every row or none"
                )));
            }
        };
        if let Some(row) = embeddings
            .chunks(dim.max(1))
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(bad(format!("embedding row {row} contains NaN or Inf")));
        }
        Ok(EmbeddedSet {
            dim,
            embeddings,
            labels,
            class_names,
            paths,
            augmented,
            features: Features {
                source: BackboneRef::parse(&backbone_source),
                backbone: serde_json::from_str(&backbone_config)
                    .map_err(|e| bad(format!("bad backbone_config: {e}")))?,
                input,
            },
        })
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> EmbeddedSet {
        EmbeddedSet {
            dim: self.dim,
            embeddings: indices
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            labels: self
                .labels
                .as_ref()
                .map(|labels| indices.iter().map(|&i| labels[i]).collect()),
            class_names: self.class_names.clone(),
            paths: indices.iter().map(|&i| self.paths[i].clone()).collect(),
            augmented: indices.iter().map(|&i| self.augmented[i]).collect(),
            features: self.features.clone(),
        }
    }

    /// Every row's values in the column `ranges`, side by side in that order, as features of `backbone` (the
    /// tensors those columns were pooled from); L2-normalised again when `backbone` normalises.
    pub fn columns(
        &self,
        ranges: &[std::ops::Range<usize>],
        backbone: BackboneIdentity,
    ) -> EmbeddedSet {
        let dim = ranges.iter().map(|r| r.len()).sum();
        let mut embeddings = Vec::with_capacity(self.rows() * dim);
        for i in 0..self.rows() {
            let row = self.row(i);
            for range in ranges {
                embeddings.extend_from_slice(&row[range.clone()]);
            }
        }
        if backbone.normalize {
            crate::pooling::l2_normalize(&mut embeddings, dim);
        }
        EmbeddedSet {
            dim,
            embeddings,
            features: Features {
                backbone,
                ..self.features.clone()
            },
            ..self.clone()
        }
    }

    /// This labelled set with `other`'s rows added (same backbone and input, checked by the caller): the
    /// classes are the union of both, in name order (as class folders list them); a row of `other` replaces
    /// every row of this set from the same path (its augmented views too); rows are in path order, each path's
    /// rows in the order they were (as embedding a folder of both sets orders them).
    pub fn union(&self, other: &EmbeddedSet) -> Result<EmbeddedSet> {
        let (Some(mine), Some(theirs)) = (&self.labels, &other.labels) else {
            return Err(Error::TrainingData(
                "adding examples needs labelled data (this data is unlabelled)".into(),
            ));
        };
        if self.dim != other.dim {
            return Err(Error::TrainingData(format!(
                "the new embeddings have {} values, the old ones {}",
                other.dim, self.dim
            )));
        }
        let mut class_names: Vec<String> = self.class_names.clone();
        class_names.extend(other.class_names.iter().cloned());
        class_names.sort();
        class_names.dedup();
        let index = |names: &[String], label: usize| {
            class_names
                .iter()
                .position(|n| *n == names[label])
                .unwrap_or_default()
        };
        let replaced: std::collections::HashSet<&str> =
            other.paths.iter().map(String::as_str).collect();
        // (path, source, row): a stable sort by path keeps each path's rows in order.
        let mut rows: Vec<(&str, bool, usize)> = (0..self.rows())
            .filter(|&i| !replaced.contains(self.paths[i].as_str()))
            .map(|i| (self.paths[i].as_str(), false, i))
            .chain((0..other.rows()).map(|i| (other.paths[i].as_str(), true, i)))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let mut union = EmbeddedSet {
            dim: self.dim,
            embeddings: Vec::with_capacity(rows.len() * self.dim),
            labels: Some(Vec::with_capacity(rows.len())),
            class_names: Vec::new(),
            paths: Vec::with_capacity(rows.len()),
            augmented: Vec::with_capacity(rows.len()),
            features: self.features.clone(),
        };
        let labels = union.labels.get_or_insert_with(Vec::new);
        for (path, from_other, i) in rows {
            let (set, label) = if from_other {
                (other, index(&other.class_names, theirs[i]))
            } else {
                (self, index(&self.class_names, mine[i]))
            };
            union.embeddings.extend_from_slice(set.row(i));
            labels.push(label);
            union.paths.push(path.to_string());
            union.augmented.push(set.augmented[i]);
        }
        union.class_names = class_names;
        Ok(union)
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// The embeddings as an [N, D] matrix view.
    pub fn matrix(&self) -> ndarray::ArrayView2<'_, f32> {
        ndarray::ArrayView2::from_shape((self.rows(), self.dim), &self.embeddings)
            .expect("every constructor keeps rows x dim values")
    }
}

/// What makes embeddings comparable, as the text entries an `.npz` (or a Parquet file's metadata) keeps:
/// `backbone`, `backbone_source`, `backbone_sha256`, `backbone_config` (JSON), and `preprocess` (JSON) for
/// images, which older headstarts read, or `text_input` (JSON) for texts.
pub fn feature_metadata(features: &Features) -> Vec<(&'static str, String)> {
    let Features {
        source,
        backbone,
        input,
    } = features;
    let config = serde_json::to_string(backbone).expect("an identity serialises");
    let (input_key, input) = match input {
        InputSpec::Image(p) => ("preprocess", serde_json::to_string(p)),
        InputSpec::Text(t) => ("text_input", serde_json::to_string(t)),
    };
    vec![
        ("backbone", backbone.name.clone()),
        ("backbone_source", source.to_string()),
        ("backbone_sha256", backbone.sha256.clone()),
        ("backbone_config", config),
        (input_key, input.expect("an input spec serialises")),
    ]
}

/// The inverse of [`feature_metadata`]: the features from the entries `get` finds.
pub(crate) fn parse_feature_metadata(
    get: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Features, String> {
    let config = get("backbone_config").ok_or("no backbone_config")?;
    let backbone =
        serde_json::from_str(&config).map_err(|e| format!("bad backbone_config: {e}"))?;
    let input = match (get("text_input"), get("preprocess")) {
        (Some(text), _) => InputSpec::Text(
            serde_json::from_str(&text).map_err(|e| format!("bad text_input: {e}"))?,
        ),
        (None, Some(preprocess)) => InputSpec::Image(
            serde_json::from_str(&preprocess).map_err(|e| format!("bad preprocess: {e}"))?,
        ),
        (None, None) => return Err("neither preprocess nor text_input".into()),
    };
    Ok(Features {
        source: BackboneRef::parse(&get("backbone_source").unwrap_or_default()),
        backbone,
        input,
    })
}

/// What happened, for the summary line and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedSummary {
    /// Images or texts.
    #[serde(skip)]
    pub modality: Modality,
    /// Candidate files (or text rows).
    pub files: usize,
    /// Files (texts) embedded.
    pub embedded: usize,
    /// Rows, augmented views included.
    pub rows: usize,
    pub from_cache: usize,
    pub computed: usize,
    pub skipped: Vec<SkipReport>,
    pub empty_classes: Vec<String>,
    /// Texts longer than the backbone's maximum length, embedded from their first tokens (`None` for images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<usize>,
    /// What went wrong without stopping the run (a cache that cannot be written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub seconds: f64,
    /// Images (or texts) per second.
    pub per_second: f64,
    /// Where the backbone ran ("cpu", "cuda:0 (NVIDIA H200)").
    pub device: DeviceUsed,
    /// The arithmetic it ran in.
    pub precision: Precision,
    /// Where ONNX Runtime put the model's nodes on CUDA, as it reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    pub batch_size: usize,
    pub stages: StageTimes,
}

/// Seconds spent in each stage of embedding, to show the bottleneck. Reading, decoding and preprocessing run on
/// several threads at once: theirs are summed over threads (they may exceed the run's wall time). `waiting` is
/// the backbone's thread idle for want of input; `inference` its time in the model; `write` storing vectors.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageTimes {
    pub read: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub waiting: f64,
    pub inference: f64,
    pub write: f64,
}

impl StageTimes {
    pub(crate) fn add(&mut self, other: &StageTimes) {
        self.read += other.read;
        self.decode += other.decode;
        self.preprocess += other.preprocess;
        self.waiting += other.waiting;
        self.inference += other.inference;
        self.write += other.write;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SkipReport {
    pub path: String,
    pub reason: String,
}

impl From<&Skip> for SkipReport {
    fn from(skip: &Skip) -> Self {
        SkipReport {
            path: skip.path.clone(),
            reason: skip.reason.clone(),
        }
    }
}

/// The summary's warning when a CUDA session runs part of the model on the CPU.
pub(crate) fn cpu_nodes_warning(placement: Option<&Placement>) -> Option<String> {
    let nodes = placement?.cpu_fallback()?;
    Some(format!(
        "ONNX Runtime runs {nodes} on the CPU: it has no CUDA kernel for them"
    ))
}

/// Inputs per second, 0 when no time passed.
pub(crate) fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
