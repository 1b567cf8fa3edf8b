//! The kNN head: votes among the `k` cosine-nearest training embeddings (each vote counts one; example weights
//! are ignored).

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::Fit;
use ndarray::{Array2, ArrayBase, ArrayView2, Data, Ix2};

use super::cv::Estimator;
use super::{
    ClassScores, Head, HeadModel, Labelled, NewExamples, StoredArray, StoredArrays, normalized,
    predict_top_class,
};
use crate::error::{Error, Result};
use crate::onnx::builder::GraphBuilder;

/// Unit-length training embeddings and their classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    pub embeddings: Array2<f32>,
    pub labels: Vec<usize>,
    pub k: usize,
    pub classes: usize,
}

impl Knn {
    pub(crate) fn read(
        arrays: &dyn StoredArrays,
        classes: usize,
        k: usize,
    ) -> std::result::Result<Self, String> {
        let labels = arrays.indices("knn_labels")?;
        if labels.iter().any(|&l| l >= classes) {
            return Err("a kNN label is not a class".into());
        }
        let embeddings = arrays.matrix("knn_embeddings")?;
        if embeddings.nrows() != labels.len() {
            return Err("the head's arrays do not fit together".into());
        }
        Ok(Knn {
            embeddings,
            labels,
            k,
            classes,
        })
    }
}

impl HeadModel for Knn {
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)> {
        vec![
            ("knn_embeddings", StoredArray::Matrix(&self.embeddings)),
            ("knn_labels", StoredArray::Indices(&self.labels)),
        ]
    }

    /// Votes as [`ClassScores::scores`] counts them: cosine similarity to every stored (unit-length) training
    /// embedding, the `k` most similar, their labels counted per class, then log((votes + 1/K) / (k + 1)).
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String> {
        let (m, d) = (self.embeddings.nrows(), self.embeddings.ncols());
        let k = self.k.min(m);
        if k == 0 {
            return Err(Error::Config(
                "damaged bundle: the knn head holds no training embeddings".into(),
            ));
        }
        let classes = self.classes;
        let transposed: Vec<f32> = self.embeddings.t().iter().copied().collect();
        let stored = graph.floats("knn_embeddings", &[d as i64, m as i64], &transposed);
        let mut one_hot = vec![0.0f32; m * classes];
        for (row, &label) in self.labels.iter().enumerate() {
            one_hot[row * classes + label] = 1.0;
        }
        let one_hot = graph.floats("knn_labels", &[m as i64, classes as i64], &one_hot);
        let unit = graph.l2_normalize(embedding);
        let similarity = graph.node("MatMul", &[&unit, &stored], |n| n);
        let (_, nearest) = graph.top_k(&similarity, k, "knn");
        let votes = graph.node("Gather", &[&one_hot, &nearest], |n| n.with_int("axis", 0));
        let votes = graph.reduce("ReduceSum", &votes, &[1], false);
        let prior = graph.floats("knn_prior", &[], &[1.0 / classes as f32]);
        let total = graph.floats("knn_total", &[], &[k as f32 + 1.0]);
        let smoothed = graph.node("Add", &[&votes, &prior], |n| n);
        let shares = graph.node("Div", &[&smoothed, &total], |n| n);
        Ok(graph.node("Log", &[&shares], |n| n))
    }

    /// The new embeddings join the stored ones.
    fn with_examples(&self, examples: &NewExamples) -> Option<Result<Head>> {
        let mut embeddings = self.embeddings.clone();
        let unit = normalized(examples.x);
        if let Err(e) = embeddings.append(ndarray::Axis(0), unit.view()) {
            return Some(Err(Error::Config(format!("adding kNN embeddings: {e}"))));
        }
        let mut labels: Vec<usize> = self
            .labels
            .iter()
            .map(|&l| examples.old_to_new[l])
            .collect();
        labels.extend(examples.labels);
        Some(Ok(Head::Knn(Knn {
            embeddings,
            labels,
            k: self.k,
            classes: examples.classes,
        })))
    }
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
