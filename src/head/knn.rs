//! The kNN head: votes among the `k` cosine-nearest training embeddings (each vote counts one; example weights
//! are ignored).

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::Fit;
use ndarray::{Array2, ArrayBase, ArrayView2, Data, Ix2};

use super::cv::Estimator;
use super::{ClassScores, Labelled, normalized, predict_top_class};
use crate::error::{Error, Result};

/// Unit-length training embeddings and their classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    pub embeddings: Array2<f32>,
    pub labels: Vec<usize>,
    pub k: usize,
    pub classes: usize,
}

impl ClassScores for Knn {
    fn classes(&self) -> usize {
        self.classes
    }

    fn dim(&self) -> usize {
        self.embeddings.ncols()
    }

    /// Smoothed vote shares in log space, like the other heads' logits: log((votes + 1/K) / (k + 1)).
    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let similarities = normalized(x).dot(&self.embeddings.t());
        let mut scores = Array2::zeros((x.nrows(), self.classes));
        for (row, mut out) in similarities.rows().into_iter().zip(scores.rows_mut()) {
            let mut order: Vec<usize> = (0..row.len()).collect();
            let k = self.k.min(order.len());
            if k == 0 {
                continue;
            }
            order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0.0f32; self.classes];
            for &i in &order[..k] {
                votes[self.labels[i]] += 1.0;
            }
            for (o, v) in out.iter_mut().zip(votes) {
                *o = ((v + 1.0 / self.classes as f32) / (k as f32 + 1.0)).ln();
            }
        }
        scores
    }
}

predict_top_class!(Knn);

/// Checked kNN parameters; see [`KnnParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct KnnValidParams {
    k: usize,
    classes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KnnParams(KnnValidParams);

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams(KnnValidParams {
            k: 5,
            classes: None,
        })
    }
}

impl KnnParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Neighbours that vote.
    pub fn k(mut self, k: usize) -> Self {
        self.0.k = k;
        self
    }

    /// The class count, when some classes may have no examples in the data.
    pub fn classes(mut self, classes: usize) -> Self {
        self.0.classes = Some(classes);
        self
    }
}

impl ParamGuard for KnnParams {
    type Checked = KnnValidParams;
    type Error = Error;

    fn check_ref(&self) -> Result<&KnnValidParams> {
        if self.0.k == 0 {
            return Err(Error::parameter("k", "must be at least 1"));
        }
        if self.0.classes == Some(0) {
            return Err(Error::parameter("classes", "must be at least 1"));
        }
        Ok(&self.0)
    }

    fn check(self) -> Result<KnnValidParams> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl KnnValidParams {
    pub fn k(&self) -> usize {
        self.k
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, Error> for KnnValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = Knn;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<Knn> {
        let data = Labelled::check(dataset, self.classes)?;
        Ok(Knn {
            embeddings: normalized(data.x),
            labels: data.y.to_vec(),
            k: self.k,
            classes: data.classes,
        })
    }
}

impl Estimator for KnnValidParams {
    type Model = Knn;
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::array;

    #[test]
    fn knn_votes_for_the_nearest() {
        let x = array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0]];
        let y = array![0usize, 0, 1];
        let knn = KnnParams::new()
            .k(1)
            .fit(&DatasetBase::new(x.view(), y.view()))
            .unwrap();
        let p = knn.probabilities(array![[0.1f32, 1.0], [1.0, 0.05]].view(), 1.0);
        assert!(p[[0, 1]] > 0.5 && p[[1, 0]] > 0.5);
        assert_eq!(knn.predict(&array![[0.1f32, 1.0]]), array![1]);
        assert!(KnnParams::new().k(0).check().is_err());
    }
}
