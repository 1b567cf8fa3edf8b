//! A folder of images → embeddings. Decode and preprocessing run in worker threads while the backbone runs
//! batched inference on the main thread; a bounded channel keeps memory flat as the folder grows. Each file's
//! bytes are hashed first, so cached views never get decoded.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::cache::{EmbeddingCache, Key};
use super::set::{EmbedOptions, EmbedSummary, EmbeddedSet, SkipReport, rate};
use crate::augment::View;
use crate::backbone::{ImageBackbone, InputSpec};
use crate::data::Files;
use crate::data::decode::decode_image;
use crate::error::{Error, Result};
use crate::preprocess::ImagePreprocess;

enum ViewResult {
    Cached(Vec<f32>),
    Tensor(Vec<f32>, Option<Key>),
}

enum Decoded {
    Ready { item: usize, views: Vec<ViewResult> },
    Skipped { item: usize, reason: String },
}

/// Embeds every image of `dataset`. `progress(done, total)` is called as files complete.
pub fn embed_images(
    dataset: &Files,
    backbone: &mut ImageBackbone,
    options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, EmbedSummary)> {
    let started = Instant::now();
    let preprocess = backbone.preprocess().clone();
    let cache = EmbeddingCache::for_options(
        options,
        backbone.identity(),
        &InputSpec::Image(preprocess.clone()),
    )?;
    let views = options.augment.views();
    let total = dataset.items.len();
    let batch_size = options.batch_size.max(1);
    let next = AtomicUsize::new(0);
    // slots[item][view]: the vector once known.
    let mut slots: Vec<Vec<Option<Vec<f32>>>> = vec![Vec::new(); total];
    let mut skipped: Vec<SkipReport> = dataset.skipped.iter().map(SkipReport::from).collect();
    let (mut from_cache, mut computed) = (0usize, 0usize);

    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = sync_channel::<Decoded>(batch_size * 2);
        for _ in 0..options.workers.max(1) {
            let sender = sender.clone();
            let (next, views, preprocess, cache) = (&next, &views, &preprocess, cache.as_ref());
            scope.spawn(move || {
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = dataset.items.get(item) else {
                        break;
                    };
                    let message =
                        match load_views(&entry.path, views, preprocess, cache, options.max_pixels)
                        {
                            Ok(views) => Decoded::Ready { item, views },
                            Err(reason) => Decoded::Skipped { item, reason },
                        };
                    if sender.send(message).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);

        let tensor_len = preprocess.tensor_len();
        let mut batch: Vec<f32> = Vec::with_capacity(batch_size * tensor_len);
        let mut pending: Vec<(usize, usize, Option<Key>)> = Vec::with_capacity(batch_size);
        let mut done = 0usize;
        let mut run_batch = |batch: &mut Vec<f32>,
                             pending: &mut Vec<(usize, usize, Option<Key>)>,
                             slots: &mut Vec<Vec<Option<Vec<f32>>>>|
         -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let rows = backbone.embed_preprocessed(batch)?;
            for ((item, view, key), row) in pending.drain(..).zip(rows.rows()) {
                let vector = row.to_vec();
                if let (Some(cache), Some(key)) = (cache.as_ref(), key) {
                    cache.put_or_warn(&key, &vector);
                }
                slots[item][view] = Some(vector);
            }
            batch.clear();
            Ok(())
        };
        for message in receiver {
            match message {
                Decoded::Skipped { item, reason } => {
                    let relative = &dataset.items[item].relative;
                    if options.strict {
                        return Err(Error::input(
                            dataset.root.join(relative),
                            format!("{reason} (strict: any skipped file is an error)"),
                        ));
                    }
                    skipped.push(SkipReport {
                        path: relative.clone(),
                        reason,
                    });
                }
                Decoded::Ready {
                    item,
                    views: results,
                } => {
                    slots[item] = vec![None; results.len()];
                    for (view, result) in results.into_iter().enumerate() {
                        match result {
                            ViewResult::Cached(vector) => {
                                from_cache += 1;
                                slots[item][view] = Some(vector);
                            }
                            ViewResult::Tensor(tensor, key) => {
                                computed += 1;
                                batch.extend_from_slice(&tensor);
                                pending.push((item, view, key));
                                if pending.len() >= batch_size {
                                    run_batch(&mut batch, &mut pending, &mut slots)?;
                                }
                            }
                        }
                    }
                }
            }
            done += 1;
            progress(done, total);
        }
        debug_assert_eq!(batch.len(), pending.len() * tensor_len);
        run_batch(&mut batch, &mut pending, &mut slots)
    })?;

    let mut set = EmbeddedSet {
        dim: 0,
        embeddings: Vec::new(),
        labels: dataset.is_labelled().then(Vec::new),
        class_names: dataset.classes.clone(),
        paths: Vec::new(),
        augmented: Vec::new(),
        backbone_source: backbone.source().to_string(),
        backbone: backbone.identity().clone(),
        input: InputSpec::Image(preprocess),
    };
    let mut embedded = 0;
    for (item, views) in dataset.items.iter().zip(slots) {
        if !views.is_empty() {
            embedded += 1;
        }
        for (view, vector) in views.into_iter().enumerate() {
            let vector = vector.expect("every view of an embedded file has a vector");
            set.dim = vector.len();
            set.embeddings.extend(vector);
            if let (Some(labels), Some(label)) = (set.labels.as_mut(), item.label) {
                labels.push(label);
            }
            set.paths.push(item.relative.clone());
            set.augmented.push(view > 0);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let summary = EmbedSummary {
        files: total,
        embedded,
        rows: set.rows(),
        from_cache,
        computed,
        skipped,
        empty_classes: dataset.empty_classes.clone(),
        truncated: None,
        warnings: cache
            .iter()
            .filter_map(EmbeddingCache::write_failure)
            .collect(),
        seconds,
        per_second: rate(embedded, seconds),
    };
    Ok((set, summary))
}

/// Reads a file once, answers each view from the cache, and decodes only if some view is missing.
fn load_views(
    path: &Path,
    views: &[View],
    preprocess: &ImagePreprocess,
    cache: Option<&EmbeddingCache>,
    max_pixels: u64,
) -> std::result::Result<Vec<ViewResult>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let keys: Vec<Option<Key>> = match cache {
        Some(_) => {
            let content = EmbeddingCache::content_key(&bytes);
            views
                .iter()
                .map(|v| Some(EmbeddingCache::key(&content, v.name())))
                .collect()
        }
        None => vec![None; views.len()],
    };
    let mut cached: Vec<Option<Vec<f32>>> = keys
        .iter()
        .map(|key| cache.zip(key.as_ref()).and_then(|(c, k)| c.get(k)))
        .collect();
    let image = if cached.iter().all(Option::is_some) {
        None
    } else {
        Some(decode_image(&bytes, max_pixels)?)
    };
    Ok(views
        .iter()
        .zip(keys)
        .zip(cached.iter_mut())
        .map(|((view, key), hit)| match (hit.take(), &image) {
            (Some(vector), _) => ViewResult::Cached(vector),
            (None, Some(image)) => {
                let mut tensor = vec![0.0; preprocess.tensor_len()];
                preprocess.apply(&view.apply(image), &mut tensor);
                ViewResult::Tensor(tensor, key)
            }
            (None, None) => unreachable!("an image is decoded whenever a view is not cached"),
        })
        .collect())
}
