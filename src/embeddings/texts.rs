//! A text dataset → embeddings. Texts are tokenized in chunks, sorted by token count and cut into batches of
//! similar length, so each batch pads little; vectors go back to dataset order. Each text's bytes key the
//! cache, as an image's bytes do.

use std::time::Instant;

use super::cache::{EmbeddingCache, Key};
use super::set::{
    EmbedOptions, EmbedSummary, EmbeddedSet, SkipReport, StageTimes, cpu_nodes_warning, rate,
};
use crate::backbone::{Features, InputSpec, TextBackbone};
use crate::data::TextDataset;
use crate::error::Result;
use crate::modality::Modality;

/// Texts tokenized at a time: bounds memory while leaving enough texts to sort into even batches.
const CHUNK: usize = 4096;

/// Embeds every text of `dataset`. `progress(done, total)` is called as batches complete.
pub fn embed_texts(
    dataset: &TextDataset,
    backbone: &mut TextBackbone,
    options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, EmbedSummary)> {
    let started = Instant::now();
    let input = InputSpec::Text(backbone.input().clone());
    // Texts are hashed into keys only when there is a cache to ask (not under --no-cache).
    let cache: Option<(EmbeddingCache, Vec<Key>)> =
        EmbeddingCache::for_options(options, backbone.identity(), &input)?.map(|cache| {
            let keys = dataset
                .items
                .iter()
                .map(|item| cache.key(&EmbeddingCache::content_key(item.text.as_bytes()), "text"))
                .collect();
            (cache, keys)
        });
    let total = dataset.items.len();
    let device = backbone.device().clone();
    let batch_size = options.batch_size_on(&device);
    let mut stages = StageTimes::default();
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; total];
    if let Some((cache, keys)) = &cache {
        for (slot, key) in vectors.iter_mut().zip(keys) {
            *slot = cache.get(key);
        }
    }
    let cached: Vec<bool> = vectors.iter().map(Option::is_some).collect();
    let from_cache = cached.iter().filter(|&&c| c).count();
    let mut done = from_cache;
    progress(done, total);

    let missing: Vec<usize> = (0..total).filter(|&i| vectors[i].is_none()).collect();
    let mut truncated = 0;
    for chunk in missing.chunks(CHUNK) {
        let texts: Vec<&str> = chunk
            .iter()
            .map(|&i| dataset.items[i].text.as_str())
            .collect();
        let began = Instant::now();
        let tokens = backbone.tokenize(&texts)?;
        stages.preprocess += began.elapsed().as_secs_f64();
        truncated += tokens.iter().filter(|t| t.truncated).count();
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_by_key(|&j| tokens[j].encoding.len());
        for batch in order.chunks(batch_size) {
            let batch_encodings: Vec<_> = batch.iter().map(|&j| &tokens[j].encoding).collect();
            let began = Instant::now();
            let rows = backbone.embed_encodings(&batch_encodings)?;
            let inferred = Instant::now();
            stages.inference += (inferred - began).as_secs_f64();
            for (&j, row) in batch.iter().zip(rows.rows()) {
                let item = chunk[j];
                let vector = row.to_vec();
                if let Some((cache, keys)) = &cache {
                    cache.put_or_warn(&keys[item], &vector);
                }
                vectors[item] = Some(vector);
            }
            stages.write += inferred.elapsed().as_secs_f64();
            done += batch.len();
            progress(done, total);
        }
    }
    // Cached texts were not tokenized; only those that might be long enough are, to count them too. A token
    // covers at least one byte, so a text is long enough only with about `max_length` bytes.
    let max_length = backbone.max_length();
    let maybe_long: Vec<&str> = (0..total)
        .filter(|&i| cached[i])
        .map(|i| dataset.items[i].text.as_str())
        .filter(|text| text.len() + 8 >= max_length)
        .collect();
    for chunk in maybe_long.chunks(CHUNK) {
        truncated += backbone
            .tokenize(chunk)?
            .iter()
            .filter(|t| t.truncated)
            .count();
    }

    let mut set = EmbeddedSet {
        dim: 0,
        embeddings: Vec::new(),
        labels: dataset.is_labelled().then(|| Vec::with_capacity(total)),
        class_names: dataset.classes.clone(),
        paths: Vec::with_capacity(total),
        augmented: vec![false; total],
        features: Features {
            source: backbone.source().clone(),
            backbone: backbone.identity().clone(),
            input,
        },
    };
    for (item, vector) in dataset.items.iter().zip(vectors) {
        let vector = vector.expect("every text has a vector: from the cache or computed");
        set.dim = vector.len();
        set.embeddings.extend(vector);
        if let (Some(labels), Some(label)) = (set.labels.as_mut(), item.label) {
            labels.push(label);
        }
        set.paths.push(item.id.clone());
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = EmbedSummary {
        modality: Modality::Text,
        files: total + dataset.skipped.len(),
        embedded: total,
        rows: set.rows(),
        from_cache,
        computed: total - from_cache,
        skipped: dataset.skipped.iter().map(SkipReport::from).collect(),
        empty_classes: Vec::new(),
        truncated: Some(truncated),
        warnings: cache
            .iter()
            .filter_map(|(cache, _)| cache.write_failure())
            .chain(cpu_nodes_warning(backbone.placement()))
            .collect(),
        seconds,
        precision: backbone.identity().precision,
        per_second: rate(total, seconds),
        device,
        placement: backbone.placement().cloned(),
        batch_size,
        stages,
    };
    Ok((set, summary))
}
