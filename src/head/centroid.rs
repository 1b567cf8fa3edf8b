//! The centroid head: the nearest class mean on unit-length embeddings, for a handful of examples per class.
//! Example weights are ignored: a class's mean direction does not depend on how much the class weighs.

use linfa::ParamGuard;
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::Fit;
use ndarray::{Array2, ArrayBase, ArrayView2, Data, Ix2};

use super::cv::Estimator;
use super::{
    ClassScores, HeadModel, Labelled, StoredArray, StoredArrays, normalized, predict_top_class,
};
use crate::error::{Error, Result};
use crate::onnx::builder::GraphBuilder;

/// Cosine similarities are in [-1, 1]; this spreads them before the fitted temperature refines the scale.
pub(crate) const CENTROID_SCALE: f32 = 10.0;

/// Unit-length class means, [K, D]; a class without examples has a zero row (it scores 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Centroid {
    pub centroids: Array2<f32>,
}

impl Centroid {
    pub(crate) fn read(arrays: &dyn StoredArrays) -> std::result::Result<Self, String> {
        Ok(Centroid {
            centroids: arrays.matrix("centroids")?,
        })
    }
}

impl HeadModel for Centroid {
    fn arrays(&self) -> Vec<(&'static str, StoredArray<'_>)> {
        vec![("centroids", StoredArray::Matrix(&self.centroids))]
    }

    /// Cosine similarity to each (unit-length) centroid, scaled.
    fn lower(&self, graph: &mut GraphBuilder, embedding: &str) -> Result<String> {
        let (k, d) = (self.centroids.nrows() as i64, self.centroids.ncols() as i64);
        let transposed: Vec<f32> = self.centroids.t().iter().copied().collect();
        let c = graph.floats("centroids", &[d, k], &transposed);
        let unit = graph.l2_normalize(embedding);
        let similarity = graph.node("MatMul", &[&unit, &c], |n| n);
        let scale = graph.floats("centroid_scale", &[], &[CENTROID_SCALE]);
        Ok(graph.node("Mul", &[&similarity, &scale], |n| n))
    }
}

impl ClassScores for Centroid {
    fn classes(&self) -> usize {
        self.centroids.nrows()
    }

    fn dim(&self) -> usize {
        self.centroids.ncols()
    }

    fn scores(&self, x: ArrayView2<f32>) -> Array2<f32> {
        normalized(x).dot(&self.centroids.t()) * CENTROID_SCALE
    }
}

predict_top_class!(Centroid);

/// Checked centroid parameters; see [`CentroidParams`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CentroidValidParams {
    classes: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CentroidParams(CentroidValidParams);

impl CentroidParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// The class count, when some classes may have no examples in the data.
    pub fn classes(mut self, classes: usize) -> Self {
        self.0.classes = Some(classes);
        self
    }
}

impl ParamGuard for CentroidParams {
    type Checked = CentroidValidParams;
    type Error = Error;

    fn check_ref(&self) -> Result<&CentroidValidParams> {
        if self.0.classes == Some(0) {
            return Err(Error::parameter("classes", "must be at least 1"));
        }
        Ok(&self.0)
    }

    fn check(self) -> Result<CentroidValidParams> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, Error> for CentroidValidParams
where
    D: Data<Elem = f32>,
    T: AsSingleTargets<Elem = usize>,
{
    type Object = Centroid;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<Centroid> {
        let data = Labelled::check(dataset, self.classes)?;
        let unit = normalized(data.x);
        let mut centroids = Array2::zeros((data.classes, data.x.ncols()));
        for (row, &c) in unit.rows().into_iter().zip(data.y) {
            let mut target = centroids.row_mut(c);
            target += &row;
        }
        Ok(Centroid {
            centroids: normalized(centroids.view()),
        })
    }
}

impl Estimator for CentroidValidParams {
    type Model = Centroid;
}
