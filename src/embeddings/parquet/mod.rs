//! Embeddings as Parquet, the format data platforms read (Spark, DuckDB, Polars, Ray): one row per input, a
//! skipped input included with its reason, the backbone in the file's key-value metadata under `headstart.`.
//! Columns are written and read directly with the `parquet` crate (no Arrow), and the reader takes what
//! `headstart.ray.Embed` writes through Ray as well: a folder of shards is one set. Every column chunk's
//! page headers are checked (`pages.rs`) before the crate decodes it.

mod pages;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, DataType};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::set::{EmbeddedSet, SkipReport, feature_metadata, parse_feature_metadata};
use crate::atomic::write_atomic;
use crate::backbone::Features;
use crate::data::Shard;
use crate::error::{Error, Result};

/// Prefix of headstart's entries in a file's key-value metadata.
pub(crate) const METADATA_PREFIX: &str = "headstart.";

/// Rows per row group: a reader holds one group's columns at a time.
const ROW_GROUP: usize = 4096;

/// `embedding` is a standard three-level list (null for a skipped input); Ray's files store a fixed-size list
/// the same way, with an Arrow schema beside it saying so.
const SCHEMA: &str = "
message headstart_embeddings {
  required binary path (STRING);
  optional binary label (STRING);
  required boolean augmented;
  optional group embedding (LIST) {
    repeated group list {
      required float element;
    }
  }
  optional binary skipped (STRING);
}";

/// Writes `set` and the inputs it `skipped` as one Parquet file, atomically. Skipped inputs come after the
/// embedded ones, with a null embedding and their reason.
pub fn write_parquet(set: &EmbeddedSet, skipped: &[SkipReport], path: &Path) -> Result<()> {
    let schema = Arc::new(parse_message_type(SCHEMA).expect("the schema is valid"));
    let metadata = feature_metadata(&set.features)
        .into_iter()
        .map(|(key, value)| KeyValue::new(format!("{METADATA_PREFIX}{key}"), value))
        .collect();
    let properties = WriterProperties::builder()
        .set_key_value_metadata(Some(metadata))
        // Embeddings are float noise to a compressor; paths are few bytes.
        .set_compression(Compression::UNCOMPRESSED)
        .build();
    let failed = |e: parquet::errors::ParquetError| Error::io(path, std::io::Error::other(e));
    let mut writer =
        SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties)).map_err(failed)?;
    let total = set.rows() + skipped.len();
    for start in (0..total.max(1)).step_by(ROW_GROUP) {
        let rows = start..(start + ROW_GROUP).min(total);
        let mut group = writer.next_row_group().map_err(failed)?;
        let mut column = 0;
        while let Some(mut writer) = group.next_column().map_err(failed)? {
            write_column(writer.untyped(), column, set, skipped, rows.clone()).map_err(failed)?;
            writer.close().map_err(failed)?;
            column += 1;
        }
        group.close().map_err(failed)?;
    }
    let bytes = writer.into_inner().map_err(failed)?;
    write_atomic(path, |file| {
        file.write_all(&bytes).map_err(|e| Error::io(path, e))
    })
}

/// Writes rows `rows` (embedded rows first, then skipped inputs) of column `column` of [`SCHEMA`].
fn write_column(
    writer: &mut ColumnWriter<'_>,
    column: usize,
    set: &EmbeddedSet,
    skipped: &[SkipReport],
    rows: std::ops::Range<usize>,
) -> parquet::errors::Result<()> {
    let embedded = rows.start.min(set.rows())..rows.end.min(set.rows());
    let skips =
        &skipped[rows.start.max(set.rows()) - set.rows()..rows.end.max(set.rows()) - set.rows()];
    let text = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    match (column, writer) {
        (0, ColumnWriter::ByteArrayColumnWriter(w)) => {
            let paths: Vec<ByteArray> = set.paths[embedded.clone()]
                .iter()
                .map(|p| text(p))
                .chain(skips.iter().map(|s| text(&s.path)))
                .collect();
            w.write_batch(&paths, None, None)?;
        }
        (1, ColumnWriter::ByteArrayColumnWriter(w)) => {
            let labels: Vec<ByteArray> = match &set.labels {
                Some(labels) => labels[embedded.clone()]
                    .iter()
                    .map(|&l| text(&set.class_names[l]))
                    .collect(),
                None => Vec::new(),
            };
            let defined = i16::from(set.labels.is_some());
            let levels: Vec<i16> = embedded
                .clone()
                .map(|_| defined)
                .chain(skips.iter().map(|_| 0))
                .collect();
            w.write_batch(&labels, Some(&levels), None)?;
        }
        (2, ColumnWriter::BoolColumnWriter(w)) => {
            let flags: Vec<bool> = set.augmented[embedded.clone()]
                .iter()
                .copied()
                .chain(skips.iter().map(|_| false))
                .collect();
            w.write_batch(&flags, None, None)?;
        }
        (3, ColumnWriter::FloatColumnWriter(w)) => {
            let values = &set.embeddings[embedded.start * set.dim..embedded.end * set.dim];
            let mut definitions = vec![2i16; values.len()];
            let mut repetitions: Vec<i16> = (0..values.len())
                .map(|i| i16::from(i % set.dim.max(1) != 0))
                .collect();
            // A null list: one level, defined only down to the (absent) embedding.
            definitions.extend(skips.iter().map(|_| 0));
            repetitions.extend(skips.iter().map(|_| 0));
            w.write_batch(values, Some(&definitions), Some(&repetitions))?;
        }
        (4, ColumnWriter::ByteArrayColumnWriter(w)) => {
            let reasons: Vec<ByteArray> = skips.iter().map(|s| text(&s.reason)).collect();
            let levels: Vec<i16> = embedded.map(|_| 0).chain(skips.iter().map(|_| 1)).collect();
            w.write_batch(&reasons, Some(&levels), None)?;
        }
        _ => unreachable!("write_column follows SCHEMA"),
    }
    Ok(())
}

/// The `.parquet` files of a folder, sorted; an error if anything else visible is there.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name
            .as_deref()
            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
        {
            continue;
        }
        if path.extension().is_some_and(|e| e == "parquet") && path.is_file() {
            files.push(path);
        } else {
            return Err(Error::input(
                &path,
                "not a .parquet file, in a folder of Parquet shards",
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one Parquet file, or every shard of a folder as one set (in file-name order). Rows whose embedding
/// is null (inputs that were skipped) are left out. Every shard must come from the same backbone; labels are
/// class names (classes sorted), on every row or on none.
pub fn read_parquet(path: &Path) -> Result<EmbeddedSet> {
    let files = if path.is_dir() {
        shard_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let Some((first, others)) = files.split_first() else {
        return Err(Error::input(path, "no .parquet files in this folder"));
    };
    let (mut set, mut labels) = read_file(first)?;
    for file in others {
        let (shard, shard_labels) = read_file(file)?;
        if shard.features.backbone != set.features.backbone
            || shard.features.input != set.features.input
        {
            return Err(Error::input(
                file,
                format!(
                    "made by another backbone or preprocessing than {}: the shards of a set must match",
                    first.display()
                ),
            ));
        }
        if shard.rows() > 0 && set.rows() > 0 && shard.dim != set.dim {
            return Err(Error::input(
                file,
                format!("{}-value embeddings, not {}", shard.dim, set.dim),
            ));
        }
        set.dim = set.dim.max(shard.dim);
        set.embeddings.extend(shard.embeddings);
        set.paths.extend(shard.paths);
        set.augmented.extend(shard.augmented);
        labels.extend(shard_labels);
    }
    labelled(set, labels, path)
}

/// Sorts the rows by path, refuses a file that is there twice, and turns label names into classes.
fn labelled(set: EmbeddedSet, labels: Vec<Option<String>>, path: &Path) -> Result<EmbeddedSet> {
    // Sorted by path, so the set is the same however it was sharded (a stable sort keeps each file's views
    // in order).
    let mut order: Vec<usize> = (0..set.rows()).collect();
    order.sort_by(|&a, &b| set.paths[a].cmp(&set.paths[b]));
    let mut set = set.select(&order);
    let labels: Vec<Option<String>> = order.iter().map(|&i| labels[i].clone()).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = (0..set.rows()).find(|&i| !set.augmented[i] && !seen.insert(&set.paths[i]))
    {
        return Err(Error::input(
            path,
            format!(
                "{} is in more than one row: are two runs' shards in one folder?",
                set.paths[twice]
            ),
        ));
    }
    let named = labels.iter().filter(|l| l.is_some()).count();
    if named == 0 {
        return Ok(set);
    }
    if named != labels.len() {
        return Err(Error::input(
            path,
            format!(
                "{} of {} rows have no label: label every row or none",
                labels.len() - named,
                labels.len()
            ),
        ));
    }
    let labels: Vec<String> = labels.into_iter().flatten().collect();
    set.class_names = labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    set.labels = Some(
        labels
            .iter()
            .map(|l| {
                set.class_names
                    .binary_search(l)
                    .expect("every label is a class")
            })
            .collect(),
    );
    Ok(set)
}

/// Where shard `shard` of a set goes in an output folder.
pub(crate) fn shard_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!(
        "part-{:05}-of-{:05}.parquet",
        shard.index, shard.count
    ))
}

/// Whether `path` already holds embeddings made as `backbone` and `input` make them: a shard an earlier run
/// finished (files are only ever renamed into place whole). One made otherwise is an error, not a skip: a
/// folder of shards is one set.
pub(crate) fn is_finished(path: &Path, features: &Features) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let (_, made) = guarded(path, || open(file, path))?;
    if made.backbone == features.backbone && made.input == features.input {
        Ok(true)
    } else {
        Err(Error::input(
            path,
            "holds embeddings of another backbone or preprocessing: give an output folder of its own",
        ))
    }
}

/// Opens a Parquet file (`path` names it in errors) and reads what made its embeddings.
fn open<R: ChunkReader + 'static>(
    file: R,
    path: &Path,
) -> Result<(SerializedFileReader<R>, Features)> {
    let bad = |message: String| Error::input(path, message);
    let reader =
        SerializedFileReader::new(file).map_err(|e| bad(format!("not a Parquet file ({e})")))?;
    let entries = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |key: &str| {
        entries
            .iter()
            .find(|kv| kv.key == format!("{METADATA_PREFIX}{key}"))
            .and_then(|kv| kv.value.clone())
    };
    let features = parse_feature_metadata(&get).map_err(|message| {
        bad(format!(
            "no headstart embeddings ({message}): write them with `headstart embed --format parquet` or headstart.ray.Embed"
        ))
    })?;
    Ok((reader, features))
}

/// One Parquet file in memory as a set (a fuzz target's way in; `origin` names it in errors).
pub fn read_parquet_bytes(bytes: Vec<u8>, origin: &Path) -> Result<EmbeddedSet> {
    let bytes = bytes::Bytes::from(bytes);
    let (set, labels) = guarded(origin, || read_rows(bytes.clone(), &bytes, origin))?;
    labelled(set, labels, origin)
}

fn read_file(path: &Path) -> Result<(EmbeddedSet, Vec<Option<String>>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let pages = file.try_clone().map_err(|e| Error::io(path, e))?;
    guarded(path, || read_rows(file, &pages, path))
}

/// The parquet crate panics on some damaged files (a dictionary-encoded page without its dictionary, found by
/// fuzzing): such a panic is this file's error.
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::panics::quietly(read).unwrap_or_else(|message| {
        Err(Error::input(
            path,
            format!("damaged Parquet file ({message})"),
        ))
    })
}

/// One file's embedded rows (unlabelled) and each row's label, if it has one. `pages` reads the same bytes
/// as `file`, for the page checks.
fn read_rows<R: ChunkReader + 'static>(
    file: R,
    pages: &R,
    path: &Path,
) -> Result<(EmbeddedSet, Vec<Option<String>>)> {
    let bad = |message: String| Error::input(path, message);
    let (reader, features) = open(file, path)?;
    let metadata = reader.metadata().file_metadata();
    let schema = metadata.schema_descr();
    let find = |name: &str| {
        (0..schema.num_columns()).find(|&i| {
            schema
                .column(i)
                .path()
                .parts()
                .first()
                .is_some_and(|p| p == name)
        })
    };
    let (Some(path_column), Some(embedding_column)) = (find("path"), find("embedding")) else {
        return Err(bad("no 'path' and 'embedding' columns".into()));
    };
    let mut set = EmbeddedSet {
        dim: 0,
        embeddings: Vec::new(),
        labels: None,
        class_names: Vec::new(),
        paths: Vec::new(),
        augmented: Vec::new(),
        features,
    };
    let mut labels = Vec::new();
    let mut budget = pages::ValueBudget::for_file(pages.len());
    for index in 0..reader.num_row_groups() {
        let group = reader
            .get_row_group(index)
            .map_err(|e| bad(format!("row group {index}: {e}")))?;
        let Ok(count) = usize::try_from(group.metadata().num_rows()) else {
            return Err(bad(format!("row group {index}: a negative row count")));
        };
        let at = |name: &str, e: String| bad(format!("column '{name}', row group {index}: {e}"));
        let mut read = |column: usize| {
            pages::check_chunk(
                pages,
                group.metadata().column(column),
                count as u64,
                &mut budget,
            )?;
            read_column(group.as_ref(), column, count)
        };
        let paths = read(path_column)
            .and_then(Column::strings)
            .map_err(|e| at("path", e))?;
        let label_names = match find("label") {
            Some(c) => read(c)
                .and_then(Column::strings)
                .map_err(|e| at("label", e))?,
            None => vec![None; count],
        };
        let augmented = match find("augmented") {
            Some(c) => read(c)
                .and_then(Column::booleans)
                .map_err(|e| at("augmented", e))?,
            None => vec![Some(false); count],
        };
        let element_optional = schema.column(embedding_column).self_type().is_optional();
        let embeddings = read(embedding_column)
            .and_then(|c| c.lists(element_optional))
            .map_err(|e| at("embedding", e))?;
        if [
            paths.len(),
            label_names.len(),
            augmented.len(),
            embeddings.len(),
        ]
        .iter()
        .any(|&n| n != count)
        {
            return Err(bad(format!(
                "row group {index}: columns of different lengths"
            )));
        }
        let rows = paths
            .into_iter()
            .zip(label_names)
            .zip(augmented)
            .zip(embeddings);
        for (((path, label), augmented), embedding) in rows {
            let Some(embedding) = embedding else { continue };
            let Some(path) = path else {
                return Err(bad(format!(
                    "row group {index}: an embedding without a path"
                )));
            };
            if set.rows() == 0 {
                set.dim = embedding.len();
            }
            if embedding.len() != set.dim || embedding.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "{path}: the embedding has {} values (others {}) or NaN/Inf",
                    embedding.len(),
                    set.dim
                )));
            }
            set.embeddings.extend(embedding);
            set.paths.push(path);
            set.augmented.push(augmented.unwrap_or(false));
            labels.push(label);
        }
    }
    Ok((set, labels))
}

/// A column chunk's values with their definition and repetition levels.
struct Levels<T> {
    values: Vec<T>,
    definitions: Vec<i16>,
    repetitions: Vec<i16>,
    max_definition: i16,
}

enum Column {
    Bytes(Levels<ByteArray>),
    Booleans(Levels<bool>),
    Floats(Levels<f32>),
}

fn read_column(
    group: &dyn RowGroupReader,
    column: usize,
    rows: usize,
) -> std::result::Result<Column, String> {
    let max_definition = group
        .metadata()
        .column(column)
        .column_descr()
        .max_def_level();
    let reader = group.get_column_reader(column).map_err(|e| e.to_string())?;
    Ok(match reader {
        ColumnReader::ByteArrayColumnReader(r) => Column::Bytes(drain(r, rows, max_definition)?),
        ColumnReader::BoolColumnReader(r) => Column::Booleans(drain(r, rows, max_definition)?),
        ColumnReader::FloatColumnReader(r) => Column::Floats(drain(r, rows, max_definition)?),
        _ => return Err("unexpected type".into()),
    })
}

fn drain<T: DataType>(
    mut reader: ColumnReaderImpl<T>,
    rows: usize,
    max_definition: i16,
) -> std::result::Result<Levels<T::T>, String> {
    let mut levels = Levels {
        values: Vec::new(),
        definitions: Vec::new(),
        repetitions: Vec::new(),
        max_definition,
    };
    let mut read = 0;
    while read < rows {
        let (records, _, _) = reader
            .read_records(
                rows - read,
                Some(&mut levels.definitions),
                Some(&mut levels.repetitions),
                &mut levels.values,
            )
            .map_err(|e| e.to_string())?;
        if records == 0 {
            return Err(format!("{read} of {rows} rows"));
        }
        read += records;
    }
    Ok(levels)
}

impl<T> Levels<T> {
    /// One optional value per row, for a column that is not a list.
    fn optional(self) -> std::result::Result<Vec<Option<T>>, String> {
        if self.max_definition == 0 {
            return Ok(self.values.into_iter().map(Some).collect());
        }
        let mut values = self.values.into_iter();
        self.definitions
            .iter()
            .map(|&d| match d == self.max_definition {
                true => values
                    .next()
                    .map(Some)
                    .ok_or_else(|| "fewer values than levels".to_string()),
                false => Ok(None),
            })
            .collect()
    }
}

impl Column {
    fn strings(self) -> std::result::Result<Vec<Option<String>>, String> {
        let Column::Bytes(levels) = self else {
            return Err("not strings".into());
        };
        levels
            .optional()?
            .into_iter()
            .map(|v| {
                v.map(|bytes| {
                    String::from_utf8(bytes.data().to_vec()).map_err(|_| "not UTF-8".to_string())
                })
                .transpose()
            })
            .collect()
    }

    fn booleans(self) -> std::result::Result<Vec<Option<bool>>, String> {
        match self {
            Column::Booleans(levels) => levels.optional(),
            _ => Err("not booleans".into()),
        }
    }

    /// One list per row; `None` for a null or empty list. A null element inside a list is an error.
    fn lists(self, element_optional: bool) -> std::result::Result<Vec<Option<Vec<f32>>>, String> {
        let Column::Floats(levels) = self else {
            return Err("not a list of floats".into());
        };
        let mut values = levels.values.into_iter();
        let mut rows: Vec<Option<Vec<f32>>> = Vec::new();
        for (&definition, &repetition) in levels.definitions.iter().zip(&levels.repetitions) {
            if repetition == 0 {
                rows.push(None);
            }
            let row = rows.last_mut().ok_or("a list continues before it starts")?;
            if definition == levels.max_definition {
                let value = values.next().ok_or("fewer values than levels")?;
                row.get_or_insert_with(Vec::new).push(value);
            } else if element_optional && definition == levels.max_definition - 1 {
                return Err("a null value inside an embedding".into());
            }
        }
        Ok(rows)
    }
}
