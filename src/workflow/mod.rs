//! The user's flows, shared by the CLI, the demo and the library: embeddings for a folder, a text table or an
//! `.npz`, a stratified train / validation split, training into a bundle, evaluation and prediction.

mod features;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use linfa::ParamGuard;
use linfa::traits::FitWith;
use ndarray::Array2;
use sha2::{Digest, Sha256};

use crate::backbone::calibrate::calibrate_images;
use crate::backbone::{
    Backbone, BackboneOptions, BackboneRef, ModelFile, check_same_backbone, check_same_input,
};
use crate::bundle::{Bundle, BundleInfo, OpenSetInfo, TrainingInfo, format_version_for, utc_now};
use crate::classifier::{Classifier, Prediction, mark_labels, mark_novel, predictions};
use crate::data::Data;
use crate::data::multi_label::MultiLabelTable;
use crate::embeddings::{EmbedOptions, EmbedSummary, EmbeddedSet, embed};
use crate::error::{Error, Result};
use crate::hash::hex;
use crate::head::{
    self, ClassScores, HeadKind, MultiLabelMetrics, MultiLabelReport, Novelty, TrainParams,
    TrainReport,
};
use crate::metrics::{Metrics, evaluate};
use crate::rng::SplitMix64;
use crate::runtime::{Precision, RuntimeOptions};
use crate::zoo;

pub use features::{
    Candidate, FeatureSearch, Scored, SearchEvent, SearchSettings, search_features,
};

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
fn embeddings_reusing(
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
fn calibrates(options: &BackboneOptions) -> bool {
    options.runtime.precision == Precision::Int8 && options.calibration.is_none()
}

/// [`open_backbone`], calibrating on the images not `held_out` (relative paths).
fn open_calibrated(
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

/// Splits rows into (train, validation): a stratified, seeded `fraction` of the images goes to validation.
/// Augmented views follow their image, and validation keeps only original views.
pub fn stratified_split(
    set: &EmbeddedSet,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let labels = labels_of(set)?;
    let originals: Vec<(&str, usize)> = (0..set.rows())
        .filter(|&i| !set.augmented[i])
        .map(|i| (set.paths[i].as_str(), labels[i]))
        .collect();
    let held_out = held_out_paths(&originals, set.class_names.len(), fraction, seed)?;
    Ok(split_by(set, &held_out))
}

/// The paths of a stratified, seeded `fraction` of each class of `rows` (path, class); a class with a single
/// row keeps it.
fn held_out_paths(
    rows: &[(&str, usize)],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<HashSet<String>> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::parameter(
            "fraction",
            format!("must be between 0 and 1, got {fraction}"),
        ));
    }
    let mut rng = SplitMix64(seed);
    let mut held_out = HashSet::new();
    for class in 0..classes {
        let mut members: Vec<&str> = rows
            .iter()
            .filter(|(_, label)| *label == class)
            .map(|(path, _)| *path)
            .collect();
        rng.shuffle(&mut members);
        let take = ((members.len() as f64) * fraction).round() as usize;
        let take = take.min(members.len().saturating_sub(1));
        held_out.extend(members.into_iter().take(take).map(str::to_string));
    }
    Ok(held_out)
}

/// (train, validation) rows: the images at `held_out` validate (original views only), the rest train.
fn split_by(set: &EmbeddedSet, held_out: &HashSet<String>) -> (Vec<usize>, Vec<usize>) {
    let train = (0..set.rows())
        .filter(|&i| !held_out.contains(&set.paths[i]))
        .collect();
    let validation = (0..set.rows())
        .filter(|&i| !set.augmented[i] && held_out.contains(&set.paths[i]))
        .collect();
    (train, validation)
}

/// The set's labels; unlabelled data is an error.
fn labels_of(set: &EmbeddedSet) -> Result<&[usize]> {
    set.labels.as_deref().ok_or_else(|| {
        Error::Config(
            "training and evaluation need labelled data: one sub-folder per class, or a table with a label column (this data is unlabelled)"
                .into(),
        )
    })
}

pub struct Trained {
    pub bundle: Bundle,
    pub report: TrainReport,
    /// Metrics on the validation rows, when there are some.
    pub validation: Option<Metrics>,
}

/// sha256 (first 16 hex digits) of training embeddings and labels, after `earlier` (the fingerprint of the rows
/// they were added to). Labels hash as the int64 values the .npz holds, so fingerprints stay comparable across
/// versions.
fn fingerprint(
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
    let bundle = Bundle {
        head,
        temperature: report.temperature,
        info: BundleInfo {
            format_version: format_version_for(params.head, novelty.is_some()),
            class_names: train_set.class_names.clone(),
            backbone_source: train_set.backbone_source.clone(),
            backbone: train_set.backbone.clone(),
            input: train_set.input.clone(),
            training: TrainingInfo {
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
                multi_label: false,
                keeps_embeddings: params.keep_embeddings,
                samples: y.len(),
                dataset_fingerprint: fingerprint,
                headstart_version: env!("CARGO_PKG_VERSION").into(),
                date: utc_now(),
            },
        },
        novelty,
        kept: params.keep_embeddings.then(|| train_set.clone()),
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
    if bundle.info.training.multi_label {
        return Err(Error::Config(
            "evaluating a multi-label bundle on other data is not supported yet; its training reports \
             cross-validated and held-out metrics (a validation split)"
                .into(),
        ));
    }
    check_same_backbone(&bundle.info.backbone, &set.backbone, &set.backbone_source)?;
    check_same_input(&bundle.info.input, &set.input)?;
    if set.class_names != bundle.info.class_names {
        return Err(Error::Config(format!(
            "the data's classes {:?} differ from the bundle's {:?}",
            set.class_names, bundle.info.class_names
        )));
    }
    let y = labels_of(set)?;
    if set.dim != bundle.head.dim() {
        return Err(Error::Config(format!(
            "embeddings have {} values, the head expects {}",
            set.dim,
            bundle.head.dim()
        )));
    }
    let probabilities = bundle.head.probabilities(set.matrix(), bundle.temperature);
    Ok((
        evaluate(y, probabilities.view(), &bundle.info.class_names),
        probabilities,
    ))
}

/// A bundle measured on labelled data.
pub struct Evaluation {
    pub bundle: Bundle,
    /// The data's embeddings, in the data's order.
    pub set: EmbeddedSet,
    /// What embedding did; `None` for an `.npz`.
    pub summary: Option<EmbedSummary>,
    pub metrics: Metrics,
    /// [N, K], the rows of `set`.
    pub probabilities: Array2<f32>,
}

/// Evaluates the bundle at `bundle_path` on `data`. An `.npz` needs only the bundle; images and texts are
/// embedded with the bundle's backbone (`backbone` says where it is, if not where the bundle says).
pub fn evaluate_bundle(
    bundle_path: &Path,
    data: &Data,
    runtime: &RuntimeOptions,
    backbone: Option<&BackboneRef>,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Evaluation> {
    let (bundle, set, summary) = match data {
        Data::Embeddings(path) => (Bundle::load(bundle_path)?, EmbeddedSet::read(path)?, None),
        _ => {
            let mut classifier = Classifier::load(bundle_path, runtime, backbone)?;
            let (set, summary) = classifier.embed(data, embed_options, progress)?;
            (classifier.bundle, set, summary)
        }
    };
    let (metrics, probabilities) = evaluate_set(&bundle, &set)?;
    Ok(Evaluation {
        bundle,
        set,
        summary,
        metrics,
        probabilities,
    })
}

/// Answers for every input of `data`, in order: `(what it was, the answer)`. Rows are shown as their paths
/// (images) or their texts.
pub struct Predicted {
    pub rows: Vec<(String, Prediction)>,
    pub summary: Option<EmbedSummary>,
}

/// Classifies `data` with `classifier`: the top `top_k` classes of each input, and `None` for the label when
/// the top probability is below `min_confidence`.
pub fn predict(
    classifier: &mut Classifier,
    data: &Data,
    embed_options: &EmbedOptions,
    top_k: usize,
    min_confidence: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Predicted> {
    if !(0.0..=1.0).contains(&min_confidence) {
        return Err(Error::parameter(
            "min_confidence",
            "must be between 0 and 1",
        ));
    }
    let (set, summary) = classifier.embed(data, embed_options, progress)?;
    let probabilities = classifier.predict_embeddings(set.matrix())?;
    let mut answers = predictions(
        probabilities.view(),
        classifier.class_names(),
        top_k,
        min_confidence,
    );
    if let Some(head) = classifier.bundle.head.multi_label() {
        mark_labels(
            &mut answers,
            probabilities.view(),
            head,
            &classifier.bundle.info.class_names,
        );
    }
    if let (Some(scores), Some(novelty)) = (
        classifier.bundle.novelty_scores(set.matrix())?,
        &classifier.bundle.novelty,
    ) {
        mark_novel(&mut answers, scores.view(), novelty);
    }
    let shown: Vec<String> = match data {
        Data::Texts(texts) => texts.items.iter().map(|item| item.text.clone()).collect(),
        _ => set.paths,
    };
    Ok(Predicted {
        rows: shown.into_iter().zip(answers).collect(),
        summary,
    })
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

/// Embeds `data` (see [`embeddings_for`]), sets validation rows apart as `validation` says, trains a head with
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
struct Split {
    train: EmbeddedSet,
    validation: Option<EmbeddedSet>,
    summary: Option<EmbedSummary>,
    backbone: Option<Backbone>,
}

impl Split {
    fn train(&self, params: &TrainParams) -> Result<TrainRun> {
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
fn embed_split(
    data: &Data,
    validation: &Validation,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Split> {
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
    let same = BackboneRef::parse(&set.backbone_source);
    let everything = HashSet::new();
    let (train_set, validation_set) = match &held_out {
        Some(held_out) => {
            let (train_rows, validation_rows) = split_by(&set, held_out);
            (set.select(&train_rows), Some(set.select(&validation_rows)))
        }
        None => set_apart(set, validation, &mut |other| {
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
    Ok(Split {
        train: train_set,
        validation: validation_set,
        summary,
        backbone: opened,
    })
}

/// Embeddings of some data, and what embedding did (`None` for embeddings read from a file).
type Embedded = (EmbeddedSet, Option<EmbedSummary>);

/// `set`'s training rows and its validation rows as `validation` says (`embed` embeds other validation data).
fn set_apart(
    set: EmbeddedSet,
    validation: &Validation,
    embed: &mut dyn FnMut(&Data) -> Result<Embedded>,
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
    let (new_set, validation_set) = set_apart(set, validation, &mut |other| {
        classifier.embed(other, embed_options, progress)
    })?;
    labels_of(&new_set)?;
    let trained = match &old.kept {
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
        return Err(Error::Config(
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
    let k = class_names.len();
    let x = new_set.matrix();
    let head = match &old.head {
        head::Head::GaussianNb(model) => {
            let earlier = model.with_classes(&old_to_new, k);
            let labels = ndarray::Array1::from(new_labels.clone());
            let mut updated = head::NaiveBayesParams::new()
                .classes(k)
                .check()?
                .fit_with(Some(&earlier), &linfa::DatasetBase::new(x, labels.view()))?;
            if old.info.training.class_weight == head::ClassWeight::Balanced {
                updated.balance_priors();
            }
            head::Head::GaussianNb(updated)
        }
        head::Head::Knn(model) => {
            let mut embeddings = model.embeddings.clone();
            let unit = head::normalized(x);
            embeddings
                .append(ndarray::Axis(0), unit.view())
                .map_err(|e| Error::Config(format!("adding kNN embeddings: {e}")))?;
            let mut labels: Vec<usize> = model.labels.iter().map(|&l| old_to_new[l]).collect();
            labels.extend(&new_labels);
            head::Head::Knn(head::Knn {
                embeddings,
                labels,
                k: model.k,
                classes: k,
            })
        }
        _ => {
            return Err(Error::Config(format!(
                "this bundle keeps no training embeddings, and its {kind} head cannot add examples from its own \
                 arrays (gaussian-nb and knn can): train it again with its embeddings kept"
            )));
        }
    };
    let mut info = old.info.clone();
    info.class_names = class_names;
    info.format_version = format_version_for(kind, false);
    let training = &mut info.training;
    training.samples += new_set.rows();
    training.dataset_fingerprint = fingerprint(
        Some(&training.dataset_fingerprint),
        &new_set.embeddings,
        new_labels.iter().map(|&l| l as i64),
    );
    training.headstart_version = env!("CARGO_PKG_VERSION").into();
    training.date = utc_now();
    let bundle = Bundle {
        head,
        temperature: old.temperature,
        novelty: None,
        kept: None,
        info,
    };
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

/// A multi-label training run: the bundle (not saved), what training measured, metrics on the validation rows
/// when there are some, and what embedding did.
pub struct MultiLabelRun {
    pub bundle: Bundle,
    pub report: MultiLabelReport,
    pub validation: Option<MultiLabelMetrics>,
    pub summary: Option<EmbedSummary>,
}

/// Embeds a multi-label table (see [`embeddings_for`]), holds out `validation_split` (fraction, seed) of its
/// rows, stratified by each row's first label, and trains a multi-label head with `params` (folds, grid, seed,
/// iteration limit, open-set rejection).
pub fn train_multi_label(
    table: &MultiLabelTable,
    validation_split: Option<(f64, u64)>,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MultiLabelRun> {
    let (mut set, summary) =
        embeddings_for(&table.data, backbone, options, embed_options, progress)?;
    let k = table.label_names.len();
    let sets: Vec<Vec<usize>> = set
        .paths
        .iter()
        .map(|path| {
            table.sets.get(path).cloned().ok_or_else(|| {
                Error::Config(format!("'{path}' was embedded but is not in the table"))
            })
        })
        .collect::<Result<_>>()?;
    // Rows grouped by their first label (or none) for stratification.
    let primary: Vec<usize> = sets
        .iter()
        .map(|labels| labels.first().copied().unwrap_or(k))
        .collect();
    set.labels = Some(primary.clone());
    set.class_names = (0..=k).map(|g| g.to_string()).collect();
    let (train_rows, validation_rows) = match validation_split {
        Some((fraction, seed)) => stratified_split(&set, fraction, seed)?,
        None => ((0..set.rows()).collect(), Vec::new()),
    };
    let matrix = set.matrix();
    let x = matrix.select(ndarray::Axis(0), &train_rows);
    let y: Vec<Vec<usize>> = train_rows.iter().map(|&i| sets[i].clone()).collect();
    let (head, report) = head::train_multi_label(x.view(), &y, &table.label_names, params)?;
    let novelty = params
        .open_set
        .as_ref()
        .map(|open_set| {
            let groups: Vec<usize> = train_rows.iter().map(|&i| primary[i]).collect();
            let fold_of = head::cv::stratified_folds(&groups, params.folds, params.seed);
            Novelty::fit(x.view(), &fold_of, params.folds, open_set)
        })
        .transpose()?;
    let validation = (!validation_rows.is_empty()).then(|| {
        let rows = matrix.select(ndarray::Axis(0), &validation_rows);
        let truth: Vec<Vec<usize>> = validation_rows.iter().map(|&i| sets[i].clone()).collect();
        let predicted = head.labels(head.probabilities(rows.view(), 1.0).view());
        MultiLabelMetrics::measure(&truth, &predicted, &table.label_names)
    });
    // Each row's labels, then -1 to end the row.
    let labels = y
        .iter()
        .flat_map(|set| set.iter().map(|&l| l as i64).chain([-1]));
    let fingerprint = fingerprint(None, x.as_slice().unwrap_or(&[]), labels);
    let bundle = Bundle {
        head: head::Head::MultiLabel(head),
        temperature: 1.0,
        info: BundleInfo {
            format_version: 2,
            class_names: table.label_names.clone(),
            backbone_source: set.backbone_source.clone(),
            backbone: set.backbone.clone(),
            input: set.input.clone(),
            training: TrainingInfo {
                head: HeadKind::Logistic,
                chosen_c: Some(report.chosen_c),
                cv_accuracy: report.cross_validated.subset_accuracy,
                folds: params.folds,
                class_weight: head::ClassWeight::None,
                solver: Some(head::Solver::Lbfgs),
                seed: params.seed,
                knn_k: None,
                open_set: novelty
                    .as_ref()
                    .zip(params.open_set.as_ref())
                    .map(|(n, p)| OpenSetInfo::of(n, p.false_rejection)),
                multi_label: true,
                keeps_embeddings: false,
                samples: y.len(),
                dataset_fingerprint: fingerprint,
                headstart_version: env!("CARGO_PKG_VERSION").into(),
                date: utc_now(),
            },
        },
        novelty,
        kept: None,
    };
    Ok(MultiLabelRun {
        bundle,
        report,
        validation,
        summary,
    })
}

/// A held-out job's result: the held-out split's sizes, training, and metrics on the held-out part.
pub struct HeldOutReport {
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
pub fn held_out(
    data: &Path,
    test_fraction: f64,
    seed: u64,
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
    started: Instant,
) -> Result<HeldOutReport> {
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
    Ok(HeldOutReport {
        embed,
        train_rows: run.train_rows,
        test_rows: run.validation_rows,
        report: run.trained.report,
        test,
        seconds: started.elapsed().as_secs_f64(),
    })
}
