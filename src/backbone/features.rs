//! What made a set of embeddings, and whether a head trained on one set of features can take another.

use crate::error::{Error, Result};

use super::{BackboneIdentity, BackboneRef, Calibration, InputSpec};

/// What made a set of embeddings: the backbone as the user named it, what identifies the vectors it makes
/// (model file, tensors, pooling, normalisation, precision), and how inputs became its tensors. Embeddings,
/// backbones and heads work together only when their features are the same ([`Features::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// A zoo name or a path, to open the backbone again.
    pub source: BackboneRef,
    pub backbone: BackboneIdentity,
    pub input: InputSpec,
}

impl Features {
    /// Refuses `given` (another set's features, or an opened backbone's) unless a head trained on these
    /// serves it: the same model file by content, tensors, pooling, normalisation and precision, and inputs
    /// made the same way. The error says what differs, naming `given`'s backbone as the user did.
    pub fn check(&self, given: &Features) -> Result<()> {
        check_same_backbone(&self.backbone, &given.backbone, &given.source)?;
        check_same_input(&self.input, &given.input)
    }

    /// [`Self::check`] of the backbone alone, before it is opened: `given` is the identity of the file at
    /// `source` with these settings.
    pub(crate) fn check_backbone(
        &self,
        given: &BackboneIdentity,
        source: &BackboneRef,
    ) -> Result<()> {
        check_same_backbone(&self.backbone, given, source)
    }
}

/// A head only means something on the features it was trained on: the same model file (by content) with the
/// same output, layer, pooling and normalisation. The name comes from wherever the file was found.
fn check_same_backbone(
    trained: &BackboneIdentity,
    given: &BackboneIdentity,
    reference: &BackboneRef,
) -> Result<()> {
    let settings = |i: &BackboneIdentity| {
        (
            i.sha256.clone(),
            i.output.clone(),
            i.layer.clone(),
            i.joined.clone(),
            i.pooling,
            i.normalize,
            i.calibration.clone(),
        )
    };
    if settings(trained) == settings(given) {
        return Ok(());
    }
    let reference = reference.to_string();
    let short = |sha256: &str| sha256[..12.min(sha256.len())].to_string();
    let message = if trained.sha256 != given.sha256 {
        format!(
            "this bundle was trained on backbone {} (sha256 {}…) but {reference} has sha256 {}…: use the same backbone",
            trained.name,
            short(&trained.sha256),
            short(&given.sha256)
        )
    } else if trained.calibration != given.calibration {
        let describe = |c: &Option<Calibration>| match c {
            Some(c) => format!("int8 calibrated on {} inputs", c.inputs),
            None => "float".to_string(),
        };
        format!(
            "these features were made by {} with {} arithmetic, not {}: use the same precision (predict and export follow a bundle's own)",
            trained.name,
            describe(&trained.calibration),
            describe(&given.calibration)
        )
    } else {
        format!(
            "this bundle was trained on {} features {} pooling {:?}, not on {} pooling {:?}",
            trained.name,
            trained.tensors().collect::<Vec<_>>().join(" + "),
            trained.pooling,
            given.tensors().collect::<Vec<_>>().join(" + "),
            given.pooling
        )
    };
    Err(Error::BackboneMismatch { reference, message })
}

/// A head trained on inputs made as `trained` says only fits inputs made the same way: the same modality, and
/// the same preprocessing, or the same tokenizer (by content) and maximum length.
fn check_same_input(trained: &InputSpec, given: &InputSpec) -> Result<()> {
    let same = match (given, trained) {
        (InputSpec::Image(given), InputSpec::Image(trained)) => given == trained,
        (InputSpec::Text(given), InputSpec::Text(trained)) => {
            given.tokenizer_sha256 == trained.tokenizer_sha256
                && given.max_length == trained.max_length
        }
        _ => false,
    };
    if same {
        return Ok(());
    }
    Err(Error::InputMismatch {
        trained: trained.modality(),
        given: given.modality(),
    })
}
