//! `.npz` files that numpy opens with `np.load(path)` (no pickle): a zip of `.npy` arrays.
//! Written atomically; read back for training and tests.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::atomic::{WriteSeek, write_atomic};
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
        write_arrays(out, arrays).map_err(|e| Error::io(path, e))
    })
}

/// The zip of `.npy` entries, streamed into `out`. After a failure the archive is abandoned: writes to `out`
/// stop, so the zip writer, which finishes an archive when dropped, has nothing to complain about on
/// stderr, and the first error is the one reported.
fn write_arrays(out: &mut dyn WriteSeek, arrays: &[(&str, NpyArray)]) -> std::io::Result<()> {
    let mut out = Abandonable::new(out);
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let written = arrays.iter().try_for_each(|(name, array)| {
        // Entries of 4 GiB and more need zip64 headers (numpy reads them).
        let options = options.large_file(array.data_bytes() >= u32::MAX as usize);
        zip.start_file(format!("{name}.npy"), options)?;
        write_npy(&mut zip, array)
    });
    let finished = match written {
        Ok(()) => zip.finish().map(drop).map_err(std::io::Error::from),
        Err(error) => {
            drop(zip);
            Err(error)
        }
    };
    match out.failure.take() {
        Some(first) => Err(first),
        None => finished,
    }
}

/// Passes writes and seeks to a fresh stream until the first one fails; after that it keeps the error and
/// answers every call as if it had succeeded, moving a position of its own, and writes nothing.
struct Abandonable<'a> {
    inner: &'a mut dyn WriteSeek,
    failure: Option<std::io::Error>,
    position: u64,
    end: u64,
}

impl<'a> Abandonable<'a> {
    fn new(inner: &'a mut dyn WriteSeek) -> Self {
        Abandonable {
            inner,
            failure: None,
            position: 0,
            end: 0,
        }
    }

    /// `result`'s value, or on its error (which is kept) `otherwise`.
    fn keep<T>(&mut self, result: std::io::Result<T>, otherwise: T) -> T {
        result.unwrap_or_else(|error| {
            self.failure = Some(error);
            otherwise
        })
    }
}

impl Write for Abandonable<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = if self.failure.is_none() {
            let result = self.inner.write(buf);
            self.keep(result, buf.len())
        } else {
            buf.len()
        };
        self.position += written as u64;
        self.end = self.end.max(self.position);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failure.is_none() {
            let result = self.inner.flush();
            self.keep(result, ());
        }
        Ok(())
    }
}

impl Seek for Abandonable<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(by) => self.position.checked_add_signed(by),
            SeekFrom::End(by) => self.end.checked_add_signed(by),
        }
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        if self.failure.is_none() {
            let result = self.inner.seek(SeekFrom::Start(target));
            self.keep(result, target);
        }
        self.position = target;
        Ok(target)
    }
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

/// Deflate shrinks data at most about 1032:1, and real embeddings far less (float32 features compress
/// 1.1–3×). An entry that claims to expand more than this is refused before anything is allocated for it.
const MAX_EXPANSION: u64 = 64;

fn parse_npz(mut reader: impl Read + Seek) -> std::result::Result<Vec<(String, NpyData)>, String> {
    let file_len = reader
        .seek(SeekFrom::End(0))
        .and_then(|len| reader.seek(SeekFrom::Start(0)).map(|_| len))
        .map_err(|e| format!("unreadable: {e}"))?;
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
        let (declared, compressed) = (entry.size(), entry.compressed_size());
        let plausible = compressed <= file_len
            && match entry.compression() {
                zip::CompressionMethod::Stored => declared == compressed,
                _ => declared <= compressed.saturating_mul(MAX_EXPANSION),
            };
        if !plausible {
            return Err(format!(
                "{name}: declares {declared} bytes from {compressed} compressed bytes in a file of {file_len}: \
                 damaged or forged (headstart reads at most {MAX_EXPANSION}x compression)"
            ));
        }
        let array = parse_npy(&mut entry, declared).map_err(|e| format!("{name}: {e}"))?;
        // Reading the entry to its end makes the zip reader check its CRC.
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| format!("{name}: {e}"))?;
        arrays.push((name, array));
    }
    Ok(arrays)
}

/// Reads one `.npy` array of `declared` bytes straight into its values: no copy of the raw bytes is held
/// beside them, and nothing is allocated beyond what the entry declares.
fn parse_npy(input: &mut impl Read, declared: u64) -> std::result::Result<NpyData, String> {
    let truncated = |e: std::io::Error| format!("truncated .npy array: {e}");
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| "not a .npy array")?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".into());
    }
    let header_len = match magic[6] {
        1 => {
            let mut len = [0u8; 2];
            input.read_exact(&mut len).map_err(truncated)?;
            u16::from_le_bytes(len) as u64
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            input.read_exact(&mut len).map_err(truncated)?;
            u32::from_le_bytes(len) as u64
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let prefix = if magic[6] == 1 { 10 } else { 12 };
    let available = declared
        .checked_sub(prefix + header_len)
        .ok_or("truncated .npy header")?;
    let mut header = vec![0u8; header_len as usize];
    input
        .read_exact(&mut header)
        .map_err(|_| "truncated .npy header")?;
    let dict = std::str::from_utf8(&header).map_err(|_| "unreadable .npy header")?;
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
    // The values' size is checked against what the entry holds before anything is allocated for them.
    let len = |size: usize| -> std::result::Result<usize, String> {
        count
            .checked_mul(size)
            .filter(|&len| len as u64 <= available)
            .ok_or_else(|| format!("data is shorter than its shape {shape:?}"))
    };
    let short = |_: std::io::Error| format!("data is shorter than its shape {shape:?}");
    match descr {
        "<f4" => {
            len(4)?;
            let data = read_values(input, count, f32::from_le_bytes).map_err(short)?;
            Ok(NpyData::F32 { shape, data })
        }
        "<i8" => {
            len(8)?;
            let data = read_values(input, count, i64::from_le_bytes).map_err(short)?;
            Ok(NpyData::I64 { shape, data })
        }
        "|b1" => {
            len(1)?;
            let data = read_values(input, count, |[b]: [u8; 1]| b != 0).map_err(short)?;
            Ok(NpyData::Bool(data))
        }
        d if d.starts_with("<U") => {
            let width: usize = d[2..].parse().map_err(|_| format!("bad dtype {d}"))?;
            let mut bytes = vec![0u8; len(4 * width)?];
            input.read_exact(&mut bytes).map_err(short)?;
            let data = bytes
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

/// `count` little-endian values of `N` bytes each, read through a 64 KiB window so that only the values
/// themselves are held whole.
fn read_values<T, const N: usize>(
    input: &mut impl Read,
    count: usize,
    decode: impl Fn([u8; N]) -> T,
) -> std::io::Result<Vec<T>> {
    let mut values = Vec::with_capacity(count);
    let mut window = vec![0u8; (65536 / N).max(1) * N];
    let mut left = count;
    while left > 0 {
        let n = left.min(window.len() / N);
        input.read_exact(&mut window[..n * N])?;
        values.extend(
            window[..n * N]
                .chunks_exact(N)
                .map(|c| decode(c.try_into().expect("chunks_exact gives N bytes"))),
        );
        left -= n;
    }
    Ok(values)
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
        assert!(parse_npy(&mut &b"nope"[..], 4).is_err());
        let mut short = header("<f4", &[10]);
        short.extend_from_slice(&[0; 8]);
        assert!(
            parse_npy(&mut short.as_slice(), short.len() as u64)
                .unwrap_err()
                .contains("shorter")
        );
        assert!(parse_npz(std::io::Cursor::new(b"not a zip".to_vec())).is_err());
    }

    #[test]
    fn an_entry_claiming_more_than_deflate_can_hold_is_refused_unread() {
        // 64 MiB of zeros deflate to about 64 KiB: a ratio no embeddings have.
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut bytes);
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("embeddings.npy", options).unwrap();
        let count = 16 << 20;
        zip.write_all(&header("<f4", &[count])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
        let file = bytes.into_inner();
        assert!(file.len() < 1 << 20, "{} bytes", file.len());
        let err = parse_npz(std::io::Cursor::new(file)).unwrap_err();
        assert!(err.contains("declares") && err.contains("64x"), "{err}");
    }

    #[test]
    fn a_failed_write_is_one_error_and_the_archive_is_abandoned() {
        // A writer that fails after 1000 bytes, as a full disk does.
        struct Full(std::io::Cursor<Vec<u8>>);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0.position() + buf.len() as u64 > 1000 {
                    return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
                }
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Full {
            fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
                self.0.seek(pos)
            }
        }
        let mut out = Full(std::io::Cursor::new(Vec::new()));
        let values = vec![1.0f32; 4096];
        let arrays = [(
            "embeddings",
            NpyArray::F32 {
                shape: vec![4096],
                data: &values,
            },
        )];
        let err = write_arrays(&mut out, &arrays).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    }
}
