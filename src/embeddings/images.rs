//! A folder of images → embeddings. Worker threads read, decode and preprocess each image straight into a row of
//! a batch buffer (page-locked on CUDA); the backbone runs full batches on a thread of its own; the calling thread
//! collects vectors and progress. A fixed set of buffers and bounded channels keep memory flat as the folder grows.
//! Each file's bytes are hashed first, so cached views never get decoded.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::batches::{Assembly, Batch, Row};
use super::cache::{EmbeddingCache, Key};
use super::set::{
    EmbedOptions, EmbedSummary, EmbeddedSet, SkipReport, StageTimes, cpu_nodes_warning, rate,
};
use crate::augment::View;
use crate::backbone::{Features, ImageBackbone, InputSpec};
use crate::data::Files;
use crate::data::decode::{
    DecodeOptions, REDUCED_SCALE_REVISION, check_size, decode_image, plan_decoding,
};
use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::preprocess::ImagePreprocess;

/// What the calling thread hears: a file done (its cached views, how many went to the model) or skipped, and
/// a batch the model embedded.
enum Event {
    Ready {
        item: usize,
        cached: Vec<(usize, Vec<f32>)>,
        computed: usize,
    },
    Skipped {
        item: usize,
        reason: String,
    },
    Embedded(Vec<Row>, Result<(usize, Vec<f32>)>),
}

/// Buffers: one being filled, one whose last rows are still being written, one queued, one in the model.
const BUFFERS: usize = 4;

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
    let source = backbone.source().clone();
    let device = backbone.device().clone();
    let placement = backbone.placement().cloned();
    let cache =
        EmbeddingCache::for_options(options, &identity, &InputSpec::Image(preprocess.clone()))?;
    let views = options.augment.views();
    let total = dataset.items.len();
    let batch_size = options.batch_size_on(&device);
    let buffers = (0..BUFFERS)
        .map(|_| backbone.batch_buffer(batch_size))
        .collect::<Result<Vec<_>>>()?;
    let decode = options.decode_options();
    let pixel_budget = PixelBudget::new(decode.max_pixels);
    let next = AtomicUsize::new(0);
    let workers = options.workers.max(1);
    let active = AtomicUsize::new(workers);
    let worker_times = Mutex::new(StageTimes::default());
    // slots[item][view]: the vector once known.
    let mut slots: Vec<Vec<Option<Vec<f32>>>> = vec![vec![None; views.len()]; total];
    let mut skipped: Vec<SkipReport> = dataset.skipped.iter().map(SkipReport::from).collect();
    let (mut from_cache, mut computed) = (0usize, 0usize);
    let mut stages = StageTimes::default();

    let (to_model, model_queue) = sync_channel::<Batch>(1);
    let assembly = Assembly::new(buffers, to_model);
    let assembly = &assembly;
    std::thread::scope(|scope| -> Result<()> {
        let (events, receiver) = sync_channel::<Event>(batch_size * 2);
        for _ in 0..workers {
            let events = events.clone();
            let (next, active, views, preprocess, cache, worker_times, pixel_budget) = (
                &next,
                &active,
                &views,
                &preprocess,
                cache.as_ref(),
                &worker_times,
                &pixel_budget,
            );
            scope.spawn(move || {
                let mut times = StageTimes::default();
                loop {
                    let item = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = dataset.items.get(item) else {
                        break;
                    };
                    let event = match embed_file(
                        item,
                        &entry.path,
                        views,
                        preprocess,
                        cache,
                        &decode,
                        pixel_budget,
                        assembly,
                        &mut times,
                    ) {
                        Ok(Some(FileViews { cached, computed })) => Event::Ready {
                            item,
                            cached,
                            computed,
                        },
                        // Closed: the run stopped.
                        Ok(None) => break,
                        Err(reason) => Event::Skipped { item, reason },
                    };
                    if events.send(event).is_err() {
                        assembly.close();
                        break;
                    }
                }
                worker_times
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .add(&times);
                if active.fetch_sub(1, Ordering::AcqRel) == 1 {
                    assembly.finish();
                }
            });
        }

        let model_events = events.clone();
        drop(events);
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
                let failed = result.is_err();
                assembly.recycle(batch.buffer);
                if model_events
                    .send(Event::Embedded(batch.rows, result))
                    .is_err()
                    || failed
                {
                    assembly.close();
                    break;
                }
            }
            (waiting, inference)
        });

        let outcome = (|| -> Result<()> {
            let mut done = 0usize;
            // Strict mode stops at the first skip, and reports the earliest in dataset order of those the
            // decoders had in hand (they run in parallel: the first to arrive is not always the first file).
            let mut first_skip: Option<(usize, String)> = None;
            for event in receiver {
                match event {
                    Event::Embedded(rows, result) => {
                        let (dim, values) = result?;
                        let began = Instant::now();
                        for ((item, view, key), vector) in
                            rows.into_iter().zip(values.chunks_exact(dim))
                        {
                            if let (Some(cache), Some(key)) = (cache.as_ref(), key) {
                                cache.put_or_warn(&key, vector);
                            }
                            slots[item][view] = Some(vector.to_vec());
                        }
                        stages.write += began.elapsed().as_secs_f64();
                        continue;
                    }
                    Event::Skipped { item, reason } => {
                        let relative = &dataset.items[item].relative;
                        if options.strict {
                            if first_skip.as_ref().is_none_or(|(first, _)| item < *first) {
                                first_skip = Some((item, reason));
                            }
                            assembly.close();
                            continue;
                        }
                        skipped.push(SkipReport {
                            path: relative.clone(),
                            reason,
                        });
                    }
                    Event::Ready {
                        item,
                        cached,
                        computed: sent,
                    } => {
                        from_cache += cached.len();
                        computed += sent;
                        for (view, vector) in cached {
                            slots[item][view] = Some(vector);
                        }
                    }
                }
                done += 1;
                progress(done, total);
            }
            match first_skip {
                Some((item, reason)) => Err(Error::input(
                    dataset.root.join(&dataset.items[item].relative),
                    format!("{reason} (strict: any skipped file is an error)"),
                )),
                None => Ok(()),
            }
        })();
        if outcome.is_err() {
            assembly.close();
        }
        let (waiting, inference) = model
            .join()
            .map_err(|_| Error::Runtime("the inference thread panicked".into()))?;
        stages.waiting = waiting;
        stages.inference = inference;
        outcome
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
        features: Features {
            source,
            backbone: identity,
            input: InputSpec::Image(preprocess),
        },
    };
    let mut embedded = 0;
    for (item, views) in dataset.items.iter().zip(slots) {
        // A skipped file has no vectors; an embedded one has one per view.
        if views.iter().any(Option::is_none) {
            continue;
        }
        embedded += 1;
        for (view, vector) in views.into_iter().flatten().enumerate() {
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
        modality: Modality::Image,
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
        precision: set.features.backbone.precision,
        per_second: rate(embedded, seconds),
        device,
        placement,
        batch_size,
        stages,
    };
    Ok((set, summary))
}

/// A file's views: those the cache answered, as (view, vector), and how many went to the model.
struct FileViews {
    cached: Vec<(usize, Vec<f32>)>,
    computed: usize,
}

/// Reads a file once, answers each view from the cache, and decodes only if some view is missing; each
/// missing view is preprocessed straight into a reserved row of a batch. `None` when the run was stopped; the
/// reason when the file is skipped.
#[allow(clippy::too_many_arguments)]
fn embed_file(
    item: usize,
    path: &Path,
    views: &[View],
    preprocess: &ImagePreprocess,
    cache: Option<&EmbeddingCache>,
    decode: &DecodeOptions,
    pixel_budget: &PixelBudget,
    assembly: &Assembly,
    times: &mut StageTimes,
) -> std::result::Result<Option<FileViews>, String> {
    let began = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let plan = plan_decoding(&bytes, preprocess);
    // The limit holds for a file the cache knows as for one decoded now.
    if let Some((width, height)) = plan.size {
        check_size(width, height, decode.max_pixels)?;
    }
    let keys: Vec<Option<Key>> = match cache {
        Some(cache) => {
            let content = EmbeddingCache::content_key(&bytes);
            // A JPEG decoded at reduced scale is a different view of the file than its full decoding.
            views
                .iter()
                .map(|v| match plan.shrink {
                    1 => Some(cache.key(&content, v.name())),
                    _ => Some(cache.key(
                        &content,
                        &format!("{}@1/{}r{REDUCED_SCALE_REVISION}", v.name(), plan.shrink),
                    )),
                })
                .collect()
        }
        None => vec![None; views.len()],
    };
    let mut cached = Vec::new();
    let mut missing = Vec::new();
    for (view, key) in keys.into_iter().enumerate() {
        match cache.zip(key.as_ref()).and_then(|(c, k)| c.get(k)) {
            Some(vector) => cached.push((view, vector)),
            None => missing.push((view, key)),
        }
    }
    let read = Instant::now();
    times.read += (read - began).as_secs_f64();
    if missing.is_empty() {
        return Ok(Some(FileViews {
            cached,
            computed: 0,
        }));
    }
    // Held until the decoded image is dropped, at the end of this file.
    let pixels = plan.size.map_or(decode.max_pixels, |(w, h)| {
        u64::from(w) * u64::from(h) / u64::from(plan.shrink * plan.shrink)
    });
    let _decoding = pixel_budget.take(pixels);
    let image = decode_image(&bytes, decode, Some(preprocess))?;
    times.decode += read.elapsed().as_secs_f64();
    let sent = missing.len();
    for (view, key) in missing {
        // Waiting here for a free buffer means the model is the bottleneck: not counted as preprocessing.
        let Some(mut slot) = assembly.reserve() else {
            return Ok(None);
        };
        let began = Instant::now();
        preprocess.apply(&views[view].apply(&image), slot.values());
        times.preprocess += began.elapsed().as_secs_f64();
        if !assembly.written(slot, (item, view, key)) {
            return Ok(None);
        }
    }
    Ok(Some(FileViews {
        cached,
        computed: sent,
    }))
}

/// The pixels being decoded at once, across workers, up to the limit on one image: a decoder may take a dozen
/// bytes a pixel (a 16-bit PNG), so each worker decoding an image at the limit would multiply that.
struct PixelBudget {
    free: Mutex<u64>,
    freed: Condvar,
    total: u64,
}

/// Pixels taken from a [`PixelBudget`], given back when dropped.
struct Taken<'a> {
    budget: &'a PixelBudget,
    pixels: u64,
}

impl PixelBudget {
    fn new(total: u64) -> Self {
        PixelBudget {
            free: Mutex::new(total),
            freed: Condvar::new(),
            total,
        }
    }

    /// Waits until `pixels` (at most the whole budget) are free.
    fn take(&self, pixels: u64) -> Taken<'_> {
        let pixels = pixels.min(self.total);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < pixels {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= pixels;
        Taken {
            budget: self,
            pixels,
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut free = self.budget.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += self.pixels;
        self.budget.freed.notify_all();
    }
}
