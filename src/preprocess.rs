//! MNIST's own preprocessing, for a person's own digit images.
//!
//! From a grayscale image (luminance in `[0, 1]`, any size): ink is dark-on-light or
//! light-on-dark, decided by the border; the image is cropped to the ink's bounding box,
//! scaled with area averaging to fit a `20 x 20` box keeping the aspect ratio, and placed in a
//! `28 x 28` frame so that its centre of mass is at the centre, as LeCun et al. prepared MNIST.
//! Ink is stretched so its maximum is 1, the range of the training data (`x / 255`).

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};

/// Side of the output frame.
pub const FRAME: usize = 28;
/// Side of the box the digit is scaled to fit.
pub const BOX: usize = 20;

/// Pixels with at least this fraction of the strongest ink count for the bounding box.
const INK_THRESHOLD: f32 = 0.2;

/// Turns a grayscale image (`(rows, cols)`, luminance in `[0, 1]`) into a `(28, 28)` MNIST-like
/// digit with ink in `[0, 1]`.
///
/// # Errors
/// [`Error::NoDigit`] when the image is empty or holds no ink.
pub fn mnist_digit(gray: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let (h, w) = gray.dim();
    let no_ink = |reason: &str| Error::NoDigit {
        reason: reason.into(),
    };
    if h == 0 || w == 0 {
        return Err(no_ink("the image has no pixels"));
    }
    let border: Vec<f32> = gray
        .indexed_iter()
        .filter(|((r, c), _)| *r == 0 || *c == 0 || *r == h - 1 || *c == w - 1)
        .map(|(_, &v)| v)
        .collect();
    let light_background = border.iter().sum::<f32>() / border.len() as f32 > 0.5;
    let ink = gray.mapv(|v| {
        let v = v.clamp(0.0, 1.0);
        if light_background { 1.0 - v } else { v }
    });
    let strongest = ink.iter().copied().fold(0.0f32, f32::max);
    if strongest < 0.05 {
        return Err(no_ink("no ink found (the image is blank)"));
    }
    let inked = |v: f32| v >= INK_THRESHOLD * strongest;
    let rows: Vec<usize> = (0..h)
        .filter(|&r| ink.row(r).iter().any(|&v| inked(v)))
        .collect();
    let cols: Vec<usize> = (0..w)
        .filter(|&c| ink.column(c).iter().any(|&v| inked(v)))
        .collect();
    let (r0, r1) = (rows[0], rows[rows.len() - 1] + 1);
    let (c0, c1) = (cols[0], cols[cols.len() - 1] + 1);
    let crop = ink.slice(ndarray::s![r0..r1, c0..c1]);
    let (ch, cw) = crop.dim();
    let scale = BOX as f64 / ch.max(cw) as f64;
    let out_h = ((ch as f64 * scale).round() as usize).clamp(1, BOX);
    let out_w = ((cw as f64 * scale).round() as usize).clamp(1, BOX);
    let small = resize_area(crop, out_h, out_w);
    let peak = small
        .iter()
        .copied()
        .fold(0.0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let small = small.mapv(|v| v / peak);
    // Centre of mass, with pixel centres at i + 0.5.
    let mass: f64 = small.iter().map(|&v| f64::from(v)).sum();
    let (mut mr, mut mc) = (0.0f64, 0.0f64);
    for ((r, c), &v) in small.indexed_iter() {
        mr += (r as f64 + 0.5) * f64::from(v);
        mc += (c as f64 + 0.5) * f64::from(v);
    }
    let half = FRAME as f64 / 2.0;
    let top = (half - mr / mass).round() as isize;
    let left = (half - mc / mass).round() as isize;
    let mut frame = Array2::zeros((FRAME, FRAME));
    for ((r, c), &v) in small.indexed_iter() {
        let (fr, fc) = (r as isize + top, c as isize + left);
        if (0..FRAME as isize).contains(&fr) && (0..FRAME as isize).contains(&fc) {
            frame[[fr as usize, fc as usize]] = v;
        }
    }
    Ok(frame)
}

/// For each output index, the input indices it covers and their overlap weights (summing to 1).
fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let step = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let (lo, hi) = (o as f64 * step, (o + 1) as f64 * step);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(n_in);
            (first..last)
                .map(|i| {
                    let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    (i, (overlap / step) as f32)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// Area-averaging resize (exact box filter), up or down.
fn resize_area(src: ArrayView2<'_, f32>, out_h: usize, out_w: usize) -> Array2<f32> {
    let (h, w) = src.dim();
    let wr = area_weights(h, out_h);
    let wc = area_weights(w, out_w);
    let mut tmp = Array2::<f32>::zeros((out_h, w));
    for (o, weights) in wr.iter().enumerate() {
        for &(i, wt) in weights {
            tmp.row_mut(o).scaled_add(wt, &src.row(i));
        }
    }
    let mut out = Array2::<f32>::zeros((out_h, out_w));
    for (o, weights) in wc.iter().enumerate() {
        for &(i, wt) in weights {
            out.column_mut(o).scaled_add(wt, &tmp.column(i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_weights_partition_the_input() {
        for (n_in, n_out) in [(40, 20), (7, 20), (33, 5), (20, 20)] {
            let w = area_weights(n_in, n_out);
            let mut per_input = vec![0.0f32; n_in];
            for ws in &w {
                let s: f32 = ws.iter().map(|p| p.1).sum();
                assert!((s - 1.0).abs() < 1e-5);
                for &(i, x) in ws {
                    per_input[i] += x;
                }
            }
            let expect = n_out as f32 / n_in as f32;
            assert!(per_input.iter().all(|&x| (x - expect).abs() < 1e-4));
        }
    }
}
