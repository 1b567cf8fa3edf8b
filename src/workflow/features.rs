//! Features chosen by the data (`train --features auto`): which tensor of which backbone transfers best
//! depends on the task, so candidates are embedded (through the cache) and compared by the head's own
//! stratified cross-validation on the training rows. Candidates, in order: the backbone's own output, late
//! taps from its graph ([`crate::onnx::taps`]), the concatenation of its best two, then the other backbones
//! the user allows (their own outputs). The winner is trained like a hand-chosen `--layer`: predict and
//! export follow the bundle unchanged.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::train::{EmbeddedSplit, TrainRun, Validation, embed_split, train};
use crate::backbone::{BackboneIdentity, BackboneOptions, BackboneRef, ModelFile};
use crate::data::Data;
use crate::embeddings::EmbedOptions;
use crate::error::{Error, Result};
use crate::head::{ClassScores, TrainParams};
use crate::modality::Modality;
use crate::onnx::taps::late_taps;
use crate::runtime::Precision;
use crate::zoo;

/// How far the search goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SearchSettings {
    /// Other backbones of the data's modality to try (zoo names or files), after the first one's candidates.
    pub backbones: Vec<BackboneRef>,
    /// No candidate starts once this much time has gone (the backbone's own output always runs).
    pub budget: Option<Duration>,
    /// Late taps of each kind (block outputs, expansions) taken from the graph.
    pub taps: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            backbones: Vec::new(),
            budget: None,
            taps: 2,
        }
    }
}

impl SearchSettings {
    pub fn backbones(mut self, backbones: Vec<BackboneRef>) -> Self {
        self.backbones = backbones;
        self
    }

    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn taps(mut self, taps: usize) -> Self {
        self.taps = taps;
        self
    }
}

/// Features to try: a backbone and the tensors to pool (none: its own output; several: joined in order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    #[serde(serialize_with = "as_text")]
    pub backbone: BackboneRef,
    pub tensors: Vec<String>,
}

fn as_text<S: serde::Serializer>(
    value: &BackboneRef,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl Candidate {
    fn own_output(backbone: BackboneRef) -> Self {
        Candidate {
            backbone,
            tensors: Vec::new(),
        }
    }

    /// `base` with this candidate's tensors as the layer and the joined ones: the options that embed with these
    /// features.
    pub fn options(&self, base: &BackboneOptions) -> BackboneOptions {
        BackboneOptions {
            layer: self.tensors.first().cloned(),
            joined: self.tensors.iter().skip(1).cloned().collect(),
            ..base.clone()
        }
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tensors.as_slice() {
            [] => write!(f, "{} (its output)", self.backbone),
            tensors => write!(f, "{} {}", self.backbone, tensors.join(" + ")),
        }
    }
}

/// What one candidate scored.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub candidate: Candidate,
    /// The features' length.
    pub dim: usize,
    /// The head's cross-validated accuracy on the training rows: what the choice is made by.
    pub cv_accuracy: f64,
    /// Per fold, for the spread.
    pub fold_accuracies: Vec<f64>,
    /// Accuracy on the validation rows, when there are some: not used to choose.
    pub validation_accuracy: Option<f64>,
    /// Embedding time (near nothing when every vector came from the cache).
    pub embed_seconds: f64,
    pub from_cache: usize,
    /// Embedded in one pass with the first backbone's other tensors: `embed_seconds` is that pass's.
    pub embedded_together: bool,
    pub train_seconds: f64,
}

impl Scored {
    /// The standard deviation of the per-fold accuracies.
    pub fn fold_spread(&self) -> f64 {
        let n = self.fold_accuracies.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.fold_accuracies.iter().sum::<f64>() / n;
        let squares: f64 = self
            .fold_accuracies
            .iter()
            .map(|a| (a - mean).powi(2))
            .sum();
        (squares / (n - 1.0)).sqrt()
    }
}

/// What the search reports as it goes.
pub enum SearchEvent<'a> {
    /// Candidate `index` (from 0) of the `planned` starts embedding.
    Starting {
        index: usize,
        planned: usize,
        candidate: &'a Candidate,
    },
    Scored(&'a Scored),
    /// The budget ran out before these.
    OutOfTime(&'a [Candidate]),
}

/// Every candidate's score, which one won, and its training run (the bundle to save).
pub struct FeatureSearch {
    pub scored: Vec<Scored>,
    pub chosen: usize,
    pub not_tried: Vec<Candidate>,
    pub run: TrainRun,
    pub seconds: f64,
}

/// Compares candidate features for `data` (images or texts) and trains the best, as [`train`] does with
/// `validation`, `options` (less its layers) and `params`; `backbone` is the first backbone (default: the
/// zoo's for the data). `events` hears of each candidate, `progress` of the embedding.
#[allow(clippy::too_many_arguments)]
pub fn search_features(
    data: &Data,
    validation: &Validation,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    params: &TrainParams,
    settings: &SearchSettings,
    events: &mut dyn FnMut(SearchEvent),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FeatureSearch> {
    let started = Instant::now();
    let modality = data.modality().ok_or_else(|| {
        Error::Unsupported(
            "choosing features needs images or texts to embed; an embeddings file's features are fixed"
                .into(),
        )
    })?;
    if options.layer.is_some() || !options.joined.is_empty() {
        return Err(Error::Unsupported(
            "choosing features picks the layer itself: name no layer".into(),
        ));
    }
    let first = BackboneRef::given_or_default(backbone, modality);
    // Minutes of embedding may come before the other backbones: what cannot work is refused now.
    for other in &settings.backbones {
        check_usable(other, modality)?;
    }
    // The first backbone's graph gives the taps; its own output is the tensor they are joined with.
    let file = ModelFile::read(&first)?;
    let output = file.own_output(options)?;
    let mut queue = vec![Candidate::own_output(first.clone())];
    for tap in late_taps(&file.bytes, &output, settings.taps).unwrap_or_default() {
        queue.push(Candidate {
            backbone: first.clone(),
            tensors: vec![tap],
        });
    }
    drop(file);
    let singles = queue.len();
    let others = settings.backbones.iter().filter(|b| **b != first);
    // Once the singles are scored, their best two are joined (when there are two).
    let planned = singles + usize::from(singles >= 2) + others.clone().count();
    let mut scored: Vec<Scored> = Vec::new();
    let mut best: Option<(usize, TrainRun)> = None;
    let mut not_tried = Vec::new();
    // int8 quantises each candidate's own graph (its tensors measured, its outputs float): one by one.
    let one_pass = singles > 1 && options.runtime.precision != Precision::Int8;
    let mut shared: Option<Together> = None;
    let mut index = 0;
    while index < queue.len() {
        let candidate = queue[index].clone();
        if index > 0 && settings.budget.is_some_and(|b| started.elapsed() >= b) {
            not_tried = queue.split_off(index);
            // What had not been queued yet is not tried either.
            if index < singles {
                not_tried.extend(others.clone().cloned().map(Candidate::own_output));
            }
            events(SearchEvent::OutOfTime(&not_tried));
            break;
        }
        events(SearchEvent::Starting {
            index,
            planned,
            candidate: &candidate,
        });
        // The first backbone's tensors are embedded together, once, when the first of them is scored.
        if index == 0 && one_pass {
            shared = embed_together(
                data,
                validation,
                &first,
                &queue,
                options,
                embed_options,
                progress,
            )?;
        }
        let run = match &shared {
            Some(together) if candidate.backbone == first => {
                together.train(&candidate.tensors, params)?
            }
            _ => train(
                data,
                validation,
                Some(&candidate.backbone),
                &candidate.options(options),
                embed_options,
                params,
                progress,
            )?,
        };
        let report = &run.trained.report;
        let result = Scored {
            candidate: candidate.clone(),
            dim: run.trained.bundle.head.dim(),
            cv_accuracy: report.cv_accuracy,
            fold_accuracies: report.fold_accuracies.clone(),
            validation_accuracy: run.trained.validation.as_ref().map(|m| m.accuracy),
            embed_seconds: run.summary.as_ref().map_or(0.0, |s| s.seconds),
            from_cache: run.summary.as_ref().map_or(0, |s| s.from_cache),
            embedded_together: shared.is_some() && candidate.backbone == first,
            train_seconds: report.seconds,
        };
        events(SearchEvent::Scored(&result));
        let better = best
            .as_ref()
            .is_none_or(|(i, _)| result.cv_accuracy > scored[*i].cv_accuracy + 1e-12);
        scored.push(result);
        if better {
            best = Some((scored.len() - 1, run));
        }
        if index + 1 == singles {
            queue.extend(best_two(&scored, &output));
            queue.extend(others.clone().cloned().map(Candidate::own_output));
        }
        index += 1;
    }
    let (chosen, run) = best.expect("the first candidate always runs");
    Ok(FeatureSearch {
        scored,
        chosen,
        not_tried,
        run,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The first backbone's single tensors embedded in one pass (its output and taps joined, cached as such),
/// and where each tensor's columns are.
struct Together {
    split: EmbeddedSplit,
    output: String,
    columns: Vec<(String, Range<usize>)>,
}

/// Embeds every single tensor of `first` among `queue` at once; `None` when a tensor's pooled length cannot be
/// told from the graph (then each is embedded on its own).
fn embed_together(
    data: &Data,
    validation: &Validation,
    first: &BackboneRef,
    queue: &[Candidate],
    options: &BackboneOptions,
    embed_options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Together>> {
    let taps: Vec<String> = queue
        .iter()
        .filter(|c| c.backbone == *first)
        .filter_map(|c| c.tensors.first().cloned())
        .collect();
    let joined = BackboneOptions {
        layer: None,
        joined: taps,
        ..options.clone()
    };
    let split = embed_split(
        data,
        validation,
        Some(first),
        &joined,
        embed_options,
        progress,
    )?;
    let Some(backbone) = &split.backbone else {
        return Ok(None);
    };
    let identity = split.train.features.backbone.clone();
    let mut columns = Vec::new();
    let mut start = 0;
    for tensor in identity.tensors() {
        let Some(dim) = backbone.pooled_dim(tensor) else {
            return Ok(None);
        };
        columns.push((tensor.to_string(), start..start + dim));
        start += dim;
    }
    if start != split.train.dim {
        return Ok(None);
    }
    Ok(Some(Together {
        output: identity.output.clone(),
        split,
        columns,
    }))
}

impl Together {
    /// Trains on the columns of `tensors` (none: the output), as if they had been embedded on their own.
    fn train(&self, tensors: &[String], params: &TrainParams) -> Result<TrainRun> {
        let wanted: Vec<&str> = match tensors {
            [] => vec![self.output.as_str()],
            named => named.iter().map(String::as_str).collect(),
        };
        let ranges: Vec<Range<usize>> = wanted
            .iter()
            .map(|tensor| {
                self.columns
                    .iter()
                    .find(|(name, _)| name == tensor)
                    .map(|(_, range)| range.clone())
                    .ok_or_else(|| Error::Config(format!("'{tensor}' was not embedded")))
            })
            .collect::<Result<_>>()?;
        // The identity a run with these layers would have.
        let shared = &self.split.train.features.backbone;
        let identity = match tensors {
            [] => BackboneIdentity {
                layer: None,
                joined: Vec::new(),
                ..shared.clone()
            },
            [first, rest @ ..] => BackboneIdentity {
                output: first.clone(),
                layer: Some(first.clone()),
                joined: rest.to_vec(),
                ..shared.clone()
            },
        };
        let split = EmbeddedSplit {
            train: self.split.train.columns(&ranges, identity.clone()),
            validation: self
                .split
                .validation
                .as_ref()
                .map(|v| v.columns(&ranges, identity)),
            summary: self.split.summary.clone(),
            backbone: None,
        };
        split.train(params)
    }
}

/// A zoo backbone of another modality, or a file that is not there, is refused.
fn check_usable(backbone: &BackboneRef, modality: Modality) -> Result<()> {
    match backbone {
        BackboneRef::Zoo(name) => {
            let model = zoo::find(name)?;
            if model.modality != modality {
                return Err(Error::Unsupported(format!(
                    "{name} is a backbone for {}, and this data is {}",
                    model.modality.unit(),
                    modality.unit()
                )));
            }
        }
        BackboneRef::File(path) if !path.is_file() => {
            return Err(Error::ModelNotFound { path: path.clone() });
        }
        BackboneRef::File(_) => {}
    }
    Ok(())
}

/// The two best-scoring single tensors of the first backbone (`scored[0]` is its own `output`), joined.
fn best_two(scored: &[Scored], output: &str) -> Option<Candidate> {
    let first = &scored.first()?.candidate.backbone;
    let mut singles: Vec<&Scored> = scored
        .iter()
        .filter(|s| s.candidate.backbone == *first && s.candidate.tensors.len() <= 1)
        .collect();
    // Stable: on a tie the earlier (the own output first) leads.
    singles.sort_by(|a, b| b.cv_accuracy.total_cmp(&a.cv_accuracy));
    let tensor = |s: &Scored| {
        s.candidate
            .tensors
            .first()
            .cloned()
            .unwrap_or_else(|| output.to_string())
    };
    match singles.as_slice() {
        [a, b, ..] => Some(Candidate {
            backbone: first.clone(),
            tensors: vec![tensor(a), tensor(b)],
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(backbone: &str, tensors: &[&str], cv_accuracy: f64) -> Scored {
        Scored {
            candidate: Candidate {
                backbone: BackboneRef::Zoo(backbone.into()),
                tensors: tensors.iter().map(|t| t.to_string()).collect(),
            },
            dim: 8,
            cv_accuracy,
            fold_accuracies: vec![cv_accuracy - 0.01, cv_accuracy + 0.01],
            validation_accuracy: None,
            embed_seconds: 0.0,
            from_cache: 0,
            embedded_together: false,
            train_seconds: 0.0,
        }
    }

    #[test]
    fn the_best_two_single_tensors_of_the_first_backbone_are_joined() {
        let found = [
            scored("a", &[], 0.80),
            scored("a", &["x"], 0.85),
            scored("a", &["y"], 0.70),
            scored("a", &["x", "y"], 0.99),
            scored("b", &[], 0.95),
        ];
        let joined = best_two(&found, "out").unwrap();
        assert_eq!(joined.tensors, ["x", "out"]);
        assert_eq!(joined.to_string(), "a x + out");
        assert_eq!(best_two(&found[..1], "out"), None);
        // A tie keeps the earlier, the backbone's own output, first.
        let tied = [scored("a", &[], 0.8), scored("a", &["x"], 0.8)];
        assert_eq!(best_two(&tied, "out").unwrap().tensors, ["out", "x"]);
        // Folds at 0.79 and 0.81: a sample standard deviation of √0.0002.
        assert!((found[0].fold_spread() - 0.0002f64.sqrt()).abs() < 1e-9);
    }
}
