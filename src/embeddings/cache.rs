//! The embedding cache, content-addressed: an entry's key is the hash of the file's bytes, the view
//! (original, flipped, cropped) and everything that shapes the features (backbone sha256, output, layer,
//! pooling, preprocessing). One small file per entry, written atomically and checksummed, so a torn or
//! corrupt entry is recomputed, never served.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::set::EmbedOptions;
use crate::atomic::{remove_abandoned_partials, write_atomic, write_atomic_unsynced};
use crate::backbone::{BackboneIdentity, InputSpec};
use crate::error::{Error, Result};
use crate::hash::hex;
use crate::home_dir::read_dir_if_present;
use crate::preprocess::{ImagePreprocess, JpegDecode};

const MAGIC: &[u8; 4] = b"HSE1";
/// Beside a configuration's entries: the configuration itself, so `headstart cache` can say what they are.
const CONFIGURATION_FILE: &str = "configuration.json";

pub struct EmbeddingCache {
    dir: PathBuf,
    /// Why writing stopped: the first failed write turns writing off, since the cache only saves time.
    write_failure: OnceLock<String>,
    /// Entries of runs that embed damaged files are keyed apart: what a damaged file decodes to must never
    /// answer a run that refuses damaged files.
    allow_truncated: bool,
}

/// A cache key: 32 bytes of sha256.
pub(crate) type Key = [u8; 32];

impl EmbeddingCache {
    /// The default cache root: `$HEADSTART_HOME/embeddings`.
    pub(crate) fn default_root() -> Result<PathBuf> {
        crate::home_dir::part("embeddings")
    }

    /// The cache for this backbone and input preparation, unless the options turn it off.
    pub(crate) fn for_options(
        options: &EmbedOptions,
        identity: &BackboneIdentity,
        input: &InputSpec,
    ) -> Result<Option<Self>> {
        if !options.use_cache {
            return Ok(None);
        }
        let root = match &options.cache_dir {
            Some(root) => root.clone(),
            None => Self::default_root()?,
        };
        let mut cache = Self::open(&root, identity, input);
        cache.allow_truncated = options.allow_truncated && matches!(input, InputSpec::Image(_));
        Ok(Some(cache))
    }

    /// The cache for one backbone configuration, in a folder of `root` named by its hash.
    pub fn open(root: &Path, identity: &BackboneIdentity, input: &InputSpec) -> Self {
        // Image configurations hash as they always have, so existing caches stay valid: reduced-scale JPEG
        // decoding shows in the keys of the files it changes instead (embed_file). A text's tokenizer is known
        // by its content, not by where it was found.
        let config = match input {
            InputSpec::Image(preprocess) => {
                let preprocess = ImagePreprocess {
                    jpeg_decode: JpegDecode::Exact,
                    ..preprocess.clone()
                };
                serde_json::json!({ "backbone": identity, "preprocess": preprocess })
            }
            InputSpec::Text(text) => serde_json::json!({
                "backbone": identity,
                "tokenizer": text.tokenizer_sha256,
                "max_length": text.max_length,
            }),
        };
        let config = config.to_string();
        let digest = hex(&Sha256::digest(config.as_bytes()));
        // A cache root headstart makes is marked as its own, wherever it is (`cache clear` looks for that).
        let _ = crate::home_dir::make_marked(root);
        let dir = root.join(&digest[..24]);
        let described = dir.join(CONFIGURATION_FILE);
        if !described.exists() {
            // Only a label for `headstart cache`: entries work without it, and a cache that cannot be written
            // reports that on its first entry.
            let _ = write_atomic(&described, |out| {
                out.write_all(config.as_bytes())
                    .map_err(|e| Error::io(&described, e))
            });
        }
        // Entries are written without the per-write sweep of other outputs; killed runs' leftovers go here.
        if let Ok(shards) = std::fs::read_dir(&dir) {
            for shard in shards.flatten() {
                remove_abandoned_partials(&shard.path());
            }
        }
        EmbeddingCache {
            dir,
            write_failure: OnceLock::new(),
            allow_truncated: false,
        }
    }

    /// The key of one view of a file's content.
    pub fn key(&self, content_hash: &Key, view: &str) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(content_hash);
        hasher.update(view.as_bytes());
        if self.allow_truncated {
            hasher.update(b"+allow-truncated");
        }
        hasher.finalize().into()
    }

    fn path(&self, key: &Key) -> PathBuf {
        let name = hex(key);
        self.dir.join(&name[..2]).join(&name[2..])
    }

    /// The cached vector, if there is a whole, uncorrupted one.
    pub fn get(&self, key: &Key) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        decode_entry(&bytes)
    }

    /// Stores a vector: written to a temporary file and renamed. No fsync: a torn entry fails its checksum.
    pub fn put(&self, key: &Key, vector: &[f32]) -> Result<()> {
        let path = self.path(key);
        write_atomic_unsynced(&path, |out| {
            out.write_all(&encode_entry(vector))
                .map_err(|e| Error::io(&path, e))
        })
    }

    /// [`Self::put`], where a failure costs the cache, not the run: the first one is kept for
    /// [`Self::write_failure`] and later vectors are not written.
    pub(crate) fn put_or_warn(&self, key: &Key, vector: &[f32]) {
        if self.write_failure.get().is_some() {
            return;
        }
        if let Err(error) = self.put(key, vector) {
            let _ = self.write_failure.set(format!(
                "the embedding cache cannot be written ({error}); went on without it"
            ));
        }
    }

    /// Why the cache stopped being written, if it did.
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure.get().cloned()
    }

    /// The key of a file's (or text's) content: its sha256.
    pub(crate) fn content_key(bytes: &[u8]) -> Key {
        Sha256::digest(bytes).into()
    }
}

fn encode_entry(vector: &[f32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + 4 * vector.len());
    body.extend_from_slice(&(vector.len() as u32).to_le_bytes());
    vector
        .iter()
        .for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<Vec<f32>> {
    let (magic, rest) = bytes.split_at_checked(4)?;
    let (checksum, body) = rest.split_at_checked(32)?;
    if magic != MAGIC || Sha256::digest(body).as_slice() != checksum {
        return None;
    }
    let (len, values) = body.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    if values.len() != 4 * len {
        return None;
    }
    Some(
        values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// One backbone configuration's share of the embedding cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigurationUsage {
    /// Backbone name, tapped tensor and input kind; `None` for folders made before configurations were
    /// recorded.
    pub description: Option<String>,
    pub entries: u64,
    pub bytes: u64,
}

/// What the embedding cache under `root` holds, one row per backbone configuration, largest first.
pub fn usage(root: &Path) -> Result<Vec<ConfigurationUsage>> {
    let mut rows = Vec::new();
    let Some(folders) = read_dir_if_present(root)? else {
        return Ok(rows);
    };
    for folder in folders {
        let folder = folder.map_err(|e| Error::io(root, e))?.path();
        if !folder.is_dir() {
            continue;
        }
        let description = std::fs::read(folder.join(CONFIGURATION_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(|config: serde_json::Value| describe(&config));
        let (mut entries, mut bytes) = (0, 0);
        // Entries sit one shard folder down; hidden files there are unfinished writes.
        for shard in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let shard = shard.map_err(|e| Error::io(&folder, e))?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard).map_err(|e| Error::io(&shard, e))? {
                let entry = entry.map_err(|e| Error::io(&shard, e))?;
                bytes += entry.metadata().map_or(0, |m| m.len());
                entries += u64::from(!entry.file_name().to_string_lossy().starts_with('.'));
            }
        }
        rows.push(ConfigurationUsage {
            description,
            entries,
            bytes,
        });
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.bytes));
    Ok(rows)
}

/// "efficientnet-lite0, features, images 224x224 …" from a recorded configuration.
fn describe(config: &serde_json::Value) -> String {
    let backbone = &config["backbone"];
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("?").to_string();
    let mut tensor = match backbone["layer"].as_str() {
        Some(layer) => format!("layer {layer}"),
        None => text(&backbone["output"]),
    };
    for joined in backbone["joined"].as_array().into_iter().flatten() {
        tensor.push_str(&format!(" + {}", text(joined)));
    }
    let input = if config.get("tokenizer").is_some() {
        format!("texts up to {} tokens", config["max_length"])
    } else {
        serde_json::from_value::<ImagePreprocess>(config["preprocess"].clone()).map_or_else(
            |_| "images".to_string(),
            |p| format!("images {}", p.describe()),
        )
    };
    format!("{}, {tensor}, {input}", text(&backbone["name"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let entry = encode_entry(&[1.0, -2.5, 3.25]);
        assert_eq!(decode_entry(&entry), Some(vec![1.0, -2.5, 3.25]));
        assert_eq!(decode_entry(&entry[..entry.len() - 1]), None, "torn write");
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode_entry(&flipped), None, "bit flip");
        assert_eq!(decode_entry(b""), None);
    }

    #[test]
    fn usage_names_each_configuration_and_counts_its_entries() {
        let root = tempfile::tempdir().unwrap();
        let identity = |layer: Option<&str>| BackboneIdentity {
            name: "efficientnet-lite0".into(),
            sha256: "ab".repeat(32),
            output: "features".into(),
            layer: layer.map(str::to_string),
            joined: Vec::new(),
            pooling: crate::pooling::Pooling::Auto,
            normalize: false,
            precision: Default::default(),
            calibration: None,
        };
        let images = EmbeddingCache::open(
            root.path(),
            &identity(None),
            &InputSpec::Image(ImagePreprocess::default()),
        );
        let texts = EmbeddingCache::open(
            root.path(),
            &identity(Some("head")),
            &InputSpec::Text(crate::backbone::TextInput {
                tokenizer_sha256: "cd".repeat(32),
                tokenizer_source: None,
                max_length: 256,
            }),
        );
        for i in 0..3u8 {
            images
                .put(&EmbeddingCache::content_key(&[i]), &[1.0; 8])
                .unwrap();
        }
        texts
            .put(&EmbeddingCache::content_key(b"t"), &[1.0; 4])
            .unwrap();
        // An unfinished write left by a killed run is not an entry.
        let torn = images
            .path(&EmbeddingCache::content_key(&[0]))
            .with_file_name(".headstart-123.partial");
        std::fs::write(&torn, b"HSE1").unwrap();
        // A folder from before configurations were recorded.
        std::fs::create_dir_all(root.path().join("0123/45")).unwrap();
        std::fs::write(root.path().join("0123/45/6789"), encode_entry(&[0.5])).unwrap();

        let rows = usage(root.path()).unwrap();
        assert_eq!(rows.len(), 3);
        let entry = |floats: u64| 4 + 32 + 4 + 4 * floats;
        assert_eq!((rows[0].entries, rows[0].bytes), (3, 3 * entry(8) + 4));
        let described = rows[0].description.as_deref().unwrap();
        assert!(
            described.starts_with("efficientnet-lite0, features, images 224x224"),
            "{described}"
        );
        assert_eq!(
            rows[1].description.as_deref(),
            Some("efficientnet-lite0, layer head, texts up to 256 tokens")
        );
        assert_eq!((rows[1].entries, rows[1].bytes), (1, entry(4)));
        assert_eq!(rows[2].description, None);
        assert_eq!(rows[2].entries, 1);
        assert_eq!(usage(&root.path().join("missing")).unwrap(), []);
    }
}
