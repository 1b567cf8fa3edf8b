//! Text backbones: `tokenizers` turns texts into token ids (truncated to the model's maximum length, padded
//! per batch), the model makes token vectors, pooling makes one vector per text.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::value::{TensorElementType, TensorRef};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{
    BackboneIdentity, BackboneOptions, BackboneRef, LoadedModel, pool_features, tensor_shape,
};
use crate::error::{Error, Result};
use crate::preprocess::Layout;
use crate::zoo;

/// Used when neither the zoo nor the tokenizer file says how long inputs may be.
const DEFAULT_MAX_LENGTH: usize = 512;

pub struct TextBackbone {
    model: LoadedModel,
    tokenizer: Tokenizer,
    max_length: usize,
    has_attention_mask: bool,
    has_token_type_ids: bool,
}

impl TextBackbone {
    /// Opens a text backbone; `tokenizer` is a `tokenizer.json` (default: the zoo's, or one beside the model).
    pub fn open(
        backbone: &BackboneRef,
        tokenizer: Option<&Path>,
        options: &BackboneOptions,
    ) -> Result<Self> {
        let model = LoadedModel::open(backbone, options)?;
        let (tokenizer_path, zoo_max_length) = match (tokenizer, &model.zoo) {
            (Some(path), zoo) => (
                path.to_path_buf(),
                zoo.as_ref()
                    .and_then(|z| z.text.as_ref())
                    .map(|t| t.max_length),
            ),
            (None, Some(zoo_model)) => {
                let text = zoo_model.text.as_ref().ok_or_else(|| {
                    Error::Config(format!(
                        "{} is an image backbone; drop --text or pick a text model",
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
        // Pad each batch to its longest text, not to a fixed length.
        let padding = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..padding
        }));

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
            max_length,
            has_attention_mask,
            has_token_type_ids,
        })
    }

    pub fn identity(&self) -> &BackboneIdentity {
        &self.model.identity
    }

    /// The zoo name or path it was opened from.
    pub fn source(&self) -> &str {
        &self.model.source
    }

    /// Texts longer than this many tokens are truncated.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Embeds texts: one row per text.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        if texts.is_empty() {
            return Ok(Array2::zeros((0, 0)));
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Config(format!("tokenizer failed: {e}")))?;
        let n = encodings.len();
        let tokens = encodings.first().map_or(0, |e| e.get_ids().len());
        let column = |get: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            encodings
                .iter()
                .flat_map(|e| get(e).iter().map(|&v| v as i64))
                .collect()
        };
        let ids = column(tokenizers::Encoding::get_ids);
        let mask = column(tokenizers::Encoding::get_attention_mask);
        let type_ids = column(tokenizers::Encoding::get_type_ids);
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
        let (out_shape, data) = outputs[self.model.output.as_str()].try_extract_tensor::<f32>()?;
        let (dim, values) = pool_features(
            &self.model.identity,
            &self.model.path,
            (out_shape, data),
            Layout::Nchw,
            Some(&mask),
        )?;
        Array2::from_shape_vec((n, dim), values)
            .map_err(|e| Error::Ort(format!("unexpected output size: {e}")))
    }
}

fn beside(model: &Path) -> Result<PathBuf> {
    let candidate = model.with_file_name("tokenizer.json");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::Config(format!(
            "{}: no tokenizer.json beside it; pass --tokenizer PATH",
            model.display()
        )))
    }
}
