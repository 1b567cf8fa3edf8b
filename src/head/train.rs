//! Training heads with the linear-probe protocol: stratified k-fold cross-validation picks the logistic
//! regularisation from a grid, the out-of-fold predictions calibrate the temperature, and the final head is
//! trained on everything. Deterministic for a given seed.

use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::logistic::{self, LogisticFit, LogisticParams};
use super::{Head, HeadKind, Scaler, fit_temperature, normalized};
use crate::error::{Error, Result};
use crate::metrics::argmax;
use crate::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    #[default]
    None,
    /// Every class weighs the same in the loss: an example's weight is N / (classes · its class's count), as
    /// scikit-learn's `class_weight="balanced"`.
    Balanced,
}

impl std::str::FromStr for ClassWeight {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(ClassWeight::None),
            "balanced" => Ok(ClassWeight::Balanced),
            other => Err(Error::parameter(
                "class_weight",
                format!("'{other}' is not one of none, balanced"),
            )),
        }
    }
}

/// Validated with [`TrainParams::check`] before training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub head: HeadKind,
    /// Cross-validation folds (at least 2).
    pub folds: usize,
    /// Inverse regularisation strengths C to try (scikit-learn's C).
    pub grid: Vec<f64>,
    pub class_weight: ClassWeight,
    pub seed: u64,
    /// Neighbours for `knn`.
    pub k: usize,
    /// L-BFGS iterations per fit.
    pub max_iterations: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            head: HeadKind::Logistic,
            folds: 5,
            grid: vec![0.001, 0.01, 0.1, 1.0, 10.0],
            class_weight: ClassWeight::None,
            seed: 42,
            k: 5,
            max_iterations: 100,
        }
    }
}

impl TrainParams {
    pub fn check(&self) -> Result<()> {
        if self.folds < 2 {
            return Err(Error::parameter("folds", "must be at least 2"));
        }
        if self.grid.is_empty() || self.grid.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(Error::parameter(
                "grid",
                "needs positive, finite values of C",
            ));
        }
        if self.k == 0 {
            return Err(Error::parameter("k", "must be at least 1"));
        }
        if self.max_iterations == 0 {
            return Err(Error::parameter("max_iterations", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub head: HeadKind,
    /// (C, mean cross-validated accuracy) per grid value (logistic only).
    pub cv: Vec<(f64, f64)>,
    pub chosen_c: Option<f64>,
    /// Out-of-fold accuracy of the chosen configuration.
    pub cv_accuracy: f64,
    pub folds: usize,
    pub temperature: f32,
    pub samples: usize,
    pub warnings: Vec<TrainWarning>,
    pub seconds: f64,
}

/// Something about a training run worth knowing that does not stop it.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainWarning {
    /// A class with no examples: it is never predicted.
    EmptyClass { class: String },
    /// A class with one example: its scores are unreliable.
    SingleExample { class: String },
    /// The chosen C beats every other value and is the grid's smallest (or largest): the best may lie beyond.
    GridEdge { chosen: f64, smallest: bool },
    /// The final logistic fit stopped at the iteration limit before converging.
    NotConverged { iterations: u64, c: f64 },
}

impl TrainWarning {
    /// The warning, with each setting it suggests changing named by `setting` (a field name such as
    /// `max_iterations`; the command line passes its flag instead).
    pub fn describe(&self, setting: impl Fn(&'static str) -> String) -> String {
        match self {
            TrainWarning::EmptyClass { class } => {
                format!("class '{class}' has no examples and will never be predicted")
            }
            TrainWarning::SingleExample { class } => {
                format!("class '{class}' has a single example: its scores are unreliable")
            }
            TrainWarning::GridEdge { chosen, smallest } => {
                let (end, beyond) = if *smallest {
                    ("smallest", "smaller")
                } else {
                    ("largest", "larger")
                };
                format!(
                    "the best C ({chosen}) is the {end} in the grid; a {} with {beyond} values may do better",
                    setting("grid")
                )
            }
            TrainWarning::NotConverged { iterations, c } => format!(
                "the logistic solver stopped at its limit of {iterations} iterations before converging (C = {c}); \
                 pass a larger {}",
                setting("max_iterations")
            ),
        }
    }
}

impl std::fmt::Display for TrainWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(str::to_string))
    }
}

/// As its sentence, so a report's JSON reads as before.
impl Serialize for TrainWarning {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Trains a head on embeddings `x` ([N, D]) with classes `y` (indices into `class_names`).
/// Returns the head, its temperature and a report.
pub fn train(
    x: ArrayView2<f32>,
    y: &[usize],
    class_names: &[String],
    params: &TrainParams,
) -> Result<(Head, TrainReport)> {
    params.check()?;
    let started = Instant::now();
    let k = class_names.len();
    check_data(x, y, k)?;
    let mut counts = vec![0usize; k];
    y.iter().for_each(|&c| counts[c] += 1);
    let present = counts.iter().filter(|&&c| c > 0).count();
    if present < 2 {
        let only = counts
            .iter()
            .position(|&c| c > 0)
            .map_or("none".to_string(), |c| format!("'{}'", class_names[c]));
        return Err(Error::Config(format!(
            "training needs examples of at least two classes; only {only} has any"
        )));
    }
    let mut warnings = Vec::new();
    for (c, &count) in counts.iter().enumerate() {
        match count {
            0 => warnings.push(TrainWarning::EmptyClass {
                class: class_names[c].clone(),
            }),
            1 => warnings.push(TrainWarning::SingleExample {
                class: class_names[c].clone(),
            }),
            _ => {}
        }
    }
    let folds = stratified_folds(y, params.folds, params.seed);

    let (cv, chosen_c, oof) = match params.head {
        HeadKind::Logistic => {
            let per_c = cross_validate(x, y, &folds, params.folds, k, |xt, yt, xv| {
                let scaler = Scaler::fit(xt.view());
                let xt = scaler.transform(xt.view());
                let xv = scaler.transform(xv);
                let mut warm: Option<Array2<f64>> = None;
                let mut out = Vec::new();
                for &c in &params.grid {
                    // Folds already run in parallel: one thread each.
                    let (weights, intercept, fitted) =
                        fit_logistic(xt.view(), &yt, k, c, params, 1, warm.take());
                    warm = Some(fitted.params);
                    out.push(xv.dot(&weights) + &intercept);
                }
                Ok(out)
            })?;
            let scored: Vec<(f64, f64)> = params
                .grid
                .iter()
                .zip(&per_c)
                .map(|(&c, logits)| (c, accuracy(logits.view(), y)))
                .collect();
            // Best accuracy; on a tie, the stronger regularisation (smaller C).
            let best = scored.iter().enumerate().fold(0, |best, (i, s)| {
                if s.1 > scored[best].1 + 1e-12 {
                    i
                } else {
                    best
                }
            });
            warnings.extend(grid_edge_warning(&scored, best));
            let oof = per_c
                .into_iter()
                .nth(best)
                .unwrap_or_else(|| Array2::zeros((y.len(), k)));
            (scored.clone(), Some(scored[best].0), oof)
        }
        HeadKind::Centroid | HeadKind::Knn => {
            let oof = cross_validate(x, y, &folds, params.folds, k, |xt, yt, xv| {
                let head = fit_simple(params.head, xt.view(), &yt, k, params.k);
                Ok(vec![head.logits(xv)])
            })?;
            (
                Vec::new(),
                None,
                oof.into_iter()
                    .next()
                    .unwrap_or_else(|| Array2::zeros((y.len(), k))),
            )
        }
    };
    let temperature = fit_temperature(oof.view(), y);
    let cv_accuracy = accuracy(oof.view(), y);

    let head = match params.head {
        HeadKind::Logistic => {
            let scaler = Scaler::fit(x);
            let xs = scaler.transform(x);
            let c = chosen_c.unwrap_or(1.0);
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let (weights, intercept, fitted) =
                fit_logistic(xs.view(), y, k, c, params, threads, None);
            if !fitted.converged {
                warnings.push(TrainWarning::NotConverged {
                    iterations: fitted.iterations,
                    c,
                });
            }
            Head::Logistic {
                scaler,
                weights,
                intercept,
            }
        }
        kind => fit_simple(kind, x, y, k, params.k),
    };
    let report = TrainReport {
        head: params.head,
        cv,
        chosen_c,
        cv_accuracy,
        folds: params.folds,
        temperature,
        samples: y.len(),
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((head, report))
}

fn check_data(x: ArrayView2<f32>, y: &[usize], k: usize) -> Result<()> {
    if x.nrows() != y.len() {
        return Err(Error::Config(format!(
            "{} embeddings but {} labels",
            x.nrows(),
            y.len()
        )));
    }
    if let Some((row, _)) = x
        .rows()
        .into_iter()
        .enumerate()
        .find(|(_, r)| r.iter().any(|v| !v.is_finite()))
    {
        return Err(Error::Config(format!(
            "embedding row {row} contains NaN or Inf"
        )));
    }
    if let Some(bad) = y.iter().find(|&&c| c >= k) {
        return Err(Error::Config(format!(
            "label {bad} is not a class index (there are {k} classes)"
        )));
    }
    Ok(())
}

/// Fold index per sample: each class is shuffled (seeded) and dealt round-robin, so every fold has about the
/// same class mix.
pub fn stratified_folds(y: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let k = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = SplitMix64(seed);
    let mut fold_of = vec![0; y.len()];
    let mut offset = 0;
    for class in 0..k {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut members);
        for (j, &i) in members.iter().enumerate() {
            fold_of[i] = (j + offset) % folds;
        }
        // Continue the deal where the last class stopped, so small classes do not all land in fold 0.
        offset = (offset + members.len()) % folds;
    }
    fold_of
}

/// A fold's validation rows and the logits each output gave them.
type FoldLogits = (Vec<usize>, Vec<Array2<f32>>);

/// Runs `fit` on each fold (in parallel) and assembles its out-of-fold logits, one matrix per output.
fn cross_validate<F>(
    x: ArrayView2<f32>,
    y: &[usize],
    fold_of: &[usize],
    folds: usize,
    k: usize,
    fit: F,
) -> Result<Vec<Array2<f32>>>
where
    F: Fn(Array2<f32>, Vec<usize>, ArrayView2<f32>) -> Result<Vec<Array2<f32>>> + Sync,
{
    let results: Vec<Result<FoldLogits>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..folds)
            .map(|fold| {
                let fit = &fit;
                scope.spawn(move || {
                    let train: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] != fold).collect();
                    let val: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] == fold).collect();
                    if val.is_empty() || train.is_empty() {
                        return Ok((val, Vec::new()));
                    }
                    let xt = x.select(Axis(0), &train);
                    let yt: Vec<usize> = train.iter().map(|&i| y[i]).collect();
                    let xv = x.select(Axis(0), &val);
                    Ok((val, fit(xt, yt, xv.view())?))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Config("a cross-validation fold failed".into())))
            })
            .collect()
    });
    let mut out: Vec<Array2<f32>> = Vec::new();
    for result in results {
        let (val, logits) = result?;
        if out.is_empty() {
            out = vec![Array2::zeros((y.len(), k)); logits.len()];
        }
        for (matrix, fold_logits) in out.iter_mut().zip(logits) {
            for (row, &i) in fold_logits.rows().into_iter().zip(&val) {
                matrix.row_mut(i).assign(&row);
            }
        }
    }
    Ok(out)
}

fn accuracy(logits: ArrayView2<f32>, y: &[usize]) -> f64 {
    let correct = logits
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(row, t)| argmax(row.as_slice().unwrap_or(&[])) == **t)
        .count();
    correct as f64 / y.len().max(1) as f64
}

/// A warning when the chosen C (`scored[best]`, by cross-validated accuracy) beats every other value and is
/// the grid's smallest or largest: the best value may lie beyond the grid.
fn grid_edge_warning(scored: &[(f64, f64)], best: usize) -> Option<TrainWarning> {
    let (chosen, chosen_accuracy) = *scored.get(best)?;
    let strictly_best = scored
        .iter()
        .enumerate()
        .all(|(i, &(_, accuracy))| i == best || accuracy < chosen_accuracy - 1e-12);
    if scored.len() < 2 || !strictly_best {
        return None;
    }
    let lowest = scored.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let highest = scored.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
    if chosen != lowest && chosen != highest {
        return None;
    }
    Some(TrainWarning::GridEdge {
        chosen,
        smallest: chosen == lowest,
    })
}

/// Fits the classes present in `y`; returns weights [D, K] and intercept [K] over all `k` classes (an absent
/// class gets a prohibitive intercept), plus the solver's result (raw parameters for a warm start, convergence).
fn fit_logistic(
    x: ArrayView2<f32>,
    y: &[usize],
    k: usize,
    c: f64,
    params: &TrainParams,
    threads: usize,
    warm: Option<Array2<f64>>,
) -> (Array2<f32>, Array1<f32>, LogisticFit) {
    let mut counts = vec![0usize; k];
    y.iter().for_each(|&class| counts[class] += 1);
    let present: Vec<usize> = (0..k).filter(|&class| counts[class] > 0).collect();
    let mut index = vec![0; k];
    present
        .iter()
        .enumerate()
        .for_each(|(i, &class)| index[class] = i);
    let compact: Vec<usize> = y.iter().map(|&class| index[class]).collect();
    let class_weights: Vec<f64> = present
        .iter()
        .map(|&class| match params.class_weight {
            ClassWeight::None => 1.0,
            ClassWeight::Balanced => y.len() as f64 / (present.len() * counts[class]) as f64,
        })
        .collect();
    let solver = LogisticParams {
        c,
        max_iterations: params.max_iterations,
        tolerance: 1e-4,
        threads,
    };
    let fitted = logistic::fit(x, &compact, present.len(), &class_weights, &solver, warm);
    let d = x.ncols();
    let mut weights = Array2::zeros((d, k));
    let mut intercept = Array1::from_elem(k, -1e4f32);
    for (j, &class) in present.iter().enumerate() {
        weights
            .column_mut(class)
            .assign(&fitted.params.slice(ndarray::s![..d, j]).mapv(|v| v as f32));
        intercept[class] = fitted.params[[d, j]] as f32;
    }
    (weights, intercept, fitted)
}

fn fit_simple(
    kind: HeadKind,
    x: ArrayView2<f32>,
    y: &[usize],
    k: usize,
    neighbours: usize,
) -> Head {
    let unit = normalized(x);
    match kind {
        HeadKind::Knn => Head::Knn {
            embeddings: unit,
            labels: y.to_vec(),
            k: neighbours,
            classes: k,
        },
        _ => {
            let mut centroids = Array2::zeros((k, x.ncols()));
            for (row, &c) in unit.rows().into_iter().zip(y) {
                let mut target = centroids.row_mut(c);
                target += &row;
            }
            Head::Centroid {
                centroids: normalized(centroids.view()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n_per_class: usize, k: usize, d: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = SplitMix64(seed);
        let mut noise = || (rng.next_u64() % 10_000) as f32 / 10_000.0 - 0.5;
        let mut x = Array2::zeros((n_per_class * k, d));
        let mut y = Vec::new();
        for c in 0..k {
            for i in 0..n_per_class {
                let row = c * n_per_class + i;
                for j in 0..d {
                    x[[row, j]] = noise() + if j % k == c { 1.5 } else { 0.0 };
                }
                y.push(c);
            }
        }
        (x, y)
    }

    #[test]
    fn folds_are_stratified_and_deterministic() {
        let y: Vec<usize> = (0..100).map(|i| (i < 30) as usize).collect();
        let folds = stratified_folds(&y, 5, 7);
        assert_eq!(folds, stratified_folds(&y, 5, 7));
        for f in 0..5 {
            let in_fold: Vec<usize> = (0..100).filter(|&i| folds[i] == f).collect();
            assert_eq!(in_fold.len(), 20);
            assert_eq!(in_fold.iter().filter(|&&i| y[i] == 1).count(), 6);
        }
    }

    #[test]
    fn every_head_learns_separable_classes() {
        let names: Vec<String> = (0..3).map(|c| format!("c{c}")).collect();
        let (x, y) = blobs(30, 3, 6, 1);
        for head in [HeadKind::Logistic, HeadKind::Centroid, HeadKind::Knn] {
            let params = TrainParams {
                head,
                ..Default::default()
            };
            let (trained, report) = train(x.view(), &y, &names, &params).unwrap();
            assert!(report.cv_accuracy > 0.9, "{head:?}: {report:?}");
            let p = trained.probabilities(x.view(), report.temperature);
            assert!((p.row(0).sum() - 1.0).abs() < 1e-4);
            assert_eq!(argmax(p.row(0).as_slice().unwrap()), 0);
        }
    }

    #[test]
    fn bad_training_data_is_refused() {
        let names = vec!["a".to_string(), "b".to_string()];
        let (x, _) = blobs(5, 2, 3, 2);
        let err = train(x.view(), &[0; 10], &names, &TrainParams::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least two classes") && err.contains("'a'"),
            "{err}"
        );
        let mut nan = x.clone();
        nan[[3, 1]] = f32::NAN;
        let y: Vec<usize> = (0..10).map(|i| i % 2).collect();
        assert!(
            train(nan.view(), &y, &names, &TrainParams::default())
                .unwrap_err()
                .to_string()
                .contains("NaN")
        );
        let bad = TrainParams {
            folds: 1,
            ..Default::default()
        };
        assert!(train(x.view(), &y, &names, &bad).is_err());
    }

    #[test]
    fn single_example_class_warns() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let (x, mut y) = blobs(10, 2, 4, 3);
        y[0] = 2;
        let (_, report) = train(x.view(), &y, &names, &TrainParams::default()).unwrap();
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.to_string().contains("'c' has a single example")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn a_best_c_at_the_edge_of_the_grid_warns() {
        let warns = |scored: &[(f64, f64)], best| grid_edge_warning(scored, best);
        let smallest = warns(&[(0.001, 0.80), (0.01, 0.78), (0.1, 0.75)], 0);
        let said = |w: Option<TrainWarning>| w.map(|w| w.to_string()).unwrap_or_default();
        let smallest = said(smallest);
        assert!(
            smallest.contains("0.001") && smallest.contains("smaller"),
            "{smallest}"
        );
        let largest = warns(&[(1.0, 0.70), (0.1, 0.65), (10.0, 0.72)], 2);
        let largest = said(largest);
        assert!(
            largest.contains("(10)") && largest.contains("larger"),
            "{largest}"
        );
        // Inside the grid, tied with a neighbour, or a grid of one: nothing to say.
        assert_eq!(warns(&[(0.01, 0.7), (0.1, 0.8), (1.0, 0.7)], 1), None);
        assert_eq!(warns(&[(0.01, 0.8), (0.1, 0.8)], 0), None);
        assert_eq!(warns(&[(1.0, 0.8)], 0), None);
    }

    #[test]
    fn a_fit_stopped_by_the_iteration_limit_warns() {
        let names = vec!["a".to_string(), "b".to_string()];
        let (x, y) = blobs(20, 2, 5, 4);
        let converged = |max_iterations| {
            let params = TrainParams {
                grid: vec![100.0],
                max_iterations,
                ..TrainParams::default()
            };
            let (_, report) = train(x.view(), &y, &names, &params).unwrap();
            !report.warnings.iter().any(|w| {
                matches!(w, TrainWarning::NotConverged { .. })
                    && w.to_string().contains("a larger max_iterations")
            })
        };
        assert!(!converged(1));
        assert!(converged(1000));
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::head::softmax;

    /// linfa-logistic, run to a tight tolerance, is the reference for the same objective (it sums the loss, so
    /// its alpha is 1 / C on the summed scale).
    fn linfa_reference(x: &Array2<f32>, y: &[usize], c: f64) -> Array2<f32> {
        use linfa::prelude::*;
        let x = x.mapv(f64::from);
        let dataset = DatasetBase::new(x.view(), Array1::from(y.to_vec()));
        let fitted = linfa_logistic::MultiLogisticRegression::default()
            .alpha(1.0 / c)
            .max_iterations(1000)
            .gradient_tolerance(1e-8)
            .fit(&dataset)
            .unwrap();
        let logits = x.dot(fitted.params()) + fitted.intercept();
        softmax(logits.mapv(|v| v as f32), 1.0)
    }

    fn overlapping(k: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = SplitMix64(seed);
        let mut noise = || (rng.next_u64() % 10_000) as f32 / 5_000.0 - 1.0;
        let n = 40 * k;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            noise() + if j == i % k { 0.8 } else { 0.0 }
        });
        (x, (0..n).map(|i| i % k).collect())
    }

    #[test]
    fn logistic_agrees_with_linfa_logistic_for_two_and_more_classes() {
        for k in [2, 3] {
            let (x, y) = overlapping(k, k as u64);
            let c = 0.5;
            let params = TrainParams {
                max_iterations: 1000,
                ..Default::default()
            };
            let (weights, intercept, _) = fit_logistic(x.view(), &y, k, c, &params, 1, None);
            let ours = softmax(x.dot(&weights) + &intercept, 1.0);
            let reference = linfa_reference(&x, &y, c);
            let diff = (&ours - &reference)
                .mapv(f32::abs)
                .fold(0.0f32, |a, &b| a.max(b));
            // Both stop at a tolerance of the same convex problem.
            assert!(diff < 1e-3, "K = {k}: probabilities differ by up to {diff}");
            let agree = ours
                .rows()
                .into_iter()
                .zip(reference.rows())
                .filter(|(a, b)| argmax(a.as_slice().unwrap()) == argmax(b.as_slice().unwrap()));
            assert_eq!(agree.count(), y.len(), "K = {k}: predicted classes differ");
        }
    }

    #[test]
    fn balanced_class_weight_favours_the_small_class() {
        // 90 examples of class 0, 10 of class 1, overlapping.
        let mut rng = SplitMix64(5);
        let mut noise = || (rng.next_u64() % 10_000) as f32 / 5_000.0 - 1.0;
        let y: Vec<usize> = (0..100).map(|i| (i >= 90) as usize).collect();
        let x = Array2::from_shape_fn((100, 2), |(i, j)| {
            noise() + if j == 0 && y[i] == 1 { 0.7 } else { 0.0 }
        });
        let names = vec!["common".to_string(), "rare".to_string()];
        let predicted_rare = |weight| {
            let params = TrainParams {
                class_weight: weight,
                grid: vec![1.0],
                ..Default::default()
            };
            let (head, report) = train(x.view(), &y, &names, &params).unwrap();
            let p = head.probabilities(x.view(), report.temperature);
            p.rows()
                .into_iter()
                .filter(|r| argmax(r.as_slice().unwrap()) == 1)
                .count()
        };
        let (plain, balanced) = (
            predicted_rare(ClassWeight::None),
            predicted_rare(ClassWeight::Balanced),
        );
        assert!(
            balanced > plain,
            "balanced predicts the rare class {balanced} times, unweighted {plain}"
        );
    }
}
