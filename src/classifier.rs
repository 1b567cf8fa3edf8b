//! A trained bundle with its backbone: images (or texts, for a text bundle) in, class probabilities out. The
//! library face of `predict`.
//!
//! ```no_run
//! use headstart::classifier::{Classifier, predictions};
//!
//! # fn main() -> headstart::Result<()> {
//! let mut classifier = Classifier::load("model.hs".as_ref(), &Default::default(), None)?;
//! let probabilities = classifier.predict_path("cell.png".as_ref())?;
//! let image = headstart::decode::open_image("other.png".as_ref())?;
//! let batch = classifier.predict_images(&[image])?;
//! let answers = predictions(batch.view(), classifier.class_names(), 3, 0.5);
//! println!("{probabilities:?} {:?}", answers[0].label);
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

use std::path::Path;

use image::DynamicImage;
use ndarray::{Array2, ArrayView2};
use serde::Serialize;

use crate::backbone::{
    BackboneIdentity, BackboneOptions, BackboneRef, ImageBackbone, TextBackbone,
};
use crate::bundle::Bundle;
use crate::dataset::Dataset;
use crate::decode::open_image;
use crate::embed::{self, EmbedOptions, EmbedSummary, EmbeddedSet};
use crate::error::{Error, Result};
use crate::preprocess::{ImagePreprocess, PreprocessOverrides};
use crate::runtime::RuntimeOptions;
use crate::textdata::TextDataset;
use crate::textembed::embed_texts;
use crate::zoo;

pub struct Classifier {
    pub bundle: Bundle,
    backbone: Backbone,
}

pub(crate) enum BackboneView<'a> {
    Image(&'a ImageBackbone),
    Text(&'a TextBackbone),
}

/// Boxed: both are large (preprocessing tables, a tokenizer).
enum Backbone {
    Image(Box<ImageBackbone>),
    Text(Box<TextBackbone>),
}

/// One input's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The top class, or `None` ("unknown") when its probability is below the minimum confidence.
    pub label: Option<String>,
    /// The `k` most probable classes, most probable first.
    pub top: Vec<(String, f32)>,
}

impl Classifier {
    /// Loads a bundle and opens the backbone it was trained on (`backbone` overrides where to find it; it must
    /// be the same model).
    pub fn load(
        path: &Path,
        runtime: &RuntimeOptions,
        backbone: Option<&BackboneRef>,
    ) -> Result<Self> {
        let bundle = Bundle::load(path)?;
        let info = &bundle.info;
        let reference = backbone
            .cloned()
            .unwrap_or_else(|| BackboneRef::parse(&info.backbone_source));
        // Check the model file before opening it with the bundle's output and layer names.
        let given_sha256 = match &reference {
            BackboneRef::Zoo(name) => zoo::find(name)?.onnx.sha256().to_string(),
            BackboneRef::File(file) if file.is_file() => crate::fetch::sha256_file(file)?,
            BackboneRef::File(_) => info.backbone.sha256.clone(),
        };
        if given_sha256 != info.backbone.sha256 {
            let given = BackboneIdentity {
                sha256: given_sha256,
                ..info.backbone.clone()
            };
            check_same_backbone(&info.backbone, &given, &reference)?;
        }
        let mut options = BackboneOptions {
            runtime: runtime.clone(),
            output: Some(info.backbone.output.clone()),
            layer: info.backbone.layer.clone(),
            pooling: Some(info.backbone.pooling),
            normalize: Some(info.backbone.normalize),
            ..Default::default()
        };
        let missing = |e: Error| match e {
            Error::Model { message, .. } if message == "no such file" => Error::Config(format!(
                "{}: the bundle's backbone {} is not there; pass --backbone PATH",
                path.display(),
                info.backbone_source
            )),
            other => other,
        };
        let opened = match (&info.preprocess, &info.text) {
            (Some(preprocess), _) => {
                options.preprocess = overrides(preprocess);
                let opened = ImageBackbone::open(&reference, &options).map_err(missing)?;
                check_same_backbone(&info.backbone, opened.identity(), &reference)?;
                Backbone::Image(Box::new(opened))
            }
            (None, Some(text)) => {
                let tokenizer = text.tokenizer_source.as_deref().map(Path::new);
                let opened =
                    TextBackbone::open(&reference, tokenizer, &options).map_err(missing)?;
                check_same_backbone(&info.backbone, opened.identity(), &reference)?;
                if opened.input().tokenizer_sha256 != text.tokenizer_sha256 {
                    return Err(Error::Config(format!(
                        "{}: the tokenizer differs from the one the bundle was trained with",
                        path.display()
                    )));
                }
                Backbone::Text(Box::new(opened))
            }
            (None, None) => {
                return Err(Error::input(
                    path,
                    "damaged bundle: it says neither how images are preprocessed nor how texts are tokenized",
                ));
            }
        };
        Ok(Classifier {
            bundle,
            backbone: opened,
        })
    }

    /// The opened backbone, for export.
    pub(crate) fn backbone_view(&self) -> BackboneView<'_> {
        match &self.backbone {
            Backbone::Image(b) => BackboneView::Image(b),
            Backbone::Text(b) => BackboneView::Text(b),
        }
    }

    /// Whether the bundle classifies texts (else images).
    pub fn takes_text(&self) -> bool {
        matches!(self.backbone, Backbone::Text(_))
    }

    /// Embeds a dataset with the bundle's backbone (parallel decode, cache, skips), ready for
    /// [`Self::predict_embeddings`] or evaluation.
    pub fn embed_dataset(
        &mut self,
        data: &Dataset,
        options: &EmbedOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(EmbeddedSet, EmbedSummary)> {
        embed::embed_dataset(data, self.image_backbone()?, options, progress)
    }

    /// Embeds texts with the bundle's text backbone (length-bucketed batches, cache).
    pub fn embed_texts(
        &mut self,
        data: &TextDataset,
        options: &EmbedOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(EmbeddedSet, EmbedSummary)> {
        match &mut self.backbone {
            Backbone::Text(backbone) => embed_texts(data, backbone, options, progress),
            Backbone::Image(_) => Err(Error::Config(
                "this bundle classifies images; give it image files or folders".into(),
            )),
        }
    }

    /// Class probabilities, [N, K], for texts.
    pub fn predict_texts(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let embeddings = match &mut self.backbone {
            Backbone::Text(backbone) => backbone.embed(texts)?,
            Backbone::Image(_) => {
                return Err(Error::Config(
                    "this bundle classifies images, not texts".into(),
                ));
            }
        };
        self.predict_embeddings(embeddings.view())
    }

    fn image_backbone(&mut self) -> Result<&mut ImageBackbone> {
        match &mut self.backbone {
            Backbone::Image(backbone) => Ok(backbone),
            Backbone::Text(_) => Err(Error::Config(
                "this bundle classifies texts; give it texts".into(),
            )),
        }
    }

    pub fn class_names(&self) -> &[String] {
        &self.bundle.info.class_names
    }

    /// Class probabilities, [N, K], for decoded images.
    pub fn predict_images(&mut self, images: &[DynamicImage]) -> Result<Array2<f32>> {
        let embeddings = self.image_backbone()?.embed(images)?;
        self.predict_embeddings(embeddings.view())
    }

    /// Class probabilities of one image.
    pub fn predict_image(&mut self, image: &DynamicImage) -> Result<Vec<f32>> {
        Ok(self
            .predict_images(std::slice::from_ref(image))?
            .row(0)
            .to_vec())
    }

    /// Class probabilities of one image file.
    pub fn predict_path(&mut self, path: &Path) -> Result<Vec<f32>> {
        self.predict_image(&open_image(path)?)
    }

    /// Class probabilities for embeddings made by the same backbone.
    pub fn predict_embeddings(&self, embeddings: ArrayView2<f32>) -> Result<Array2<f32>> {
        let expected = self.bundle.head.dim();
        if embeddings.ncols() != expected {
            return Err(Error::Config(format!(
                "the backbone makes {}-value embeddings but the bundle's head expects {expected}: a damaged bundle?",
                embeddings.ncols()
            )));
        }
        Ok(self
            .bundle
            .head
            .probabilities(embeddings, self.bundle.temperature))
    }
}

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
    }
}

/// A head only means something on the features it was trained on.
pub fn check_same_backbone(
    trained: &BackboneIdentity,
    given: &BackboneIdentity,
    reference: &dyn std::fmt::Display,
) -> Result<()> {
    if trained.sha256 != given.sha256 {
        return Err(Error::Config(format!(
            "this bundle was trained on backbone {} (sha256 {}…) but {reference} has sha256 {}…: use the same backbone",
            trained.name,
            &trained.sha256[..12.min(trained.sha256.len())],
            &given.sha256[..12.min(given.sha256.len())]
        )));
    }
    // The name comes from wherever the file was found; the content and the feature settings are what count.
    let settings =
        |i: &BackboneIdentity| (i.output.clone(), i.layer.clone(), i.pooling, i.normalize);
    if settings(trained) != settings(given) {
        return Err(Error::Config(format!(
            "this bundle was trained on {} output '{}' layer {:?} pooling {:?}, not on output '{}' layer {:?} pooling {:?}",
            trained.name,
            trained.output,
            trained.layer,
            trained.pooling,
            given.output,
            given.layer,
            given.pooling
        )));
    }
    Ok(())
}

/// Top-`k` answers per row, with `unknown` below `min_confidence`.
pub fn predictions(
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
            Prediction { label, top }
        })
        .collect()
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
    }
}
