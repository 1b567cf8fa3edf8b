//! `headstart.audit`: what is wrong with labelled embeddings, in the structure `headstart audit --json` prints.

use std::collections::HashMap;

use headstart::audit::{AuditOptions, AuditSet, audit as audit_set, embedding_identities};
use headstart::head::TrainParams;
use pyo3::prelude::*;
use serde_json::{Value, json};

use crate::bundle::{Labelled, labelled};
use crate::embedder::Embedder;
use crate::{HeadstartError, raise};

/// Audits `embeddings` (an `Embedded`, or a float array [N, D] made by `embedder`) labelled by `labels`: label
/// issues, duplicates, outliers and a summary, as a dict shaped like `headstart audit --json`'s answer, with each
/// input's `row` beside its `path` (`names[row]`, or the row's position). Only identical embeddings count as exact
/// copies: the inputs themselves are not at hand.
#[pyfunction]
#[pyo3(signature = (
    embeddings,
    labels,
    *,
    names = None,
    embedder = None,
    head = "logistic",
    folds = 5,
    seed = 42,
    same_input_similarity = None,
))]
#[allow(clippy::too_many_arguments)]
pub fn audit(
    py: Python<'_>,
    embeddings: &Bound<'_, PyAny>,
    labels: Vec<Bound<'_, PyAny>>,
    names: Option<Vec<String>>,
    embedder: Option<&Bound<'_, Embedder>>,
    head: &str,
    folds: usize,
    seed: u64,
    same_input_similarity: Option<f32>,
) -> PyResult<Py<PyAny>> {
    let Labelled { set, .. } = labelled(py, embeddings, &labels, embedder, "audit", names)?;
    let train = TrainParams::default()
        .head(head.parse().map_err(raise)?)
        .folds(folds)
        .seed(seed);
    let mut options = AuditOptions::default().train(train);
    if let Some(similarity) = same_input_similarity {
        options = options.same_input_similarity(similarity);
    }
    let content = embedding_identities(&set);
    let found = py
        .detach(|| {
            audit_set(
                &AuditSet {
                    set: &set,
                    content: &content,
                },
                None,
                &options,
            )
        })
        .map_err(raise)?;
    let row_of: HashMap<&str, usize> = set
        .paths
        .iter()
        .enumerate()
        .rev()
        .map(|(row, path)| (path.as_str(), row))
        .collect();
    let mut answer = json!({
        "label_issues": found.label_issues,
        "duplicates": found.duplicates,
        "leakage": found.leakage,
        "outliers": found.outliers,
        "summary": found.summary,
        "fixes": found.fixes(),
    });
    let row = |path: &Value| path.as_str().and_then(|p| row_of.get(p)).copied();
    for list in ["label_issues", "outliers", "fixes"] {
        for item in answer[list].as_array_mut().into_iter().flatten() {
            item["row"] = json!(row(&item["path"]));
        }
    }
    for group in answer["duplicates"].as_array_mut().into_iter().flatten() {
        let rows: Vec<Option<usize>> = group["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .map(row)
            .collect();
        group["rows"] = json!(rows);
    }
    let text = serde_json::to_string(&answer)
        .map_err(|e| HeadstartError::new_err(format!("the audit's answer: {e}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}
