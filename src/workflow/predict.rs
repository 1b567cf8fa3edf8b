//! Answers for every input of some data.

use crate::classifier::{Classifier, Prediction, mark_labels, mark_novel, predictions};
use crate::data::Data;
use crate::embeddings::{EmbedOptions, EmbedSummary};
use crate::error::{Error, Result};

/// Answers for every input of `data`, in order: `(what it was, the answer)`. Rows are shown as their paths
/// (images) or their texts.
pub struct Predicted {
    pub rows: Vec<(String, Prediction)>,
    pub summary: Option<EmbedSummary>,
}

/// Classifies `data` with `classifier`: the top `top_k` classes of each input, and `None` for the label when
/// the top probability is below `min_confidence`.
pub fn predict(
    classifier: &mut Classifier,
    data: &Data,
    embed_options: &EmbedOptions,
    top_k: usize,
    min_confidence: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Predicted> {
    if !(0.0..=1.0).contains(&min_confidence) {
        return Err(Error::parameter(
            "min_confidence",
            "must be between 0 and 1",
        ));
    }
    let (set, summary) = classifier.embed(data, embed_options, progress)?;
    let probabilities = classifier.predict_embeddings(set.matrix())?;
    let mut answers = predictions(
        probabilities.view(),
        classifier.class_names(),
        top_k,
        min_confidence,
    );
    if let Some(head) = classifier.bundle.head.multi_label() {
        mark_labels(
            &mut answers,
            probabilities.view(),
            head,
            &classifier.bundle.info.class_names,
        );
    }
    if let (Some(scores), Some(novelty)) = (
        classifier.bundle.novelty_scores(set.matrix())?,
        &classifier.bundle.novelty,
    ) {
        mark_novel(&mut answers, scores.view(), novelty);
    }
    let shown: Vec<String> = match data {
        Data::Texts(texts) => texts.items.iter().map(|item| item.text.clone()).collect(),
        _ => set.paths,
    };
    Ok(Predicted {
        rows: shown.into_iter().zip(answers).collect(),
        summary,
    })
}
