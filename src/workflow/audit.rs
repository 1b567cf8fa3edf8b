//! Auditing a labelled folder or table: embed it (and the validation data, as it), name each input's content,
//! and look for what is wrong ([`crate::audit::audit`]).

use std::collections::HashMap;

use crate::audit::{Audit, AuditOptions, AuditSet, audit, embedding_identities};
use crate::backbone::{BackboneOptions, BackboneRef};
use crate::data::Data;
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet};
use crate::error::{Error, Result};
use crate::hash::{sha256_file, sha256_hex};

use super::train::{Validation, embed_split};

/// An audit and what embedding did for it.
pub struct AuditRun {
    pub audit: Audit,
    /// What embedding the data did; `None` for embeddings read from a file.
    pub summary: Option<EmbedSummary>,
}

/// Embeds `data` (and `validation`, with the same backbone) and audits it.
pub fn audit_data(
    data: &Data,
    validation: Option<&Data>,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    audit_options: &AuditOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AuditRun> {
    let held_out = match validation {
        Some(other) => Validation::Data(other),
        None => Validation::None,
    };
    let split = embed_split(data, &held_out, backbone, options, embed_options, progress)?;
    let content = contents(data, &split.train)?;
    let train = AuditSet {
        set: &split.train,
        content: &content,
    };
    let audit = match (validation, &split.validation) {
        (Some(other), Some(set)) => {
            let content = contents(other, set)?;
            let validation = AuditSet {
                set,
                content: &content,
            };
            audit(&train, Some(&validation), audit_options)?
        }
        _ => audit(&train, None, audit_options)?,
    };
    Ok(AuditRun {
        audit,
        summary: split.summary,
    })
}

/// Per row of `set`, the sha256 of its content: the file's bytes, the text, or (for embeddings read from a file,
/// whose inputs are not at hand) the embedding's values.
fn contents(data: &Data, set: &EmbeddedSet) -> Result<Vec<String>> {
    match data {
        Data::Images(files) => {
            let by_path: HashMap<&str, &std::path::Path> = files
                .items
                .iter()
                .map(|item| (item.relative.as_str(), item.path.as_path()))
                .collect();
            set.paths
                .iter()
                .map(|relative| match by_path.get(relative.as_str()) {
                    Some(path) => sha256_file(path),
                    None => Err(Error::input(
                        &files.root,
                        format!("{relative} was embedded but is not in the folder's listing"),
                    )),
                })
                .collect()
        }
        Data::Texts(texts) => {
            let by_id: HashMap<&str, &str> = texts
                .items
                .iter()
                .map(|item| (item.id.as_str(), item.text.as_str()))
                .collect();
            set.paths
                .iter()
                .map(|id| match by_id.get(id.as_str()) {
                    Some(text) => Ok(sha256_hex(text.as_bytes())),
                    None => Err(Error::input(
                        &texts.source,
                        format!("{id} was embedded but is not in the table"),
                    )),
                })
                .collect()
        }
        Data::Embeddings(_) => Ok(embedding_identities(set)),
    }
}
