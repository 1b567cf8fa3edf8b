//! `headstart embed` on texts, side by side, in one run on the same texts:
//! (a) headstart's embed (tokenize, length-bucketed batches, inference, pooling; no cache),
//! (b) the Python a user would write (benches/reference_embed_text.py: tokenizers + onnxruntime + numpy,
//!     batches in the data's order),
//! (c) headstart's embed again, answered by the cache.
//! Same model (all-minilm-l6-v2), same maximum length, batches of 32.
//!
//! cargo bench --bench embed_text      (HEADSTART_BENCH_TEXTS=N to change the 2,000 VADER snippets used)

use std::time::Instant;

use headstart::backbone::{BackboneRef, TextBackbone};
use headstart::data::texts::{self, TextOptions};
use headstart::embeddings::EmbedOptions;
use headstart::embeddings::embed_texts;
use headstart::zoo;

mod common;

const BATCH: usize = 32;
const ROUNDS: usize = 3;

fn main() {
    let count: usize = std::env::var("HEADSTART_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let table = headstart::datasets::vader_movies().expect("VADER fetch");
    let mut data = texts::load_table(&table, &TextOptions::default()).expect("VADER table");
    data.items.truncate(count);
    let n = data.items.len();
    let texts: Vec<&str> = data.items.iter().map(|i| i.text.as_str()).collect();
    let texts_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(texts_file.path(), serde_json::to_vec(&texts).expect("json")).expect("write");

    let model = zoo::find("all-minilm-l6-v2").expect("zoo entry");
    let onnx = zoo::fetch_all(&model).expect("text backbone");
    let tokenizer = zoo::registry_path(&model.name, &model.text.as_ref().expect("text").tokenizer)
        .expect("tokenizer");
    let mut backbone =
        TextBackbone::open(&BackboneRef::Zoo(model.name.clone()), &Default::default())
            .expect("backbone opens");
    let max_length = backbone.max_length();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "{n} VADER movie snippets, max length {max_length}, batch {BATCH}, {cores} cores, median of {ROUNDS} rounds"
    );

    let cache_dir = tempfile::tempdir().expect("temp dir");
    let options = EmbedOptions::default()
        .batch_size(BATCH)
        .cache_dir(cache_dir.path().to_path_buf());
    let cold = options.clone().use_cache(false);
    // Warm-up, and fills the cache for (c).
    embed_texts(&data, &mut backbone, &options, &mut |_, _| {}).expect("embed");

    let (mut ours, mut python, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let mut python_error = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        embed_texts(&data, &mut backbone, &cold, &mut |_, _| {}).expect("embed");
        ours.push(n as f64 / started.elapsed().as_secs_f64());
        let (_, summary) =
            embed_texts(&data, &mut backbone, &options, &mut |_, _| {}).expect("cached");
        assert_eq!(summary.computed, 0);
        cached.push(summary.per_second);
        let max_length = max_length.to_string();
        let batch = BATCH.to_string();
        let result = common::python_reference(
            "reference_embed_text.py",
            "numpy, tokenizers, onnxruntime",
            &["numpy", "tokenizers", "onnxruntime==1.31.1"],
            &[
                "bench".as_ref(),
                onnx.as_os_str(),
                tokenizer.as_os_str(),
                max_length.as_ref(),
                texts_file.path().as_os_str(),
                batch.as_ref(),
            ],
        );
        match result.and_then(|r| {
            let texts = r["texts"].as_f64().ok_or("no text count")?;
            let seconds = r["seconds"].as_f64().ok_or("no time")?;
            Ok(texts / seconds)
        }) {
            Ok(rate) => python.push(rate),
            Err(why) => python_error = Some(why),
        }
    }
    let (ours, cached) = (common::median(ours), common::median(cached));
    println!();
    println!("| path | texts/s | ratio |");
    println!("| --- | ---: | ---: |");
    println!("| (a) `headstart embed`, no cache | {ours:.1} | 1.00 |");
    match (python_error, common::median(python)) {
        (None, py) => println!(
            "| (b) Python: tokenizers + onnxruntime + numpy | {py:.1} | (a) is {:.2}x (b) |",
            ours / py
        ),
        (Some(why), _) => println!("| (b) Python reference | not run: {why} | |"),
    }
    println!(
        "| (c) `headstart embed`, cached re-run | {cached:.1} | {:.1}x (a) |",
        cached / ours
    );
}
