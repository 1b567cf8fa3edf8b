//! The user's flows, shared by the CLI, the demo and the library: embeddings for a folder, a text table or an
//! `.npz`, a stratified train / validation split, training into a bundle, and evaluation. Prediction is
//! [`Classifier::predict`](crate::classifier::Classifier::predict).

mod audit;
mod embed;
mod evaluate;
mod features;
mod multi_label;
pub mod report;
mod review;
mod split;
mod train;

pub use crate::metrics::{ClassMetrics, Metrics};
pub use audit::{AuditRun, audit_data};
pub use embed::{ParquetShard, embed_each, embed_parquet_shard, embeddings_for, open_backbone};
pub use evaluate::{Evaluation, evaluate_bundle, evaluate_set};
pub use features::{
    Candidate, FeatureSearch, Scored, SearchEvent, SearchSettings, search_features,
};
pub use multi_label::{MultiLabelRun, train_multi_label};
pub use review::{HeldOutAnswer, Reviewed, train_reviewed};
pub use split::stratified_split;
pub use train::{
    TestedJob, TrainRun, Trained, Validation, train, train_and_test, train_bundle, train_from,
};
