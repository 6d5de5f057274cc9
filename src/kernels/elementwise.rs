//! The element-wise kernels of a training step, and the rest of relumax's arithmetic (see
//! [`super::portable`] for the products):
//!
//! - [`bias_relu_dropout`]: `h = relu(z + b) * m / (1 - p)`, in place, `(batch, width)`: `z + b`
//!   rounded, then `max(., 0)`, then times the scale `1 / (1 - p)` (rounded once, in f32), or
//!   `+0` where the unit is dropped;
//! - [`relu_dropout_backward`]: `dz = dh * scale` where `h > 0`, else `+0`. A dropped unit and
//!   an inactive ReLU both have `h = 0`, so the mask need not be stored;
//! - [`softmax_cross_entropy`]: per row, `z + b`, `max`, `e_j = exp(z_j - max)` with relumax's
//!   own [`super::math::exp`], `sum` added in class order, the loss `log(sum) + max - z_y` with
//!   [`super::math::ln`] (summed over rows in f64, in row order), and the gradient
//!   `(e_j * (1 / sum) - [j = y]) * scale`;
//! - [`bias_sgd`]: `b = b - lr * g`, `g` the column sums of `dz` (in f32 within each block of
//!   [`super::BATCH_BLOCK`] rows, in row order, the blocks' sums added in f64 as for weights);
//! - [`pixels_to_features`]: an image's bytes to features, `byte / 255` rounded once.
//!
//! Element-wise kernels split rows into fixed chunks of [`CHUNK_ROWS`]. Each chunk draws its
//! dropout mask from its own stream, keyed by the chunk index, and chunks run in parallel (on
//! the current [`super::Team`]) only when the matrix is large enough to pay for it. Which
//! thread runs a chunk never changes its result, so outputs are identical for any thread
//! count.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use rand::RngCore;

use super::math;
use super::portable::{BATCH_BLOCK, Fma};
use super::{check, for_each};
use crate::rng::{self, Stream};

/// Rows per fixed chunk of the element-wise kernels (and per dropout stream).
pub const CHUNK_ROWS: usize = 8;

/// Below this many elements, element-wise kernels run on the calling thread. Low on purpose:
/// splitting even a 32 x 128 batch across two threads paid (see `docs/performance.md`).
const PAR_MIN_ELEMENTS: usize = 1 << 11;

/// A dropout draw: drop probability `p` and the key of this (seed, epoch, step, layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing a unit, in `[0, 1)`.
    pub p: f32,
    /// Key of the mask; each row chunk derives its own stream from it.
    pub key: u64,
}

impl Dropout {
    /// The key for a layer's mask at a training step.
    pub fn key(seed: u64, epoch: usize, step: usize, layer: usize) -> u64 {
        rng::derive(
            seed,
            Stream::Dropout,
            &[epoch as u64, step as u64, layer as u64],
        )
    }

    /// `1 / (1 - p)`: the scale of kept units.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    /// A unit is kept when its 32-bit draw is at least this.
    pub(crate) fn threshold(&self) -> u64 {
        (f64::from(self.p) * 4_294_967_296.0) as u64
    }
}

/// Runs `f(chunk_index, rows)` over fixed chunks of [`CHUNK_ROWS`] rows of a standard-layout
/// matrix, in parallel when it is large.
fn for_row_chunks<F>(m: &mut ArrayViewMut2<'_, f32>, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let cols = m.ncols().max(1);
    let len = m.len();
    let slice = m
        .as_slice_mut()
        .expect("kernel operands must be in standard layout");
    let chunk = CHUNK_ROWS * cols;
    let parallel = len >= PAR_MIN_ELEMENTS;
    for_each(parallel, slice.chunks_mut(chunk).enumerate(), |(i, c)| {
        f(i, c)
    });
}

/// In place: `z <- relu(z + bias)`, then inverted dropout when `dropout` is given.
///
/// `z: (batch, width)` standard layout; `bias: (width,)`.
///
/// # Panics
/// If `bias.len() != z.ncols()` or `z` is not standard layout.
pub fn bias_relu_dropout(
    mut z: ArrayViewMut2<'_, f32>,
    bias: ArrayView1<'_, f32>,
    dropout: Option<Dropout>,
) {
    let width = z.ncols();
    check("bias", (width, 1), (bias.len(), 1));
    let bias = bias.to_slice().expect("bias must be contiguous");
    match dropout {
        None => for_row_chunks(&mut z, |_, rows| {
            for row in rows.chunks_exact_mut(width) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = relu(*v + b);
                }
            }
        }),
        Some(d) => {
            let scale = d.scale();
            let threshold = d.threshold();
            for_row_chunks(&mut z, |chunk, rows| {
                let mut rng = rng::stream(d.key, Stream::Dropout, &[chunk as u64]);
                for row in rows.chunks_exact_mut(width) {
                    let mut pairs = row.chunks_exact_mut(2);
                    let mut bias_pairs = bias.chunks_exact(2);
                    for (v, b) in (&mut pairs).zip(&mut bias_pairs) {
                        let r = rng.next_u64();
                        v[0] = keep(v[0] + b[0], r & 0xffff_ffff, threshold, scale);
                        v[1] = keep(v[1] + b[1], r >> 32, threshold, scale);
                    }
                    if let ([v], [b]) = (pairs.into_remainder(), bias_pairs.remainder()) {
                        let r = rng.next_u64();
                        *v = keep(*v + b, r & 0xffff_ffff, threshold, scale);
                    }
                }
            })
        }
    }
}

/// `relu(x) * scale` if the unit is kept (`draw >= threshold`), else `+0.0`: selected with a
/// bit mask, not a branch, because random draws defeat the branch predictor.
#[inline(always)]
fn keep(x: f32, draw: u64, threshold: u64, scale: f32) -> f32 {
    let mask = u32::from(draw >= threshold).wrapping_neg();
    f32::from_bits((relu(x) * scale).to_bits() & mask)
}

/// `max(x, 0)`, but NaN stays NaN (`f32::max` would return 0 and hide a diverging run).
#[inline(always)]
fn relu(x: f32) -> f32 {
    if x.is_nan() { x } else { x.max(0.0) }
}

/// In place: `grad <- grad * [h > 0] * scale`, the backward of [`bias_relu_dropout`] given its
/// output `h` (`scale` is `1 / (1 - p)`, or 1 without dropout). ReLU'(0) is taken as 0.
/// Any memory layout (a training step's gradients are rows padded apart).
///
/// # Panics
/// If shapes differ.
pub fn relu_dropout_backward(mut grad: ArrayViewMut2<'_, f32>, h: ArrayView2<'_, f32>, scale: f32) {
    check("relu backward", grad.dim(), h.dim());
    let row = |mut g: ArrayViewMut1<'_, f32>, a: ArrayView1<'_, f32>| {
        ndarray::Zip::from(&mut g)
            .and(&a)
            .for_each(|g, &a| *g = if a > 0.0 { *g * scale } else { 0.0 });
    };
    let parallel = grad.len() >= PAR_MIN_ELEMENTS;
    let rows = grad.rows_mut().into_iter().zip(h.rows());
    for_each(parallel, rows, |(g, a)| row(g, a));
}

/// Summed loss and number of correct predictions over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Sum of the rows' cross-entropy losses.
    pub loss: f64,
    /// Rows whose largest logit is at the label (the first largest on ties).
    pub correct: usize,
}

/// Fused output layer: adds `bias` to `logits`, sums the rows' cross-entropy against `labels`
/// (log-sum-exp, stable for any logits) and counts correct predictions. With `grad_scale`,
/// overwrites `logits` with `(softmax - onehot) * grad_scale`, the loss gradient w.r.t. the
/// logits (`grad_scale = 1 / batch` for the batch mean); without it, leaves `logits + bias`.
///
/// # Panics
/// If `labels.len() != logits.nrows()`, a label is `>= logits.ncols()`, or `logits` is not
/// standard layout.
pub fn softmax_cross_entropy(
    mut logits: ArrayViewMut2<'_, f32>,
    bias: ArrayView1<'_, f32>,
    labels: &[u32],
    grad_scale: Option<f32>,
) -> BatchStats {
    let classes = logits.ncols();
    check("labels", (logits.nrows(), 1), (labels.len(), 1));
    check("bias", (classes, 1), (bias.len(), 1));
    let bias = bias.to_slice().expect("bias must be contiguous");
    let data = logits
        .as_slice_mut()
        .expect("logits must be standard layout");
    let mut stats = BatchStats::default();
    for (row, &y) in data.chunks_exact_mut(classes.max(1)).zip(labels) {
        let y = y as usize;
        assert!(y < classes, "label {y} out of range for {classes} classes");
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
        stats.correct += usize::from(first_argmax(row) == y);
        let Some(scale) = grad_scale else {
            let (max, sum) = shifted_exp_sum(row);
            stats.loss += f64::from(math::ln(sum) + max - row[y]);
            continue;
        };
        let zy = row[y];
        let (max, sum) = shifted_exps(row);
        stats.loss += f64::from(math::ln(sum) + max - zy);
        let inv = 1.0 / sum;
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v * inv - f32::from(u8::from(j == y))) * scale;
        }
    }
    stats
}

/// Index of the first largest value of `values` (0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    first_argmax(values)
}

#[inline]
fn first_argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// For one row: `(max, sum_j exp(z_j - max))`.
#[inline]
fn shifted_exp_sum(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = row.iter().fold(0.0, |sum, &v| sum + math::exp(v - max));
    (max, sum)
}

/// [`shifted_exp_sum`] that leaves its terms `exp(z_j - max)` in the row, for the callers that
/// go on to scale them: each `exp` runs once, not twice (`expf` was 4% of a 1x128 epoch's
/// profile, Intel Xeon). The same additions in the same order, so the same bits.
#[inline]
fn shifted_exps(row: &mut [f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = math::exp(*v - max);
        sum += *v;
    }
    (max, sum)
}

/// In place: `logits <- softmax(logits + bias)` row by row.
///
/// # Panics
/// If `bias.len() != logits.ncols()` or `logits` is not standard layout.
pub fn softmax(mut logits: ArrayViewMut2<'_, f32>, bias: ArrayView1<'_, f32>) {
    let classes = logits.ncols();
    check("bias", (classes, 1), (bias.len(), 1));
    let bias = bias.to_slice().expect("bias must be contiguous");
    let data = logits
        .as_slice_mut()
        .expect("logits must be standard layout");
    for row in data.chunks_exact_mut(classes.max(1)) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
        let (_, sum) = shifted_exps(row);
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Index of the largest value of each row (the first on ties).
///
/// # Panics
/// If `out.len() != m.nrows()`.
pub fn argmax_rows(m: ArrayView2<'_, f32>, out: &mut [u32]) {
    check("argmax out", (m.nrows(), 1), (out.len(), 1));
    for (row, o) in m.rows().into_iter().zip(out) {
        *o = match row.to_slice() {
            Some(r) => first_argmax(r),
            None => first_argmax(&row.to_vec()),
        } as u32;
    }
}

/// `bias <- bias - lr * g`, `g` the column sums of `grad`: in f32, in row order, within each
/// block of [`BATCH_BLOCK`] rows, and the blocks' sums added in f64 when there are several (the
/// weight gradient's definition, in `kernels/portable.rs`).
///
/// # Panics
/// If `bias.len() != grad.ncols()`.
pub fn bias_sgd(mut bias: ArrayViewMut1<'_, f32>, grad: ArrayView2<'_, f32>, lr: f32) {
    check("bias grad", (bias.len(), 1), (grad.ncols(), 1));
    let b = bias.as_slice_mut().expect("bias must be contiguous");
    // Column blocks keep the accumulators on the stack: no allocation per step.
    const COLS: usize = 64;
    let blocks = grad.nrows().div_ceil(BATCH_BLOCK);
    for (blk, bb) in b.chunks_mut(COLS).enumerate() {
        let cols = (blk * COLS, blk * COLS + bb.len());
        let mut sum = [0.0f32; COLS];
        let mut wide = [0.0f64; COLS];
        for rows in grad.axis_chunks_iter(ndarray::Axis(0), BATCH_BLOCK) {
            let mut acc = [0.0f32; COLS];
            for row in rows.rows() {
                let row = row.to_slice().expect("gradient must be standard layout");
                for (a, &g) in acc.iter_mut().zip(&row[cols.0..cols.1]) {
                    *a += g;
                }
            }
            if blocks == 1 {
                sum = acc;
            } else {
                for (s, &a) in wide.iter_mut().zip(&acc) {
                    *s += f64::from(a);
                }
            }
        }
        if blocks > 1 {
            sum = wide.map(|s| s as f32);
        }
        for (b, a) in bb.iter_mut().zip(&sum) {
            *b -= lr * a;
        }
    }
}

/// `dst[j] = src[j] / 255`, rounded once (the division's bits). With an FMA instruction, a
/// multiply by the rounded reciprocal whose residual is then added back, `fma(fma(-q, 255,
/// x), 1/255, q)` for `q = x * (1/255)`, gives those bits for every byte (the tests check all
/// 256) in about two fifths of the time: the baseline x86-64 build divides 4 lanes at a time
/// (a batch of 32 images, Intel Xeon: 4.6 -> 1.8 µs). Without one it divides.
#[inline(always)]
pub(crate) fn pixels_to_features<F: Fma>(src: &[u8], dst: &mut [f32]) {
    const RECIPROCAL: f32 = 1.0 / 255.0;
    assert_eq!(src.len(), dst.len(), "pixels_to_features: lengths differ");
    for (d, &s) in dst.iter_mut().zip(src) {
        let x = f32::from(s);
        *d = if F::INSTRUCTION {
            let q = x * RECIPROCAL;
            F::fma(F::fma(-q, 255.0, x), RECIPROCAL, q)
        } else {
            x / 255.0
        };
    }
}
