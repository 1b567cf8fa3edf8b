//! ONNX Runtime: find the shared library (or fetch the pinned one from PyPI), load it once per process, and
//! build sessions on the chosen device.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ort::environment::Environment;
use ort::session::builder::SessionBuilder;

use crate::error::{Error, Result};
use crate::fetch::{self, RegistryFile};

/// The ONNX Runtime release headstart fetches when none is found.
pub const PINNED_VERSION: &str = "1.31.1";
/// The oldest ONNX Runtime minor version (1.x) the `ort` API level compiled in accepts.
pub const MINIMUM_MINOR: u32 = 22;

/// Where sessions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Device {
    /// CUDA when this build and machine can use it, else CPU (said once).
    #[default]
    Auto,
    Cpu,
    /// CUDA or a clear error saying why not.
    Cuda,
}

/// How ONNX Runtime is loaded and sessions are configured.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The libonnxruntime to load; `None` searches: `ORT_DYLIB_PATH`, beside the executable, the cache, an installed
    /// Python onnxruntime, else the pinned release from PyPI.
    pub library: Option<PathBuf>,
    pub device: Device,
    /// Intra-op threads per session; `None` lets ONNX Runtime decide.
    pub threads: Option<usize>,
    /// Whether idle ONNX Runtime threads spin; `None` keeps its default (on). Turn it off when other threads
    /// (image decoding) need the same cores.
    pub intra_op_spinning: Option<bool>,
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);
static CPU_FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

/// Loads ONNX Runtime on first use and returns the process's one environment. Later calls return the same
/// environment whatever library they name: ONNX Runtime can be loaded only once per process.
pub fn environment(options: &RuntimeOptions) -> Result<Environment> {
    let mut slot = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    let library = match &options.library {
        Some(path) => explicit_library(path, "the runtime options")?,
        None => locate_library()?,
    };
    let builder = ort::init_from(&library).map_err(|e| load_error(&library, e))?;
    let environment = builder.with_name("headstart").build()?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// A session builder on the process's environment with the options' device and threads applied.
pub fn session_builder(options: &RuntimeOptions) -> Result<SessionBuilder> {
    let environment = environment(options)?;
    let mut builder = ort::session::Session::builder(&environment)?;
    if let Some(threads) = options.threads {
        if threads == 0 {
            return Err(Error::parameter("threads", "must be at least 1"));
        }
        builder = builder.with_intra_threads(threads)?;
    }
    if let Some(spinning) = options.intra_op_spinning {
        builder = builder.with_intra_op_spinning(spinning)?;
    }
    match options.device {
        Device::Cpu => Ok(builder),
        Device::Cuda => match try_cuda(builder) {
            (builder, Ok(())) => Ok(builder),
            (_, Err(reason)) => Err(Error::parameter("device", format!("cuda: {reason}"))),
        },
        Device::Auto if cfg!(feature = "cuda") => {
            let (builder, outcome) = try_cuda(builder);
            if let Err(reason) = outcome
                && !CPU_FALLBACK_SAID.swap(true, Ordering::Relaxed)
            {
                eprintln!("headstart: CUDA is not usable ({reason}); running on CPU");
            }
            Ok(builder)
        }
        Device::Auto => Ok(builder),
    }
}

/// Adds the CUDA execution provider; on failure the builder comes back unchanged with the reason.
#[cfg(feature = "cuda")]
fn try_cuda(builder: SessionBuilder) -> (SessionBuilder, std::result::Result<(), String>) {
    match builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]) {
        Ok(builder) => (builder, Ok(())),
        Err(e) => {
            let reason = e.message().to_string();
            (e.recover(), Err(reason))
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn try_cuda(builder: SessionBuilder) -> (SessionBuilder, std::result::Result<(), String>) {
    (
        builder,
        Err(
            "this headstart was built without CUDA support; rebuild it with `--features cuda`"
                .into(),
        ),
    )
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

fn explicit_library(path: &Path, source: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::Runtime(format!(
            "ONNX Runtime library {} (from {source}) does not exist",
            path.display()
        )))
    }
}

/// Finds libonnxruntime in this order: `ORT_DYLIB_PATH`, beside the executable, headstart's cache, an
/// installed Python `onnxruntime` package (1.22 or newer); else fetches the pinned wheel from PyPI.
pub(crate) fn locate_library() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return explicit_library(Path::new(&path), "ORT_DYLIB_PATH");
    }
    if let Some(found) = beside_executable() {
        return Ok(found);
    }
    let cached = cache_path()?;
    if cached.is_file() {
        return Ok(cached);
    }
    if let Some(found) = python_package_library() {
        return Ok(found);
    }
    let spec = pinned_wheel()?;
    fetch::ensure(&spec, &cached)?;
    Ok(cached)
}

/// Where the fetched runtime lives in the cache.
pub(crate) fn cache_path() -> Result<PathBuf> {
    Ok(crate::home::home()?
        .join("runtime")
        .join(format!("onnxruntime-{PINNED_VERSION}"))
        .join(library_file_name()))
}

fn library_file_name() -> String {
    match std::env::consts::OS {
        "linux" => format!("libonnxruntime.so.{PINNED_VERSION}"),
        "macos" => format!("libonnxruntime.{PINNED_VERSION}.dylib"),
        _ => "onnxruntime.dll".into(),
    }
}

fn pinned_wheel() -> Result<RegistryFile> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok(RegistryFile {
            package: format!("onnxruntime=={PINNED_VERSION}"),
            file: format!("onnxruntime/capi/libonnxruntime.so.{PINNED_VERSION}"),
            sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3".into(),
            platform: Some("manylinux_2_28_x86_64".into()),
        }),
        (os, arch) => Err(Error::Runtime(format!(
            "headstart has no pinned ONNX Runtime for {os}/{arch}: `pip install onnxruntime` (1.{MINIMUM_MINOR}+) \
             or name the library (ORT_DYLIB_PATH)"
        ))),
    }
}

fn is_runtime_library(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || (name.starts_with("libonnxruntime") && name.ends_with(".dylib"))
        || name == "onnxruntime.dll"
}

fn beside_executable() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_runtime_library))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.pop()
}

/// The library inside an installed Python `onnxruntime` package, if its version is new enough. The version
/// is read from the library's file name, so nothing is imported.
fn python_package_library() -> Option<PathBuf> {
    let script = "import importlib.util as u; s = u.find_spec('onnxruntime'); \
                  print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let output = Command::new(fetch::python())
        .args(["-c", script])
        .output()
        .ok()?;
    let package = String::from_utf8(output.stdout).ok()?;
    let capi = Path::new(package.trim()).join("capi");
    if package.trim().is_empty() {
        return None;
    }
    std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("libonnxruntime.so.")?;
            let minor: u32 = version.split('.').nth(1)?.parse().ok()?;
            (minor >= MINIMUM_MINOR).then(|| e.path())
        })
        .max()
}
