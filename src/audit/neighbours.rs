//! Each input's nearest neighbours by cosine similarity, found block by block so memory stays at a block of
//! rows × all rows; and the cut-offs calibrated on them: how close two inputs must be to count as the same one
//! (near-duplicates, leakage), and how far from every neighbour one must be to stand out (outliers).

use ndarray::{Array2, ArrayView2, Axis, s};

/// Rows compared with all others at a time.
const ROWS_PER_BLOCK: usize = 512;

/// A row's `k` nearest other rows, most similar first: (row, cosine similarity).
pub type Neighbours = Vec<(usize, f32)>;

/// The `k` nearest rows of `reference` to each row of `queries` (both unit length); with `skip_self`, queries
/// are `reference` itself and a row is not its own neighbour.
pub fn nearest(
    queries: ArrayView2<f32>,
    reference: ArrayView2<f32>,
    k: usize,
    skip_self: bool,
) -> Vec<Neighbours> {
    let mut found = Vec::with_capacity(queries.nrows());
    let mut start = 0;
    while start < queries.nrows() {
        let end = (start + ROWS_PER_BLOCK).min(queries.nrows());
        let similarities: Array2<f32> = queries.slice(s![start..end, ..]).dot(&reference.t());
        for (offset, row) in similarities.axis_iter(Axis(0)).enumerate() {
            let me = start + offset;
            let mut best: Neighbours = row
                .iter()
                .enumerate()
                .filter(|&(other, _)| !(skip_self && other == me))
                .map(|(other, &similarity)| (other, similarity))
                .collect();
            let keep = k.min(best.len());
            if keep < best.len() {
                best.select_nth_unstable_by(keep, |a, b| b.1.total_cmp(&a.1));
                best.truncate(keep);
            }
            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            found.push(best);
        }
        start = end;
    }
    found
}

/// When two inputs count as one.
#[derive(Debug, Clone)]
pub enum SameInput {
    /// From this cosine similarity on.
    Similarity(f32),
    /// When their distance (1 − similarity) is, at one of the `scales`, at most its `ratio` times the distance from
    /// the first of them to its `neighbour`-th nearest input: closer than everything around it, whatever the
    /// density of its part of the data (cells of one kind sit far closer together than holiday photos). Never
    /// below `floor`.
    Relative { scales: Vec<Scale>, floor: f32 },
}

/// One neighbourhood a copy is judged against.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Which neighbour's distance is the reach (1 = the nearest).
    pub neighbour: usize,
    pub ratio: f32,
    /// Per row, the distance to its `neighbour`-th nearest input.
    reach: Vec<f32>,
}

/// The neighbourhoods a copy is judged against: the 10th neighbour lets a group of up to ten near copies (a burst
/// of frames) stand out together; the 5th is closer, where a re-encoded copy in a dense part of the data does.
/// On ELPV with near copies planted (benches/audit.rs) the 10th alone found 87 % of them, both 92 %, for 20 % more
/// pairs flagged.
const SCALES: [usize; 2] = [10, 5];

impl SameInput {
    /// Calibrated on the data: at each scale, `ratio` is the lower Tukey fence (Q1 − 1.5 × IQR) of the log of every
    /// row's nearest-neighbour distance over its reach; re-encoded, resized or slightly edited copies sit far below
    /// the bulk of those ratios.
    pub fn calibrated(neighbours: &[Neighbours], floor: f32) -> SameInput {
        let scales = SCALES
            .iter()
            .map(|&neighbour| {
                let reach: Vec<f32> = neighbours
                    .iter()
                    .map(|near| {
                        near.get(neighbour - 1)
                            .or(near.last())
                            .map_or(2.0, |&(_, s)| 1.0 - s)
                    })
                    .collect();
                let mut logs: Vec<f64> = neighbours
                    .iter()
                    .zip(&reach)
                    .filter_map(|(near, &reach)| {
                        let nearest = 1.0 - near.first()?.1;
                        (reach > 0.0)
                            .then(|| (f64::from(nearest.max(1e-9)) / f64::from(reach)).ln())
                    })
                    .collect();
                logs.sort_by(f64::total_cmp);
                let ratio = if logs.len() < 8 {
                    0.0
                } else {
                    let (q1, q3) = (quantile(&logs, 0.25), quantile(&logs, 0.75));
                    (q1 - 1.5 * (q3 - q1)).exp() as f32
                };
                Scale {
                    neighbour,
                    ratio,
                    reach,
                }
            })
            .collect();
        SameInput::Relative { scales, floor }
    }

    /// Whether `row` and an input at `similarity` from it count as one.
    pub fn joins(&self, row: usize, similarity: f32) -> bool {
        match self {
            SameInput::Similarity(cut) => similarity >= *cut,
            SameInput::Relative { scales, floor } => {
                similarity >= *floor
                    && scales
                        .iter()
                        .any(|scale| 1.0 - similarity <= scale.ratio * scale.reach[row])
            }
        }
    }
}

/// The value above which one of `scores` stands out: the upper Tukey far-out fence, Q3 + 3 × IQR.
pub fn outlier_fence(scores: &[f32]) -> f32 {
    let mut sorted: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
    if sorted.is_empty() {
        return f32::INFINITY;
    }
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
    (q3 + 3.0 * (q3 - q1)) as f32
}

/// Linear interpolation between the order statistics of `sorted`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nearest_skips_itself_and_orders_by_similarity() {
        let x = array![[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]];
        let found = nearest(x.view(), x.view(), 2, true);
        assert_eq!(found[0][0].0, 1);
        assert_eq!(found[2][0].0, 3);
        assert!(found.iter().all(|n| n.len() == 2));
        assert!(
            found
                .iter()
                .enumerate()
                .all(|(i, n)| n.iter().all(|(j, _)| *j != i))
        );
    }

    #[test]
    fn copies_are_far_closer_than_their_neighbourhood() {
        // A tight cluster (nearest at 0.02, 10th at 0.04) and a loose one (0.2 and 0.4), each with a copy at a
        // tenth of its nearest distance's scale... and two inputs a thousandth of their reach apart.
        let mut neighbours: Vec<Neighbours> = Vec::new();
        for i in 0..40 {
            let (nearest, reach) = if i % 2 == 0 { (0.02, 0.04) } else { (0.2, 0.4) };
            let mut near: Neighbours = vec![(0, 1.0 - nearest)];
            near.extend((1..10).map(|k| (k, 1.0 - (nearest + (reach - nearest) * k as f32 / 9.0))));
            neighbours.push(near);
        }
        let copy = |reach: f32| -> Neighbours {
            let mut near: Neighbours = vec![(0, 1.0 - reach / 1000.0)];
            near.extend((1..10).map(|k| (k, 1.0 - reach * k as f32 / 9.0)));
            near
        };
        neighbours.push(copy(0.04));
        neighbours.push(copy(0.4));
        let same = SameInput::calibrated(&neighbours, 0.5);
        assert!(same.joins(40, 1.0 - 0.04 / 1000.0));
        assert!(same.joins(41, 1.0 - 0.4 / 1000.0));
        // The tight cluster's ordinary nearest neighbours do not join, however similar.
        assert!(!same.joins(0, 0.98));
        assert!(!same.joins(1, 0.8));
        let scores: Vec<f32> = (0..40)
            .map(|i| 0.1 + 0.01 * (i % 5) as f32)
            .chain([0.9])
            .collect();
        let fence = outlier_fence(&scores);
        assert!(fence > 0.14 && fence < 0.9, "{fence}");
    }
}
