//! Multi-label training: one logistic model per label, each with its own threshold.

use crate::backbone::{BackboneOptions, BackboneRef};
use crate::bundle::{Bundle, OpenSetInfo, TrainingInfo, utc_now};
use crate::data::multi_label::MultiLabelTable;
use crate::embeddings::{EmbedOptions, EmbedSummary};
use crate::error::{Error, Result};
use crate::head::{
    self, ClassScores, HeadKind, MultiLabelMetrics, MultiLabelReport, Novelty, TrainParams,
};

use super::embed::embeddings_for;
use super::split::stratified_split;
use super::train::fingerprint;

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
                Error::TrainingData(format!("'{path}' was embedded but is not in the table"))
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
    let training = TrainingInfo {
        head: HeadKind::MultiLabel,
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
        keeps_embeddings: false,
        samples: y.len(),
        dataset_fingerprint: fingerprint,
        headstart_version: env!("CARGO_PKG_VERSION").into(),
        date: utc_now(),
    };
    let bundle = Bundle::new(
        head::Head::MultiLabel(head),
        1.0,
        table.label_names.clone(),
        set.features.clone(),
        training,
        novelty,
    );
    Ok(MultiLabelRun {
        bundle,
        report,
        validation,
        summary,
    })
}
