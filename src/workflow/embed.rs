//! Embeddings for the flows: a backbone opened (and int8-calibrated) for the data, then the data embedded
//! through the cache; an .npz is read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::augment::Augment;
use crate::backbone::calibrate::calibrate_images;
use crate::backbone::{Backbone, BackboneOptions, BackboneRef, ModelFile};
use crate::data::{Data, Shard};
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed, parquet};
use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::runtime::Precision;

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
    let reference = BackboneRef::given_or_default(backbone, modality);
    let reusable = opened
        .as_ref()
        .is_some_and(|b| b.modality() == modality && b.source() == &reference);
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
    let modality = modality_to_embed(data)?;
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

/// The modality of data a backbone is to embed; embeddings read from a file have none.
fn modality_to_embed(data: &Data) -> Result<Modality> {
    data.modality().ok_or_else(|| {
        Error::Unsupported("embeddings read from a file need no backbone to make them".into())
    })
}

/// Embeddings of inputs named one by one (images or texts, see [`Data`]), one row each in the order given,
/// through the cache: an answer for every input or an error naming the first that cannot be embedded. Image
/// files are opened before the backbone is, so a wrong path never waits for a download.
pub fn embed_each(
    data: &Data,
    reference: &BackboneRef,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
) -> Result<EmbeddedSet> {
    let modality = modality_to_embed(data)?;
    if let Data::Images(files) = data {
        for item in &files.items {
            std::fs::File::open(&item.path).map_err(|e| Error::io(&item.path, e))?;
        }
    }
    let mut backbone = Backbone::open(reference, modality, options)?;
    // One row per input: no augmented views, and a skip is the input's error.
    let one_each = embed_options
        .clone()
        .augment(Augment::default())
        .strict(false);
    let (set, summary) = embed(data, &mut backbone, &one_each, &mut |_, _| {})?;
    if let Some(skip) = summary.as_ref().and_then(|s| s.skipped.first()) {
        return Err(Error::input(&skip.path, skip.reason.clone()));
    }
    Ok(set)
}

/// What [`embed_parquet_shard`] did: the shard's file, and what it embedded into it (`None` when an earlier run
/// had finished the shard with the same backbone configuration).
pub struct ParquetShard {
    pub file: PathBuf,
    pub embedded: Option<(EmbeddedSet, Option<EmbedSummary>)>,
}

/// Embeds shard `shard` of `data` (a folder or a text table) into `dir` as one Parquet file with a row per
/// input, the skipped ones with their reason (see [`parquet::write_parquet`]); a shard an earlier run finished
/// with the same backbone configuration is left as it is.
pub fn embed_parquet_shard(
    data: Data,
    shard: Shard,
    dir: &Path,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ParquetShard> {
    let modality = data.modality().ok_or_else(|| {
        Error::Unsupported(
            "embeddings read from a file are embedded already: give a folder or a text table"
                .into(),
        )
    })?;
    let reference = BackboneRef::given_or_default(backbone, modality);
    let data = data.shard(shard);
    let file = parquet::shard_path(dir, shard);
    // The backbone first: a finished shard is known by the backbone that made it.
    let mut backbone = open_backbone(&reference, &data, options, embed_options)?;
    if parquet::is_finished(&file, &backbone.features())? {
        return Ok(ParquetShard {
            file,
            embedded: None,
        });
    }
    let (set, summary) = embed(&data, &mut backbone, embed_options, progress)?;
    let skipped = summary.as_ref().map_or(&[][..], |s| &s.skipped[..]);
    parquet::write_parquet(&set, skipped, &file)?;
    Ok(ParquetShard {
        file,
        embedded: Some((set, summary)),
    })
}
