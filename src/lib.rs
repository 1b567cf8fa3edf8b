//! headstart: transfer learning without backprop. A frozen, pretrained ONNX backbone turns images or texts
//! into embeddings; a small classifier learns the user's classes from them.
//!
//! The modules follow the data path: [`preprocess`] → [`backbone`] (ONNX Runtime session, [`pooling`]) →
//! embeddings. [`runtime`] finds and loads ONNX Runtime, [`zoo`] and [`fetch`] provide verified backbones
//! from package registries, [`onnx`] reads and edits ONNX files.

pub mod atomic;
pub mod backbone;
pub mod decode;
pub mod demo;
pub mod error;
pub mod fetch;
pub mod home;
pub mod onnx;
pub mod pooling;
pub mod preprocess;
pub mod runtime;
pub mod zoo;

pub use backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
pub use error::{Error, Result};
