//! `train` and `Bundle`: a head trained on embeddings, saved and loaded as the command line's `.hs` file, and
//! predicting from embeddings, pixels, image files or texts (its backbone is opened on first need).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use headstart::backbone::Features;
use headstart::embeddings::EmbeddedSet;
use headstart::export::{ExportOptions, export_classifier};
use headstart::head::{NoveltyParams, TrainParams};
use headstart::runtime::{Device, RuntimeOptions};
use headstart::{Classifier, Modality, PredictOptions, workflow};
use ndarray::ArrayView2;
use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::embedder::{Embedded, Embedder};
use crate::{HeadstartError, arrays, raise};

/// A trained head and what it needs to run: class names, the backbone's identity, the preprocessing.
#[pyclass(frozen, module = "headstart")]
pub struct Bundle {
    state: Mutex<State>,
}

/// The bundle, and its classifier once something needs the backbone (opened on first need: predicting from
/// embeddings needs none).
struct State {
    bundle: headstart::Bundle,
    origin: PathBuf,
    runtime: RuntimeOptions,
    classifier: Option<Classifier>,
}

impl State {
    fn classifier(&mut self) -> headstart::Result<&mut Classifier> {
        match &mut self.classifier {
            Some(classifier) => Ok(classifier),
            empty => Ok(empty.insert(Classifier::from_bundle(
                self.bundle.clone(),
                &self.origin,
                &self.runtime,
                None,
            )?)),
        }
    }
}

impl Bundle {
    fn new(bundle: headstart::Bundle, origin: PathBuf, runtime: RuntimeOptions) -> Self {
        Bundle {
            state: Mutex::new(State {
                bundle,
                origin,
                runtime,
                classifier: None,
            }),
        }
    }

    fn read<T>(&self, look: impl FnOnce(&headstart::Bundle) -> T) -> T {
        look(&self.state.lock().unwrap_or_else(|e| e.into_inner()).bundle)
    }

    /// Runs `job` on the classifier with the GIL released.
    fn with_classifier<T: Send>(
        &self,
        py: Python<'_>,
        job: impl FnOnce(&mut Classifier) -> headstart::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            job(state.classifier()?)
        })
        .map_err(raise)
    }

    /// Runs `answer` on the bundle and the embeddings of `inputs`: an `Embedded` or a float array [N, D] as they
    /// are; a uint8 array [N, H, W, 3] of RGB images, or a list of image paths or texts, through the backbone
    /// (with the GIL released). `called` names the method in the error for any other input.
    fn with_embeddings<T: Send>(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        called: &str,
        answer: impl FnOnce(&headstart::Bundle, ArrayView2<f32>) -> headstart::Result<T> + Send,
    ) -> PyResult<T> {
        if let Ok(embedded) = inputs.cast::<Embedded>() {
            let embedded = embedded.get();
            self.check_features(&embedded.features)?;
            let matrix = embedded.matrix(py)?;
            return self
                .read(|bundle| answer(bundle, matrix.view()))
                .map_err(raise);
        }
        if let Ok(strings) = inputs.extract::<Vec<String>>() {
            let modality = self.read(|bundle| bundle.info.features.input.modality());
            return self.with_classifier(py, |classifier| {
                let embeddings = match modality {
                    Modality::Text => {
                        let texts: Vec<&str> = strings.iter().map(String::as_str).collect();
                        classifier.embed_texts(&texts)?
                    }
                    Modality::Image => {
                        let paths: Vec<PathBuf> = strings.iter().map(PathBuf::from).collect();
                        classifier.embed_paths(&paths)?
                    }
                };
                answer(classifier.bundle(), embeddings.view())
            });
        }
        let array = numpy_array(py, inputs)?;
        match array.getattr("ndim")?.extract::<usize>()? {
            4 => {
                let pixels = arrays::pixels(&array)?;
                let view = arrays::images(&pixels)?;
                self.with_classifier(py, |classifier| {
                    let embeddings = classifier.embed_pixels(view)?;
                    answer(classifier.bundle(), embeddings.view())
                })
            }
            2 => {
                let embeddings = arrays::contiguous::<f32>(&array, "float32")?;
                let view = arrays::matrix(&embeddings, "embeddings")?;
                self.read(|bundle| answer(bundle, view)).map_err(raise)
            }
            other => Err(HeadstartError::new_err(format!(
                "{called} takes embeddings [N, D], RGB pixels [N, H, W, 3] or a list of paths or texts; got a {other}-dimensional array"
            ))),
        }
    }

    fn check_features(&self, features: &Features) -> PyResult<()> {
        self.read(|bundle| bundle.info.features.check(features))
            .map_err(raise)
    }
}

#[pymethods]
impl Bundle {
    /// Reads a bundle written by `save` or by `headstart train`. Its backbone is opened on `device` when a
    /// prediction needs it.
    #[staticmethod]
    #[pyo3(signature = (path, device = "auto"))]
    fn load(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Self> {
        let runtime = RuntimeOptions::default().device(device.parse::<Device>().map_err(raise)?);
        let bundle = py
            .detach(|| headstart::Bundle::load(&path))
            .map_err(raise)?;
        Ok(Bundle::new(bundle, path, runtime))
    }

    /// Writes the bundle (atomically: a failure leaves no file).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let bundle = self.read(Clone::clone);
        py.detach(|| bundle.save(&path)).map_err(raise)
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.read(|bundle| bundle.info.class_names.clone())
    }

    /// "image" or "text".
    #[getter]
    fn modality(&self) -> String {
        self.read(|bundle| bundle.info.features.input.modality().to_string())
    }

    /// The backbone it was trained on, as it was named (a zoo name or a path).
    #[getter]
    fn backbone(&self) -> String {
        self.read(|bundle| bundle.info.features.source.to_string())
    }

    /// "logistic", "centroid", "knn", "gaussian-nb", "linear-svm", or "multi-label" (a bundle from `headstart train
    /// --multi-label`).
    #[getter]
    fn head(&self) -> String {
        self.read(|bundle| bundle.info.training.head.name().to_string())
    }

    /// Novelty scores above this are unknown; `None` for a bundle trained without `open_set`.
    #[getter]
    fn novelty_threshold(&self) -> Option<f32> {
        self.read(|bundle| bundle.novelty.as_ref().map(|n| n.threshold))
    }

    /// Novelty scores, float32 [N], for an `Embedded` or a float array [N, D] of embeddings from the bundle's
    /// backbone: 1 − the cosine similarity to the k-th nearest training embedding. Raises for a bundle trained
    /// without `open_set`.
    fn novelty<'py>(
        &self,
        py: Python<'py>,
        embeddings: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let scores = if let Ok(embedded) = embeddings.cast::<Embedded>() {
            let embedded = embedded.get();
            self.check_features(&embedded.features)?;
            let matrix = embedded.matrix(py)?;
            self.read(|bundle| bundle.novelty_scores(matrix.view()))
        } else {
            let array = numpy_array(py, embeddings)?;
            let embeddings = arrays::contiguous::<f32>(&array, "float32")?;
            let view = arrays::matrix(&embeddings, "embeddings")?;
            self.read(|bundle| bundle.novelty_scores(view))
        }
        .map_err(raise)?
        .ok_or_else(|| HeadstartError::new_err("this bundle was trained without open_set"))?;
        Ok(PyArray1::from_vec(py, scores.to_vec()))
    }

    /// Out-of-fold accuracy of the chosen configuration, from cross-validation at training.
    #[getter]
    fn cv_accuracy(&self) -> f64 {
        self.read(|bundle| bundle.info.training.cv_accuracy)
    }

    /// The regularisation strength cross-validation chose (logistic and linear-svm heads).
    #[getter]
    fn chosen_c(&self) -> Option<f64> {
        self.read(|bundle| bundle.info.training.chosen_c)
    }

    /// Class probabilities, float32 [N, K] (columns in `class_names` order), for: an `Embedded` or a float
    /// array [N, D] of embeddings from the bundle's backbone; a uint8 array [N, H, W, 3] of RGB images; or a
    /// list of image paths (image bundles; a file that cannot be decoded raises) or of texts (text bundles).
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let probabilities =
            self.with_embeddings(py, inputs, "predict_proba", |bundle, embeddings| {
                bundle.predict_embeddings(embeddings)
            })?;
        arrays::to_numpy(py, probabilities)
    }

    /// One answer per input (the inputs `predict_proba` takes), as the command line's `predict` gives them: a
    /// dict with `label` (the top class, or None for "unknown": below `min_confidence`, or novel to an
    /// open-set bundle), `top` (the `top_k` most probable (class, probability) pairs), `novel`, `novelty` (None
    /// without open_set) and `labels` (a multi-label bundle's labels at their thresholds, else None).
    #[pyo3(signature = (inputs, *, top_k = 1, min_confidence = 0.0))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        top_k: usize,
        min_confidence: f32,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let options = PredictOptions::default()
            .top_k(top_k)
            .min_confidence(min_confidence);
        let answers = self.with_embeddings(py, inputs, "predict", |bundle, embeddings| {
            bundle.answer(embeddings, &options)
        })?;
        answers
            .into_iter()
            .map(|answer| {
                let dict = PyDict::new(py);
                dict.set_item("label", answer.label)?;
                dict.set_item("top", answer.top)?;
                dict.set_item("novel", answer.novel)?;
                dict.set_item("novelty", answer.novelty)?;
                dict.set_item("labels", answer.labels)?;
                Ok(dict)
            })
            .collect()
    }

    /// Writes one ONNX file: backbone, pooling, head and softmax (or the head alone with `head_only`);
    /// `raw_input` takes uint8 RGB pixels [N, H, W, 3] of `raw_size` (height, width) instead of a tensor.
    /// Returns the file's size in bytes.
    #[pyo3(signature = (path, *, raw_input = false, head_only = false, raw_size = None))]
    fn export(
        &self,
        py: Python<'_>,
        path: PathBuf,
        raw_input: bool,
        head_only: bool,
        raw_size: Option<(u32, u32)>,
    ) -> PyResult<usize> {
        let mut options = ExportOptions::default()
            .head_only(head_only)
            .raw_input(raw_input);
        if let Some((height, width)) = raw_size {
            options = options.raw_size(height, width);
        }
        self.with_classifier(py, |classifier| {
            Ok(export_classifier(classifier, &options, &path)?.bytes)
        })
    }

    fn __repr__(&self) -> String {
        self.read(|bundle| {
            format!(
                "Bundle(classes={:?}, backbone={:?}, head={:?})",
                bundle.info.class_names,
                bundle.info.features.source,
                format!("{:?}", bundle.info.training.head).to_lowercase()
            )
        })
    }
}

/// `inputs` as a numpy array (lists and other array-likes are converted by numpy).
fn numpy_array<'py>(py: Python<'py>, inputs: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?.call_method1("asarray", (inputs,))
}

/// Reads a bundle: `headstart.load(path)` is `Bundle.load(path)`.
#[pyfunction]
#[pyo3(signature = (path, device = "auto"))]
pub fn load(py: Python<'_>, path: PathBuf, device: &str) -> PyResult<Bundle> {
    Bundle::load(py, path, device)
}

/// Trains a head on `embeddings` (an `Embedded`, or a float array [N, D] made by `embedder`) with one label
/// per row (strings, or integers). Cross-validation picks the regularisation and a temperature calibrates
/// the probabilities, as `headstart train` does.
#[pyfunction]
#[pyo3(signature = (
    embeddings,
    labels,
    *,
    embedder = None,
    head = "logistic",
    folds = 5,
    grid = None,
    class_weight = "none",
    solver = "lbfgs",
    seed = 42,
    k = 5,
    max_iterations = 100,
    open_set = None,
    keep_embeddings = false,
))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    embeddings: &Bound<'_, PyAny>,
    labels: Vec<Bound<'_, PyAny>>,
    embedder: Option<&Bound<'_, Embedder>>,
    head: &str,
    folds: usize,
    grid: Option<Vec<f64>>,
    class_weight: &str,
    solver: &str,
    seed: u64,
    k: usize,
    max_iterations: u64,
    open_set: Option<f64>,
    keep_embeddings: bool,
) -> PyResult<Bundle> {
    let defaults = TrainParams::default();
    let mut params = TrainParams::default()
        .head(head.parse().map_err(raise)?)
        .folds(folds)
        .grid(grid.unwrap_or(defaults.grid))
        .class_weight(class_weight.parse().map_err(raise)?)
        .solver(solver.parse().map_err(raise)?)
        .seed(seed)
        .k(k)
        .max_iterations(max_iterations)
        .keep_embeddings(keep_embeddings);
    params.open_set =
        open_set.map(|rate| NoveltyParams::default().false_rejection(rate).seed(seed));
    let Labelled { set, runtime } = labelled(py, embeddings, &labels, embedder, "train", None)?;
    let trained = py
        .detach(|| workflow::train_bundle(&set, None, &params))
        .map_err(raise)?;
    Ok(Bundle::new(
        trained.bundle,
        PathBuf::from("(trained in Python)"),
        runtime,
    ))
}

/// Embeddings with one label per row, as the library takes them, and the runtime of the embedder that made them.
pub(crate) struct Labelled {
    pub set: EmbeddedSet,
    pub runtime: RuntimeOptions,
}

/// `embeddings` (an `Embedded`, or an array [N, D] made by `embedder`) labelled by `labels`, rows named by `names`
/// (their positions when `None`); `doing` names the call in errors.
pub(crate) fn labelled(
    py: Python<'_>,
    embeddings: &Bound<'_, PyAny>,
    labels: &[Bound<'_, PyAny>],
    embedder: Option<&Bound<'_, Embedder>>,
    doing: &str,
    names: Option<Vec<String>>,
) -> PyResult<Labelled> {
    let (matrix, features, runtime) = match (embeddings.cast::<Embedded>(), embedder) {
        (Ok(embedded), _) => {
            let embedded = embedded.get();
            let matrix = embedded.matrix(py)?;
            let runtime = embedder
                .map(|e| e.get().runtime.clone())
                .unwrap_or_default();
            (matrix, embedded.features.clone(), runtime)
        }
        (Err(_), Some(embedder)) => {
            let array = arrays::contiguous::<f32>(embeddings, "float32")?;
            let matrix = arrays::matrix(&array, "embeddings")?.to_owned();
            let embedder = embedder.get();
            (matrix, embedder.features(), embedder.runtime.clone())
        }
        (Err(_), None) => {
            return Err(HeadstartError::new_err(format!(
                "{doing} needs to know which backbone made the embeddings: pass an Embedded, or embedder="
            )));
        }
    };
    let (class_names, label_indices) = classes(labels)?;
    let rows = matrix.nrows();
    if label_indices.len() != rows {
        return Err(HeadstartError::new_err(format!(
            "{} labels for {rows} rows of embeddings: give one label per row",
            label_indices.len(),
        )));
    }
    let paths = match names {
        Some(names) if names.len() != rows => {
            return Err(HeadstartError::new_err(format!(
                "{} names for {rows} rows of embeddings: give one name per row",
                names.len()
            )));
        }
        Some(names) => names,
        None => (0..rows).map(|i| i.to_string()).collect(),
    };
    let dim = matrix.ncols();
    Ok(Labelled {
        set: EmbeddedSet {
            dim,
            embeddings: matrix.into_iter().collect(),
            labels: Some(label_indices),
            class_names,
            paths,
            augmented: vec![false; rows],
            features,
        },
        runtime,
    })
}

/// Class names (sorted: numerically for integer labels) and each label's index among them.
fn classes(labels: &[Bound<'_, PyAny>]) -> PyResult<(Vec<String>, Vec<usize>)> {
    let numbers: Option<Vec<i64>> = labels.iter().map(|l| l.extract::<i64>().ok()).collect();
    let names: Vec<String> = match &numbers {
        Some(numbers) => numbers.iter().map(i64::to_string).collect(),
        None => labels
            .iter()
            .map(|label| {
                label.extract::<String>().map_err(|_| {
                    HeadstartError::new_err(format!(
                        "labels must be strings or integers, got {}",
                        label.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                    ))
                })
            })
            .collect::<PyResult<_>>()?,
    };
    let class_names: Vec<String> = match &numbers {
        Some(numbers) => numbers
            .iter()
            .copied()
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .map(|n| n.to_string())
            .collect(),
        None => names
            .iter()
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect(),
    };
    let indices = names
        .iter()
        .map(|name| {
            class_names
                .iter()
                .position(|c| c == name)
                .expect("every name is among the classes made from the names")
        })
        .collect();
    Ok((class_names, indices))
}
