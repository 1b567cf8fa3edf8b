//! headstart's image resize (fast_image_resize's convolution on 8-bit pixels) as two matrices, exactly: the
//! same filter weights, normalised per output pixel and quantised to 16-bit fixed point with the same
//! precision rule. With the sums taken in float64 and each pass rounded (`+ 0.5`, clipped to 0–255, truncated)
//! an ONNX graph reproduces the resized pixels bit for bit.

use crate::preprocess::Interpolation;

/// Fixed-point limits of fast_image_resize's 8-bit convolution.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const MAX_COEFFS_PRECISION: u32 = 16 - 1;

/// A filter function and its support radius.
type Filter = (fn(f64) -> f64, f64);

/// The filter and its support, as fast_image_resize defines them; `None` where the resize is not a
/// convolution (nearest neighbour) or is not reproduced here.
fn filter(interpolation: Interpolation) -> Option<Filter> {
    fn bilinear(x: f64) -> f64 {
        let x = x.abs();
        if x < 1.0 { 1.0 - x } else { 0.0 }
    }
    fn catmull_rom(x: f64) -> f64 {
        const A: f64 = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.) * x - (A + 3.)) * x * x + 1.
        } else if x < 2.0 {
            (((x - 5.) * x + 8.) * x - 4.) * A
        } else {
            0.0
        }
    }
    match interpolation {
        Interpolation::Bilinear => Some((bilinear, 1.0)),
        Interpolation::Bicubic => Some((catmull_rom, 2.0)),
        Interpolation::Nearest | Interpolation::Lanczos => None,
    }
}

/// One axis of a resize: a row-major [out, in] matrix whose rows weight the input pixels of one output pixel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pass {
    pub matrix: Vec<f64>,
    pub input: usize,
    pub output: usize,
    /// A plain copy of a window (no convolution, so no rounding needed).
    pub copy: bool,
}

/// The pass fast_image_resize makes along one axis: from `in_size` pixels, the box [start, start + length),
/// to `out_size` pixels. `None` if the interpolation cannot be reproduced.
pub(crate) fn axis_pass(
    interpolation: Interpolation,
    in_size: u32,
    start: f64,
    length: f64,
    out_size: u32,
) -> Option<Pass> {
    let (input, output) = (in_size as usize, out_size as usize);
    let mut matrix = vec![0.0f64; output * input];
    // No convolution when the box is whole pixels of the output's size: a copy.
    if out_size as f64 == length && start == start.round() {
        let offset = start as usize;
        for (o, row) in matrix.chunks_exact_mut(input).enumerate() {
            if let Some(cell) = row.get_mut(offset + o) {
                *cell = 1.0;
            }
        }
        return Some(Pass {
            matrix,
            input,
            output,
            copy: true,
        });
    }
    let (filter, support) = filter(interpolation)?;
    let scale = length / out_size as f64;
    let filter_scale = scale.max(1.0);
    let radius = support * filter_scale;
    let recip = 1.0 / filter_scale;
    // Normalised f64 weights per output pixel, with the input index of the first.
    let mut rows: Vec<(usize, Vec<f64>)> = Vec::with_capacity(output);
    for out_x in 0..output {
        let in_center = start + (out_x as f64 + 0.5) * scale;
        let x_min = (in_center - radius).floor().max(0.) as usize;
        let x_max = ((in_center + radius).ceil().min(in_size as f64)) as usize;
        let center = in_center - 0.5;
        let mut first = x_min;
        let mut weights = Vec::new();
        let mut total = 0.0;
        for x in x_min..x_max {
            let w = filter((x as f64 - center) * recip);
            if x == first && w == 0.0 {
                first += 1;
            } else {
                weights.push(w);
                total += w;
            }
        }
        while weights.last() == Some(&0.0) {
            weights.pop();
        }
        if total != 0.0 {
            weights.iter_mut().for_each(|w| *w /= total);
        }
        rows.push((first, weights));
    }
    let max_weight = rows
        .iter()
        .flat_map(|(_, w)| w.iter().copied())
        .fold(0.0f64, f64::max);
    let mut precision = 0;
    for candidate in 0..PRECISION_BITS {
        precision = candidate;
        if (max_weight * f64::from(1u32 << (candidate + 1))).round() as i64
            >= 1i64 << MAX_COEFFS_PRECISION
        {
            break;
        }
    }
    let unit = f64::from(1u32 << precision);
    for (o, (first, weights)) in rows.iter().enumerate() {
        for (j, w) in weights.iter().enumerate() {
            if let Some(cell) = matrix.get_mut(o * input + first + j) {
                *cell = (w * unit).round() as i16 as f64 / unit;
            }
        }
    }
    Some(Pass {
        matrix,
        input,
        output,
        copy: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a pass to one row of 8-bit pixels, rounding as fast_image_resize does.
    fn apply(pass: &Pass, pixels: &[u8]) -> Vec<u8> {
        pass.matrix
            .chunks_exact(pass.input)
            .map(|row| {
                let sum: f64 = row.iter().zip(pixels).map(|(w, &p)| w * f64::from(p)).sum();
                (sum + 0.5).clamp(0.0, 255.5) as u8
            })
            .collect()
    }

    #[test]
    fn passes_match_fast_image_resize_exactly() {
        use fast_image_resize::images::{Image, ImageRef};
        use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
        // One row of varied pixels, resized down, up, and with a fractional crop box.
        let width = 97u32;
        let pixels: Vec<u8> = (0..width)
            .map(|i| ((i * 37 + i * i * 11) % 256) as u8)
            .collect();
        for (interpolation, filter) in [
            (Interpolation::Bilinear, FilterType::Bilinear),
            (Interpolation::Bicubic, FilterType::CatmullRom),
        ] {
            for (left, length, out) in [
                (0.0, 97.0, 40),
                (3.25, 80.5, 131),
                (10.0, 60.0, 60),
                (0.0, 97.0, 97),
            ] {
                let pass = axis_pass(interpolation, width, left, length, out).unwrap();
                let source = ImageRef::new(width, 1, &pixels, PixelType::U8).unwrap();
                let mut target = Image::new(out, 1, PixelType::U8);
                let options = ResizeOptions::new()
                    .resize_alg(ResizeAlg::Convolution(filter))
                    .crop(left, 0.0, length, 1.0);
                Resizer::new()
                    .resize(&source, &mut target, &options)
                    .unwrap();
                assert_eq!(
                    apply(&pass, &pixels),
                    target.buffer(),
                    "{interpolation:?} box ({left}, {length}) -> {out}"
                );
            }
        }
        assert!(axis_pass(Interpolation::Nearest, 10, 0.0, 10.0, 5).is_none());
    }
}
