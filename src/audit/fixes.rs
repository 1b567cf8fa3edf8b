//! Acting on an audit without losing anything: a fixes file (CSV: `path, given, action, suggested, reason`) for
//! the user to read and edit, and the data as training sees it with that file's actions applied. Files and
//! tables are never moved, rewritten or deleted: only what is trained on changes.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::Audit;
use crate::atomic::write_atomic;
use crate::data::Data;
use crate::error::{Error, Result};

/// What to do with a flagged input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Train on it as it is.
    Keep,
    /// Leave it out of training.
    Exclude,
    /// Train on it as the suggested class.
    Relabel,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Exclude => "exclude",
            Action::Relabel => "relabel",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        match text.trim().to_ascii_lowercase().as_str() {
            "keep" | "" => Some(Action::Keep),
            "exclude" => Some(Action::Exclude),
            "relabel" => Some(Action::Relabel),
            _ => None,
        }
    }
}

/// One row of a fixes file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    /// The input as the audit names it: the path relative to the folder, or a table's `file:line`.
    pub path: String,
    pub given: String,
    pub action: Action,
    /// The class a `relabel` trains it as.
    pub suggested: String,
    /// Everything the audit found on it.
    pub reason: String,
}

const HEADER: [&str; 5] = ["path", "given", "action", "suggested", "reason"];

impl Audit {
    /// One fix per flagged input: label issues first, then duplicates, leakage and outliers, in their rankings'
    /// order, each with everything found on it. Where several actions apply, leaving out a copy (of another
    /// training input, or of a validation input) wins over relabelling, which wins over leaving out an outlier (a
    /// photo among cells is a photo); the first input of a duplicate group is kept unless something else applies.
    pub fn fixes(&self) -> Vec<Fix> {
        let mut fixes = Fixing::default();
        for issue in &self.label_issues {
            fixes.note(
                &issue.path,
                &issue.given,
                (RELABEL, Action::Relabel, &issue.suggested),
                format!(
                    "label issue {:.3}: looks like {}",
                    issue.score, issue.suggested
                ),
            );
        }
        for group in &self.duplicates {
            let how = if group.exact { "exact" } else { "near" };
            let members: Vec<(&String, &String)> = group.paths.iter().zip(&group.classes).collect();
            for (index, &(path, class)) in members.iter().enumerate() {
                let others: Vec<String> = members
                    .iter()
                    .filter(|(other, _)| *other != path)
                    .map(|(other, other_class)| format!("{other} ({other_class})"))
                    .collect();
                let copy = format!(
                    "{how} copy {:.4} of {}",
                    group.similarity,
                    others.join(", ")
                );
                if index == 0 {
                    fixes.note(
                        path,
                        class,
                        (KEEP, Action::Keep, ""),
                        format!("{copy}; kept as its group's first"),
                    );
                } else {
                    fixes.note(path, class, (COPY, Action::Exclude, ""), copy);
                }
            }
        }
        for leak in &self.leakage {
            let how = if leak.exact { "exact" } else { "near" };
            fixes.note(
                &leak.train,
                &leak.class,
                (COPY, Action::Exclude, ""),
                format!(
                    "{how} copy {:.4} of validation input {}",
                    leak.similarity, leak.validation
                ),
            );
        }
        for outlier in &self.outliers {
            fixes.note(
                &outlier.path,
                &outlier.class,
                (OUTLIER, Action::Exclude, ""),
                format!("outlier {:.3}", outlier.score),
            );
        }
        fixes.fixes
    }
}

/// Which action wins where several apply: the lowest.
const COPY: u8 = 0;
const RELABEL: u8 = 1;
const OUTLIER: u8 = 2;
const KEEP: u8 = 3;

#[derive(Default)]
struct Fixing {
    fixes: Vec<Fix>,
    ranks: Vec<u8>,
    at: HashMap<String, usize>,
}

impl Fixing {
    fn note(
        &mut self,
        path: &str,
        given: &str,
        (rank, action, suggested): (u8, Action, &str),
        reason: String,
    ) {
        match self.at.get(path) {
            Some(&i) => {
                let fix = &mut self.fixes[i];
                fix.reason = format!("{}; {reason}", fix.reason);
                if rank < self.ranks[i] {
                    self.ranks[i] = rank;
                    fix.action = action;
                    fix.suggested = suggested.to_string();
                }
            }
            None => {
                self.at.insert(path.to_string(), self.fixes.len());
                self.ranks.push(rank);
                self.fixes.push(Fix {
                    path: path.to_string(),
                    given: given.to_string(),
                    action,
                    suggested: suggested.to_string(),
                    reason,
                });
            }
        }
    }
}

/// Writes `fixes` as CSV, atomically.
pub fn write_fixes(path: &Path, fixes: &[Fix]) -> Result<()> {
    write_atomic(path, |out| {
        let mut writer = csv::Writer::from_writer(out);
        let failed = |e: csv::Error| Error::input(path, format!("cannot write: {e}"));
        writer.write_record(HEADER).map_err(failed)?;
        for fix in fixes {
            writer
                .write_record([
                    fix.path.as_str(),
                    fix.given.as_str(),
                    fix.action.name(),
                    fix.suggested.as_str(),
                    fix.reason.as_str(),
                ])
                .map_err(failed)?;
        }
        writer.flush().map_err(|e| Error::io(path, e))
    })
}

/// Reads a fixes file: a CSV with a header naming at least `path` and `action` (and `suggested` where an action
/// is `relabel`); the other columns are the user's to keep notes in. An empty action is `keep`.
pub fn read_fixes(path: &Path) -> Result<Vec<Fix>> {
    let bad = |line: u64, message: String| Error::input(path, format!("line {line}: {message}"));
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(path_at), Some(action_at)) = (column("path"), column("action")) else {
        return Err(bad(
            1,
            format!(
                "the header must name a `path` and an `action` column (as `headstart audit --write-fixes` writes: {})",
                HEADER.join(",")
            ),
        ));
    };
    let (given_at, suggested_at, reason_at) =
        (column("given"), column("suggested"), column("reason"));
    let mut fixes = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |at: Option<usize>| {
            at.and_then(|i| record.get(i))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let input = field(Some(path_at));
        if input.is_empty() {
            return Err(bad(line, "no path".into()));
        }
        let written = field(Some(action_at));
        let action = Action::parse(&written).ok_or_else(|| {
            bad(
                line,
                format!("action `{written}` is not keep, exclude or relabel"),
            )
        })?;
        let suggested = field(suggested_at);
        if action == Action::Relabel && suggested.is_empty() {
            return Err(bad(
                line,
                format!("{input} is to be relabelled but names no `suggested` class"),
            ));
        }
        if let Some(earlier) = first_line.insert(input.clone(), line) {
            return Err(bad(
                line,
                format!("{input} is listed on line {earlier} too"),
            ));
        }
        fixes.push(Fix {
            path: input,
            given: field(given_at),
            action,
            suggested,
            reason: field(reason_at),
        });
    }
    Ok(fixes)
}

/// Which of a fixes file's actions to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Leave out the inputs marked `exclude`.
    Exclusions,
    /// Give the inputs marked `relabel` their suggested class.
    Relabels,
}

/// What applying fixes did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Amended {
    pub excluded: usize,
    pub relabelled: usize,
    /// Inputs the applied rows name that the data does not have (moved or renamed since the audit).
    pub missing: Vec<String>,
}

/// `data` with the `apply` actions of `fixes` applied: inputs left out, or trained as another of its classes.
/// Only folders and tables can be amended (embeddings read from a file are refused: they are read later).
pub fn amend(data: Data, fixes: &[Fix], apply: Apply) -> Result<(Data, Amended)> {
    let action = match apply {
        Apply::Exclusions => Action::Exclude,
        Apply::Relabels => Action::Relabel,
    };
    // Input → the class it is to be trained as (ignored when leaving out).
    let chosen: HashMap<&str, &str> = fixes
        .iter()
        .filter(|fix| fix.action == action)
        .map(|fix| (fix.path.as_str(), fix.suggested.as_str()))
        .collect();
    let mut pending: BTreeSet<&str> = chosen.keys().copied().collect();
    let present: Vec<&str> = match &data {
        Data::Images(files) => files.items.iter().map(|i| i.relative.as_str()).collect(),
        Data::Texts(texts) => texts.items.iter().map(|i| i.id.as_str()).collect(),
        Data::Embeddings(path) => {
            return Err(Error::input(
                path,
                "fixes apply to a folder or a text table, not to embeddings read from a file",
            ));
        }
    };
    let found = present.iter().filter(|id| pending.remove(*id)).count();
    let mut amended = Amended {
        missing: pending.iter().map(|id| id.to_string()).collect(),
        ..Amended::default()
    };
    let mut relabel = |classes: &[String], id: &str, label: &mut Option<usize>| -> Result<()> {
        let Some(suggested) = chosen.get(id) else {
            return Ok(());
        };
        let class = classes.iter().position(|c| c == suggested).ok_or_else(|| {
            Error::TrainingData(format!(
                "{id} is to be relabelled {suggested}, which is not one of the classes ({})",
                classes.join(", ")
            ))
        })?;
        if *label != Some(class) {
            *label = Some(class);
            amended.relabelled += 1;
        }
        Ok(())
    };
    let data = match (data, apply) {
        (Data::Images(mut files), Apply::Exclusions) => {
            files
                .items
                .retain(|item| !chosen.contains_key(item.relative.as_str()));
            Data::Images(files)
        }
        (Data::Images(mut files), Apply::Relabels) => {
            for item in &mut files.items {
                relabel(&files.classes, &item.relative, &mut item.label)?;
            }
            Data::Images(files)
        }
        (Data::Texts(mut texts), Apply::Exclusions) => {
            texts
                .items
                .retain(|item| !chosen.contains_key(item.id.as_str()));
            Data::Texts(texts)
        }
        (Data::Texts(mut texts), Apply::Relabels) => {
            for item in &mut texts.items {
                relabel(&texts.classes, &item.id, &mut item.label)?;
            }
            Data::Texts(texts)
        }
        (embeddings, _) => embeddings,
    };
    if apply == Apply::Exclusions {
        amended.excluded = found;
    }
    Ok((data, amended))
}
