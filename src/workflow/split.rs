//! Stratified, seeded train / validation splits of embedded rows.

use std::collections::HashSet;

use crate::embeddings::EmbeddedSet;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Splits rows into (train, validation): a stratified, seeded `fraction` of the images goes to validation.
/// Augmented views follow their image, and validation keeps only original views.
pub fn stratified_split(
    set: &EmbeddedSet,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let labels = labels_of(set)?;
    let originals: Vec<(&str, usize)> = (0..set.rows())
        .filter(|&i| !set.augmented[i])
        .map(|i| (set.paths[i].as_str(), labels[i]))
        .collect();
    let held_out = held_out_paths(&originals, set.class_names.len(), fraction, seed)?;
    Ok(split_by(set, &held_out))
}

/// The paths of a stratified, seeded `fraction` of each class of `rows` (path, class); a class with a single
/// row keeps it.
pub(super) fn held_out_paths(
    rows: &[(&str, usize)],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<HashSet<String>> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::parameter(
            "fraction",
            format!("must be between 0 and 1, got {fraction}"),
        ));
    }
    let mut rng = SplitMix64(seed);
    let mut held_out = HashSet::new();
    for class in 0..classes {
        let mut members: Vec<&str> = rows
            .iter()
            .filter(|(_, label)| *label == class)
            .map(|(path, _)| *path)
            .collect();
        rng.shuffle(&mut members);
        let take = ((members.len() as f64) * fraction).round() as usize;
        let take = take.min(members.len().saturating_sub(1));
        held_out.extend(members.into_iter().take(take).map(str::to_string));
    }
    Ok(held_out)
}

/// (train, validation) rows: the images at `held_out` validate (original views only), the rest train.
pub(super) fn split_by(set: &EmbeddedSet, held_out: &HashSet<String>) -> (Vec<usize>, Vec<usize>) {
    let train = (0..set.rows())
        .filter(|&i| !held_out.contains(&set.paths[i]))
        .collect();
    let validation = (0..set.rows())
        .filter(|&i| !set.augmented[i] && held_out.contains(&set.paths[i]))
        .collect();
    (train, validation)
}

/// The set's labels; unlabelled data is an error.
pub(super) fn labels_of(set: &EmbeddedSet) -> Result<&[usize]> {
    set.labels.as_deref().ok_or_else(|| {
        Error::TrainingData(
            "training and evaluation need labelled data: one sub-folder per class, or a table with a label column (this data is unlabelled)"
                .into(),
        )
    })
}
