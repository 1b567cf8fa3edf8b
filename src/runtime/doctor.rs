//! `doctor`: what ran where. The ONNX Runtime loaded and its providers, the NVIDIA driver and GPUs, the NVIDIA
//! libraries and where each came from, and a small convolution run on the device the options choose.

use std::path::PathBuf;
use std::time::Instant;

use ort::ep::ExecutionProvider;
use prost::Message;
use serde::Serialize;

use super::{DeviceUsed, Driver, LoadedLibrary, ModelBytes, RuntimeOptions, build_session, load};
use crate::error::Result;
use crate::onnx::proto::{self, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub runtime_library: PathBuf,
    pub runtime_version: String,
    /// ONNX Runtime's own build string (branch, commit).
    pub runtime_build: String,
    pub providers: Vec<String>,
    pub driver: Option<Driver>,
    /// Why there is no usable driver, when there is none.
    pub driver_problem: Option<String>,
    pub nvidia_libraries: Vec<LoadedLibrary>,
    /// Why CUDA is not used, when it is not.
    pub cuda_problem: Option<String>,
    /// Where a session runs with these options: a test convolution was built and run there.
    pub device: DeviceUsed,
    /// Where ONNX Runtime put the test convolution's nodes (CUDA only).
    pub placement: Option<super::Placement>,
    pub check_ms: f64,
}

/// Loads ONNX Runtime as `options` say (fetching what is missing) and runs a 3×3 convolution with them.
pub fn doctor(options: &RuntimeOptions) -> Result<Diagnosis> {
    let loaded = load(options)?;
    let (driver, driver_problem) = match super::nvidia::driver() {
        Ok(driver) => (Some(driver), None),
        Err(reason) => (None, Some(reason)),
    };
    let mut providers = vec!["CPUExecutionProvider".to_string()];
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        providers.push("CUDAExecutionProvider".into());
    }
    let model = convolution_model();
    let started = Instant::now();
    let mut built = build_session(
        options,
        std::path::Path::new("doctor's test convolution"),
        ModelBytes::Memory(&model),
    )?;
    let input = vec![0.5f32; 8 * 32 * 32];
    let tensor = ort::value::TensorRef::from_array_view(([1usize, 8, 32, 32], input.as_slice()))?;
    built.session.run(ort::inputs!["x" => tensor])?;
    let check_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(Diagnosis {
        runtime_library: loaded.library.clone(),
        runtime_version: version(&loaded.library).unwrap_or_else(|| "unknown".into()),
        runtime_build: ort::info().to_string(),
        providers,
        driver,
        driver_problem,
        nvidia_libraries: loaded
            .cuda
            .as_ref()
            .map(|ready| ready.libraries.clone())
            .unwrap_or_default(),
        cuda_problem: loaded.cuda.as_ref().err().cloned(),
        device: built.device,
        placement: built.placement,
        check_ms,
    })
}

/// The version the library reports (`OrtGetApiBase()->GetVersionString()`); it is already loaded, so opening
/// it again only takes a reference.
fn version(library: &std::path::Path) -> Option<String> {
    // SAFETY: the library is the ONNX Runtime this process loaded; OrtGetApiBase has this signature in every
    // release, and the version string it points to is static.
    unsafe {
        let handle = libloading::Library::new(library).ok()?;
        let base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            handle.get(b"OrtGetApiBase").ok()?;
        let base = base();
        if base.is_null() {
            return None;
        }
        let text = ((*base).GetVersionString)();
        Some(
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// x [1,8,32,32] → 3×3 convolution with 8 filters → y: enough to make cuDNN load and run.
fn convolution_model() -> Vec<u8> {
    let weights: Vec<f32> = (0..8 * 8 * 9).map(|i| (i % 7) as f32 / 7.0).collect();
    let graph = GraphProto {
        name: "doctor".into(),
        node: vec![NodeProto::new("Conv", &["x", "w"], &["y"]).with_ints("pads", &[1, 1, 1, 1])],
        initializer: vec![TensorProto::floats("w", &[8, 8, 3, 3], &weights)],
        input: vec![ValueInfoProto::tensor(
            "x",
            proto::FLOAT,
            &[Some(1), Some(8), Some(32), Some(32)],
        )],
        output: vec![ValueInfoProto::tensor(
            "y",
            proto::FLOAT,
            &[Some(1), Some(8), Some(32), Some(32)],
        )],
    };
    ModelProto::new(graph, 13).encode_to_vec()
}
