//! The embedding cache, content-addressed: an entry's key is the hash of the file's bytes, the view
//! (original, flipped, cropped) and everything that shapes the features (backbone sha256, output, layer,
//! pooling, preprocessing). One small file per entry, written atomically and checksummed, so a torn or
//! corrupt entry is recomputed, never served.

use std::path::{Path, PathBuf};

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::backbone::BackboneIdentity;
use crate::embed::InputSpec;
use crate::error::{Error, Result};
use crate::fetch::hex;

const MAGIC: &[u8; 4] = b"HSE1";

pub struct EmbeddingCache {
    dir: PathBuf,
}

/// A cache key: 32 bytes of sha256.
pub type Key = [u8; 32];

impl EmbeddingCache {
    /// The default cache root: `$HEADSTART_HOME/embeddings`.
    pub fn default_root() -> Result<PathBuf> {
        Ok(crate::home::home()?.join("embeddings"))
    }

    /// The cache for one backbone configuration, in a folder of `root` named by its hash.
    pub fn open(root: &Path, identity: &BackboneIdentity, input: &InputSpec) -> Self {
        // Image configurations hash as they always have, so existing caches stay valid. A text's tokenizer is
        // known by its content, not by where it was found.
        let config = match input {
            InputSpec::Image(preprocess) => {
                serde_json::json!({ "backbone": identity, "preprocess": preprocess })
            }
            InputSpec::Text(text) => serde_json::json!({
                "backbone": identity,
                "tokenizer": text.tokenizer_sha256,
                "max_length": text.max_length,
            }),
        };
        let digest = hex(&Sha256::digest(config.to_string().as_bytes()));
        EmbeddingCache {
            dir: root.join(&digest[..24]),
        }
    }

    /// The key of one view of a file's content.
    pub fn key(content_hash: &Key, view: &str) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(content_hash);
        hasher.update(view.as_bytes());
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
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        temp.write_all(&encode_entry(vector))
            .map_err(|e| Error::io(&path, e))?;
        temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
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

/// sha256 of bytes.
pub fn content_hash(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
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
}
