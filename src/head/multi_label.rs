//! Multi-label heads: an input may carry several labels (or none). One logistic model per label against the
//! rest, a shared C chosen by cross-validation, and a threshold per label chosen on out-of-fold probabilities
//! (the one that maximises that label's F1); a label is predicted when its probability reaches its threshold.

use std::time::Instant;

use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array1, Array2, ArrayView2};
use serde::Serialize;

use super::cv::{cross_validate, stratified_folds};
use super::{
    ClassScores, Embeddings, HeadModel, LinearModel, LogisticParams, StoredArray, StoredArrays,
    TrainParams, TrainWarning,
};
use crate::error::{Error, Result};
use crate::onnx::builder::{GraphBuilder, LABELS, PROBABILITIES};
use crate::onnx::proto::{BOOL, FLOAT, NodeProto, ValueInfoProto};

/// Per-label logistic models (scores are log-odds) and thresholds on their probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabel {
    pub model: LinearModel,
    /// \[K\], in (0, 1].
    pub thresholds: Array1<f32>,
}

impl MultiLabel {
    pub(crate) fn read(arrays: &dyn StoredArrays) -> std::result::Result<Self, String> {
        let model = LinearModel::read(arrays)?;
        let thresholds = arrays.vector("thresholds")?;
        match thresholds.len() == model.weights.ncols() {
            true => Ok(MultiLabel { model, thresholds }),
            false => Err("the head's arrays do not fit together".into()),
        }
    }
}

impl HeadModel for MultiLabel {
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)> {
        let mut arrays = self.model.arrays();
        arrays.push(("thresholds", StoredArray::Vector(&self.thresholds)));
        arrays
    }

    /// Its logistic model's scores; each label's probability is their sigmoid.
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String> {
        self.model.lower(graph, embedding)
    }

    /// Each label's own probability, and whether it reaches the label's threshold.
    fn lower_outputs(&self, graph: &mut GraphBuilder, scores: &str, _temperature: f32) {
        let k = Some(self.classes() as i64);
        graph
            .graph
            .node
            .push(NodeProto::new("Sigmoid", &[scores], &[PROBABILITIES]));
        let thresholds = graph.floats(
            "thresholds",
            &[self.classes() as i64],
            &self.thresholds.to_vec(),
        );
        let below = graph.node("Less", &[PROBABILITIES, &thresholds], |n| n);
        graph
            .graph
            .node
            .push(NodeProto::new("Not", &[&below], &[LABELS]));
        graph.graph.output = vec![
            ValueInfoProto::tensor(PROBABILITIES, FLOAT, &[None, k]),
            ValueInfoProto::tensor(LABELS, BOOL, &[None, k]),
        ];
    }

    fn outputs_metadata(&self) -> (String, Vec<(&'static str, String)>) {
        let described = format!(
            "{PROBABILITIES}: float [N, K] sigmoid per label; {LABELS}: bool [N, K], probability at or above headstart.thresholds"
        );
        let thresholds = serde_json::json!(self.thresholds.to_vec()).to_string();
        (described, vec![("headstart.thresholds", thresholds)])
    }

    fn label_sets(&self, probabilities: ArrayView2<f32>) -> Option<Vec<Vec<usize>>> {
        Some(self.labels(probabilities))
    }
}

impl ClassScores for MultiLabel {
    fn classes(&self) -> usize {
        self.model.classes()
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.model.scores(x)
    }

    /// Each label's own probability, sigmoid(score): the columns do not sum to 1 (no temperature).
    fn probabilities(&self, x: ArrayView2<f32>, _temperature: f32) -> Array2<f32> {
        self.scores(x).mapv(sigmoid)
    }
}

impl MultiLabel {
    /// The labels whose probability reaches its threshold, per row of `probabilities` [N, K].
    pub fn labels(&self, probabilities: ArrayView2<f32>) -> Vec<Vec<usize>> {
        probabilities
            .rows()
            .into_iter()
            .map(|row| {
                (0..row.len())
                    .filter(|&k| row[k] >= self.thresholds[k])
                    .collect()
            })
            .collect()
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Precision, recall and F1 of one label, or summed over labels (micro).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LabelScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows that carry the label.
    pub support: usize,
}

impl LabelScores {
    fn of(counts: Counts) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(
            counts.true_positive,
            counts.true_positive + counts.false_positive,
        );
        let recall = ratio(
            counts.true_positive,
            counts.true_positive + counts.false_negative,
        );
        let f1 = ratio(
            2 * counts.true_positive,
            2 * counts.true_positive + counts.false_positive + counts.false_negative,
        );
        LabelScores {
            precision,
            recall,
            f1,
            support: counts.true_positive + counts.false_negative,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    true_positive: usize,
    false_positive: usize,
    false_negative: usize,
}

/// Multi-label metrics: per label, micro (every decision counted once) and macro (labels averaged) F1, and the
/// fraction of rows whose whole label set is right.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiLabelMetrics {
    pub samples: usize,
    pub labels: Vec<(String, LabelScores)>,
    pub micro: LabelScores,
    pub macro_f1: f64,
    pub subset_accuracy: f64,
}

impl MultiLabelMetrics {
    /// `truth` and `predicted`: label indices per row.
    pub fn measure(truth: &[Vec<usize>], predicted: &[Vec<usize>], names: &[String]) -> Self {
        let mut per_label = vec![Counts::default(); names.len()];
        let mut exact = 0;
        for (want, got) in truth.iter().zip(predicted) {
            for (k, counts) in per_label.iter_mut().enumerate() {
                match (want.contains(&k), got.contains(&k)) {
                    (true, true) => counts.true_positive += 1,
                    (false, true) => counts.false_positive += 1,
                    (true, false) => counts.false_negative += 1,
                    (false, false) => {}
                }
            }
            let (mut a, mut b) = (want.clone(), got.clone());
            a.sort_unstable();
            b.sort_unstable();
            exact += usize::from(a == b);
        }
        let total = per_label.iter().fold(Counts::default(), |sum, c| Counts {
            true_positive: sum.true_positive + c.true_positive,
            false_positive: sum.false_positive + c.false_positive,
            false_negative: sum.false_negative + c.false_negative,
        });
        let labels: Vec<(String, LabelScores)> = names
            .iter()
            .cloned()
            .zip(per_label.into_iter().map(LabelScores::of))
            .collect();
        MultiLabelMetrics {
            samples: truth.len(),
            macro_f1: labels.iter().map(|(_, s)| s.f1).sum::<f64>() / labels.len().max(1) as f64,
            micro: LabelScores::of(total),
            labels,
            subset_accuracy: exact as f64 / truth.len().max(1) as f64,
        }
    }

    /// A plain-text table.
    pub fn render(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:<width$}  precision  recall      f1  support\n", "label");
        for (name, s) in &self.labels {
            out += &format!(
                "{name:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}\n",
                s.precision, s.recall, s.f1, s.support
            );
        }
        out += &format!(
            "micro F1 {:.4}  macro F1 {:.4}  subset accuracy {:.4}  ({} samples)\n",
            self.micro.f1, self.macro_f1, self.subset_accuracy, self.samples
        );
        out
    }
}

/// What multi-label training did.
#[derive(Debug, Clone, Serialize)]
pub struct MultiLabelReport {
    /// (C, out-of-fold micro F1 at the best thresholds) per grid value.
    pub cv: Vec<(f64, f64)>,
    pub chosen_c: f64,
    /// Out-of-fold metrics at the chosen C and thresholds.
    pub cross_validated: MultiLabelMetrics,
    pub thresholds: Vec<f32>,
    pub folds: usize,
    pub samples: usize,
    pub warnings: Vec<TrainWarning>,
    pub seconds: f64,
}

/// Trains a multi-label head on embeddings `x` ([N, D]) whose row i carries the labels `y[i]` (indices into
/// `label_names`), with `params`' folds, grid, seed and iteration limit (class weights are not used).
pub fn train_multi_label(
    x: ArrayView2<f32>,
    y: &[Vec<usize>],
    label_names: &[String],
    params: &TrainParams,
) -> Result<(MultiLabel, MultiLabelReport)> {
    params.check()?;
    let started = Instant::now();
    let k = label_names.len();
    if x.nrows() != y.len() {
        return Err(Error::TrainingData(format!(
            "{} embeddings but {} label sets",
            x.nrows(),
            y.len()
        )));
    }
    if let Some(bad) = y.iter().flatten().find(|&&l| l >= k) {
        return Err(Error::TrainingData(format!(
            "label {bad} is not a label index (there are {k} labels)"
        )));
    }
    let mut counts = vec![0usize; k];
    y.iter().flatten().for_each(|&l| counts[l] += 1);
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(Error::TrainingData(format!(
            "label '{}' is on no example: nothing to learn it from",
            label_names[empty]
        )));
    }
    let mut warnings: Vec<TrainWarning> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == 1)
        .map(|(l, _)| TrainWarning::SingleExample {
            class: label_names[l].clone(),
        })
        .collect();
    // Folds stratified by each row's first label (rows without labels form their own group).
    let primary: Vec<usize> = y
        .iter()
        .map(|labels| labels.iter().copied().min().unwrap_or(k))
        .collect();
    let fold_of = stratified_folds(&primary, params.folds, params.seed);
    let candidates = params
        .grid
        .iter()
        .map(|&c| {
            LogisticParams::new()
                .c(c)
                .max_iterations(params.max_iterations)
                .classes(2)
                .check()
        })
        .collect::<Result<Vec<_>>>()?;
    let targets: Vec<Array1<usize>> = (0..k)
        .map(|label| {
            y.iter()
                .map(|set| usize::from(set.contains(&label)))
                .collect()
        })
        .collect();
    // Out-of-fold probabilities [N, K] per candidate.
    let mut out_of_fold = vec![Array2::<f32>::zeros((x.nrows(), k)); candidates.len()];
    for (label, target) in targets.iter().enumerate() {
        let data: Embeddings = DatasetBase::new(x.view(), target.view());
        let scores = cross_validate(&candidates, &data, &fold_of, params.folds, 2)?;
        for (matrix, scores) in out_of_fold.iter_mut().zip(scores) {
            let odds = &scores.column(1) - &scores.column(0);
            matrix.column_mut(label).assign(&odds.mapv(sigmoid));
        }
    }
    let mut best: Option<(usize, f64, Vec<f32>)> = None;
    let mut cv = Vec::with_capacity(candidates.len());
    for (i, probabilities) in out_of_fold.iter().enumerate() {
        let thresholds: Vec<f32> = (0..k)
            .map(|label| best_threshold(probabilities.column(label).to_vec(), &targets[label]))
            .collect();
        let predicted = above(probabilities.view(), &thresholds);
        let micro = MultiLabelMetrics::measure(y, &predicted, label_names)
            .micro
            .f1;
        cv.push((params.grid[i], micro));
        if best.as_ref().is_none_or(|b| micro > b.1 + 1e-12) {
            best = Some((i, micro, thresholds));
        }
    }
    let Some((chosen, _, thresholds)) = best else {
        return Err(Error::parameter("grid", "needs at least one value of C"));
    };
    warnings.extend(super::train::grid_edge_warning(&cv, chosen));
    let cross_validated = MultiLabelMetrics::measure(
        y,
        &above(out_of_fold[chosen].view(), &thresholds),
        label_names,
    );
    // The final models, one per label, on all the rows.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let final_params = candidates[chosen].with_threads(threads);
    let d = x.ncols();
    let mut weights = Array2::zeros((d, k));
    let mut intercept = Array1::zeros(k);
    let mut scaler = None;
    for (label, target) in targets.iter().enumerate() {
        let data: Embeddings = DatasetBase::new(x.view(), target.view());
        let checked = super::Labelled::check(&data, Some(2))?;
        let (model, _, convergence) = final_params.fit_lbfgs(&checked, None);
        if !convergence.converged {
            warnings.push(TrainWarning::NotConverged {
                iterations: convergence.iterations,
                c: final_params.c(),
            });
        }
        weights
            .column_mut(label)
            .assign(&(&model.weights.column(1) - &model.weights.column(0)));
        intercept[label] = model.intercept[1] - model.intercept[0];
        scaler.get_or_insert(model.scaler);
    }
    let Some(scaler) = scaler else {
        return Err(Error::TrainingData(
            "multi-label training needs at least one label".into(),
        ));
    };
    let head = MultiLabel {
        model: LinearModel {
            scaler,
            weights,
            intercept,
        },
        thresholds: Array1::from(thresholds.clone()),
    };
    let report = MultiLabelReport {
        cv,
        chosen_c: params.grid[chosen],
        cross_validated,
        thresholds,
        folds: params.folds,
        samples: y.len(),
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((head, report))
}

/// Label indices per row whose probability reaches its threshold.
fn above(probabilities: ArrayView2<f32>, thresholds: &[f32]) -> Vec<Vec<usize>> {
    probabilities
        .rows()
        .into_iter()
        .map(|row| {
            (0..row.len())
                .filter(|&k| row[k] >= thresholds[k])
                .collect()
        })
        .collect()
}

/// The probability threshold (predict at or above it) with the best F1 on these out-of-fold probabilities; on a
/// tie, the higher. Candidates are the positives' probabilities.
fn best_threshold(probabilities: Vec<f32>, target: &Array1<usize>) -> f32 {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let positives = target.iter().filter(|&&t| t == 1).count();
    let (mut true_positive, mut predicted) = (0usize, 0usize);
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    let mut i = 0;
    // Walk down from the highest probability, a group of equal probabilities at a time.
    while i < order.len() {
        let value = probabilities[order[i]];
        while i < order.len() && probabilities[order[i]] == value {
            true_positive += target[order[i]];
            predicted += 1;
            i += 1;
        }
        let f1 = 2.0 * true_positive as f64 / (predicted + positives) as f64;
        if f1 > best.0 + 1e-12 {
            best = (f1, value);
        }
    }
    best.1.clamp(f32::MIN_POSITIVE, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Three labels on 4-d points: label l is on when feature l is high; most rows carry one or two.
    fn tagged(n: usize, seed: u64) -> (Array2<f32>, Vec<Vec<usize>>) {
        let mut rng = SplitMix64(seed);
        let mut uniform = || (rng.next_u64() % 10_000) as f32 / 10_000.0;
        let mut y = Vec::new();
        let x = Array2::from_shape_fn((n, 4), |(_, _)| uniform());
        for row in x.rows() {
            y.push((0..3).filter(|&l| row[l] > 0.6).collect());
        }
        (x, y)
    }

    #[test]
    fn learns_independent_labels_with_thresholds() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (x, y) = tagged(400, 1);
        let (head, report) =
            train_multi_label(x.view(), &y, &names, &TrainParams::default()).unwrap();
        assert!(report.cross_validated.micro.f1 > 0.85, "{report:?}");
        assert!(report.cross_validated.subset_accuracy > 0.6, "{report:?}");
        assert_eq!(report.thresholds.len(), 3);
        let (test, truth) = tagged(200, 2);
        let probabilities = head.probabilities(test.view(), 1.0);
        let metrics =
            MultiLabelMetrics::measure(&truth, &head.labels(probabilities.view()), &names);
        assert!(
            metrics.micro.f1 > 0.85 && metrics.macro_f1 > 0.85,
            "{}",
            metrics.render()
        );
        // Probabilities are per label, not a distribution over labels.
        assert!(
            probabilities
                .rows()
                .into_iter()
                .any(|r| (r.sum() - 1.0).abs() > 0.1)
        );
    }

    #[test]
    fn metrics_and_thresholds() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let truth = vec![vec![0], vec![0, 1], vec![], vec![1]];
        let predicted = vec![vec![0], vec![0], vec![1], vec![1]];
        let m = MultiLabelMetrics::measure(&truth, &predicted, &names);
        assert_eq!(m.labels[0].1.f1, 1.0);
        assert_eq!((m.labels[1].1.precision, m.labels[1].1.recall), (0.5, 0.5));
        assert_eq!(m.subset_accuracy, 0.5);
        assert!((m.micro.f1 - 0.75).abs() < 1e-12 && (m.macro_f1 - 0.75).abs() < 1e-12);
        let t = best_threshold(vec![0.9, 0.8, 0.3, 0.2], &Array1::from(vec![1, 1, 0, 0]));
        assert_eq!(t, 0.8);
        let err = train_multi_label(
            Array2::zeros((2, 2)).view(),
            &[vec![0], vec![0]],
            &names,
            &TrainParams::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'b' is on no example"), "{err}");
    }
}
