//! The demos. The main one is the whole job on real data: fetch the ELPV solar-cell images, embed them with the
//! default backbone, train a head, and evaluate it on a held-out split. The text demo does the same for
//! sentiment on VADER's movie-review snippets. The last shows what the default backbones see in a few photos
//! and sentences.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::data::decode::open_image;
use headstart::runtime::RuntimeOptions;
use headstart::workflow::{self, TestedJob};
use headstart::zoo;
use headstart::{Modality, Result, datasets, embeddings};

use crate::cli::failure::Outcome;
use crate::cli::print::{print_embed_summary, print_train_report};
use crate::cli::progress::Progress;

#[derive(Args)]
pub struct DemoArgs {
    /// Instead: what the default backbones see in sample photos and sentences
    #[arg(long, conflicts_with = "text")]
    photos: bool,
    /// Instead: sentiment of the VADER movie-review snippets with the default text backbone
    #[arg(long)]
    text: bool,
}

pub fn run(args: &DemoArgs, runtime: &RuntimeOptions) -> Outcome {
    if args.photos {
        print_demo(&run_photos(runtime)?);
    } else if args.text {
        let mut bar = Progress::new("texts", true);
        let result = run_vader(runtime, &mut |done, total| bar.update(done, total));
        bar.finish();
        print_tested_job(
            "VADER movie-review snippets: positive (mean score > 0) vs negative, backbone all-minilm-l6-v2",
            "texts",
            datasets::VADER_SEED,
            &result?,
        );
    } else {
        let mut bar = Progress::new("images", true);
        let result = run_elpv(runtime, &mut |done, total| bar.update(done, total));
        bar.finish();
        print_tested_job(
            "ELPV solar cells: defective (defect probability >= 0.5) vs functional, backbone efficientnet-lite0",
            "images",
            datasets::ELPV_SEED,
            &result?,
        );
    }
    Ok(())
}

/// The main job: ELPV → embeddings (cached) → logistic head (cross-validated) → metrics on the held-out split.
fn run_elpv(runtime: &RuntimeOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<TestedJob> {
    let started = Instant::now();
    let folder = datasets::elpv_by_defect()?;
    workflow::train_and_test(
        &folder,
        datasets::ELPV_TEST_FRACTION,
        datasets::ELPV_SEED,
        runtime,
        progress,
        started,
    )
}

/// Sentiment: VADER movie snippets → MiniLM embeddings (cached) → logistic head → metrics on the held-out split.
fn run_vader(
    runtime: &RuntimeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TestedJob> {
    let started = Instant::now();
    let table = datasets::vader_movies()?;
    workflow::train_and_test(
        &table,
        datasets::VADER_TEST_FRACTION,
        datasets::VADER_SEED,
        runtime,
        progress,
        started,
    )
}

/// One photo's result: the embedding size and the pretrained model's own top classes.
struct PhotoResult {
    path: PathBuf,
    dim: usize,
    top: Vec<(String, f32)>,
}

struct DemoReport {
    image_backbone: String,
    preprocess: String,
    photos: Vec<PhotoResult>,
    ms_per_image: f64,
    text_backbone: String,
    /// (sentence a, sentence b, cosine similarity)
    sentence_pairs: Vec<(String, String, f32)>,
}

const SENTENCES: [(&str, &str); 3] = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    (
        "A man is eating food.",
        "The stock market fell sharply on Monday.",
    ),
    ("The new movie is wonderful.", "I loved this film."),
];

fn run_photos(runtime: &RuntimeOptions) -> Result<DemoReport> {
    let image_model = zoo::default_for(Modality::Image);
    let reference = BackboneRef::Zoo(image_model.name.clone());
    let options = BackboneOptions::default().runtime(runtime.clone());
    let mut backbone = ImageBackbone::open(&reference, &options)?;
    let (logits_output, labels) = zoo::labels(&image_model)?.unwrap_or_default();
    let mut classifier = ImageBackbone::open(&reference, &options.clone().output(logits_output))?;
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
                embeddings::cosine(
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

/// A demo job's output: what it is, what was embedded, the split, training, and the held-out metrics.
fn print_tested_job(title: &str, unit: &str, seed: u64, report: &workflow::TestedJob) {
    println!("{title}");
    print_embed_summary(&report.embed, false);
    println!(
        "split: {} train / {} test {unit} (stratified, seed {seed})",
        report.train_rows, report.test_rows
    );
    print_train_report(&report.report);
    println!("\ntest set\n{}", report.test.render());
    println!("whole job: {:.1} s", report.seconds);
}

fn print_demo(report: &DemoReport) {
    println!(
        "image backbone {} ({})",
        report.image_backbone, report.preprocess
    );
    for photo in &report.photos {
        let name = photo
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let top: Vec<String> = photo
            .top
            .iter()
            .map(|(label, p)| format!("{label} {:.0}%", p * 100.0))
            .collect();
        println!(
            "  {name:<22} {}-d embedding; ImageNet says: {}",
            photo.dim,
            top.join(" | ")
        );
    }
    println!(
        "  {:.1} ms per image (batch of {})",
        report.ms_per_image,
        report.photos.len()
    );
    println!("text backbone {}", report.text_backbone);
    for (a, b, cos) in &report.sentence_pairs {
        println!("  cos {cos:.3}  \"{a}\" ~ \"{b}\"");
    }
}
