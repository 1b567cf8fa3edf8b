//! A folder of images → embeddings. Decode and preprocessing run in worker threads while the backbone runs
//! batched inference on the main thread; a bounded channel keeps memory flat as the folder grows. Each file's
//! bytes are hashed first, so cached views never get decoded.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use image::DynamicImage;
use serde::Serialize;

use crate::backbone::text::TextInput;
use crate::backbone::{BackboneIdentity, ImageBackbone};
use crate::cache::{self, EmbeddingCache, Key};
use crate::dataset::{Dataset, Skip};
use crate::decode::{DEFAULT_MAX_PIXELS, decode_image};
use crate::error::{Error, Result};
use crate::npz::{NpyArray, NpyData, read_npz_from, write_npz};
use crate::preprocess::ImagePreprocess;

/// Extra views of each image for tiny datasets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augment {
    pub flip: bool,
    pub crop: bool,
}

impl FromStr for Augment {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut augment = Augment::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "flip" => augment.flip = true,
                "crop" => augment.crop = true,
                other => return Err(format!("unknown augmentation '{other}' (use flip, crop)")),
            }
        }
        Ok(augment)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Original,
    /// Mirrored left to right.
    Flip,
    /// The centre 80%, zoomed in.
    Crop,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Original => "original",
            View::Flip => "flip",
            View::Crop => "crop",
        }
    }

    fn apply(self, image: &DynamicImage) -> DynamicImage {
        match self {
            View::Original => image.clone(),
            View::Flip => image.fliph(),
            View::Crop => {
                let (w, h) = (image.width(), image.height());
                let (cw, ch) = ((w * 4 / 5).max(1), (h * 4 / 5).max(1));
                image.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub batch_size: usize,
    /// Decode threads.
    pub workers: usize,
    pub use_cache: bool,
    /// Where the cache lives (default: `$HEADSTART_HOME/embeddings`).
    pub cache_dir: Option<PathBuf>,
    pub augment: Augment,
    /// Any skipped file is an error.
    pub strict: bool,
    pub max_pixels: u64,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_size: 32,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            use_cache: true,
            cache_dir: None,
            augment: Augment::default(),
            strict: false,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// How inputs became the backbone's tensors; a head is only valid for inputs made the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    Image(ImagePreprocess),
    Text(TextInput),
}

/// Embeddings of a dataset, one row per embedded view, in dataset order.
#[derive(Debug, Clone)]
pub struct EmbeddedSet {
    pub dim: usize,
    /// Row-major, rows × dim.
    pub embeddings: Vec<f32>,
    /// Class index per row; -1 for unlabelled.
    pub labels: Vec<i64>,
    pub class_names: Vec<String>,
    /// Paths relative to the dataset folder (images), or `file:line` / relative paths (texts).
    pub paths: Vec<String>,
    /// Whether a row is an augmented view.
    pub augmented: Vec<bool>,
    /// The zoo name or path of the backbone.
    pub backbone_source: String,
    pub backbone: BackboneIdentity,
    pub input: InputSpec,
}

impl EmbeddedSet {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Writes the `.npz` described in the README, atomically.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        let backbone = serde_json::to_string(&self.backbone).unwrap_or_default();
        // Image sets keep the `preprocess` entry older headstarts read; text sets have `text_input` instead.
        let (input_key, input) = match &self.input {
            InputSpec::Image(p) => ("preprocess", serde_json::to_string(p).unwrap_or_default()),
            InputSpec::Text(t) => ("text_input", serde_json::to_string(t).unwrap_or_default()),
        };
        write_npz(
            path,
            &[
                (
                    "embeddings",
                    NpyArray::F32 {
                        shape: vec![self.rows(), self.dim],
                        data: &self.embeddings,
                    },
                ),
                (
                    "labels",
                    NpyArray::I64 {
                        shape: vec![self.rows()],
                        data: &self.labels,
                    },
                ),
                ("class_names", NpyArray::Strings(&self.class_names)),
                ("paths", NpyArray::Strings(&self.paths)),
                ("augmented", NpyArray::Bool(&self.augmented)),
                ("backbone", NpyArray::Str(&self.backbone.name)),
                ("backbone_source", NpyArray::Str(&self.backbone_source)),
                ("backbone_sha256", NpyArray::Str(&self.backbone.sha256)),
                ("backbone_config", NpyArray::Str(&backbone)),
                (input_key, NpyArray::Str(&input)),
            ],
        )
    }
}

impl EmbeddedSet {
    /// Reads an `.npz` written by [`EmbeddedSet::write_npz`], checking that its arrays fit together.
    pub fn read_npz(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Self::read_npz_from(std::io::BufReader::new(file), path)
    }

    /// [`EmbeddedSet::read_npz`] from memory or any seekable stream; `origin` names it in errors.
    pub fn read_npz_from(
        reader: impl std::io::Read + std::io::Seek,
        origin: &Path,
    ) -> Result<Self> {
        let bad = |message: String| Error::input(origin, message);
        let arrays = read_npz_from(reader, origin)?;
        let get = |name: &str| {
            arrays
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| bad(format!("no '{name}' array: not written by headstart embed")))
        };
        let text = |name: &str| -> Result<String> {
            match get(name)? {
                NpyData::Strings { data, .. } => Ok(data.first().cloned().unwrap_or_default()),
                _ => Err(bad(format!("'{name}' is not a string"))),
            }
        };
        let strings = |name: &str| -> Result<Vec<String>> {
            match get(name)? {
                NpyData::Strings { data, .. } => Ok(data.clone()),
                _ => Err(bad(format!("'{name}' is not a list of strings"))),
            }
        };
        let NpyData::F32 {
            shape,
            data: embeddings,
        } = get("embeddings")?
        else {
            return Err(bad("'embeddings' is not float32".into()));
        };
        let [rows, dim] = shape.as_slice() else {
            return Err(bad("'embeddings' is not a matrix".into()));
        };
        let NpyData::I64 { data: labels, .. } = get("labels")? else {
            return Err(bad("'labels' is not int64".into()));
        };
        let NpyData::Bool(augmented) = get("augmented")? else {
            return Err(bad("'augmented' is not bool".into()));
        };
        let set = EmbeddedSet {
            dim: *dim,
            embeddings: embeddings.clone(),
            labels: labels.clone(),
            class_names: strings("class_names")?,
            paths: strings("paths")?,
            augmented: augmented.clone(),
            backbone_source: text("backbone_source")?,
            backbone: serde_json::from_str(&text("backbone_config")?)
                .map_err(|e| bad(format!("bad backbone_config: {e}")))?,
            input: if get("text_input").is_ok() {
                InputSpec::Text(
                    serde_json::from_str(&text("text_input")?)
                        .map_err(|e| bad(format!("bad text_input: {e}")))?,
                )
            } else {
                InputSpec::Image(
                    serde_json::from_str(&text("preprocess")?)
                        .map_err(|e| bad(format!("bad preprocess: {e}")))?,
                )
            },
        };
        if [set.labels.len(), set.paths.len(), set.augmented.len()]
            .iter()
            .any(|&n| n != *rows)
        {
            return Err(bad(format!(
                "mismatched lengths: {rows} embeddings, {} labels, {} paths, {} augmented flags",
                set.labels.len(),
                set.paths.len(),
                set.augmented.len()
            )));
        }
        if let Some(bad_label) = set
            .labels
            .iter()
            .find(|&&l| l < -1 || l >= set.class_names.len() as i64)
        {
            return Err(bad(format!("label {bad_label} is not a class index")));
        }
        if let Some(row) = set
            .embeddings
            .chunks(set.dim.max(1))
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(bad(format!("embedding row {row} contains NaN or Inf")));
        }
        Ok(set)
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> EmbeddedSet {
        EmbeddedSet {
            embeddings: indices
                .iter()
                .flat_map(|&i| {
                    self.embeddings[i * self.dim..(i + 1) * self.dim]
                        .iter()
                        .copied()
                })
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            paths: indices.iter().map(|&i| self.paths[i].clone()).collect(),
            augmented: indices.iter().map(|&i| self.augmented[i]).collect(),
            ..self.clone_metadata()
        }
    }

    fn clone_metadata(&self) -> EmbeddedSet {
        EmbeddedSet {
            dim: self.dim,
            embeddings: Vec::new(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            paths: Vec::new(),
            augmented: Vec::new(),
            backbone_source: self.backbone_source.clone(),
            backbone: self.backbone.clone(),
            input: self.input.clone(),
        }
    }

    /// The embeddings as an [N, D] matrix view.
    pub fn matrix(&self) -> ndarray::ArrayView2<'_, f32> {
        ndarray::ArrayView2::from_shape((self.rows(), self.dim), &self.embeddings)
            .expect("every constructor keeps rows x dim values")
    }
}

/// What happened, for the summary line and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedSummary {
    /// Candidate files (or text rows).
    pub files: usize,
    /// Files (texts) embedded.
    pub embedded: usize,
    /// Rows, augmented views included.
    pub rows: usize,
    pub from_cache: usize,
    pub computed: usize,
    pub skipped: Vec<SkipReport>,
    pub empty_classes: Vec<String>,
    /// Texts longer than the backbone's maximum length, embedded from their first tokens (`None` for images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<usize>,
    pub seconds: f64,
    /// Images (or texts) per second.
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkipReport {
    pub path: String,
    pub reason: String,
}

impl From<&Skip> for SkipReport {
    fn from(skip: &Skip) -> Self {
        SkipReport {
            path: skip.path.clone(),
            reason: skip.reason.clone(),
        }
    }
}

/// The cache for this backbone and input preparation, unless the options turn it off.
pub(crate) fn open_cache(
    options: &EmbedOptions,
    identity: &BackboneIdentity,
    input: &InputSpec,
) -> Result<Option<EmbeddingCache>> {
    if !options.use_cache {
        return Ok(None);
    }
    let root = match &options.cache_dir {
        Some(root) => root.clone(),
        None => EmbeddingCache::default_root()?,
    };
    Ok(Some(EmbeddingCache::open(&root, identity, input)))
}

enum ViewResult {
    Cached(Vec<f32>),
    Tensor(Vec<f32>, Option<Key>),
}

enum Decoded {
    Ready { item: usize, views: Vec<ViewResult> },
    Skipped { item: usize, reason: String },
}

/// Embeds every image of `dataset`. `progress(done, total)` is called as files complete.
pub fn embed_dataset(
    dataset: &Dataset,
    backbone: &mut ImageBackbone,
    options: &EmbedOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedSet, EmbedSummary)> {
    let started = Instant::now();
    let preprocess = backbone.preprocess().clone();
    let cache = open_cache(
        options,
        backbone.identity(),
        &InputSpec::Image(preprocess.clone()),
    )?;
    let mut views = vec![View::Original];
    if options.augment.flip {
        views.push(View::Flip);
    }
    if options.augment.crop {
        views.push(View::Crop);
    }
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
                    cache.put(&key, &vector)?;
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
                            format!("{reason} (--strict)"),
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
        labels: Vec::new(),
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
            let vector = vector.ok_or_else(|| Error::Ort("an embedding went missing".into()))?;
            set.dim = vector.len();
            set.embeddings.extend(vector);
            set.labels.push(item.label.map_or(-1, |l| l as i64));
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
        seconds,
        truncated: None,
        per_second: if seconds > 0.0 {
            embedded as f64 / seconds
        } else {
            0.0
        },
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
            let content = cache::content_hash(&bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augment_flags() {
        assert_eq!(
            "flip,crop".parse::<Augment>().unwrap(),
            Augment {
                flip: true,
                crop: true
            }
        );
        assert_eq!(
            "crop".parse::<Augment>().unwrap(),
            Augment {
                flip: false,
                crop: true
            }
        );
        assert!("rotate".parse::<Augment>().is_err());
    }

    #[test]
    fn views_change_the_image() {
        let mut img = image::RgbImage::new(10, 5);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        let img = DynamicImage::ImageRgb8(img);
        assert_eq!(
            View::Flip.apply(&img).to_rgb8().get_pixel(9, 0).0,
            [255, 0, 0]
        );
        let crop = View::Crop.apply(&img);
        assert_eq!((crop.width(), crop.height()), (8, 4));
    }
}
