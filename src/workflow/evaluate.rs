//! A bundle measured on labelled data.

use std::path::Path;

use ndarray::Array2;

use crate::backbone::BackboneRef;
use crate::bundle::Bundle;
use crate::classifier::Classifier;
use crate::data::Data;
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet};
use crate::error::{Error, Result};
use crate::head::{ClassScores, HeadKind};
use crate::metrics::{Metrics, evaluate};
use crate::runtime::RuntimeOptions;

use super::split::labels_of;

/// Metrics of a bundle on labelled embeddings made by the same backbone; also returns the probabilities.
pub fn evaluate_set(bundle: &Bundle, set: &EmbeddedSet) -> Result<(Metrics, Array2<f32>)> {
    if bundle.info.training.head == HeadKind::MultiLabel {
        return Err(Error::Unsupported(
            "evaluating a multi-label bundle on other data is not supported yet; its training reports \
             cross-validated and held-out metrics (a validation split)"
                .into(),
        ));
    }
    bundle.info.features.check(&set.features)?;
    if set.class_names != bundle.info.class_names {
        return Err(Error::Incompatible(format!(
            "the data's classes {:?} differ from the bundle's {:?}",
            set.class_names, bundle.info.class_names
        )));
    }
    let y = labels_of(set)?;
    if set.dim != bundle.head.dim() {
        return Err(Error::Incompatible(format!(
            "embeddings have {} values, the head expects {}",
            set.dim,
            bundle.head.dim()
        )));
    }
    let probabilities = bundle.head.probabilities(set.matrix(), bundle.temperature);
    Ok((
        evaluate(y, probabilities.view(), &bundle.info.class_names),
        probabilities,
    ))
}

/// A bundle measured on labelled data.
pub struct Evaluation {
    pub bundle: Bundle,
    /// The data's embeddings, in the data's order.
    pub set: EmbeddedSet,
    /// What embedding did; `None` for an `.npz`.
    pub summary: Option<EmbedSummary>,
    pub metrics: Metrics,
    /// [N, K], the rows of `set`.
    pub probabilities: Array2<f32>,
}

/// Evaluates the bundle at `bundle_path` on `data`. An `.npz` needs only the bundle; images and texts are
/// embedded with the bundle's backbone (`backbone` says where it is, if not where the bundle says).
pub fn evaluate_bundle(
    bundle_path: &Path,
    data: &Data,
    runtime: &RuntimeOptions,
    backbone: Option<&BackboneRef>,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Evaluation> {
    let (bundle, set, summary) = match data {
        Data::Embeddings(path) => (Bundle::load(bundle_path)?, EmbeddedSet::read(path)?, None),
        _ => {
            let mut classifier = Classifier::load(bundle_path, runtime, backbone)?;
            let (set, summary) = classifier.embed(data, embed_options, progress)?;
            (classifier.bundle, set, summary)
        }
    };
    let (metrics, probabilities) = evaluate_set(&bundle, &set)?;
    Ok(Evaluation {
        bundle,
        set,
        summary,
        metrics,
        probabilities,
    })
}
