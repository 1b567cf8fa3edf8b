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
//! ```no_run
//! use headstart::prelude::*;
//!
//! # fn main() -> headstart::Result<()> {
//! let data = Data::open("photos/".as_ref(), &TextOptions::default())?;
//! let (set, _) = workflow::embeddings_for(&data, None, &BackboneOptions::default(),
//!     &EmbedOptions::default(), &mut |_, _| {})?;
//! let trained = workflow::train_bundle(&set, None, &TrainParams::default())?;
//! trained.bundle.save("photos.hs".as_ref())?;
//! # Ok(())
//! # }
//! ```

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

pub use backbone::{Backbone, BackboneOptions, BackboneRef, InputSpec};
pub use bundle::Bundle;
pub use classifier::{Classifier, PredictOptions, Predicted, Prediction};
pub use data::{Data, TextOptions};
pub use embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed};
pub use error::{Error, Result};
pub use modality::Modality;

/// What a library user needs for the whole job: open data, embed it, train, save, load, predict.
pub mod prelude {
    pub use crate::augment::Augment;
    pub use crate::backbone::{Backbone, BackboneOptions, BackboneRef};
    pub use crate::bundle::Bundle;
    pub use crate::classifier::{Classifier, PredictOptions, Predicted, Prediction};
    pub use crate::data::{Data, TextOptions};
    pub use crate::embeddings::{EmbedOptions, EmbeddedSet, embed};
    pub use crate::error::{Error, Result};
    pub use crate::head::{HeadKind, TrainParams};
    pub use crate::modality::Modality;
    pub use crate::runtime::{Device, RuntimeOptions};
    pub use crate::workflow;
}
