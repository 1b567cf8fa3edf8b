//! Everything in a bundle but its arrays, and the form the file keeps it in: fields of format 1 stay where
//! format 1 put them, so older headstarts read what they can.

use serde::{Deserialize, Serialize};

use crate::backbone::{BackboneIdentity, BackboneRef, Features, InputSpec};
use crate::head::{ClassWeight, HeadKind, Novelty, Solver};

/// Everything but the arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredInfo", into = "StoredInfo")]
pub struct BundleInfo {
    pub format_version: u32,
    pub class_names: Vec<String>,
    /// The features the head was trained on.
    pub features: Features,
    pub training: TrainingInfo,
}

/// [`BundleInfo`] as the file stores it: the features' fields at the top level, the backbone's reference as the
/// text the user gave.
#[derive(Serialize, Deserialize)]
struct StoredInfo {
    format_version: u32,
    class_names: Vec<String>,
    backbone_source: String,
    backbone: BackboneIdentity,
    /// How inputs became the backbone's tensors, kept in the file as the `preprocess` and `text` fields of
    /// format 1.
    #[serde(flatten, with = "input_fields")]
    input: InputSpec,
    training: TrainingInfo,
}

impl From<StoredInfo> for BundleInfo {
    fn from(stored: StoredInfo) -> Self {
        BundleInfo {
            format_version: stored.format_version,
            class_names: stored.class_names,
            features: Features {
                source: BackboneRef::parse(&stored.backbone_source),
                backbone: stored.backbone,
                input: stored.input,
            },
            training: stored.training,
        }
    }
}

impl From<BundleInfo> for StoredInfo {
    fn from(info: BundleInfo) -> Self {
        StoredInfo {
            format_version: info.format_version,
            class_names: info.class_names,
            backbone_source: info.features.source.to_string(),
            backbone: info.features.backbone,
            input: info.features.input,
            training: info.training,
        }
    }
}

/// [`InputSpec`] as bundle format 1 stores it: `preprocess` (null for texts) and `text` (absent for images).
/// Older headstarts, which do not know `text`, refuse a text bundle for its null `preprocess`.
mod input_fields {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    use crate::backbone::{InputSpec, TextInput};
    use crate::preprocess::ImagePreprocess;

    #[derive(Serialize, Deserialize)]
    struct Fields {
        preprocess: Option<ImagePreprocess>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<TextInput>,
    }

    pub(crate) fn serialize<S: Serializer>(
        input: &InputSpec,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let fields = match input {
            InputSpec::Image(preprocess) => Fields {
                preprocess: Some(preprocess.clone()),
                text: None,
            },
            InputSpec::Text(text) => Fields {
                preprocess: None,
                text: Some(text.clone()),
            },
        };
        fields.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<InputSpec, D::Error> {
        match Fields::deserialize(deserializer)? {
            Fields {
                preprocess: Some(preprocess),
                ..
            } => Ok(InputSpec::Image(preprocess)),
            Fields {
                text: Some(text), ..
            } => Ok(InputSpec::Text(text)),
            _ => Err(D::Error::custom(
                "it says neither how images are preprocessed nor how texts are tokenized",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredTraining", into = "StoredTraining")]
pub struct TrainingInfo {
    pub head: HeadKind,
    pub chosen_c: Option<f64>,
    pub cv_accuracy: f64,
    pub folds: usize,
    pub class_weight: ClassWeight,
    /// The logistic head's solver (absent for other heads and in bundles from before it could be chosen).
    pub solver: Option<Solver>,
    pub seed: u64,
    pub knn_k: Option<usize>,
    /// Open-set rejection's settings (its reference embeddings are an array of the bundle).
    pub open_set: Option<OpenSetInfo>,
    /// Whether the bundle keeps its training embeddings (older headstarts ignore them).
    pub keeps_embeddings: bool,
    pub samples: usize,
    /// sha256 (first 16 hex digits) of the training embeddings and labels.
    pub dataset_fingerprint: String,
    pub headstart_version: String,
    /// UTC, RFC 3339.
    pub date: String,
}

/// [`TrainingInfo`] as the file stores it: a multi-label head is the logistic kind with `multi_label` set, as
/// format 2 wrote it.
#[derive(Serialize, Deserialize)]
struct StoredTraining {
    head: HeadKind,
    chosen_c: Option<f64>,
    cv_accuracy: f64,
    folds: usize,
    class_weight: ClassWeight,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    solver: Option<Solver>,
    seed: u64,
    knn_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_set: Option<OpenSetInfo>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    multi_label: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    keeps_embeddings: bool,
    samples: usize,
    dataset_fingerprint: String,
    headstart_version: String,
    date: String,
}

impl From<StoredTraining> for TrainingInfo {
    fn from(stored: StoredTraining) -> Self {
        TrainingInfo {
            head: match (stored.head, stored.multi_label) {
                (HeadKind::Logistic, true) => HeadKind::MultiLabel,
                (head, _) => head,
            },
            chosen_c: stored.chosen_c,
            cv_accuracy: stored.cv_accuracy,
            folds: stored.folds,
            class_weight: stored.class_weight,
            solver: stored.solver,
            seed: stored.seed,
            knn_k: stored.knn_k,
            open_set: stored.open_set,
            keeps_embeddings: stored.keeps_embeddings,
            samples: stored.samples,
            dataset_fingerprint: stored.dataset_fingerprint,
            headstart_version: stored.headstart_version,
            date: stored.date,
        }
    }
}

impl From<TrainingInfo> for StoredTraining {
    fn from(info: TrainingInfo) -> Self {
        let multi_label = info.head == HeadKind::MultiLabel;
        StoredTraining {
            head: if multi_label {
                HeadKind::Logistic
            } else {
                info.head
            },
            chosen_c: info.chosen_c,
            cv_accuracy: info.cv_accuracy,
            folds: info.folds,
            class_weight: info.class_weight,
            solver: info.solver,
            seed: info.seed,
            knn_k: info.knn_k,
            open_set: info.open_set,
            multi_label,
            keeps_embeddings: info.keeps_embeddings,
            samples: info.samples,
            dataset_fingerprint: info.dataset_fingerprint,
            headstart_version: info.headstart_version,
            date: info.date,
        }
    }
}

/// How a bundle rejects inputs far from its training data ([`Novelty`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSetInfo {
    pub k: usize,
    /// The fraction of known inputs the threshold was asked to reject.
    pub rate: f64,
    /// Novelty scores above this are unknown.
    pub threshold: f32,
    /// The fraction of out-of-fold training inputs the threshold rejects.
    pub false_rejection: f64,
    /// Training embeddings kept as the reference.
    pub reference: usize,
}

impl OpenSetInfo {
    pub fn of(novelty: &Novelty, rate: f64) -> Self {
        OpenSetInfo {
            k: novelty.k,
            rate,
            threshold: novelty.threshold,
            false_rejection: novelty.false_rejection,
            reference: novelty.reference.nrows(),
        }
    }
}
