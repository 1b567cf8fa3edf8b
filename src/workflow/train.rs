//! Training runs: embed, set validation rows apart, train a head into a bundle, measure it; and adding
//! examples to a bundle.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::backbone::{Backbone, BackboneOptions, BackboneRef};
use crate::bundle::{Bundle, OpenSetInfo, TrainingInfo, utc_now};
use crate::classifier::Classifier;
use crate::data::Data;
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet};
use crate::error::{Error, Result};
use crate::hash::hex;
use crate::head::{self, HeadKind, NewExamples, Novelty, TrainParams, TrainReport};
use crate::metrics::Metrics;
use crate::runtime::RuntimeOptions;

use super::embed::{calibrates, embeddings_reusing};
use super::evaluate::evaluate_set;
use super::split::{held_out_paths, labels_of, split_by, stratified_split};

pub struct Trained {
    pub bundle: Bundle,
    pub report: TrainReport,
    /// Metrics on the validation rows, when there are some.
    pub validation: Option<Metrics>,
}

impl Trained {
    /// A trained bundle with its metrics on `validation`, when given.
    fn measured(
        bundle: Bundle,
        report: TrainReport,
        validation: Option<&EmbeddedSet>,
    ) -> Result<Self> {
        let validation = validation
            .map(|v| evaluate_set(&bundle, v))
            .transpose()?
            .map(|(metrics, _)| metrics);
        Ok(Trained {
            bundle,
            report,
            validation,
        })
    }
}

/// sha256 (first 16 hex digits) of training embeddings and labels, after `earlier` (the fingerprint of the rows
/// they were added to). Labels hash as the int64 values the .npz holds, so fingerprints stay comparable across
/// versions.
pub(super) fn fingerprint(
    earlier: Option<&str>,
    embeddings: &[f32],
    labels: impl Iterator<Item = i64>,
) -> String {
    let mut hasher = Sha256::new();
    if let Some(earlier) = earlier {
        hasher.update(earlier.as_bytes());
    }
    embeddings
        .iter()
        .for_each(|v| hasher.update(v.to_le_bytes()));
    labels.for_each(|l| hasher.update(l.to_le_bytes()));
    hex(&hasher.finalize())[..16].to_string()
}

/// Trains a head on `train` and, if given, measures it on `validation`.
pub fn train_bundle(
    train_set: &EmbeddedSet,
    validation: Option<&EmbeddedSet>,
    params: &TrainParams,
) -> Result<Trained> {
    let y = labels_of(train_set)?;
    let (head, report) = head::train(train_set.matrix(), y, &train_set.class_names, params)?;
    let novelty = params
        .open_set
        .as_ref()
        .map(|open_set| {
            let fold_of = head::cv::stratified_folds(y, params.folds, params.seed);
            Novelty::fit(train_set.matrix(), &fold_of, params.folds, open_set)
        })
        .transpose()?;
    let fingerprint = fingerprint(None, &train_set.embeddings, y.iter().map(|&l| l as i64));
    let training = TrainingInfo {
        head: params.head,
        chosen_c: report.chosen_c,
        cv_accuracy: report.cv_accuracy,
        folds: params.folds,
        class_weight: params.class_weight,
        solver: (params.head == HeadKind::Logistic).then_some(params.solver),
        seed: params.seed,
        knn_k: (params.head == HeadKind::Knn).then_some(params.k),
        open_set: novelty
            .as_ref()
            .zip(params.open_set.as_ref())
            .map(|(n, p)| OpenSetInfo::of(n, p.false_rejection)),
        keeps_embeddings: false,
        samples: y.len(),
        dataset_fingerprint: fingerprint,
        headstart_version: env!("CARGO_PKG_VERSION").into(),
        date: utc_now(),
    };
    let mut bundle = Bundle::new(
        head,
        report.temperature,
        train_set.class_names.clone(),
        train_set.features.clone(),
        training,
        novelty,
    );
    if params.keep_embeddings {
        bundle = bundle.keeping(train_set.clone());
    }
    Trained::measured(bundle, report, validation)
}

/// Where a training run's validation rows come from.
pub enum Validation<'a> {
    /// Every row trains; nothing is measured.
    None,
    /// A stratified, seeded fraction of the images (or texts) is held out.
    Split { fraction: f64, seed: u64 },
    /// Other labelled data, embedded with the backbone the training data was embedded with.
    Data(&'a Data),
}

/// A training run: the bundle and its report, what embedding did, and how many rows trained and validated.
pub struct TrainRun {
    pub trained: Trained,
    /// What embedding the training data did; `None` for an `.npz`.
    pub summary: Option<EmbedSummary>,
    pub train_rows: usize,
    pub validation_rows: usize,
}

/// Embeds `data` (see [`super::embeddings_for`]), sets validation rows apart as `validation` says, trains a head with
/// `params` and measures it on them. The bundle is not saved.
pub fn train(
    data: &Data,
    validation: &Validation,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TrainRun> {
    let split = embed_split(data, validation, backbone, options, embed_options, progress)?;
    split.train(params)
}

/// Training rows and validation rows, embedded; the backbone that embedded them (`None` for an `.npz`).
pub(super) struct EmbeddedSplit {
    pub(super) train: EmbeddedSet,
    pub(super) validation: Option<EmbeddedSet>,
    pub(super) summary: Option<EmbedSummary>,
    pub(super) backbone: Option<Backbone>,
}

impl EmbeddedSplit {
    pub(super) fn train(&self, params: &TrainParams) -> Result<TrainRun> {
        let trained = train_bundle(&self.train, self.validation.as_ref(), params)?;
        Ok(TrainRun {
            trained,
            summary: self.summary.clone(),
            train_rows: self.train.rows(),
            validation_rows: self.validation.as_ref().map_or(0, EmbeddedSet::rows),
        })
    }
}

/// [`train`]'s embedding and split.
pub(super) fn embed_split(
    data: &Data,
    validation: &Validation,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EmbeddedSplit> {
    let mut opened = None;
    // int8 calibrates on training images only: the split is drawn from the file list first.
    let held_out = match (validation, data) {
        (Validation::Split { fraction, seed }, Data::Images(files)) if calibrates(options) => {
            let rows: Vec<(&str, usize)> = files
                .items
                .iter()
                .filter_map(|item| Some((item.relative.as_str(), item.label?)))
                .collect();
            Some(held_out_paths(
                &rows,
                files.classes.len(),
                *fraction,
                *seed,
            )?)
        }
        _ => None,
    };
    let (set, summary) = embeddings_reusing(
        data,
        backbone,
        options,
        embed_options,
        held_out.as_ref().unwrap_or(&HashSet::new()),
        &mut opened,
        progress,
    )?;
    let same = set.features.source.clone();
    let everything = HashSet::new();
    let (train_set, validation_set) = match &held_out {
        Some(held_out) => {
            let (train_rows, validation_rows) = split_by(&set, held_out);
            (set.select(&train_rows), Some(set.select(&validation_rows)))
        }
        None => split_off_validation(set, validation, &mut |other| {
            embeddings_reusing(
                other,
                Some(&same),
                options,
                embed_options,
                &everything,
                &mut opened,
                progress,
            )
        })?,
    };
    Ok(EmbeddedSplit {
        train: train_set,
        validation: validation_set,
        summary,
        backbone: opened,
    })
}

/// How other validation data is embedded: as the training data was.
type EmbedLikeTraining<'a> = dyn FnMut(&Data) -> Result<(EmbeddedSet, Option<EmbedSummary>)> + 'a;

/// `set`'s training rows and its validation rows as `validation` says (`embed` embeds other validation data).
fn split_off_validation(
    set: EmbeddedSet,
    validation: &Validation,
    embed: &mut EmbedLikeTraining,
) -> Result<(EmbeddedSet, Option<EmbeddedSet>)> {
    Ok(match validation {
        Validation::None => (set, None),
        Validation::Split { fraction, seed } => {
            let (train_rows, validation_rows) = stratified_split(&set, *fraction, *seed)?;
            (set.select(&train_rows), Some(set.select(&validation_rows)))
        }
        Validation::Data(other) => (set, Some(embed(other)?.0)),
    })
}

/// Adds `data` to the bundle `old` (loaded from `origin`) and trains the bundle of everything: `data` is embedded
/// with the bundle's backbone (an `.npz` or Parquet made by it is read), its validation rows are set apart as
/// `validation` says, and then
/// - a bundle that keeps its training embeddings trains a head with `params` on its rows and the new ones, as
///   if on all of them at once (see [`EmbeddedSet::union`]); the new bundle keeps them all;
/// - otherwise a gaussian-nb head updates its statistics (linfa-bayes's incremental fit) and a knn head adds
///   the new embeddings, each as training on all the examples would have made it; their temperature and
///   cross-validated accuracy stay the old bundle's (there is no old data to validate on). Other heads need
///   the kept embeddings.
#[allow(clippy::too_many_arguments)]
pub fn train_from(
    old: &Bundle,
    origin: &Path,
    data: &Data,
    validation: &Validation,
    runtime: &RuntimeOptions,
    backbone: Option<&BackboneRef>,
    embed_options: &EmbedOptions,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TrainRun> {
    let mut classifier = Classifier::from_bundle(old.clone(), origin, runtime, backbone)?;
    let (set, summary) = classifier.embed(data, embed_options, progress)?;
    let (new_set, validation_set) = split_off_validation(set, validation, &mut |other| {
        classifier.embed(other, embed_options, progress)
    })?;
    labels_of(&new_set)?;
    let trained = match &old.training_embeddings {
        Some(kept) => {
            let union = kept.union(&new_set)?;
            let params = TrainParams {
                keep_embeddings: true,
                ..params.clone()
            };
            train_bundle(&union, validation_set.as_ref(), &params)?
        }
        None => update_bundle(old, &new_set, validation_set.as_ref())?,
    };
    Ok(TrainRun {
        train_rows: trained.bundle.info.training.samples,
        validation_rows: validation_set.as_ref().map_or(0, EmbeddedSet::rows),
        trained,
        summary,
    })
}

/// [`train_from`] for a bundle without kept embeddings: the heads that can add examples from their own arrays.
fn update_bundle(
    old: &Bundle,
    new_set: &EmbeddedSet,
    validation: Option<&EmbeddedSet>,
) -> Result<Trained> {
    let started = Instant::now();
    let kind = old.info.training.head;
    if old.novelty.is_some() {
        return Err(Error::Unsupported(
            "this bundle rejects unknown inputs but keeps no training embeddings: its open-set threshold cannot \
             take new examples (train it again with its embeddings kept)"
                .into(),
        ));
    }
    let mut class_names: Vec<String> = old.info.class_names.clone();
    class_names.extend(new_set.class_names.iter().cloned());
    class_names.sort();
    class_names.dedup();
    let position = |name: &String| {
        class_names
            .iter()
            .position(|n| n == name)
            .unwrap_or_default()
    };
    let old_to_new: Vec<usize> = old.info.class_names.iter().map(position).collect();
    let new_labels: Vec<usize> = labels_of(new_set)?
        .iter()
        .map(|&l| position(&new_set.class_names[l]))
        .collect();
    let examples = NewExamples {
        x: new_set.matrix(),
        labels: &new_labels,
        old_to_new: &old_to_new,
        classes: class_names.len(),
        class_weight: old.info.training.class_weight,
    };
    let Some(head) = old.head.model().with_examples(&examples) else {
        return Err(Error::Unsupported(format!(
            "this bundle keeps no training embeddings, and its {kind} head cannot add examples from its own \
             arrays (gaussian-nb and knn can): train it again with its embeddings kept"
        )));
    };
    let head = head?;
    let mut training = old.info.training.clone();
    training.samples += new_set.rows();
    training.dataset_fingerprint = fingerprint(
        Some(&training.dataset_fingerprint),
        &new_set.embeddings,
        new_labels.iter().map(|&l| l as i64),
    );
    training.headstart_version = env!("CARGO_PKG_VERSION").into();
    training.date = utc_now();
    let bundle = Bundle::new(
        head,
        old.temperature,
        class_names,
        old.info.features.clone(),
        training,
        None,
    );
    let report = TrainReport {
        head: kind,
        cv: Vec::new(),
        chosen_c: bundle.info.training.chosen_c,
        cv_accuracy: bundle.info.training.cv_accuracy,
        // The old folds' rows are gone: there is nothing to score per fold.
        fold_accuracies: Vec::new(),
        folds: bundle.info.training.folds,
        temperature: bundle.temperature,
        samples: bundle.info.training.samples,
        warnings: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
        out_of_fold: ndarray::Array2::zeros((0, 0)),
    };
    Trained::measured(bundle, report, validation)
}

/// The whole job's result: what was embedded, the split's sizes, training, and metrics on the test rows.
pub struct TestedJob {
    pub embed: EmbedSummary,
    pub train_rows: usize,
    pub test_rows: usize,
    pub report: TrainReport,
    pub test: Metrics,
    pub seconds: f64,
}

/// The whole job on labelled data, for demos and checks: `data` (a folder or text table) → embeddings with
/// the default backbone for it → a stratified, seeded split holding out `test_fraction` → the default logistic
/// head → metrics on the held-out part. `started` may include fetching the data.
pub fn train_and_test(
    data: &Path,
    test_fraction: f64,
    seed: u64,
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
    started: Instant,
) -> Result<TestedJob> {
    let options = BackboneOptions {
        runtime: runtime.clone(),
        ..Default::default()
    };
    let run = train(
        &Data::open(data, &Default::default())?,
        &Validation::Split {
            fraction: test_fraction,
            seed,
        },
        None,
        &options,
        &EmbedOptions::default(),
        &TrainParams::default(),
        progress,
    )?;
    let embed = run
        .summary
        .ok_or_else(|| Error::input(data, "expected a folder or a text table"))?;
    let test = run
        .trained
        .validation
        .expect("a split always has validation rows to measure");
    Ok(TestedJob {
        embed,
        train_rows: run.train_rows,
        test_rows: run.validation_rows,
        report: run.trained.report,
        test,
        seconds: started.elapsed().as_secs_f64(),
    })
}
