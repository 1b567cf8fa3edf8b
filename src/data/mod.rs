//! Files → data: a folder of images, a folder of `.txt` files or a text table, or embeddings made earlier.
//! [`Data::open`] is the one place that tells which a path holds.

pub mod decode;
pub mod files;
pub mod folder;
pub mod multi_label;
pub mod shard;
pub mod table;
pub mod texts;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::modality::Modality;

pub use files::{Files, Skip};
pub use folder::DatasetFolder;
pub use shard::Shard;
pub use table::TextTable;
pub use texts::{TextDataset, TextOptions};

/// What a path holds.
#[derive(Debug, Clone)]
pub enum Data {
    /// A folder of images: one sub-folder per class, or flat (unlabelled).
    Images(Files),
    /// A text table, or a folder of `.txt` files in class folders.
    Texts(TextDataset),
    /// Embeddings made earlier: an `.npz`, a Parquet file or a folder of Parquet shards (any other file is
    /// taken for an `.npz`), read with [`EmbeddedSet::read`](crate::embeddings::EmbeddedSet::read).
    Embeddings(PathBuf),
}

impl Data {
    /// Lists a folder or reads a text table (`text` says which columns to take), or names an embeddings file.
    /// A table is known by its extension (.csv, .tsv, .jsonl); a folder holds texts when every file in it is a
    /// `.txt` file, else images.
    pub fn open(path: &Path, text: &TextOptions) -> Result<Data> {
        if is_parquet(path) {
            return Ok(Data::Embeddings(path.to_path_buf()));
        }
        if path.is_dir() {
            let listed = files::scan(path)?;
            return Ok(if texts::is_text_folder(&listed) {
                Data::Texts(texts::from_folder(listed))
            } else {
                Data::Images(listed)
            });
        }
        if texts::is_table(path) {
            return Ok(Data::Texts(texts::load_table(path, text)?));
        }
        if path.is_file() {
            return Ok(Data::Embeddings(path.to_path_buf()));
        }
        Err(Error::input(
            path,
            "no such folder, text table (.csv, .tsv, .jsonl) or .npz file",
        ))
    }

    /// Image files named one by one, unlabelled, in the order given. Nothing is checked here: a file that is
    /// missing or not an image is skipped with its reason when embedded.
    pub fn image_files(paths: &[PathBuf]) -> Data {
        Data::Images(files::from_paths(paths))
    }

    /// Texts, unlabelled, in the order given.
    pub fn texts(texts: Vec<String>) -> Data {
        Data::Texts(texts::unlabelled("input", texts))
    }

    /// The part of the data in `shard` (embeddings made earlier are not sharded: they come back whole).
    pub fn shard(self, shard: Shard) -> Data {
        match self {
            Data::Images(mut files) => {
                files.items.retain(|item| shard.holds(&item.relative));
                files.skipped.retain(|skip| shard.holds(&skip.path));
                Data::Images(files)
            }
            Data::Texts(mut texts) => {
                texts.items.retain(|item| shard.holds(&item.id));
                texts.skipped.retain(|skip| shard.holds(&skip.path));
                Data::Texts(texts)
            }
            embeddings => embeddings,
        }
    }

    /// Images or texts; `None` for embeddings, which say so themselves once read.
    pub fn modality(&self) -> Option<Modality> {
        match self {
            Data::Images(_) => Some(Modality::Image),
            Data::Texts(_) => Some(Modality::Text),
            Data::Embeddings(_) => None,
        }
    }
}

/// Whether `path` is a Parquet file, or a folder with Parquet files in it (a folder of shards: reading it
/// refuses anything else visible there).
pub(crate) fn is_parquet(path: &Path) -> bool {
    let named = |p: &Path| p.extension().is_some_and(|e| e == "parquet");
    if path.is_dir() {
        return std::fs::read_dir(path).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| named(&e.path()) && e.path().is_file())
        });
    }
    named(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_tables_and_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            path
        };
        write("images/cats/a.png");
        write("texts/neg/a.txt");
        let table = write("table.csv");
        let npz = write("set.npz");
        let open = |path: &Path| Data::open(path, &TextOptions::default());
        assert!(matches!(
            open(&dir.path().join("images")),
            Ok(Data::Images(_))
        ));
        assert!(matches!(
            open(&dir.path().join("texts")),
            Ok(Data::Texts(_))
        ));
        // The table has a text column but no label column: reading it is tried, and refused.
        assert!(matches!(open(&table), Err(Error::MissingColumn { .. })));
        assert!(matches!(open(&npz), Ok(Data::Embeddings(p)) if p == npz));
        assert!(open(&dir.path().join("missing")).is_err());
    }
}
