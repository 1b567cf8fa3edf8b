//! Demo datasets from package registries, laid out as class folders.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fetch::{self, RegistryFolder};

/// ELPV: 2,624 electroluminescence images of solar cells (300x300 grayscale) with a defect probability
/// (0, 1/3, 2/3, 1) per cell. CC-BY-NC-SA-4.0: fetched, never committed.
pub fn elpv_source() -> RegistryFolder {
    RegistryFolder {
        package: "elpv-dataset==1.0.0.post1".into(),
        prefix: "elpv_dataset/data/".into(),
        archive_sha256: "85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c".into(),
    }
}

/// One labelled cell of ELPV.
#[derive(Debug, Clone, PartialEq)]
pub struct ElpvCell {
    pub image: PathBuf,
    pub defect_probability: f32,
    /// `mono` or `poly`.
    pub cell_type: String,
}

/// Fetches ELPV (once) and returns its folder (images/ and labels.csv).
pub fn elpv() -> Result<PathBuf> {
    let dir = crate::home::home()?.join("datasets").join("elpv");
    fetch::ensure_folder(&elpv_source(), &dir)?;
    Ok(dir)
}

/// Reads labels.csv: whitespace-separated `images/cellNNNN.png probability type`.
pub fn elpv_cells(dir: &Path) -> Result<Vec<ElpvCell>> {
    let labels = dir.join("labels.csv");
    let text = std::fs::read_to_string(&labels).map_err(|e| Error::io(&labels, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bad = || {
                Error::input(
                    &labels,
                    format!("line {}: expected 'path probability type'", number + 1),
                )
            };
            let [path, probability, cell_type] = fields.as_slice() else {
                return Err(bad());
            };
            Ok(ElpvCell {
                image: dir.join(path),
                defect_probability: probability.parse().map_err(|_| bad())?,
                cell_type: cell_type.to_string(),
            })
        })
        .collect()
}

/// ELPV as class folders `defective/` (probability ≥ 0.5) and `functional/`, made of hard links (copies where
/// links are not possible) in the cache.
pub fn elpv_by_defect() -> Result<PathBuf> {
    let source = elpv()?;
    let dir = crate::home::home()?.join("datasets").join("elpv-defect");
    let marker = fetch::completion_marker(&dir);
    if marker.is_file() {
        return Ok(dir);
    }
    for cell in elpv_cells(&source)? {
        let class = if cell.defect_probability >= 0.5 {
            "defective"
        } else {
            "functional"
        };
        let name = cell
            .image
            .file_name()
            .ok_or_else(|| Error::input(&cell.image, "no file name"))?;
        let target = dir.join(class).join(name);
        if target.is_file() {
            continue;
        }
        let parent = dir.join(class);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        if std::fs::hard_link(&cell.image, &target).is_err() {
            std::fs::copy(&cell.image, &target).map_err(|e| Error::io(&target, e))?;
        }
    }
    std::fs::write(&marker, b"elpv by defect").map_err(|e| Error::io(&marker, e))?;
    Ok(dir)
}
