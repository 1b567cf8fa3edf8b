//! Embeddings for the flows: a backbone opened (and int8-calibrated) for the data, then the data embedded
//! through the cache; an .npz is read.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::backbone::calibrate::calibrate_images;
use crate::backbone::{Backbone, BackboneOptions, BackboneRef, ModelFile};
use crate::data::Data;
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed};
use crate::error::{Error, Result};
use crate::runtime::Precision;
use crate::zoo;

/// Embeddings of `data`: embedded (through the cache) by `backbone`, by default the zoo's default for the
/// data's modality, or read from an `.npz`.
pub fn embeddings_for(
    data: &Data,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    let everything = HashSet::new();
    embeddings_reusing(
        data,
        backbone,
        options,
        embed_options,
        &everything,
        &mut None,
        progress,
    )
}

/// [`embeddings_for`] with the backbone `opened` before, when it is the one asked for: a session (seconds to
/// start on CUDA) is built once per job. The backbone opened here is left in `opened`. int8 calibration leaves
/// out the images at `held_out` (relative paths).
pub(super) fn embeddings_reusing(
    data: &Data,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    held_out: &HashSet<String>,
    opened: &mut Option<Backbone>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    if let Data::Embeddings(path) = data {
        return Ok((EmbeddedSet::read(path)?, None));
    }
    let modality = data
        .modality()
        .expect("only embeddings files have no modality");
    let reference = backbone
        .cloned()
        .unwrap_or_else(|| BackboneRef::Zoo(zoo::default_for(modality).name));
    let reusable = opened
        .as_ref()
        .is_some_and(|b| b.modality() == modality && b.source() == reference.to_string());
    let backbone = match opened {
        Some(backbone) if reusable => backbone,
        _ => opened.insert(open_calibrated(
            &reference,
            data,
            options,
            embed_options,
            held_out,
        )?),
    };
    embed(data, backbone, embed_options, progress)
}

/// Opens `reference` for `data`; int8 without ranges is calibrated on the data's images first.
pub fn open_backbone(
    reference: &BackboneRef,
    data: &Data,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
) -> Result<Backbone> {
    open_calibrated(reference, data, options, embed_options, &HashSet::new())
}

/// Whether opening a backbone with `options` calibrates it on the data first.
pub(super) fn calibrates(options: &BackboneOptions) -> bool {
    options.runtime.precision == Precision::Int8 && options.calibration.is_none()
}

/// [`open_backbone`], calibrating on the images not `held_out` (relative paths).
pub(super) fn open_calibrated(
    reference: &BackboneRef,
    data: &Data,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    held_out: &HashSet<String>,
) -> Result<Backbone> {
    let modality = data.modality().ok_or_else(|| {
        Error::Config("embeddings read from a file need no backbone to make them".into())
    })?;
    if !calibrates(options) {
        return Backbone::open(reference, modality, options);
    }
    let Data::Images(files) = data else {
        return Err(Error::parameter(
            "precision",
            "int8 is for image backbones so far; text backbones run in fp32 (or fp16 on CUDA)",
        ));
    };
    let paths: Vec<PathBuf> = files
        .items
        .iter()
        .filter(|item| !held_out.contains(&item.relative))
        .map(|item| item.path.clone())
        .collect();
    let calibration = calibrate_images(
        ModelFile::read(reference)?,
        options,
        &paths,
        options.calibrate,
        &embed_options.decode_options(),
    )?;
    let calibrated = BackboneOptions {
        calibration: Some(calibration),
        ..options.clone()
    };
    Backbone::open(reference, modality, &calibrated)
}
