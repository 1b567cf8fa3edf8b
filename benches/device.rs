//! Is the device kept busy? In one run, on the device `--device` would pick (CUDA where there is one):
//! (a) pure inference: the backbone on one prepared batch (preprocessed once, in the same batch buffer embed
//!     uses), run as many times as the folder needs: no reading, decoding or preprocessing;
//! (b) end-to-end `embed` of a folder of JPEGs with the same model and batch size, no cache,
//! with the GPU's SM utilisation (`nvidia-smi dmon`) during each, and texts/s of the default text backbone.
//!
//! cargo bench --bench device
//! Settings (environment): HEADSTART_BENCH_DEVICE auto|cpu|cuda, HEADSTART_BENCH_IMAGES (count, default 2048),
//! HEADSTART_BENCH_SIZE (pixels per side, default 32), HEADSTART_BENCH_BATCH (default: the device's),
//! HEADSTART_BENCH_CONV heuristic|exhaustive, HEADSTART_BENCH_PRECISION fp32|fp16, HEADSTART_BENCH_TEXTS (count, default 2048; 0 skips texts),
//! HEADSTART_BENCH_ALLOW_CPU_NODES=1, HEADSTART_BENCH_FOLDER (keep the JPEGs there), HEADSTART_BENCH_TEXT_MODEL
//! (default all-minilm-l6-v2, which is int8; all-minilm-l6-v2-fp32 for fp16 texts).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::data::{decode, files as dataset, texts};
use headstart::embeddings::{EmbedOptions, embed_images, embed_texts};
use headstart::runtime::{ConvSearch, Device, Precision, RuntimeOptions};
use image::{ImageFormat, Rgb, RgbImage};

fn setting<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let count: usize = setting("HEADSTART_BENCH_IMAGES").unwrap_or(2048);
    let size: u32 = setting("HEADSTART_BENCH_SIZE").unwrap_or(32);
    let text_count: usize = setting("HEADSTART_BENCH_TEXTS").unwrap_or(2048);
    let device = match std::env::var("HEADSTART_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda,
        _ => Device::Auto,
    };
    let conv_search = match std::env::var("HEADSTART_BENCH_CONV").as_deref() {
        Ok("exhaustive") => ConvSearch::Exhaustive,
        _ => ConvSearch::Heuristic,
    };
    let precision = match std::env::var("HEADSTART_BENCH_PRECISION").as_deref() {
        Ok("fp16") => Precision::Fp16,
        _ => Precision::Fp32,
    };
    let runtime = RuntimeOptions::default()
        .device(device)
        .conv_search(conv_search)
        .precision(precision)
        .allow_cpu_nodes(std::env::var("HEADSTART_BENCH_ALLOW_CPU_NODES").is_ok_and(|v| v == "1"));
    let options = BackboneOptions::default().runtime(runtime.clone());

    let folder = tempfile::tempdir().expect("temp dir");
    let images = match std::env::var_os("HEADSTART_BENCH_FOLDER") {
        Some(kept) => std::path::PathBuf::from(kept),
        None => folder.path().join("images"),
    };
    write_jpegs(&images, count, size);
    let data = dataset::scan(&images).expect("bench folder");
    let opened = Instant::now();
    let reference = BackboneRef::Zoo("efficientnet-lite0".into());
    let mut backbone = ImageBackbone::open(&reference, &options).expect("backbone opens");
    let open_seconds = opened.elapsed().as_secs_f64();
    let embed_options = {
        let mut options = EmbedOptions::default().use_cache(false);
        options.batch_size = setting("HEADSTART_BENCH_BATCH");
        options
    };
    let batch = embed_options.batch_size_on(backbone.device());
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{count} JPEGs {size}x{size}, efficientnet-lite0, batch {batch}, {cores} cores, device {}, \
         conv search {conv_search:?}, {precision:?}; backbone opened in {open_seconds:.2} s",
        backbone.device()
    );

    // (a) Pure inference: one batch of a real image, preprocessed once into the batch buffer.
    let preprocess = backbone.preprocess().clone();
    let image = decode::open_image(&data.items[0].path).expect("decodes");
    let mut buffer = backbone.batch_buffer(batch).expect("batch buffer");
    println!(
        "batch buffer: {}",
        if buffer.is_pinned() {
            "page-locked (pinned)"
        } else {
            "ordinary host memory"
        }
    );
    for row in 0..batch {
        preprocess.apply(&image, buffer.row_mut(row));
    }
    let warm = Instant::now();
    backbone.embed_batch(&buffer, batch).expect("warm-up");
    let first_batch = warm.elapsed().as_secs_f64();
    for _ in 0..2 {
        backbone.embed_batch(&buffer, batch).expect("warm-up");
    }
    let batches = count.div_ceil(batch);
    let monitor = SmMonitor::start();
    let started = Instant::now();
    for _ in 0..batches {
        backbone.embed_batch(&buffer, batch).expect("inference");
    }
    let pure = (batches * batch) as f64 / started.elapsed().as_secs_f64();
    let pure_sm = monitor.finish();

    // (b) End to end, as `headstart embed DIR --no-cache` runs it; the first pass warms the page cache.
    embed_images(&data, &mut backbone, &embed_options, &mut |_, _| {}).expect("embeds");
    let monitor = SmMonitor::start();
    let (_, summary) =
        embed_images(&data, &mut backbone, &embed_options, &mut |_, _| {}).expect("embeds");
    let end_to_end_sm = monitor.finish();
    let end_to_end = summary.per_second;
    println!("first batch (start-up included): {:.3} s", first_batch);
    println!("(a) pure inference      {pure:>9.1} img/s   SM {pure_sm}");
    println!("(b) end-to-end embed    {end_to_end:>9.1} img/s   SM {end_to_end_sm}");
    println!("    (b)/(a) = {:.2}", end_to_end / pure);
    if let Some(placement) = &summary.placement {
        println!("    {placement}");
    }
    let s = &summary.stages;
    println!(
        "    stages (s; workers summed): read {:.2}, decode {:.2}, preprocess {:.2}, waiting {:.2}, \
         inference {:.2}, write {:.2}; wall {:.2}",
        s.read, s.decode, s.preprocess, s.waiting, s.inference, s.write, summary.seconds
    );

    if text_count > 0 {
        let texts = synthetic_texts(text_count);
        let table = folder.path().join("texts.csv");
        std::fs::write(&table, texts).expect("text table");
        let dataset =
            texts::load_table(&table, &texts::TextOptions::default()).expect("text table loads");
        let text_model = std::env::var("HEADSTART_BENCH_TEXT_MODEL")
            .unwrap_or_else(|_| "all-minilm-l6-v2".into());
        let reference = BackboneRef::Zoo(text_model.clone());
        match TextBackbone::open(&reference, &options) {
            Err(e) => println!("texts: {e}"),
            Ok(mut text) => {
                embed_texts(&dataset, &mut text, &embed_options, &mut |_, _| {}).expect("warms");
                let monitor = SmMonitor::start();
                let (_, summary) = embed_texts(&dataset, &mut text, &embed_options, &mut |_, _| {})
                    .expect("embeds texts");
                println!(
                    "texts: {} with {text_model} ({precision:?}) on {}, batch {}: {:.1} texts/s   SM {}; {}{}",
                    summary.embedded,
                    summary.device,
                    summary.batch_size,
                    summary.per_second,
                    monitor.finish(),
                    summary
                        .placement
                        .as_ref()
                        .map_or("placement not reported".to_string(), |p| p.to_string()),
                    summary
                        .warnings
                        .iter()
                        .map(|w| format!("\n    warning: {w}"))
                        .collect::<String>()
                );
            }
        }
    }
}

/// `count` JPEGs of noise over gradients in two class folders: real decoding work, deterministic.
fn write_jpegs(root: &Path, count: usize, size: u32) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..count {
        let class = root.join(if i % 2 == 0 { "a" } else { "b" });
        std::fs::create_dir_all(&class).expect("class folder");
        let image = RgbImage::from_fn(size, size, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 63) as u8;
            Rgb([
                (x * 255 / size) as u8 / 2 + noise,
                (y * 255 / size) as u8 / 2 + noise,
                ((i * 37) % 200) as u8 + noise / 2,
            ])
        });
        image
            .save_with_format(class.join(format!("{i:06}.jpg")), ImageFormat::Jpeg)
            .expect("writes JPEG");
    }
}

/// A table of short customer-question-like texts, 8 to 40 words each.
fn synthetic_texts(count: usize) -> String {
    const WORDS: &[&str] = &[
        "my",
        "order",
        "has",
        "not",
        "arrived",
        "yet",
        "and",
        "the",
        "tracking",
        "page",
        "says",
        "delivered",
        "can",
        "you",
        "help",
        "me",
        "change",
        "password",
        "account",
        "refund",
        "please",
        "thanks",
        "broken",
        "screen",
        "when",
        "will",
        "it",
        "ship",
        "to",
        "Canada",
        "invoice",
        "missing",
        "charged",
        "twice",
        "cancel",
        "subscription",
        "great",
        "service",
    ];
    let mut out = String::from("text,label\n");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..count {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 8 + (state >> 59) as usize + (state >> 60) as usize;
        let words: Vec<&str> = (0..len)
            .map(|k| WORDS[((state >> (k % 48)) as usize + k * 7) % WORDS.len()])
            .collect();
        out.push_str(&format!("{},{}\n", words.join(" "), i % 2));
    }
    out
}

/// `nvidia-smi dmon -s u` in the background: SM utilisation once a second while a phase runs.
struct SmMonitor(Option<Child>);

impl SmMonitor {
    fn start() -> Self {
        SmMonitor(
            Command::new("nvidia-smi")
                .args(["dmon", "-s", "u", "-d", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok(),
        )
    }

    /// "mean 87 %, max 99 % (12 samples)", or "n/a" without nvidia-smi.
    fn finish(self) -> String {
        let Some(mut child) = self.0 else {
            return "n/a".into();
        };
        let _ = child.kill();
        let Ok(output) = child.wait_with_output() else {
            return "n/a".into();
        };
        let samples: Vec<f64> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        if samples.is_empty() {
            return "n/a (phase shorter than a sample)".into();
        }
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let max = samples.iter().copied().fold(0.0, f64::max);
        format!(
            "mean {mean:.0} %, max {max:.0} % ({} samples)",
            samples.len()
        )
    }
}
