//! Open-set rejection: how far an embedding is from everything a head was trained on, and the distance beyond
//! which the answer is `unknown` whatever the softmax says. The score is 1 − the cosine similarity to the k-th
//! nearest training embedding (Sun et al., "Out-of-distribution detection with deep nearest neighbors", 2022);
//! the threshold is the quantile of out-of-fold scores that rejects the chosen fraction of known inputs.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use super::normalized;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Validated by [`NoveltyParams::check`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NoveltyParams {
    /// The neighbour whose similarity scores an input (1 = the nearest; fewer training embeddings than this,
    /// the farthest).
    pub k: usize,
    /// The fraction of known inputs the threshold rejects, measured on out-of-fold training data.
    pub false_rejection: f64,
    /// Training embeddings kept to measure against, at most (a seeded sample beyond that): they are stored in the
    /// bundle and the exported model.
    pub max_reference: usize,
    pub seed: u64,
}

setters!(NoveltyParams {
    k: usize,
    false_rejection: f64,
    max_reference: usize,
    seed: u64,
});

impl Default for NoveltyParams {
    fn default() -> Self {
        NoveltyParams {
            // Of 1, 5 and 10, the best mean AUROC on the open-set bench's image and text sets.
            k: 5,
            false_rejection: 0.05,
            max_reference: 10_000,
            seed: 42,
        }
    }
}

impl NoveltyParams {
    pub fn check(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::parameter("k", "must be at least 1"));
        }
        if !(self.false_rejection > 0.0 && self.false_rejection < 1.0) {
            return Err(Error::parameter(
                "false_rejection",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if self.max_reference == 0 {
            return Err(Error::parameter("max_reference", "must be at least 1"));
        }
        Ok(())
    }
}

/// A fitted novelty score and its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Novelty {
    /// Unit-length training embeddings, [M, D].
    pub reference: Array2<f32>,
    pub k: usize,
    /// Scores above this are unknown.
    pub threshold: f32,
    /// The fraction of out-of-fold training scores above the threshold.
    pub false_rejection: f64,
}

/// Rows compared with the reference at a time: memory stays at this many × M similarities.
const ROWS_PER_BLOCK: usize = 512;

impl Novelty {
    /// Fits on training embeddings `x` in the cross-validation folds `fold_of` (each row scored against the
    /// kept rows of the other folds, so the threshold sees inputs it was not fitted on).
    pub fn fit(
        x: ArrayView2<f32>,
        fold_of: &[usize],
        folds: usize,
        params: &NoveltyParams,
    ) -> Result<Novelty> {
        params.check()?;
        if x.nrows() != fold_of.len() || x.nrows() == 0 {
            return Err(Error::TrainingData(
                "open-set rejection needs training embeddings, one fold index each".into(),
            ));
        }
        let mut kept: Vec<usize> = (0..x.nrows()).collect();
        if kept.len() > params.max_reference {
            SplitMix64(params.seed).shuffle(&mut kept);
            kept.truncate(params.max_reference);
            kept.sort_unstable();
        }
        let unit = normalized(x);
        let mut out_of_fold = Vec::with_capacity(x.nrows());
        for fold in 0..folds {
            let rows: Vec<usize> = (0..x.nrows()).filter(|&i| fold_of[i] == fold).collect();
            let others: Vec<usize> = kept
                .iter()
                .copied()
                .filter(|&i| fold_of[i] != fold)
                .collect();
            if rows.is_empty() || others.is_empty() {
                continue;
            }
            let reference = unit.select(Axis(0), &others);
            let scores = kth_distance(
                unit.select(Axis(0), &rows).view(),
                reference.view(),
                params.k,
            );
            out_of_fold.extend(scores);
        }
        if out_of_fold.is_empty() {
            return Err(Error::TrainingData(
                "open-set rejection needs training embeddings in at least two folds".into(),
            ));
        }
        out_of_fold.sort_by(f32::total_cmp);
        let n = out_of_fold.len();
        // The smallest score with at most the chosen fraction of known scores above it.
        let index = (((1.0 - params.false_rejection) * n as f64).ceil() as usize).clamp(1, n) - 1;
        let threshold = out_of_fold[index];
        let above = out_of_fold.iter().filter(|&&s| s > threshold).count();
        Ok(Novelty {
            reference: unit.select(Axis(0), &kept),
            k: params.k,
            threshold,
            false_rejection: above as f64 / n as f64,
        })
    }

    /// The embedding size expected.
    pub fn dim(&self) -> usize {
        self.reference.ncols()
    }

    /// Novelty scores, \[N\]: 0 for an input on a training embedding, up to 2 for its opposite.
    pub fn scores(&self, x: ArrayView2<f32>) -> Array1<f32> {
        kth_distance(normalized(x).view(), self.reference.view(), self.k)
    }

    /// Whether each score is beyond the threshold.
    pub fn is_novel(&self, score: f32) -> bool {
        score > self.threshold
    }
}

/// 1 − the k-th largest cosine similarity of each (unit) row of `x` to the (unit) rows of `reference`.
fn kth_distance(x: ArrayView2<f32>, reference: ArrayView2<f32>, k: usize) -> Array1<f32> {
    let k = k.min(reference.nrows()).max(1);
    let mut out = Array1::zeros(x.nrows());
    if reference.nrows() == 0 {
        out.fill(2.0);
        return out;
    }
    for start in (0..x.nrows()).step_by(ROWS_PER_BLOCK) {
        let end = (start + ROWS_PER_BLOCK).min(x.nrows());
        let similarities = x.slice(s![start..end, ..]).dot(&reference.t());
        for (row, score) in similarities
            .rows()
            .into_iter()
            .zip(out.slice_mut(s![start..end]).iter_mut())
        {
            let mut values = row.to_vec();
            let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            *score = 1.0 - *kth;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn far_inputs_score_high_and_the_threshold_rejects_the_chosen_fraction() {
        let mut rng = SplitMix64(3);
        let mut noise = || (rng.next_u64() % 1000) as f32 / 1000.0 - 0.5;
        // Known data: around the first two axes of a 4-d space.
        let x = Array2::from_shape_fn((200, 4), |(i, j)| {
            (if j == i % 2 { 3.0 } else { 0.0 }) + 0.5 * noise()
        });
        let fold_of: Vec<usize> = (0..200).map(|i| (i / 2) % 5).collect();
        let params = NoveltyParams {
            k: 1,
            false_rejection: 0.1,
            ..Default::default()
        };
        let novelty = Novelty::fit(x.view(), &fold_of, 5, &params).unwrap();
        assert_eq!(novelty.reference.nrows(), 200);
        assert!(novelty.false_rejection <= 0.1 && novelty.false_rejection > 0.05);
        let scores = novelty.scores(array![[3.0f32, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]].view());
        assert!(!novelty.is_novel(scores[0]), "{scores}");
        assert!(novelty.is_novel(scores[1]), "{scores}");
        // The reference is capped, by a seeded sample.
        let capped = NoveltyParams {
            max_reference: 50,
            ..params.clone()
        };
        let small = Novelty::fit(x.view(), &fold_of, 5, &capped).unwrap();
        assert_eq!(small.reference.nrows(), 50);
        assert_eq!(small, Novelty::fit(x.view(), &fold_of, 5, &capped).unwrap());
        let bad = NoveltyParams {
            false_rejection: 1.0,
            ..params
        };
        assert!(Novelty::fit(x.view(), &fold_of, 5, &bad).is_err());
    }
}
