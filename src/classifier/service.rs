//! Many bundles answering concurrent callers: each distinct backbone is opened once, inputs from different calls
//! are batched into one backbone run, and every head asked about an input answers over the same embedding. The
//! serving core `headstart serve` puts behind HTTP; it owns the batching, the HTTP layer only translates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::Array2;

use super::{Classifier, PredictOptions, Prediction, check_confidence};
use crate::backbone::{Backbone, Features, InputSpec};
use crate::bundle::Bundle;
use crate::data::decode::{DecodeOptions, decode_image};
use crate::error::{Error, Result};
use crate::modality::Modality;
use crate::preprocess::ImagePreprocess;
use crate::runtime::RuntimeOptions;

/// How a [`Service`] batches and how much it holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// The most inputs in one backbone run.
    pub max_batch: usize,
    /// How long a backbone that has inputs waits for more before it runs (zero: it runs whenever it is free).
    pub max_wait: Duration,
    /// Calls waiting per backbone; beyond it [`Service::predict`] refuses with [`Error::Busy`].
    pub max_queue: usize,
    pub runtime: RuntimeOptions,
}

setters!(ServiceOptions {
    max_batch: usize,
    max_wait: Duration,
    max_queue: usize,
    runtime: RuntimeOptions,
});

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_batch: 32,
            max_wait: Duration::from_millis(2),
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

/// A call's answers, one entry per input in input order, and how its batch ran.
pub struct Answered {
    pub answers: Vec<InputAnswers>,
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
pub type Reply = Box<dyn FnOnce(Result<Answered>) + Send>;

/// A served bundle.
pub struct ServedModel {
    pub name: String,
    pub path: PathBuf,
    pub bundle: Arc<Bundle>,
    /// The index of its backbone among the service's.
    backbone: usize,
}

/// Bundles behind shared backbones, each backbone with a thread that batches what callers send it.
pub struct Service {
    models: Vec<ServedModel>,
    backbones: Vec<BackboneQueue>,
}

/// A backbone's queue: what callers need to prepare inputs for it and send them.
struct BackboneQueue {
    features: Features,
    sender: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    /// Calls sent and not yet taken by the backbone's thread.
    waiting: Arc<AtomicUsize>,
}

/// Inputs ready for the backbone: preprocessed image tensors or texts, with the inputs that failed to decode.
enum Prepared {
    Images(Vec<std::result::Result<Vec<f32>, String>>),
    Texts(Vec<String>),
}

struct Job {
    sent: Instant,
    models: Vec<Arc<Bundle>>,
    inputs: Prepared,
    options: PredictOptions,
    reply: Reply,
}

impl Service {
    /// Opens `bundles` (name, path); bundles trained on the same backbone configuration share one backbone.
    pub fn open(bundles: &[(String, PathBuf)], options: &ServiceOptions) -> Result<Service> {
        if options.max_batch == 0 {
            return Err(Error::parameter("max_batch", "must be at least 1"));
        }
        if options.max_queue == 0 {
            return Err(Error::parameter("max_queue", "must be at least 1"));
        }
        let mut models: Vec<ServedModel> = Vec::new();
        let mut backbones: Vec<BackboneQueue> = Vec::new();
        let mut workers: Vec<Classifier> = Vec::new();
        for (name, path) in bundles {
            if models.iter().any(|m| &m.name == name) {
                return Err(Error::parameter(
                    "name",
                    format!("two bundles are served as '{name}'"),
                ));
            }
            let bundle = Bundle::load(path)?;
            let features = bundle.info.features.clone();
            let shared = backbones
                .iter()
                .position(|b| b.features.check(&features).is_ok());
            let backbone = match shared {
                Some(index) => index,
                None => {
                    let classifier =
                        Classifier::from_bundle(bundle.clone(), path, &options.runtime, None)?;
                    backbones.push(BackboneQueue {
                        features,
                        sender: None,
                        worker: None,
                        waiting: Arc::new(AtomicUsize::new(0)),
                    });
                    workers.push(classifier);
                    backbones.len() - 1
                }
            };
            models.push(ServedModel {
                name: name.clone(),
                path: path.clone(),
                bundle: Arc::new(bundle),
                backbone,
            });
        }
        for (queue, classifier) in backbones.iter_mut().zip(workers) {
            let (sender, receiver) = sync_channel(options.max_queue);
            let batching = Batching {
                max_batch: options.max_batch,
                max_wait: options.max_wait,
                waiting: queue.waiting.clone(),
            };
            let worker = std::thread::Builder::new()
                .name("headstart-backbone".into())
                .spawn(move || run_batches(classifier.backbone, receiver, batching))
                .map_err(|e| Error::Runtime(format!("cannot start a backbone thread: {e}")))?;
            queue.sender = Some(sender);
            queue.worker = Some(worker);
        }
        Ok(Service { models, backbones })
    }

    /// The served bundles, in the order given.
    pub fn models(&self) -> &[ServedModel] {
        &self.models
    }

    /// Calls waiting for a backbone, over all backbones.
    pub fn waiting(&self) -> usize {
        self.backbones
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
        reply: Reply,
    ) -> Result<()> {
        let chosen = models
            .iter()
            .map(|name| {
                self.models
                    .iter()
                    .find(|m| m.name == *name)
                    .ok_or_else(|| Error::UnknownModel((*name).to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = chosen.first() else {
            return Err(Error::parameter("models", "must name at least one model"));
        };
        if let Some(other) = chosen.iter().find(|m| m.backbone != first.backbone) {
            return Err(Error::Incompatible(format!(
                "'{}' and '{}' were trained on different backbones: ask them apart",
                first.name, other.name
            )));
        }
        check_confidence(options)?;
        let queue = &self.backbones[first.backbone];
        let inputs = prepare(&queue.features, inputs)?;
        let job = Job {
            sent: Instant::now(),
            models: chosen.iter().map(|m| m.bundle.clone()).collect(),
            inputs,
            options: options.clone(),
            reply,
        };
        let Some(sender) = &queue.sender else {
            return Err(Error::Busy);
        };
        queue.waiting.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                queue.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(Error::Busy)
            }
        }
    }
}

impl Drop for Service {
    /// Closes the queues and waits for every call already queued to be answered.
    fn drop(&mut self) {
        for queue in &mut self.backbones {
            queue.sender = None;
        }
        for queue in &mut self.backbones {
            if let Some(worker) = queue.worker.take() {
                let _ = worker.join();
            }
        }
    }
}

/// Decodes and preprocesses images for the backbone (the costly part, kept off its thread), or checks that
/// texts go to a text backbone.
fn prepare(features: &Features, inputs: Vec<Input>) -> Result<Prepared> {
    match &features.input {
        InputSpec::Image(preprocess) => inputs
            .into_iter()
            .map(|input| match input {
                Input::Image(bytes) => Ok(preprocessed(&bytes, preprocess)),
                Input::Text(_) => Err(Error::InputMismatch {
                    trained: Modality::Image,
                    given: Modality::Text,
                }),
            })
            .collect::<Result<Vec<_>>>()
            .map(Prepared::Images),
        InputSpec::Text(_) => inputs
            .into_iter()
            .map(|input| match input {
                Input::Text(text) => Ok(text),
                Input::Image(_) => Err(Error::InputMismatch {
                    trained: Modality::Text,
                    given: Modality::Image,
                }),
            })
            .collect::<Result<Vec<_>>>()
            .map(Prepared::Texts),
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
/// embeds them in one run and answers each call; ends when the service closes the queue and it is empty.
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

/// Embeds every decodable input of `jobs` in one run and sends each job its answers.
fn answer_batch(backbone: &mut Backbone, jobs: Vec<Job>) {
    let started = Instant::now();
    let inputs = jobs.iter().map(|job| job.inputs.len()).sum();
    let embedded = embed_jobs(backbone, &jobs);
    let mut row = 0;
    let answered: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let answers = match &embedded {
                Ok(embeddings) => {
                    let (answers, used) = job_answers(&job, embeddings, row);
                    row += used;
                    answers
                }
                Err(message) => Err(Error::Runtime(message.clone())),
            };
            (job, answers)
        })
        .collect();
    let ran = started.elapsed();
    for (job, answers) in answered {
        let batch = BatchRun {
            inputs,
            waited: started.saturating_duration_since(job.sent),
            ran,
        };
        (job.reply)(answers.map(|answers| Answered { answers, batch }));
    }
}

/// One embedding row per decodable input of every job, in order.
fn embed_jobs(backbone: &mut Backbone, jobs: &[Job]) -> std::result::Result<Array2<f32>, String> {
    let decodable = |job: &Job| match &job.inputs {
        Prepared::Images(images) => images.iter().filter(|i| i.is_ok()).count(),
        Prepared::Texts(texts) => texts.len(),
    };
    if jobs.iter().map(decodable).sum::<usize>() == 0 {
        return Ok(Array2::zeros((0, 0)));
    }
    let embedded = match backbone {
        Backbone::Image(image) => {
            let batch: Vec<f32> = jobs
                .iter()
                .flat_map(|job| match &job.inputs {
                    Prepared::Images(images) => {
                        images.iter().flatten().flatten().copied().collect()
                    }
                    Prepared::Texts(_) => Vec::new(),
                })
                .collect();
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

/// A job's answers from its rows of `embeddings`, starting at `row`; also how many rows it used.
fn job_answers(
    job: &Job,
    embeddings: &Array2<f32>,
    row: usize,
) -> (Result<Vec<InputAnswers>>, usize) {
    let decoded: Vec<std::result::Result<(), String>> = match &job.inputs {
        Prepared::Images(images) => images
            .iter()
            .map(|image| image.as_ref().map(|_| ()).map_err(Clone::clone))
            .collect(),
        Prepared::Texts(texts) => texts.iter().map(|_| Ok(())).collect(),
    };
    let used = decoded.iter().filter(|d| d.is_ok()).count();
    if used == 0 {
        let failed = decoded
            .into_iter()
            .map(|d| d.map(|()| Vec::new()))
            .collect();
        return (Ok(failed), 0);
    }
    let rows = embeddings.slice(ndarray::s![row..row + used, ..]);
    let per_model = job
        .models
        .iter()
        .map(|bundle| bundle.answer(rows, &job.options))
        .collect::<Result<Vec<_>>>();
    let per_model = match per_model {
        Ok(per_model) => per_model,
        Err(e) => return (Err(e), used),
    };
    let mut next = 0;
    let answers = decoded
        .into_iter()
        .map(|decoded| {
            decoded.map(|()| {
                let answers = per_model
                    .iter()
                    .map(|answers| answers[next].clone())
                    .collect();
                next += 1;
                answers
            })
        })
        .collect();
    (Ok(answers), used)
}
