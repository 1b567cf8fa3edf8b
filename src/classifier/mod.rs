//! A trained bundle with its backbone: images (or texts, for a text bundle) in, class probabilities out. The
//! library face of `predict`.
//!
//! ```no_run
//! use headstart::classifier::{Classifier, PredictOptions};
//! use headstart::data::Data;
//!
//! # fn main() -> headstart::Result<()> {
//! let mut classifier = Classifier::load("model.hs".as_ref(), &Default::default(), None)?;
//! // Answers: the top classes, and `None` ("unknown") below 50 % or, for an open-set bundle, for novel inputs.
//! let options = PredictOptions::default().top_k(2).min_confidence(0.5);
//! let predicted = classifier.predict(&Data::image_files(&["cell.png".into()]), &options, &mut |_, _| {})?;
//! for (path, answer) in &predicted.rows {
//!     println!("{path}: {}", answer.label.as_deref().unwrap_or("unknown"));
//! }
//! // Or the class probabilities alone.
//! let probabilities = classifier.predict_path("other.jpg".as_ref())?;
//! println!("{probabilities:?}");
//! # Ok(())
//! # }
//! ```
//!
//! A text bundle takes texts:
//!
//! ```no_run
//! # fn main() -> headstart::Result<()> {
//! let mut classifier =
//!     headstart::classifier::Classifier::load("sentiment.hs".as_ref(), &Default::default(), None)?;
//! let probabilities = classifier.predict_texts(&["A gripping, funny film.", "Two hours I will not get back."])?;
//! println!("{probabilities:?}");
//! # Ok(())
//! # }
//! ```

mod service;

pub use service::{
    Answered, BatchRun, Input, InputAnswers, Reply, ServedModel, Service, ServiceOptions,
};

use std::path::{Path, PathBuf};

use image::DynamicImage;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView4};
use serde::Serialize;

use crate::backbone::calibrate::calibrate_images;
use crate::backbone::{
    Backbone, BackboneIdentity, BackboneOptions, BackboneRef, Calibration, CalibrationSettings,
    InputSpec, ModelFile,
};
use crate::bundle::Bundle;
use crate::data::Data;
use crate::data::decode::{DecodeOptions, open_image_for};
use crate::embeddings::{self, EmbedOptions, EmbedSummary, EmbeddedSet};
use crate::error::{Error, Result};
use crate::head::{ClassScores, Novelty};
use crate::modality::Modality;
use crate::preprocess::{ImagePreprocess, PreprocessOverrides};
use crate::runtime::{Precision, RuntimeOptions};

pub struct Classifier {
    pub bundle: Bundle,
    /// Where the bundle came from, for messages.
    path: PathBuf,
    backbone: Backbone,
    /// How the backbone was opened (to calibrate it for int8).
    options: BackboneOptions,
}

/// How answers are made from class probabilities (see [`Bundle::answer`]), and how inputs are embedded for
/// [`Classifier::predict`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PredictOptions {
    /// How many classes each answer lists, most probable first.
    pub top_k: usize,
    /// The least top probability that is answered; below it the label is `None` ("unknown").
    pub min_confidence: f32,
    pub embed: EmbedOptions,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            top_k: 3,
            min_confidence: 0.0,
            embed: EmbedOptions::default(),
        }
    }
}

impl PredictOptions {
    pub fn top_k(mut self, top_k: usize) -> Self {
        self.top_k = top_k;
        self
    }

    pub fn min_confidence(mut self, min_confidence: f32) -> Self {
        self.min_confidence = min_confidence;
        self
    }

    pub fn embed(mut self, embed: EmbedOptions) -> Self {
        self.embed = embed;
        self
    }
}

/// Answers for every input of some data, in order: `(what it was, the answer)`. Rows are shown as their paths
/// (images) or their texts.
pub struct Predicted {
    pub rows: Vec<(String, Prediction)>,
    /// What embedding did: the inputs skipped, with their reasons. `None` for an `.npz`.
    pub summary: Option<EmbedSummary>,
}

/// One input's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The top class, or `None` ("unknown") when its probability is below the minimum confidence or the input
    /// is novel.
    pub label: Option<String>,
    /// The `k` most probable classes, most probable first.
    pub top: Vec<(String, f32)>,
    /// How far the input is from the training data, for a bundle with open-set rejection (see [`Bundle::answer`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novelty: Option<f32>,
    /// Whether the novelty is beyond the bundle's threshold (then the label is `None`).
    pub novel: bool,
    /// For a multi-label bundle: every label at or above its threshold (then `label` is them joined by `|`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

impl Classifier {
    /// Loads a bundle and opens the backbone it was trained on (`backbone` overrides where to find it; it must
    /// be the same model).
    pub fn load(
        path: &Path,
        runtime: &RuntimeOptions,
        backbone: Option<&BackboneRef>,
    ) -> Result<Self> {
        Self::from_bundle(Bundle::load(path)?, path, runtime, backbone)
    }

    /// [`Self::load`] for a bundle already in memory; `path` is where it came from, for messages.
    pub fn from_bundle(
        bundle: Bundle,
        path: &Path,
        runtime: &RuntimeOptions,
        backbone: Option<&BackboneRef>,
    ) -> Result<Self> {
        let info = &bundle.info;
        let reference = backbone
            .cloned()
            .unwrap_or_else(|| info.features.source.clone());
        // A bundle from someone else may name any path: only an ONNX file is opened on its word.
        if let (None, BackboneRef::File(named)) = (backbone, &reference)
            && named.extension().is_none_or(|e| e != "onnx")
        {
            return Err(Error::input(
                path,
                format!(
                    "the bundle names {} as its backbone, which is not an .onnx file; give the backbone's path",
                    named.display()
                ),
            ));
        }
        let file = ModelFile::read(&reference).map_err(|e| match e {
            Error::ModelNotFound { .. } if backbone.is_none() => Error::BundleBackboneNotFound {
                bundle: path.to_path_buf(),
                backbone: info.features.source.to_string(),
            },
            other => other,
        })?;
        // Check the model file before opening it with the bundle's output and layer names.
        if file.sha256 != info.features.backbone.sha256 {
            let given = BackboneIdentity {
                sha256: file.sha256.clone(),
                ..info.features.backbone.clone()
            };
            info.features.check_backbone(&given, &reference)?;
        }
        // int8 features are only int8 features of the same calibration: the bundle's precision wins.
        let mut runtime = runtime.clone();
        match (&info.features.backbone.calibration, runtime.precision) {
            (Some(_), _) => runtime.precision = Precision::Int8,
            (None, Precision::Int8) => {
                return Err(Error::parameter(
                    "precision",
                    format!(
                        "{} was trained on float features; int8 needs a bundle trained in int8",
                        path.display()
                    ),
                ));
            }
            (None, _) => {}
        }
        let mut options = BackboneOptions {
            calibration: info.features.backbone.calibration.clone(),
            runtime,
            output: Some(info.features.backbone.output.clone()),
            layer: info.features.backbone.layer.clone(),
            joined: info.features.backbone.joined.clone(),
            pooling: Some(info.features.backbone.pooling),
            normalize: Some(info.features.backbone.normalize),
            ..Default::default()
        };
        match &info.features.input {
            InputSpec::Image(preprocess) => options.preprocess = overrides(preprocess),
            InputSpec::Text(text) => {
                options.tokenizer = text.tokenizer_source.as_ref().map(PathBuf::from)
            }
        }
        let opened = Backbone::from_file(file, info.features.input.modality(), &options)?;
        info.features.check(&opened.features())?;
        Ok(Classifier {
            bundle,
            path: path.to_path_buf(),
            backbone: opened,
            options,
        })
    }

    /// int8 ranges for this bundle's backbone, measured on a folder of images like its training data.
    pub fn calibrate(&self, images: &Path, settings: CalibrationSettings) -> Result<Calibration> {
        let Data::Images(files) = Data::open(images, &Default::default())? else {
            return Err(Error::input(
                images,
                "int8 calibration needs a folder of images",
            ));
        };
        let paths: Vec<PathBuf> = files.items.into_iter().map(|item| item.path).collect();
        let reference = self.backbone.source().clone();
        calibrate_images(
            ModelFile::read(&reference)?,
            &self.options,
            &paths,
            settings,
            &DecodeOptions::default(),
        )
    }

    /// Where the bundle came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opened backbone (for export).
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// What the bundle classifies: images or texts.
    pub fn modality(&self) -> Modality {
        self.backbone.modality()
    }

    /// Embeds data with the bundle's backbone (through the cache, with skips), ready for
    /// [`Self::predict_embeddings`] or evaluation.
    pub fn embed(
        &mut self,
        data: &Data,
        options: &EmbedOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
        embeddings::embed(data, &mut self.backbone, options, progress)
    }

    /// Answers for every input of `data` (images or texts, as the bundle takes, or an `.npz` its backbone
    /// made), in order; inputs that cannot be embedded are left out and reported in the summary.
    pub fn predict(
        &mut self,
        data: &Data,
        options: &PredictOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Predicted> {
        check_confidence(options)?;
        let (set, summary) = self.embed(data, &options.embed, progress)?;
        let answers = self.bundle.answer(set.matrix(), options)?;
        let shown: Vec<String> = match data {
            Data::Texts(texts) => texts.items.iter().map(|item| item.text.clone()).collect(),
            _ => set.paths,
        };
        Ok(Predicted {
            rows: shown.into_iter().zip(answers).collect(),
            summary,
        })
    }

    pub fn class_names(&self) -> &[String] {
        &self.bundle.info.class_names
    }

    /// Embeddings of texts, [N, D], by the bundle's backbone.
    pub fn embed_texts(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        match &mut self.backbone {
            Backbone::Text(backbone) => backbone.embed(texts),
            Backbone::Image(_) => Err(self.wrong_modality(Modality::Text)),
        }
    }

    /// Embeddings of decoded images, [N, D], by the bundle's backbone.
    pub fn embed_images(&mut self, images: &[DynamicImage]) -> Result<Array2<f32>> {
        match &mut self.backbone {
            Backbone::Image(backbone) => backbone.embed(images),
            Backbone::Text(_) => Err(self.wrong_modality(Modality::Image)),
        }
    }

    /// Embeddings, [N, D], of 8-bit RGB images as one [N, H, W, 3] array.
    pub fn embed_pixels(&mut self, pixels: ArrayView4<u8>) -> Result<Array2<f32>> {
        match &mut self.backbone {
            Backbone::Image(backbone) => backbone.embed_pixels(pixels),
            Backbone::Text(_) => Err(self.wrong_modality(Modality::Image)),
        }
    }

    /// Embeddings, [N, D], of image files, decoded as the bundle's embeddings were. A file that cannot be
    /// decoded is an error naming it: rows must stay in step with `paths`.
    pub fn embed_paths(&mut self, paths: &[PathBuf]) -> Result<Array2<f32>> {
        let mut rows = Vec::new();
        let mut dim = self.bundle.head.dim();
        for chunk in paths.chunks(PATH_BATCH) {
            let images = chunk
                .iter()
                .map(|path| self.open_image(path))
                .collect::<Result<Vec<_>>>()?;
            let embeddings = self.embed_images(&images)?;
            dim = embeddings.ncols();
            rows.extend(embeddings);
        }
        stacked(rows, paths.len(), dim)
    }

    /// Class probabilities, [N, K], for texts.
    pub fn predict_texts(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let embeddings = self.embed_texts(texts)?;
        self.predict_embeddings(embeddings.view())
    }

    /// Class probabilities, [N, K], for decoded images.
    pub fn predict_images(&mut self, images: &[DynamicImage]) -> Result<Array2<f32>> {
        let embeddings = self.embed_images(images)?;
        self.predict_embeddings(embeddings.view())
    }

    fn wrong_modality(&self, given: Modality) -> Error {
        Error::InputMismatch {
            trained: self.modality(),
            given,
        }
    }

    /// Class probabilities of one image.
    pub(crate) fn predict_image(&mut self, image: &DynamicImage) -> Result<Vec<f32>> {
        Ok(self
            .predict_images(std::slice::from_ref(image))?
            .row(0)
            .to_vec())
    }

    /// Class probabilities of one image file, decoded as the bundle's embeddings were.
    pub fn predict_path(&mut self, path: &Path) -> Result<Vec<f32>> {
        let image = self.open_image(path)?;
        self.predict_image(&image)
    }

    /// An image file decoded as the bundle's embeddings were (a large JPEG at reduced scale, unless the bundle
    /// was trained on exact decoding).
    pub fn open_image(&self, path: &Path) -> Result<DynamicImage> {
        let preprocess = match &self.bundle.info.features.input {
            InputSpec::Image(preprocess) => Some(preprocess),
            InputSpec::Text(_) => None,
        };
        open_image_for(path, preprocess)
    }

    /// Class probabilities, [N, K], for 8-bit RGB images as one [N, H, W, 3] array.
    pub fn predict_pixels(&mut self, pixels: ArrayView4<u8>) -> Result<Array2<f32>> {
        let embeddings = self.embed_pixels(pixels)?;
        self.predict_embeddings(embeddings.view())
    }

    /// Class probabilities, [N, K], for image files, decoded as the bundle's embeddings were (see
    /// [`Self::embed_paths`]).
    pub fn predict_paths(&mut self, paths: &[PathBuf]) -> Result<Array2<f32>> {
        let mut rows = Vec::new();
        for chunk in paths.chunks(PATH_BATCH) {
            let embeddings = self.embed_paths(chunk)?;
            rows.extend(self.predict_embeddings(embeddings.view())?);
        }
        stacked(rows, paths.len(), self.class_names().len())
    }

    /// The bundle this classifier answers with.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Class probabilities for embeddings made by the same backbone.
    pub fn predict_embeddings(&self, embeddings: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.bundle.predict_embeddings(embeddings)
    }
}

/// Rows made chunk by chunk as one [rows, columns] array.
fn stacked(values: Vec<f32>, rows: usize, columns: usize) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, columns), values)
        .map_err(|e| Error::Config(format!("rows made in chunks do not fit together: {e}")))
}

/// Image files decoded at a time by [`Classifier::predict_paths`]: memory stays flat for long lists.
const PATH_BATCH: usize = 32;

fn overrides(p: &ImagePreprocess) -> PreprocessOverrides {
    PreprocessOverrides {
        size: Some((p.height, p.width)),
        resize: Some(p.resize),
        crop_pct: Some(p.crop_pct),
        interpolation: Some(p.interpolation),
        mean: Some(p.mean),
        std: Some(p.std),
        layout: Some(p.layout),
        colour: Some(p.colour),
        jpeg_decode: Some(p.jpeg_decode),
    }
}

impl Bundle {
    /// The answers for embeddings made by the bundle's backbone, one per row: the top classes, the label
    /// `None` ("unknown") below the minimum confidence or, with open-set rejection, for a novel input, and a
    /// multi-label head's labels at their thresholds. Every shell answers through here.
    pub fn answer(
        &self,
        embeddings: ArrayView2<f32>,
        options: &PredictOptions,
    ) -> Result<Vec<Prediction>> {
        check_confidence(options)?;
        let probabilities = self.predict_embeddings(embeddings)?;
        let names = &self.info.class_names;
        let mut answers = predictions(
            probabilities.view(),
            names,
            options.top_k,
            options.min_confidence,
        );
        if let Some(label_sets) = self.head.model().label_sets(probabilities.view()) {
            mark_labels(&mut answers, label_sets, names);
        }
        if let (Some(scores), Some(novelty)) = (self.novelty_scores(embeddings)?, &self.novelty) {
            mark_novel(&mut answers, scores.view(), novelty);
        }
        Ok(answers)
    }
}

fn check_confidence(options: &PredictOptions) -> Result<()> {
    match (0.0..=1.0).contains(&options.min_confidence) {
        true => Ok(()),
        false => Err(Error::parameter(
            "min_confidence",
            "must be between 0 and 1",
        )),
    }
}

/// Top-`k` answers per row, with `unknown` below `min_confidence`.
fn predictions(
    probabilities: ArrayView2<f32>,
    class_names: &[String],
    k: usize,
    min_confidence: f32,
) -> Vec<Prediction> {
    probabilities
        .rows()
        .into_iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let top: Vec<(String, f32)> = order
                .iter()
                .take(k.max(1))
                .map(|&i| (class_names[i].clone(), row[i]))
                .collect();
            let label = top
                .first()
                .filter(|(_, p)| *p >= min_confidence)
                .map(|(name, _)| name.clone());
            Prediction {
                label,
                top,
                novelty: None,
                novel: false,
                labels: None,
            }
        })
        .collect()
}

/// Sets each answer of a multi-label head to its labels (`probabilities` are that head's).
fn mark_labels(answers: &mut [Prediction], label_sets: Vec<Vec<usize>>, names: &[String]) {
    for (answer, labels) in answers.iter_mut().zip(label_sets) {
        let labels: Vec<String> = labels.into_iter().map(|l| names[l].clone()).collect();
        answer.label = Some(labels.join("|"));
        answer.labels = Some(labels);
    }
}

/// Adds each answer's novelty score; an answer beyond the threshold becomes `unknown`, whatever its
/// probability.
fn mark_novel(answers: &mut [Prediction], scores: ArrayView1<f32>, novelty: &Novelty) {
    for (answer, &score) in answers.iter_mut().zip(scores) {
        answer.novelty = Some(score);
        answer.novel = novelty.is_novel(score);
        if answer.novel {
            answer.label = None;
            if let Some(labels) = &mut answer.labels {
                labels.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn unknown_below_the_threshold() {
        let names = vec!["cat".to_string(), "dog".to_string()];
        let p = predictions(array![[0.9f32, 0.1], [0.55, 0.45]].view(), &names, 2, 0.6);
        assert_eq!(p[0].label.as_deref(), Some("cat"));
        assert_eq!(
            p[0].top,
            [("cat".to_string(), 0.9), ("dog".to_string(), 0.1)]
        );
        assert_eq!(p[1].label, None);
        let mut answers = p;
        let novelty = Novelty {
            reference: array![[1.0f32, 0.0]],
            k: 1,
            threshold: 0.5,
            false_rejection: 0.05,
        };
        mark_novel(&mut answers, array![0.7f32, 0.1].view(), &novelty);
        assert!(answers[0].novel && answers[0].label.is_none());
        assert_eq!((answers[1].novel, answers[1].novelty), (false, Some(0.1)));
    }
}
