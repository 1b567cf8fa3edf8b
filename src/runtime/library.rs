//! Which libonnxruntime to load: one the user named, one already on the machine, or the pinned release fetched
//! from PyPI. A CUDA-capable one (onnxruntime-gpu) is looked for only when CUDA is wanted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::fetch::{self, RegistryFile};

use super::{MINIMUM_MINOR, PINNED_VERSION};

/// The CUDA provider ONNX Runtime loads from beside its own library.
pub(crate) const CUDA_PROVIDER: &str = "libonnxruntime_providers_cuda.so";
const SHARED_PROVIDER: &str = "libonnxruntime_providers_shared.so";

/// A library the user named (`--ort-lib`, `ORT_DYLIB_PATH`), if any; it must exist.
pub(crate) fn named(options_library: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = options_library {
        return explicit_library(path, "the runtime options").map(Some);
    }
    match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(path) => explicit_library(Path::new(&path), "ORT_DYLIB_PATH").map(Some),
        None => Ok(None),
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

/// Whether the CUDA provider sits beside `library`, where ONNX Runtime looks for it.
pub(crate) fn has_cuda_provider(library: &Path) -> bool {
    library
        .parent()
        .is_some_and(|dir| dir.join(CUDA_PROVIDER).is_file())
}

/// Finds a CPU libonnxruntime in this order: beside the executable, headstart's cache (the CPU runtime, else
/// onnxruntime-gpu's), an installed Python `onnxruntime` package (1.22 or newer); else takes onnxruntime-gpu
/// from the local wheel folder when only that is there, or fetches the pinned CPU wheel from PyPI.
/// onnxruntime-gpu runs the CPU provider as well: a GPU machine seeded with it needs no second runtime offline.
pub(crate) fn locate_cpu() -> Result<PathBuf> {
    if let Some(found) = beside_executable() {
        return Ok(found);
    }
    let cached = cpu_cache_path()?;
    if cached.is_file() {
        return Ok(cached);
    }
    let gpu_cached = gpu_cache_library()?;
    if gpu_cached.is_file() {
        return Ok(gpu_cached);
    }
    if let Some(found) = python_package_library(false) {
        return Ok(found);
    }
    let spec = cpu_wheel()?;
    if fetch::local_wheel(&spec.package)?.is_none() && fetch::local_wheel(&gpu_package())?.is_some()
    {
        return provision_gpu();
    }
    fetch::ensure(&spec, &cached)?;
    Ok(cached)
}

fn gpu_package() -> String {
    format!("onnxruntime-gpu=={PINNED_VERSION}")
}

/// Finds a libonnxruntime with the CUDA provider beside it: beside the executable, headstart's cache, an
/// installed Python `onnxruntime-gpu`; else fetches the pinned onnxruntime-gpu wheel's three libraries.
pub(crate) fn locate_gpu() -> Result<PathBuf> {
    if let Some(found) = beside_executable().filter(|l| has_cuda_provider(l)) {
        return Ok(found);
    }
    let cached = gpu_cache_library()?;
    if cached.is_file() && has_cuda_provider(&cached) {
        return Ok(cached);
    }
    if let Some(found) = python_package_library(true) {
        return Ok(found);
    }
    provision_gpu()
}

/// The pinned onnxruntime-gpu wheel's three libraries in the cache (from the local wheel folder, else PyPI).
fn provision_gpu() -> Result<PathBuf> {
    let dir = gpu_cache_dir()?;
    let files = gpu_wheel()?
        .into_iter()
        .map(|spec| {
            let dest = dir.join(spec.file_name());
            (spec, dest)
        })
        .collect::<Vec<_>>();
    fetch::ensure_all(&files)?;
    gpu_cache_library()
}

fn gpu_cache_library() -> Result<PathBuf> {
    Ok(gpu_cache_dir()?.join(library_file_name()))
}

/// Where the fetched CPU runtime lives in the cache.
pub(crate) fn cpu_cache_path() -> Result<PathBuf> {
    Ok(crate::home_dir::part("runtime")?
        .join(format!("onnxruntime-{PINNED_VERSION}"))
        .join(library_file_name()))
}

/// Where the fetched CUDA runtime (libonnxruntime and its two providers) lives in the cache.
pub(crate) fn gpu_cache_dir() -> Result<PathBuf> {
    Ok(crate::home_dir::part("runtime")?.join(format!("onnxruntime-gpu-{PINNED_VERSION}")))
}

fn library_file_name() -> String {
    match std::env::consts::OS {
        "linux" => format!("libonnxruntime.so.{PINNED_VERSION}"),
        "macos" => format!("libonnxruntime.{PINNED_VERSION}.dylib"),
        _ => "onnxruntime.dll".into(),
    }
}

fn cpu_wheel() -> Result<RegistryFile> {
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

/// The three libraries of onnxruntime-gpu headstart uses (its TensorRT provider is left in the wheel).
fn gpu_wheel() -> Result<Vec<RegistryFile>> {
    if (std::env::consts::OS, std::env::consts::ARCH) != ("linux", "x86_64") {
        return Err(Error::Runtime(format!(
            "headstart fetches the CUDA runtime only for linux/x86_64: install onnxruntime-gpu \
             1.{MINIMUM_MINOR}+ and name its library (ORT_DYLIB_PATH)"
        )));
    }
    let member = |name: &str, sha256: &str| RegistryFile {
        package: gpu_package(),
        file: format!("onnxruntime/capi/{name}"),
        sha256: sha256.into(),
        platform: Some("manylinux_2_28_x86_64".into()),
    };
    Ok(vec![
        member(
            &library_file_name(),
            "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
        ),
        member(
            SHARED_PROVIDER,
            "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        ),
        member(
            CUDA_PROVIDER,
            "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
        ),
        RegistryFile {
            file: format!("onnxruntime_gpu-{PINNED_VERSION}.dist-info/METADATA"),
            sha256: "f5ee54ada9176a138f0482110b890e475b84f17e07bc5f28da3f735e9ec3d729".into(),
            ..member("", "")
        },
    ])
}

/// The pinned onnxruntime-gpu wheel's METADATA (it names the NVIDIA wheels the CUDA provider needs).
pub(crate) fn gpu_metadata() -> Result<String> {
    let dir = gpu_cache_dir()?;
    let files: Vec<(RegistryFile, PathBuf)> = gpu_wheel()?
        .into_iter()
        .filter(|spec| spec.file.ends_with("/METADATA"))
        .map(|spec| (spec, dir.join("METADATA")))
        .collect();
    fetch::ensure_all(&files)?;
    let path = dir.join("METADATA");
    std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))
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

/// The library inside an installed Python `onnxruntime` (or `onnxruntime-gpu`, which installs under the same
/// name) package, if its version is new enough and, when `with_cuda`, the CUDA provider is beside it. The
/// version is read from the library's file name, so nothing is imported.
fn python_package_library(with_cuda: bool) -> Option<PathBuf> {
    let script = "import importlib.util as u; s = u.find_spec('onnxruntime'); \
                  print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let output = Command::new(fetch::python())
        .args(["-c", script])
        .output()
        .ok()?;
    let package = String::from_utf8(output.stdout).ok()?;
    if package.trim().is_empty() {
        return None;
    }
    let capi = Path::new(package.trim()).join("capi");
    if with_cuda && !capi.join(CUDA_PROVIDER).is_file() {
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
