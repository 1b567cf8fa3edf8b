//! Classification metrics a user can check: accuracy, macro-F1, per-class precision / recall / F1, the
//! confusion matrix, log loss and expected calibration error.

use ndarray::ArrayView2;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub log_loss: f64,
    /// Expected calibration error over 15 equal-width confidence bins.
    pub ece: f64,
}

/// Metrics of `probabilities` ([N, K]) against the true classes.
pub fn evaluate(
    truth: &[usize],
    probabilities: ArrayView2<f32>,
    class_names: &[String],
) -> Metrics {
    let k = class_names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut log_loss = 0.0;
    for (row, &t) in probabilities.rows().into_iter().zip(truth) {
        let predicted = argmax(row.as_slice().unwrap_or(&[]));
        if t < k && predicted < k {
            confusion[t][predicted] += 1;
        }
        log_loss -= (row.get(t).copied().unwrap_or(0.0) as f64).max(1e-15).ln();
    }
    let n = truth.len();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let tp = confusion[c][c] as f64;
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                name: class_names[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.support > 0).collect();
    Metrics {
        samples: n,
        accuracy: if n > 0 {
            correct as f64 / n as f64
        } else {
            0.0
        },
        macro_f1: if present.is_empty() {
            0.0
        } else {
            present.iter().map(|c| c.f1).sum::<f64>() / present.len() as f64
        },
        per_class,
        confusion,
        log_loss: if n > 0 { log_loss / n as f64 } else { 0.0 },
        ece: expected_calibration_error(truth, probabilities, 15),
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// |accuracy − confidence| averaged over confidence bins, weighted by how many predictions fall in each.
pub(crate) fn expected_calibration_error(
    truth: &[usize],
    probabilities: ArrayView2<f32>,
    bins: usize,
) -> f64 {
    let mut count = vec![0usize; bins];
    let mut confidence = vec![0.0f64; bins];
    let mut correct = vec![0.0f64; bins];
    for (row, &t) in probabilities.rows().into_iter().zip(truth) {
        let row = row.as_slice().unwrap_or(&[]);
        let predicted = argmax(row);
        let p = row.get(predicted).copied().unwrap_or(0.0) as f64;
        let bin = ((p * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence[bin] += p;
        correct[bin] += (predicted == t) as u8 as f64;
    }
    let n = truth.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (correct[b] - confidence[b]).abs() / n)
        .sum()
}

impl Metrics {
    /// The terminal report: summary, per-class table, confusion matrix.
    pub fn render(&self) -> String {
        let width = self
            .per_class
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(9);
        let mut out = format!(
            "accuracy {:.4}   macro-F1 {:.4}   log loss {:.4}   ECE {:.4}   ({} samples)\n\n",
            self.accuracy, self.macro_f1, self.log_loss, self.ece, self.samples
        );
        out += &format!("{:<width$}  precision  recall     f1  support\n", "class");
        for c in &self.per_class {
            out += &format!(
                "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}\n",
                c.name, c.precision, c.recall, c.f1, c.support
            );
        }
        out += &format!(
            "\nconfusion matrix (rows: true, columns: predicted)\n{:<width$}",
            ""
        );
        for c in 0..self.per_class.len() {
            out += &format!(" {:>7}", format!("[{c}]"));
        }
        out.push('\n');
        for (c, row) in self.confusion.iter().enumerate() {
            out += &format!("{:<width$}", format!("[{c}] {}", self.per_class[c].name));
            for v in row {
                out += &format!(" {v:>7}");
            }
            out.push('\n');
        }
        out
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn known_confusion() {
        let names = vec!["a".to_string(), "b".to_string()];
        let probs = array![[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]];
        let m = evaluate(&[0, 1, 1, 1], probs.view(), &names);
        assert_eq!(m.confusion, [[1, 0], [1, 2]]);
        assert_eq!(m.accuracy, 0.75);
        assert!((m.per_class[0].precision - 0.5).abs() < 1e-12 && m.per_class[0].recall == 1.0);
        assert!(
            (m.per_class[1].recall - 2.0 / 3.0).abs() < 1e-12 && m.per_class[1].precision == 1.0
        );
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert!(m.render().contains("confusion matrix"));
    }

    #[test]
    fn calibration_error() {
        // Always 80% confident and right 80% of the time: perfectly calibrated.
        let probs =
            ndarray::Array2::from_shape_fn((10, 2), |(_, j)| if j == 0 { 0.8f32 } else { 0.2 });
        let truth: Vec<usize> = (0..10).map(|i| if i < 8 { 0 } else { 1 }).collect();
        assert!(expected_calibration_error(&truth, probs.view(), 15) < 1e-6);
        // Always 100% confident, right half the time.
        let sure =
            ndarray::Array2::from_shape_fn((4, 2), |(_, j)| if j == 0 { 1.0f32 } else { 0.0 });
        assert!((expected_calibration_error(&[0, 0, 1, 1], sure.view(), 15) - 0.5).abs() < 1e-6);
    }
}
