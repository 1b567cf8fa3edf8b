//! Outputs are written to a temporary file beside the destination and renamed into place, so an interrupted
//! run leaves either the old file or the new one, never a half-written one.

use std::io::{Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// A destination that can also seek: a zip writer goes back to finish its headers, so an `.npz` streams
/// straight into the file instead of being assembled in memory first.
pub trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

/// Writes `path` atomically; `fill` writes the contents. Parent directories are created.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn WriteSeek) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".headstart-").suffix(".partial");
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
    temp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // The rename itself survives a power cut only once the directory is synced; not every platform can.
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
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
}
