//! Heads: small classifiers trained on frozen embeddings. `logistic` (the default) is multinomial logistic
//! regression on standardised features (scikit-learn's objective, checked against linfa-logistic); `centroid`
//! is the nearest class mean (for 1–5 examples per class); `knn` votes among the cosine-nearest training
//! embeddings. Each produces logits; probabilities are softmax(logits / temperature), with the temperature
//! fitted on held-out predictions.

pub(crate) mod logistic;
pub mod train;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use train::{ClassWeight, TrainParams, TrainReport, TrainWarning, train};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Multinomial logistic regression, regularisation chosen by cross-validation.
    #[default]
    Logistic,
    /// Nearest class mean on L2-normalised embeddings.
    Centroid,
    /// Cosine k-nearest neighbours.
    Knn,
}

impl std::str::FromStr for HeadKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "logistic" => Ok(HeadKind::Logistic),
            "centroid" => Ok(HeadKind::Centroid),
            "knn" => Ok(HeadKind::Knn),
            other => Err(Error::parameter(
                "head",
                format!("'{other}' is not one of logistic, centroid, knn"),
            )),
        }
    }
}

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

    pub fn transform(&self, x: ArrayView2<f32>) -> Array2<f32> {
        (&x - &self.mean) / &self.scale
    }
}

/// A trained head.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Logistic {
        scaler: Scaler,
        weights: Array2<f32>,
        intercept: Array1<f32>,
    },
    /// Unit-length class means, [K, D].
    Centroid { centroids: Array2<f32> },
    /// Unit-length training embeddings and their classes.
    Knn {
        embeddings: Array2<f32>,
        labels: Vec<usize>,
        k: usize,
        classes: usize,
    },
}

/// Cosine similarities are in [-1, 1]; this spreads them before the fitted temperature refines the scale.
pub(crate) const CENTROID_SCALE: f32 = 10.0;

impl Head {
    pub fn kind(&self) -> HeadKind {
        match self {
            Head::Logistic { .. } => HeadKind::Logistic,
            Head::Centroid { .. } => HeadKind::Centroid,
            Head::Knn { .. } => HeadKind::Knn,
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Head::Logistic { intercept, .. } => intercept.len(),
            Head::Centroid { centroids } => centroids.nrows(),
            Head::Knn { classes, .. } => *classes,
        }
    }

    /// The embedding size the head expects.
    pub fn dim(&self) -> usize {
        match self {
            Head::Logistic { weights, .. } => weights.nrows(),
            Head::Centroid { centroids } => centroids.ncols(),
            Head::Knn { embeddings, .. } => embeddings.ncols(),
        }
    }

    /// Unnormalised class scores, [N, K].
    pub fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        match self {
            Head::Logistic {
                scaler,
                weights,
                intercept,
            } => scaler.transform(x).dot(weights) + intercept,
            Head::Centroid { centroids } => normalized(x).dot(&centroids.t()) * CENTROID_SCALE,
            Head::Knn {
                embeddings,
                labels,
                k,
                classes,
            } => {
                let similarities = normalized(x).dot(&embeddings.t());
                let mut logits = Array2::zeros((x.nrows(), *classes));
                for (row, mut out) in similarities.rows().into_iter().zip(logits.rows_mut()) {
                    let mut order: Vec<usize> = (0..row.len()).collect();
                    let k = (*k).min(order.len());
                    if k == 0 {
                        continue;
                    }
                    order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                    let mut votes = vec![0.0f32; *classes];
                    for &i in &order[..k] {
                        votes[labels[i]] += 1.0;
                    }
                    // Smoothed vote shares, in log space like the other heads' logits.
                    for (o, v) in out.iter_mut().zip(votes) {
                        *o = ((v + 1.0 / *classes as f32) / (k as f32 + 1.0)).ln();
                    }
                }
                logits
            }
        }
    }

    /// Class probabilities, [N, K].
    pub fn probabilities(&self, x: ArrayView2<f32>, temperature: f32) -> Array2<f32> {
        softmax(self.logits(x), temperature)
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
    fn knn_and_centroid_vote() {
        let train = array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0]];
        let knn = Head::Knn {
            embeddings: normalized(train.view()),
            labels: vec![0, 0, 1],
            k: 1,
            classes: 2,
        };
        let p = knn.probabilities(array![[0.1f32, 1.0], [1.0, 0.05]].view(), 1.0);
        assert!(p[[0, 1]] > 0.5 && p[[1, 0]] > 0.5);
        let centroid = Head::Centroid {
            centroids: normalized(array![[1.0f32, 0.0], [0.0, 1.0]].view()),
        };
        assert_eq!(
            crate::metrics::argmax(
                centroid
                    .logits(array![[0.2f32, 0.9]].view())
                    .row(0)
                    .as_slice()
                    .unwrap()
            ),
            1
        );
    }
}
