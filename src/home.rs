//! Where headstart keeps what it fetches: `HEADSTART_HOME`, else the per-user cache directory.

use std::path::PathBuf;

use crate::error::{Error, Result};

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
