//! Pooling: a backbone output tensor becomes one vector per input.

use serde::{Deserialize, Serialize};

use crate::preprocess::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// By rank: 4-D global average, 3-D CLS token for images and masked mean for texts, 2-D as is.
    #[default]
    Auto,
    /// Average over spatial positions (4-D) or tokens (3-D, using the attention mask when there is one).
    Mean,
    /// The first token of a [N, tokens, D] output (ViT's class token).
    Cls,
    /// Keep a [N, D] output as it is; anything of higher rank is flattened.
    Flatten,
}

/// Pools `data` of `shape` ([N, ...]) into N vectors, returned row-major as (N, D, values).
/// `layout` says where the channels of a 4-D output are; `mask` ([N, tokens], 1 = real token) applies to 3-D.
pub fn pool(
    shape: &[i64],
    data: &[f32],
    pooling: Pooling,
    layout: Layout,
    mask: Option<&[i64]>,
) -> Result<(usize, usize, Vec<f32>), String> {
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if dims.iter().product::<usize>() != data.len() || dims.is_empty() {
        return Err(format!(
            "output shape {shape:?} does not match its {} values",
            data.len()
        ));
    }
    let n = dims[0];
    if pooling == Pooling::Flatten {
        let d = data.len().checked_div(n).unwrap_or(0);
        return Ok((n, d, data.to_vec()));
    }
    match (dims.as_slice(), pooling) {
        ([_, d], Pooling::Auto | Pooling::Mean) => Ok((n, *d, data.to_vec())),
        (&[_, a, b, c], Pooling::Auto | Pooling::Mean) => {
            // A 1x1 map says where its channels are whatever the input layout was.
            let layout = match (a, b, c) {
                (_, 1, 1) => Layout::Nchw,
                (1, 1, _) => Layout::Nhwc,
                _ => layout,
            };
            Ok(spatial_mean(n, a, b, c, data, layout))
        }
        (&[_, t, d], Pooling::Cls) | (&[_, t, d], Pooling::Auto)
            if mask.is_none() || pooling == Pooling::Cls =>
        {
            let mut out = Vec::with_capacity(n * d);
            for row in 0..n {
                out.extend_from_slice(&data[row * t * d..row * t * d + d]);
            }
            Ok((n, d, out))
        }
        (&[_, t, d], Pooling::Auto | Pooling::Mean) => Ok(token_mean(n, t, d, data, mask)),
        (_, pooling) => Err(format!(
            "cannot pool an output of shape {shape:?} with {pooling:?}: use a 2-D, 3-D or 4-D output, or flatten pooling"
        )),
    }
}

fn spatial_mean(
    n: usize,
    a: usize,
    b: usize,
    c: usize,
    data: &[f32],
    layout: Layout,
) -> (usize, usize, Vec<f32>) {
    let per = a * b * c;
    match layout {
        // [N, C, H, W]: channel a, spatial b*c.
        Layout::Nchw => {
            let spatial = (b * c).max(1) as f32;
            let out = (0..n)
                .flat_map(|i| (0..a).map(move |ch| (i, ch)))
                .map(|(i, ch)| {
                    data[i * per + ch * b * c..i * per + (ch + 1) * b * c]
                        .iter()
                        .sum::<f32>()
                        / spatial
                })
                .collect();
            (n, a, out)
        }
        // [N, H, W, C]: spatial a*b, channel c.
        Layout::Nhwc => {
            let spatial = (a * b).max(1) as f32;
            let mut out = vec![0.0f32; n * c];
            for i in 0..n {
                let acc = &mut out[i * c..(i + 1) * c];
                for pos in data[i * per..(i + 1) * per].chunks_exact(c) {
                    acc.iter_mut().zip(pos).for_each(|(s, v)| *s += v);
                }
                acc.iter_mut().for_each(|s| *s /= spatial);
            }
            (n, c, out)
        }
    }
}

fn token_mean(
    n: usize,
    t: usize,
    d: usize,
    data: &[f32],
    mask: Option<&[i64]>,
) -> (usize, usize, Vec<f32>) {
    let mut out = vec![0.0f32; n * d];
    for i in 0..n {
        let acc = &mut out[i * d..(i + 1) * d];
        let mut count = 0.0f32;
        for tok in 0..t {
            if mask.is_some_and(|m| m[i * t + tok] == 0) {
                continue;
            }
            count += 1.0;
            let row = &data[(i * t + tok) * d..(i * t + tok + 1) * d];
            acc.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        // sentence-transformers clamps the token count at 1e-9.
        let count = count.max(1e-9);
        acc.iter_mut().for_each(|s| *s /= count);
    }
    (n, d, out)
}

/// Scales each row of `data` (N rows of `dim`) to unit length; zero rows stay zero.
pub(crate) fn l2_normalize(data: &mut [f32], dim: usize) {
    for row in data.chunks_exact_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_d_average_in_both_layouts() {
        // N=1, C=2, H=1, W=2
        let nchw = [1.0, 3.0, 10.0, 30.0];
        assert_eq!(
            pool(&[1, 2, 1, 2], &nchw, Pooling::Auto, Layout::Nchw, None).unwrap(),
            (1, 2, vec![2.0, 20.0])
        );
        // Same values as N=1, H=1, W=2, C=2
        let nhwc = [1.0, 10.0, 3.0, 30.0];
        assert_eq!(
            pool(&[1, 1, 2, 2], &nhwc, Pooling::Auto, Layout::Nhwc, None).unwrap(),
            (1, 2, vec![2.0, 20.0])
        );
        // 1x1 maps pool to their channels whichever layout the input had.
        assert_eq!(
            pool(
                &[1, 3, 1, 1],
                &[1.0, 2.0, 3.0],
                Pooling::Auto,
                Layout::Nhwc,
                None
            )
            .unwrap()
            .1,
            3
        );
        assert_eq!(
            pool(
                &[1, 1, 1, 3],
                &[1.0, 2.0, 3.0],
                Pooling::Auto,
                Layout::Nchw,
                None
            )
            .unwrap()
            .1,
            3
        );
    }

    #[test]
    fn three_d_cls_and_masked_mean() {
        // N=1, T=3, D=2
        let data = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(
            pool(&[1, 3, 2], &data, Pooling::Auto, Layout::Nchw, None)
                .unwrap()
                .2,
            [1.0, 2.0]
        );
        let mask = [1, 1, 0];
        assert_eq!(
            pool(&[1, 3, 2], &data, Pooling::Auto, Layout::Nchw, Some(&mask))
                .unwrap()
                .2,
            [2.0, 3.0]
        );
        assert_eq!(
            pool(&[1, 3, 2], &data, Pooling::Cls, Layout::Nchw, Some(&mask))
                .unwrap()
                .2,
            [1.0, 2.0]
        );
        assert_eq!(
            pool(&[1, 3, 2], &data, Pooling::Mean, Layout::Nchw, None)
                .unwrap()
                .2,
            [104.0 / 3.0, 106.0 / 3.0]
        );
    }

    #[test]
    fn two_d_as_is_and_bad_shapes() {
        assert_eq!(
            pool(&[2, 1], &[5.0, 6.0], Pooling::Auto, Layout::Nchw, None).unwrap(),
            (2, 1, vec![5.0, 6.0])
        );
        assert!(pool(&[2], &[5.0, 6.0], Pooling::Auto, Layout::Nchw, None).is_err());
        assert!(pool(&[1, 3], &[5.0, 6.0], Pooling::Auto, Layout::Nchw, None).is_err());
        assert_eq!(
            pool(&[2], &[5.0, 6.0], Pooling::Flatten, Layout::Nchw, None).unwrap(),
            (2, 1, vec![5.0, 6.0])
        );
    }

    #[test]
    fn normalise() {
        let mut v = [3.0, 4.0, 0.0, 0.0];
        l2_normalize(&mut v, 2);
        assert_eq!(v, [0.6, 0.8, 0.0, 0.0]);
    }
}
