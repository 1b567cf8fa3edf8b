//! A class-folder dataset edited in place without losing anything: classes and images added, images moved to
//! another class or put in `.headstart-trash/` (and back out). Every path given is checked to name something inside
//! the folder: no `..`, no hidden names, no links that lead out.

use std::path::{Component, Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

use super::files::{Files, scan};

pub use super::files::{OWN, TRASH};
/// The longest class or file name taken, in bytes.
const MAX_NAME: usize = 200;

/// A dataset folder, one sub-folder per class.
#[derive(Debug, Clone)]
pub struct DatasetFolder {
    root: PathBuf,
}

impl DatasetFolder {
    /// The folder at `root`, made if it does not exist yet.
    pub fn open(root: &Path) -> Result<DatasetFolder> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        if !root.is_dir() {
            return Err(Error::input(&root, "not a folder"));
        }
        Ok(DatasetFolder { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The classes and their files, as training reads them.
    pub fn list(&self) -> Result<Files> {
        scan(&self.root)
    }

    /// Adds an empty class folder; an existing one is left as it is.
    pub fn add_class(&self, name: &str) -> Result<()> {
        let folder = self.root.join(checked_name("class", name)?);
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))
    }

    /// Writes an image into `class` under `file_name` (or `name-2.ext` and so on, if taken); returns its path
    /// relative to the folder. Bytes that are not an image in a format headstart reads are refused.
    pub fn add_image(&self, class: &str, file_name: &str, bytes: &[u8]) -> Result<String> {
        let name = checked_name("file", file_name)?;
        image::guess_format(bytes).map_err(|_| {
            Error::input(
                name,
                "not an image (PNG, JPEG, BMP, GIF, WebP, TIFF and the like)",
            )
        })?;
        let folder = self.class_folder(class)?;
        let target = free_name(&folder, name);
        write_atomic(&target, |out| {
            out.write_all(bytes).map_err(|e| Error::io(&target, e))
        })?;
        Ok(self.relative(&target))
    }

    /// Writes `text` into `class` (made if new) as a `.txt` file named after its first words; returns its path
    /// relative to the folder. A blank text is refused.
    pub fn add_text(&self, class: &str, text: &str) -> Result<String> {
        if text.trim().is_empty() {
            return Err(Error::input(class, "a blank text is not added"));
        }
        self.add_class(class)?;
        let folder = self.class_folder(class)?;
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .take(6)
            .map(str::to_lowercase)
            .collect();
        let stem: String = match words.join("-") {
            stem if stem.is_empty() => "text".into(),
            stem => stem.chars().take(60).collect(),
        };
        let target = free_name(&folder, &format!("{stem}.txt"));
        write_atomic(&target, |out| {
            out.write_all(text.as_bytes())
                .map_err(|e| Error::io(&target, e))
        })?;
        Ok(self.relative(&target))
    }

    /// Moves the image at `relative` into `class`; returns where it is now.
    pub fn move_to(&self, relative: &str, class: &str) -> Result<String> {
        let from = self.existing_file(relative)?;
        let folder = self.class_folder(class)?;
        if from.parent() == Some(folder.as_path()) {
            return Ok(self.relative(&from));
        }
        let to = free_name(&folder, &file_name(&from));
        std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
        Ok(self.relative(&to))
    }

    /// Moves the image at `relative` into the trash folder, under the same relative path; returns that path,
    /// relative to the trash, for [`DatasetFolder::restore`].
    pub fn trash(&self, relative: &str) -> Result<String> {
        let from = self.existing_file(relative)?;
        let inside = self.relative(&from);
        let trash = self.root.join(TRASH);
        let folder = match Path::new(&inside).parent() {
            Some(parent) => trash.join(parent),
            None => trash.clone(),
        };
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let to = free_name(&folder, &file_name(&from));
        std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
        Ok(relative_to(&trash, &to))
    }

    /// Puts a trashed image back where it was (beside a newer one of the same name, if there is one); returns its
    /// path relative to the folder.
    pub fn restore(&self, trashed: &str) -> Result<String> {
        let trash = self.root.join(TRASH);
        let from = inside(&trash, trashed)?;
        if !from.is_file() {
            return Err(Error::input(trashed, "is not in the trash"));
        }
        let back = self.root.join(checked_relative(trashed)?);
        let folder = back.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let to = free_name(&folder, &file_name(&back));
        std::fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
        Ok(self.relative(&to))
    }

    /// The file at `relative`, which must be inside the folder (links followed) and not hidden.
    pub fn existing_file(&self, relative: &str) -> Result<PathBuf> {
        let path = inside(&self.root, relative)?;
        if !path.is_file() {
            return Err(Error::input(relative, "no such file in the dataset"));
        }
        Ok(path)
    }

    fn class_folder(&self, class: &str) -> Result<PathBuf> {
        let folder = self.root.join(checked_name("class", class)?);
        if !folder.is_dir() {
            return Err(Error::input(class, "no such class (add it first)"));
        }
        Ok(folder)
    }

    fn relative(&self, path: &Path) -> String {
        relative_to(&self.root, path)
    }
}

/// `relative` under `root`, if each part is an ordinary, visible name and the result (links followed) is inside
/// `root`.
fn inside(root: &Path, relative: &str) -> Result<PathBuf> {
    let path = root.join(checked_relative(relative)?);
    let real = path
        .canonicalize()
        .map_err(|_| Error::input(relative, "no such file in the dataset"))?;
    if !real.starts_with(root) {
        return Err(Error::input(relative, "leads outside the dataset folder"));
    }
    Ok(path)
}

fn checked_relative(relative: &str) -> Result<PathBuf> {
    let path = Path::new(relative);
    let ordinary = path.components().all(|part| match part {
        Component::Normal(name) => name.to_str().is_some_and(|n| !n.starts_with('.')),
        _ => false,
    });
    if relative.is_empty() || !ordinary || relative.contains('\\') {
        return Err(Error::input(
            relative,
            "must be a path inside the dataset folder, such as class/image.jpg",
        ));
    }
    Ok(path.to_path_buf())
}

/// `name` if it can be a class folder's or a file's name: not empty, not hidden, no separators.
fn checked_name<'a>(kind: &str, name: &'a str) -> Result<&'a str> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.len() > MAX_NAME
        || name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control());
    if bad {
        return Err(Error::input(
            name,
            format!(
                "is not a {kind} name: give a name without slashes that does not start with a dot (at most {MAX_NAME} bytes)"
            ),
        ));
    }
    Ok(name)
}

/// `folder/name`, or `folder/stem-2.ext`, `-3` and so on: the first that is not taken.
fn free_name(folder: &Path, name: &str) -> PathBuf {
    let wanted = folder.join(name);
    if !wanted.exists() {
        return wanted;
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| folder.join(format!("{stem}-{n}{extension}")))
        .find(|candidate| !candidate.exists())
        .unwrap_or(wanted)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn relative_to(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
    ];

    #[test]
    fn images_move_between_classes_and_come_back_from_the_trash() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DatasetFolder::open(&dir.path().join("new")).unwrap();
        folder.add_class("cats").unwrap();
        folder.add_class("dogs").unwrap();
        assert_eq!(
            folder.add_image("cats", "a.png", PNG).unwrap(),
            "cats/a.png"
        );
        assert_eq!(
            folder.add_image("cats", "a.png", PNG).unwrap(),
            "cats/a-2.png"
        );
        assert_eq!(folder.move_to("cats/a.png", "dogs").unwrap(), "dogs/a.png");
        assert_eq!(folder.trash("dogs/a.png").unwrap(), "dogs/a.png");
        assert!(!folder.root().join("dogs/a.png").exists());
        let listed = folder.list().unwrap();
        assert_eq!(listed.classes, ["cats", "dogs"]);
        assert_eq!(listed.items.len(), 1);
        assert_eq!(folder.restore("dogs/a.png").unwrap(), "dogs/a.png");
        assert!(folder.root().join("dogs/a.png").is_file());
    }

    #[test]
    fn texts_are_written_under_their_first_words() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DatasetFolder::open(dir.path()).unwrap();
        let first = folder
            .add_text("billing", "Why was I charged twice?")
            .unwrap();
        assert_eq!(first, "billing/why-was-i-charged-twice.txt");
        assert_eq!(
            folder
                .add_text("billing", "why was I charged TWICE")
                .unwrap(),
            "billing/why-was-i-charged-twice-2.txt"
        );
        assert_eq!(folder.add_text("other", "?!").unwrap(), "other/text.txt");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&first)).unwrap(),
            "Why was I charged twice?"
        );
        assert!(folder.add_text("billing", "  \n").is_err());
        assert!(folder.add_text("../out", "x").is_err());
    }

    #[test]
    fn paths_outside_the_folder_and_odd_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DatasetFolder::open(dir.path()).unwrap();
        folder.add_class("cats").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
        for name in ["", ".hidden", "a/b", "..", "a\\b"] {
            assert!(folder.add_class(name).is_err(), "{name}");
        }
        for path in [
            "../secret.txt",
            "cats/../../x",
            "/etc/passwd",
            ".headstart-trash/x",
            "cats/none.png",
        ] {
            assert!(folder.existing_file(path).is_err(), "{path}");
            assert!(folder.trash(path).is_err(), "{path}");
        }
        assert!(folder.add_image("cats", "notes.png", b"just text").is_err());
        assert!(folder.add_image("birds", "a.png", PNG).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", dir.path().join("cats/link.png")).unwrap();
            assert!(folder.existing_file("cats/link.png").is_err());
        }
    }
}
