//! int8 calibration: the float32 backbone runs on a sample of the user's own images with every activation
//! quantisation puts a QDQ pair on exposed as an output, and each one's range is recorded (and, for the
//! inputs of convolutions, the mean of each channel, for bias correction). The ranges are
//! kept in the backbone's identity (so in the `.npz` and the bundle): predict and export rebuild the same
//! int8 model from the float32 file. They are cached by the sampled files' content, so a second run on the
//! same data does not calibrate again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BackboneOptions, ImageBackbone, ModelFile};
use crate::atomic::write_atomic;
use crate::data::decode::{DecodeOptions, decode_image};
use crate::error::{Error, Result};
use crate::hash::hex;
use crate::onnx::int8::{self, TensorRange};
use crate::runtime::Precision;

/// Images per calibration batch: every exposed activation of the batch is in memory at once.
const BATCH: usize = 8;
/// The tail `percentile` calibration cuts off each side of a batch's values.
const PERCENTILE_TAIL: f64 = 1e-4;

/// How a tensor's range is read from what it held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum CalibrationMethod {
    /// The smallest and largest value seen.
    #[serde(rename = "minmax")]
    #[cfg_attr(feature = "cli", value(name = "minmax"))]
    MinMax,
    /// The 0.01th and 99.99th percentiles of each batch, averaged over batches: a few outliers do not
    /// stretch the grid.
    Percentile,
    /// The min-max range shrunk to where the quantisation error (rounding inside, clipping outside) over the
    /// calibration values is least: a second pass over the images. The default: on ELPV its features are the
    /// nearest to fp32 (cosine 0.9988 mean, against 0.9983 for min-max).
    #[default]
    Mse,
}

/// How calibration samples the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CalibrationSettings {
    /// How many inputs to calibrate on, spread evenly over the data set.
    pub inputs: usize,
    pub method: CalibrationMethod,
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        CalibrationSettings {
            inputs: 300,
            method: CalibrationMethod::Mse,
        }
    }
}

impl CalibrationSettings {
    pub fn inputs(mut self, inputs: usize) -> Self {
        self.inputs = inputs;
        self
    }

    pub fn method(mut self, method: CalibrationMethod) -> Self {
        self.method = method;
        self
    }
}

/// The activation ranges an int8 model is built with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub method: CalibrationMethod,
    /// How many inputs the ranges were measured on.
    pub inputs: usize,
    pub ranges: Vec<TensorRange>,
}

/// Running range of one tensor, and its channel sums when it is a convolution's input.
#[derive(Clone, Default)]
struct RangeStats {
    low: f64,
    high: f64,
    batches: usize,
    channel_sums: Vec<f64>,
    /// Values summed into each channel.
    per_channel: f64,
    /// Counts of values over [low, high] in equal bins (second pass of `Mse`).
    histogram: Vec<u64>,
}

/// Bins of the `Mse` histogram, and the range scales it tries.
const HISTOGRAM_BINS: usize = 2048;
const MSE_STEPS: usize = 200;

impl RangeStats {
    /// Adds an NCHW batch of `images` to the channel sums.
    fn add_channels(&mut self, values: &[f32], images: usize) {
        let per_image = values.len() / images.max(1);
        if self.channel_sums.is_empty() {
            return;
        }
        let channels = self.channel_sums.len();
        let plane = per_image / channels;
        if plane == 0 || plane * channels != per_image {
            return;
        }
        for image in values.chunks(per_image) {
            for (sum, channel) in self.channel_sums.iter_mut().zip(image.chunks(plane)) {
                *sum += channel.iter().map(|v| f64::from(*v)).sum::<f64>();
            }
        }
        self.per_channel += (images * plane) as f64;
    }

    /// Counts `values` into the histogram over the pass-one range (widened to hold 0, as the grid is).
    fn add_histogram(&mut self, values: &[f32]) {
        let (low, high) = (self.low.min(0.0), self.high.max(0.0));
        if high <= low {
            return;
        }
        if self.histogram.is_empty() {
            self.histogram = vec![0; HISTOGRAM_BINS];
        }
        let scale = HISTOGRAM_BINS as f64 / (high - low);
        for value in values.iter().filter(|v| v.is_finite()) {
            let bin = ((f64::from(*value) - low) * scale) as usize;
            self.histogram[bin.min(HISTOGRAM_BINS - 1)] += 1;
        }
    }

    /// The range [s·low, s·high] (s in (0, 1]) with the least squared error over the histogram: values inside
    /// are rounded to a 255-step grid (error step²/12 each), values outside are clipped to its ends.
    fn least_error_range(&self) -> (f64, f64) {
        let (low, high) = (self.low.min(0.0), self.high.max(0.0));
        if self.histogram.is_empty() || high <= low {
            return (self.low, self.high);
        }
        let width = (high - low) / HISTOGRAM_BINS as f64;
        let centres: Vec<f64> = (0..HISTOGRAM_BINS)
            .map(|b| low + (b as f64 + 0.5) * width)
            .collect();
        let error = |shrink: f64| {
            let (a, b) = (low * shrink, high * shrink);
            let step = (b - a) / 255.0;
            let rounding = step * step / 12.0;
            centres
                .iter()
                .zip(&self.histogram)
                .filter(|(_, count)| **count > 0)
                .map(|(x, count)| {
                    let outside = if *x < a {
                        a - x
                    } else if *x > b {
                        x - b
                    } else {
                        0.0
                    };
                    *count as f64 * (outside * outside + rounding)
                })
                .sum::<f64>()
        };
        let best = (1..=MSE_STEPS)
            .map(|i| i as f64 / MSE_STEPS as f64)
            .min_by(|a, b| error(*a).total_cmp(&error(*b)))
            .unwrap_or(1.0);
        (self.low * best, self.high * best)
    }

    fn means(&self) -> Vec<f32> {
        if self.per_channel == 0.0 {
            return Vec::new();
        }
        self.channel_sums
            .iter()
            .map(|s| (s / self.per_channel) as f32)
            .collect()
    }

    fn add(&mut self, method: CalibrationMethod, values: &[f32]) {
        let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return;
        }
        let (low, high) = match method {
            CalibrationMethod::MinMax | CalibrationMethod::Mse => finite
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                }),
            CalibrationMethod::Percentile => {
                let last = finite.len() - 1;
                let cut = ((last as f64) * PERCENTILE_TAIL).round() as usize;
                let low = *finite.select_nth_unstable_by(cut, f32::total_cmp).1;
                let high = *finite.select_nth_unstable_by(last - cut, f32::total_cmp).1;
                (low, high)
            }
        };
        let (low, high) = (f64::from(low), f64::from(high));
        match (method, self.batches) {
            (_, 0) => (self.low, self.high) = (low, high),
            (CalibrationMethod::MinMax | CalibrationMethod::Mse, _) => {
                self.low = self.low.min(low);
                self.high = self.high.max(high);
            }
            (CalibrationMethod::Percentile, n) => {
                let n = n as f64;
                self.low = (self.low * n + low) / (n + 1.0);
                self.high = (self.high * n + high) / (n + 1.0);
            }
        }
        self.batches += 1;
    }
}

/// `count` of `paths`, spread evenly (every class of a sorted class-folder listing is sampled).
fn sample(paths: &[PathBuf], count: usize) -> Vec<&Path> {
    let count = count.min(paths.len());
    (0..count)
        .map(|i| paths[i * paths.len() / count].as_path())
        .collect()
}

/// Calibrates the model in `file` (opened as `options` say, in float32) on `settings.inputs` of `paths`.
/// Files that cannot be decoded are left out; none decodable is an error.
pub(crate) fn calibrate_images(
    file: ModelFile,
    options: &BackboneOptions,
    paths: &[PathBuf],
    settings: CalibrationSettings,
    decode: &DecodeOptions,
) -> Result<Calibration> {
    if settings.inputs == 0 {
        return Err(Error::parameter(
            "calibration",
            "int8 needs at least one calibration image",
        ));
    }
    let chosen = sample(paths, settings.inputs);
    let targets = int8::calibration_targets(&file.path, &file.bytes)?;
    let tensors: Vec<String> = targets.iter().map(|t| t.tensor.clone()).collect();
    let key = cache_key(&file, options, settings, &tensors, &chosen)?;
    let cached = cache_path(&key);
    if let Some(calibration) = cached
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Calibration>(&bytes).ok())
    {
        return Ok(calibration);
    }

    let mut float = options.clone();
    float.runtime.precision = Precision::Fp32;
    float.calibration = None;
    let mut backbone = ImageBackbone::load_tapped(file, &float, &tensors)?;
    let mut stats = vec![RangeStats::default(); tensors.len()];
    for (stat, target) in stats.iter_mut().zip(&targets) {
        stat.channel_sums = vec![0.0; target.channels.unwrap_or(0)];
    }
    let used = each_batch(
        &mut backbone,
        &chosen,
        decode,
        &tensors,
        |index, values, count| {
            stats[index].add(settings.method, values);
            stats[index].add_channels(values, count);
        },
    )?;
    if used == 0 {
        return Err(Error::Config(format!(
            "int8 calibration: none of the {} sampled images could be decoded",
            chosen.len()
        )));
    }
    if settings.method == CalibrationMethod::Mse {
        each_batch(
            &mut backbone,
            &chosen,
            decode,
            &tensors,
            |index, values, _| stats[index].add_histogram(values),
        )?;
        for stat in stats.iter_mut() {
            (stat.low, stat.high) = stat.least_error_range();
        }
    }
    let calibration = Calibration {
        method: settings.method,
        inputs: used,
        ranges: tensors
            .into_iter()
            .zip(stats)
            .map(|(tensor, s)| TensorRange {
                tensor,
                low: s.low as f32,
                high: s.high as f32,
                means: s.means(),
            })
            .collect(),
    };
    // The cache saves a rerun; a cache that cannot be written only costs one.
    if let (Some(path), Ok(json)) = (cached, serde_json::to_vec(&calibration)) {
        let _ = write_atomic(&path, |out| {
            out.write_all(&json).map_err(|e| Error::io(&path, e))
        });
    }
    Ok(calibration)
}

/// Runs the calibration images through `backbone` a batch at a time (read and decoded per batch, so memory
/// stays flat), handing each tap's values to `visit` with the batch's image count. Returns how many images
/// were decoded; files that cannot be are embedding's to report, calibration does without them.
fn each_batch(
    backbone: &mut ImageBackbone,
    paths: &[&Path],
    decode: &DecodeOptions,
    tensors: &[String],
    mut visit: impl FnMut(usize, &[f32], usize),
) -> Result<usize> {
    let preprocess = backbone.preprocess().clone();
    let len = preprocess.tensor_len();
    let mut used = 0;
    for batch_paths in paths.chunks(BATCH) {
        let mut batch = Vec::with_capacity(BATCH * len);
        for path in batch_paths {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            if let Ok(image) = decode_image(&bytes, decode, Some(&preprocess)) {
                let start = batch.len();
                batch.resize(start + len, 0.0);
                preprocess.apply(&image, &mut batch[start..]);
            }
        }
        let count = batch.len() / len;
        if count == 0 {
            continue;
        }
        used += count;
        backbone.run_taps(&batch, count, tensors, |index, values| {
            visit(index, values, count)
        })?;
    }
    Ok(used)
}

/// What the ranges depend on: the model and the feature it is read at, the preprocessing asked for, the
/// method, the tensors measured, and the sampled files' content.
fn cache_key(
    file: &ModelFile,
    options: &BackboneOptions,
    settings: CalibrationSettings,
    tensors: &[String],
    paths: &[&Path],
) -> Result<String> {
    let mut hasher = Sha256::new();
    let settings = serde_json::json!({
        "model": file.sha256,
        "output": options.output,
        "layer": options.layer,
        "joined": options.joined,
        "preprocess_file": options.preprocess_file,
        "preprocess": format!("{:?}", options.preprocess),
        "method": settings.method,
        "tensors": tensors,
        "with": "channel means",
    });
    hasher.update(settings.to_string().as_bytes());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        hasher.update(Sha256::digest(&bytes));
    }
    Ok(hex(&hasher.finalize()))
}

fn cache_path(key: &str) -> Option<PathBuf> {
    crate::home_dir::part("calibration")
        .ok()
        .map(|dir| dir.join(format!("{}.json", &key[..32])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_spans_everything_and_percentile_averages_clipped_batches() {
        let mut minmax = RangeStats::default();
        minmax.add(CalibrationMethod::MinMax, &[0.0, 1.0, f32::NAN]);
        minmax.add(CalibrationMethod::MinMax, &[-2.0, 0.5]);
        assert_eq!((minmax.low, minmax.high), (-2.0, 1.0));

        let mut values: Vec<f32> = (0..=20_000).map(|i| i as f32).collect();
        values.push(1e9);
        let mut percentile = RangeStats::default();
        percentile.add(CalibrationMethod::Percentile, &values);
        assert!(percentile.low <= 2.0 && (19_990.0..20_001.0).contains(&percentile.high));
        percentile.add(CalibrationMethod::Percentile, &[0.0, 10.0]);
        assert!(percentile.high < 10_100.0, "{}", percentile.high);
    }

    #[test]
    fn the_sample_spreads_over_the_listing() {
        let paths: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}"))).collect();
        let picked: Vec<String> = sample(&paths, 4)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(picked, ["0", "2", "5", "7"]);
        assert_eq!(sample(&paths, 50).len(), 10);
    }
}
