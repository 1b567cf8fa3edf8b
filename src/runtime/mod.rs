//! ONNX Runtime: find the shared library (or fetch the pinned one from PyPI), load it once per process with the
//! NVIDIA libraries CUDA needs, and build sessions on the chosen device, saying where they run.

mod doctor;
mod library;
mod nvidia;
mod placement;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use serde::Serialize;

use crate::error::{Error, Result};

pub use doctor::{Diagnosis, doctor};
pub use nvidia::{Driver, LoadedLibrary};
pub use placement::Placement;

/// The ONNX Runtime release headstart fetches when none is found.
pub const PINNED_VERSION: &str = "1.31.1";
/// The oldest ONNX Runtime minor version (1.x) the `ort` API level compiled in accepts.
pub(crate) const MINIMUM_MINOR: u32 = 22;

/// Where sessions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Device {
    /// CUDA when an NVIDIA driver is there and ONNX Runtime can run its CUDA provider, else CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA or a clear error saying why not.
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            other => Err(Error::parameter(
                "device",
                format!("'{other}' is not one of auto, cpu, cuda"),
            )),
        }
    }
}

/// How cuDNN picks convolution algorithms: a full timing search per input shape (fastest kernels, seconds of
/// start-up), or its heuristics (instant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ConvSearch {
    #[default]
    Heuristic,
    Exhaustive,
}

/// The arithmetic a backbone runs in. Inputs and outputs stay float32 in every case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    #[default]
    Fp32,
    /// Half precision, on CUDA only: about twice the speed, embeddings within cosine 0.999 of fp32.
    Fp16,
    /// int8 convolutions and matrix products with activation ranges calibrated on the user's images (QDQ form):
    /// for CPUs with integer dot products, and the edge.
    Int8,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        })
    }
}

/// How ONNX Runtime is loaded and sessions are configured.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// The libonnxruntime to load; `None` searches: `ORT_DYLIB_PATH`, beside the executable, the cache, an installed
    /// Python onnxruntime, else the pinned release from PyPI (onnxruntime-gpu when CUDA is wanted).
    pub library: Option<PathBuf>,
    pub device: Device,
    /// Intra-op threads per session; `None` lets ONNX Runtime decide.
    pub threads: Option<usize>,
    /// Whether idle ONNX Runtime threads spin; `None` keeps its default (on). Turn it off when other threads
    /// (image decoding) need the same cores.
    pub intra_op_spinning: Option<bool>,
    /// Under [`Device::Cuda`], whether nodes ONNX Runtime has no CUDA kernel for may run on the CPU.
    pub allow_cpu_nodes: bool,
    pub conv_search: ConvSearch,
    pub precision: Precision,
}

setters!(RuntimeOptions {
    library: PathBuf,
    device: Device,
    threads: usize,
    intra_op_spinning: bool,
    allow_cpu_nodes: bool,
    conv_search: ConvSearch,
    precision: Precision,
});

/// The device a session actually runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum DeviceUsed {
    Cpu,
    Cuda { id: u32, name: Option<String> },
}

impl DeviceUsed {
    pub fn is_cuda(&self) -> bool {
        matches!(self, DeviceUsed::Cuda { .. })
    }
}

impl std::fmt::Display for DeviceUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceUsed::Cpu => f.write_str("cpu"),
            DeviceUsed::Cuda {
                id,
                name: Some(name),
            } => write!(f, "cuda:{id} ({name})"),
            DeviceUsed::Cuda { id, name: None } => write!(f, "cuda:{id}"),
        }
    }
}

impl From<DeviceUsed> for String {
    fn from(device: DeviceUsed) -> String {
        device.to_string()
    }
}

/// What loading ONNX Runtime settled for this process.
#[derive(Clone)]
struct Loaded {
    environment: Environment,
    library: PathBuf,
    /// Ready (with the libraries loaded for it), or why CUDA cannot run here.
    cuda: std::result::Result<CudaReady, String>,
}

#[derive(Clone)]
struct CudaReady {
    driver: Driver,
    libraries: Vec<LoadedLibrary>,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);
static CPU_FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

/// Loads ONNX Runtime on first use and returns the process's one environment. Later calls return the same
/// environment whatever library or device they name: ONNX Runtime can be loaded only once per process.
pub fn environment(options: &RuntimeOptions) -> Result<Environment> {
    Ok(load(options)?.environment)
}

fn load(options: &RuntimeOptions) -> Result<Loaded> {
    let mut slot = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(loaded) = slot.as_ref() {
        return Ok(loaded.clone());
    }
    let named = library::named(options.library.as_deref())?;
    // The driver is probed once: it decides auto, and auto's fallback is said only where there is a GPU.
    let driver = match options.device {
        Device::Cpu => Err("the CPU was chosen".to_string()),
        Device::Auto | Device::Cuda => nvidia::driver(),
    };
    let prepared = driver
        .clone()
        .and_then(|driver| prepare_cuda(driver, named.clone()));
    let (library, cuda) = match (options.device, prepared) {
        (Device::Cuda, Err(reason)) => return Err(cuda_refused(reason)),
        (_, Ok((library, ready))) => (library, Ok(ready)),
        (_, Err(reason)) => (cpu_library(named)?, Err(reason)),
    };
    let builder = ort::init_from(&library).map_err(|e| load_error(&library, e))?;
    let environment = builder
        .with_name("headstart")
        .with_logger(std::sync::Arc::new(|level, _, _, _, message: &str| {
            // Errors come back as the failing call's error, printed once as headstart's `error:` line.
            if level == LogLevel::Warning {
                eprintln!("onnxruntime: {message}");
            }
        }))
        .build()?;
    let cuda = cuda.and_then(|ready| {
        if ort::ep::CUDA::is_available().unwrap_or(false) {
            Ok(ready)
        } else {
            Err(format!(
                "the ONNX Runtime at {} is a CPU build (it has no CUDA provider)",
                library.display()
            ))
        }
    });
    if let Err(reason) = &cuda {
        match options.device {
            Device::Cuda => return Err(cuda_refused(reason.clone())),
            // No NVIDIA GPU here: the CPU, quietly.
            Device::Auto if driver.is_ok() => say_cpu_fallback(reason),
            _ => {}
        }
    }
    let loaded = Loaded {
        environment,
        library,
        cuda,
    };
    *slot = Some(loaded.clone());
    Ok(loaded)
}

fn cpu_library(named: Option<PathBuf>) -> Result<PathBuf> {
    match named {
        Some(path) => Ok(path),
        None => library::locate_cpu(),
    }
}

/// A CUDA-capable runtime and its NVIDIA libraries, loaded; or why not.
fn prepare_cuda(
    driver: Driver,
    named: Option<PathBuf>,
) -> std::result::Result<(PathBuf, CudaReady), String> {
    let library = match named {
        Some(path) => path,
        None => library::locate_gpu().map_err(|e| e.to_string())?,
    };
    if !library::has_cuda_provider(&library) {
        return Err(format!(
            "{} has no {} beside it (a CPU build of ONNX Runtime)",
            library.display(),
            library::CUDA_PROVIDER
        ));
    }
    let fetched = nvidia::cache_dir().map_err(|e| e.to_string())?;
    let sources = nvidia::sources(library.parent(), &fetched);
    let resolve_all = || {
        [&nvidia::CUDA, &nvidia::CUDNN]
            .iter()
            .map(|group| nvidia::resolve(group, &sources))
            .collect::<std::result::Result<Vec<_>, String>>()
    };
    let groups = match resolve_all() {
        Ok(groups) => groups,
        Err(_) => {
            nvidia::fetch().map_err(|e| e.to_string())?;
            resolve_all()?
        }
    };
    let libraries = nvidia::preload(&groups)?;
    Ok((library, CudaReady { driver, libraries }))
}

fn cuda_refused(reason: String) -> Error {
    Error::parameter("device", format!("cuda: {reason}"))
}

fn say_cpu_fallback(reason: &str) {
    if !CPU_FALLBACK_SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "headstart: there is an NVIDIA GPU, but CUDA is not usable ({reason}); running on the CPU"
        );
    }
}

/// A session built on the device the options ask for, with where it runs.
pub(crate) struct BuiltSession {
    pub session: Session,
    pub device: DeviceUsed,
    /// Where ONNX Runtime put the nodes of a CUDA session (`None`: a CPU session, or it did not say).
    pub placement: Option<Placement>,
}

/// The model to build a session from.
pub(crate) enum ModelBytes<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

/// Builds a session for the model at `path` (its bytes given or read from the file). On CUDA, ONNX Runtime's
/// placement is read from its log: under [`Device::Cuda`], nodes without a CUDA kernel are an error unless
/// [`RuntimeOptions::allow_cpu_nodes`]; under [`Device::Auto`] they are reported.
pub(crate) fn build_session(
    options: &RuntimeOptions,
    path: &Path,
    model: ModelBytes,
) -> Result<BuiltSession> {
    let loaded = load(options)?;
    let on_cpu = || -> Result<BuiltSession> {
        let session = commit(
            &mut cpu_builder(&loaded.environment, options)?,
            path,
            &model,
        )?;
        Ok(BuiltSession {
            session,
            device: DeviceUsed::Cpu,
            placement: None,
        })
    };
    let ready = match (options.device, &loaded.cuda) {
        (Device::Cpu, _) | (Device::Auto, Err(_)) => return on_cpu(),
        (Device::Cuda, Err(reason)) => return Err(cuda_refused(reason.clone())),
        (_, Ok(ready)) => ready,
    };
    let log = placement::SessionLog::new();
    let provider = ort::ep::CUDA::default()
        .with_device_id(0)
        .with_conv_algorithm_search(match options.conv_search {
            ConvSearch::Heuristic => ort::ep::cuda::ConvAlgorithmSearch::Heuristic,
            ConvSearch::Exhaustive => ort::ep::cuda::ConvAlgorithmSearch::Exhaustive,
        })
        .build()
        .error_on_failure();
    let configured = cpu_builder(&loaded.environment, options)?
        .with_logger(log.logger())
        .map_err(|e| e.message().to_string())
        .and_then(|b| {
            b.with_log_level(LogLevel::Verbose)
                .map_err(|e| e.message().to_string())
        })
        .and_then(|b| {
            b.with_execution_providers([provider])
                .map_err(|e| e.message().to_string())
        });
    let mut builder = match configured {
        Ok(builder) => builder,
        Err(reason) => {
            if options.device == Device::Cuda {
                return Err(cuda_refused(reason));
            }
            say_cpu_fallback(&reason);
            return on_cpu();
        }
    };
    let session = commit(&mut builder, path, &model)?;
    let placement = log.finish();
    if let Some(nodes) = placement.as_ref().and_then(Placement::cpu_fallback)
        && options.device == Device::Cuda
        && !options.allow_cpu_nodes
    {
        return Err(Error::parameter(
            "allow_cpu_nodes",
            format!(
                "is off, but ONNX Runtime has no CUDA kernel for {nodes} of {}: they would run on the CPU \
                 (allow it, or let the device be chosen automatically)",
                path.display()
            ),
        ));
    }
    Ok(BuiltSession {
        session,
        device: DeviceUsed::Cuda {
            id: 0,
            name: ready.driver.gpus.first().cloned(),
        },
        placement,
    })
}

/// Fails unless sessions with these options run on CUDA; `setting` names the option that needs it.
pub(crate) fn require_cuda(
    options: &RuntimeOptions,
    setting: &'static str,
    what: &str,
) -> Result<()> {
    let loaded = load(options)?;
    match (&loaded.cuda, options.device) {
        (_, Device::Cpu) => Err(Error::parameter(
            setting,
            format!("{what} runs on CUDA only, and the CPU was chosen"),
        )),
        (Err(reason), _) => Err(Error::parameter(
            setting,
            format!("{what} runs on CUDA only: {reason}"),
        )),
        (Ok(_), _) => Ok(()),
    }
}

fn cpu_builder(environment: &Environment, options: &RuntimeOptions) -> Result<SessionBuilder> {
    let mut builder = Session::builder(environment)?;
    if let Some(threads) = options.threads {
        if threads == 0 {
            return Err(Error::parameter("threads", "must be at least 1"));
        }
        builder = builder.with_intra_threads(threads)?;
    }
    if let Some(spinning) = options.intra_op_spinning {
        builder = builder.with_intra_op_spinning(spinning)?;
    }
    Ok(builder)
}

fn commit(builder: &mut SessionBuilder, path: &Path, model: &ModelBytes) -> Result<Session> {
    match model {
        ModelBytes::File(file) => builder.commit_from_file(file),
        ModelBytes::Memory(bytes) => builder.commit_from_memory(bytes),
    }
    .map_err(|e| {
        Error::model(
            path,
            format!("ONNX Runtime cannot load it: {}", e.message()),
        )
    })
}

fn load_error(library: &Path, error: ort::LoadDynamicError) -> Error {
    use ort::LoadDynamicError as E;
    match error {
        E::BadVersion { version_str, .. } => Error::Runtime(format!(
            "ONNX Runtime at {} is version {version_str}, but headstart needs 1.{MINIMUM_MINOR} or newer \
             (it fetches {PINNED_VERSION} itself when no library is named and ORT_DYLIB_PATH is not set)",
            library.display()
        )),
        E::MissingApi { .. } => Error::Runtime(format!(
            "{} is not an ONNX Runtime library (it has no OrtGetApiBase)",
            library.display()
        )),
        other => Error::Runtime(format!("cannot load ONNX Runtime: {other}")),
    }
}
