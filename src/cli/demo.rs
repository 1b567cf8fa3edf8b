//! The demos. The main one is the whole job on real data: fetch the ELPV solar-cell images, embed them with the
//! default backbone, train a head, and evaluate it on a held-out split. The text demo does the same for
//! sentiment on VADER's movie-review snippets. The last shows what the default backbones see in a few photos
//! and sentences.

use std::path::PathBuf;
use std::time::Instant;

use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::data::decode::open_image;
use headstart::runtime::RuntimeOptions;
use headstart::workflow::{self, HeldOutReport};
use headstart::zoo;
use headstart::{Modality, Result, datasets, metrics};

/// The main job: ELPV → embeddings (cached) → logistic head (cross-validated) → metrics on the held-out split.
pub fn run_elpv(
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HeldOutReport> {
    let started = Instant::now();
    let folder = datasets::elpv_by_defect()?;
    workflow::held_out(
        &folder,
        datasets::ELPV_TEST_FRACTION,
        datasets::ELPV_SEED,
        runtime,
        progress,
        started,
    )
}

/// Sentiment: VADER movie snippets → MiniLM embeddings (cached) → logistic head → metrics on the held-out split.
pub fn run_vader(
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HeldOutReport> {
    let started = Instant::now();
    let table = datasets::vader_movies()?;
    workflow::held_out(
        &table,
        datasets::VADER_TEST_FRACTION,
        datasets::VADER_SEED,
        runtime,
        progress,
        started,
    )
}

/// One photo's result: the embedding size and the pretrained model's own top classes.
pub struct PhotoResult {
    pub path: PathBuf,
    pub dim: usize,
    pub top: Vec<(String, f32)>,
}

pub struct DemoReport {
    pub image_backbone: String,
    pub preprocess: String,
    pub photos: Vec<PhotoResult>,
    pub ms_per_image: f64,
    pub text_backbone: String,
    /// (sentence a, sentence b, cosine similarity)
    pub sentence_pairs: Vec<(String, String, f32)>,
}

const SENTENCES: [(&str, &str); 3] = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    (
        "A man is eating food.",
        "The stock market fell sharply on Monday.",
    ),
    ("The new movie is wonderful.", "I loved this film."),
];

pub fn run_photos(runtime: &RuntimeOptions) -> Result<DemoReport> {
    let image_model = zoo::default_for(Modality::Image);
    let reference = BackboneRef::Zoo(image_model.name.clone());
    let options = BackboneOptions {
        runtime: runtime.clone(),
        ..Default::default()
    };
    let mut backbone = ImageBackbone::open(&reference, &options)?;
    let (logits_output, labels) = zoo::labels(&image_model)?.unwrap_or_default();
    let mut classifier = ImageBackbone::open(
        &reference,
        &BackboneOptions {
            output: Some(logits_output),
            ..options.clone()
        },
    )?;
    let paths = datasets::sample_photos()?;
    let images = paths
        .iter()
        .map(|p| open_image(p))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let embeddings = backbone.embed(&images)?;
    let ms_per_image = started.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;
    let logits = classifier.embed(&images)?;
    let photos = paths
        .into_iter()
        .zip(logits.rows())
        .map(|(path, row)| PhotoResult {
            path,
            dim: embeddings.ncols(),
            top: zoo::top_classes(row.as_slice().unwrap_or(&[]), &labels, 3),
        })
        .collect();

    let text_model = zoo::default_for(Modality::Text);
    let mut text = TextBackbone::open(&BackboneRef::Zoo(text_model.name.clone()), &options)?;
    let sentence_pairs = SENTENCES
        .iter()
        .map(|(a, b)| {
            let e = text.embed(&[a, b])?;
            Ok((
                a.to_string(),
                b.to_string(),
                metrics::cosine(
                    e.row(0).as_slice().unwrap_or(&[]),
                    e.row(1).as_slice().unwrap_or(&[]),
                ),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DemoReport {
        image_backbone: image_model.name,
        preprocess: backbone.preprocess().describe(),
        photos,
        ms_per_image,
        text_backbone: text_model.name,
        sentence_pairs,
    })
}
