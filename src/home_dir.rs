//! Where headstart keeps what it fetches: `HEADSTART_HOME`, else the per-user cache directory; what is in
//! it, and clearing it. The cache root may be a folder the user had before, so each folder headstart makes
//! there is marked, and clearing removes only marked folders.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// The file in each folder headstart made under the cache root.
pub const MARKER: &str = ".made-by-headstart";

/// `$HEADSTART_HOME/name`, a folder headstart fills (embeddings, models, datasets, runtime, …), made and
/// marked when it is not there. A folder of that name that headstart did not make is used as it is, never
/// marked, so never cleared. Failing to make it is left to whoever writes there to report.
pub(crate) fn part(name: &str) -> Result<PathBuf> {
    let dir = home()?.join(name);
    make_marked(&dir)?;
    Ok(dir)
}

/// Makes `dir` with headstart's marker when it is not there; one that is stays as it was.
pub(crate) fn make_marked(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if std::fs::create_dir(dir).is_ok() {
        let note = "headstart made this folder: `headstart cache clear` may remove it\n";
        std::fs::write(dir.join(MARKER), note).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

fn is_marked(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// The cache root: `$HEADSTART_HOME`, `$XDG_CACHE_HOME/headstart`, `~/.cache/headstart`
/// (`%LOCALAPPDATA%\headstart` on Windows).
pub fn home() -> Result<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = non_empty("HEADSTART_HOME") {
        return Ok(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(dir.join("headstart"));
    }
    if let Some(dir) = non_empty("LOCALAPPDATA") {
        return Ok(dir.join("headstart"));
    }
    if let Some(dir) = non_empty("HOME") {
        return Ok(dir.join(".cache").join("headstart"));
    }
    Err(Error::Config(
        "cannot find a cache directory: set HEADSTART_HOME to a writable directory".into(),
    ))
}

/// One folder of the cache root and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartUsage {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
}

/// The entries of `dir`, or none when it does not exist yet (a cache not filled so far).
pub(crate) fn read_dir_if_present(dir: &Path) -> Result<Option<std::fs::ReadDir>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Every folder under `root` with its size, in name order (nothing when `root` does not exist yet).
pub fn usage(root: &Path) -> Result<Vec<PartUsage>> {
    let mut parts = Vec::new();
    let Some(entries) = read_dir_if_present(root)? else {
        return Ok(parts);
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let (files, bytes) = disk_usage(&entry.path())?;
            parts.push(PartUsage {
                name: entry.file_name().to_string_lossy().into_owned(),
                files,
                bytes,
            });
        }
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(parts)
}

/// Files and bytes under `path`, not following links.
pub(crate) fn disk_usage(path: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let metadata = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                files += 1;
                bytes += metadata.len();
            }
        }
    }
    Ok((files, bytes))
}

/// What [`clear`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleared {
    pub removed: Vec<PartUsage>,
    /// Entries of the root that are not headstart's, left as they were.
    pub left_alone: Vec<String>,
}

/// Removes the embedding cache under `root`, or with `everything` every folder headstart made there (fetched
/// models, datasets, ONNX Runtime, pip sites) and their lock files. Only folders with headstart's marker go:
/// anything else in `root`, including a folder named as headstart's own, stays.
pub fn clear(root: &Path, everything: bool) -> Result<Cleared> {
    let mut cleared = Cleared {
        removed: Vec::new(),
        left_alone: Vec::new(),
    };
    let mut removed_names = Vec::new();
    for part in usage(root)? {
        let path = root.join(&part.name);
        let wanted = everything || part.name == "embeddings";
        if wanted && is_marked(&path) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            removed_names.push(part.name.clone());
            cleared.removed.push(part);
        } else if wanted {
            cleared.left_alone.push(part.name);
        }
    }
    if everything {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let lock_of_removed = name
                    .strip_suffix(".lock")
                    .is_some_and(|part| removed_names.iter().any(|r| r == part));
                if lock_of_removed {
                    std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                } else {
                    cleared.left_alone.push(name);
                }
            }
        }
    }
    cleared.left_alone.sort();
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_and_clear_removes_only_headstarts_parts() {
        let root = tempfile::tempdir().unwrap();
        let write = |relative: &str, bytes: usize| {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![7u8; bytes]).unwrap();
        };
        write("embeddings/abc/12/3456", 100);
        write("embeddings/abc/configuration.json", 10);
        write(&format!("embeddings/{MARKER}"), 0);
        write("models/m/model.onnx", 1000);
        write(&format!("models/{MARKER}"), 0);
        write("python-bench/numpy/__init__.py", 5);
        write(&format!("python-bench/{MARKER}"), 0);
        write("python-bench.lock", 0);
        write("photos/mine.jpg", 50);
        // The user's own folder, named as one of headstart's.
        write("datasets/mine.csv", 7);
        write("datasets.lock", 0);
        write("notes.txt", 3);

        let parts = usage(root.path()).unwrap();
        let summary: Vec<(&str, u64, u64)> = parts
            .iter()
            .map(|p| (p.name.as_str(), p.files, p.bytes))
            .collect();
        assert_eq!(
            summary,
            [
                ("datasets", 1, 7),
                ("embeddings", 3, 110),
                ("models", 2, 1000),
                ("photos", 1, 50),
                ("python-bench", 2, 5)
            ]
        );

        let cleared = clear(root.path(), false).unwrap();
        assert_eq!(cleared.removed.len(), 1);
        assert_eq!(cleared.removed[0].name, "embeddings");
        assert!(!root.path().join("embeddings").exists());
        assert!(root.path().join("models/m/model.onnx").exists());

        let cleared = clear(root.path(), true).unwrap();
        let removed: Vec<&str> = cleared.removed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(removed, ["models", "python-bench"]);
        assert_eq!(
            cleared.left_alone,
            ["datasets", "datasets.lock", "notes.txt", "photos"]
        );
        assert!(root.path().join("datasets/mine.csv").exists());
        assert!(!root.path().join("python-bench.lock").exists());
        assert!(root.path().join("photos/mine.jpg").exists());
        assert!(root.path().join("notes.txt").exists());
        assert_eq!(usage(&root.path().join("missing")).unwrap(), []);
    }
}
