//! `.npz` files that numpy opens with `np.load(path)` (no pickle): a zip of `.npy` arrays.
//! Written atomically; read back for training and tests.

use std::io::{Read, Seek, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// One array to store.
pub enum NpyArray<'a> {
    F32 {
        shape: Vec<usize>,
        data: &'a [f32],
    },
    I64 {
        shape: Vec<usize>,
        data: &'a [i64],
    },
    Bool(&'a [bool]),
    /// Fixed-width unicode strings (`<U`), 1-D; a single string is stored 0-D.
    Strings(&'a [String]),
    Str(&'a str),
}

impl NpyArray<'_> {
    /// The size of the values, header aside (strings are fixed-width, 4 bytes a character).
    fn data_bytes(&self) -> usize {
        match self {
            NpyArray::F32 { data, .. } => data.len() * 4,
            NpyArray::I64 { data, .. } => data.len() * 8,
            NpyArray::Bool(data) => data.len(),
            NpyArray::Strings(strings) => {
                4 * strings.len() * string_width(strings.iter().map(String::as_str))
            }
            NpyArray::Str(text) => 4 * string_width(std::iter::once(*text)),
        }
    }
}

/// An array read back.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32 {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    I64 {
        shape: Vec<usize>,
        data: Vec<i64>,
    },
    Bool(Vec<bool>),
    Strings {
        shape: Vec<usize>,
        data: Vec<String>,
    },
}

/// Writes `arrays` (name without `.npy`) to `path` atomically.
pub fn write_npz(path: &Path, arrays: &[(&str, NpyArray)]) -> Result<()> {
    write_atomic(path, |out| {
        let mut zip = zip::ZipWriter::new(out);
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, array) in arrays {
            // Entries of 4 GiB and more need zip64 headers (numpy reads them).
            let options = options.large_file(array.data_bytes() >= u32::MAX as usize);
            zip.start_file(format!("{name}.npy"), options)
                .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
            write_npy(&mut zip, array).map_err(|e| Error::io(path, e))?;
        }
        zip.finish()
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
        Ok(())
    })
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + dict + newline is padded to a multiple of 64.
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - total % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn write_npy(out: &mut impl Write, array: &NpyArray) -> std::io::Result<()> {
    match array {
        NpyArray::F32 { shape, data } => {
            out.write_all(&header("<f4", shape))?;
            for v in *data {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        NpyArray::I64 { shape, data } => {
            out.write_all(&header("<i8", shape))?;
            for v in *data {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        NpyArray::Bool(data) => {
            out.write_all(&header("|b1", &[data.len()]))?;
            out.write_all(&data.iter().map(|&b| b as u8).collect::<Vec<_>>())?;
        }
        NpyArray::Strings(strings) => {
            write_strings(out, strings.iter().map(String::as_str), &[strings.len()])?
        }
        NpyArray::Str(text) => write_strings(out, std::iter::once(*text), &[])?,
    }
    Ok(())
}

/// The `<U` width: the longest string's characters, at least 1.
fn string_width<'a>(strings: impl Iterator<Item = &'a str>) -> usize {
    strings.map(|s| s.chars().count()).max().unwrap_or(0).max(1)
}

fn write_strings<'a>(
    out: &mut impl Write,
    strings: impl Iterator<Item = &'a str> + Clone,
    shape: &[usize],
) -> std::io::Result<()> {
    let width = string_width(strings.clone());
    out.write_all(&header(&format!("<U{width}"), shape))?;
    for s in strings {
        let mut count = 0;
        for c in s.chars() {
            out.write_all(&(c as u32).to_le_bytes())?;
            count += 1;
        }
        out.write_all(&vec![0u8; 4 * (width - count)])?;
    }
    Ok(())
}

/// Reads every array of an `.npz` file.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyData)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_npz_from(std::io::BufReader::new(file), path)
}

/// Reads every array of an `.npz` held in memory or any seekable stream; `origin` names it in errors.
pub fn read_npz_from(reader: impl Read + Seek, origin: &Path) -> Result<Vec<(String, NpyData)>> {
    parse_npz(reader).map_err(|message| Error::input(origin, message))
}

fn parse_npz(reader: impl Read + Seek) -> std::result::Result<Vec<(String, NpyData)>, String> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not an .npz file: {e}"))?;
    let mut arrays = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("unreadable entry: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("unreadable entry name: {e}"))?
            .trim_end_matches(".npy")
            .to_string();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{name}: {e}"))?;
        arrays.push((
            name.clone(),
            parse_npy(&bytes).map_err(|e| format!("{name}: {e}"))?,
        ));
    }
    Ok(arrays)
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyData, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let dict = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let at = dict.find(&format!("'{key}'"))? + key.len() + 2;
        Some(dict[at..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")
        .and_then(|d| d.strip_prefix('\''))
        .and_then(|d| d.split('\'').next())
        .ok_or("no descr")?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape ({shape_text})"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or("shape overflows")?;
    let body = &bytes[start + header_len..];
    let need = |size: usize| -> std::result::Result<&[u8], String> {
        let len = count.checked_mul(size).ok_or("shape overflows")?;
        body.get(..len)
            .ok_or_else(|| format!("data is shorter than its shape {shape:?}"))
    };
    match descr {
        "<f4" => Ok(NpyData::F32 {
            data: need(4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            shape,
        }),
        "<i8" => Ok(NpyData::I64 {
            data: need(8)?
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            shape,
        }),
        "|b1" => Ok(NpyData::Bool(need(1)?.iter().map(|&b| b != 0).collect())),
        d if d.starts_with("<U") => {
            let width: usize = d[2..].parse().map_err(|_| format!("bad dtype {d}"))?;
            let data = need(4 * width)?
                .chunks_exact(4 * width.max(1))
                .map(|chunk| {
                    chunk
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .take_while(|&c| c != 0)
                        .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect()
                })
                .collect();
            Ok(NpyData::Strings { shape, data })
        }
        other => Err(format!(
            "dtype {other} is not supported (float32, int64, bool, unicode)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npz");
        let names = vec!["cat".to_string(), "døg🐕".to_string()];
        write_npz(
            &path,
            &[
                (
                    "embeddings",
                    NpyArray::F32 {
                        shape: vec![2, 3],
                        data: &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5],
                    },
                ),
                (
                    "labels",
                    NpyArray::I64 {
                        shape: vec![2],
                        data: &[0, -1],
                    },
                ),
                ("augmented", NpyArray::Bool(&[false, true])),
                ("class_names", NpyArray::Strings(&names)),
                ("backbone", NpyArray::Str("efficientnet-lite0")),
            ],
        )
        .unwrap();
        let arrays = read_npz(&path).unwrap();
        assert_eq!(arrays.len(), 5);
        assert_eq!(
            arrays[0].1,
            NpyData::F32 {
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]
            }
        );
        assert_eq!(
            arrays[1].1,
            NpyData::I64 {
                shape: vec![2],
                data: vec![0, -1]
            }
        );
        assert_eq!(arrays[2].1, NpyData::Bool(vec![false, true]));
        assert_eq!(
            arrays[3].1,
            NpyData::Strings {
                shape: vec![2],
                data: names
            }
        );
        assert_eq!(
            arrays[4].1,
            NpyData::Strings {
                shape: vec![],
                data: vec!["efficientnet-lite0".into()]
            }
        );
    }

    #[test]
    fn headers_are_aligned() {
        for shape in [vec![], vec![7], vec![123456, 1280]] {
            assert_eq!(header("<f4", &shape).len() % 64, 0);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_npy(b"nope").is_err());
        let mut short = header("<f4", &[10]);
        short.extend_from_slice(&[0; 8]);
        assert!(parse_npy(&short).unwrap_err().contains("shorter"));
        assert!(parse_npz(std::io::Cursor::new(b"not a zip".to_vec())).is_err());
    }
}
