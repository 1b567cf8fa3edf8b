//! `headstart embed` throughput, side by side, in one run on the same images:
//! (a) pure inference of the same model at the same batch size (tensors prepared in advance),
//! (b) headstart's end-to-end embed (decode + preprocess + inference, no cache),
//! (c) the Python a user would write (benches/reference_embed.py: Pillow + onnxruntime + numpy),
//! (d) headstart's embed again, answered by the cache.
//!
//! cargo bench --bench embed            (HEADSTART_BENCH_IMAGES=N to change the 512 ELPV images used)

use std::path::{Path, PathBuf};
use std::time::Instant;

use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone};
use headstart::data::{decode, files as dataset};
use headstart::embeddings::{EmbedOptions, embed_images};
use headstart::{datasets, zoo};

mod common;

const BATCH: usize = 32;
const ROUNDS: usize = 3;

fn main() {
    let count: usize = std::env::var("HEADSTART_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let images = bench_images(count);
    let model = zoo::onnx_path(&zoo::find("efficientnet-lite0").expect("zoo entry"))
        .expect("default backbone");
    let reference = BackboneRef::Zoo("efficientnet-lite0".into());
    let mut backbone =
        ImageBackbone::open(&reference, &Default::default()).expect("backbone opens");
    let data = dataset::scan(images.path()).expect("bench folder");
    let n = data.items.len();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{n} ELPV images (300x300 PNG), batch {BATCH}, {cores} cores, median of {ROUNDS} rounds"
    );

    // (a) Pure inference: one real batch, preprocessed once, run as many times as the folder needs.
    let preprocess = backbone.preprocess().clone();
    let mut batch = vec![0.0f32; BATCH * preprocess.tensor_len()];
    for (item, slot) in data
        .items
        .iter()
        .zip(batch.chunks_exact_mut(preprocess.tensor_len()))
    {
        preprocess.apply(&decode::open_image(&item.path).expect("decodes"), slot);
    }
    backbone.embed_preprocessed(&batch).expect("warm-up");

    // (b) and (d) use the backbone as `headstart embed DIR` configures it.
    let mut pipeline_options = BackboneOptions::default();
    pipeline_options.runtime.intra_op_spinning = Some(false);
    let mut pipeline = ImageBackbone::open(&reference, &pipeline_options).expect("backbone opens");
    let workers = std::env::var("HEADSTART_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let options = EmbedOptions {
        batch_size: Some(BATCH),
        cache_dir: Some(cache_dir.path().to_path_buf()),
        workers: workers.unwrap_or(EmbedOptions::default().workers),
        ..Default::default()
    };
    let cold = EmbedOptions {
        use_cache: false,
        ..options.clone()
    };
    embed_images(&data, &mut pipeline, &options, &mut |_, _| {}).expect("fills the cache");

    // The machine is noisy: the paths take turns, ROUNDS times, and each reports its median.
    let (mut pure, mut end_to_end, mut python, mut cached) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut python_error = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..n.div_ceil(BATCH) {
            backbone.embed_preprocessed(&batch).expect("inference");
        }
        pure.push((n.div_ceil(BATCH) * BATCH) as f64 / started.elapsed().as_secs_f64());
        let (_, summary) =
            embed_images(&data, &mut pipeline, &cold, &mut |_, _| {}).expect("embed");
        end_to_end.push(summary.per_second);
        let (_, summary) =
            embed_images(&data, &mut pipeline, &options, &mut |_, _| {}).expect("cached embed");
        assert_eq!(summary.computed, 0);
        cached.push(summary.per_second);
        match python_reference(&model, images.path()) {
            Ok(rate) => python.push(rate),
            Err(why) => python_error = Some(why),
        }
    }
    let (pure, end_to_end, cached) = (
        common::median(pure),
        common::median(end_to_end),
        common::median(cached),
    );

    println!();
    println!("| path | images/s | ratio |");
    println!("| --- | ---: | ---: |");
    println!("| (a) pure inference (ONNX Runtime, prepared tensors) | {pure:.1} | 1.00 |");
    println!(
        "| (b) `headstart embed`, no cache | {end_to_end:.1} | {:.2} of (a) |",
        end_to_end / pure
    );
    match (python_error, common::median(python)) {
        (None, py) => println!(
            "| (c) Python: Pillow + onnxruntime + numpy | {py:.1} | (b) is {:.2}x (c) |",
            end_to_end / py
        ),
        (Some(why), _) => println!("| (c) Python reference | not run: {why} | |"),
    }
    println!(
        "| (d) `headstart embed`, cached re-run | {cached:.1} | {:.1}x (b) |",
        cached / end_to_end
    );
}

/// The first `count` images of ELPV (both classes), hard-linked into a temporary class-folder tree.
fn bench_images(count: usize) -> tempfile::TempDir {
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
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        if std::fs::hard_link(&path, &target).is_err() {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
    dir
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
