//! `Embedder`: one backbone opened once, embedding image files, pixel arrays or texts; `Embedded`: the rows it
//! made, which input each row is, and the inputs it skipped with their reasons.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use headstart::backbone::{Backbone, BackboneOptions, BackboneRef, Features};
use headstart::backbone::{JpegDecode, PreprocessOverrides};
use headstart::data::{Data, files, texts};
use headstart::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, feature_metadata};
use headstart::runtime::{Device, RuntimeOptions};
use headstart::{Modality, zoo};
use ndarray::Array2;
use numpy::{PyArray1, PyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::{arrays, raise};

/// A frozen backbone, opened once: `embed_paths`, `embed_pixels` or `embed_texts` turn inputs into rows.
#[pyclass(frozen, module = "headstart")]
pub struct Embedder {
    backbone: Mutex<Backbone>,
    options: EmbedOptions,
    pub(crate) runtime: RuntimeOptions,
}

/// The entries an `.npz` keeps about what made its embeddings (`backbone`, `backbone_sha256`,
/// `backbone_config`, …).
fn metadata(features: &Features) -> HashMap<&'static str, String> {
    feature_metadata(features).into_iter().collect()
}

impl Embedder {
    pub(crate) fn features(&self) -> Features {
        self.backbone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .features()
    }

    /// Runs `job` on the backbone with the GIL released.
    fn with_backbone<T: Send>(
        &self,
        py: Python<'_>,
        job: impl FnOnce(&mut Backbone) -> headstart::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            // A panic in an earlier call cannot leave the backbone half-changed: its state is the session.
            let mut backbone = self.backbone.lock().unwrap_or_else(|e| e.into_inner());
            job(&mut backbone)
        })
        .map_err(raise)
    }
}

#[pymethods]
impl Embedder {
    /// Opens `backbone` (a zoo name or a path to an .onnx file; a zoo model is fetched and verified on first
    /// use). `modality` ("image" or "text") is needed only for a file outside the zoo that reads texts.
    #[new]
    #[pyo3(signature = (
        backbone = "efficientnet-lite0",
        device = "auto",
        *,
        modality = None,
        batch_size = None,
        workers = None,
        threads = None,
        cache = true,
        cache_dir = None,
        exact_decode = false,
        allow_truncated = false,
        max_pixels = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backbone: &str,
        device: &str,
        modality: Option<&str>,
        batch_size: Option<usize>,
        workers: Option<usize>,
        threads: Option<usize>,
        cache: bool,
        cache_dir: Option<PathBuf>,
        exact_decode: bool,
        allow_truncated: bool,
        max_pixels: Option<u64>,
    ) -> PyResult<Self> {
        let reference = BackboneRef::parse(backbone);
        let modality = match (modality, &reference) {
            (Some(name), _) => name.parse().map_err(|message| {
                raise(headstart::Error::InvalidParameter {
                    name: "modality",
                    message,
                })
            })?,
            (None, BackboneRef::Zoo(name)) => zoo::find(name).map_err(raise)?.modality,
            (None, BackboneRef::File(_)) => Modality::Image,
        };
        let mut runtime =
            RuntimeOptions::default().device(device.parse::<Device>().map_err(raise)?);
        runtime.threads = threads;
        let mut preprocess = PreprocessOverrides::default();
        preprocess.jpeg_decode = exact_decode.then_some(JpegDecode::Exact);
        let backbone_options = BackboneOptions::default()
            .runtime(runtime.clone())
            .preprocess(preprocess);
        let mut options = EmbedOptions::default()
            .use_cache(cache)
            .allow_truncated(allow_truncated);
        options.batch_size = batch_size;
        if let Some(workers) = workers {
            options = options.workers(workers);
        }
        if let Some(dir) = cache_dir {
            options = options.cache_dir(dir);
        }
        if let Some(max_pixels) = max_pixels {
            options = options.max_pixels(max_pixels);
        }
        let opened = py
            .detach(|| Backbone::open(&reference, modality, &backbone_options))
            .map_err(raise)?;
        Ok(Embedder {
            backbone: Mutex::new(opened),
            options,
            runtime,
        })
    }

    /// "image" or "text".
    #[getter]
    fn modality(&self) -> String {
        self.backbone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .modality()
            .to_string()
    }

    /// Where the backbone runs: "cpu", or "cuda:0 (NVIDIA …)".
    #[getter]
    fn device(&self) -> String {
        self.backbone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .device()
            .to_string()
    }

    /// What identifies these embeddings, as the `.npz` of `headstart embed` keeps it: `backbone`,
    /// `backbone_source`, `backbone_sha256`, `backbone_config` (JSON) and `preprocess` or `text_input` (JSON).
    #[getter]
    fn metadata(&self) -> HashMap<&'static str, String> {
        metadata(&self.features())
    }

    /// Embeds image files, in parallel and through the cache, as the command line embeds a folder. A file that
    /// is missing, not an image, truncated or corrupt is skipped with its reason, never raised.
    fn embed_paths(&self, py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<Embedded> {
        let data = Data::Images(files::from_paths(&paths));
        let ids: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let (set, summary) = self.with_backbone(py, |backbone| {
            let (set, summary) = headstart::embed(&data, backbone, &self.options, &mut |_, _| {})?;
            Ok((set, summary))
        })?;
        Embedded::from_set(py, set, summary, &ids)
    }

    /// Embeds texts (through the cache). An empty text is skipped, never raised.
    fn embed_texts(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Embedded> {
        let data = Data::Texts(texts::from_texts(&texts));
        let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
        let (set, summary) = self.with_backbone(py, |backbone| {
            headstart::embed(&data, backbone, &self.options, &mut |_, _| {})
        })?;
        Embedded::from_set(py, set, summary, &ids)
    }

    /// Embeds 8-bit RGB images given as one uint8 array [N, H, W, 3]. The same preprocessing as for files
    /// (resize, crop, normalise) runs on them; nothing is cached.
    fn embed_pixels(&self, py: Python<'_>, pixels: &Bound<'_, PyAny>) -> PyResult<Embedded> {
        let pixels = arrays::pixels(pixels)?;
        let view = arrays::images(&pixels)?;
        let started = std::time::Instant::now();
        let (matrix, features, device) = self.with_backbone(py, |backbone| {
            let matrix = match backbone {
                Backbone::Image(image) => image.embed_pixels(view)?,
                Backbone::Text(_) => {
                    return Err(headstart::Error::InputMismatch {
                        trained: Modality::Text,
                        given: Modality::Image,
                    });
                }
            };
            Ok((matrix, backbone.features(), backbone.device().to_string()))
        })?;
        let rows = matrix.nrows();
        Ok(Embedded {
            embeddings: arrays::to_numpy(py, matrix)?.unbind(),
            indices: PyArray1::from_vec(py, (0..rows as i64).collect()).unbind(),
            skipped: Vec::new(),
            from_cache: 0,
            seconds: started.elapsed().as_secs_f64(),
            device,
            features,
        })
    }

    fn __repr__(&self) -> String {
        let backbone = self.backbone.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "Embedder(backbone={:?}, modality={:?}, device={:?})",
            backbone.source(),
            backbone.modality().to_string(),
            backbone.device().to_string()
        )
    }
}

/// Rows made by an [`Embedder`]: `embeddings[i]` is input `indices[i]`; `skipped` lists `(index, reason)` for
/// the inputs that made no row.
#[pyclass(frozen, module = "headstart")]
pub struct Embedded {
    /// float32 [N, D], one row per embedded input, in input order.
    #[pyo3(get)]
    embeddings: Py<PyArray2<f32>>,
    /// int64 [N]: the input each row came from.
    #[pyo3(get)]
    indices: Py<PyArray1<i64>>,
    /// (index of the input, why it was skipped).
    #[pyo3(get)]
    skipped: Vec<(usize, String)>,
    /// Rows read from the embedding cache instead of computed.
    #[pyo3(get)]
    from_cache: usize,
    #[pyo3(get)]
    seconds: f64,
    /// Where the backbone ran.
    #[pyo3(get)]
    device: String,
    pub(crate) features: Features,
}

impl Embedded {
    /// The embeddings as the library's [N, D] matrix (a copy: the numpy array may be changed meanwhile).
    pub(crate) fn matrix(&self, py: Python<'_>) -> PyResult<Array2<f32>> {
        let array = arrays::contiguous::<f32>(self.embeddings.bind(py).as_any(), "float32")?;
        Ok(arrays::matrix(&array, "embeddings")?.to_owned())
    }

    /// Maps the set's rows back to the inputs (`ids` are the names the data gave each input, in order).
    fn from_set(
        py: Python<'_>,
        set: EmbeddedSet,
        summary: Option<EmbedSummary>,
        ids: &[String],
    ) -> PyResult<Self> {
        // Rows are the embedded inputs in input order: a subsequence of `ids`.
        let mut indices = Vec::with_capacity(set.rows());
        let mut next = set.paths.iter().peekable();
        for (index, id) in ids.iter().enumerate() {
            if next.peek().is_some_and(|row| *row == id) {
                next.next();
                indices.push(index as i64);
            }
        }
        let summary = summary.ok_or_else(|| {
            crate::HeadstartError::new_err("embedding gave no summary (was the input an .npz?)")
        })?;
        let reasons: HashMap<&str, &str> = summary
            .skipped
            .iter()
            .map(|skip| (skip.path.as_str(), skip.reason.as_str()))
            .collect();
        let mut embedded = indices.iter().peekable();
        let mut skipped = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            if embedded.peek().is_some_and(|&&i| i as usize == index) {
                embedded.next();
            } else {
                let reason = reasons.get(id.as_str()).copied().unwrap_or("not embedded");
                skipped.push((index, reason.to_string()));
            }
        }
        let features = set.features.clone();
        let matrix = Array2::from_shape_vec((set.rows(), set.dim), set.embeddings)
            .map_err(|e| crate::HeadstartError::new_err(format!("embeddings: {e}")))?;
        Ok(Embedded {
            embeddings: arrays::to_numpy(py, matrix)?.unbind(),
            indices: PyArray1::from_vec(py, indices).unbind(),
            skipped,
            from_cache: summary.from_cache,
            seconds: summary.seconds,
            device: summary.device.to_string(),
            features,
        })
    }
}

#[pymethods]
impl Embedded {
    /// What identifies these embeddings (see `Embedder.metadata`).
    #[getter]
    fn metadata(&self) -> HashMap<&'static str, String> {
        metadata(&self.features)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.indices.bind(py).shape()[0]
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let shape = self.embeddings.bind(py).shape().to_vec();
        format!(
            "Embedded(rows={}, dim={}, skipped={}, backbone={:?})",
            shape[0],
            shape[1],
            self.skipped.len(),
            self.features.source
        )
    }
}
