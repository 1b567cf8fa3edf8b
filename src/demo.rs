//! The demos. The main one is the whole job on real data: fetch the ELPV solar-cell images, embed them with the
//! default backbone, train a head, and evaluate it on a held-out split. The text demo does the same for
//! sentiment on VADER's movie-review snippets. The last shows what the default backbones see in a few photos
//! and sentences.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use crate::decode::open_image;
use crate::embed::{EmbedOptions, EmbedSummary};
use crate::error::Result;
use crate::fetch::{self, RegistryFile};
use crate::head::{TrainParams, TrainReport};
use crate::metrics::Metrics;
use crate::runtime::RuntimeOptions;
use crate::zoo::{self, Modality};
use crate::{datasets, workflow};

/// Sample photos shipped in scikit-image's wheel (public domain or CC0 per its data README).
const PHOTOS: [(&str, &str); 5] = [
    (
        "chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    ),
    (
        "coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    ),
    (
        "astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    ),
    (
        "rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    ),
    (
        "motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    ),
];

/// Fetches (once) and returns the sample photos.
pub fn sample_photos() -> Result<Vec<PathBuf>> {
    let dir = crate::home::home()?.join("samples").join("scikit-image");
    let files: Vec<(RegistryFile, PathBuf)> = PHOTOS
        .iter()
        .map(|(name, sha256)| {
            let spec = RegistryFile {
                package: "scikit-image==0.26.0".into(),
                file: format!("skimage/data/{name}"),
                sha256: sha256.to_string(),
                platform: Some("manylinux_2_28_x86_64".into()),
            };
            (spec, dir.join(name))
        })
        .collect();
    fetch::ensure_all(&files)?;
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Images held out for testing in the ELPV demo: a stratified, seeded 824 of 2,624 (the split of the Python
/// logistic probe that measured 0.826 on these features).
pub const ELPV_TEST_FRACTION: f64 = 824.0 / 2624.0;
pub const ELPV_SEED: u64 = 42;

/// A demo job's result: the held-out split's sizes, training, and metrics on the held-out part.
pub struct HeldOutReport {
    pub embed: EmbedSummary,
    pub train_rows: usize,
    pub test_rows: usize,
    pub report: TrainReport,
    pub test: Metrics,
    pub seconds: f64,
}

/// The main job: ELPV → embeddings (cached) → logistic head (cross-validated) → metrics on the held-out split.
pub fn run_elpv(
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HeldOutReport> {
    let started = Instant::now();
    let folder = datasets::elpv_by_defect()?;
    held_out_job(
        &folder,
        ELPV_TEST_FRACTION,
        ELPV_SEED,
        runtime,
        progress,
        started,
    )
}

/// Texts held out for testing in the sentiment demo: a stratified, seeded fifth of the 10,605 snippets.
pub const VADER_TEST_FRACTION: f64 = 0.2;
pub const VADER_SEED: u64 = 42;

/// Sentiment: VADER movie snippets → MiniLM embeddings (cached) → logistic head → metrics on the held-out split.
pub fn run_vader(
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HeldOutReport> {
    let started = Instant::now();
    let table = datasets::vader_movies()?;
    held_out_job(
        &table,
        VADER_TEST_FRACTION,
        VADER_SEED,
        runtime,
        progress,
        started,
    )
}

/// `data` (a folder or text table) → embeddings with the default backbone for it → a stratified split →
/// the default logistic head → metrics on the held-out part. `started` includes fetching the data.
fn held_out_job(
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
    let (set, summary) = workflow::embeddings_for(
        data,
        None,
        &options,
        &Default::default(),
        &EmbedOptions::default(),
        progress,
    )?;
    let embed =
        summary.ok_or_else(|| crate::Error::input(data, "expected a folder or a text table"))?;
    let (train_rows, test_rows) = workflow::stratified_split(&set, test_fraction, seed)?;
    let (train_set, test_set) = (set.select(&train_rows), set.select(&test_rows));
    let trained = workflow::train_bundle(&train_set, Some(&test_set), &TrainParams::default())?;
    let test = trained
        .validation
        .ok_or_else(|| crate::Error::Config("no test split".into()))?;
    Ok(HeldOutReport {
        embed,
        train_rows: train_rows.len(),
        test_rows: test_rows.len(),
        report: trained.report,
        test,
        seconds: started.elapsed().as_secs_f64(),
    })
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
    let paths = sample_photos()?;
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
            top: top_k(row.as_slice().unwrap_or(&[]), &labels, 3),
        })
        .collect();

    let text_model = zoo::default_for(Modality::Text);
    let mut text = TextBackbone::open(&BackboneRef::Zoo(text_model.name.clone()), None, &options)?;
    let sentence_pairs = SENTENCES
        .iter()
        .map(|(a, b)| {
            let e = text.embed(&[a, b])?;
            Ok((
                a.to_string(),
                b.to_string(),
                cosine(
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

/// The k most probable classes (softmax over logits), with names when known.
pub fn top_k(logits: &[f32], labels: &[String], k: usize) -> Vec<(String, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            (
                labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("class {i}")),
                exp[i] / sum,
            )
        })
        .collect()
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}
