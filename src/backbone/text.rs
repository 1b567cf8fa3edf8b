//! Text backbones: `tokenizers` turns texts into token ids (truncated to the model's maximum length), each
//! batch is padded to its longest text, the model makes token vectors, pooling makes one vector per text.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::value::{TensorElementType, TensorRef};
use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::{
    BackboneIdentity, BackboneOptions, BackboneRef, LoadedModel, ModelFile, pool_features,
    tensor_shape,
};
use crate::error::{Error, Result};
use crate::preprocess::Layout;
use crate::zoo;

/// Used when neither the zoo nor the tokenizer file says how long inputs may be.
const DEFAULT_MAX_LENGTH: usize = 512;

/// How texts become token ids: part of what a head trained on the embeddings depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInput {
    /// sha256 of the `tokenizer.json`.
    pub tokenizer_sha256: String,
    /// The tokenizer the user named; `None`: the zoo's, or the one beside the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_source: Option<String>,
    /// Longer texts are truncated to this many tokens.
    pub max_length: usize,
}

pub struct TextBackbone {
    pub(super) model: LoadedModel,
    tokenizer: Tokenizer,
    input: TextInput,
    pad_id: i64,
    has_attention_mask: bool,
    has_token_type_ids: bool,
}

impl TextBackbone {
    /// Opens `reference` as a text backbone ([`super::Backbone::open`] opens either kind).
    pub fn open(reference: &BackboneRef, options: &BackboneOptions) -> Result<Self> {
        Self::load(ModelFile::read(reference)?, options)
    }

    /// Loads a text backbone with `options.tokenizer` (default: the zoo's, or the one beside the model).
    pub(crate) fn load(file: ModelFile, options: &BackboneOptions) -> Result<Self> {
        let model = LoadedModel::load(file, options, &[])?;
        let tokenizer = options.tokenizer.as_deref();
        let (tokenizer_path, zoo_max_length) = match (tokenizer, &model.zoo) {
            (Some(path), zoo) => (
                path.to_path_buf(),
                zoo.as_ref()
                    .and_then(|z| z.text.as_ref())
                    .map(|t| t.max_length),
            ),
            (None, Some(zoo_model)) => {
                let text = zoo_model.text.as_ref().ok_or_else(|| {
                    Error::Unsupported(format!(
                        "{} is an image backbone, not a text model",
                        zoo_model.name
                    ))
                })?;
                (
                    zoo::registry_path(&zoo_model.name, &text.tokenizer)?,
                    Some(text.max_length),
                )
            }
            (None, None) => (beside(&model.path)?, None),
        };
        let tokenizer_source = tokenizer.map(|p| p.display().to_string());
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            Error::input(&tokenizer_path, format!("not a usable tokenizer.json: {e}"))
        })?;
        let max_length = zoo_max_length
            .or_else(|| tokenizer.get_truncation().map(|t| t.max_length))
            .unwrap_or(DEFAULT_MAX_LENGTH);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| {
                Error::input(
                    &tokenizer_path,
                    format!("cannot truncate to {max_length}: {e}"),
                )
            })?;
        // Batches are padded here, to their longest text, so the tokenizer's own padding is turned off.
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id) as i64;
        tokenizer.with_padding(None);
        let input = TextInput {
            tokenizer_sha256: crate::hash::sha256_file(&tokenizer_path)?,
            tokenizer_source,
            max_length,
        };

        let mut has_ids = false;
        let (mut has_attention_mask, mut has_token_type_ids) = (false, false);
        for input in model.session.inputs() {
            let is_int64_matrix =
                matches!(tensor_shape(input), Some((TensorElementType::Int64, s)) if s.len() == 2);
            match input.name() {
                "input_ids" if is_int64_matrix => has_ids = true,
                "attention_mask" if is_int64_matrix => has_attention_mask = true,
                "token_type_ids" if is_int64_matrix => has_token_type_ids = true,
                other => {
                    return Err(Error::model(
                        &model.path,
                        format!(
                            "input '{other}' ({}) is not a text input: a text backbone takes int64 [batch, tokens] \
                             input_ids, attention_mask and token_type_ids",
                            input.dtype()
                        ),
                    ));
                }
            }
        }
        if !has_ids {
            return Err(Error::model(
                &model.path,
                "has no input_ids input: not a text model",
            ));
        }
        Ok(TextBackbone {
            model,
            tokenizer,
            input,
            pad_id,
            has_attention_mask,
            has_token_type_ids,
        })
    }

    /// Where it runs.
    pub fn device(&self) -> &crate::runtime::DeviceUsed {
        &self.model.device
    }

    /// Where ONNX Runtime put the nodes of a CUDA session (`None` on the CPU, or when it did not say).
    pub fn placement(&self) -> Option<&crate::runtime::Placement> {
        self.model.placement.as_ref()
    }

    pub fn identity(&self) -> &BackboneIdentity {
        &self.model.identity
    }

    /// The zoo name or path it was opened from.
    pub(crate) fn source(&self) -> &BackboneRef {
        &self.model.source
    }

    /// Texts longer than this many tokens are truncated.
    pub fn max_length(&self) -> usize {
        self.input.max_length
    }

    /// Whether the model takes an attention mask (masked mean pooling needs one).
    pub(crate) fn has_attention_mask(&self) -> bool {
        self.has_attention_mask
    }

    pub fn input(&self) -> &TextInput {
        &self.input
    }

    /// Token ids of each text, truncated to [`Self::max_length`]. Only a prefix of a long text is tokenized
    /// (the tokenizer's work and memory grow with the whole text): it is cut where whitespace starts, so the
    /// tokens before the cut are those of the whole text, and grown until it fills `max_length` tokens or
    /// reaches [`MAX_BYTES_PER_TOKEN`] bytes a token, past which a text is cut.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokenized>> {
        let max_length = self.input.max_length.max(1);
        let mut limit = max_length.saturating_mul(FIRST_BYTES_PER_TOKEN);
        let mut prefixes: Vec<&str> = texts.iter().map(|t| prefix(t, limit)).collect();
        let mut encodings = self.encode(&prefixes)?;
        loop {
            let short: Vec<usize> = (0..texts.len())
                .filter(|&i| {
                    prefixes[i].len() < texts[i].len() && encodings[i].get_overflowing().is_empty()
                })
                .collect();
            if short.is_empty() || limit >= max_length.saturating_mul(MAX_BYTES_PER_TOKEN) {
                break;
            }
            limit = limit.saturating_mul(4);
            for &i in &short {
                prefixes[i] = prefix(texts[i], limit);
            }
            let longer = self.encode(&short.iter().map(|&i| prefixes[i]).collect::<Vec<_>>())?;
            for (i, encoding) in short.into_iter().zip(longer) {
                encodings[i] = encoding;
            }
        }
        Ok(encodings
            .into_iter()
            .zip(texts.iter().zip(prefixes))
            .map(|(mut encoding, (text, prefix))| {
                let overflowed = !encoding.take_overflowing().is_empty();
                Tokenized {
                    encoding,
                    truncated: overflowed || prefix.len() < text.len(),
                }
            })
            .collect())
    }

    fn encode(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Config(format!("tokenizer failed: {e}")))
    }

    /// Embeds texts: one row per text.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let tokens = self.tokenize(texts)?;
        self.embed_encodings(&tokens.iter().map(|t| &t.encoding).collect::<Vec<_>>())
    }

    /// Embeds tokenized texts as one batch, padded to its longest: one row per encoding.
    pub(crate) fn embed_encodings(&mut self, encodings: &[&Encoding]) -> Result<Array2<f32>> {
        let n = encodings.len();
        let tokens = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        if n == 0 || tokens == 0 {
            return Ok(Array2::zeros((n, 0)));
        }
        let padded = |get: fn(&Encoding) -> &[u32], pad: i64| -> Vec<i64> {
            let mut out = Vec::with_capacity(n * tokens);
            for encoding in encodings {
                let values = get(encoding);
                out.extend(values.iter().map(|&v| i64::from(v)));
                out.extend(std::iter::repeat_n(pad, tokens - values.len()));
            }
            out
        };
        let ids = padded(Encoding::get_ids, self.pad_id);
        let mask = padded(Encoding::get_attention_mask, 0);
        let type_ids = padded(Encoding::get_type_ids, 0);
        let shape = [n as i64, tokens as i64];
        let mut inputs = vec![(
            "input_ids",
            TensorRef::from_array_view((shape, ids.as_slice()))?,
        )];
        if self.has_attention_mask {
            inputs.push((
                "attention_mask",
                TensorRef::from_array_view((shape, mask.as_slice()))?,
            ));
        }
        if self.has_token_type_ids {
            inputs.push((
                "token_type_ids",
                TensorRef::from_array_view((shape, type_ids.as_slice()))?,
            ));
        }
        let outputs = self.model.session.run(inputs)?;
        let (dim, values) = pool_features(
            &self.model.identity,
            &self.model.path,
            &outputs,
            Layout::Nchw,
            Some(&mask),
        )?;
        Array2::from_shape_vec((n, dim), values)
            .map_err(|e| Error::model(&self.model.path, format!("unexpected output size: {e}")))
    }
}

/// A text's token ids, and whether tokens (or bytes, past [`MAX_BYTES_PER_TOKEN`]) were left out.
pub struct Tokenized {
    pub encoding: Encoding,
    pub truncated: bool,
}

/// A long text is first tokenized up to this many bytes per token it may keep: English runs 4-6.
const FIRST_BYTES_PER_TOKEN: usize = 16;

/// No more of a text than this many bytes per token it may keep is tokenized: a text that needs more is
/// mostly whitespace or one endless word, and is cut.
pub const MAX_BYTES_PER_TOKEN: usize = 1024;

/// The first `limit` bytes of `text` or fewer, cut where a run of whitespace starts (or, in a word longer
/// than `limit`, at a character).
fn prefix(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // The last place at or before `end` where whitespace follows a word.
    let mut space_follows = text[end..].starts_with(char::is_whitespace);
    for (at, c) in text[..end].char_indices().rev() {
        if space_follows && !c.is_whitespace() {
            return &text[..at + c.len_utf8()];
        }
        space_follows = c.is_whitespace();
    }
    &text[..end]
}

fn beside(model: &Path) -> Result<PathBuf> {
    let candidate = model.with_file_name("tokenizer.json");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::TokenizerNotFound {
            model: model.to_path_buf(),
        })
    }
}
