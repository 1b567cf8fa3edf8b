//! Training with its out-of-fold answers kept: what each training input was predicted while it was held out. The
//! metrics, the confusion matrix's cells and the mistakes a person looks at after training, without a separate
//! validation set.

use serde::Serialize;

use crate::embeddings::EmbeddedSet;
use crate::error::Result;
use crate::head::{TrainParams, softmax};
use crate::metrics::{Metrics, argmax, evaluate};

use super::split::labels_of;
use super::train::{Trained, train_bundle};

/// A trained bundle and how its cross-validation answered each training input.
pub struct Reviewed {
    pub trained: Trained,
    /// Out-of-fold metrics, the confusion matrix among them.
    pub metrics: Metrics,
    /// Per training row, in the set's order.
    pub answers: Vec<HeldOutAnswer>,
}

/// How a training input was answered while it was held out.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOutAnswer {
    pub path: String,
    /// Class indices.
    pub truth: usize,
    pub predicted: usize,
    /// The predicted class's probability.
    pub confidence: f32,
}

/// Trains a head on `set` as [`train_bundle`] does and keeps its out-of-fold answers.
pub fn train_reviewed(set: &EmbeddedSet, params: &TrainParams) -> Result<Reviewed> {
    let truth = labels_of(set)?.to_vec();
    let trained = train_bundle(set, None, params)?;
    let probabilities = softmax(
        trained.report.out_of_fold.clone(),
        trained.report.temperature,
    );
    let metrics = evaluate(&truth, probabilities.view(), &set.class_names);
    let answers = probabilities
        .rows()
        .into_iter()
        .zip(&truth)
        .zip(&set.paths)
        .map(|((row, &truth), path)| {
            let row = row.to_vec();
            let predicted = argmax(&row);
            HeldOutAnswer {
                path: path.clone(),
                truth,
                predicted,
                confidence: row[predicted],
            }
        })
        .collect();
    Ok(Reviewed {
        trained,
        metrics,
        answers,
    })
}
