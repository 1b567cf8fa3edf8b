//! The Gaussian naive Bayes head, fitted by linfa-bayes: per class, a mean and a variance per feature and a
//! prior. Cheap to fit, and its statistics can be updated with new examples without the old ones.

use std::collections::HashMap;

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, FitWith};
use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Data, Ix2};
use serde::Deserialize;

use super::cv::Estimator;
use super::{
    ClassScores, ClassWeight, Head, HeadModel, Labelled, NewExamples, StoredArray, StoredArrays,
    predict_top_class,
};
use crate::error::{Error, Result};
use crate::onnx::builder::GraphBuilder;

/// Per class (rows): feature means and variances \[K, D\], log prior \[K\] and the examples it was fitted on \[K\].
/// A class without examples has mean 0, variance 1 and a prohibitive prior.
#[derive(Debug, Clone, PartialEq)]
pub struct NaiveBayes {
    pub means: Array2<f32>,
    pub variances: Array2<f32>,
    pub log_priors: Array1<f32>,
    pub counts: Vec<usize>,
}

/// The log prior of a class without examples: it is never predicted.
const ABSENT: f32 = -1e4;

impl NaiveBayes {
    pub(crate) fn read(arrays: &dyn StoredArrays) -> std::result::Result<Self, String> {
        let model = NaiveBayes {
            means: arrays.matrix("nb_means")?,
            variances: arrays.matrix("nb_variances")?,
            log_priors: arrays.vector("nb_log_priors")?,
            counts: arrays.indices("nb_counts")?,
        };
        let k = model.means.nrows();
        let fits = model.variances.dim() == model.means.dim()
            && model.log_priors.len() == k
            && model.counts.len() == k
            && model.variances.iter().all(|v| v.is_finite() && *v > 0.0);
        match fits {
            true => Ok(model),
            false => Err("the head's arrays do not fit together".into()),
        }
    }

    /// The model with its classes renumbered: old class `c` becomes `mapping[c]` of `classes` (new classes get
    /// no examples).
    pub(crate) fn with_classes(&self, mapping: &[usize], classes: usize) -> NaiveBayes {
        let d = self.dim();
        let mut out = NaiveBayes {
            means: Array2::zeros((classes, d)),
            variances: Array2::ones((classes, d)),
            log_priors: Array1::from_elem(classes, ABSENT),
            counts: vec![0; classes],
        };
        for (old, &new) in mapping.iter().enumerate() {
            out.means.row_mut(new).assign(&self.means.row(old));
            out.variances.row_mut(new).assign(&self.variances.row(old));
            out.log_priors[new] = self.log_priors[old];
            out.counts[new] = self.counts[old];
        }
        out
    }

    /// Equal priors for every class with examples (what class weights `balanced` give).
    pub(crate) fn balance_priors(&mut self) {
        let present = self.counts.iter().filter(|&&c| c > 0).count().max(1);
        for (prior, &count) in self.log_priors.iter_mut().zip(&self.counts) {
            *prior = if count > 0 {
                -(present as f32).ln()
            } else {
                ABSENT
            };
        }
    }

    /// Per class: log prior − ½·Σⱼ ln(2π·σⱼ²), the part of the joint log-likelihood that does not depend on x.
    pub fn offsets(&self) -> Array1<f32> {
        let mut offsets = self.log_priors.clone();
        for (offset, variances) in offsets.iter_mut().zip(self.variances.rows()) {
            let log_norm: f64 = variances
                .iter()
                .map(|&v| (2.0 * std::f64::consts::PI * f64::from(v)).ln())
                .sum();
            *offset -= (0.5 * log_norm) as f32;
        }
        offsets
    }
}

impl HeadModel for NaiveBayes {
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)> {
        vec![
            ("nb_means", StoredArray::Matrix(&self.means)),
            ("nb_variances", StoredArray::Matrix(&self.variances)),
            ("nb_log_priors", StoredArray::Vector(&self.log_priors)),
            ("nb_counts", StoredArray::Indices(&self.counts)),
        ]
    }

    /// The scores as [`ClassScores::scores`] computes them: offset − ½·Σⱼ (xⱼ − μⱼ)² / σⱼ², the differences taken
    /// per class ([N, K, D]) rather than expanded, which would cancel in float32.
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String> {
        let (k, d) = (self.means.nrows() as i64, self.means.ncols() as i64);
        let shape = graph.int64s("rows_by_one", &[3], &[-1, 1, d]);
        let rows = graph.node("Reshape", &[embedding, &shape], |n| n);
        let means = graph.floats(
            "nb_means",
            &[k, d],
            &self.means.iter().copied().collect::<Vec<_>>(),
        );
        let inverse: Vec<f32> = self.variances.iter().map(|v| 1.0 / v).collect();
        let inverse = graph.floats("nb_inverse_variances", &[k, d], &inverse);
        let difference = graph.node("Sub", &[&rows, &means], |n| n);
        let squared = graph.node("Mul", &[&difference, &difference], |n| n);
        let scaled = graph.node("Mul", &[&squared, &inverse], |n| n);
        let distance = graph.reduce("ReduceSum", &scaled, &[2], false);
        let half = graph.floats("minus_half", &[], &[-0.5]);
        let halved = graph.node("Mul", &[&distance, &half], |n| n);
        let offsets = graph.floats("nb_offsets", &[k], &self.offsets().to_vec());
        Ok(graph.node("Add", &[&halved, &offsets], |n| n))
    }

    /// The statistics updated with the new examples (linfa-bayes's incremental fit).
    fn with_examples(&self, examples: &NewExamples) -> Option<Result<Head>> {
        let update = || -> Result<Head> {
            let earlier = self.with_classes(examples.old_to_new, examples.classes);
            let labels = ndarray::Array1::from(examples.labels.to_vec());
            let mut updated = NaiveBayesParams::new()
                .classes(examples.classes)
                .check()?
                .fit_with(Some(&earlier), &DatasetBase::new(examples.x, labels.view()))?;
            if examples.class_weight == ClassWeight::Balanced {
                updated.balance_priors();
            }
            Ok(Head::GaussianNb(updated))
        };
        Some(update())
    }
}

impl ClassScores for NaiveBayes {
    fn classes(&self) -> usize {
        self.means.nrows()
    }

    fn dim(&self) -> usize {
        self.means.ncols()
    }

    /// The joint log-likelihood: offset − ½·Σⱼ (xⱼ − μⱼ)² / σⱼ².
    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(x.ncols(), self.dim(), "embedding size");
        let offsets = self.offsets();
        let inverse = self.variances.mapv(|v| 1.0 / v);
        let mut scores = Array2::zeros((x.nrows(), self.classes()));
        for (row, mut out) in x.rows().into_iter().zip(scores.rows_mut()) {
            for (c, score) in out.iter_mut().enumerate() {
                let distance: f32 = row
                    .iter()
                    .zip(self.means.row(c))
                    .zip(inverse.row(c))
                    .map(|((&x, &m), &inv)| (x - m) * (x - m) * inv)
                    .sum();
                *score = offsets[c] - 0.5 * distance;
            }
        }
        scores
    }
}

predict_top_class!(NaiveBayes);

/// Checked naive Bayes parameters; see [`NaiveBayesParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct NaiveBayesValidParams {
    var_smoothing: f64,
    classes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NaiveBayesParams(NaiveBayesValidParams);

impl Default for NaiveBayesParams {
    fn default() -> Self {
        NaiveBayesParams(NaiveBayesValidParams {
            var_smoothing: 1e-9,
            classes: None,
        })
    }
}

impl NaiveBayesParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fraction of the largest feature variance added to every variance, for stability (scikit-learn's
    /// and linfa-bayes's `var_smoothing`).
    pub fn var_smoothing(mut self, fraction: f64) -> Self {
        self.0.var_smoothing = fraction;
        self
    }

    /// The class count, when some classes may have no examples in the data.
    pub fn classes(mut self, classes: usize) -> Self {
        self.0.classes = Some(classes);
        self
    }
}

impl ParamGuard for NaiveBayesParams {
    type Checked = NaiveBayesValidParams;
    type Error = Error;

    fn check_ref(&self) -> Result<&NaiveBayesValidParams> {
        if !(self.0.var_smoothing.is_finite() && self.0.var_smoothing >= 0.0) {
            return Err(Error::parameter(
                "var_smoothing",
                "must be finite and not negative",
            ));
        }
        if self.0.classes == Some(0) {
            return Err(Error::parameter("classes", "must be at least 1"));
        }
        Ok(&self.0)
    }

    fn check(self) -> Result<NaiveBayesValidParams> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// linfa-bayes's fitted model as its serde form spells it (its fields are private; the version is pinned).
#[derive(Deserialize)]
struct Fitted {
    class_info: HashMap<usize, ClassInfo>,
}

#[derive(Deserialize)]
struct ClassInfo {
    class_count: usize,
    theta: Vector,
    sigma: Vector,
}

/// ndarray's serde form of a vector.
#[derive(Deserialize)]
struct Vector {
    data: Vec<f64>,
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, Error> for NaiveBayesValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = NaiveBayes;

    /// linfa-bayes in f64. Example weights set the priors (a class's share of the total weight); the means and
    /// variances are unweighted.
    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<NaiveBayes> {
        self.fit_with(None, dataset)
    }
}

/// Incremental fitting, as linfa-bayes does it: the model of the examples `previous` was fitted on and of
/// `dataset`'s, without the former. The priors are then the classes' shares of all the examples (the weights of
/// the earlier ones are not known).
impl<'a, D, T> FitWith<'a, ArrayBase<D, Ix2>, T, Error> for NaiveBayesValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type ObjectIn = Option<&'a NaiveBayes>;
    type ObjectOut = NaiveBayes;

    fn fit_with(
        &self,
        previous: Option<&'a NaiveBayes>,
        dataset: &'a DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<NaiveBayes> {
        let classes = match (self.classes, previous) {
            (Some(k), Some(p)) if k < p.classes() => {
                return Err(Error::parameter(
                    "classes",
                    format!("is {k}, fewer than the {} the model has", p.classes()),
                ));
            }
            (None, Some(p)) => Some(p.classes()),
            (classes, _) => classes,
        };
        let data = Labelled::check(dataset, classes)?;
        if let Some(p) = previous
            && p.dim() != data.x.ncols()
        {
            return Err(Error::TrainingData(format!(
                "the model has {} features, the data {}",
                p.dim(),
                data.x.ncols()
            )));
        }
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::HeadFit {
            head: "gaussian-nb",
            source,
        };
        let x = data.x.mapv(f64::from);
        let y = data.y.to_owned();
        let earlier = previous.map(to_linfa).transpose()?;
        let fitted = linfa_bayes::GaussianNb::params()
            .var_smoothing(self.var_smoothing)
            .check()
            .map_err(|e| failed(Box::new(e)))?
            .fit_with(earlier, &DatasetBase::new(x.view(), y.view()))
            .map_err(|e| failed(Box::new(e)))?;
        let fitted: Fitted = serde_json::to_value(&fitted)
            .and_then(serde_json::from_value)
            .map_err(|e| failed(format!("reading linfa-bayes's model: {e}").into()))?;
        let (k, d) = (data.classes, data.x.ncols());
        // Weighted examples per class: this data's weights; earlier examples count one each.
        let mut weight = vec![0.0f64; k];
        for (i, &c) in data.y.iter().enumerate() {
            weight[c] += data.weights.map_or(1.0, |w| f64::from(w[i]));
        }
        if let Some(p) = previous {
            for (w, &count) in weight.iter_mut().zip(&p.counts) {
                *w += count as f64;
            }
        }
        let total: f64 = weight.iter().sum();
        let mut model = NaiveBayes {
            means: Array2::zeros((k, d)),
            variances: Array2::ones((k, d)),
            log_priors: Array1::from_elem(k, ABSENT),
            counts: vec![0; k],
        };
        for (class, info) in fitted.class_info {
            if class >= k || info.theta.data.len() != d || info.sigma.data.len() != d {
                return Err(failed("linfa-bayes's model does not fit the data".into()));
            }
            model.means.row_mut(class).assign(&Array1::from_iter(
                info.theta.data.iter().map(|&v| v as f32),
            ));
            // A feature constant in every class has variance 0 even after smoothing: keep it finite.
            model.variances.row_mut(class).assign(&Array1::from_iter(
                info.sigma
                    .data
                    .iter()
                    .map(|&v| (v as f32).max(f32::MIN_POSITIVE)),
            ));
            model.counts[class] = info.class_count;
            if weight[class] > 0.0 {
                model.log_priors[class] = (weight[class] / total).ln() as f32;
            }
        }
        Ok(model)
    }
}

/// Our model as linfa-bayes's, through its serde form (classes without examples left out).
fn to_linfa(model: &NaiveBayes) -> Result<linfa_bayes::GaussianNb<f64, usize>> {
    let total: usize = model.counts.iter().sum();
    let vector = |row: ndarray::ArrayView1<f32>| serde_json::json!({"v": 1, "dim": [row.len()], "data": row.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()});
    let class_info: serde_json::Map<String, serde_json::Value> = (0..model.classes())
        .filter(|&c| model.counts[c] > 0)
        .map(|c| {
            (
                c.to_string(),
                serde_json::json!({
                    "class_count": model.counts[c],
                    "prior": model.counts[c] as f64 / total.max(1) as f64,
                    "theta": vector(model.means.row(c)),
                    "sigma": vector(model.variances.row(c)),
                }),
            )
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "class_info": class_info })).map_err(|e| {
        Error::HeadFit {
            head: "gaussian-nb",
            source: format!("giving linfa-bayes the model: {e}").into(),
        }
    })
}

impl Estimator for NaiveBayesValidParams {
    type Model = NaiveBayes;
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use linfa_bayes::NaiveBayes as _;
    use ndarray::array;

    #[test]
    fn scores_are_linfa_bayes_joint_log_likelihood() {
        let x = array![
            [-2.0f32, -1.0, 0.5],
            [-1.0, -1.0, 0.2],
            [-1.0, -2.0, 0.1],
            [1.0, 1.0, 0.4],
            [1.0, 2.0, 0.3],
            [2.0, 1.0, 0.9]
        ];
        let y = array![0usize, 0, 0, 1, 1, 1];
        let ours = NaiveBayesParams::new()
            .fit(&DatasetBase::new(x.view(), y.view()))
            .unwrap();
        let x64 = x.mapv(f64::from);
        let reference = linfa_bayes::GaussianNb::params()
            .fit(&DatasetBase::new(x64.view(), y.view()))
            .unwrap();
        let jll = reference.joint_log_likelihood(x64.view());
        let scores = ours.scores(x.view());
        for c in 0..2 {
            for (i, expected) in jll[&c].iter().enumerate() {
                let got = f64::from(scores[[i, c]]);
                assert!(
                    (got - expected).abs() < 1e-3 * expected.abs().max(1.0),
                    "{got} vs {expected}"
                );
            }
        }
        assert_eq!(ours.predict(&x), y);
        assert_eq!(ours.counts, [3, 3]);
    }

    #[test]
    fn weights_set_the_priors_and_absent_classes_stay_out() {
        let x = array![[0.0f32], [0.1], [1.0], [1.1]];
        let y = array![0usize, 0, 1, 1];
        let weighted =
            DatasetBase::new(x.view(), y.view()).with_weights(array![3.0, 3.0, 1.0, 1.0]);
        let model = NaiveBayesParams::new().classes(3).fit(&weighted).unwrap();
        let priors = model.log_priors.mapv(f32::exp);
        assert!((priors[0] - 0.75).abs() < 1e-6 && (priors[1] - 0.25).abs() < 1e-6);
        assert!(model.predict(&x).iter().all(|&c| c < 2));
        assert!(NaiveBayesParams::new().var_smoothing(-1.0).check().is_err());
    }

    #[test]
    fn fitting_in_two_batches_is_fitting_once() {
        let mut rng = crate::rng::SplitMix64(8);
        let x = Array2::from_shape_fn((60, 3), |(i, j)| {
            (rng.next_u64() % 1000) as f32 / 100.0 + (i % 3 * j) as f32
        });
        let y: Array1<usize> = (0..60).map(|i| i % 3).collect();
        let params = NaiveBayesParams::new().check().unwrap();
        let once = params.fit(&DatasetBase::new(x.view(), y.view())).unwrap();
        // The first batch has two of the three classes; the second brings the third.
        let first: Vec<usize> = (0..30).filter(|i| y[*i] != 2).collect();
        let second: Vec<usize> = (0..60).filter(|i| !first.contains(i)).collect();
        let part = |rows: &[usize]| {
            (
                x.select(ndarray::Axis(0), rows),
                rows.iter().map(|&i| y[i]).collect::<Array1<usize>>(),
            )
        };
        let (x1, y1) = part(&first);
        let (x2, y2) = part(&second);
        let earlier = params.fit(&DatasetBase::new(x1.view(), y1.view())).unwrap();
        let both = NaiveBayesParams::new()
            .classes(3)
            .check()
            .unwrap()
            .fit_with(Some(&earlier), &DatasetBase::new(x2.view(), y2.view()))
            .unwrap();
        assert_eq!(both.counts, once.counts);
        let close = |a: &Array2<f32>, b: &Array2<f32>| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() <= 1e-4 * q.abs().max(1.0))
        };
        assert!(close(&both.means, &once.means) && close(&both.variances, &once.variances));
        assert!(
            (&both.log_priors - &once.log_priors)
                .iter()
                .all(|v| v.abs() < 1e-6)
        );
        assert_eq!(both.predict(&x), once.predict(&x));
    }
}
