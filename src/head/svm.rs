//! The linear-SVM head: linfa-svm's SMO solver with a linear kernel on standardised embeddings, one machine for
//! two classes and one per class against the rest for more. The solver keeps an N×N kernel matrix, hence
//! [`MAX_SVM_SAMPLES`].

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Data, Ix2};

use super::cv::Estimator;
use super::logistic::{LinearModel, present_classes};
use super::{Labelled, Scaler};
use crate::error::{Error, Result};

/// The most examples the linear SVM trains on: its N×N kernel matrix in f64 is 200 MB at this size, and the
/// solver's time grows faster than N.
pub const MAX_SVM_SAMPLES: usize = 5000;

/// Checked linear-SVM parameters; see [`LinearSvmParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSvmValidParams {
    c: f64,
    tolerance: f64,
    classes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinearSvmParams(LinearSvmValidParams);

impl Default for LinearSvmParams {
    fn default() -> Self {
        LinearSvmParams(LinearSvmValidParams {
            c: 1.0,
            tolerance: 1e-3,
            classes: None,
        })
    }
}

impl LinearSvmParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// The penalty on margin violations, as libsvm's and scikit-learn's C.
    pub fn c(mut self, c: f64) -> Self {
        self.0.c = c;
        self
    }

    /// The solver's stopping tolerance (libsvm's `eps`).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.0.tolerance = tolerance;
        self
    }

    /// The class count, when some classes may have no examples in the data.
    pub fn classes(mut self, classes: usize) -> Self {
        self.0.classes = Some(classes);
        self
    }
}

impl ParamGuard for LinearSvmParams {
    type Checked = LinearSvmValidParams;
    type Error = Error;

    fn check_ref(&self) -> Result<&LinearSvmValidParams> {
        let p = &self.0;
        if !(p.c.is_finite() && p.c > 0.0) {
            return Err(Error::parameter("c", "must be positive and finite"));
        }
        if !(p.tolerance.is_finite() && p.tolerance > 0.0) {
            return Err(Error::parameter("tolerance", "must be positive and finite"));
        }
        if p.classes == Some(0) {
            return Err(Error::parameter("classes", "must be at least 1"));
        }
        Ok(p)
    }

    fn check(self) -> Result<LinearSvmValidParams> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl LinearSvmValidParams {
    pub fn c(&self) -> f64 {
        self.c
    }

    /// One machine separating `positive` rows from the rest; returns its weights and intercept. Example
    /// weights scale each side's C by the side's mean weight (linfa-svm takes one C per side).
    fn machine(
        &self,
        x: ArrayView2<f64>,
        positive: &[bool],
        weights: Option<&[f32]>,
    ) -> Result<(Array1<f64>, f64)> {
        let mean_weight = |side: bool| -> f64 {
            let Some(weights) = weights else { return 1.0 };
            let (sum, count) = positive
                .iter()
                .zip(weights)
                .filter(|(p, _)| **p == side)
                .fold((0.0, 0usize), |(s, n), (_, &w)| (s + f64::from(w), n + 1));
            sum / count.max(1) as f64
        };
        let targets = Array1::from(positive.to_vec());
        let svm = Svm::<f64, bool>::params()
            .linear_kernel()
            .pos_neg_weights(self.c * mean_weight(true), self.c * mean_weight(false))
            .eps(self.tolerance)
            .fit(&DatasetBase::new(x, targets.view()))
            .map_err(|e| Error::HeadFit {
                head: "linear-svm",
                source: Box::new(e),
            })?;
        // The decision is w·x − ρ; with a linear kernel, w's j-th value is the decision's slope along axis j.
        let d = x.ncols();
        let mut axis = Array1::zeros(d);
        let weights = (0..d)
            .map(|j| {
                axis[j] = 1.0;
                let slope = svm.weighted_sum(&axis);
                axis[j] = 0.0;
                slope
            })
            .collect();
        Ok((weights, -svm.rho))
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, Error> for LinearSvmValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = LinearModel;

    /// Scores are the machines' decision values; for two classes, ±half the one machine's.
    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<LinearModel> {
        let data = Labelled::check(dataset, self.classes)?;
        let n = data.x.nrows();
        if n > MAX_SVM_SAMPLES {
            return Err(Error::TrainingData(format!(
                "the linear-svm head trains on at most {MAX_SVM_SAMPLES} examples (this data has {n}); \
                 the logistic head has no such limit"
            )));
        }
        let scaler = Scaler::fit(data.x);
        let x = scaler.transform(data.x).mapv(f64::from);
        let (present, compact) = present_classes(&data);
        if present.len() < 2 {
            return Err(Error::TrainingData(
                "the linear-svm head needs examples of at least two classes".into(),
            ));
        }
        let d = x.ncols();
        let mut params = Array2::zeros((d + 1, present.len()));
        if present.len() == 2 {
            let positive: Vec<bool> = compact.iter().map(|&c| c == 1).collect();
            let (w, b) = self.machine(x.view(), &positive, data.weights)?;
            for (column, sign) in [(0, -0.5), (1, 0.5)] {
                params
                    .column_mut(column)
                    .slice_mut(ndarray::s![..d])
                    .assign(&(&w * sign));
                params[[d, column]] = b * sign;
            }
        } else {
            for j in 0..present.len() {
                let positive: Vec<bool> = compact.iter().map(|&c| c == j).collect();
                let (w, b) = self.machine(x.view(), &positive, data.weights)?;
                params.column_mut(j).slice_mut(ndarray::s![..d]).assign(&w);
                params[[d, j]] = b;
            }
        }
        Ok(LinearModel::spread(
            scaler,
            params.view(),
            &present,
            data.classes,
        ))
    }
}

impl Estimator for LinearSvmValidParams {
    type Model = LinearModel;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::ClassScores;
    use crate::rng::SplitMix64;
    use linfa::traits::Predict;

    #[test]
    fn separates_two_and_three_classes_like_linfa_svm() {
        for k in [2usize, 3] {
            let mut rng = SplitMix64(k as u64);
            let n = 30 * k;
            let y: Array1<usize> = (0..n).map(|i| i % k).collect();
            let x = Array2::from_shape_fn((n, 4), |(i, j)| {
                (rng.next_u64() % 1000) as f32 / 1000.0 + if j == y[i] { 2.0 } else { 0.0 }
            });
            let model = LinearSvmParams::new()
                .fit(&DatasetBase::new(x.view(), y.view()))
                .unwrap();
            assert_eq!(model.predict(&x), y, "K = {k}");
            if k == 2 {
                // The same machine straight from linfa-svm decides the same way.
                let scaled = model.scaler.transform(x.view()).mapv(f64::from);
                let targets = y.mapv(|c| c == 1);
                let svm = Svm::<f64, bool>::params()
                    .linear_kernel()
                    .pos_neg_weights(1.0, 1.0)
                    .eps(1e-3)
                    .fit(&DatasetBase::new(scaled.view(), targets.view()))
                    .unwrap();
                let scores = model.scores(x.view());
                for (row, decision) in scores.rows().into_iter().zip(svm.predict(&scaled)) {
                    assert_eq!(row[1] > row[0], decision);
                }
            }
        }
        assert!(LinearSvmParams::new().c(-1.0).check().is_err());
    }
}
