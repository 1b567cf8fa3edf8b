//! Many bundles answering concurrent callers: each distinct backbone is opened once, inputs from different calls
//! are batched into one backbone run, and every head asked about an input answers over the same embedding. The
//! serving core `headstart serve` puts behind HTTP; it owns the batching and the reloading, the HTTP layer only
//! translates.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, s};

use super::{Classifier, PredictOptions, Prediction, check_confidence};
use crate::backbone::{Backbone, Features, InputSpec};
use crate::bundle::Bundle;
use crate::data::decode::{DecodeOptions, decode_image};
use crate::embeddings::EmbedOptions;
use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::preprocess::ImagePreprocess;
use crate::runtime::RuntimeOptions;

/// On the CPU a server's batches stay small: requests decode while the backbone runs, and one long run of 32
/// holds both cores while they wait (benches/serve.rs, 2 cores, 64 requests in flight: about 10 % more answered
/// with 8 than with 32).
const CPU_MAX_BATCH: usize = 8;

/// How a [`Service`] batches and how much it holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// The most inputs in one backbone run; `None`: 8 on the CPU, on CUDA the batch `embed` uses
    /// ([`EmbedOptions::batch_size_on`]).
    pub max_batch: Option<usize>,
    /// How long a backbone that has inputs waits for more before it runs. Zero (the default): it runs whenever
    /// it is free, and what arrived while it ran forms the next batch, so a lone call waits for nothing.
    pub max_wait: Duration,
    /// Calls waiting per backbone; beyond it [`Service::predict`] refuses with [`Error::Busy`].
    pub max_queue: usize,
    pub runtime: RuntimeOptions,
}

setters!(ServiceOptions {
    max_wait: Duration,
    max_queue: usize,
    runtime: RuntimeOptions,
});

impl ServiceOptions {
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = Some(max_batch);
        self
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_batch: None,
            max_wait: Duration::ZERO,
            max_queue: 256,
            runtime: RuntimeOptions::default(),
        }
    }
}

/// One input of a call: an encoded image (JPEG, PNG, …) or a text, as the bundles' backbone takes.
#[derive(Debug, Clone)]
pub enum Input {
    Image(Vec<u8>),
    Text(String),
}

/// One input's answers, one per model asked, in the order asked; or why the input could not be embedded.
pub type InputAnswers = std::result::Result<Vec<Prediction>, String>;

/// A call's answers (`T` per input, or why that input could not be embedded), in input order, and how its
/// batch ran.
pub struct Answered<T> {
    pub answers: Vec<std::result::Result<T, String>>,
    pub batch: BatchRun,
}

/// How the batch that answered a call ran.
#[derive(Debug, Clone, Copy)]
pub struct BatchRun {
    /// Inputs embedded in that backbone run, from every call in it.
    pub inputs: usize,
    /// How long the call waited in the queue before its batch started.
    pub waited: Duration,
    /// How long the backbone run and the heads took.
    pub ran: Duration,
}

/// Where a call's answers go, once its batch has run.
pub type Reply<T> = Box<dyn FnOnce(Result<Answered<T>>) + Send>;

/// A served bundle, as it is loaded now.
#[derive(Clone)]
pub struct ServedModel {
    pub name: String,
    pub path: PathBuf,
    pub bundle: Arc<Bundle>,
}

/// Bundles behind shared backbones, each backbone with a thread that batches what callers send it. Bundles can
/// be reloaded from their files while calls go on.
pub struct Service {
    slots: Vec<Slot>,
    options: ServiceOptions,
    /// One reload at a time, so that bundles moving to the same new backbone open it once.
    reloading: Mutex<()>,
}

/// A name served, and what answers under it now.
struct Slot {
    name: String,
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    bundle: Arc<Bundle>,
    backbone: Arc<BackboneQueue>,
}

/// A backbone's queue: what callers need to prepare inputs for it and send them. Dropped with the last bundle
/// on it, it closes its queue and waits for the calls in it to be answered.
struct BackboneQueue {
    features: Features,
    sender: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    /// Calls sent and not yet taken by the backbone's thread.
    waiting: Arc<AtomicUsize>,
}

/// Inputs ready for the backbone: preprocessed image tensors or texts (only those that decoded).
enum Prepared {
    Images(Vec<Vec<f32>>),
    Texts(Vec<String>),
}

/// What a call does with its rows of the batch's embeddings (or the reason the batch failed).
type Finish = Box<dyn FnOnce(std::result::Result<ArrayView2<'_, f32>, String>, BatchRun) + Send>;

struct Job {
    sent: Instant,
    inputs: Prepared,
    finish: Finish,
}

impl Service {
    /// Opens `bundles` (name, path); bundles trained on the same backbone configuration share one backbone.
    pub fn open(bundles: &[(String, PathBuf)], options: &ServiceOptions) -> Result<Service> {
        if options.max_batch == Some(0) {
            return Err(Error::parameter("max_batch", "must be at least 1"));
        }
        if options.max_queue == 0 {
            return Err(Error::parameter("max_queue", "must be at least 1"));
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (name, path) in bundles {
            if slots.iter().any(|slot| &slot.name == name) {
                return Err(Error::parameter(
                    "name",
                    format!("two bundles are served as '{name}'"),
                ));
            }
            let opened = slots.iter().map(|slot| slot.loaded().backbone);
            let loaded = load(path, opened, options)?;
            slots.push(Slot {
                name: name.clone(),
                path: path.clone(),
                loaded: RwLock::new(loaded),
            });
        }
        Ok(Service {
            slots,
            options: options.clone(),
            reloading: Mutex::new(()),
        })
    }

    /// The served bundles as loaded now, in the order given.
    pub fn models(&self) -> Vec<ServedModel> {
        self.slots.iter().map(Slot::served).collect()
    }

    /// The bundle served as `name`, as loaded now.
    pub fn model(&self, name: &str) -> Result<ServedModel> {
        self.slot(name).map(Slot::served)
    }

    /// Reads `name`'s bundle again from its file and answers with it from the next call on; calls already sent
    /// are answered by the bundle they were sent to. A bundle trained on another backbone configuration gets
    /// that backbone (opened, or shared with another bundle on it). A file that cannot be loaded is an error
    /// and the bundle loaded before goes on serving.
    pub fn reload(&self, name: &str) -> Result<ServedModel> {
        let slot = self.slot(name)?;
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let opened = self.slots.iter().map(|slot| slot.loaded().backbone);
        let loaded = load(&slot.path, opened, &self.options)?;
        let replaced = std::mem::replace(
            &mut *slot.loaded.write().unwrap_or_else(PoisonError::into_inner),
            loaded,
        );
        // Dropped here, out of the lock: a backbone no bundle uses any more finishes its queue and stops.
        drop(replaced);
        Ok(slot.served())
    }

    /// Calls waiting for a backbone, over all backbones.
    pub fn waiting(&self) -> usize {
        let mut counted: Vec<Arc<BackboneQueue>> = Vec::new();
        for slot in &self.slots {
            let backbone = slot.loaded().backbone;
            if !counted.iter().any(|seen| Arc::ptr_eq(seen, &backbone)) {
                counted.push(backbone);
            }
        }
        counted
            .iter()
            .map(|queue| queue.waiting.load(Ordering::Relaxed))
            .sum()
    }

    /// Answers `inputs` with each of the bundles named `models` (which must share a backbone), through
    /// `reply` once their batch has run. Decoding happens here, on the caller's thread, so callers decode in
    /// parallel while the backbone runs; an input that cannot be decoded is an `Err` entry in its place.
    pub fn predict(
        &self,
        models: &[&str],
        inputs: Vec<Input>,
        options: &PredictOptions,
        reply: Reply<Vec<Prediction>>,
    ) -> Result<()> {
        let chosen = models
            .iter()
            .map(|name| self.slot(name).map(|slot| (slot, slot.loaded())))
            .collect::<Result<Vec<_>>>()?;
        let Some((first, loaded)) = chosen.first() else {
            return Err(Error::parameter("models", "must name at least one model"));
        };
        if let Some((other, _)) = chosen
            .iter()
            .find(|(_, other)| !Arc::ptr_eq(&other.backbone, &loaded.backbone))
        {
            return Err(Error::Incompatible(format!(
                "'{}' and '{}' were trained on different backbones: ask them apart",
                first.name, other.name
            )));
        }
        check_confidence(options)?;
        let queue = loaded.backbone.clone();
        let (inputs, failed) = prepare(&queue.features, inputs)?;
        let bundles: Vec<Arc<Bundle>> = chosen.into_iter().map(|(_, l)| l.bundle).collect();
        let options = options.clone();
        let finish: Finish = Box::new(move |rows, batch| {
            let answers = rows
                .map_err(Error::Runtime)
                .and_then(|rows| heads_answer(&bundles, rows, &options))
                .map(|answers| Answered {
                    answers: in_place(failed, answers),
                    batch,
                });
            reply(answers);
        });
        queue.send(inputs, finish)
    }

    /// The embeddings of `inputs` by the backbone of the bundle served as `model`, through `reply` once their
    /// batch has run; an input that cannot be decoded is an `Err` entry in its place.
    pub fn embed(&self, model: &str, inputs: Vec<Input>, reply: Reply<Vec<f32>>) -> Result<()> {
        let queue = self.slot(model)?.loaded().backbone;
        let (inputs, failed) = prepare(&queue.features, inputs)?;
        let finish: Finish = Box::new(move |rows, batch| {
            let answers = rows.map_err(Error::Runtime).map(|rows| Answered {
                answers: in_place(failed, rows.outer_iter().map(|row| row.to_vec())),
                batch,
            });
            reply(answers);
        });
        queue.send(inputs, finish)
    }

    fn slot(&self, name: &str) -> Result<&Slot> {
        self.slots
            .iter()
            .find(|slot| slot.name == name)
            .ok_or_else(|| Error::UnknownModel(name.to_string()))
    }
}

impl Slot {
    fn loaded(&self) -> Loaded {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn served(&self) -> ServedModel {
        ServedModel {
            name: self.name.clone(),
            path: self.path.clone(),
            bundle: self.loaded().bundle,
        }
    }
}

/// Loads the bundle at `path` onto one of the `opened` backbones that matches its configuration, or onto a
/// backbone opened for it.
fn load(
    path: &std::path::Path,
    mut opened: impl Iterator<Item = Arc<BackboneQueue>>,
    options: &ServiceOptions,
) -> Result<Loaded> {
    let bundle = Bundle::load(path)?;
    let backbone = match opened.find(|queue| queue.features.check(&bundle.info.features).is_ok()) {
        Some(queue) => queue,
        None => Arc::new(BackboneQueue::open(&bundle, path, options)?),
    };
    Ok(Loaded {
        bundle: Arc::new(bundle),
        backbone,
    })
}

impl BackboneQueue {
    /// Opens the backbone `bundle` was trained on and starts its thread.
    fn open(bundle: &Bundle, path: &std::path::Path, options: &ServiceOptions) -> Result<Self> {
        let classifier = Classifier::from_bundle(bundle.clone(), path, &options.runtime, None)?;
        let backbone = classifier.backbone;
        let device = backbone.device();
        let max_batch = options.max_batch.unwrap_or_else(|| match device.is_cuda() {
            true => EmbedOptions::default().batch_size_on(device),
            false => CPU_MAX_BATCH,
        });
        let waiting = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = sync_channel(options.max_queue);
        let batching = Batching {
            max_batch,
            max_wait: options.max_wait,
            waiting: waiting.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("headstart-backbone".into())
            .spawn(move || run_batches(backbone, receiver, batching))
            .map_err(|e| Error::Runtime(format!("cannot start a backbone thread: {e}")))?;
        Ok(BackboneQueue {
            features: bundle.info.features.clone(),
            sender: Some(sender),
            worker: Some(worker),
            waiting,
        })
    }

    /// Queues a call, or refuses it with [`Error::Busy`] when the queue is full.
    fn send(&self, inputs: Prepared, finish: Finish) -> Result<()> {
        let Some(sender) = &self.sender else {
            return Err(Error::Busy);
        };
        let job = Job {
            sent: Instant::now(),
            inputs,
            finish,
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(Error::Busy)
            }
        }
    }
}

impl Drop for BackboneQueue {
    /// Closes the queue and waits for every call already in it to be answered.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Every head's answers for `rows`, one entry per row with one answer per head, in the heads' order.
fn heads_answer(
    bundles: &[Arc<Bundle>],
    rows: ArrayView2<f32>,
    options: &PredictOptions,
) -> Result<Vec<Vec<Prediction>>> {
    if rows.nrows() == 0 {
        return Ok(Vec::new());
    }
    let mut per_head = bundles
        .iter()
        .map(|bundle| bundle.answer(rows, options).map(Vec::into_iter))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..rows.nrows())
        .map(|_| per_head.iter_mut().filter_map(Iterator::next).collect())
        .collect())
}

/// The answers of the inputs that decoded, in order, with the reasons of those that did not in their places.
fn in_place<T>(
    failed: Vec<Option<String>>,
    answers: impl IntoIterator<Item = T>,
) -> Vec<std::result::Result<T, String>> {
    let mut answers = answers.into_iter();
    failed
        .into_iter()
        .map(|failure| match failure {
            Some(reason) => Err(reason),
            None => answers
                .next()
                .ok_or_else(|| "the backbone gave no embedding for this input".to_string()),
        })
        .collect()
}

/// Decodes and preprocesses images for the backbone (the costly part, kept off its thread), or checks that
/// texts go to a text backbone. Also says, per input, why it could not be decoded (`None`: it was).
fn prepare(features: &Features, inputs: Vec<Input>) -> Result<(Prepared, Vec<Option<String>>)> {
    let given = |input: &Input| match input {
        Input::Image(_) => Modality::Image,
        Input::Text(_) => Modality::Text,
    };
    let trained = features.input.modality();
    if let Some(other) = inputs.iter().find(|input| given(input) != trained) {
        return Err(Error::InputMismatch {
            trained,
            given: given(other),
        });
    }
    match &features.input {
        InputSpec::Image(preprocess) => {
            let mut failed = Vec::with_capacity(inputs.len());
            let mut images = Vec::with_capacity(inputs.len());
            for input in inputs {
                if let Input::Image(bytes) = input {
                    match preprocessed(&bytes, preprocess) {
                        Ok(tensor) => {
                            images.push(tensor);
                            failed.push(None);
                        }
                        Err(reason) => failed.push(Some(reason)),
                    }
                }
            }
            Ok((Prepared::Images(images), failed))
        }
        InputSpec::Text(_) => {
            let texts: Vec<String> = inputs
                .into_iter()
                .filter_map(|input| match input {
                    Input::Text(text) => Some(text),
                    Input::Image(_) => None,
                })
                .collect();
            let failed = vec![None; texts.len()];
            Ok((Prepared::Texts(texts), failed))
        }
    }
}

fn preprocessed(
    bytes: &[u8],
    preprocess: &ImagePreprocess,
) -> std::result::Result<Vec<f32>, String> {
    let image = decode_image(bytes, &DecodeOptions::default(), Some(preprocess))?;
    let mut tensor = vec![0.0; preprocess.tensor_len()];
    preprocess.apply(&image, &mut tensor);
    Ok(tensor)
}

/// How a backbone's thread gathers calls into a batch.
struct Batching {
    max_batch: usize,
    max_wait: Duration,
    waiting: Arc<AtomicUsize>,
}

/// The backbone's thread: waits for a call, gathers more for up to `max_wait` (or until `max_batch` inputs),
/// embeds them in one run and answers each call; ends when its queue is closed and empty.
fn run_batches(mut backbone: Backbone, receiver: Receiver<Job>, batching: Batching) {
    while let Ok(first) = receiver.recv() {
        batching.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut count = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + batching.max_wait;
        while count < batching.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(job) => {
                    batching.waiting.fetch_sub(1, Ordering::Relaxed);
                    count += job.inputs.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // A panic is a bug: it is printed, the batch's callers get no answer, and the backbone serves on.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer_batch(&mut backbone, jobs)
        }));
    }
}

impl Prepared {
    fn len(&self) -> usize {
        match self {
            Prepared::Images(images) => images.len(),
            Prepared::Texts(texts) => texts.len(),
        }
    }
}

/// Embeds the inputs of `jobs` in one run and hands each job its rows.
fn answer_batch(backbone: &mut Backbone, jobs: Vec<Job>) {
    let started = Instant::now();
    let inputs = jobs.iter().map(|job| job.inputs.len()).sum();
    let embedded = embed_jobs(backbone, &jobs, inputs);
    let ran = started.elapsed();
    let mut row = 0;
    for job in jobs {
        let rows = job.inputs.len();
        let batch = BatchRun {
            inputs,
            waited: started.saturating_duration_since(job.sent),
            ran,
        };
        let slice = match &embedded {
            Ok(embeddings) => Ok(embeddings.slice(s![row..row + rows, ..])),
            Err(message) => Err(message.clone()),
        };
        row += rows;
        (job.finish)(slice, batch);
    }
}

/// One embedding row per input of every job, in order.
fn embed_jobs(
    backbone: &mut Backbone,
    jobs: &[Job],
    inputs: usize,
) -> std::result::Result<Array2<f32>, String> {
    if inputs == 0 {
        return Ok(Array2::zeros((0, 0)));
    }
    let embedded = match backbone {
        Backbone::Image(image) => {
            let mut batch: Vec<f32> = Vec::new();
            for job in jobs {
                if let Prepared::Images(images) = &job.inputs {
                    for tensor in images {
                        batch.extend_from_slice(tensor);
                    }
                }
            }
            image.embed_preprocessed(&batch)
        }
        Backbone::Text(text) => {
            let texts: Vec<&str> = jobs
                .iter()
                .flat_map(|job| match &job.inputs {
                    Prepared::Texts(texts) => texts.iter().map(String::as_str).collect(),
                    Prepared::Images(_) => Vec::new(),
                })
                .collect();
            text.embed(&texts)
        }
    };
    embedded.map_err(|e| e.to_string())
}
