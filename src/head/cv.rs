//! Cross-validation over any head: stratified folds, fitted in parallel, and the out-of-fold scores of each
//! candidate parameter set.

use linfa::DatasetBase;
use linfa::traits::Fit;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::{ClassScores, Embeddings};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// A head's checked parameters as cross-validation and [`super::train()`] use them: linfa's `Fit` on
/// [`Embeddings`], giving a model with [`ClassScores`].
pub trait Estimator:
    for<'a> Fit<
        ArrayView2<'a, f32>,
        ArrayView1<'a, usize>,
        Error,
        Object = <Self as Estimator>::Model,
    > + Sync
    + Sized
{
    type Model: ClassScores + Send;

    /// Fits each of `candidates` (a grid of one parameter) to the same data. A solver that can start from the
    /// previous candidate's solution overrides this.
    fn fit_each(candidates: &[Self], data: &Embeddings) -> Result<Vec<Self::Model>> {
        candidates.iter().map(|c| c.fit(data)).collect()
    }
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

/// A fold's validation rows and each candidate's scores for them.
type FoldScores = (Vec<usize>, Vec<Array2<f32>>);

/// Out-of-fold scores [N, K] of each candidate: every fold (in parallel) fits the candidates on the other
/// folds' rows (weights kept) and scores its own. `fold_of` is each row's fold, below `folds`.
pub(crate) fn cross_validate<E: Estimator>(
    candidates: &[E],
    data: &Embeddings,
    fold_of: &[usize],
    folds: usize,
    classes: usize,
) -> Result<Vec<Array2<f32>>> {
    let (x, y) = (data.records.view(), data.targets.view());
    let weights = data.weights();
    let results: Vec<Result<FoldScores>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..folds)
            .map(|fold| {
                scope.spawn(move || {
                    let train: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] != fold).collect();
                    let val: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] == fold).collect();
                    if val.is_empty() || train.is_empty() {
                        return Ok((val, Vec::new()));
                    }
                    let xt = x.select(Axis(0), &train);
                    let yt: Array1<usize> = train.iter().map(|&i| y[i]).collect();
                    let mut fold_data = DatasetBase::new(xt.view(), yt.view());
                    if let Some(weights) = weights {
                        fold_data =
                            fold_data.with_weights(train.iter().map(|&i| weights[i]).collect());
                    }
                    let xv = x.select(Axis(0), &val);
                    let models = E::fit_each(candidates, &fold_data)?;
                    Ok((val, models.iter().map(|m| m.scores(xv.view())).collect()))
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
    let mut out = vec![Array2::zeros((y.len(), classes)); candidates.len()];
    for result in results {
        let (val, scores) = result?;
        for (matrix, fold_scores) in out.iter_mut().zip(scores) {
            for (row, &i) in fold_scores.rows().into_iter().zip(&val) {
                matrix.row_mut(i).assign(&row);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
