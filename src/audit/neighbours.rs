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

/// The similarity from which two inputs count as one: far above what nearest neighbours usually are. On the log
/// of the distance to the nearest neighbour (1 − similarity), it is the lower Tukey far-out fence, Q1 − 3 × IQR:
/// re-encoded, resized or slightly edited copies sit orders of magnitude closer than distinct inputs, whatever the
/// data. Never below `floor`.
pub fn same_input_similarity(nearest_similarities: &[f32], floor: f32) -> f32 {
    let mut logs: Vec<f64> = nearest_similarities
        .iter()
        .map(|&s| (1.0 - f64::from(s)).max(1e-9).ln())
        .collect();
    if logs.len() < 4 {
        return floor.max(0.99);
    }
    logs.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&logs, 0.25), quantile(&logs, 0.75));
    let fence = q1 - 3.0 * (q3 - q1);
    (1.0 - fence.exp()).max(f64::from(floor)) as f32
}

/// The score above which an input stands out: the upper Tukey far-out fence, Q3 + 3 × IQR.
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
    fn copies_are_far_closer_than_the_fence() {
        // Distinct neighbours at 0.80-0.95, two copies at 0.9999.
        let mut similarities: Vec<f32> = (0..40).map(|i| 0.80 + 0.15 * i as f32 / 40.0).collect();
        similarities.extend([0.9999, 0.9999]);
        let cut = same_input_similarity(&similarities, 0.5);
        assert!(cut > 0.95 && cut < 0.9999, "{cut}");
        let scores: Vec<f32> = (0..40)
            .map(|i| 0.1 + 0.01 * (i % 5) as f32)
            .chain([0.9])
            .collect();
        let fence = outlier_fence(&scores);
        assert!(fence > 0.14 && fence < 0.9, "{fence}");
    }
}
