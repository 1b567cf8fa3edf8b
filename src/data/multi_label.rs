//! Multi-label tables: one row per text or image and the labels it carries. A table (CSV, TSV or JSON Lines)
//! with a text column, or with a `path` column of image files (relative to the table's folder), and a label
//! column (`label`, or `labels` when there is no `label`) whose cells are `a|b` or a JSON list (`["a", "b"]`;
//! `[]` for none).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::Data;
use super::files::{Files, Item, Skip};
use super::texts::{self, TextOptions};
use crate::error::{Error, Result};

/// The column of image paths in an image table.
pub(crate) const PATH_COLUMN: &str = "path";
/// The label column looked for when the configured one is missing.
const LABELS_COLUMN: &str = "labels";

/// A multi-label table as data to embed, and the labels of each row.
#[derive(Debug, Clone)]
pub struct MultiLabelTable {
    /// Texts, or images: unlabelled (the labels are `sets`); rows that could not be read are its skips.
    pub data: Data,
    /// Every label that occurs, sorted.
    pub label_names: Vec<String>,
    /// The label indices of each row, by the path or id its embedding row carries.
    pub sets: HashMap<String, Vec<usize>>,
}

impl MultiLabelTable {
    /// Reads a table; `columns` names the text and label columns (a missing text column falls back to `path`
    /// for images, a missing label column to `labels`).
    pub fn open(path: &Path, columns: &TextOptions) -> Result<Self> {
        let mut columns = columns.clone();
        let mut images = false;
        let table = loop {
            match texts::load_table(path, &columns) {
                Ok(table) => break table,
                Err(Error::MissingColumn {
                    role: "text",
                    available,
                    ..
                }) if !images && available.iter().any(|c| c == PATH_COLUMN) => {
                    images = true;
                    columns.text_column = PATH_COLUMN.into();
                }
                Err(Error::MissingColumn {
                    role: "label",
                    available,
                    ..
                }) if columns.label_column != LABELS_COLUMN
                    && available.iter().any(|c| c == LABELS_COLUMN) =>
                {
                    columns.label_column = LABELS_COLUMN.into();
                }
                Err(other) => return Err(other),
            }
        };
        let mut skipped = table.skipped.clone();
        let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
        for item in &table.items {
            let cell = item.label.map_or("", |l| table.classes[l].as_str());
            match parse_labels(cell) {
                Ok(labels) => rows.push((item.id.clone(), item.text.clone(), labels)),
                Err(reason) => skipped.push(Skip {
                    path: item.id.clone(),
                    reason,
                }),
            }
        }
        let label_names: Vec<String> = rows
            .iter()
            .flat_map(|(_, _, labels)| labels.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index = |name: &String| label_names.binary_search(name).unwrap_or_default();
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut sets = HashMap::new();
        let data = if images {
            let mut items = Vec::with_capacity(rows.len());
            for (id, relative, labels) in rows {
                let relative = relative.trim().to_string();
                if sets.contains_key(&relative) {
                    skipped.push(Skip {
                        path: id,
                        reason: format!("'{relative}' is listed again"),
                    });
                    continue;
                }
                sets.insert(relative.clone(), labels.iter().map(index).collect());
                items.push(Item {
                    path: folder.join(&relative),
                    relative,
                    label: None,
                });
            }
            Data::Images(Files {
                root: folder.to_path_buf(),
                classes: Vec::new(),
                items,
                skipped,
                empty_classes: Vec::new(),
            })
        } else {
            let mut dataset = texts::unlabelled(&table.source.to_string_lossy(), Vec::new());
            for (id, text, labels) in rows {
                sets.insert(id.clone(), labels.iter().map(index).collect());
                dataset.items.push(texts::TextItem {
                    id,
                    text,
                    label: None,
                });
            }
            dataset.source = table.source.clone();
            dataset.skipped = skipped;
            Data::Texts(dataset)
        };
        Ok(MultiLabelTable {
            data,
            label_names,
            sets,
        })
    }
}

/// A label cell: `a|b`, or a JSON list of strings; labels trimmed, empty ones and repeats dropped.
fn parse_labels(cell: &str) -> std::result::Result<Vec<String>, String> {
    let cell = cell.trim();
    let labels: Vec<String> = if cell.starts_with('[') {
        serde_json::from_str::<Vec<String>>(cell)
            .map_err(|e| format!("labels are not a JSON list of strings: {e}"))?
    } else {
        cell.split('|').map(str::to_string).collect()
    };
    let set: BTreeSet<String> = labels
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_and_text_tables_with_both_label_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("tags.csv");
        std::fs::write(
            &images,
            "path,labels\ncells/a.png,mono|defective\ncells/b.png,poly\ncells/c.png,\"[\"\"poly\"\", \"\"defective\"\"]\"\ncells/d.png,[]\ncells/a.png,poly\ncells/e.png,[oops\n",
        )
        .unwrap();
        let table = MultiLabelTable::open(&images, &TextOptions::default()).unwrap();
        assert_eq!(table.label_names, ["defective", "mono", "poly"]);
        assert_eq!(table.sets["cells/a.png"], [0, 1]);
        assert_eq!(table.sets["cells/c.png"], [0, 2]);
        assert_eq!(table.sets["cells/d.png"], Vec::<usize>::new());
        let Data::Images(files) = &table.data else {
            panic!("an image table");
        };
        assert_eq!(files.items.len(), 4);
        assert_eq!(files.items[0].path, dir.path().join("cells/a.png"));
        let reasons: Vec<&str> = files.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("listed again")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not a JSON list")),
            "{reasons:?}"
        );

        let texts = dir.path().join("tickets.jsonl");
        std::fs::write(
            &texts,
            "{\"text\": \"refund me twice\", \"label\": [\"billing\", \"urgent\"]}\n{\"text\": \"where is it\", \"label\": \"delivery\"}\n",
        )
        .unwrap();
        let table = MultiLabelTable::open(&texts, &TextOptions::default()).unwrap();
        assert_eq!(table.label_names, ["billing", "delivery", "urgent"]);
        assert_eq!(table.sets["tickets.jsonl:1"], [0, 2]);
        assert!(matches!(table.data, Data::Texts(_)));
    }
}
