//! Data → embeddings: the image pipeline (parallel decode, batched inference), the text pipeline
//! (length-bucketed batches), the content-addressed cache both share, and the `.npz` files sets are kept in.
//! [`embed`] takes either kind of data to the backbone made for it.

mod batches;
pub mod cache;
mod images;
pub mod npz;
pub mod parquet;
mod set;
mod texts;

pub use crate::metrics::cosine;
pub use cache::EmbeddingCache;
pub use images::embed_images;
pub use set::{EmbedOptions, EmbedSummary, EmbeddedSet, SkipReport, StageTimes, feature_metadata};
pub use texts::embed_texts;

use crate::backbone::Backbone;
use crate::data::Data;
use crate::error::{Error, Result};

impl EmbeddedSet {
    /// Reads embeddings made earlier: a Parquet file or a folder of Parquet shards
    /// ([`parquet::read_parquet`]), else an `.npz`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        if crate::data::is_parquet(path) {
            parquet::read_parquet(path)
        } else {
            Self::read_npz(path)
        }
    }
}

/// Embeds `data` with `backbone`: every image of a folder or every text of a table, through the cache.
/// `progress(done, total)` is called as inputs complete. Embeddings read from an `.npz` come back as they are
/// (after checking that this backbone made them), with no summary.
pub fn embed(
    data: &Data,
    backbone: &mut Backbone,
    options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    let (set, summary) = match (data, backbone) {
        (Data::Images(files), Backbone::Image(backbone)) => {
            images::embed_images(files, backbone, options, progress)?
        }
        (Data::Texts(texts), Backbone::Text(backbone)) => {
            texts::embed_texts(texts, backbone, options, progress)?
        }
        (Data::Embeddings(path), backbone) => {
            let set = EmbeddedSet::read(path)?;
            backbone.features().check(&set.features)?;
            return Ok((set, None));
        }
        (data, backbone) => {
            return Err(Error::InputMismatch {
                trained: backbone.modality(),
                given: data
                    .modality()
                    .expect("only embeddings files have no modality"),
            });
        }
    };
    Ok((set, Some(summary)))
}
