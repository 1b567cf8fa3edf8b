//! Heads: small classifiers trained on frozen embeddings, as linfa estimators. Each head is a parameter type
//! (linfa's `ParamGuard`, whose checked parameters implement `Fit` on a `linfa::Dataset` of embeddings and class
//! indices, with per-example weights) and a model that implements linfa's `PredictInplace` (so `predict`) and
//! [`ClassScores`]:
//! - `logistic` (the default): multinomial logistic regression on standardised features, by our L-BFGS or by
//!   linfa-logistic as the reference ([`LogisticParams`]);
//! - `linear-svm`: linear support vector machines from linfa-svm, one against the rest ([`LinearSvmParams`]);
//! - `gaussian-nb`: Gaussian naive Bayes from linfa-bayes ([`NaiveBayesParams`]);
//! - `centroid`: the nearest class mean, for 1–5 examples per class ([`CentroidParams`]);
//! - `knn`: votes among the cosine-nearest training embeddings ([`KnnParams`]).
//!
//! [`train()`] is the protocol around them: cross-validation picks the regularisation, out-of-fold scores fit a
//! temperature, and probabilities are softmax(scores / temperature). Beside any head, [`Novelty`] can reject
//! inputs far from all the training data (open-set rejection).

mod centroid;
pub mod cv;
mod knn;
mod logistic;
pub mod multi_label;
mod naive_bayes;
pub mod novelty;
mod svm;
pub mod train;

use linfa::dataset::{AsSingleTargets, DatasetBase};
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, ArrayView2, Axis, Data, Ix2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::builder::{CLASS_INDEX, GraphBuilder, PROBABILITIES};

pub use centroid::{Centroid, CentroidParams, CentroidValidParams};
pub use cv::Estimator;
pub use knn::{Knn, KnnParams, KnnValidParams};
pub use logistic::{LinearModel, LogisticParams, LogisticValidParams, Solver};
pub use multi_label::{MultiLabel, MultiLabelMetrics, MultiLabelReport, train_multi_label};
pub use naive_bayes::{NaiveBayes, NaiveBayesParams, NaiveBayesValidParams};
pub use novelty::{Novelty, NoveltyParams};
pub use svm::{LinearSvmParams, LinearSvmValidParams, MAX_SVM_SAMPLES};
pub use train::{ClassWeight, TrainParams, TrainReport, TrainWarning, train};

/// Embeddings [N, D] and their class indices, as the heads fit them (weights optional).
pub type Embeddings<'a> = linfa::DatasetView<'a, f32, usize, ndarray::Ix1>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// Multinomial logistic regression, regularisation chosen by cross-validation.
    #[default]
    Logistic,
    /// Nearest class mean on L2-normalised embeddings.
    Centroid,
    /// Cosine k-nearest neighbours.
    Knn,
    /// Gaussian naive Bayes (linfa-bayes).
    GaussianNb,
    /// Linear support vector machines, one against the rest (linfa-svm); regularisation chosen by
    /// cross-validation.
    LinearSvm,
    /// Several labels per input: a logistic model and a threshold per label, trained from a table of label
    /// sets ([`train_multi_label`]) rather than chosen with `head`.
    #[cfg_attr(feature = "cli", value(skip))]
    MultiLabel,
}

impl HeadKind {
    /// The kinds [`train()`] fits from one class per input.
    pub const SINGLE_LABEL: [HeadKind; 5] = [
        HeadKind::Logistic,
        HeadKind::Centroid,
        HeadKind::Knn,
        HeadKind::GaussianNb,
        HeadKind::LinearSvm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Logistic => "logistic",
            HeadKind::Centroid => "centroid",
            HeadKind::Knn => "knn",
            HeadKind::GaussianNb => "gaussian-nb",
            HeadKind::LinearSvm => "linear-svm",
            HeadKind::MultiLabel => "multi-label",
        }
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HeadKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        HeadKind::SINGLE_LABEL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = HeadKind::SINGLE_LABEL.iter().map(|k| k.name()).collect();
                Error::parameter(
                    "head",
                    format!("'{name}' is not one of {}", names.join(", ")),
                )
            })
    }
}

/// What every head's model gives beyond linfa's predicted class: a score per class, from which
/// probabilities are softmax(scores / temperature).
pub trait ClassScores {
    /// The classes scored (columns of [`ClassScores::scores`]).
    fn classes(&self) -> usize;
    /// The embedding size expected.
    fn dim(&self) -> usize;
    /// Unnormalised class scores (logits), [N, K]. Panics if `x` does not have [`ClassScores::dim`] columns,
    /// as linfa's models do.
    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32>;

    /// Class probabilities, [N, K].
    fn probabilities(&self, x: ArrayView2<f32>, temperature: f32) -> Array2<f32> {
        softmax(self.scores(x), temperature)
    }
}

/// linfa's `PredictInplace` (and so `Predict`) for a model with [`ClassScores`]: the top-scoring class.
macro_rules! predict_top_class {
    ($model:ty) => {
        impl<D: ndarray::Data<Elem = f32>>
            linfa::traits::PredictInplace<
                ndarray::ArrayBase<D, ndarray::Ix2>,
                ndarray::Array1<usize>,
            > for $model
        {
            fn predict_inplace(
                &self,
                x: &ndarray::ArrayBase<D, ndarray::Ix2>,
                y: &mut ndarray::Array1<usize>,
            ) {
                let scores = $crate::head::ClassScores::scores(self, x.view());
                for (target, row) in y.iter_mut().zip(scores.rows()) {
                    *target = $crate::head::top(row);
                }
            }

            fn default_target(
                &self,
                x: &ndarray::ArrayBase<D, ndarray::Ix2>,
            ) -> ndarray::Array1<usize> {
                ndarray::Array1::zeros(x.nrows())
            }
        }
    };
}
pub(crate) use predict_top_class;

/// The index of the largest score (the first on a tie).
pub(crate) fn top(row: ArrayView1<f32>) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// What each kind of head knows of itself beyond its scores: its arrays as a bundle keeps them, the ONNX nodes
/// that compute its scores, and (for the heads that can) adding examples without the old ones. [`Head`]
/// dispatches to it in one place; docs/heads.md lists what a new head touches.
pub(crate) trait HeadModel: ClassScores {
    /// Its arrays, named as the bundle file keeps them.
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)>;

    /// Appends nodes that compute its class scores from `embedding` ([N, D]); returns the scores' name.
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String>;

    /// Appends an exported file's outputs, computed from its `scores`: by default the class probabilities,
    /// softmax(scores / temperature), and the top class.
    fn lower_outputs(&self, graph: &mut GraphBuilder, scores: &str, temperature: f32) {
        graph.softmax_outputs(scores, temperature, self.classes());
    }

    /// What an exported file's outputs are, for its metadata, and the entries they need there.
    fn outputs_metadata(&self) -> (String, Vec<(&'static str, String)>) {
        let described = format!("{PROBABILITIES}: float [N, K] softmax; {CLASS_INDEX}: int64 [N]");
        (described, Vec::new())
    }

    /// The labels of each row of `probabilities` [N, K], for a head that gives several (or none) per input;
    /// `None` for a head that gives one class.
    fn label_sets(&self, _probabilities: ArrayView2<f32>) -> Option<Vec<Vec<usize>>> {
        None
    }

    /// This head with `examples` added from its own arrays, as training on all of them would make it; `None`
    /// when it cannot (it needs the old embeddings).
    fn with_examples(&self, _examples: &NewExamples) -> Option<Result<Head>> {
        None
    }
}

/// One array of a head, as a bundle file keeps it.
pub(crate) enum StoredArray<'a> {
    Vector(&'a Array1<f32>),
    Matrix(&'a Array2<f32>),
    /// Class indices or counts, kept as int64.
    Indices(&'a [usize]),
}

/// A bundle's arrays, read back by name. A missing or misshapen array, or arrays that do not fit together, make
/// a damaged bundle: the `Err` says what is wrong.
pub(crate) trait StoredArrays {
    fn vector(&self, name: &str) -> std::result::Result<Array1<f32>, String>;
    fn matrix(&self, name: &str) -> std::result::Result<Array2<f32>, String>;
    fn indices(&self, name: &str) -> std::result::Result<Vec<usize>, String>;
}

/// Examples added to a head without its old training data (see [`HeadModel::with_examples`]).
pub(crate) struct NewExamples<'a> {
    pub x: ArrayView2<'a, f32>,
    /// Class indices among `classes`.
    pub labels: &'a [usize],
    /// The new class index of each old one.
    pub old_to_new: &'a [usize],
    pub classes: usize,
    pub class_weight: ClassWeight,
}

/// A trained head, as bundles save it and exports compile it.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Logistic(LinearModel),
    Centroid(Centroid),
    Knn(Knn),
    GaussianNb(NaiveBayes),
    LinearSvm(LinearModel),
    /// Several labels per input: per-label logistic models and thresholds.
    MultiLabel(MultiLabel),
}

impl Head {
    pub fn kind(&self) -> HeadKind {
        match self {
            Head::Logistic(_) => HeadKind::Logistic,
            Head::Centroid(_) => HeadKind::Centroid,
            Head::Knn(_) => HeadKind::Knn,
            Head::GaussianNb(_) => HeadKind::GaussianNb,
            Head::LinearSvm(_) => HeadKind::LinearSvm,
            Head::MultiLabel(_) => HeadKind::MultiLabel,
        }
    }

    /// The multi-label head, if this is one.
    pub fn multi_label(&self) -> Option<&MultiLabel> {
        match self {
            Head::MultiLabel(head) => Some(head),
            _ => None,
        }
    }

    /// The one place that tells the kinds apart: everything else asks the model.
    pub(crate) fn model(&self) -> &dyn HeadModel {
        match self {
            Head::Logistic(model) | Head::LinearSvm(model) => model,
            Head::Centroid(model) => model,
            Head::Knn(model) => model,
            Head::GaussianNb(model) => model,
            Head::MultiLabel(model) => model,
        }
    }

    /// A head of `kind` from a bundle's arrays, for `classes` classes; `knn_k` is a kNN head's neighbour count.
    pub(crate) fn read(
        kind: HeadKind,
        arrays: &dyn StoredArrays,
        classes: usize,
        knn_k: Option<usize>,
    ) -> std::result::Result<Head, String> {
        Ok(match kind {
            HeadKind::MultiLabel => Head::MultiLabel(MultiLabel::read(arrays)?),
            HeadKind::Logistic => Head::Logistic(LinearModel::read(arrays)?),
            HeadKind::LinearSvm => Head::LinearSvm(LinearModel::read(arrays)?),
            HeadKind::Centroid => Head::Centroid(Centroid::read(arrays)?),
            HeadKind::Knn => Head::Knn(Knn::read(arrays, classes, knn_k.unwrap_or(5))?),
            HeadKind::GaussianNb => Head::GaussianNb(NaiveBayes::read(arrays)?),
        })
    }
}

impl ClassScores for Head {
    fn classes(&self) -> usize {
        self.model().classes()
    }

    fn dim(&self) -> usize {
        self.model().dim()
    }

    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.model().scores(x)
    }

    fn probabilities(&self, x: ArrayView2<f32>, temperature: f32) -> Array2<f32> {
        self.model().probabilities(x, temperature)
    }
}

predict_top_class!(Head);

/// Per-feature standardisation: (x − mean) / scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub mean: Array1<f32>,
    pub scale: Array1<f32>,
}

impl Scaler {
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let scale = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-8 { s } else { 1.0 });
        Scaler { mean, scale }
    }

    pub(crate) fn transform(&self, x: ArrayView2<f32>) -> Array2<f32> {
        (&x - &self.mean) / &self.scale
    }
}

/// A dataset checked for fitting: as many labels (and weights, if any) as rows, finite values, non-negative
/// weights, labels below the class count.
pub(crate) struct Labelled<'a> {
    pub x: ArrayView2<'a, f32>,
    pub y: ArrayView1<'a, usize>,
    pub weights: Option<&'a [f32]>,
    pub classes: usize,
}

impl<'a> Labelled<'a> {
    /// `classes`: the class count when some classes may be absent from this data (a cross-validation fold);
    /// one more than the largest label otherwise.
    pub fn check<D, T>(
        dataset: &'a DatasetBase<ArrayBase<D, Ix2>, T>,
        classes: Option<usize>,
    ) -> Result<Self>
    where
        D: Data<Elem = f32>,
        T: AsSingleTargets<Elem = usize>,
    {
        let x = dataset.records.view();
        let y = dataset.as_single_targets();
        if x.nrows() != y.len() {
            return Err(Error::TrainingData(format!(
                "{} embeddings but {} labels",
                x.nrows(),
                y.len()
            )));
        }
        if x.nrows() == 0 {
            return Err(Error::TrainingData(
                "there are no embeddings to train on".into(),
            ));
        }
        if let Some((row, _)) = x
            .rows()
            .into_iter()
            .enumerate()
            .find(|(_, r)| r.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::TrainingData(format!(
                "embedding row {row} contains NaN or Inf"
            )));
        }
        let weights = dataset.weights();
        if let Some(weights) = weights {
            if weights.len() != y.len() {
                return Err(Error::TrainingData(format!(
                    "{} weights for {} embeddings",
                    weights.len(),
                    y.len()
                )));
            }
            if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(Error::TrainingData(
                    "example weights must be finite and not negative".into(),
                ));
            }
        }
        let largest = y.iter().copied().max().unwrap_or(0);
        let classes = classes.unwrap_or(largest + 1);
        if largest >= classes {
            return Err(Error::TrainingData(format!(
                "label {largest} is not a class index (there are {classes} classes)"
            )));
        }
        Ok(Labelled {
            x,
            y,
            weights,
            classes,
        })
    }

    /// Examples per class.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        self.y.iter().for_each(|&c| counts[c] += 1);
        counts
    }
}

/// Rows scaled to unit length.
pub(crate) fn normalized(x: ArrayView2<f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let norm = row.dot(&row).sqrt().max(1e-12);
        row /= norm;
    }
    out
}

/// Row-wise softmax of logits / temperature.
pub fn softmax(mut logits: Array2<f32>, temperature: f32) -> Array2<f32> {
    let t = temperature.max(1e-6);
    for mut row in logits.rows_mut() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| ((v - max) / t).exp());
        let sum = row.sum();
        row /= sum;
    }
    logits
}

/// The temperature that minimises the negative log-likelihood of held-out logits (golden-section search over
/// log T in [0.05, 20]).
pub(crate) fn fit_temperature(logits: ArrayView2<f32>, truth: &[usize]) -> f32 {
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp() as f32;
        let mut total = 0.0f64;
        for (row, &y) in logits.rows().into_iter().zip(truth) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| (((v - max) / t) as f64).exp()).sum();
            total += sum.ln() - ((row[y] - max) / t) as f64;
        }
        total
    };
    let (mut lo, mut hi) = (0.05f64.ln(), 20.0f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let a = hi - ratio * (hi - lo);
        let b = lo + ratio * (hi - lo);
        if nll(a) < nll(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::array;

    #[test]
    fn scaler_standardises() {
        let x = array![[1.0f32, 5.0], [3.0, 5.0]];
        let s = Scaler::fit(x.view());
        assert_eq!(s.transform(x.view()), array![[-1.0f32, 0.0], [1.0, 0.0]]);
    }

    #[test]
    fn softmax_and_temperature() {
        let p = softmax(array![[0.0f32, 2.0f32.ln()]], 1.0);
        assert!((p[[0, 1]] - 2.0 / 3.0).abs() < 1e-6);
        // Logits twice as large as they should be: the fitted temperature is about 2.
        let truth: Vec<usize> = (0..300).map(|i| (i % 4 == 0) as usize).collect();
        let logits = Array2::from_shape_fn(
            (300, 2),
            |(_, j)| if j == 0 { 2.0 * 3f32.ln() } else { 0.0 },
        );
        let t = fit_temperature(logits.view(), &truth);
        assert!((t - 2.0).abs() < 0.05, "temperature {t}");
    }

    #[test]
    fn head_names_parse_back() {
        for kind in HeadKind::SINGLE_LABEL {
            assert_eq!(kind.name().parse::<HeadKind>().unwrap(), kind);
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.name())
            );
        }
        let err = "forest".parse::<HeadKind>().unwrap_err().to_string();
        assert!(err.contains("gaussian-nb, linear-svm"), "{err}");
    }

    #[test]
    fn bad_datasets_are_refused() {
        let x = array![[1.0f32, 0.0], [0.0, f32::NAN]];
        let y = array![0usize, 1];
        let data = DatasetBase::new(x.view(), y.view());
        let err = Labelled::check(&data, None).err().unwrap().to_string();
        assert!(err.contains("row 1") && err.contains("NaN"), "{err}");
        let x = array![[1.0f32, 0.0], [0.0, 1.0]];
        let data = DatasetBase::new(x.view(), y.view());
        assert!(Labelled::check(&data, Some(1)).is_err());
        let weighted = DatasetBase::new(x.view(), y.view()).with_weights(array![1.0, -1.0]);
        assert!(Labelled::check(&weighted, None).is_err());
        assert_eq!(Labelled::check(&data, Some(3)).unwrap().counts(), [1, 1, 0]);
    }

    #[test]
    fn the_head_predicts_its_top_class() {
        let head = Head::Centroid(Centroid {
            centroids: normalized(array![[1.0f32, 0.0], [0.0, 1.0]].view()),
        });
        assert_eq!(
            head.predict(&array![[0.2f32, 0.9], [1.0, 0.1]]),
            array![1, 0]
        );
    }
}
