//! Image backbones: preprocessing resolved from the zoo, a JSON file beside the model, and flags; batched
//! inference; pooling to one vector per image.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use ndarray::{Array2, ArrayView4};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::value::{Tensor, TensorElementType, TensorRef};

use super::{
    BackboneIdentity, BackboneOptions, BackboneRef, LoadedModel, ModelFile, pool_features,
    tensor_shape,
};
use crate::error::{Error, Result};
use crate::preprocess::{ImagePreprocess, Layout, PreprocessOverrides};
use crate::runtime::DeviceUsed;

pub struct ImageBackbone {
    pub(super) model: LoadedModel,
    input: String,
    preprocess: ImagePreprocess,
    /// Some models only take a fixed batch size (often 1).
    fixed_batch: Option<usize>,
    /// Page-locked host memory for batches on CUDA: copies to the GPU run at full speed from it.
    pinned: Option<Allocator>,
}

/// Room for one batch of preprocessed images, filled row by row and then embedded whole.
pub struct BatchBuffer {
    data: BufferData,
    rows: usize,
    row_len: usize,
}

enum BufferData {
    Host(Vec<f32>),
    Pinned(Tensor<f32>),
}

impl BatchBuffer {
    /// `rows` rows of `row_len` values in ordinary memory.
    pub(crate) fn on_host(rows: usize, row_len: usize) -> Self {
        BatchBuffer {
            data: BufferData::Host(vec![0.0; rows * row_len]),
            rows,
            row_len,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether it is page-locked host memory (CUDA), which the GPU copies from directly.
    pub fn is_pinned(&self) -> bool {
        matches!(self.data, BufferData::Pinned(_))
    }

    /// Row `i`, to preprocess an image into.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let len = self.row_len;
        &mut self.values_mut()[i * len..(i + 1) * len]
    }

    /// Where row `i` starts, and its length, for threads that fill different rows at once: no reference to
    /// the whole buffer is made, so theirs do not overlap.
    pub(crate) fn row_ptr(&mut self, i: usize) -> (*mut f32, usize) {
        assert!(i < self.rows, "row {i} of a batch of {}", self.rows);
        // SAFETY: i < rows, so the row lies inside the rows × row_len values the buffer owns.
        (
            unsafe { self.start_mut().add(i * self.row_len) },
            self.row_len,
        )
    }

    /// The first value, without making a reference to the whole buffer. ort refuses to hand out CUDA_PINNED
    /// memory as a slice, though it is host memory.
    fn start_mut(&mut self) -> *mut f32 {
        match &mut self.data {
            BufferData::Host(values) => values.as_mut_ptr(),
            BufferData::Pinned(tensor) => tensor.data_ptr_mut().cast::<f32>(),
        }
    }

    fn values_mut(&mut self) -> &mut [f32] {
        let len = self.rows * self.row_len;
        // SAFETY: the buffer owns `len` f32 values (a Vec, or page-locked host memory from cudaHostAlloc) for as
        // long as `self` lives, and the &mut borrow of `self` makes this the only reference to them.
        unsafe { std::slice::from_raw_parts_mut(self.start_mut(), len) }
    }

    pub(crate) fn values(&self) -> &[f32] {
        let len = self.rows * self.row_len;
        match &self.data {
            BufferData::Host(values) => values,
            // SAFETY: as in `values_mut`; the shared borrow of `self` rules out writers meanwhile. ort refuses
            // to hand out CUDA_PINNED memory as a slice, though it is host memory.
            BufferData::Pinned(tensor) => unsafe {
                std::slice::from_raw_parts(tensor.data_ptr().cast::<f32>(), len)
            },
        }
    }
}

/// Images of an [N, H, W, 3] array preprocessed at a time: the float batch stays small whatever N is.
const PIXEL_BATCH: usize = 32;

impl ImageBackbone {
    /// Opens `reference` as an image backbone ([`super::Backbone::open`] opens either kind).
    pub fn open(reference: &BackboneRef, options: &BackboneOptions) -> Result<Self> {
        Self::load(ModelFile::read(reference)?, options)
    }

    pub(crate) fn load(file: ModelFile, options: &BackboneOptions) -> Result<Self> {
        Self::load_tapped(file, options, &[])
    }

    /// [`Self::load`] with `taps`, intermediate tensors, exposed as extra outputs ([`Self::run_taps`]).
    pub(crate) fn load_tapped(
        file: ModelFile,
        options: &BackboneOptions,
        taps: &[String],
    ) -> Result<Self> {
        let model = LoadedModel::load(file, options, taps)?;
        let path = model.path.clone();
        let inputs = model.session.inputs();
        if inputs.len() != 1 {
            let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
            return Err(Error::model(
                &path,
                format!(
                    "has {} inputs ({}); an image backbone takes one image tensor (is this a text model?)",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let input = &inputs[0];
        let (ty, shape) =
            tensor_shape(input).ok_or_else(|| Error::model(&path, "its input is not a tensor"))?;
        let model_layout = image_layout(&shape);
        if ty != TensorElementType::Float32 || model_layout.is_none() {
            return Err(Error::model(
                &path,
                format!(
                    "its input '{}' is {} — not an image (expected float32 [N,3,H,W] or [N,H,W,3])",
                    input.name(),
                    input.dtype()
                ),
            ));
        }
        let input_name = input.name().to_string();
        let preprocess = resolve_preprocess(
            &path,
            model.zoo.as_ref().and_then(|z| z.preprocess.clone()),
            &shape,
            options,
        )?;
        let fixed_batch = (shape[0] > 0).then_some(shape[0] as usize);
        let pinned = if model.device.is_cuda() {
            MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                0,
                AllocatorType::Device,
                MemoryType::CPUInput,
            )
            .and_then(|info| Allocator::new(&model.session, info))
            .ok()
        } else {
            None
        };
        Ok(ImageBackbone {
            model,
            input: input_name,
            preprocess,
            fixed_batch,
            pinned,
        })
    }

    /// Where it runs.
    pub fn device(&self) -> &DeviceUsed {
        &self.model.device
    }

    /// Where ONNX Runtime put the nodes of a CUDA session (`None` on the CPU, or when it did not say).
    pub fn placement(&self) -> Option<&crate::runtime::Placement> {
        self.model.placement.as_ref()
    }

    /// A buffer for `rows` preprocessed images, page-locked when the backbone runs on CUDA.
    pub fn batch_buffer(&self, rows: usize) -> Result<BatchBuffer> {
        let row_len = self.preprocess.tensor_len();
        match &self.pinned {
            Some(allocator) => Ok(BatchBuffer {
                data: BufferData::Pinned(Tensor::new(allocator, [rows * row_len])?),
                rows,
                row_len,
            }),
            None => Ok(BatchBuffer::on_host(rows, row_len)),
        }
    }

    /// Embeds the first `count` rows of `buffer`: (dim, `count` × dim values). On CUDA the whole buffer runs,
    /// so a short last batch has the shape cuDNN already chose kernels for; the extra rows are dropped.
    pub fn embed_batch(&mut self, buffer: &BatchBuffer, count: usize) -> Result<(usize, Vec<f32>)> {
        let len = self.preprocess.tensor_len();
        if self.fixed_batch.is_some() {
            let rows = self.embed_preprocessed(&buffer.values()[..count * len])?;
            let dim = rows.ncols();
            return Ok((dim, rows.into_raw_vec_and_offset().0));
        }
        let run = if self.model.device.is_cuda() {
            buffer.rows.max(count)
        } else {
            count
        };
        let (dim, mut values) = self.run(&buffer.values()[..run * len], run)?;
        values.truncate(count * dim);
        Ok((dim, values))
    }

    pub fn preprocess(&self) -> &ImagePreprocess {
        &self.preprocess
    }

    pub fn identity(&self) -> &BackboneIdentity {
        &self.model.identity
    }

    /// The zoo name or path it was opened from.
    pub(crate) fn source(&self) -> &BackboneRef {
        &self.model.source
    }

    /// The name of the model's image input.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// Preprocesses and embeds images: one row per image.
    pub fn embed(&mut self, images: &[DynamicImage]) -> Result<Array2<f32>> {
        let len = self.preprocess.tensor_len();
        let mut batch = vec![0.0f32; len * images.len()];
        for (image, slot) in images.iter().zip(batch.chunks_exact_mut(len)) {
            self.preprocess.apply(image, slot);
        }
        self.embed_preprocessed(&batch)
    }

    /// Embeds 8-bit RGB images handed over as one [N, H, W, 3] array (numpy's layout for a stack of images):
    /// one row per image. They are preprocessed a batch at a time, so memory does not grow with N.
    pub fn embed_pixels(&mut self, pixels: ArrayView4<u8>) -> Result<Array2<f32>> {
        let (n, height, width, channels) = pixels.dim();
        if channels != 3 || height == 0 || width == 0 {
            return Err(Error::parameter(
                "pixels",
                format!(
                    "must be RGB images shaped [N, H, W, 3], got [{n}, {height}, {width}, {channels}]"
                ),
            ));
        }
        let (Ok(height32), Ok(width32)) = (u32::try_from(height), u32::try_from(width)) else {
            return Err(Error::parameter("pixels", "images too large"));
        };
        let contiguous = pixels.as_standard_layout();
        let values = contiguous
            .as_slice()
            .expect("a standard-layout array is one slice");
        let per_image = height * width * 3;
        let len = self.preprocess.tensor_len();
        let mut rows = Vec::new();
        let mut dim = 0;
        for images in values.chunks(PIXEL_BATCH * per_image) {
            let mut batch = vec![0.0f32; len * (images.len() / per_image)];
            for (image, slot) in images
                .chunks_exact(per_image)
                .zip(batch.chunks_exact_mut(len))
            {
                self.preprocess.apply_rgb(image, width32, height32, slot);
            }
            let embedded = self.embed_preprocessed(&batch)?;
            dim = embedded.ncols();
            rows.extend(embedded);
        }
        Array2::from_shape_vec((n, dim), rows)
            .map_err(|e| Error::model(&self.model.path, format!("unexpected output size: {e}")))
    }

    /// Embeds a batch already in the model's input layout (a multiple of `preprocess().tensor_len()` values).
    pub fn embed_preprocessed(&mut self, batch: &[f32]) -> Result<Array2<f32>> {
        let len = self.preprocess.tensor_len();
        let n = batch.len() / len;
        let step = self.fixed_batch.unwrap_or(n.max(1));
        let mut rows = Vec::new();
        let mut dim = 0;
        for chunk in batch.chunks(step * len) {
            let count = chunk.len() / len;
            let (d, values) = self.run(chunk, count)?;
            dim = d;
            rows.extend(values);
        }
        Array2::from_shape_vec((n, dim), rows)
            .map_err(|e| Error::model(&self.model.path, format!("unexpected output size: {e}")))
    }

    /// Runs a preprocessed batch of `count` images and hands each of `taps` (exposed when loading) to
    /// `visit` with its index.
    pub(crate) fn run_taps(
        &mut self,
        chunk: &[f32],
        count: usize,
        taps: &[String],
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let shape = self.preprocess.batch_shape(count);
        let tensor = TensorRef::from_array_view((shape, chunk))?;
        let outputs = self
            .model
            .session
            .run(ort::inputs![self.input.as_str() => tensor])?;
        for (index, tap) in taps.iter().enumerate() {
            let (_, values) = outputs[tap.as_str()].try_extract_tensor::<f32>()?;
            visit(index, values);
        }
        Ok(())
    }

    fn run(&mut self, chunk: &[f32], count: usize) -> Result<(usize, Vec<f32>)> {
        let shape = self.preprocess.batch_shape(count);
        let tensor = TensorRef::from_array_view((shape, chunk))?;
        let outputs = self
            .model
            .session
            .run(ort::inputs![self.input.as_str() => tensor])?;
        pool_features(
            &self.model.identity,
            &self.model.path,
            &outputs,
            self.preprocess.layout,
            None,
        )
    }
}

/// NCHW when the channel axis is 1, NHWC when it is 3 (dynamic axes count as either; NCHW preferred).
fn image_layout(shape: &[i64]) -> Option<Layout> {
    if shape.len() != 4 {
        return None;
    }
    let could_be_3 = |d: i64| d == 3 || d < 0;
    if could_be_3(shape[1]) && !(shape[1] < 0 && shape[3] == 3) {
        Some(Layout::Nchw)
    } else if could_be_3(shape[3]) {
        Some(Layout::Nhwc)
    } else {
        None
    }
}

/// Zoo (or timm defaults) ← the model's own fixed input shape ← a JSON file beside the model ← the
/// `--preprocess` file ← flags. A size that contradicts a fixed input shape is an error.
fn resolve_preprocess(
    path: &Path,
    zoo: Option<ImagePreprocess>,
    shape: &[i64],
    options: &BackboneOptions,
) -> Result<ImagePreprocess> {
    let from_zoo = zoo.is_some();
    let mut preprocess = zoo.unwrap_or_default();
    // Only a fixed channel axis tells the layout; a fully dynamic shape keeps the configured one.
    let shape_layout = match (shape[1], shape[3]) {
        (3, _) => Some(Layout::Nchw),
        (_, 3) => Some(Layout::Nhwc),
        _ => None,
    };
    let (h_axis, w_axis) = spatial_axes(shape_layout.unwrap_or(preprocess.layout));
    let mut overrides = PreprocessOverrides {
        layout: shape_layout,
        ..Default::default()
    };
    if shape[h_axis] > 0 && shape[w_axis] > 0 {
        overrides.size = Some((shape[h_axis] as u32, shape[w_axis] as u32));
    }
    if !from_zoo && let Some(sidecar) = sidecar_file(path) {
        overrides.merge(&PreprocessOverrides::from_json_file(&sidecar)?);
    }
    if let Some(file) = &options.preprocess_file {
        overrides.merge(&PreprocessOverrides::from_json_file(file)?);
    }
    overrides.merge(&options.preprocess);
    overrides.apply_to(&mut preprocess);
    // From flags, a JSON file or a bundle: a crop of nothing makes every image one grey pixel, silently.
    if !(preprocess.crop_pct > 0.0 && preprocess.crop_pct <= 1.0) {
        return Err(Error::parameter(
            "crop_pct",
            format!("must be in (0, 1], got {}", preprocess.crop_pct),
        ));
    }
    if preprocess.height == 0 || preprocess.width == 0 {
        return Err(Error::parameter("size", "must be at least 1x1"));
    }
    if !preprocess.std.iter().all(|s| s.is_finite() && *s != 0.0) {
        return Err(Error::parameter("std", "must be finite and not 0"));
    }
    if !preprocess.mean.iter().all(|m| m.is_finite()) {
        return Err(Error::parameter("mean", "must be finite"));
    }
    if let Some(layout) = shape_layout
        && preprocess.layout != layout
    {
        return Err(Error::model(
            path,
            format!(
                "layout {:?} does not fit the model's input shape {shape:?}",
                preprocess.layout
            ),
        ));
    }
    let (h_axis, w_axis) = spatial_axes(preprocess.layout);
    let fits = |axis: usize, want: u32| shape[axis] <= 0 || shape[axis] == want as i64;
    if !fits(h_axis, preprocess.height) || !fits(w_axis, preprocess.width) {
        return Err(Error::model(
            path,
            format!(
                "input size {}x{} does not fit the model's fixed input shape {shape:?}",
                preprocess.width, preprocess.height
            ),
        ));
    }
    Ok(preprocess)
}

fn spatial_axes(layout: Layout) -> (usize, usize) {
    match layout {
        Layout::Nchw => (2, 3),
        Layout::Nhwc => (1, 2),
    }
}

/// A preprocessing JSON beside a model: `NAME.json`, `preprocessor_config.json` or `config.json`.
fn sidecar_file(model: &Path) -> Option<PathBuf> {
    let dir = model.parent()?;
    [
        model.with_extension("json"),
        dir.join("preprocessor_config.json"),
        dir.join("config.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_from_shapes() {
        assert_eq!(image_layout(&[-1, 3, 224, 224]), Some(Layout::Nchw));
        assert_eq!(image_layout(&[-1, 224, 224, 3]), Some(Layout::Nhwc));
        assert_eq!(image_layout(&[-1, -1, -1, 3]), Some(Layout::Nhwc));
        assert_eq!(image_layout(&[-1, -1, -1, -1]), Some(Layout::Nchw));
        assert_eq!(image_layout(&[-1, 1, 28, 28]), None);
        assert_eq!(image_layout(&[-1, 128]), None);
    }
}
