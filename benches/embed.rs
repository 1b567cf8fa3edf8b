//! `headstart embed` throughput, side by side, in one run on the same images, for four sets: ELPV's small
//! grayscale PNGs, camera photos (2-16 megapixels; as Debian ships them, mostly progressive JPEGs, and
//! re-encoded as the baseline JPEGs phones and cameras write), and smaller, more compressed wallpaper photos.
//! (a) pure inference of the same model at the same batch size (tensors prepared in advance),
//! (b) headstart's end-to-end embed (decode + preprocess + inference, no cache); for the photos also with
//!     `--exact-decode` (every pixel decoded, as before reduced-scale decoding),
//! (c) the Python a user would write (benches/reference_embed.py: Pillow + onnxruntime + numpy),
//! (d) headstart's embed again, answered by the cache.
//!
//! cargo bench --bench embed
//!   HEADSTART_BENCH_IMAGES=N         ELPV images used (512)
//!   HEADSTART_BENCH_PHOTO_COPIES=N   copies of each photo (4: 56 camera photos, 48 wallpapers)

use std::path::{Path, PathBuf};
use std::time::Instant;

use headstart::backbone::JpegDecode;
use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone};
use headstart::data::{decode, files as dataset};
use headstart::embeddings::{EmbedOptions, embed_images};
use headstart::{datasets, zoo};

mod common;

const BATCH: usize = 32;
const ROUNDS: usize = 3;

fn main() {
    let count = env_number("HEADSTART_BENCH_IMAGES", 512);
    let copies = env_number("HEADSTART_BENCH_PHOTO_COPIES", 4);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let elpv = elpv_images(count);
    let camera = photo_copies(&datasets::camera_photos().expect("photo fetch"), copies);
    let baseline = baseline_camera_photos();
    let baseline_copies = photo_copies(baseline.path(), copies);
    let nature = photo_copies(&datasets::wallpaper_photos().expect("photo fetch"), copies);
    let model = zoo::onnx_path(&zoo::find("efficientnet-lite0").expect("zoo entry"))
        .expect("default backbone");
    let reference = BackboneRef::Zoo("efficientnet-lite0".into());
    // (a): a second session, so the pipeline's session is configured exactly as `headstart embed` does it.
    let mut backbone =
        ImageBackbone::open(&reference, &Default::default()).expect("backbone opens");
    let mut pipeline_options = BackboneOptions::default();
    pipeline_options.runtime.intra_op_spinning = Some(false);
    let mut pipeline = ImageBackbone::open(&reference, &pipeline_options).expect("backbone opens");
    let mut exact_options = pipeline_options.clone();
    exact_options.preprocess.jpeg_decode = Some(JpegDecode::Exact);
    let mut exact = ImageBackbone::open(&reference, &exact_options).expect("backbone opens");

    let sets = [
        (
            format!("{count} ELPV images (300x300 grayscale PNG)"),
            elpv.path(),
            false,
        ),
        (
            format!(
                "{} camera photos: Debian lomiri-wallpapers-16.04's 14 (2.1-16 megapixels, 0.5-1.8 MB) x {copies}",
                14 * copies
            ),
            camera.path(),
            true,
        ),
        (
            format!(
                "{} camera photos re-encoded as baseline JPEG (libjpeg defaults, quality 92, 4:2:0) x {copies}",
                14 * copies
            ),
            baseline_copies.path(),
            true,
        ),
        (
            format!(
                "{} wallpaper photos: Debian mate-backgrounds' 12 nature JPEGs (1.3-4.9 megapixels, 80 KB-1.2 MB) x {copies}",
                12 * copies
            ),
            nature.path(),
            true,
        ),
    ];
    for (title, folder, photos) in sets {
        println!("{title}, batch {BATCH}, {cores} cores, median of {ROUNDS} rounds");
        let exact = photos.then_some(&mut exact);
        bench_set(&model, folder, &mut backbone, &mut pipeline, exact);
        println!();
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs (a) to (d) on one folder, ROUNDS times in turn, and prints their medians.
fn bench_set(
    model: &Path,
    folder: &Path,
    backbone: &mut ImageBackbone,
    pipeline: &mut ImageBackbone,
    mut exact: Option<&mut ImageBackbone>,
) {
    let data = dataset::scan(folder).expect("bench folder");
    let n = data.items.len();
    // (a) Pure inference: one real batch, preprocessed once, run as many times as the folder needs.
    let preprocess = backbone.preprocess().clone();
    let mut batch = vec![0.0f32; BATCH * preprocess.tensor_len()];
    for (item, slot) in data
        .items
        .iter()
        .cycle()
        .zip(batch.chunks_exact_mut(preprocess.tensor_len()))
    {
        preprocess.apply(&decode::open_image(&item.path).expect("decodes"), slot);
    }
    backbone.embed_preprocessed(&batch).expect("warm-up");

    let workers = std::env::var("HEADSTART_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let options = EmbedOptions::default()
        .batch_size(BATCH)
        .cache_dir(cache_dir.path())
        .workers(workers.unwrap_or(EmbedOptions::default().workers));
    let cold = options.clone().use_cache(false);
    embed_images(&data, pipeline, &options, &mut |_, _| {}).expect("fills the cache");

    let (mut pure, mut end_to_end, mut exactly, mut python, mut cached) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut python_error = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..n.div_ceil(BATCH) {
            backbone.embed_preprocessed(&batch).expect("inference");
        }
        pure.push((n.div_ceil(BATCH) * BATCH) as f64 / started.elapsed().as_secs_f64());
        let (_, summary) = embed_images(&data, pipeline, &cold, &mut |_, _| {}).expect("embed");
        assert_eq!(summary.computed, n);
        end_to_end.push(summary.per_second);
        if let Some(exact) = exact.as_deref_mut() {
            let (_, summary) = embed_images(&data, exact, &cold, &mut |_, _| {}).expect("embed");
            exactly.push(summary.per_second);
        }
        let (_, summary) =
            embed_images(&data, pipeline, &options, &mut |_, _| {}).expect("cached embed");
        assert_eq!(summary.computed, 0);
        cached.push(summary.per_second);
        match python_reference(model, folder) {
            Ok(rate) => python.push(rate),
            Err(why) => python_error = Some(why),
        }
    }
    let (pure, end_to_end, cached) = (
        common::median(pure),
        common::median(end_to_end),
        common::median(cached),
    );
    let python = common::median(python);

    println!("| path | images/s | ratio |");
    println!("| --- | ---: | ---: |");
    println!("| (a) pure inference (ONNX Runtime, prepared tensors) | {pure:.1} | 1.00 |");
    println!(
        "| (b) `headstart embed`, no cache | {end_to_end:.1} | {:.2} of (a) |",
        end_to_end / pure
    );
    if !exactly.is_empty() {
        let exactly = common::median(exactly);
        println!(
            "| (b') same, `--exact-decode` | {exactly:.1} | (b) is {:.2}x (b') |",
            end_to_end / exactly
        );
    }
    match python_error {
        None => println!(
            "| (c) Python: Pillow + onnxruntime + numpy | {python:.1} | (b) is {:.2}x (c) |",
            end_to_end / python
        ),
        Some(why) => println!("| (c) Python reference | not run: {why} | |"),
    }
    println!(
        "| (d) `headstart embed`, cached re-run | {cached:.1} | {:.1}x (b) |",
        cached / end_to_end
    );
}

/// The first `count` images of ELPV (both classes), hard-linked into a temporary class-folder tree.
fn elpv_images(count: usize) -> tempfile::TempDir {
    let source = datasets::elpv_by_defect().expect("ELPV fetch");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for class in ["defective", "functional"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(source.join(class))
            .expect("class folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        files.extend(entries.into_iter().map(|p| (class.to_string(), p)));
    }
    files.sort_by(|a, b| a.1.file_name().cmp(&b.1.file_name()));
    for (class, path) in files.into_iter().take(count) {
        let target = dir
            .path()
            .join(&class)
            .join(path.file_name().expect("file name"));
        link(&path, &target);
    }
    dir
}

/// `copies` of each photo in `source`, under distinct names, hard-linked into one flat folder.
fn photo_copies(source: &Path, copies: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(source)
        .expect("photo folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    for copy in 0..copies {
        for photo in &photos {
            let name = photo.file_name().expect("file name").to_string_lossy();
            link(photo, &dir.path().join(format!("{copy}-{name}")));
        }
    }
    dir
}

/// The camera photos as a phone or camera would write them: baseline JPEG, quality 92, 4:2:0 (libjpeg's
/// defaults), from their full decoding. Debian's files are mostly progressive, whose scans are entropy-decoded
/// one after another whatever the scale (headstart leaves out only the last-bit ones).
fn baseline_camera_photos() -> tempfile::TempDir {
    let source = datasets::camera_photos().expect("photo fetch");
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&source).expect("photo folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "jpg") {
            continue;
        }
        let image = decode::open_image(&path).expect("decodes").to_rgb8();
        let encoded = std::panic::catch_unwind(|| {
            let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
            compress.set_fastest_defaults();
            compress.set_size(image.width() as usize, image.height() as usize);
            compress.set_quality(92.0);
            let mut started = compress.start_compress(Vec::new()).expect("starts");
            started.write_scanlines(image.as_raw()).expect("encodes");
            started.finish().expect("finishes")
        })
        .expect("libjpeg encodes");
        std::fs::write(dir.path().join(path.file_name().expect("name")), encoded).expect("write");
    }
    dir
}

fn link(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).expect("copy");
    }
}

/// Runs benches/reference_embed.py on the same images.
fn python_reference(model: &Path, images: &Path) -> Result<f64, String> {
    let batch = BATCH.to_string();
    let result = common::python_reference(
        "reference_embed.py",
        "numpy, PIL, onnxruntime",
        &["numpy", "pillow", "onnxruntime==1.31.1"],
        &[
            "bench".as_ref(),
            model.as_os_str(),
            images.as_os_str(),
            batch.as_ref(),
        ],
    )?;
    let images = result["images"].as_f64().ok_or("no image count")?;
    let seconds = result["seconds"].as_f64().ok_or("no time")?;
    Ok(images / seconds)
}
