//! Outputs are written to a temporary file beside the destination and renamed into place, so an interrupted
//! run leaves either the old file or the new one, never a half-written one.

use std::io::{Seek, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

const PARTIAL_PREFIX: &str = ".headstart-";
const PARTIAL_SUFFIX: &str = ".partial";
/// A temporary file untouched for this long belongs to a run that was killed: a live write keeps its mtime fresh.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// A destination that can also seek: a zip writer goes back to finish its headers, so an `.npz` streams
/// straight into the file instead of being assembled in memory first.
pub(crate) trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

/// Writes `path` atomically; `fill` writes the contents. Parent directories are created, and the file is on
/// disk (synced) before it replaces the old one.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn WriteSeek) -> Result<()>,
) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_abandoned_partials(dir);
    write_through_partial(path, dir, true, fill)
}

/// [`write_atomic`] for the many small files of a cache: not synced (a torn entry must be detectable by its
/// reader), and the folder is not swept for killed runs' leftovers on every write (the cache does it on open).
pub(crate) fn write_atomic_unsynced(
    path: &Path,
    fill: impl FnOnce(&mut dyn WriteSeek) -> Result<()>,
) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_through_partial(path, dir, false, fill)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn write_through_partial(
    path: &Path,
    dir: &Path,
    sync: bool,
    fill: impl FnOnce(&mut dyn WriteSeek) -> Result<()>,
) -> Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(PARTIAL_PREFIX).suffix(PARTIAL_SUFFIX);
    // A new file gets the mode `File::create` would give it (tempfile's own 0600 would hide outputs from the
    // user's group); a replaced file keeps its mode.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut temp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    if let Ok(existing) = std::fs::metadata(path) {
        temp.as_file()
            .set_permissions(existing.permissions())
            .map_err(|e| Error::io(path, e))?;
    }
    {
        let mut writer = std::io::BufWriter::new(temp.as_file_mut());
        fill(&mut writer)?;
        writer.flush().map_err(|e| Error::io(path, e))?;
    }
    if sync {
        temp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    }
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // The rename itself survives a power cut only once the directory is synced; not every platform can.
    if sync && let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Removes temporary files that killed runs left in `dir` (a killed process cannot remove its own). Best effort:
/// a file that cannot be removed is left for the next run.
pub(crate) fn remove_abandoned_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX)) {
            continue;
        }
        let abandoned = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                now.duration_since(modified)
                    .is_ok_and(|age| age > ABANDONED_AFTER)
            });
        if abandoned && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn new_files_are_not_private_and_replaced_files_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomic(&path, |w| {
            w.write_all(b"one").map_err(|e| Error::io(&path, e))
        })
        .unwrap();
        let created = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The same mode as a file made by File::create under this process's umask.
        let probe = dir.path().join("probe");
        std::fs::File::create(&probe).unwrap();
        let expected = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        assert_eq!(created, expected);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, |w| {
            w.write_all(b"two").map_err(|e| Error::io(&path, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn partials_of_killed_runs_are_removed_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let partial = |name: &str, age: Duration| {
            let path = dir.path().join(name);
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
            path
        };
        let abandoned = partial(".headstart-killed.partial", Duration::from_secs(2 * 3600));
        let in_progress = partial(".headstart-writing.partial", Duration::from_secs(60));
        let not_ours = partial(".other-killed.partial", Duration::from_secs(2 * 3600));
        let path = dir.path().join("out.bin");
        write_atomic(&path, |w| {
            w.write_all(b"new").map_err(|e| Error::io(&path, e))
        })
        .unwrap();
        assert!(!abandoned.exists());
        assert!(in_progress.exists() && not_ours.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
