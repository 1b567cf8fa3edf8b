//! Training heads with the linear-probe protocol: stratified k-fold cross-validation picks the regularisation
//! of the logistic and linear-SVM heads from a grid, the out-of-fold scores calibrate the temperature, and the
//! final head is trained on everything. Class weights are the dataset's example weights. Deterministic for a
//! given seed.

use std::time::Instant;

use linfa::traits::Fit;
use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::cv::{Estimator, cross_validate, stratified_folds};
use super::{
    CentroidParams, Embeddings, Head, HeadKind, KnnParams, Labelled, LinearSvmParams,
    LogisticParams, NaiveBayesParams, NoveltyParams, Solver, fit_temperature, top,
};
use crate::error::{Error, Result};

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
#[non_exhaustive]
pub struct TrainParams {
    pub head: HeadKind,
    /// Cross-validation folds (at least 2).
    pub folds: usize,
    /// Inverse regularisation strengths C to try (scikit-learn's C).
    pub grid: Vec<f64>,
    pub class_weight: ClassWeight,
    /// The logistic head's solver.
    pub solver: Solver,
    pub seed: u64,
    /// Neighbours for `knn`.
    pub k: usize,
    /// L-BFGS iterations per fit.
    pub max_iterations: u64,
    /// Open-set rejection beside the head, fitted on the same folds ([`super::Novelty`]); `None` for none.
    pub open_set: Option<NoveltyParams>,
    /// Whether the bundle keeps the training embeddings, so that examples can be added later.
    pub keep_embeddings: bool,
}

setters!(TrainParams {
    head: HeadKind,
    folds: usize,
    grid: Vec<f64>,
    class_weight: ClassWeight,
    solver: Solver,
    seed: u64,
    k: usize,
    max_iterations: u64,
    open_set: NoveltyParams,
    keep_embeddings: bool,
});

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            head: HeadKind::Logistic,
            folds: 5,
            grid: vec![0.001, 0.01, 0.1, 1.0, 10.0],
            class_weight: ClassWeight::None,
            solver: Solver::Lbfgs,
            seed: 42,
            k: 5,
            max_iterations: 100,
            open_set: None,
            keep_embeddings: false,
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
        if let Some(open_set) = &self.open_set {
            open_set.check()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub head: HeadKind,
    /// (C, mean cross-validated accuracy) per grid value (logistic and linear-svm).
    pub cv: Vec<(f64, f64)>,
    pub chosen_c: Option<f64>,
    /// Out-of-fold accuracy of the chosen configuration.
    pub cv_accuracy: f64,
    /// The chosen configuration's accuracy on each fold's rows: how much `cv_accuracy` moves with the data.
    pub fold_accuracies: Vec<f64>,
    pub folds: usize,
    pub temperature: f32,
    pub samples: usize,
    pub warnings: Vec<TrainWarning>,
    pub seconds: f64,
    /// The chosen configuration's out-of-fold scores, [N, K] (probabilities after [`super::softmax`] at
    /// `temperature`): what an audit judges the labels by.
    #[serde(skip)]
    pub out_of_fold: Array2<f32>,
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
    let mut data: Embeddings = DatasetBase::new(x.view(), ArrayView1::from(y));
    let counts = Labelled::check(&data, Some(k))?.counts();
    let present = counts.iter().filter(|&&c| c > 0).count();
    if present < 2 {
        let only = counts
            .iter()
            .position(|&c| c > 0)
            .map_or("none".to_string(), |c| format!("'{}'", class_names[c]));
        return Err(Error::TrainingData(format!(
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
    if params.class_weight == ClassWeight::Balanced {
        let per_class: Vec<f32> = counts
            .iter()
            .map(|&count| y.len() as f32 / (present * count.max(1)) as f32)
            .collect();
        data = data.with_weights(y.iter().map(|&c| per_class[c]).collect());
    }
    let search = Search {
        data: &data,
        y,
        fold_of: stratified_folds(y, params.folds, params.seed),
        folds: params.folds,
        classes: k,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (head, selected) = match params.head {
        HeadKind::Logistic => {
            let candidates = params
                .grid
                .iter()
                .map(|&c| {
                    LogisticParams::new()
                        .c(c)
                        .max_iterations(params.max_iterations)
                        .solver(params.solver)
                        .classes(k)
                        .check()
                })
                .collect::<Result<Vec<_>>>()?;
            let selected = search.select(&candidates, Some(&params.grid))?;
            let best = candidates[selected.best].with_threads(threads);
            let model = match best.solver() {
                Solver::Lbfgs => {
                    let (model, _, convergence) =
                        best.fit_lbfgs(&Labelled::check(&data, Some(k))?, None);
                    if !convergence.converged {
                        warnings.push(TrainWarning::NotConverged {
                            iterations: convergence.iterations,
                            c: best.c(),
                        });
                    }
                    model
                }
                Solver::Linfa => best.fit(&data)?,
            };
            (Head::Logistic(model), selected)
        }
        HeadKind::LinearSvm => {
            let candidates = params
                .grid
                .iter()
                .map(|&c| LinearSvmParams::new().c(c).classes(k).check())
                .collect::<Result<Vec<_>>>()?;
            let selected = search.select(&candidates, Some(&params.grid))?;
            let model = candidates[selected.best].fit(&data)?;
            (Head::LinearSvm(model), selected)
        }
        HeadKind::GaussianNb => {
            let candidates = [NaiveBayesParams::new().classes(k).check()?];
            let selected = search.select(&candidates, None)?;
            (Head::GaussianNb(candidates[0].fit(&data)?), selected)
        }
        HeadKind::Centroid => {
            let candidates = [CentroidParams::new().classes(k).check()?];
            let selected = search.select(&candidates, None)?;
            (Head::Centroid(candidates[0].fit(&data)?), selected)
        }
        HeadKind::Knn => {
            let candidates = [KnnParams::new().k(params.k).classes(k).check()?];
            let selected = search.select(&candidates, None)?;
            (Head::Knn(candidates[0].fit(&data)?), selected)
        }
        HeadKind::MultiLabel => {
            return Err(Error::parameter(
                "head",
                "a multi-label head trains from label sets (train_multi_label), not one class per input",
            ));
        }
    };
    warnings.extend(grid_edge_warning(&selected.cv, selected.best));
    let report = TrainReport {
        head: params.head,
        chosen_c: selected.cv.get(selected.best).map(|s| s.0),
        cv: selected.cv,
        cv_accuracy: accuracy(selected.out_of_fold.view(), y),
        fold_accuracies: (0..params.folds)
            .map(|fold| {
                let rows: Vec<usize> = (0..y.len())
                    .filter(|&i| search.fold_of[i] == fold)
                    .collect();
                let labels: Vec<usize> = rows.iter().map(|&i| y[i]).collect();
                accuracy(selected.out_of_fold.select(Axis(0), &rows).view(), &labels)
            })
            .collect(),
        folds: params.folds,
        temperature: fit_temperature(selected.out_of_fold.view(), y),
        samples: y.len(),
        warnings,
        seconds: started.elapsed().as_secs_f64(),
        out_of_fold: selected.out_of_fold,
    };
    Ok((head, report))
}

/// The data and folds the candidates of one head are compared on.
struct Search<'a, 'b> {
    data: &'a Embeddings<'b>,
    y: &'a [usize],
    fold_of: Vec<usize>,
    folds: usize,
    classes: usize,
}

/// The best candidate, its out-of-fold scores, and (C, accuracy) per candidate when they differ by C.
struct Selected {
    best: usize,
    out_of_fold: Array2<f32>,
    cv: Vec<(f64, f64)>,
}

impl Search<'_, '_> {
    /// Cross-validates `candidates` (their C values in `grid`, if they are a grid) and picks the most
    /// accurate; on a tie, the first (the stronger regularisation in an increasing grid).
    fn select<E: Estimator>(&self, candidates: &[E], grid: Option<&[f64]>) -> Result<Selected> {
        let per_candidate = cross_validate(
            candidates,
            self.data,
            &self.fold_of,
            self.folds,
            self.classes,
        )?;
        let accuracies: Vec<f64> = per_candidate
            .iter()
            .map(|scores| accuracy(scores.view(), self.y))
            .collect();
        let best = accuracies.iter().enumerate().fold(0, |best, (i, &a)| {
            if a > accuracies[best] + 1e-12 {
                i
            } else {
                best
            }
        });
        let cv = grid.map_or_else(Vec::new, |grid| {
            grid.iter()
                .copied()
                .zip(accuracies.iter().copied())
                .collect()
        });
        let out_of_fold = per_candidate
            .into_iter()
            .nth(best)
            .unwrap_or_else(|| Array2::zeros((self.y.len(), self.classes)));
        Ok(Selected {
            best,
            out_of_fold,
            cv,
        })
    }
}

fn accuracy(logits: ArrayView2<f32>, y: &[usize]) -> f64 {
    let correct = logits
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(row, t)| top(row.view()) == **t)
        .count();
    correct as f64 / y.len().max(1) as f64
}

/// A warning when the chosen C (`scored[best]`, by cross-validated accuracy) beats every other value and is
/// the grid's smallest or largest: the best value may lie beyond the grid.
pub(super) fn grid_edge_warning(scored: &[(f64, f64)], best: usize) -> Option<TrainWarning> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::ClassScores;
    use crate::rng::SplitMix64;

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
    fn every_head_learns_separable_classes() {
        let names: Vec<String> = (0..3).map(|c| format!("c{c}")).collect();
        let (x, y) = blobs(30, 3, 6, 1);
        for head in HeadKind::SINGLE_LABEL {
            let params = TrainParams {
                head,
                ..Default::default()
            };
            let (trained, report) = train(x.view(), &y, &names, &params).unwrap();
            assert!(report.cv_accuracy > 0.9, "{head:?}: {report:?}");
            let p = trained.probabilities(x.view(), report.temperature);
            assert!((p.row(0).sum() - 1.0).abs() < 1e-4);
            assert_eq!(top(p.row(0)), 0);
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
            p.rows().into_iter().filter(|r| top(r.view()) == 1).count()
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
