//! Text datasets: a table (CSV, TSV or JSON Lines, chosen by extension) with a text and a label column, or a
//! folder with one sub-folder of `.txt` files per class (one text per file). UTF-8 with or without a byte-order
//! mark. Rows that cannot be used (invalid UTF-8, empty text, missing label, malformed line) are skipped with a
//! reason and counted, never fatal; a missing column is an error that names the columns there are.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::files::{Files, Skip};
use crate::error::{Error, Result};

/// How a text table is read: which columns hold the text and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TextOptions {
    pub text_column: String,
    pub label_column: String,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            text_column: "text".into(),
            label_column: "label".into(),
        }
    }
}

impl TextOptions {
    pub fn text_column(mut self, name: impl Into<String>) -> Self {
        self.text_column = name.into();
        self
    }

    pub fn label_column(mut self, name: impl Into<String>) -> Self {
        self.label_column = name.into();
        self
    }
}

#[derive(Debug, Clone)]
pub struct TextDataset {
    pub source: PathBuf,
    /// Label values (or folder names), sorted.
    pub classes: Vec<String>,
    pub items: Vec<TextItem>,
    pub skipped: Vec<Skip>,
}

impl TextDataset {
    pub(crate) fn is_labelled(&self) -> bool {
        !self.classes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextItem {
    /// Where it came from: `file:line` for tables, the relative path for folders.
    pub id: String,
    pub text: String,
    /// Index into `classes`; `None` for texts without labels.
    pub label: Option<usize>,
}

/// The layout of a text table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Tsv,
    JsonLines,
}

impl TableFormat {
    /// The field separator of a delimited table (JSON Lines has none: a comma, unused).
    pub(crate) fn delimiter(self) -> u8 {
        if self == TableFormat::Tsv {
            b'\t'
        } else {
            b','
        }
    }

    /// The format a file's extension names, or an error saying which ones are understood.
    pub(crate) fn from_path(path: &Path) -> Result<Self> {
        match extension(path).as_str() {
            "csv" => Ok(TableFormat::Csv),
            "tsv" | "tab" => Ok(TableFormat::Tsv),
            "jsonl" | "ndjson" => Ok(TableFormat::JsonLines),
            other => Err(Error::input(
                path,
                format!(
                    "'.{other}' is not a text table: use .csv, .tsv or .jsonl, or a folder with one \
                     sub-folder of .txt files per class"
                ),
            )),
        }
    }
}

/// Reads a labelled text table (CSV, TSV or JSON Lines, by its extension).
pub fn load_table(path: &Path, columns: &TextOptions) -> Result<TextDataset> {
    let format = TableFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_table(&bytes, format, columns, path)
}

/// Reads a labelled text table held in memory; `origin` names it in errors and row ids.
pub fn parse_table(
    bytes: &[u8],
    format: TableFormat,
    columns: &TextOptions,
    origin: &Path,
) -> Result<TextDataset> {
    parse_with_spans(bytes, format, columns, origin).map(|(dataset, _)| dataset)
}

/// [`parse_table`], with where each item's record lies in `bytes` (its line terminator left out), in item order.
pub(crate) fn parse_with_spans(
    bytes: &[u8],
    format: TableFormat,
    columns: &TextOptions,
    origin: &Path,
) -> Result<(TextDataset, Vec<Range<usize>>)> {
    let mut rows = Rows::default();
    let name = origin
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let body = strip_bom(bytes);
    match format {
        TableFormat::Csv | TableFormat::Tsv => {
            read_delimited(origin, &name, body, format.delimiter(), columns, &mut rows)?
        }
        TableFormat::JsonLines => read_json_lines(origin, &name, body, columns, &mut rows)?,
    }
    let bom = bytes.len() - body.len();
    let spans = rows
        .spans
        .iter()
        .map(|span| span.start + bom..span.end + bom)
        .collect();
    Ok((labelled(origin, rows.kept, rows.skipped), spans))
}

/// What a reader kept (id, text, label) and where each lies, and what it skipped.
#[derive(Default)]
struct Rows {
    kept: Vec<(String, String, String)>,
    spans: Vec<Range<usize>>,
    skipped: Vec<Skip>,
}

/// Class names in sorted order, and each row's label as an index into them.
fn labelled(source: &Path, rows: Vec<(String, String, String)>, skipped: Vec<Skip>) -> TextDataset {
    let classes: Vec<String> = rows
        .iter()
        .map(|(_, _, label)| label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let items = rows
        .into_iter()
        .map(|(id, text, label)| TextItem {
            id,
            text,
            label: classes.binary_search(&label).ok(),
        })
        .collect();
    TextDataset {
        source: source.to_path_buf(),
        classes,
        items,
        skipped,
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map_or(String::new(), |e| e.to_string_lossy().to_lowercase())
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Keeps a row when its text is non-blank and its label present; otherwise records why not.
fn accept(
    id: String,
    text: Option<&[u8]>,
    label: Option<&[u8]>,
    span: Range<usize>,
    rows: &mut Rows,
) {
    let decoded = |field: Option<&[u8]>, what: &str| -> std::result::Result<String, String> {
        let bytes = field.ok_or_else(|| format!("no {what}"))?;
        let text = std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))?;
        if text.trim().is_empty() {
            return Err(format!("empty {what}"));
        }
        Ok(text.to_string())
    };
    match (decoded(text, "text"), decoded(label, "label")) {
        (Ok(text), Ok(label)) => {
            rows.kept.push((id, text, label.trim().to_string()));
            rows.spans.push(span);
        }
        (Err(reason), _) | (_, Err(reason)) => rows.skipped.push(Skip { path: id, reason }),
    }
}

/// `start..end` without the line breaks around it: a record read by `csv` may start at the newline that ended
/// the one before (or at blank lines) and ends after its own.
fn trimmed(body: &[u8], mut start: usize, mut end: usize) -> Range<usize> {
    let end_of_line = |b: &u8| *b == b'\n' || *b == b'\r';
    end = end.min(body.len());
    while start < end && end_of_line(&body[start]) {
        start += 1;
    }
    while end > start && end_of_line(&body[end - 1]) {
        end -= 1;
    }
    start..end
}

fn column_index(path: &Path, header: &[String], wanted: &str, role: &'static str) -> Result<usize> {
    header
        .iter()
        .position(|h| h.trim() == wanted)
        .ok_or_else(|| Error::MissingColumn {
            path: path.to_path_buf(),
            role,
            wanted: wanted.to_string(),
            available: header.to_vec(),
        })
}

fn read_delimited(
    path: &Path,
    name: &str,
    body: &[u8],
    delimiter: u8,
    columns: &TextOptions,
    rows: &mut Rows,
) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        // Rows of another length are skipped below with their line, not read shifted.
        .flexible(true)
        .from_reader(body);
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(|e| Error::input(path, format!("cannot read the header line: {e}")))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let text_column = column_index(path, &header, &columns.text_column, "text")?;
    let label_column = column_index(path, &header, &columns.label_column, "label")?;
    let mut record = csv::ByteRecord::new();
    // Line numbers from byte offsets: csv's own count lags behind on CRLF files.
    let mut counted = (0usize, 1usize);
    let mut line_at = |byte: usize| {
        let byte = byte.min(body.len());
        if byte >= counted.0 {
            counted.1 += body[counted.0..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted.0 = byte;
        }
        counted.1
    };
    loop {
        let start = reader.position().byte() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let byte = record.position().map_or(start, |p| p.byte() as usize);
                // A record's start may be the newline that ended the previous one.
                let line = line_at(byte + usize::from(body.get(byte) == Some(&b'\n')));
                if record.len() != header.len() {
                    // An unquoted delimiter inside a text shifts the columns after it.
                    rows.skipped.push(Skip {
                        path: format!("{name}:{line}"),
                        reason: format!(
                            "{} fields where the header has {}: quote a text that holds the delimiter",
                            record.len(),
                            header.len()
                        ),
                    });
                    continue;
                }
                let end = reader.position().byte() as usize;
                accept(
                    format!("{name}:{line}"),
                    record.get(text_column),
                    record.get(label_column),
                    trimmed(body, start, end),
                    rows,
                );
            }
            // A malformed record (e.g. an unclosed quote) costs that record only.
            Err(e) => rows.skipped.push(Skip {
                path: format!(
                    "{name}:{}",
                    line_at(start + usize::from(body.get(start) == Some(&b'\n')))
                ),
                reason: format!("malformed: {e}"),
            }),
        }
    }
    Ok(())
}

fn read_json_lines(
    path: &Path,
    name: &str,
    body: &[u8],
    columns: &TextOptions,
    rows: &mut Rows,
) -> Result<()> {
    let mut keys_seen = BTreeSet::new();
    let mut has = (false, false);
    let mut line_start = 0;
    for (number, line) in body.split(|&b| b == b'\n').enumerate() {
        let span = trimmed(body, line_start, line_start + line.len());
        line_start += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let id = format!("{name}:{}", number + 1);
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(e) => {
                let reason = if std::str::from_utf8(line).is_err() {
                    "line is not valid UTF-8".to_string()
                } else {
                    format!("not a JSON object: {e}")
                };
                rows.skipped.push(Skip { path: id, reason });
                continue;
            }
        };
        let Some(object) = value.as_object() else {
            rows.skipped.push(Skip {
                path: id,
                reason: "not a JSON object".into(),
            });
            continue;
        };
        keys_seen.extend(object.keys().cloned());
        has.0 |= object.contains_key(&columns.text_column);
        has.1 |= object.contains_key(&columns.label_column);
        let field = |key: &str| -> Option<String> {
            match object.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let (text, label) = (field(&columns.text_column), field(&columns.label_column));
        accept(
            id,
            text.as_deref().map(str::as_bytes),
            label.as_deref().map(str::as_bytes),
            span,
            rows,
        );
    }
    let keys: Vec<String> = keys_seen.into_iter().collect();
    if !keys.is_empty() && !has.0 {
        column_index(path, &keys, &columns.text_column, "text")?;
    }
    if !keys.is_empty() && !has.1 {
        column_index(path, &keys, &columns.label_column, "label")?;
    }
    Ok(())
}

/// The texts of a folder with one sub-folder per class, listed as an image folder is (nested folders, hidden
/// entries, stray files and loops handled by [`super::files::scan`]); each `.txt` file is one text.
/// Texts handed over by a program, as one unlabelled dataset; each text's id is its position. A text that is
/// empty or only whitespace is skipped (as in a table), so the ids of the others keep their positions.
pub fn from_texts(texts: &[String]) -> TextDataset {
    let mut dataset = TextDataset {
        source: PathBuf::new(),
        classes: Vec::new(),
        items: Vec::with_capacity(texts.len()),
        skipped: Vec::new(),
    };
    for (position, text) in texts.iter().enumerate() {
        let id = position.to_string();
        if text.trim().is_empty() {
            dataset.skipped.push(Skip {
                path: id,
                reason: "empty text".into(),
            });
        } else {
            dataset.items.push(TextItem {
                id,
                text: text.clone(),
                label: None,
            });
        }
    }
    dataset
}

pub(crate) fn from_folder(listed: Files) -> TextDataset {
    let mut rows = Rows {
        skipped: listed.skipped,
        ..Rows::default()
    };
    for item in listed.items {
        let Some(label) = item.label else {
            rows.skipped.push(Skip {
                path: item.relative,
                reason: "not inside a class folder".into(),
            });
            continue;
        };
        if extension(&item.path) != "txt" {
            rows.skipped.push(Skip {
                path: item.relative,
                reason: "not a .txt file".into(),
            });
            continue;
        }
        match std::fs::read(&item.path) {
            Ok(bytes) => accept(
                item.relative,
                Some(strip_bom(&bytes)),
                Some(listed.classes[label].as_bytes()),
                0..0,
                &mut rows,
            ),
            Err(e) => rows.skipped.push(Skip {
                path: item.relative,
                reason: format!("unreadable: {e}"),
            }),
        }
    }
    labelled(&listed.root, rows.kept, rows.skipped)
}

/// Whether a file's name says it is a text table (.csv, .tsv, .jsonl).
pub fn is_table(path: &Path) -> bool {
    TableFormat::from_path(path).is_ok()
}

/// Whether a listed folder holds texts: every file is a `.txt` file, and there is one at least.
pub(crate) fn is_text_folder(listed: &Files) -> bool {
    !listed.items.is_empty()
        && listed
            .items
            .iter()
            .all(|item| extension(&item.path) == "txt")
}

/// Texts without labels (to predict), identified by their position.
pub fn unlabelled(source: &str, texts: Vec<String>) -> TextDataset {
    TextDataset {
        source: PathBuf::from(source),
        classes: Vec::new(),
        items: texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| TextItem {
                id: format!("{source}#{}", i + 1),
                text,
                label: None,
            })
            .collect(),
        skipped: Vec::new(),
    }
}

/// Texts to predict, one per line (blank lines ignored), from a file or any reader such as stdin.
pub fn read_lines(mut input: impl std::io::Read, source: &str) -> Result<(Vec<String>, Vec<Skip>)> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Config(format!("cannot read {source}: {e}")))?;
    let mut texts = Vec::new();
    let mut skipped = Vec::new();
    for (number, line) in strip_bom(&bytes).split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => texts.push(text.to_string()),
            Err(_) => skipped.push(Skip {
                path: format!("{source}:{}", number + 1),
                reason: "line is not valid UTF-8".into(),
            }),
        }
    }
    Ok((texts, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn summary(set: &TextDataset) -> Vec<(String, String)> {
        set.items
            .iter()
            .map(|i| (i.text.clone(), set.classes[i.label.unwrap()].clone()))
            .collect()
    }

    #[test]
    fn csv_with_bom_quotes_and_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes =
            b"\xEF\xBB\xBFid,text,label\r\n1,\"good, really\",pos\r\n2,,neg\r\n3,fine,\r\n"
                .to_vec();
        bytes.extend_from_slice(b"4,bad \xFF bytes,neg\r\n5,\"multi\nline\",neg\r\n");
        let set = load_table(&write(dir.path(), "t.csv", &bytes), &TextOptions::default()).unwrap();
        assert_eq!(
            summary(&set),
            vec![
                ("good, really".to_string(), "pos".to_string()),
                ("multi\nline".to_string(), "neg".to_string())
            ]
        );
        assert_eq!(set.classes, vec!["neg", "pos"]);
        let reasons: Vec<&str> = set.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec!["empty text", "empty label", "text is not valid UTF-8"]
        );
        assert_eq!(set.skipped[0].path, "t.csv:3");
    }

    #[test]
    fn tsv_and_jsonl_with_chosen_columns() {
        let dir = tempfile::tempdir().unwrap();
        let columns = TextOptions::default()
            .text_column("review")
            .label_column("stars");
        let tsv = write(
            dir.path(),
            "t.tsv",
            b"stars\treview\n5\tloved it\n1\thated it\n",
        );
        assert_eq!(load_table(&tsv, &columns).unwrap().items.len(), 2);
        let jsonl = write(
            dir.path(),
            "t.jsonl",
            b"{\"review\": \"loved it\", \"stars\": 5}\n\n{\"review\": \"meh\"}\nnot json\n[1]\n",
        );
        let set = load_table(&jsonl, &columns).unwrap();
        assert_eq!(
            summary(&set),
            vec![("loved it".to_string(), "5".to_string())]
        );
        let reasons: Vec<&str> = set.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0], "no label");
    }

    #[test]
    fn missing_columns_and_unknown_formats_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(dir.path(), "t.csv", b"text,category\nhello,a\n");
        let err = load_table(&csv, &TextOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::MissingColumn { role: "label", wanted, .. } if wanted == "label"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(
            err.contains("no column 'label'") && err.contains("text, category"),
            "{err}"
        );
        let jsonl = write(
            dir.path(),
            "t.jsonl",
            b"{\"body\": \"x\", \"label\": \"a\"}\n",
        );
        let err = load_table(&jsonl, &TextOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column 'text'") && err.contains("body"),
            "{err}"
        );
        let xls = write(dir.path(), "t.xlsx", b"PK");
        assert!(
            load_table(&xls, &TextOptions::default())
                .unwrap_err()
                .to_string()
                .contains(".csv, .tsv or .jsonl")
        );
    }

    #[test]
    fn folder_of_text_files() {
        let dir = tempfile::tempdir().unwrap();
        for (class, name, bytes) in [
            ("neg", "a.txt", &b"\xEF\xBB\xBFawful"[..]),
            ("neg", "b.txt", b"   "),
            ("pos", "c.txt", b"great"),
            ("pos", "d.md", b"ignored"),
            ("pos", ".hidden.txt", b"x"),
        ] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            std::fs::write(dir.path().join(class).join(name), bytes).unwrap();
        }
        write(dir.path(), "README", b"stray");
        let set = from_folder(crate::data::files::scan(dir.path()).unwrap());
        assert_eq!(
            summary(&set),
            vec![
                ("awful".to_string(), "neg".to_string()),
                ("great".to_string(), "pos".to_string())
            ]
        );
        assert_eq!(set.skipped.len(), 4, "{:?}", set.skipped);
    }

    #[test]
    fn lines_for_prediction() {
        let (texts, skipped) =
            read_lines(&b"\xEF\xBB\xBFfirst\r\n\nsecond\n\xFF\n"[..], "stdin").unwrap();
        assert_eq!(texts, vec!["first", "second"]);
        assert_eq!(skipped[0].path, "stdin:4");
    }
}
