//! A folder of images → embeddings. Decode and preprocessing run in worker threads, the calling thread packs
//! their tensors into batch buffers (page-locked on CUDA), and the backbone runs on a thread of its own, so
//! packing the next batch overlaps inference of this one. Bounded channels and a fixed set of buffers keep
//! memory flat as the folder grows. Each file's bytes are hashed first, so cached views never get decoded.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, channel, sync_channel};
use std::time::Instant;

use super::cache::{EmbeddingCache, Key};
use super::set::{EmbedOptions, EmbedSummary, EmbeddedSet, SkipReport, StageTimes, rate};
use crate::augment::View;
use crate::backbone::{BatchBuffer, ImageBackbone, InputSpec};
use crate::data::Files;
use crate::data::decode::decode_image;
use crate::error::{Error, Result};
use crate::preprocess::ImagePreprocess;
use crate::runtime::Placement;

enum ViewResult {
    Cached(Vec<f32>),
    Tensor(Vec<f32>, Option<Key>),
}

enum Decoded {
    Ready { item: usize, views: Vec<ViewResult> },
    Skipped { item: usize, reason: String },
}

/// A batch on its way to the backbone: the buffer and, per filled row, (item, view, cache key).
struct Batch {
    buffer: BatchBuffer,
    rows: Vec<(usize, usize, Option<Key>)>,
}

/// Batches filled while one is in the model, and one more being filled: enough to keep the model fed.
const BUFFERS: usize = 3;

/// Embeds every image of `dataset`. `progress(done, total)` is called as files complete.
pub fn embed_images(
    dataset: &Files,
    backbone: &mut ImageBackbone,
    options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, EmbedSummary)> {
    let started = Instant::now();
    let preprocess = backbone.preprocess().clone();
    let identity = backbone.identity().clone();
    let source = backbone.source().to_string();
    let device = backbone.device().clone();
    let placement = backbone.placement().cloned();
    let cache =
        EmbeddingCache::for_options(options, &identity, &InputSpec::Image(preprocess.clone()))?;
    let views = options.augment.views();
    let total = dataset.items.len();
    let batch_size = options.batch_size_on(&device);
    let mut free: Vec<BatchBuffer> = (0..BUFFERS)
        .map(|_| backbone.batch_buffer(batch_size))
        .collect::<Result<_>>()?;
    let next = AtomicUsize::new(0);
    let worker_times = Mutex::new(StageTimes::default());
    // slots[item][view]: the vector once known.
    let mut slots: Vec<Vec<Option<Vec<f32>>>> = vec![Vec::new(); total];
    let mut skipped: Vec<SkipReport> = dataset.skipped.iter().map(SkipReport::from).collect();
    let (mut from_cache, mut computed) = (0usize, 0usize);
    let mut stages = StageTimes::default();

    std::thread::scope(|scope| -> Result<()> {
        let (sender, receiver) = sync_channel::<Decoded>(batch_size * 2);
        for _ in 0..options.workers.max(1) {
            let sender = sender.clone();
            let (next, views, preprocess, cache, worker_times) =
                (&next, &views, &preprocess, cache.as_ref(), &worker_times);
            scope.spawn(move || {
                let mut times = StageTimes::default();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = dataset.items.get(item) else {
                        break;
                    };
                    let message = match load_views(
                        &entry.path,
                        views,
                        preprocess,
                        cache,
                        options.max_pixels,
                        &mut times,
                    ) {
                        Ok(views) => Decoded::Ready { item, views },
                        Err(reason) => Decoded::Skipped { item, reason },
                    };
                    if sender.send(message).is_err() {
                        break;
                    }
                }
                worker_times
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .add(&times);
            });
        }
        drop(sender);

        // The model runs on its own thread, so filling the next batch overlaps inference of this one.
        let (to_model, model_queue) = sync_channel::<Batch>(BUFFERS - 1);
        let (model_done, from_model) = channel::<(Batch, Result<(usize, Vec<f32>)>)>();
        let model = scope.spawn(move || {
            let (mut waiting, mut inference) = (0.0, 0.0);
            loop {
                let asked = Instant::now();
                let Ok(batch) = model_queue.recv() else {
                    break;
                };
                let began = Instant::now();
                waiting += (began - asked).as_secs_f64();
                let result = backbone.embed_batch(&batch.buffer, batch.rows.len());
                inference += began.elapsed().as_secs_f64();
                if model_done.send((batch, result)).is_err() {
                    break;
                }
            }
            (waiting, inference)
        });

        let mut store = |(batch, result): (Batch, Result<(usize, Vec<f32>)>),
                         slots: &mut Vec<Vec<Option<Vec<f32>>>>,
                         free: &mut Vec<BatchBuffer>|
         -> Result<()> {
            let (dim, values) = result?;
            let began = Instant::now();
            for ((item, view, key), vector) in batch.rows.into_iter().zip(values.chunks_exact(dim))
            {
                if let (Some(cache), Some(key)) = (cache.as_ref(), key) {
                    cache.put_or_warn(&key, vector);
                }
                slots[item][view] = Some(vector.to_vec());
            }
            stages.write += began.elapsed().as_secs_f64();
            free.push(batch.buffer);
            Ok(())
        };
        let mut filling: Option<Batch> = None;
        let mut done = 0usize;
        for message in receiver {
            while let Ok(finished) = from_model.try_recv() {
                store(finished, &mut slots, &mut free)?;
            }
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
                                let batch = match filling.as_mut() {
                                    Some(batch) => batch,
                                    None => {
                                        if free.is_empty() {
                                            let finished = from_model.recv().map_err(|_| {
                                                Error::Runtime(
                                                    "the inference thread stopped".into(),
                                                )
                                            })?;
                                            store(finished, &mut slots, &mut free)?;
                                        }
                                        let buffer = free.pop().ok_or_else(|| {
                                            Error::Runtime("no free batch buffer".into())
                                        })?;
                                        filling.insert(Batch {
                                            buffer,
                                            rows: Vec::with_capacity(batch_size),
                                        })
                                    }
                                };
                                batch
                                    .buffer
                                    .row_mut(batch.rows.len())
                                    .copy_from_slice(&tensor);
                                batch.rows.push((item, view, key));
                                if batch.rows.len() == batch.buffer.rows()
                                    && let Some(full) = filling.take()
                                {
                                    send(&to_model, full)?;
                                }
                            }
                        }
                    }
                }
            }
            done += 1;
            progress(done, total);
        }
        if let Some(last) = filling.take() {
            send(&to_model, last)?;
        }
        drop(to_model);
        for finished in from_model.iter() {
            store(finished, &mut slots, &mut free)?;
        }
        let (waiting, inference) = model
            .join()
            .map_err(|_| Error::Runtime("the inference thread panicked".into()))?;
        stages.waiting = waiting;
        stages.inference = inference;
        Ok(())
    })?;
    stages.add(
        &worker_times
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );

    let mut set = EmbeddedSet {
        dim: 0,
        embeddings: Vec::new(),
        labels: dataset.is_labelled().then(Vec::new),
        class_names: dataset.classes.clone(),
        paths: Vec::new(),
        augmented: Vec::new(),
        backbone_source: source,
        backbone: identity,
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
            .chain(cpu_nodes_warning(placement.as_ref()))
            .collect(),
        seconds,
        per_second: rate(embedded, seconds),
        device,
        placement,
        batch_size,
        stages,
    };
    Ok((set, summary))
}

fn send(to_model: &SyncSender<Batch>, batch: Batch) -> Result<()> {
    to_model
        .send(batch)
        .map_err(|_| Error::Runtime("the inference thread stopped".into()))
}

/// The summary's warning when a CUDA session runs part of the model on the CPU.
pub(crate) fn cpu_nodes_warning(placement: Option<&Placement>) -> Option<String> {
    let nodes = placement?.cpu_fallback()?;
    Some(format!(
        "ONNX Runtime runs {nodes} on the CPU: it has no CUDA kernel for them"
    ))
}

/// Reads a file once, answers each view from the cache, and decodes only if some view is missing.
fn load_views(
    path: &Path,
    views: &[View],
    preprocess: &ImagePreprocess,
    cache: Option<&EmbeddingCache>,
    max_pixels: u64,
    times: &mut StageTimes,
) -> std::result::Result<Vec<ViewResult>, String> {
    let began = Instant::now();
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
    let read = Instant::now();
    times.read += (read - began).as_secs_f64();
    let image = if cached.iter().all(Option::is_some) {
        None
    } else {
        Some(decode_image(&bytes, max_pixels)?)
    };
    let decoded = Instant::now();
    times.decode += (decoded - read).as_secs_f64();
    let views = views
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
        .collect();
    times.preprocess += decoded.elapsed().as_secs_f64();
    Ok(views)
}
