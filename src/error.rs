//! One error type for the library. Its variants are the conditions a caller may act on (a model file that is
//! not there, a bundle from a newer headstart, a backbone that does not match); each message is one line that
//! says what went wrong in the library's own words (fields and values, never command-line flags) and, where
//! there is one, what to do about it. Causes are kept as sources.

use std::path::{Path, PathBuf};

use crate::modality::Modality;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ONNX Runtime could not be found, fetched or loaded, or cannot use the chosen device.
    #[error("{0}")]
    Runtime(String),
    /// ONNX Runtime refused or failed an operation.
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    /// A model file that is not there.
    #[error("{}: no such file", path.display())]
    ModelNotFound { path: PathBuf },
    /// A model file that is corrupt or does not fit the use it is put to.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// An output or layer a model does not have; `similar` are names it has that contain the one asked for.
    #[error(
        "{}: no tensor named '{name}' in this model{}",
        path.display(),
        similar_names(similar)
    )]
    TensorNotFound {
        path: PathBuf,
        name: String,
        similar: Vec<String>,
    },
    /// A text model without a tokenizer: none beside it and none given.
    #[error("{}: no tokenizer.json beside it; give the tokenizer's path", model.display())]
    TokenizerNotFound { model: PathBuf },
    /// A bundle's backbone is not where the bundle says it is.
    #[error("{}: the bundle's backbone {backbone} is not there; give the backbone's path", bundle.display())]
    BundleBackboneNotFound { bundle: PathBuf, backbone: String },
    /// A bundle written by a newer headstart.
    #[error(
        "{}: written by a newer headstart (bundle format {found}; this one reads up to {supported}): upgrade headstart",
        path.display()
    )]
    BundleVersion {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    /// Embeddings or a backbone other than the one a bundle was trained on: another model file, or other
    /// feature settings (output, layer, pooling, normalisation).
    #[error("{message}")]
    BackboneMismatch {
        /// How the given backbone was named (a zoo name or a path).
        reference: String,
        message: String,
    },
    /// Inputs prepared otherwise than the ones a head was trained on.
    #[error("{}", input_mismatch(*trained, *given))]
    InputMismatch { trained: Modality, given: Modality },
    /// An int8 file asked of a bundle: one trained in fp32 calibrates on images like its training data, and
    /// none were given; one trained in int8 has its own calibration, and images were given.
    #[error("{}", int8_calibration(bundle, *trained_in_int8))]
    Int8Calibration {
        bundle: PathBuf,
        trained_in_int8: bool,
    },
    /// A parameter outside what it can be; `name` is the field of the options struct.
    #[error("{name} {message}")]
    InvalidParameter { name: &'static str, message: String },
    /// A text table without the column named for the text or the label.
    #[error(
        "{}: no column '{wanted}' (columns: {}); name the {role} column",
        path.display(),
        available.join(", ")
    )]
    MissingColumn {
        path: PathBuf,
        /// "text" or "label".
        role: &'static str,
        wanted: String,
        available: Vec<String>,
    },
    /// A linfa estimator failed while training a head.
    #[error("training the {head} head: {source}")]
    HeadFit {
        head: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("linfa: {0}")]
    Linfa(#[from] linfa::Error),
    /// Fetching a file from a package registry failed.
    #[error("{0}")]
    Fetch(String),
    /// Training data a head cannot learn from: unlabelled, a single class, rows and labels that do not match,
    /// values that are not finite, too many rows for the head.
    #[error("{0}")]
    TrainingData(String),
    /// A combination the library does not do: raw pixel input for a text bundle, evaluating a multi-label
    /// bundle on other data, adding examples to a head that cannot take them without its old data, ….
    #[error("{0}")]
    Unsupported(String),
    /// Data and a bundle that do not fit together: other classes, or embeddings of another size.
    #[error("{0}")]
    Incompatible(String),
    /// A served model asked for by a name that is not served.
    #[error("no model named '{0}' is served")]
    UnknownModel(String),
    /// A service's queue is full: the call may be tried again shortly.
    #[error("too many requests are waiting: try again shortly")]
    Busy,
    /// What is left: a failure inside headstart or a part it uses, or a setting of the machine.
    #[error("{0}")]
    Config(String),
    /// An input (image, text, table, bundle, .npz) that cannot be used.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn model(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn parameter(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            message: message.into(),
        }
    }
}

impl From<ort::Error<ort::session::builder::SessionBuilder>> for Error {
    fn from(error: ort::Error<ort::session::builder::SessionBuilder>) -> Self {
        Error::Ort(error.into())
    }
}

fn similar_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (similar: {})", names.join(", "))
    }
}

fn input_mismatch(trained: Modality, given: Modality) -> String {
    match (trained, given) {
        (Modality::Text, Modality::Image) => {
            "this model takes texts, and these are images or image embeddings".into()
        }
        (Modality::Image, Modality::Text) => {
            "this model takes images, and these are texts or text embeddings".into()
        }
        (Modality::Image, Modality::Image) => {
            "these embeddings were made with other preprocessing than the model's: embed the images again".into()
        }
        (Modality::Text, Modality::Text) => {
            "these embeddings were made with another tokenizer or maximum length than the model's: embed the texts again".into()
        }
    }
}

fn int8_calibration(bundle: &Path, trained_in_int8: bool) -> String {
    match trained_in_int8 {
        true => format!(
            "{} was trained in int8: it is exported with its own calibration, and calibration images do not apply",
            bundle.display()
        ),
        false => format!(
            "{} was trained in fp32: an int8 file of it is calibrated on images like its training data; give a folder of them (or train it in int8)",
            bundle.display()
        ),
    }
}
