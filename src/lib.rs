//! headstart: transfer learning without backprop. A frozen, pretrained ONNX backbone turns images or texts
//! into embeddings; a small classifier learns the user's classes from them.
//!
//! The modules follow the data path: [`data`] (files → images, texts; [`Data::open`] tells which) →
//! [`preprocess`] and [`augment`] → [`backbone`] (the ONNX Runtime session, [`pooling`]) → [`embeddings`]
//! (pipelines, cache, `.npz`) → [`head`] (training, [`metrics`]) → [`bundle`] → [`classifier`] (prediction)
//! → [`export`]. [`workflow`] strings them together for the command line and for library users alike.
//! [`runtime`] finds and loads ONNX Runtime; [`zoo`] and [`fetch`] provide verified backbones from package
//! registries; [`onnx`] reads and edits ONNX files.
//!
//! The four things a Rust program does with it:
//!
//! ```no_run
//! use headstart::prelude::*;
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

pub(crate) mod atomic;
pub mod augment;
pub mod backbone;
pub mod bundle;
pub mod classifier;
pub mod data;
pub mod datasets;
pub mod embeddings;
pub mod error;
pub mod export;
pub mod fetch;
pub(crate) mod hash;
pub mod head;
pub mod home;
pub mod metrics;
pub mod modality;
pub mod onnx;
pub(crate) mod panics;
pub mod pooling;
pub mod preprocess;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod workflow;
pub mod zoo;

pub use prelude::*;

/// What a library user needs for the whole job: open data, embed it, train, save, load, predict, export. The
/// crate's root re-exports the same names.
pub mod prelude {
    pub use crate::augment::Augment;
    pub use crate::backbone::{Backbone, BackboneOptions, BackboneRef, Features, InputSpec};
    pub use crate::bundle::Bundle;
    pub use crate::classifier::{Classifier, PredictOptions, Predicted, Prediction};
    pub use crate::data::{Data, TextOptions};
    pub use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed};
    pub use crate::error::{Error, Result};
    pub use crate::export::ExportOptions;
    pub use crate::head::{HeadKind, TrainParams};
    pub use crate::modality::Modality;
    pub use crate::runtime::{Device, RuntimeOptions};
    pub use crate::workflow;
}
