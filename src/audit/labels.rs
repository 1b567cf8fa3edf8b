//! Label issues by confident learning (Northcutt, Jiang and Chuang, "Confident learning: estimating uncertainty in
//! dataset labels", JAIR 2021): from out-of-fold probabilities, count the inputs confidently in another class than
//! the one given (per-class thresholds at the class's mean self-confidence), calibrate those counts into the joint
//! of given and true classes, and flag, for each pair of classes, as many inputs as the joint says are mislabelled
//! that way: those whose probability of the other class most exceeds that of their own. Inputs at least nine to one
//! in another class are flagged too: where a class is easy its threshold (the mean self-confidence) sits near 1,
//! and a misfiled input the model puts there at 0.95 would slip under it.

use ndarray::ArrayView2;

/// The probability of another class from which an input is flagged whatever the thresholds: nine to one.
const CONFIDENT_CONTRADICTION: f32 = 0.9;

/// An input whose given class the out-of-fold probabilities contradict.
#[derive(Debug, Clone, PartialEq)]
pub struct Contradicted {
    pub row: usize,
    /// The class the probabilities put it in (the most probable other than the given one).
    pub suggested: usize,
    /// 1 − its probability of the given class: how sure the contradiction is.
    pub score: f32,
}

/// What confident learning found.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelNoise {
    /// Ranked, most confident contradiction first.
    pub issues: Vec<Contradicted>,
    /// The estimated fraction of the inputs whose given class is not their true one.
    pub noise_rate: f64,
}

/// Finds label issues among rows with given classes `labels` and out-of-fold `probabilities` ([N, K], rows sum
/// to 1).
pub fn confident_learning(probabilities: ArrayView2<f32>, labels: &[usize]) -> LabelNoise {
    let (n, k) = probabilities.dim();
    if n == 0 || k < 2 {
        return LabelNoise {
            issues: Vec::new(),
            noise_rate: 0.0,
        };
    }
    let mut counts = vec![0usize; k];
    let mut thresholds = vec![0f64; k];
    for (row, &given) in labels.iter().enumerate() {
        counts[given] += 1;
        thresholds[given] += f64::from(probabilities[[row, given]]);
    }
    for (threshold, &count) in thresholds.iter_mut().zip(&counts) {
        // A class nobody was given can never be confidently joined.
        *threshold = if count == 0 {
            f64::INFINITY
        } else {
            *threshold / count as f64
        };
    }
    // The confident joint: given class × the most probable class among those above their threshold.
    let mut joint = vec![vec![0f64; k]; k];
    for (row, &given) in labels.iter().enumerate() {
        let confident = (0..k)
            .filter(|&j| f64::from(probabilities[[row, j]]) >= thresholds[j])
            .max_by(|&a, &b| probabilities[[row, a]].total_cmp(&probabilities[[row, b]]));
        if let Some(class) = confident {
            joint[given][class] += 1.0;
        }
    }
    // Calibrated: each given class's row sums to how many were given it.
    for (row, &count) in joint.iter_mut().zip(&counts) {
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            row.iter_mut().for_each(|c| *c *= count as f64 / total);
        }
    }
    let mislabelled: f64 = (0..k)
        .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| joint[i][j])
        .sum();

    // Prune by noise rate: per (given i, true j), the rows given i with the largest margin p_j − p_i.
    let mut flagged = vec![false; n];
    for (given, row) in joint.iter().enumerate() {
        for (other, &expected) in row.iter().enumerate() {
            let take = expected.round() as usize;
            if other == given || take == 0 {
                continue;
            }
            let mut candidates: Vec<(usize, f32)> = labels
                .iter()
                .enumerate()
                .filter(|&(_, &label)| label == given)
                .map(|(r, _)| (r, probabilities[[r, other]] - probabilities[[r, given]]))
                .collect();
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (r, _) in candidates.into_iter().take(take) {
                flagged[r] = true;
            }
        }
    }
    for (row, &given) in labels.iter().enumerate() {
        if (0..k).any(|j| j != given && probabilities[[row, j]] >= CONFIDENT_CONTRADICTION) {
            flagged[row] = true;
        }
    }
    let mut issues: Vec<Contradicted> = (0..n)
        .filter(|&row| flagged[row])
        .filter_map(|row| {
            let given = labels[row];
            let suggested = (0..k)
                .filter(|&j| j != given)
                .max_by(|&a, &b| probabilities[[row, a]].total_cmp(&probabilities[[row, b]]))?;
            // Where the given class is still the most probable, the probabilities do not contradict it.
            (probabilities[[row, suggested]] > probabilities[[row, given]]).then(|| Contradicted {
                row,
                suggested,
                score: 1.0 - probabilities[[row, given]],
            })
        })
        .collect();
    issues.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    LabelNoise {
        noise_rate: (mislabelled / n as f64).max(issues.len() as f64 / n as f64),
        issues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_row_confidently_in_another_class_is_flagged_with_it() {
        // Rows 0-3 are class 0, rows 4-7 class 1; row 3 is given 0 but looks like 1.
        let p = array![
            [0.9, 0.1],
            [0.8, 0.2],
            [0.85, 0.15],
            [0.1, 0.9],
            [0.2, 0.8],
            [0.1, 0.9],
            [0.15, 0.85],
            [0.3, 0.7],
        ];
        let labels = [0, 0, 0, 0, 1, 1, 1, 1];
        let found = confident_learning(p.view(), &labels);
        assert_eq!(
            found.issues,
            vec![Contradicted {
                row: 3,
                suggested: 1,
                score: 0.9
            }]
        );
        assert!(
            (found.noise_rate - 1.0 / 8.0).abs() < 0.05,
            "{}",
            found.noise_rate
        );
    }

    #[test]
    fn a_misfiled_row_under_an_easy_class_threshold_is_flagged() {
        // Class 0 is easy (self-confidence 0.98 on average); row 6, given 1, is 0.946 class 0: under that threshold,
        // nine to one against its class.
        let p = array![
            [0.99, 0.01],
            [0.98, 0.02],
            [0.97, 0.03],
            [0.98, 0.02],
            [0.05, 0.95],
            [0.1, 0.9],
            [0.946, 0.054],
            [0.2, 0.8],
        ];
        let found = confident_learning(p.view(), &[0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(found.issues.len(), 1);
        assert_eq!(found.issues[0].row, 6);
        assert!(found.noise_rate >= 1.0 / 8.0);
    }

    #[test]
    fn clean_rows_give_nothing() {
        let p = array![[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]];
        let found = confident_learning(p.view(), &[0, 0, 1, 1]);
        assert!(found.issues.is_empty());
        assert_eq!(found.noise_rate, 0.0);
    }
}
