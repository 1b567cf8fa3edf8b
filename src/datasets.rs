//! Demo datasets from package registries, laid out as class folders.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fetch::{self, DebianFiles, RegistryFile, RegistryFolder, SourceFile};

/// ELPV: 2,624 electroluminescence images of solar cells (300x300 grayscale) with a defect probability
/// (0, 1/3, 2/3, 1) per cell. CC-BY-NC-SA-4.0: fetched, never committed.
pub(crate) fn elpv_source() -> RegistryFolder {
    RegistryFolder {
        package: "elpv-dataset==1.0.0.post1".into(),
        prefix: "elpv_dataset/data/".into(),
        archive_sha256: "85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c".into(),
    }
}

/// One labelled cell of ELPV.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ElpvCell {
    pub image: PathBuf,
    pub defect_probability: f32,
    /// `mono` or `poly`.
    pub cell_type: String,
}

/// Fetches ELPV (once) and returns its folder (images/ and labels.csv).
pub fn elpv() -> Result<PathBuf> {
    let dir = crate::home_dir::part("datasets")?.join("elpv");
    fetch::ensure_folder(&elpv_source(), &dir)?;
    Ok(dir)
}

/// Reads labels.csv: whitespace-separated `images/cellNNNN.png probability type`.
pub(crate) fn elpv_cells(dir: &Path) -> Result<Vec<ElpvCell>> {
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
/// links are not possible) in the cache. The tree is built in a staging folder and renamed into place, under a
/// lock, so it exists only complete; a tree that no longer matches its sources is rebuilt.
pub fn elpv_by_defect() -> Result<PathBuf> {
    let source = elpv()?;
    let cells = elpv_cells(&source)?;
    let dir = crate::home_dir::part("datasets")?.join("elpv-defect");
    if tree_matches(&cells, &dir) {
        return Ok(dir);
    }
    let _lock = fetch::lock_beside(&dir)?;
    if tree_matches(&cells, &dir) {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".elpv-defect-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    for cell in &cells {
        let class_dir = staging.path().join(defect_class(cell));
        std::fs::create_dir_all(&class_dir).map_err(|e| Error::io(&class_dir, e))?;
        let target = class_dir.join(file_name(cell)?);
        if std::fs::hard_link(&cell.image, &target).is_err() {
            std::fs::copy(&cell.image, &target).map_err(|e| Error::io(&target, e))?;
        }
    }
    // A stale tree (links to files that were since fetched again) is moved aside, then removed.
    let stale = tempfile::Builder::new()
        .prefix(".elpv-defect-stale-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    if dir.exists() {
        std::fs::rename(&dir, stale.path().join("tree")).map_err(|e| Error::io(&dir, e))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(Error::io(&dir, e));
    }
    Ok(dir)
}

fn defect_class(cell: &ElpvCell) -> &'static str {
    if cell.defect_probability >= 0.5 {
        "defective"
    } else {
        "functional"
    }
}

fn file_name(cell: &ElpvCell) -> Result<&std::ffi::OsStr> {
    cell.image
        .file_name()
        .ok_or_else(|| Error::input(&cell.image, "no file name"))
}

/// Whether `dir` holds every cell in its class folder with its source's size.
fn tree_matches(cells: &[ElpvCell], dir: &Path) -> bool {
    cells.iter().all(|cell| {
        let Ok(name) = file_name(cell) else {
            return false;
        };
        let target = dir.join(defect_class(cell)).join(name);
        match (std::fs::metadata(&target), std::fs::metadata(&cell.image)) {
            (Ok(target), Ok(source)) => target.is_file() && target.len() == source.len(),
            _ => false,
        }
    })
}

/// VADER's movie-review snippets (Hutto & Gilbert, ICWSM 2014): 10,605 sentences with a mean human sentiment
/// score, in the source archive of vaderSentiment 3.3.2 (MIT). Tab-separated `id  score  text`, CRLF.
pub(crate) fn vader_movies_source() -> SourceFile {
    SourceFile {
        package: "vaderSentiment==3.3.2".into(),
        archive_sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9".into(),
        members: vec![
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz".into(),
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt".into(),
        ],
    }
}

/// The movie snippets as a text table (`.jsonl`, columns `text`, `label`, `score`): `positive` when the mean
/// score is above 0, else `negative`. Fetched and converted once; the table is written atomically.
pub fn vader_movies() -> Result<PathBuf> {
    let dir = crate::home_dir::part("datasets")?.join("vader");
    let table = dir.join("movie-snippets.jsonl");
    if table.is_file() {
        return Ok(table);
    }
    let raw = dir.join("movieReviewSnippets_GroundTruth.txt");
    fetch::ensure_source_file(&vader_movies_source(), &raw)?;
    let text = std::fs::read_to_string(&raw).map_err(|e| Error::io(&raw, e))?;
    let mut lines = String::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            Error::input(
                &raw,
                format!("line {}: expected 'id, score, text'", number + 1),
            )
        };
        let mut fields = line.splitn(3, '\t');
        let (Some(_id), Some(score), Some(snippet)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let score: f64 = score.trim().parse().map_err(|_| bad())?;
        let label = if score > 0.0 { "positive" } else { "negative" };
        let row = serde_json::json!({ "text": snippet.trim_end_matches('\r'), "label": label, "score": score });
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    crate::atomic::write_atomic(&table, |out| {
        std::io::Write::write_all(out, lines.as_bytes()).map_err(|e| Error::io(&table, e))
    })?;
    Ok(table)
}

/// Sample photos shipped in scikit-image's wheel (public domain or CC0 per its data README).
const PHOTOS: [(&str, &str); 5] = [
    (
        "chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    ),
    (
        "coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    ),
    (
        "astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    ),
    (
        "rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    ),
    (
        "motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    ),
];

/// Fetches (once) and returns the sample photos.
pub fn sample_photos() -> Result<Vec<PathBuf>> {
    let dir = crate::home_dir::part("samples")?.join("scikit-image");
    let files: Vec<(RegistryFile, PathBuf)> = PHOTOS
        .iter()
        .map(|(name, sha256)| {
            let spec = RegistryFile {
                package: "scikit-image==0.26.0".into(),
                file: format!("skimage/data/{name}"),
                sha256: sha256.to_string(),
                platform: Some("manylinux_2_28_x86_64".into()),
            };
            (spec, dir.join(name))
        })
        .collect();
    fetch::ensure_all(&files)?;
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Photos inside one Debian package: (file name, sha256) under `folder`.
struct DebianPhotos {
    package: &'static str,
    version: &'static str,
    deb_sha256: &'static str,
    folder: &'static str,
    photos: &'static [(&'static str, &'static str)],
}

impl DebianPhotos {
    /// Fetches (once) the photos with `apt-get download` into `$HEADSTART_HOME/datasets/NAME` and returns it.
    fn fetch(&self, name: &str) -> Result<PathBuf> {
        let dir = crate::home_dir::part("datasets")?.join(name);
        fetch::ensure_debian_files(&DebianFiles {
            package: self.package.into(),
            version: self.version.into(),
            deb_sha256: self.deb_sha256.into(),
            files: self
                .photos
                .iter()
                .map(|(file, sha256)| {
                    (
                        format!("{}/{file}", self.folder),
                        sha256.to_string(),
                        dir.join(file),
                    )
                })
                .collect(),
        })?;
        Ok(dir)
    }
}

/// Fourteen camera and phone photos from Debian's `lomiri-wallpapers-16.04` (Ubuntu Touch's wallpaper contest;
/// CC-BY-4.0 and CC-BY-SA-4.0, each photographer named in the file name): 2056x3088 to 5312x2988 (2.1 to 16
/// megapixels, 0.5 to 1.8 MB): landscapes, plants, animals, objects. The package's one rendered gradient is left
/// out. The photo set of the embed benchmark and of the photo tests.
const CAMERA_PHOTOS: DebianPhotos = DebianPhotos {
    package: "lomiri-wallpapers-16.04",
    version: "20.04.0-2",
    deb_sha256: "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
    folder: "usr/share/backgrounds",
    photos: &[
        (
            "Bridge_by_Sander_Klootwijk.jpg",
            "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050",
        ),
        (
            "Dragonfly_by_Bolly.jpg",
            "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3",
        ),
        (
            "Picture_0B_by_freespace.jpg",
            "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad",
        ),
        (
            "Picture_1A_by_freespace.jpg",
            "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b",
        ),
        (
            "Wine_by_Jakkub_Mede.jpg",
            "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74",
        ),
        (
            "aitzgorri_by_Aitzol_Berasategi.jpg",
            "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36",
        ),
        (
            "analogpattern_by_Peter_Nerlich.jpg",
            "15372488a192b2be2eafc67bd3ed31cbfca19abe3929e925607fcbc9cb4d4202",
        ),
        (
            "free_by_Peter_Nerlich.jpg",
            "85a5453c2fed514c75973016f3d862aca62eb7ca087618822469274ac1092373",
        ),
        (
            "friends_by_Aitzol_Berasategi.jpg",
            "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d",
        ),
        (
            "greentock_by_Peter_Nerlich.jpg",
            "e7b20e2db9dcd6e2b278ca55873c2110b35d89cd38b04d0b18728726888e6889",
        ),
        (
            "life_by_Aitzol_Berasategi.jpg",
            "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05",
        ),
        (
            "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a",
        ),
        (
            "seeding_by_Clements_Engelhardt.jpg",
            "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f",
        ),
        (
            "sunset_by_Aitzol_Berasategi.jpg",
            "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18",
        ),
    ],
};

/// Twelve nature photos from Debian's `mate-backgrounds` wallpapers (GPL-2+; flowers, grass, sea, wood, a
/// storm): 1280x1024 to 2560x1920 (1.3 to 4.9 megapixels, 80 KB to 1.2 MB, two progressive), smaller and more
/// compressed than camera files.
const NATURE_PHOTOS: DebianPhotos = DebianPhotos {
    package: "mate-backgrounds",
    version: "1.26.0-1",
    deb_sha256: "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
    folder: "usr/share/backgrounds/mate/nature",
    photos: &[
        (
            "Aqua.jpg",
            "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce",
        ),
        (
            "Blinds.jpg",
            "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600",
        ),
        (
            "Dune.jpg",
            "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91",
        ),
        (
            "FreshFlower.jpg",
            "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e",
        ),
        (
            "Garden.jpg",
            "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78",
        ),
        (
            "GreenMeadow.jpg",
            "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832",
        ),
        (
            "LadyBird.jpg",
            "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d",
        ),
        (
            "RainDrops.jpg",
            "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16",
        ),
        (
            "Storm.jpg",
            "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957",
        ),
        (
            "TwoWings.jpg",
            "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb",
        ),
        (
            "Wood.jpg",
            "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07",
        ),
        (
            "YellowFlower.jpg",
            "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306",
        ),
    ],
};

/// Fetches (once) the fourteen camera photos and returns their folder.
pub fn camera_photos() -> Result<PathBuf> {
    CAMERA_PHOTOS.fetch("lomiri-camera-photos")
}

/// Fetches (once) the twelve nature wallpaper photos and returns their folder.
pub fn wallpaper_photos() -> Result<PathBuf> {
    NATURE_PHOTOS.fetch("mate-nature-photos")
}

/// Images held out for testing in the ELPV demo: a stratified, seeded 824 of 2,624 (the split of the Python
/// logistic probe that measured 0.826 on these features).
pub const ELPV_TEST_FRACTION: f64 = 824.0 / 2624.0;
pub const ELPV_SEED: u64 = 42;

/// Texts held out for testing in the sentiment demo: a stratified, seeded fifth of the 10,605 snippets.
pub const VADER_TEST_FRACTION: f64 = 0.2;
pub const VADER_SEED: u64 = 42;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("labels.csv"),
            "images/cell0001.png  1.0   mono\nimages/cell0002.png 0.3333 poly\n\n",
        )
        .unwrap();
        let cells = elpv_cells(dir.path()).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[1].cell_type, "poly");
        assert!((cells[1].defect_probability - 0.3333).abs() < 1e-6);
        std::fs::write(
            dir.path().join("labels.csv"),
            "images/cell0001.png one mono\n",
        )
        .unwrap();
        assert!(
            elpv_cells(dir.path())
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn a_class_tree_that_no_longer_matches_its_sources_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        let cells: Vec<ElpvCell> = [("a.png", 1.0), ("b.png", 0.0)]
            .iter()
            .map(|(name, p)| {
                std::fs::write(images.join(name), b"pixels").unwrap();
                ElpvCell {
                    image: images.join(name),
                    defect_probability: *p,
                    cell_type: "mono".into(),
                }
            })
            .collect();
        let tree = dir.path().join("tree");
        assert!(!tree_matches(&cells, &tree));
        for (cell, class) in cells.iter().zip(["defective", "functional"]) {
            std::fs::create_dir_all(tree.join(class)).unwrap();
            std::fs::copy(&cell.image, tree.join(class).join(file_name(cell).unwrap())).unwrap();
        }
        assert!(tree_matches(&cells, &tree));
        std::fs::write(tree.join("functional/b.png"), b"").unwrap();
        assert!(!tree_matches(&cells, &tree));
    }
}
