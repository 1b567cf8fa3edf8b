//! The NVIDIA side of the CUDA device: is a driver there, which GPUs, and where the CUDA and cuDNN user-space
//! libraries come from. ONNX Runtime's CUDA provider finds those libraries through the dynamic loader; loading
//! them first by absolute path (what onnxruntime's Python `preload_dlls()` does) means no `LD_LIBRARY_PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fetch::{self, RegistryFile};

/// The NVIDIA kernel driver and the GPUs it sees.
#[derive(Debug, Clone, Serialize)]
pub struct Driver {
    pub version: String,
    pub gpus: Vec<String>,
}

/// Where the kernel driver publishes itself on Linux.
const DRIVER_PROC: &str = "/proc/driver/nvidia";

/// The driver, or why there is none. Cheap: reads two small files and loads libcuda.so.1 once.
pub fn driver() -> std::result::Result<Driver, String> {
    let proc = Path::new(DRIVER_PROC);
    let version_file = proc.join("version");
    let text = std::fs::read_to_string(&version_file)
        .map_err(|_| format!("no NVIDIA driver ({} is absent)", version_file.display()))?;
    // "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build …"
    let version = text
        .lines()
        .next()
        .and_then(|line| {
            line.split_whitespace().find(|word| {
                word.contains('.') && word.chars().all(|c| c.is_ascii_digit() || c == '.')
            })
        })
        .unwrap_or("unknown")
        .to_string();
    let mut gpus: Vec<String> = std::fs::read_dir(proc.join("gpus"))
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let info = std::fs::read_to_string(entry.ok()?.path().join("information")).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("Model:"))
                .map(|m| m.trim().to_string())
        })
        .collect();
    gpus.sort();
    // SAFETY: libcuda's initialisers only register the driver; nothing else runs on load.
    if let Err(e) = unsafe { libloading::Library::new("libcuda.so.1") } {
        return Err(format!(
            "the NVIDIA kernel driver {version} is loaded but its user-space library libcuda.so.1 is not: {e}"
        ));
    }
    Ok(Driver { version, gpus })
}

/// Libraries the CUDA provider of onnxruntime-gpu 1.31 (CUDA 13, cuDNN 9) needs, by the name it asks for.
pub(crate) struct LibraryGroup {
    pub name: &'static str,
    pub required: &'static [&'static str],
    /// Loaded when present: some CUDA builds need them, others do not. A trailing `*` matches any ending.
    pub optional: &'static [&'static str],
}

pub(crate) const CUDA: LibraryGroup = LibraryGroup {
    name: "CUDA 13",
    required: &[
        "libcudart.so.13",
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcurand.so.10",
        "libcufft.so.12",
        "libnvrtc.so.13",
    ],
    optional: &["libnvJitLink.so.13", "libnvrtc-builtins.so.13.*"],
};

pub(crate) const CUDNN: LibraryGroup = LibraryGroup {
    name: "cuDNN 9",
    required: &[
        "libcudnn.so.9",
        "libcudnn_graph.so.9",
        "libcudnn_ops.so.9",
        "libcudnn_cnn.so.9",
        "libcudnn_adv.so.9",
        "libcudnn_heuristic.so.9",
        "libcudnn_engines_precompiled.so.9",
        "libcudnn_engines_runtime_compiled.so.9",
    ],
    optional: &["libcudnn_engines_tensor_ir.so.9", "libcudnn_ext.so.9"],
};

/// A place NVIDIA libraries may come from: one or more folders searched together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// What it is, for `doctor`: "beside ONNX Runtime", "Python /usr/lib/python3/site-packages", …
    pub label: String,
    pub dirs: Vec<PathBuf>,
}

impl Source {
    fn find(&self, file: &str) -> Option<PathBuf> {
        let Some(prefix) = file.strip_suffix('*') else {
            return self.dirs.iter().map(|d| d.join(file)).find(|p| p.is_file());
        };
        self.dirs.iter().find_map(|dir| {
            let mut matches: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect();
            matches.sort();
            matches.pop()
        })
    }
}

/// One group's libraries as found in one source, in the order they will be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub group: &'static str,
    pub source: String,
    pub files: Vec<PathBuf>,
}

/// The first source that holds every required library of `group` (optional ones are taken from the same
/// source when it has them); mixing sources could pair libraries of different releases. Otherwise what is
/// missing where, to say why.
pub(crate) fn resolve(
    group: &LibraryGroup,
    sources: &[Source],
) -> std::result::Result<Resolved, String> {
    for source in sources {
        let required: Option<Vec<PathBuf>> =
            group.required.iter().map(|f| source.find(f)).collect();
        if let Some(mut files) = required {
            files.extend(group.optional.iter().filter_map(|f| source.find(f)));
            return Ok(Resolved {
                group: group.name,
                source: source.label.clone(),
                files,
            });
        }
    }
    let searched: Vec<&str> = sources.iter().map(|s| s.label.as_str()).collect();
    Err(format!(
        "no complete {} ({}) in {}",
        group.name,
        group.required.join(", "),
        if searched.is_empty() {
            "any place searched".to_string()
        } else {
            searched.join("; ")
        }
    ))
}

/// Where to look, best first: beside the ONNX Runtime library, Python environments (their
/// `site-packages/nvidia/*/lib`), a system CUDA, then headstart's own cache (`fetched`).
pub(crate) fn sources(runtime_dir: Option<&Path>, fetched: &Path) -> Vec<Source> {
    let mut sources = Vec::new();
    if let Some(dir) = runtime_dir {
        sources.push(Source {
            label: format!("beside ONNX Runtime ({})", dir.display()),
            dirs: vec![dir.to_path_buf()],
        });
    }
    for site in python_site_packages() {
        let dirs = nvidia_package_dirs(&site);
        if !dirs.is_empty() {
            sources.push(Source {
                label: format!("Python packages in {}", site.display()),
                dirs,
            });
        }
    }
    let system: Vec<PathBuf> = [
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|d| d.is_dir())
    .collect();
    if !system.is_empty() {
        sources.push(Source {
            label: "the system".into(),
            dirs: system,
        });
    }
    sources.push(Source {
        label: format!("headstart's cache ({})", fetched.display()),
        dirs: vec![fetched.to_path_buf()],
    });
    sources
}

/// `site-packages/nvidia/*/lib`: CUDA 13 wheels share `nvidia/cu13/lib`, older ones have a folder each.
pub(crate) fn nvidia_package_dirs(site_packages: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(site_packages.join("nvidia"))
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path().join("lib")))
        .filter(|lib| lib.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The site-packages folders of the Python headstart uses for pip, and of an active virtual or conda
/// environment, without importing anything heavy.
fn python_site_packages() -> Vec<PathBuf> {
    let mut interpreters = vec![PathBuf::from(crate::fetch::python())];
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
            interpreters.push(Path::new(&prefix).join("bin").join("python3"));
        }
    }
    let script = "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))";
    let mut found: Vec<PathBuf> = Vec::new();
    for python in interpreters {
        let Ok(output) = Command::new(&python).args(["-c", script]).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let dir = PathBuf::from(line.trim());
            if !line.trim().is_empty() && dir.is_dir() && !found.contains(&dir) {
                found.push(dir);
            }
        }
    }
    found
}

/// A library loaded ahead of the CUDA provider.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedLibrary {
    pub name: String,
    pub path: PathBuf,
    pub group: String,
    pub source: String,
}

/// Loads the resolved libraries by absolute path, globally, and keeps them loaded for the process's life.
/// Libraries that need another of the set are retried after it, so the order inside a group does not matter.
pub(crate) fn preload(groups: &[Resolved]) -> std::result::Result<Vec<LoadedLibrary>, String> {
    let mut pending: Vec<(&Resolved, &PathBuf)> = groups
        .iter()
        .flat_map(|g| g.files.iter().map(move |f| (g, f)))
        .collect();
    let mut loaded = Vec::new();
    while !pending.is_empty() {
        let mut failures = Vec::new();
        let before = pending.len();
        pending.retain(|(group, path)| match load_global(path) {
            Ok(()) => {
                loaded.push(LoadedLibrary {
                    name: file_name(path),
                    path: path.to_path_buf(),
                    group: group.group.to_string(),
                    source: group.source.clone(),
                });
                false
            }
            Err(e) => {
                failures.push(e);
                true
            }
        });
        if pending.len() == before {
            return Err(failures.join("; "));
        }
    }
    Ok(loaded)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(unix)]
fn load_global(path: &Path) -> std::result::Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: NVIDIA's libraries run only their own initialisers on load. They stay loaded on purpose: the CUDA
    // provider finds them by name later.
    match unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(library) => {
            std::mem::forget(library);
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(not(unix))]
fn load_global(path: &Path) -> std::result::Result<(), String> {
    // SAFETY: as above.
    match unsafe { libloading::Library::new(path) } {
        Ok(library) => {
            std::mem::forget(library);
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Where fetched NVIDIA libraries live: one folder (their RUNPATH is `$ORIGIN`, so they find each other).
pub(crate) fn cache_dir() -> Result<PathBuf> {
    Ok(crate::home_dir::part("runtime")?.join("nvidia-cu13"))
}

/// The NVIDIA wheels onnxruntime-gpu 1.31.1 declares (extras `cuda` and `cudnn`, and what those wheels
/// require in turn: cuBLAS for cuDNN, nvJitLink for cuFFT), pinned to versions that satisfy its metadata.
const WHEELS: &[(&str, &[(&str, &str)])] = &[
    (
        "nvidia-cuda-runtime==13.5.37",
        &[(
            "nvidia/cu13/lib/libcudart.so.13",
            "be114eaabb3f3251cf30b6e334be5e8c3cf1b12c0a11c17295a810dd83cc141a",
        )],
    ),
    (
        "nvidia-cublas==13.10.0.20",
        &[
            (
                "nvidia/cu13/lib/libcublas.so.13",
                "863f349b5352363c66079090d43d9d56ad3d676373ecac18418fd4fb2d0579d1",
            ),
            (
                "nvidia/cu13/lib/libcublasLt.so.13",
                "b58e18ab4a6adc9bf4833d5cfe28db688e675fd6021db7eaf5da78d23f95d2de",
            ),
        ],
    ),
    (
        "nvidia-curand==10.4.5.25",
        &[(
            "nvidia/cu13/lib/libcurand.so.10",
            "82586610865e67dc73505087e04dd40a3cc69b281028731ce763faafe14b1347",
        )],
    ),
    (
        "nvidia-cufft==12.5.0.14",
        &[(
            "nvidia/cu13/lib/libcufft.so.12",
            "fbc2100d3725d93ebd5c407c4c33717097f34ec0fd01ee899be4c9712b671774",
        )],
    ),
    (
        "nvidia-nvjitlink==13.5.37",
        &[(
            "nvidia/cu13/lib/libnvJitLink.so.13",
            "0ba4a7e2c0819291ce928513755f4931dd69c77c63fb77677d14dc1360f28601",
        )],
    ),
    (
        "nvidia-cuda-nvrtc==13.5.37",
        &[
            (
                "nvidia/cu13/lib/libnvrtc.so.13",
                "98a317ff5d2176dee5a04235c6663f8d553d5ed95b3104cbf7fb198cbf76a10d",
            ),
            (
                "nvidia/cu13/lib/libnvrtc-builtins.so.13.5",
                "6cecb2fd3e562bab1cb1c6e192f8f828157683c8febb22a00e178f9faf4e7f6a",
            ),
        ],
    ),
    (
        "nvidia-cudnn-cu13==9.28.1.4",
        &[
            (
                "nvidia/cudnn/lib/libcudnn.so.9",
                "f756cabeed9b481134769fdbc0c2ae022cf52ac39aab08be26ea990a56da2efc",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_graph.so.9",
                "06c28f04f028466cf33461a7d645210146015d425a0dae6c7dc7e60c07c4d973",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_ops.so.9",
                "e849b0a7353eec5bb5c9f75d841d075d786e205d84f8fd07b092770554674e48",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_cnn.so.9",
                "2512f47e6e33000e12be5b2e59ac71eb8f5805a548561e7637e4413d1b7cdeb7",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_adv.so.9",
                "d69ed7d8adc4524ddb6cbf5e10211e35f580d14e40924692f0cdf1b78cf23ab2",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_heuristic.so.9",
                "7738da4dd6fee9597680ff595863743b2bc4bd5b0ec3edb4e8e9d28a2b5e629d",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",
                "51bd1d25591ae2994120aac5c5be172e31b973e0fdeba43a50647949096ee40a",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9",
                "738655d1b9441a752fde9b9911780635e60fe96113f2b06c1af6d70458ef5174",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_engines_tensor_ir.so.9",
                "ff088c803f896fd9a92c0ab861026ff3b7ee5a4222713c3dd8221e1c843e74ec",
            ),
            (
                "nvidia/cudnn/lib/libcudnn_ext.so.9",
                "46c273e178b7733ffa5d56bd9719f378a20b94e07d2ccf23c4078e22bced0652",
            ),
        ],
    ),
];

/// Every pinned NVIDIA library with the place it goes in the cache.
pub(crate) fn pinned_files(dir: &Path) -> Vec<(RegistryFile, PathBuf)> {
    WHEELS
        .iter()
        .flat_map(|(package, members)| {
            members.iter().map(move |(file, sha256)| {
                let spec = RegistryFile {
                    package: (*package).to_string(),
                    file: (*file).to_string(),
                    sha256: (*sha256).to_string(),
                    platform: Some("manylinux_2_28_x86_64".into()),
                };
                let dest = dir.join(spec.file_name());
                (spec, dest)
            })
        })
        .collect()
}

/// Fetches the pinned NVIDIA libraries into [`cache_dir`], after checking the pins still satisfy what the
/// onnxruntime-gpu wheel's own metadata asks for.
pub(crate) fn fetch() -> Result<()> {
    let metadata = super::library::gpu_metadata()?;
    check_pins(&metadata)?;
    fetch::ensure_all(&pinned_files(&cache_dir()?))
}

/// Each NVIDIA requirement of the `cuda` and `cudnn` extras in a wheel's METADATA must be met by a pin.
pub(crate) fn check_pins(metadata: &str) -> Result<()> {
    let pins: Vec<(&str, &str)> = WHEELS
        .iter()
        .filter_map(|(package, _)| package.split_once("=="))
        .collect();
    for line in metadata.lines() {
        let Some(requirement) = line.strip_prefix("Requires-Dist:") else {
            continue;
        };
        let (spec, marker) = requirement.split_once(';').unwrap_or((requirement, ""));
        if !(marker.contains("\"cuda\"") || marker.contains("\"cudnn\"")) {
            continue;
        }
        let spec = spec.trim();
        let name_end = spec
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(spec.len());
        let (name, constraint) = spec.split_at(name_end);
        let Some((_, version)) = pins.iter().find(|(pinned, _)| *pinned == name) else {
            return Err(Error::Fetch(format!(
                "onnxruntime-gpu {} needs {name}, which headstart does not pin",
                super::PINNED_VERSION
            )));
        };
        if !satisfies(version, constraint.trim()) {
            return Err(Error::Fetch(format!(
                "onnxruntime-gpu {} needs {spec}; headstart pins {name}=={version}",
                super::PINNED_VERSION
            )));
        }
    }
    Ok(())
}

/// Whether `version` meets a comma-separated PEP 440 constraint of the simple kinds wheel metadata uses
/// (`~=`, `==`, `>=`, `<=`, `>`, `<`; numeric release segments only).
fn satisfies(version: &str, constraint: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let have = parse(version);
    constraint
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .all(|clause| {
            let clause = clause.trim();
            let op_len = clause
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(clause.len());
            let (op, wanted) = clause.split_at(op_len);
            let want = parse(wanted);
            let compare = |a: &[u64], b: &[u64]| {
                let len = a.len().max(b.len());
                let pad = |v: &[u64]| {
                    (0..len)
                        .map(|i| v.get(i).copied().unwrap_or(0))
                        .collect::<Vec<_>>()
                };
                pad(a).cmp(&pad(b))
            };
            match op.trim() {
                // ~=13.0 means >=13.0 and the same 13.* release.
                "~=" => {
                    let prefix = &want[..want.len().saturating_sub(1).max(1)];
                    compare(&have, &want).is_ge() && have.starts_with(prefix)
                }
                "==" => compare(&have, &want).is_eq(),
                ">=" => compare(&have, &want).is_ge(),
                "<=" => compare(&have, &want).is_le(),
                ">" => compare(&have, &want).is_gt(),
                "<" => compare(&have, &want).is_lt(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), b"").unwrap();
        }
    }

    #[test]
    fn a_group_comes_whole_from_the_first_source_that_has_it() {
        let root = tempfile::tempdir().unwrap();
        let partial = root.path().join("partial");
        touch(&partial, &CUDA.required[..3]);
        let site = root.path().join("site-packages");
        touch(&site.join("nvidia/cu13/lib"), CUDA.required);
        touch(
            &site.join("nvidia/cu13/lib"),
            &["libnvJitLink.so.13", "libnvrtc-builtins.so.13.0"],
        );
        touch(&site.join("nvidia/cudnn/lib"), CUDNN.required);
        let sources = vec![
            Source {
                label: "partial".into(),
                dirs: vec![partial.clone()],
            },
            Source {
                label: "python".into(),
                dirs: nvidia_package_dirs(&site),
            },
        ];
        let cuda = resolve(&CUDA, &sources).unwrap();
        assert_eq!(cuda.source, "python");
        assert_eq!(cuda.files.len(), CUDA.required.len() + 2);
        assert!(cuda.files[0].ends_with("nvidia/cu13/lib/libcudart.so.13"));
        assert!(
            cuda.files
                .last()
                .unwrap()
                .ends_with("libnvrtc-builtins.so.13.0")
        );
        let cudnn = resolve(&CUDNN, &sources).unwrap();
        assert!(
            cudnn
                .files
                .iter()
                .all(|f| f.starts_with(site.join("nvidia/cudnn/lib")))
        );

        let err = resolve(&CUDNN, &sources[..1]).unwrap_err();
        assert!(
            err.contains("cuDNN 9") && err.contains("libcudnn.so.9") && err.contains("partial"),
            "{err}"
        );
    }

    /// The `Requires-Dist` lines of onnxruntime_gpu-1.31.1.dist-info/METADATA, as published.
    const GPU_METADATA: &str = "Name: onnxruntime-gpu\nVersion: 1.31.1\n\
        Requires-Dist: flatbuffers\nRequires-Dist: numpy>=1.21.6\nRequires-Dist: packaging\n\
        Requires-Dist: protobuf>=4.25.8\nProvides-Extra: symbolic\nRequires-Dist: sympy; extra == \"symbolic\"\n\
        Provides-Extra: quantization\nRequires-Dist: ml_dtypes; extra == \"quantization\"\nProvides-Extra: cuda\n\
        Requires-Dist: nvidia-cuda-nvrtc~=13.0; extra == \"cuda\"\n\
        Requires-Dist: nvidia-cuda-runtime~=13.0; extra == \"cuda\"\n\
        Requires-Dist: nvidia-cufft~=12.0; extra == \"cuda\"\n\
        Requires-Dist: nvidia-curand~=10.0; extra == \"cuda\"\nProvides-Extra: cudnn\n\
        Requires-Dist: nvidia-cudnn-cu13~=9.0; extra == \"cudnn\"\n";

    #[test]
    fn pins_meet_the_wheel_metadata() {
        check_pins(GPU_METADATA).unwrap();
        let newer = GPU_METADATA.replace("nvidia-cufft~=12.0", "nvidia-cufft~=13.0");
        let err = check_pins(&newer).unwrap_err().to_string();
        assert!(
            err.contains("nvidia-cufft~=13.0") && err.contains("12.5.0.14"),
            "{err}"
        );
        let unknown =
            format!("{GPU_METADATA}Requires-Dist: nvidia-cusparse~=12.0; extra == \"cuda\"\n");
        assert!(
            check_pins(&unknown)
                .unwrap_err()
                .to_string()
                .contains("nvidia-cusparse")
        );
        assert!(satisfies("13.5.37", "~=13.0") && !satisfies("14.0", "~=13.0"));
        assert!(satisfies("9.28.1.4", "~=9.0") && !satisfies("8.9", "~=9.0"));
        assert!(satisfies("1.2", ">=1.1,<2") && !satisfies("2.0", ">=1.1,<2"));
        let files = pinned_files(Path::new("/cache"));
        assert!(
            files
                .iter()
                .all(|(spec, dest)| dest.parent() == Some(Path::new("/cache"))
                    && dest.ends_with(spec.file_name())
                    && spec.sha256.len() == 64)
        );
        for group in [&CUDA, &CUDNN] {
            for name in group.required {
                assert!(
                    files.iter().any(|(s, _)| s.file_name() == *name),
                    "{name} is not pinned"
                );
            }
        }
    }

    #[test]
    fn loading_stops_with_every_reason_when_nothing_loads() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), &["libcudart.so.13"]);
        let group = Resolved {
            group: "CUDA 13",
            source: "test".into(),
            files: vec![root.path().join("libcudart.so.13")],
        };
        let err = preload(&[group]).unwrap_err();
        assert!(err.contains("libcudart.so.13"), "{err}");
    }

    #[test]
    fn this_machine_has_no_driver_or_says_which() {
        match driver() {
            Ok(driver) => assert!(!driver.version.is_empty()),
            Err(reason) => assert!(reason.contains("NVIDIA"), "{reason}"),
        }
    }
}
