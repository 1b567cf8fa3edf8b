//! headstart: transfer learning without backprop. A frozen, pretrained ONNX backbone turns images or texts
//! into embeddings; a small classifier learns the user's classes from them.
//!
//! The public modules follow the data path: [`data`] (files → images, texts; [`Data::open`] tells which) →
//! [`backbone`] (preprocessing, the ONNX Runtime session, pooling) → [`embeddings`] (pipelines, cache, `.npz`,
//! Parquet) → [`head`] (training, cross-validation, novelty) → [`bundle`] → [`classifier`] (prediction) →
//! [`export`]; [`audit`] finds what is wrong with labelled embeddings before a head is trained on them.
//! [`workflow`] strings them together for the command line, Python and library users alike.
//! [`runtime`] finds and loads ONNX Runtime; [`zoo`] and [`datasets`] name verified backbones and demo data from
//! package registries, fetched into the [`home`] folder.
//!
//! The four things a Rust program does with it:
//!
//! ```no_run
//! use headstart::*;
//!
//! # fn main() -> headstart::Result<()> {
//! // Embed a folder (one sub-folder per class) with the default backbone, through the cache.
//! let data = Data::open("photos/".as_ref(), &TextOptions::default())?;
//! let no_progress = &mut |_, _| {};
//! let (set, _summary) = workflow::embeddings_for(
//!     &data, None, &BackboneOptions::default(), &EmbedOptions::default(), no_progress)?;
//!
//! // Train a head (logistic, its regularisation cross-validated) and save the bundle.
//! let trained = workflow::train_bundle(&set, None, &TrainParams::default())?;
//! trained.bundle.save("photos.hs".as_ref())?;
//!
//! // Predict new files: the top classes, and `None` ("unknown") below 60 %.
//! let mut classifier = Classifier::load("photos.hs".as_ref(), &RuntimeOptions::default(), None)?;
//! let options = PredictOptions::default().min_confidence(0.6);
//! let predicted = classifier.predict(&Data::image_files(&["new.jpg".into()]), &options, no_progress)?;
//! for (path, answer) in &predicted.rows {
//!     println!("{path}: {}", answer.label.as_deref().unwrap_or("unknown"));
//! }
//!
//! // Export one ONNX file for a device: 8-bit RGB pixels in, class probabilities out.
//! let export = ExportOptions::default().raw_input(true);
//! headstart::export::export(
//!     "photos.hs".as_ref(), None, &RuntimeOptions::default(), &export, "photos.onnx".as_ref())?;
//! # Ok(())
//! # }
//! ```

/// Builder methods for an options struct, one per field named: `.field(value)` sets it (an `Option` field from
/// its value). Options structs are `#[non_exhaustive]`, so a new field never breaks a user.
macro_rules! setters {
    ($options:ty { $($field:ident: $value:ty),* $(,)? }) => {
        impl $options {
            $(
                pub fn $field(mut self, $field: $value) -> Self {
                    self.$field = $field.into();
                    self
                }
            )*
        }
    };
}

// The public modules follow the data path: files → backbone → embeddings → head → bundle → classifier / export,
// with the flows that chain them in `workflow`. The rest is plumbing, reached through re-exports.
mod atomic;
pub mod audit;
mod augment;
pub mod backbone;
pub mod bundle;
pub mod classifier;
pub mod data;
pub mod datasets;
pub mod embeddings;
mod error;
pub mod export;
mod fetch;
mod hash;
pub mod head;
mod home_dir;
mod metrics;
mod modality;
mod onnx;
mod panics;
mod pooling;
mod preprocess;
mod rng;
pub mod runtime;
pub mod workflow;
pub mod zoo;

/// The folder where headstart keeps what it fetches and caches (`HEADSTART_HOME`, else the per-user cache
/// directory): what is in it and clearing it, and fetching pinned, sha256-verified registry files into it (the
/// Python that tests and benches run, a package's file).
pub mod home {
    pub use crate::fetch::{RegistryFile, ensure, python, python_packages};
    pub use crate::home_dir::{Cleared, MARKER, PartUsage, clear, home, usage};
}

// What a library user needs for the whole job: open data, embed it, train, save, load, predict, export.
pub use augment::Augment;
pub use backbone::{Backbone, BackboneOptions, BackboneRef, Features, InputSpec};
pub use bundle::Bundle;
pub use classifier::{Classifier, PredictOptions, Predicted, Prediction};
pub use data::{Data, TextOptions};
pub use embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed};
pub use error::{Error, Result};
pub use export::ExportOptions;
pub use head::{HeadKind, TrainParams};
pub use modality::Modality;
pub use runtime::{Device, RuntimeOptions};
