//! One error type for the library. Every message is meant to be shown to a user as one line that says what
//! went wrong and, where there is one, what to do about it.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ONNX Runtime could not be found, fetched or loaded.
    #[error("{0}")]
    Runtime(String),
    /// A model file is missing, corrupt or does not fit the use it is put to.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// Fetching a file from a package registry failed.
    #[error("{0}")]
    Fetch(String),
    /// Options or configuration that cannot work together.
    #[error("{0}")]
    Config(String),
    /// An input (image, text) that cannot be used.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// ONNX Runtime refused or failed an operation.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
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
}

impl<R> From<ort::Error<R>> for Error {
    fn from(error: ort::Error<R>) -> Self {
        Error::Ort(error.message().to_string())
    }
}
