//! The logistic head: multinomial logistic regression on standardised embeddings, scikit-learn's objective.
//! Our L-BFGS ([`lbfgs`]) is the default solver; linfa-logistic's `MultiLogisticRegression` solves the same
//! objective as a reference (much slower: see the README's "Training a head").

pub(crate) mod lbfgs;

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::Fit;
use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Data, Ix2, s};
use serde::{Deserialize, Serialize};

use super::cv::Estimator;
use super::{
    ClassScores, Embeddings, HeadModel, Labelled, Scaler, StoredArray, StoredArrays,
    predict_top_class,
};
use crate::error::{Error, Result};
use crate::onnx::builder::GraphBuilder;

/// A linear model on standardised embeddings: scores = ((x − mean) / scale) · weights + intercept. The
/// logistic and linear-SVM heads both fit one.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub scaler: Scaler,
    /// [D, K].
    pub weights: Array2<f32>,
    /// \[K\].
    pub intercept: Array1<f32>,
}

impl LinearModel {
    pub(crate) fn read(arrays: &dyn StoredArrays) -> std::result::Result<Self, String> {
        let model = LinearModel {
            scaler: Scaler {
                mean: arrays.vector("scaler_mean")?,
                scale: arrays.vector("scaler_scale")?,
            },
            weights: arrays.matrix("weights")?,
            intercept: arrays.vector("intercept")?,
        };
        let d = model.weights.nrows();
        let fits = model.scaler.mean.len() == d
            && model.scaler.scale.len() == d
            && model.intercept.len() == model.weights.ncols();
        match fits {
            true => Ok(model),
            false => Err("the head's arrays do not fit together".into()),
        }
    }
}

impl HeadModel for LinearModel {
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)> {
        vec![
            ("scaler_mean", StoredArray::Vector(&self.scaler.mean)),
            ("scaler_scale", StoredArray::Vector(&self.scaler.scale)),
            ("weights", StoredArray::Matrix(&self.weights)),
            ("intercept", StoredArray::Vector(&self.intercept)),
        ]
    }

    /// (x − mean) / scale · W + b.
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String> {
        let (d, k) = (self.weights.nrows() as i64, self.weights.ncols() as i64);
        let mean = graph.floats("scaler_mean", &[d], &self.scaler.mean.to_vec());
        let scale = graph.floats("scaler_scale", &[d], &self.scaler.scale.to_vec());
        let w = graph.floats(
            "weights",
            &[d, k],
            &self.weights.iter().copied().collect::<Vec<_>>(),
        );
        let b = graph.floats("intercept", &[k], &self.intercept.to_vec());
        let centred = graph.node("Sub", &[embedding, &mean], |n| n);
        let standard = graph.node("Div", &[&centred, &scale], |n| n);
        let product = graph.node("MatMul", &[&standard, &w], |n| n);
        Ok(graph.node("Add", &[&product, &b], |n| n))
    }
}

impl ClassScores for LinearModel {
    fn classes(&self) -> usize {
        self.intercept.len()
    }

    fn dim(&self) -> usize {
        self.weights.nrows()
    }

    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.scaler.transform(x).dot(&self.weights) + &self.intercept
    }
}

predict_top_class!(LinearModel);

impl LinearModel {
    /// A model over `classes` classes from one fitted for the `present` ones only (`params` [D + 1, present],
    /// intercept last): an absent class gets a prohibitive intercept, so it is never predicted.
    pub(crate) fn spread(
        scaler: Scaler,
        params: ArrayView2<f64>,
        present: &[usize],
        classes: usize,
    ) -> Self {
        let d = params.nrows() - 1;
        let mut weights = Array2::zeros((d, classes));
        let mut intercept = Array1::from_elem(classes, -1e4f32);
        for (j, &class) in present.iter().enumerate() {
            weights
                .column_mut(class)
                .assign(&params.slice(s![..d, j]).mapv(|v| v as f32));
            intercept[class] = params[[d, j]] as f32;
        }
        LinearModel {
            scaler,
            weights,
            intercept,
        }
    }
}

/// The classes with examples, and each label renumbered among them.
pub(crate) fn present_classes(data: &Labelled) -> (Vec<usize>, Vec<usize>) {
    let counts = data.counts();
    let present: Vec<usize> = (0..data.classes).filter(|&c| counts[c] > 0).collect();
    let mut index = vec![0; data.classes];
    present.iter().enumerate().for_each(|(i, &c)| index[c] = i);
    let compact = data.y.iter().map(|&c| index[c]).collect();
    (present, compact)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// headstart's L-BFGS: one f32 pass over the rows per evaluation, warm-started along the grid.
    #[default]
    Lbfgs,
    /// linfa-logistic's `MultiLogisticRegression` (f64, unweighted): the reference.
    Linfa,
}

impl std::str::FromStr for Solver {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "lbfgs" => Ok(Solver::Lbfgs),
            "linfa" => Ok(Solver::Linfa),
            other => Err(Error::parameter(
                "solver",
                format!("'{other}' is not one of lbfgs, linfa"),
            )),
        }
    }
}

/// Checked logistic parameters; see [`LogisticParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticValidParams {
    c: f64,
    max_iterations: u64,
    tolerance: f64,
    threads: usize,
    solver: Solver,
    classes: Option<usize>,
}

/// Logistic regression parameters, checked by linfa's `ParamGuard`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticParams(LogisticValidParams);

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams(LogisticValidParams {
            c: 1.0,
            max_iterations: 100,
            tolerance: 1e-4,
            threads: 1,
            solver: Solver::Lbfgs,
            classes: None,
        })
    }
}

impl LogisticParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inverse regularisation strength, as scikit-learn's C.
    pub fn c(mut self, c: f64) -> Self {
        self.0.c = c;
        self
    }

    /// Solver iterations at most.
    pub fn max_iterations(mut self, iterations: u64) -> Self {
        self.0.max_iterations = iterations;
        self
    }

    /// Stop when every gradient component is at most this (scikit-learn's `tol`).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.0.tolerance = tolerance;
        self
    }

    /// Threads sharing each pass over the rows (L-BFGS).
    pub fn threads(mut self, threads: usize) -> Self {
        self.0.threads = threads;
        self
    }

    pub fn solver(mut self, solver: Solver) -> Self {
        self.0.solver = solver;
        self
    }

    /// The class count, when some classes may have no examples in the data (they are never predicted).
    pub fn classes(mut self, classes: usize) -> Self {
        self.0.classes = Some(classes);
        self
    }
}

impl ParamGuard for LogisticParams {
    type Checked = LogisticValidParams;
    type Error = Error;

    fn check_ref(&self) -> Result<&LogisticValidParams> {
        let p = &self.0;
        if !(p.c.is_finite() && p.c > 0.0) {
            return Err(Error::parameter("c", "must be positive and finite"));
        }
        if p.max_iterations == 0 {
            return Err(Error::parameter("max_iterations", "must be at least 1"));
        }
        if !(p.tolerance.is_finite() && p.tolerance > 0.0) {
            return Err(Error::parameter("tolerance", "must be positive and finite"));
        }
        if p.threads == 0 {
            return Err(Error::parameter("threads", "must be at least 1"));
        }
        if p.classes == Some(0) {
            return Err(Error::parameter("classes", "must be at least 1"));
        }
        Ok(p)
    }

    fn check(self) -> Result<LogisticValidParams> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// How the L-BFGS solver stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Convergence {
    pub iterations: u64,
    pub converged: bool,
}

impl LogisticValidParams {
    pub fn c(&self) -> f64 {
        self.c
    }

    pub fn solver(&self) -> Solver {
        self.solver
    }

    /// The same parameters with another number of threads.
    pub(crate) fn with_threads(&self, threads: usize) -> Self {
        LogisticValidParams {
            threads: threads.max(1),
            ..self.clone()
        }
    }

    /// Fits with L-BFGS from `warm` (a previous fit's raw parameters on the same data); returns the model,
    /// the raw parameters and how the solver stopped.
    pub(crate) fn fit_lbfgs(
        &self,
        data: &Labelled,
        warm: Option<Array2<f64>>,
    ) -> (LinearModel, Array2<f64>, Convergence) {
        let scaler = Scaler::fit(data.x);
        let x = scaler.transform(data.x);
        self.fit_standardised(data, scaler, x.view(), warm)
    }

    /// [`Self::fit_lbfgs`] on `x`, the data already standardised by `scaler`.
    fn fit_standardised(
        &self,
        data: &Labelled,
        scaler: Scaler,
        x: ArrayView2<f32>,
        warm: Option<Array2<f64>>,
    ) -> (LinearModel, Array2<f64>, Convergence) {
        let (present, compact) = present_classes(data);
        let solver = lbfgs::SolverParams {
            c: self.c,
            max_iterations: self.max_iterations,
            tolerance: self.tolerance,
            threads: self.threads,
        };
        let fitted = lbfgs::fit(x, &compact, present.len(), data.weights, &solver, warm);
        let model = LinearModel::spread(scaler, fitted.params.view(), &present, data.classes);
        let convergence = Convergence {
            iterations: fitted.iterations,
            converged: fitted.converged,
        };
        (model, fitted.params, convergence)
    }

    /// linfa-logistic on the same objective: it sums the loss over examples, so its alpha is 1 / C.
    fn fit_linfa(&self, data: &Labelled) -> Result<LinearModel> {
        if data.weights.is_some_and(|w| w.iter().any(|&v| v != w[0])) {
            return Err(Error::parameter(
                "solver",
                "linfa-logistic takes no example weights (class_weight must be none)",
            ));
        }
        let scaler = Scaler::fit(data.x);
        let x = scaler.transform(data.x).mapv(f64::from);
        let (present, compact) = present_classes(data);
        if present.len() < 2 {
            return Err(Error::TrainingData(
                "linfa-logistic needs examples of at least two classes".into(),
            ));
        }
        let targets = Array1::from(compact);
        let fitted = linfa_logistic::MultiLogisticRegression::default()
            .alpha(1.0 / self.c)
            .max_iterations(self.max_iterations)
            .gradient_tolerance(self.tolerance)
            .fit(&DatasetBase::new(x.view(), targets.view()))
            .map_err(|e| Error::HeadFit {
                head: "logistic (linfa-logistic)",
                source: Box::new(e),
            })?;
        let d = x.ncols();
        let mut params = Array2::zeros((d + 1, present.len()));
        params.slice_mut(s![..d, ..]).assign(fitted.params());
        params.row_mut(d).assign(fitted.intercept());
        Ok(LinearModel::spread(
            scaler,
            params.view(),
            &present,
            data.classes,
        ))
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, Error> for LogisticValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = LinearModel;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<LinearModel> {
        let data = Labelled::check(dataset, self.classes)?;
        match self.solver {
            Solver::Lbfgs => Ok(self.fit_lbfgs(&data, None).0),
            Solver::Linfa => self.fit_linfa(&data),
        }
    }
}

impl Estimator for LogisticValidParams {
    type Model = LinearModel;

    /// L-BFGS starts each candidate from the previous one's solution (a grid of C in increasing order
    /// converges in far fewer iterations that way), on data standardised once.
    fn fit_each(candidates: &[Self], data: &Embeddings) -> Result<Vec<LinearModel>> {
        let mut warm: Option<Array2<f64>> = None;
        let mut models = Vec::with_capacity(candidates.len());
        let scaler = Scaler::fit(data.records.view());
        let standardised = scaler.transform(data.records.view());
        for candidate in candidates {
            let checked = Labelled::check(data, candidate.classes)?;
            let model = match candidate.solver {
                Solver::Lbfgs => {
                    let (model, params, _) = candidate.fit_standardised(
                        &checked,
                        scaler.clone(),
                        standardised.view(),
                        warm.take(),
                    );
                    warm = Some(params);
                    model
                }
                Solver::Linfa => candidate.fit_linfa(&checked)?,
            };
            models.push(model);
        }
        Ok(models)
    }
}

/// A view of owned embeddings as [`Embeddings`], for tests.
#[cfg(test)]
pub(crate) fn view<'a>(x: &'a Array2<f32>, y: &'a Array1<usize>) -> Embeddings<'a> {
    DatasetBase::new(x.view(), y.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::softmax;
    use crate::rng::SplitMix64;
    use linfa::traits::Predict;

    fn overlapping(k: usize, seed: u64) -> (Array2<f32>, Array1<usize>) {
        let mut rng = SplitMix64(seed);
        let mut noise = || (rng.next_u64() % 10_000) as f32 / 5_000.0 - 1.0;
        let n = 40 * k;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            noise() + if j == i % k { 0.8 } else { 0.0 }
        });
        (x, (0..n).map(|i| i % k).collect())
    }

    /// linfa-logistic, run to a tight tolerance, is the reference for the same objective.
    #[test]
    fn lbfgs_agrees_with_linfa_logistic_for_two_and_more_classes() {
        for k in [2, 3] {
            let (x, y) = overlapping(k, k as u64);
            let data = view(&x, &y);
            let params = LogisticParams::new().c(0.5).max_iterations(1000);
            let ours = params.clone().check().unwrap().fit(&data).unwrap();
            let reference = params
                .tolerance(1e-8)
                .solver(Solver::Linfa)
                .fit(&data)
                .unwrap();
            let (p, q) = (
                softmax(ours.scores(x.view()), 1.0),
                softmax(reference.scores(x.view()), 1.0),
            );
            let diff = (&p - &q).mapv(f32::abs).fold(0.0f32, |a, &b| a.max(b));
            // Both stop at a tolerance of the same convex problem.
            assert!(diff < 1e-3, "K = {k}: probabilities differ by up to {diff}");
            assert_eq!(
                ours.predict(&x),
                reference.predict(&x),
                "K = {k}: predicted classes differ"
            );
        }
    }

    #[test]
    fn weights_move_the_boundary_and_linfa_refuses_them() {
        // 90 examples of class 0, 10 of class 1, overlapping.
        let mut rng = SplitMix64(5);
        let mut noise = || (rng.next_u64() % 10_000) as f32 / 5_000.0 - 1.0;
        let y: Array1<usize> = (0..100).map(|i| (i >= 90) as usize).collect();
        let x = Array2::from_shape_fn((100, 2), |(i, j)| {
            noise() + if j == 0 && y[i] == 1 { 0.7 } else { 0.0 }
        });
        let balanced: Array1<f32> = y.mapv(|c| if c == 1 { 5.0 } else { 100.0 / 180.0 });
        let rare = |model: LinearModel| model.predict(&x).iter().filter(|&&c| c == 1).count();
        let plain = rare(LogisticParams::new().fit(&view(&x, &y)).unwrap());
        let weighted_data = view(&x, &y).with_weights(balanced);
        let weighted = rare(LogisticParams::new().fit(&weighted_data).unwrap());
        assert!(weighted > plain, "weighted {weighted}, unweighted {plain}");
        let err = LogisticParams::new()
            .solver(Solver::Linfa)
            .fit(&weighted_data)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no example weights"), "{err}");
    }

    #[test]
    fn an_absent_class_is_never_predicted_and_bad_parameters_are_refused() {
        let (x, y) = overlapping(2, 9);
        let model = LogisticParams::new().classes(3).fit(&view(&x, &y)).unwrap();
        assert_eq!(model.classes(), 3);
        assert!(model.predict(&x).iter().all(|&c| c < 2));
        for bad in [
            LogisticParams::new().c(0.0),
            LogisticParams::new().max_iterations(0),
            LogisticParams::new().threads(0),
        ] {
            assert!(matches!(bad.check(), Err(Error::InvalidParameter { .. })));
        }
    }
}
