//! The user's flows, shared by the CLI, the demo and the library: embeddings for a folder, a text table or an
//! `.npz`, a stratified train / validation split, training into a bundle, and evaluation.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

use crate::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use crate::bundle::{Bundle, BundleInfo, FORMAT_VERSION, TrainingInfo, utc_now};
use crate::classifier::check_same_backbone;
use crate::dataset;
use crate::embed::{EmbedOptions, EmbedSummary, EmbeddedSet, InputSpec, embed_dataset};
use crate::error::{Error, Result};
use crate::fetch::hex;
use crate::head::train::SplitMix64;
use crate::head::{HeadKind, TrainParams, TrainReport, train};
use crate::metrics::{Metrics, evaluate};
use crate::textdata::{self, Columns};
use crate::textembed::embed_texts;
use crate::zoo::{self, Modality};

/// How text data is read and tokenized.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    pub columns: Columns,
    /// A `tokenizer.json` for a text backbone outside the zoo (default: beside the model).
    pub tokenizer: Option<PathBuf>,
}

/// Embeddings of `input`: read from an `.npz`, or embedded (through the cache) from a folder of images, a
/// folder of `.txt` class folders, or a text table. `backbone` defaults to the zoo's default for the data.
pub fn embeddings_for(
    input: &Path,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    text: &TextOptions,
    embed: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    let default = |modality| BackboneRef::Zoo(zoo::default_for(modality).name);
    if textdata::is_text_data(input) {
        let data = textdata::load(input, &text.columns)?;
        let reference = backbone.cloned().unwrap_or_else(|| default(Modality::Text));
        let mut opened = TextBackbone::open(&reference, text.tokenizer.as_deref(), options)?;
        let (set, summary) = embed_texts(&data, &mut opened, embed, progress)?;
        Ok((set, Some(summary)))
    } else if input.is_dir() {
        let data = dataset::scan(input)?;
        let mut options = options.clone();
        options.runtime.intra_op_spinning = Some(false);
        let reference = backbone
            .cloned()
            .unwrap_or_else(|| default(Modality::Image));
        let mut opened = ImageBackbone::open(&reference, &options)?;
        let (set, summary) = embed_dataset(&data, &mut opened, embed, progress)?;
        Ok((set, Some(summary)))
    } else if input.is_file() {
        Ok((EmbeddedSet::read_npz(input)?, None))
    } else {
        Err(Error::input(
            input,
            "no such folder, text table (.csv, .tsv, .jsonl) or .npz file",
        ))
    }
}

/// Splits rows into (train, validation): a stratified, seeded `fraction` of the images goes to validation.
/// Augmented views follow their image, and validation keeps only original views.
pub fn stratified_split(
    set: &EmbeddedSet,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "--val-split must be between 0 and 1, got {fraction}"
        )));
    }
    let originals: Vec<usize> = (0..set.rows()).filter(|&i| !set.augmented[i]).collect();
    let mut rng = SplitMix64(seed);
    let mut held_out = std::collections::HashSet::new();
    for class in 0..set.class_names.len() as i64 {
        let mut members: Vec<usize> = originals
            .iter()
            .copied()
            .filter(|&i| set.labels[i] == class)
            .collect();
        rng.shuffle(&mut members);
        let take = ((members.len() as f64) * fraction).round() as usize;
        // A class with a single image stays in training.
        let take = take.min(members.len().saturating_sub(1));
        held_out.extend(members.into_iter().take(take).map(|i| set.paths[i].clone()));
    }
    let train = (0..set.rows())
        .filter(|&i| !held_out.contains(&set.paths[i]))
        .collect();
    let validation = originals
        .into_iter()
        .filter(|&i| held_out.contains(&set.paths[i]))
        .collect();
    Ok((train, validation))
}

/// The labelled rows as (matrix, classes); unlabelled data is an error.
fn labelled(set: &EmbeddedSet) -> Result<(Array2<f32>, Vec<usize>)> {
    if set.class_names.is_empty() || set.labels.iter().any(|&l| l < 0) {
        return Err(Error::Config(
            "training needs labelled data: one sub-folder per class, or a table with a label column (this data is unlabelled)"
                .into(),
        ));
    }
    Ok((
        set.matrix().to_owned(),
        set.labels.iter().map(|&l| l as usize).collect(),
    ))
}

pub struct Trained {
    pub bundle: Bundle,
    pub report: TrainReport,
    /// Metrics on the validation rows, when there are some.
    pub validation: Option<Metrics>,
}

/// Trains a head on `train` and, if given, measures it on `validation`.
pub fn train_bundle(
    train_set: &EmbeddedSet,
    validation: Option<&EmbeddedSet>,
    params: &TrainParams,
) -> Result<Trained> {
    let (x, y) = labelled(train_set)?;
    let (head, report) = train(x.view(), &y, &train_set.class_names, params)?;
    let fingerprint = {
        let mut hasher = Sha256::new();
        train_set
            .embeddings
            .iter()
            .for_each(|v| hasher.update(v.to_le_bytes()));
        train_set
            .labels
            .iter()
            .for_each(|l| hasher.update(l.to_le_bytes()));
        hex(&hasher.finalize())[..16].to_string()
    };
    let bundle = Bundle {
        head,
        temperature: report.temperature,
        info: BundleInfo {
            format_version: FORMAT_VERSION,
            class_names: train_set.class_names.clone(),
            backbone_source: train_set.backbone_source.clone(),
            backbone: train_set.backbone.clone(),
            preprocess: match &train_set.input {
                InputSpec::Image(preprocess) => Some(preprocess.clone()),
                InputSpec::Text(_) => None,
            },
            text: match &train_set.input {
                InputSpec::Text(text) => Some(text.clone()),
                InputSpec::Image(_) => None,
            },
            training: TrainingInfo {
                head: params.head,
                chosen_c: report.chosen_c,
                cv_accuracy: report.cv_accuracy,
                folds: params.folds,
                class_weight: params.class_weight,
                seed: params.seed,
                knn_k: (params.head == HeadKind::Knn).then_some(params.k),
                samples: y.len(),
                dataset_fingerprint: fingerprint,
                headstart_version: env!("CARGO_PKG_VERSION").into(),
                date: utc_now(),
            },
        },
    };
    let validation = validation
        .map(|v| evaluate_set(&bundle, v))
        .transpose()?
        .map(|(m, _)| m);
    Ok(Trained {
        bundle,
        report,
        validation,
    })
}

/// Metrics of a bundle on labelled embeddings made by the same backbone; also returns the probabilities.
pub fn evaluate_set(bundle: &Bundle, set: &EmbeddedSet) -> Result<(Metrics, Array2<f32>)> {
    check_same_backbone(&bundle.info.backbone, &set.backbone, &set.backbone_source)?;
    check_same_input(bundle, &set.input)?;
    if set.class_names != bundle.info.class_names {
        return Err(Error::Config(format!(
            "the data's classes {:?} differ from the bundle's {:?}",
            set.class_names, bundle.info.class_names
        )));
    }
    let (x, y) = labelled(set)?;
    if x.ncols() != bundle.head.dim() {
        return Err(Error::Config(format!(
            "embeddings have {} values, the head expects {}",
            x.ncols(),
            bundle.head.dim()
        )));
    }
    let probabilities = bundle.head.probabilities(x.view(), bundle.temperature);
    Ok((
        evaluate(&y, probabilities.view(), &bundle.info.class_names),
        probabilities,
    ))
}

/// The head expects inputs prepared as in training: the same modality, preprocessing or tokenizer.
fn check_same_input(bundle: &Bundle, input: &InputSpec) -> Result<()> {
    let same = match (input, &bundle.info.preprocess, &bundle.info.text) {
        (InputSpec::Image(p), Some(trained), _) => p == trained,
        (InputSpec::Text(t), _, Some(trained)) => {
            t.tokenizer_sha256 == trained.tokenizer_sha256 && t.max_length == trained.max_length
        }
        _ => false,
    };
    if same {
        return Ok(());
    }
    Err(Error::Config(match input {
        InputSpec::Image(_) if bundle.info.text.is_some() => {
            "this bundle classifies texts, and these are image embeddings".into()
        }
        InputSpec::Text(_) if bundle.info.preprocess.is_some() => {
            "this bundle classifies images, and these are text embeddings".into()
        }
        InputSpec::Image(_) => {
            "these embeddings were made with other preprocessing than the bundle's: embed the images again".into()
        }
        InputSpec::Text(_) => {
            "these embeddings were made with another tokenizer or maximum length than the bundle's: embed the texts again".into()
        }
    }))
}
