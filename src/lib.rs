//! headstart: transfer learning without backprop. A frozen, pretrained ONNX backbone turns images or texts
//! into embeddings; a small classifier learns the user's classes from them.
//!
//! The modules follow the data path: [`dataset`] (files) → [`decode`] → [`preprocess`] → [`backbone`]
//! (ONNX Runtime session, [`pooling`]) → [`embed`] (batched pipeline, [`cache`], [`npz`] output) → [`head`]
//! (training, [`metrics`]) → [`bundle`] → [`classifier`] (prediction). [`workflow`] strings them together. [`runtime`] finds and loads ONNX Runtime, [`zoo`] and [`fetch`] provide verified backbones
//! from package registries, [`onnx`] reads and edits ONNX files.

pub mod atomic;
pub mod backbone;
pub mod bundle;
pub mod cache;
pub mod classifier;
pub mod dataset;
pub mod datasets;
pub mod decode;
pub mod demo;
pub mod embed;
pub mod error;
pub mod export;
pub mod fetch;
pub mod head;
pub mod home;
pub mod metrics;
pub mod npz;
pub mod onnx;
pub mod pooling;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod textdata;
pub mod textembed;
pub mod workflow;
pub mod zoo;

pub use backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
pub use error::{Error, Result};
