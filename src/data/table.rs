//! A text table (CSV, TSV or JSON Lines) edited in place without losing anything: rows added, a row's label
//! changed, rows put in a table of the same name in `.headstart-trash/` beside it (and back out). An edit rewrites
//! only the record it touches; every other byte of the file stays as it was, columns headstart does not read
//! included.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

use super::folder::TRASH;
use super::texts::{TableFormat, TextDataset, TextOptions, parse_with_spans};

/// The longest label taken, in bytes.
const MAX_LABEL: usize = 200;

/// A labelled text table on disk.
#[derive(Debug)]
pub struct TextTable {
    path: PathBuf,
    format: TableFormat,
    columns: TextOptions,
    /// An edit reads, changes and rewrites the file: one at a time.
    editing: Mutex<()>,
}

impl TextTable {
    /// The table at `path` (.csv, .tsv or .jsonl), read with `columns`; one that does not exist yet is made by the
    /// first rows added.
    pub fn open(path: &Path, columns: TextOptions) -> Result<TextTable> {
        let format = TableFormat::from_path(path)?;
        let name = path
            .file_name()
            .ok_or_else(|| Error::input(path, "names no file"))?;
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let folder = folder.canonicalize().map_err(|e| Error::io(folder, e))?;
        let path = folder.join(name);
        if path.exists() && !path.is_file() {
            return Err(Error::input(&path, "not a file"));
        }
        Ok(TextTable {
            path,
            format,
            columns,
            editing: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rows as training reads them (none while the file does not exist).
    pub fn read(&self) -> Result<TextDataset> {
        Ok(self.load()?.1)
    }

    /// Appends one row per text, labelled `label`; returns how many were added. Blank texts are refused.
    pub fn add_rows(&self, label: &str, texts: &[String]) -> Result<usize> {
        let label = checked_label(label)?;
        if let Some(blank) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::input(
                &self.path,
                format!("text {} of those added is blank", blank + 1),
            ));
        }
        let _one_at_a_time = self.lock();
        let (mut bytes, _, _) = self.load()?;
        let header = self.header(&bytes)?;
        if bytes.is_empty() {
            bytes = self.header_line(&bytes)?;
        }
        for text in texts {
            let record = self.new_record(&header, text, label)?;
            append_record(&mut bytes, &record);
        }
        self.write(&bytes)?;
        Ok(texts.len())
    }

    /// Gives the row `id` the label `label`. `text` is the row's text as the caller saw it: a row that no longer
    /// holds it (the file changed since) is refused rather than another row relabelled.
    pub fn relabel(&self, id: &str, text: &str, label: &str) -> Result<()> {
        let label = checked_label(label)?;
        let _one_at_a_time = self.lock();
        let (bytes, dataset, spans) = self.load()?;
        let span = find(&self.path, &dataset, &spans, id, Some(text))?;
        let record = self.relabelled(&self.header(&bytes)?, &bytes[span.clone()], label)?;
        let mut edited = bytes[..span.start].to_vec();
        edited.extend_from_slice(&record);
        edited.extend_from_slice(&bytes[span.end..]);
        self.write(&edited)
    }

    /// Moves the row `id` (holding `text`) to the table of the same name in `.headstart-trash/` beside this one,
    /// as it was byte for byte; returns its id there, for [`TextTable::restore`].
    pub fn trash(&self, id: &str, text: &str) -> Result<String> {
        let _one_at_a_time = self.lock();
        let (bytes, dataset, spans) = self.load()?;
        let span = find(&self.path, &dataset, &spans, id, Some(text))?;
        let trash = self.trash_table()?;
        let trashed = trash.append_raw(&bytes[span.clone()], || self.header_line(&bytes))?;
        self.write(&cut(&bytes, span))?;
        Ok(trashed)
    }

    /// Moves the row `trashed` (an id [`TextTable::trash`] answered) from the trash back to the end of this table;
    /// returns its id here.
    pub fn restore(&self, trashed: &str) -> Result<String> {
        let _one_at_a_time = self.lock();
        let trash = self.trash_table()?;
        let (trash_bytes, trash_rows, trash_spans) = trash.load()?;
        let span = find(&trash.path, &trash_rows, &trash_spans, trashed, None)?;
        let restored = self.append_raw(&trash_bytes[span.clone()], || {
            trash.header_line(&trash_bytes)
        })?;
        trash.write(&cut(&trash_bytes, span))?;
        Ok(restored)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.editing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's bytes, its rows and where each lies; nothing while it does not exist.
    fn load(&self) -> Result<(Vec<u8>, TextDataset, Vec<Range<usize>>)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            let empty = TextDataset {
                source: self.path.clone(),
                classes: Vec::new(),
                items: Vec::new(),
                skipped: Vec::new(),
            };
            return Ok((Vec::new(), empty, Vec::new()));
        }
        let (dataset, spans) = parse_with_spans(&bytes, self.format, &self.columns, &self.path)?;
        Ok((bytes, dataset, spans))
    }

    fn write(&self, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path, |out| {
            out.write_all(bytes).map_err(|e| Error::io(&self.path, e))
        })
    }

    /// Appends a record as it is (making the file, starting with what `header` gives, if it is new); returns the
    /// record's id.
    fn append_raw(
        &self,
        record: &[u8],
        header: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<String> {
        let (mut bytes, _, _) = self.load()?;
        if bytes.is_empty() {
            bytes = header()?;
        }
        let start = append_record(&mut bytes, record);
        self.write(&bytes)?;
        Ok(format!(
            "{}:{}",
            self.file_name(),
            bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1
        ))
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    }

    fn trash_table(&self) -> Result<TextTable> {
        let folder = self.path.with_file_name(TRASH);
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        TextTable::open(&folder.join(self.file_name()), self.columns.clone())
    }

    /// The header line a table with this one's columns starts with (with `bytes`'s line break), `bytes` being
    /// this table's as loaded; JSON Lines has none.
    fn header_line(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        match self.format {
            TableFormat::JsonLines => Ok(Vec::new()),
            TableFormat::Csv | TableFormat::Tsv => {
                let mut line = self.delimited(&self.header(bytes)?)?;
                line.extend_from_slice(line_break(bytes));
                Ok(line)
            }
        }
    }

    /// The fields of a delimited table's header line, from its bytes as loaded (a new table's are the text and
    /// label columns); JSON Lines has none.
    fn header(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.format == TableFormat::JsonLines {
            return Ok(Vec::new());
        }
        if bytes.is_empty() {
            return Ok(vec![
                self.columns.text_column.clone().into_bytes(),
                self.columns.label_column.clone().into_bytes(),
            ]);
        }
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.format.delimiter())
            .flexible(true)
            .from_reader(body);
        let header = reader
            .byte_headers()
            .map_err(|e| Error::input(&self.path, format!("cannot read the header line: {e}")))?;
        Ok(header.iter().map(<[u8]>::to_vec).collect())
    }

    /// One record of a delimited table, quoted where it must be, without its line break.
    fn delimited(&self, fields: &[Vec<u8>]) -> Result<Vec<u8>> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.format.delimiter())
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        writer
            .write_record(fields)
            .map_err(|e| Error::input(&self.path, format!("cannot write a record: {e}")))?;
        let mut record = writer
            .into_inner()
            .map_err(|e| Error::input(&self.path, format!("cannot write a record: {e}")))?;
        record.pop();
        Ok(record)
    }

    /// A new row holding `text` and `label`, other columns empty (`header`: the table's, from [`Self::header`]).
    fn new_record(&self, header: &[Vec<u8>], text: &str, label: &str) -> Result<Vec<u8>> {
        match self.format {
            TableFormat::JsonLines => {
                let mut object = serde_json::Map::new();
                object.insert(self.columns.text_column.clone(), text.into());
                object.insert(self.columns.label_column.clone(), label.into());
                Ok(serde_json::Value::Object(object).to_string().into_bytes())
            }
            TableFormat::Csv | TableFormat::Tsv => {
                let mut fields = vec![Vec::new(); header.len()];
                fields[self.column(header, &self.columns.text_column)?] = text.into();
                fields[self.column(header, &self.columns.label_column)?] = label.into();
                self.delimited(&fields)
            }
        }
    }

    /// `record` (one record's bytes) with its label replaced (`header`: the table's, from [`Self::header`]).
    fn relabelled(&self, header: &[Vec<u8>], record: &[u8], label: &str) -> Result<Vec<u8>> {
        match self.format {
            TableFormat::JsonLines => {
                let mut value: serde_json::Value = serde_json::from_slice(record)
                    .map_err(|e| Error::input(&self.path, format!("a row is not JSON: {e}")))?;
                let object = value
                    .as_object_mut()
                    .ok_or_else(|| Error::input(&self.path, "a row is not a JSON object"))?;
                object.insert(self.columns.label_column.clone(), label.into());
                Ok(value.to_string().into_bytes())
            }
            TableFormat::Csv | TableFormat::Tsv => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(self.format.delimiter())
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(record);
                let mut fields = csv::ByteRecord::new();
                reader
                    .read_byte_record(&mut fields)
                    .map_err(|e| Error::input(&self.path, format!("cannot read a row: {e}")))?;
                let mut fields: Vec<Vec<u8>> = fields.iter().map(<[u8]>::to_vec).collect();
                let at = self.column(header, &self.columns.label_column)?;
                let field = fields
                    .get_mut(at)
                    .ok_or_else(|| Error::input(&self.path, "a row lacks the label column"))?;
                *field = label.into();
                self.delimited(&fields)
            }
        }
    }

    fn column(&self, header: &[Vec<u8>], name: &str) -> Result<usize> {
        header
            .iter()
            .position(|h| String::from_utf8_lossy(h).trim() == name)
            .ok_or_else(|| Error::MissingColumn {
                path: self.path.clone(),
                role: if name == self.columns.text_column {
                    "text"
                } else {
                    "label"
                },
                wanted: name.to_string(),
                available: header
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect(),
            })
    }
}

fn checked_label(label: &str) -> Result<&str> {
    let label = label.trim();
    if label.is_empty() || label.len() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(Error::input(
            label,
            format!("a label is 1 to {MAX_LABEL} bytes without line breaks or control characters"),
        ));
    }
    Ok(label)
}

/// Where row `id` lies; when `text` is given the row must still hold it.
fn find(
    path: &Path,
    dataset: &TextDataset,
    spans: &[Range<usize>],
    id: &str,
    text: Option<&str>,
) -> Result<Range<usize>> {
    let at = dataset
        .items
        .iter()
        .position(|item| item.id == id)
        .ok_or_else(|| Error::input(path, format!("has no row {id}")))?;
    if text.is_some_and(|text| dataset.items[at].text != text) {
        return Err(Error::input(
            path,
            format!("row {id} changed since it was read: reload"),
        ));
    }
    Ok(spans[at].clone())
}

/// The file's own line break: CRLF where it has one, else LF.
fn line_break(bytes: &[u8]) -> &'static [u8] {
    if bytes.windows(2).any(|pair| pair == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// Appends `record` and a line break (ending the last line first if it was not); returns where the record starts.
fn append_record(bytes: &mut Vec<u8>, record: &[u8]) -> usize {
    let newline = line_break(bytes);
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.extend_from_slice(newline);
    }
    let start = bytes.len();
    bytes.extend_from_slice(record);
    bytes.extend_from_slice(newline);
    start
}

/// `bytes` without the record at `span` and its line break.
fn cut(bytes: &[u8], span: Range<usize>) -> Vec<u8> {
    let mut end = span.end;
    if bytes.get(end) == Some(&b'\r') {
        end += 1;
    }
    if bytes.get(end) == Some(&b'\n') {
        end += 1;
    }
    let mut kept = bytes[..span.start].to_vec();
    kept.extend_from_slice(&bytes[end..]);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(table: &TextTable) -> Vec<(String, String, String)> {
        let set = table.read().unwrap();
        set.items
            .iter()
            .map(|i| {
                let label = set.classes[i.label.unwrap()].clone();
                (i.id.clone(), i.text.clone(), label)
            })
            .collect()
    }

    #[test]
    fn a_relabel_rewrites_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let original: &[u8] = b"\xEF\xBB\xBFid,text,label,note\r\n1,\"good, really\",pos,\"kept \"\"as is\"\"\"\r\n2,\"multi\nline\",neg,x\r\n3,,neg,skipped\r\n4,plain,neg,y";
        std::fs::write(&path, original).unwrap();
        let table = TextTable::open(&path, TextOptions::default()).unwrap();
        assert_eq!(
            rows(&table),
            [
                ("t.csv:2".into(), "good, really".into(), "pos".into()),
                ("t.csv:3".into(), "multi\nline".into(), "neg".into()),
                ("t.csv:6".into(), "plain".into(), "neg".into()),
            ]
        );
        table.relabel("t.csv:3", "multi\nline", "pos").unwrap();
        let expected = String::from_utf8(original.to_vec())
            .unwrap()
            .replace("line\",neg,x", "line\",pos,x");
        assert_eq!(std::fs::read(&path).unwrap(), expected.as_bytes());
        table.relabel("t.csv:6", "plain", " a, b ").unwrap();
        assert!(
            std::fs::read(&path)
                .unwrap()
                .ends_with(b"4,plain,\"a, b\",y")
        );
        let stale = table
            .relabel("t.csv:2", "not this text", "neg")
            .unwrap_err();
        assert!(stale.to_string().contains("changed since"), "{stale}");
        assert!(
            table
                .relabel("t.csv:2", "good, really", "two\nlines")
                .is_err()
        );
        assert!(table.relabel("t.csv:9", "x", "neg").is_err());
    }

    #[test]
    fn rows_added_to_a_new_table_then_trashed_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.tsv");
        let table = TextTable::open(&path, TextOptions::default()).unwrap();
        assert!(rows(&table).is_empty());
        let texts = ["a first".to_string(), "tab\there".to_string()];
        assert_eq!(table.add_rows("one", &texts).unwrap(), 2);
        table.add_rows("two", &["third".to_string()]).unwrap();
        assert!(table.add_rows("two", &[" ".to_string()]).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "text\tlabel\na first\tone\n\"tab\there\"\tone\nthird\ttwo\n"
        );
        let trashed = table.trash("new.tsv:3", "tab\there").unwrap();
        assert_eq!(trashed, "new.tsv:2");
        let trash = dir.path().join(TRASH).join("new.tsv");
        assert_eq!(
            std::fs::read_to_string(&trash).unwrap(),
            "text\tlabel\n\"tab\there\"\tone\n"
        );
        assert_eq!(rows(&table).len(), 2);
        assert_eq!(table.restore(&trashed).unwrap(), "new.tsv:4");
        assert_eq!(std::fs::read_to_string(&trash).unwrap(), "text\tlabel\n");
        assert_eq!(
            rows(&table)[2],
            ("new.tsv:4".into(), "tab\there".into(), "one".into())
        );
    }

    #[test]
    fn json_lines_keep_their_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            "{\"text\":\"hi\",\"label\":\"a\",\"n\":1}\n\n{\"text\":\"yo\",\"label\":\"b\"}",
        )
        .unwrap();
        let table = TextTable::open(&path, TextOptions::default()).unwrap();
        table.relabel("t.jsonl:1", "hi", "b").unwrap();
        table.add_rows("a", &["new".to_string()]).unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"text": "hi", "label": "b", "n": 1}),
                serde_json::json!({"text": "yo", "label": "b"}),
                serde_json::json!({"text": "new", "label": "a"}),
            ]
        );
    }
}
