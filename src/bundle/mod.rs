//! The saved model: one `.hs` file holding the head, its scaler and temperature, the class names, the
//! backbone's identity and preprocessing, and how it was trained. It is an `.npz` (numpy can open it) whose
//! `bundle` entry is versioned JSON; saving is atomic.

use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2};

use crate::backbone::Features;
use crate::embeddings::EmbeddedSet;
use crate::embeddings::npz::{NpyArray, NpyData, read_npz_from, write_npz};
use crate::error::{Error, Result};
use crate::head::{ClassScores, Head, Novelty, StoredArray, StoredArrays};

/// The newest bundle format this headstart reads. Format 2 added the gaussian-nb and linear-svm heads and
/// open-set rejection; a bundle without them is still written as format 1, so older headstarts keep reading it.
mod info;

pub use info::{BundleInfo, OpenSetInfo, TrainingInfo};

pub const FORMAT_VERSION: u32 = 2;

/// The format a bundle with this head (and open-set rejection, or not) is written in: the oldest that knows
/// them. A multi-label bundle is format 2 (stored as the logistic kind with `multi_label` set).
fn format_version_for(head: &Head, open_set: bool) -> u32 {
    match head {
        Head::Logistic(_) | Head::Centroid(_) | Head::Knn(_) if !open_set => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub head: Head,
    pub temperature: f32,
    /// Open-set rejection, when trained with it; its settings are also in `info.training.open_set`.
    pub novelty: Option<Novelty>,
    /// The training embeddings, labels and paths, when kept (so examples can be added without embedding the old
    /// data again).
    pub training_embeddings: Option<EmbeddedSet>,
    pub info: BundleInfo,
}

impl Bundle {
    /// A bundle of a trained head, written in the oldest format that knows its head and open-set rejection
    /// (so older headstarts keep reading what they can).
    pub fn new(
        head: Head,
        temperature: f32,
        class_names: Vec<String>,
        features: Features,
        training: TrainingInfo,
        novelty: Option<Novelty>,
    ) -> Bundle {
        Bundle {
            info: BundleInfo {
                format_version: format_version_for(&head, novelty.is_some()),
                class_names,
                features,
                training,
            },
            head,
            temperature,
            novelty,
            training_embeddings: None,
        }
    }

    /// This bundle keeping `set`, its training embeddings, so that examples can be added later without
    /// embedding the old data again.
    pub fn keeping(mut self, set: EmbeddedSet) -> Bundle {
        self.info.training.keeps_embeddings = true;
        self.training_embeddings = Some(set);
        self
    }

    /// Novelty scores, \[N\], for embeddings made by the bundle's backbone; `None` without open-set rejection.
    pub fn novelty_scores(&self, embeddings: ArrayView2<f32>) -> Result<Option<Array1<f32>>> {
        let Some(novelty) = &self.novelty else {
            return Ok(None);
        };
        if embeddings.ncols() != novelty.dim() {
            return Err(Error::Incompatible(format!(
                "the backbone makes {}-value embeddings but the bundle's novelty reference has {}: a damaged bundle?",
                embeddings.ncols(),
                novelty.dim()
            )));
        }
        Ok(Some(novelty.scores(embeddings)))
    }

    /// Class probabilities, [N, K], for embeddings made by the bundle's backbone.
    pub fn predict_embeddings(&self, embeddings: ArrayView2<f32>) -> Result<Array2<f32>> {
        let expected = self.head.dim();
        if embeddings.ncols() != expected {
            return Err(Error::Incompatible(format!(
                "the backbone makes {}-value embeddings but the bundle's head expects {expected}: a damaged bundle?",
                embeddings.ncols()
            )));
        }
        Ok(self.head.probabilities(embeddings, self.temperature))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let info = serde_json::to_string(&self.info)
            .map_err(|e| Error::Config(format!("bundle metadata: {e}")))?;
        let temperature = [self.temperature];
        let mut arrays: Vec<(&str, NpyArray)> = vec![
            ("bundle", NpyArray::Str(&info)),
            (
                "temperature",
                NpyArray::F32 {
                    shape: vec![1],
                    data: &temperature,
                },
            ),
        ];
        let head_arrays = self.head.model().arrays();
        // Indices are kept as int64, numpy's integers.
        let as_int64: Vec<Vec<i64>> = head_arrays
            .iter()
            .map(|(_, array)| match array {
                StoredArray::Indices(values) => values.iter().map(|&v| v as i64).collect(),
                _ => Vec::new(),
            })
            .collect();
        for ((name, array), integers) in head_arrays.iter().zip(&as_int64) {
            arrays.push((
                name,
                match array {
                    StoredArray::Vector(values) => vector(values),
                    StoredArray::Matrix(values) => matrix(values),
                    StoredArray::Indices(_) => int64s(integers),
                },
            ));
        }
        if let Some(novelty) = &self.novelty {
            arrays.push(("novelty_reference", matrix(&novelty.reference)));
        }
        let kept_labels: Vec<i64>;
        if let Some(kept) = &self.training_embeddings {
            kept_labels = kept.labels.iter().flatten().map(|&l| l as i64).collect();
            arrays.push((
                "kept_embeddings",
                NpyArray::F32 {
                    shape: vec![kept.rows(), kept.dim],
                    data: &kept.embeddings,
                },
            ));
            arrays.push(("kept_labels", int64s(&kept_labels)));
            arrays.push(("kept_paths", NpyArray::Strings(&kept.paths)));
            arrays.push(("kept_augmented", NpyArray::Bool(&kept.augmented)));
        }
        write_npz(path, &arrays)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Self::load_from(std::io::BufReader::new(file), path)
    }

    /// [`Bundle::load`] from memory or any seekable stream (a bundle embedded in a program); `origin` names it
    /// in errors.
    pub fn load_from(reader: impl std::io::Read + std::io::Seek, origin: &Path) -> Result<Self> {
        let bad = |message: String| Error::input(origin, message);
        let arrays = read_npz_from(reader, origin).map_err(|e| match e {
            Error::Input { message, .. } => bad(format!("not a headstart bundle ({message})")),
            other => other,
        })?;
        let get = |name: &str| arrays.iter().find(|(n, _)| n == name).map(|(_, a)| a);
        let Some(NpyData::Strings { data, .. }) = get("bundle") else {
            return Err(bad("not a headstart bundle (no 'bundle' entry)".into()));
        };
        let json = data.first().map(String::as_str).unwrap_or("");
        let version = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("format_version").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| bad("not a headstart bundle (unreadable metadata)".into()))?;
        if version > FORMAT_VERSION as u64 {
            return Err(Error::BundleVersion {
                path: origin.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let info: BundleInfo =
            serde_json::from_str(json).map_err(|e| bad(format!("damaged bundle metadata: {e}")))?;
        if info.class_names.is_empty() {
            return Err(bad("damaged bundle: it names no classes".into()));
        }
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = info.class_names.iter().find(|n| !names.insert(n.as_str())) {
            return Err(bad(format!(
                "damaged bundle: class '{twice}' is named twice"
            )));
        }
        // Every number a head computes with is finite; a class without examples has a log prior of −∞.
        for (name, array) in &arrays {
            let NpyData::F32 { data, .. } = array else {
                continue;
            };
            let fine = |v: &f32| match name.as_str() {
                "nb_log_priors" => !v.is_nan() && *v != f32::INFINITY,
                "scaler_scale" => v.is_finite() && *v > 0.0,
                _ => v.is_finite(),
            };
            if !data.iter().all(fine) {
                return Err(bad(format!(
                    "damaged bundle: '{name}' holds NaN, infinite or (as a scale) non-positive values"
                )));
            }
        }
        let stored = BundleArrays(&arrays);
        let damaged = |message: String| bad(format!("damaged bundle: {message}"));
        let vector = |name: &str| stored.vector(name).map_err(damaged);
        let table = |name: &str| stored.matrix(name).map_err(damaged);
        let integers = |name: &str| stored.indices(name).map_err(damaged);
        let k = info.class_names.len();
        let head =
            Head::read(info.training.head, &stored, k, info.training.knn_k).map_err(damaged)?;
        if head.classes() != k {
            return Err(damaged("the head's arrays do not fit together".into()));
        }
        let novelty = match &info.training.open_set {
            Some(open_set) => {
                let reference = table("novelty_reference")?;
                if reference.ncols() != head.dim()
                    || reference.nrows() == 0
                    || open_set.k == 0
                    || !open_set.threshold.is_finite()
                {
                    return Err(bad(
                        "damaged bundle: the open-set reference does not fit the head".into(),
                    ));
                }
                Some(Novelty {
                    reference,
                    k: open_set.k,
                    threshold: open_set.threshold,
                    false_rejection: open_set.false_rejection,
                })
            }
            None => None,
        };
        let kept = if info.training.keeps_embeddings {
            let embeddings = table("kept_embeddings")?;
            let labels = integers("kept_labels")?;
            let paths = match get("kept_paths") {
                Some(NpyData::Strings { data, .. }) => data.clone(),
                _ => Vec::new(),
            };
            let augmented = match get("kept_augmented") {
                Some(NpyData::Bool(data)) => data.clone(),
                _ => Vec::new(),
            };
            let rows = embeddings.nrows();
            if embeddings.ncols() != head.dim()
                || [labels.len(), paths.len(), augmented.len()] != [rows; 3]
                || labels.iter().any(|&l| l >= k)
            {
                return Err(bad(
                    "damaged bundle: its kept training embeddings do not fit together".into(),
                ));
            }
            Some(EmbeddedSet {
                dim: embeddings.ncols(),
                embeddings: embeddings.into_raw_vec_and_offset().0,
                labels: Some(labels),
                class_names: info.class_names.clone(),
                paths,
                augmented,
                features: info.features.clone(),
            })
        } else {
            None
        };
        let temperature = vector("temperature")?
            .first()
            .copied()
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(1.0);
        Ok(Bundle {
            head,
            temperature,
            novelty,
            training_embeddings: kept,
            info,
        })
    }
}

/// A bundle file's arrays, as the heads read theirs.
struct BundleArrays<'a>(&'a [(String, NpyData)]);

impl BundleArrays<'_> {
    fn get(&self, name: &str) -> Option<&NpyData> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

impl StoredArrays for BundleArrays<'_> {
    fn vector(&self, name: &str) -> std::result::Result<Array1<f32>, String> {
        match self.get(name) {
            Some(NpyData::F32 { shape, data }) if shape.len() == 1 => {
                Ok(Array1::from(data.clone()))
            }
            _ => Err(format!("'{name}' is missing or not a float vector")),
        }
    }

    fn matrix(&self, name: &str) -> std::result::Result<Array2<f32>, String> {
        match self.get(name) {
            Some(NpyData::F32 { shape, data }) if shape.len() == 2 => {
                Array2::from_shape_vec((shape[0], shape[1]), data.clone())
                    .map_err(|_| format!("'{name}' has the wrong size"))
            }
            _ => Err(format!("'{name}' is missing or not a float matrix")),
        }
    }

    fn indices(&self, name: &str) -> std::result::Result<Vec<usize>, String> {
        match self.get(name) {
            Some(NpyData::I64 { shape, data }) if shape.len() == 1 => data
                .iter()
                .map(|&v| usize::try_from(v))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| format!("'{name}' holds a negative number")),
            _ => Err(format!("'{name}' is missing or not an integer vector")),
        }
    }
}

fn vector(values: &Array1<f32>) -> NpyArray<'_> {
    NpyArray::F32 {
        shape: vec![values.len()],
        data: values.as_slice().unwrap_or(&[]),
    }
}

fn int64s(values: &[i64]) -> NpyArray<'_> {
    NpyArray::I64 {
        shape: vec![values.len()],
        data: values,
    }
}

fn matrix(m: &Array2<f32>) -> NpyArray<'_> {
    NpyArray::F32 {
        shape: vec![m.nrows(), m.ncols()],
        data: m.as_slice().unwrap_or(&[]),
    }
}

/// Now, as RFC 3339 UTC (days-to-civil from Howard Hinnant's algorithm; no time-zone crate needed).
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{BackboneIdentity, BackboneRef, InputSpec};
    use crate::head::{Centroid, Knn, LinearModel, NaiveBayes, Scaler};
    use crate::head::{ClassWeight, HeadKind};
    use ndarray::array;

    fn info(head: HeadKind, classes: usize) -> BundleInfo {
        BundleInfo {
            format_version: FORMAT_VERSION,
            class_names: (0..classes).map(|c| format!("class{c}")).collect(),
            features: Features {
                source: BackboneRef::Zoo("efficientnet-lite0".into()),
                backbone: BackboneIdentity {
                    name: "efficientnet-lite0".into(),
                    sha256: "ab".repeat(32),
                    output: "features".into(),
                    layer: None,
                    joined: Vec::new(),
                    pooling: Default::default(),
                    normalize: false,
                    precision: Default::default(),
                    calibration: None,
                },
                input: InputSpec::Image(Default::default()),
            },
            training: TrainingInfo {
                head,
                chosen_c: Some(0.1),
                cv_accuracy: 0.9,
                folds: 5,
                class_weight: ClassWeight::None,
                solver: None,
                seed: 42,
                knn_k: Some(3),
                open_set: None,
                keeps_embeddings: false,
                samples: 10,
                dataset_fingerprint: "0123456789abcdef".into(),
                headstart_version: env!("CARGO_PKG_VERSION").into(),
                date: utc_now(),
            },
        }
    }

    #[test]
    fn a_multi_label_head_is_stored_as_format_2_wrote_it() {
        let mut training = info(HeadKind::MultiLabel, 2).training;
        let stored = serde_json::to_value(&training).unwrap();
        assert_eq!(stored["head"], "logistic");
        assert_eq!(stored["multi_label"], true);
        let read: TrainingInfo = serde_json::from_value(stored).unwrap();
        assert_eq!(read.head, HeadKind::MultiLabel);
        training.head = HeadKind::Logistic;
        let stored = serde_json::to_value(&training).unwrap();
        assert!(stored.get("multi_label").is_none(), "{stored}");
    }

    #[test]
    fn round_trips_every_head() {
        let dir = tempfile::tempdir().unwrap();
        let linear = || LinearModel {
            scaler: Scaler {
                mean: array![0.5, -1.0],
                scale: array![2.0, 1.0],
            },
            weights: array![[1.0, -1.0, 0.5], [0.0, 2.0, 1.0]],
            intercept: array![0.1, 0.2, 0.3],
        };
        let heads = [
            Head::Logistic(linear()),
            Head::LinearSvm(linear()),
            Head::Centroid(Centroid {
                centroids: array![[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
            }),
            Head::Knn(Knn {
                embeddings: array![[1.0, 0.0], [0.0, 1.0]],
                labels: vec![2, 0],
                k: 3,
                classes: 3,
            }),
            Head::GaussianNb(NaiveBayes {
                means: array![[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]],
                variances: array![[1.0, 2.0], [0.5, 0.1], [1.0, 1.0]],
                log_priors: array![-1.0, -1.5, -1e4],
                counts: vec![4, 2, 0],
            }),
        ];
        for head in heads {
            let info = info(head.kind(), 3);
            let mut bundle = Bundle::new(
                head,
                1.7,
                info.class_names,
                info.features,
                info.training,
                None,
            );
            let path = dir.path().join("m.hs");
            bundle.save(&path).unwrap();
            assert_eq!(Bundle::load(&path).unwrap(), bundle);
            let novelty = Novelty {
                reference: array![[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
                k: 2,
                threshold: 0.3,
                false_rejection: 0.05,
            };
            bundle.info.training.open_set = Some(crate::bundle::OpenSetInfo::of(&novelty, 0.05));
            bundle.info.format_version = format_version_for(&bundle.head, true);
            bundle.novelty = Some(novelty);
            bundle.save(&path).unwrap();
            assert_eq!(Bundle::load(&path).unwrap(), bundle);
            bundle.info.training.keeps_embeddings = true;
            bundle.training_embeddings = Some(EmbeddedSet {
                dim: 2,
                embeddings: vec![0.5, 1.0, -1.0, 2.0],
                labels: Some(vec![2, 0]),
                class_names: bundle.info.class_names.clone(),
                paths: vec!["c/a.png".into(), "a/b.png".into()],
                augmented: vec![false, true],
                features: bundle.info.features.clone(),
            });
            bundle.save(&path).unwrap();
            assert_eq!(Bundle::load(&path).unwrap(), bundle);
        }
    }

    #[test]
    fn future_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.hs");
        let mut future = info(HeadKind::Centroid, 2);
        future.format_version = FORMAT_VERSION + 1;
        let bundle = Bundle {
            head: Head::Centroid(Centroid {
                centroids: array![[1.0], [0.0]],
            }),
            temperature: 1.0,
            novelty: None,
            training_embeddings: None,
            info: future,
        };
        bundle.save(&path).unwrap();
        let err = Bundle::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("newer headstart") && err.contains("upgrade"),
            "{err}"
        );
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(
            Bundle::load(&path)
                .unwrap_err()
                .to_string()
                .contains("not a headstart bundle")
        );
    }

    #[test]
    fn dates() {
        let now = utc_now();
        assert_eq!(now.len(), 20);
        assert!(now.starts_with("20") && now.ends_with('Z'));
    }
}
