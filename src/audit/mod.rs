//! What is wrong with a labelled set before it is trained on: labels the out-of-fold probabilities contradict
//! (confident learning), the same input more than once (exact copies by content, near copies by embedding),
//! inputs shared with a validation set (leakage), and inputs far from everything else (outliers). Works on
//! embeddings; [`crate::workflow::audit_data`] embeds a folder or table and names its files' contents.

mod fixes;
mod labels;
mod neighbours;

pub use fixes::{Action, Amended, Apply, Fix, amend, read_fixes, write_fixes};
pub use labels::{Contradicted, LabelNoise, confident_learning};

use std::collections::BTreeMap;

use ndarray::ArrayView2;
use serde::Serialize;

use crate::embeddings::EmbeddedSet;
use crate::error::{Error, Result};
use crate::hash::sha256_hex;
use crate::head::{self, TrainParams, normalized, softmax};
use crate::metrics::argmax;
use neighbours::{Neighbours, SameInput, nearest, outlier_fence};

/// How an audit looks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditOptions {
    /// The head and cross-validation whose out-of-fold probabilities judge the labels.
    pub train: TrainParams,
    /// The similarity from which two inputs count as the same; `None`: calibrated on the data, relative to how
    /// close each input's neighbours are.
    pub same_input_similarity: Option<f32>,
    /// The neighbour whose distance scores an outlier (1 = the nearest).
    pub outlier_k: usize,
}

setters!(AuditOptions {
    train: TrainParams,
    outlier_k: usize,
});

impl AuditOptions {
    pub fn same_input_similarity(mut self, similarity: f32) -> Self {
        self.same_input_similarity = Some(similarity);
        self
    }
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            train: TrainParams::default(),
            same_input_similarity: None,
            // As the open-set score: the 5th neighbour, so a few copies of an odd input do not hide it.
            outlier_k: 5,
        }
    }
}

/// Calibrated cut-offs never fall below this similarity: below it two inputs are merely alike. In a small set a few
/// alike but distinct inputs (five plain monocrystalline cells among speckled ones, at 0.935) stand out from their
/// neighbourhood as copies do; re-encoded copies and the pairs flagged on 2,000 ELPV cells were all above 0.96.
const SAME_INPUT_FLOOR: f32 = 0.95;
/// Classes with fewer inputs than this have no quartiles of their own to fence outliers with.
const MIN_CLASS_FOR_FENCE: usize = 8;
/// Inputs kept per class to show what it looks like.
const EXAMPLES_PER_CLASS: usize = 4;
/// Neighbours kept per input: near copies are found among them, and groups join through them.
const NEIGHBOURS: usize = 10;

/// A labelled set to audit: its embeddings and, per row, an identity of its content (equal for inputs with the
/// same bytes or text, e.g. a sha256).
pub struct AuditSet<'a> {
    pub set: &'a EmbeddedSet,
    pub content: &'a [String],
}

/// Per row of `set`, an identity of its values (a sha256): the content of rows whose inputs are not at hand, so
/// that only identical embeddings count as exact copies.
pub fn embedding_identities(set: &EmbeddedSet) -> Vec<String> {
    set.matrix()
        .rows()
        .into_iter()
        .map(|row| {
            let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
            sha256_hex(&bytes)
        })
        .collect()
}

/// An input whose given class the out-of-fold probabilities contradict.
#[derive(Debug, Clone, Serialize)]
pub struct LabelIssue {
    pub path: String,
    pub given: String,
    pub suggested: String,
    /// 1 − the probability of the given class.
    pub score: f32,
}

/// Inputs that are one input: the same content, or embeddings closer than the cut-off.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGroup {
    pub paths: Vec<String>,
    pub classes: Vec<String>,
    /// The lowest similarity between two of them that joined the group (1 for exact copies).
    pub similarity: f32,
    /// Whether every one is an exact copy of the others.
    pub exact: bool,
    /// Whether they were given more than one class.
    pub conflicting: bool,
}

/// A validation input that is also a training input.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    pub validation: String,
    pub train: String,
    /// The training input's class.
    pub class: String,
    pub similarity: f32,
    pub exact: bool,
}

/// An input far from every other.
#[derive(Debug, Clone, Serialize)]
pub struct Outlier {
    pub path: String,
    pub class: String,
    /// 1 − the cosine similarity to its k-th nearest other input.
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    pub rows: usize,
    /// Inputs per class, in class order.
    pub classes: BTreeMap<String, usize>,
    pub label_issues: usize,
    pub duplicate_groups: usize,
    pub conflicting_groups: usize,
    pub leaked: usize,
    pub outliers: usize,
    /// The estimated fraction of inputs whose given class is not their true one.
    pub noise_rate: f64,
    /// Out-of-fold accuracy over every input, and over the inputs nothing was flagged on.
    pub cv_accuracy: f64,
    pub cv_accuracy_unflagged: f64,
    /// The calibrated cut-offs for inputs to count as one: their distance over the distance from the first one to
    /// its n-th nearest input, at any of these neighbours (none where a similarity was given).
    pub same_input_ratios: Vec<SameInputRatio>,
    /// Per class, the distance to the k-th nearest input beyond which one of its inputs stands out.
    pub outlier_distance: BTreeMap<String, f32>,
}

/// Two inputs count as one when their distance is at most `ratio` times the distance to the `neighbour`-th nearest.
#[derive(Debug, Clone, Serialize)]
pub struct SameInputRatio {
    pub neighbour: usize,
    pub ratio: f32,
}

/// What an audit found, each list ranked worst first.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub label_issues: Vec<LabelIssue>,
    pub duplicates: Vec<DuplicateGroup>,
    pub leakage: Vec<Leak>,
    pub outliers: Vec<Outlier>,
    pub summary: AuditSummary,
    /// Per class, a few inputs nothing was flagged on, the most typical first: what the class looks like.
    #[serde(skip)]
    pub examples: BTreeMap<String, Vec<String>>,
}

/// Audits `train` (and leakage into `validation`, embedded by the same backbone).
pub fn audit(
    train: &AuditSet,
    validation: Option<&AuditSet>,
    options: &AuditOptions,
) -> Result<Audit> {
    let set = train.set;
    let labels = set.labels.as_deref().ok_or_else(|| {
        Error::TrainingData("an audit needs labelled data: one sub-folder per class, or a table with a label column".into())
    })?;
    if train.content.len() != set.rows() {
        return Err(Error::parameter(
            "content",
            "must name the content of every row",
        ));
    }
    if let Some(similarity) = options.same_input_similarity
        && !(similarity > 0.0 && similarity <= 1.0)
    {
        return Err(Error::parameter(
            "same_input_similarity",
            "must be a cosine similarity above 0 and at most 1",
        ));
    }
    let names = &set.class_names;
    let (_, report) = head::train(set.matrix(), labels, names, &options.train)?;
    let probabilities = softmax(report.out_of_fold.clone(), report.temperature);
    let noise = confident_learning(probabilities.view(), labels);

    let unit = normalized(set.matrix());
    let neighbours = nearest(
        unit.view(),
        unit.view(),
        NEIGHBOURS.max(options.outlier_k),
        true,
    );
    let same = match options.same_input_similarity {
        Some(similarity) => SameInput::Similarity(similarity),
        None => SameInput::calibrated(&neighbours, SAME_INPUT_FLOOR),
    };
    let duplicates = duplicate_groups(set, train.content, &neighbours, &same);
    let (outliers, fences) = outliers(&neighbours, labels, names.len(), options.outlier_k);
    let leakage = match validation {
        Some(validation) => leaks(train, validation, unit.view(), &same)?,
        None => Vec::new(),
    };

    let mut flagged = vec![false; set.rows()];
    noise.issues.iter().for_each(|i| flagged[i.row] = true);
    outliers.iter().for_each(|&(row, _)| flagged[row] = true);
    for group in duplicates.iter().filter(|g| g.group.conflicting) {
        group.rows.iter().for_each(|&row| flagged[row] = true);
    }
    let correct = |row: &usize| argmax(&probabilities.row(*row).to_vec()) == labels[*row];
    let unflagged: Vec<usize> = (0..set.rows()).filter(|&r| !flagged[r]).collect();
    let classes = names
        .iter()
        .enumerate()
        .map(|(c, name)| (name.clone(), labels.iter().filter(|&&l| l == c).count()))
        .collect();
    let mut typical = unflagged.clone();
    typical
        .sort_by(|&a, &b| probabilities[[b, labels[b]]].total_cmp(&probabilities[[a, labels[a]]]));
    let examples = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let rows = typical
                .iter()
                .filter(|&&r| labels[r] == c)
                .take(EXAMPLES_PER_CLASS);
            (name.clone(), rows.map(|&r| set.paths[r].clone()).collect())
        })
        .collect();
    let summary = AuditSummary {
        rows: set.rows(),
        classes,
        label_issues: noise.issues.len(),
        duplicate_groups: duplicates.len(),
        conflicting_groups: duplicates.iter().filter(|g| g.group.conflicting).count(),
        leaked: leakage.len(),
        outliers: outliers.len(),
        noise_rate: noise.noise_rate,
        cv_accuracy: report.cv_accuracy,
        cv_accuracy_unflagged: unflagged.iter().filter(|r| correct(r)).count() as f64
            / unflagged.len().max(1) as f64,
        same_input_ratios: match &same {
            SameInput::Relative { scales, .. } => scales
                .iter()
                .map(|scale| SameInputRatio {
                    neighbour: scale.neighbour,
                    ratio: scale.ratio,
                })
                .collect(),
            SameInput::Similarity(_) => Vec::new(),
        },
        outlier_distance: names.iter().cloned().zip(fences).collect(),
    };
    Ok(Audit {
        label_issues: noise
            .issues
            .iter()
            .map(|issue| LabelIssue {
                path: set.paths[issue.row].clone(),
                given: names[labels[issue.row]].clone(),
                suggested: names[issue.suggested].clone(),
                score: issue.score,
            })
            .collect(),
        duplicates: duplicates.into_iter().map(|g| g.group).collect(),
        leakage,
        outliers: outliers
            .into_iter()
            .map(|(row, score)| Outlier {
                path: set.paths[row].clone(),
                class: names[labels[row]].clone(),
                score,
            })
            .collect(),
        summary,
        examples,
    })
}

/// A duplicate group and its rows.
struct Grouped {
    rows: Vec<usize>,
    group: DuplicateGroup,
}

/// Rows joined by equal content or as `same` says, in groups of two or more; conflicting
/// groups first, then the closest.
fn duplicate_groups(
    set: &EmbeddedSet,
    content: &[String],
    neighbours: &[Neighbours],
    same: &SameInput,
) -> Vec<Grouped> {
    let n = set.rows();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut joined_at = vec![1.0f32; n];
    let mut by_content: BTreeMap<&str, usize> = BTreeMap::new();
    let mut join = |parent: &mut Vec<usize>, a: usize, b: usize, similarity: f32| {
        let (ra, rb) = (root(parent, a), root(parent, b));
        if ra != rb {
            parent[rb] = ra;
            joined_at[ra] = joined_at[ra].min(joined_at[rb]).min(similarity);
        }
    };
    for (row, id) in content.iter().enumerate() {
        match by_content.get(id.as_str()) {
            Some(&first) => join(&mut parent, first, row, 1.0),
            None => {
                by_content.insert(id, row);
            }
        }
    }
    for (row, near) in neighbours.iter().enumerate() {
        for &(other, similarity) in near.iter().filter(|&&(_, s)| same.joins(row, s)) {
            let exact = content[row] == content[other];
            join(
                &mut parent,
                row,
                other,
                if exact { 1.0 } else { similarity },
            );
        }
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for row in 0..n {
        let r = root(&mut parent, row);
        members.entry(r).or_default().push(row);
    }
    let labels = set.labels.as_deref().unwrap_or(&[]);
    let mut groups: Vec<Grouped> = members
        .into_iter()
        .filter(|(_, rows)| rows.len() > 1)
        .map(|(r, rows)| {
            let class_of = |row: usize| labels.get(row).map(|&c| set.class_names[c].clone());
            let classes: Vec<String> = rows.iter().filter_map(|&row| class_of(row)).collect();
            let conflicting = classes.iter().any(|c| *c != classes[0]);
            let exact = rows.iter().all(|&row| content[row] == content[rows[0]]);
            let group = DuplicateGroup {
                paths: rows.iter().map(|&row| set.paths[row].clone()).collect(),
                classes,
                similarity: if exact { 1.0 } else { joined_at[r] },
                exact,
                conflicting,
            };
            Grouped { rows, group }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.group
            .conflicting
            .cmp(&a.group.conflicting)
            .then(b.group.similarity.total_cmp(&a.group.similarity))
    });
    groups
}

/// Rows far from the other inputs, farthest first; and the cut-off per class. A row's score is its distance to its
/// `k`-th nearest input (1 − cosine similarity); it stands out beyond the upper Tukey far-out fence (Q3 + 3 × IQR) of
/// the scores of its class, so that a blank frame among tight cells stands out although loose holiday photos in
/// another class sit as far from each other. Classes too small for quartiles share the fence of all rows.
fn outliers(
    neighbours: &[Neighbours],
    labels: &[usize],
    classes: usize,
    k: usize,
) -> (Vec<(usize, f32)>, Vec<f32>) {
    let k = k.max(1);
    let scores: Vec<f32> = neighbours
        .iter()
        .map(|near| {
            near.get(k - 1)
                .or(near.last())
                .map_or(2.0, |&(_, s)| 1.0 - s)
        })
        .collect();
    let everyone = outlier_fence(&scores);
    let fences: Vec<f32> = (0..classes)
        .map(|class| {
            let members: Vec<f32> = scores
                .iter()
                .zip(labels)
                .filter(|&(_, &label)| label == class)
                .map(|(&score, _)| score)
                .collect();
            if members.len() < MIN_CLASS_FOR_FENCE {
                everyone
            } else {
                outlier_fence(&members)
            }
        })
        .collect();
    let mut found: Vec<(usize, f32)> = scores
        .iter()
        .zip(labels)
        .enumerate()
        .filter(|&(_, (&score, &label))| score > fences[label])
        .map(|(row, (&score, _))| (row, score))
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    (found, fences)
}

/// Validation rows with the same content as a training row, or that `same` joins to one.
fn leaks(
    train: &AuditSet,
    validation: &AuditSet,
    train_unit: ArrayView2<f32>,
    same: &SameInput,
) -> Result<Vec<Leak>> {
    let other = validation.set;
    if other.dim != train.set.dim {
        return Err(Error::Incompatible(format!(
            "the validation embeddings have {} values, the training ones {}",
            other.dim, train.set.dim
        )));
    }
    let by_content: BTreeMap<&str, usize> = train
        .content
        .iter()
        .enumerate()
        .map(|(row, id)| (id.as_str(), row))
        .collect();
    let unit = normalized(other.matrix());
    let nearest_train = nearest(unit.view(), train_unit, 1, false);
    let mut found: Vec<Leak> = Vec::new();
    for (row, near) in nearest_train.iter().enumerate() {
        let copied = validation
            .content
            .get(row)
            .and_then(|id| by_content.get(id.as_str()));
        let leak = match (copied, near.first()) {
            (Some(&twin), _) => Some((twin, 1.0, true)),
            (None, Some(&(twin, similarity))) if same.joins(twin, similarity) => {
                Some((twin, similarity, false))
            }
            _ => None,
        };
        if let Some((twin, similarity, exact)) = leak {
            found.push(Leak {
                validation: other.paths[row].clone(),
                train: train.set.paths[twin].clone(),
                class: train.set.labels.as_ref().map_or(String::new(), |labels| {
                    train.set.class_names[labels[twin]].clone()
                }),
                similarity,
                exact,
            });
        }
    }
    found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    Ok(found)
}
