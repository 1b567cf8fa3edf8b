//! The files of a dataset folder: one sub-folder per class (nested folders inside a class are allowed), or a
//! flat folder of unlabelled files. Order is deterministic (sorted). Whether a file is an image is decided
//! later, by its content; a text folder takes its `.txt` files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where removed images go, inside the dataset folder: hidden, so listing and training skip it.
pub const TRASH: &str = ".headstart-trash";
/// Where tools keep what they make for a dataset (the studio's bundle), inside its folder: hidden too.
pub const OWN: &str = ".headstart";

#[derive(Debug, Clone)]
pub struct Files {
    pub root: PathBuf,
    /// Class names (folder names), sorted; empty for a flat folder.
    pub classes: Vec<String>,
    pub items: Vec<Item>,
    /// Entries that are not candidates at all (hidden, outside a class folder, unreadable folders, loops).
    pub skipped: Vec<Skip>,
    /// Class folders that hold no files.
    pub empty_classes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    /// Path relative to the dataset root, with `/` separators.
    pub relative: String,
    /// Index into `classes`; `None` in a flat folder.
    pub label: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub path: String,
    pub reason: String,
}

impl Files {
    pub(crate) fn is_labelled(&self) -> bool {
        !self.classes.is_empty()
    }
}

/// Lists a dataset folder.
pub fn scan(root: &Path) -> Result<Files> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::input(
            root,
            "not a folder (give a folder of images, one sub-folder per class)",
        ));
    }
    let mut dataset = Files {
        root: root.to_path_buf(),
        classes: Vec::new(),
        items: Vec::new(),
        skipped: Vec::new(),
        empty_classes: Vec::new(),
    };
    let mut visited = HashSet::new();
    if let Ok(canonical) = root.canonicalize() {
        visited.insert(canonical);
    }
    let entries = sorted_entries(root).map_err(|e| Error::io(root, e))?;
    let has_class_folders = entries
        .iter()
        .any(|(name, path)| !is_hidden(name) && path.is_dir());
    for (name, path) in entries {
        let relative = name.clone();
        // headstart's own folders (the studio's bundle, the trash) are not the user's data to report on.
        if name == OWN || name == TRASH {
            continue;
        }
        if is_hidden(&name) {
            dataset.skipped.push(Skip {
                path: relative,
                reason: "hidden".into(),
            });
        } else if path.is_dir() {
            if !has_class_folders {
                continue;
            }
            if dataset.classes.contains(&name) {
                return Err(Error::input(
                    &path,
                    format!(
                        "two class folders are both '{name}' once shown as UTF-8 (their names differ in bytes that are not): rename one"
                    ),
                ));
            }
            let label = dataset.classes.len();
            dataset.classes.push(name.clone());
            let before = dataset.items.len();
            walk(&path, &relative, Some(label), &mut visited, &mut dataset);
            if dataset.items.len() == before {
                dataset.empty_classes.push(name);
            }
        } else if has_class_folders {
            dataset.skipped.push(Skip {
                path: relative,
                reason: "not inside a class folder".into(),
            });
        } else {
            match entry_kind(&path) {
                Err(reason) => dataset.skipped.push(Skip {
                    path: relative,
                    reason,
                }),
                Ok(_) => dataset.items.push(Item {
                    path,
                    relative,
                    label: None,
                }),
            }
        }
    }
    Ok(dataset)
}

/// Files and folders given on a command line, as one unlabelled dataset: folders are walked (sorted), files
/// are taken as they are. Paths are shown as given.
pub fn from_inputs(inputs: &[PathBuf]) -> Result<Files> {
    let mut dataset = Files {
        root: PathBuf::new(),
        classes: Vec::new(),
        items: Vec::new(),
        skipped: Vec::new(),
        empty_classes: Vec::new(),
    };
    let mut visited = HashSet::new();
    for input in inputs {
        let shown = input.to_string_lossy().into_owned();
        if input.is_dir() {
            walk(
                input,
                shown.trim_end_matches('/'),
                None,
                &mut visited,
                &mut dataset,
            );
        } else if input.is_file() {
            dataset.items.push(Item {
                path: input.clone(),
                relative: shown,
                label: None,
            });
        } else {
            return Err(Error::input(input, "no such file or folder"));
        }
    }
    Ok(dataset)
}

/// Files named one by one (by a program, not a command line), as one unlabelled dataset in the order given.
/// Nothing is checked here: a path that is missing or not an image becomes a skip with its reason when
/// embedded, so one bad path never stops a batch.
pub fn from_paths(paths: &[PathBuf]) -> Files {
    Files {
        root: PathBuf::new(),
        classes: Vec::new(),
        items: paths
            .iter()
            .map(|path| Item {
                path: path.clone(),
                relative: path.to_string_lossy().into_owned(),
                label: None,
            })
            .collect(),
        skipped: Vec::new(),
        empty_classes: Vec::new(),
    }
}

fn walk(
    dir: &Path,
    relative: &str,
    label: Option<usize>,
    visited: &mut HashSet<PathBuf>,
    dataset: &mut Files,
) {
    match dir.canonicalize() {
        Ok(canonical) if !visited.insert(canonical.clone()) => {
            dataset.skipped.push(Skip {
                path: relative.into(),
                reason: "folder already visited (symlink loop?)".into(),
            });
            return;
        }
        Ok(_) => {}
        Err(e) => {
            dataset.skipped.push(Skip {
                path: relative.into(),
                reason: format!("cannot resolve: {e}"),
            });
            return;
        }
    }
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => {
            dataset.skipped.push(Skip {
                path: relative.into(),
                reason: format!("cannot list folder: {e}"),
            });
            return;
        }
    };
    for (name, path) in entries {
        let child = format!("{relative}/{name}");
        if is_hidden(&name) {
            dataset.skipped.push(Skip {
                path: child,
                reason: "hidden".into(),
            });
            continue;
        }
        match entry_kind(&path) {
            Ok(EntryKind::Folder) => walk(&path, &child, label, visited, dataset),
            Ok(EntryKind::File) => dataset.items.push(Item {
                path,
                relative: child,
                label,
            }),
            Err(reason) => dataset.skipped.push(Skip {
                path: child,
                reason,
            }),
        }
    }
}

enum EntryKind {
    Folder,
    File,
}

/// What an entry is, following links; why it cannot be read as a file or folder otherwise.
fn entry_kind(path: &Path) -> std::result::Result<EntryKind, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(EntryKind::Folder),
        Ok(meta) if meta.is_file() => Ok(EntryKind::File),
        Ok(_) => Err("not a regular file (a device, FIFO or socket)".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("a broken link".into()),
        // A path longer than the system takes, a folder without permission, ...
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Entries sorted by name; names that are not UTF-8 are kept, shown lossily.
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn class_folders_nested_hidden_stray_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("dogs/b.png"));
        touch(&root.join("dogs/deep/a.png"));
        touch(&root.join("cats/z.jpg"));
        touch(&root.join("cats/.DS_Store"));
        touch(&root.join("README.md"));
        touch(&root.join(".headstart/studio.hs"));
        touch(&root.join(".headstart-trash/cats/y.jpg"));
        touch(&root.join(".git/HEAD"));
        std::fs::create_dir_all(root.join("birds")).unwrap();
        let d = scan(root).unwrap();
        assert_eq!(d.classes, ["birds", "cats", "dogs"]);
        let items: Vec<(&str, Option<usize>)> = d
            .items
            .iter()
            .map(|i| (i.relative.as_str(), i.label))
            .collect();
        assert_eq!(
            items,
            [
                ("cats/z.jpg", Some(1)),
                ("dogs/b.png", Some(2)),
                ("dogs/deep/a.png", Some(2))
            ]
        );
        assert_eq!(d.empty_classes, ["birds"]);
        let skipped: Vec<&str> = d.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, [".git", "README.md", "cats/.DS_Store"]);
    }

    #[test]
    fn flat_folder_is_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("b.png"));
        touch(&dir.path().join("a.png"));
        let d = scan(dir.path()).unwrap();
        assert!(!d.is_labelled());
        assert_eq!(
            d.items
                .iter()
                .map(|i| i.relative.as_str())
                .collect::<Vec<_>>(),
            ["a.png", "b.png"]
        );
        assert!(d.items.iter().all(|i| i.label.is_none()));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("cls/a.png"));
        std::os::unix::fs::symlink(dir.path().join("cls"), dir.path().join("cls/loop")).unwrap();
        let d = scan(dir.path()).unwrap();
        assert_eq!(d.items.len(), 1);
        assert!(
            d.skipped
                .iter()
                .any(|s| s.path == "cls/loop" && s.reason.contains("loop"))
        );
    }

    #[test]
    fn not_a_folder() {
        assert!(scan(Path::new("/no/such/dir")).is_err());
    }
}
