//! One shard of a dataset, for running a job array over many machines (Slurm arrays, Kubernetes indexed
//! jobs): shard K of N holds the inputs whose path hashes to K. The partition depends on each path alone, so
//! it is the same on every machine and adding files never moves the others.

use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based, below `count`.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole dataset as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u64, count: u64) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::parameter(
                "shard",
                format!("K/N needs 0 <= K < N, got {index}/{count}"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether the input named `key` (its path relative to the dataset, or a text's id) is in this shard.
    pub fn holds(&self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(head) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let parsed = text
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) => Shard::new(index, count),
            None => Err(Error::parameter(
                "shard",
                format!("'{text}' is not K/N (shard K of N, from 0)"),
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_every_key_once() {
        let keys: Vec<String> = (0..1000).map(|i| format!("class/{i}.png")).collect();
        let shards: Vec<Shard> = (0..4).map(|k| Shard::new(k, 4).unwrap()).collect();
        for key in &keys {
            assert_eq!(shards.iter().filter(|s| s.holds(key)).count(), 1, "{key}");
        }
        // Evenly enough: a hash, not a range.
        for shard in &shards {
            let held = keys.iter().filter(|k| shard.holds(k)).count();
            assert!((200..300).contains(&held), "{shard}: {held}");
        }
        assert!(keys.iter().all(|k| Shard::WHOLE.holds(k)));
    }

    #[test]
    fn shards_parse_and_refuse_what_is_not_k_of_n() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        for bad in ["8/8", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
