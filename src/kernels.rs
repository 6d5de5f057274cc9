//! The numeric kernels of a training step, over plain ndarray views.
//!
//! - [`gemm`]: `C = alpha * A B + beta * C` through `cblas_sgemm` (operands must be standard
//!   layout or `.t()` of it, which is what keeps ndarray on the BLAS path).
//! - [`bias_relu_dropout`]: `h = relu(z + b) * m / (1 - p)`, in place, `(batch, width)`.
//! - [`relu_dropout_backward`]: `dz = dh * [h > 0] / (1 - p)`, in place. A dropped unit and an
//!   inactive ReLU both have `h = 0`, so the mask need not be stored.
//! - [`softmax_cross_entropy`]: bias, log-sum-exp loss and the gradient `(S - Y) * scale`,
//!   fused and in place, `(batch, classes)`.
//! - [`bias_sgd`]: `b -= lr * sum_rows(dz)`, summed in row order.
//! - [`forward`] and [`backward_sgd`]: a layer's products in a training step, through
//!   relumax's AVX-512 kernels where they measured faster than OpenBLAS ([`Backend`]), else
//!   through [`par_gemm`] and fixed blocks of single-threaded `sgemm` calls.
//! - [`nonzero_columns`], [`forward_sparse`] and [`update_sparse`]: the first layer's products,
//!   skipping the input columns that are zero throughout the batch (the AVX-512 kernels skip
//!   them without changing a bit; OpenBLAS computes everything).
//! - [`backward_sgd_relu`]: a hidden layer's backward pass with the previous layer's ReLU +
//!   dropout backward fused in (the AVX-512 kernel computes only the input gradient it keeps).
//!
//! Element-wise kernels split rows into fixed chunks of [`CHUNK_ROWS`]. Each chunk draws its
//! dropout mask from its own stream, keyed by the chunk index, and chunks run in parallel
//! (rayon) only when the matrix is large enough to pay for it. Which thread runs a chunk
//! never changes its result, so outputs are identical for any thread count.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};
use rand::RngCore;
use rayon::iter::Either;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::rng::{self, Stream};
use crate::simd;

/// Rows per fixed chunk of the element-wise kernels (and per dropout stream).
pub const CHUNK_ROWS: usize = 8;

/// Below this many elements, element-wise kernels run on the calling thread. Low on purpose:
/// splitting even a 32 x 128 batch across two threads made a 1x128 training step 3-9% faster
/// (measured against a threshold of 32,768, interleaved, the same run).
const PAR_MIN_ELEMENTS: usize = 1 << 11;

/// Below this many FLOPs (about 10 µs of one core), the AVX-512 kernels run on the calling
/// thread: handing blocks to another thread would cost more than it saves.
const PAR_MIN_FLOPS: usize = 1 << 20;

/// Rayon's `with_min_len` for the blocks of an AVX-512 product of `flops`: all blocks in one task
/// (on the calling thread) below [`PAR_MIN_FLOPS`], otherwise one block per task.
fn min_blocks_per_task(flops: usize) -> usize {
    if flops < PAR_MIN_FLOPS { usize::MAX } else { 1 }
}

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
    fn threshold(&self) -> u64 {
        (f64::from(self.p) * 4_294_967_296.0) as u64
    }
}

#[cold]
#[track_caller]
#[inline(never)]
fn shape_error(what: &str, expected: (usize, usize), found: (usize, usize)) -> ! {
    panic!("{what}: expected shape {expected:?}, found {found:?}")
}

#[track_caller]
fn check(what: &str, expected: (usize, usize), found: (usize, usize)) {
    if expected != found {
        shape_error(what, expected, found);
    }
}

/// The inner dimension of every `sgemm` call is a multiple of this, or below it.
///
/// OpenBLAS's single-threaded and threaded drivers block the inner dimension `k` differently
/// when `Q < k < 2Q` (`Q` = 320 for single precision on this machine's Cooperlake kernels): one
/// splits at `round_up(k / 2, UNROLL_M)`, the other at `(k + 1) / 2`, so the partial sums, and
/// the rounding, differ with the thread count unless `k` is a multiple of `2 * UNROLL_M`.
/// Measured on OpenBLAS 0.3.21: every `k > 320` that is not a multiple of 32 gave different
/// bits with 1 and 2 threads (784, MNIST's input width, among them), every multiple of 32 gave
/// identical bits. Splitting `k` into a multiple of 64 and a remainder below 64 makes each
/// call's blocking independent of the thread count.
pub const GEMM_K_ALIGN: usize = 64;

#[track_caller]
fn check_gemm(dst: &ArrayViewMut2<'_, f32>, a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) {
    check("gemm rhs", (a.ncols(), dst.ncols()), b.dim());
    check("gemm dst", (a.nrows(), b.ncols()), dst.dim());
}

/// `dst = alpha * a b + beta * dst`, through `cblas_sgemm`.
///
/// `a`, `b` and `dst` must each be standard layout or the transpose of a standard-layout view
/// (unit inner stride); ndarray would otherwise silently use its pure-Rust multiplier. The
/// result is bit-identical for any OpenBLAS thread count (see [`GEMM_K_ALIGN`]).
///
/// # Panics
/// If shapes disagree (`a: (m, k)`, `b: (k, n)`, `dst: (m, n)`).
#[track_caller]
pub fn gemm(
    dst: &mut ArrayViewMut2<'_, f32>,
    beta: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    alpha: f32,
) {
    check_gemm(dst, a, b);
    let k = a.ncols();
    let main = k - k % GEMM_K_ALIGN;
    if main == 0 || main == k {
        general_mat_mul(alpha, a, b, beta, dst);
    } else {
        general_mat_mul(
            alpha,
            &a.slice(s![.., ..main]),
            &b.slice(s![..main, ..]),
            beta,
            dst,
        );
        general_mat_mul(
            alpha,
            &a.slice(s![.., main..]),
            &b.slice(s![main.., ..]),
            1.0,
            dst,
        );
    }
}

/// Which code runs a training step's matrix products ([`forward`] and [`backward_sgd`]).
///
/// Both are deterministic: bit-identical results for any thread count. They round differently
/// from each other, so a run's results depend on the backend (and, with `Auto`, on whether the
/// CPU has AVX-512), as they already depend on the OpenBLAS kernels the CPU selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// relumax's AVX-512 kernels where the CPU has AVX-512F and they measured faster than
    /// OpenBLAS, OpenBLAS for everything else (the default): a mini-batch's forward product
    /// through a weight matrix of 64 columns to 8 MiB, streamed without packing, and the
    /// backward pass of layers of 1024 or more outputs, which reads each block of `W` once for
    /// both the input gradient and the update.
    #[default]
    Auto,
    /// Every product through OpenBLAS.
    Blas,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

/// Selects the backend for the whole process (default [`Backend::Auto`]).
pub fn set_backend(backend: Backend) {
    BACKEND.store(backend as u8, Ordering::Relaxed);
}

/// The selected backend.
pub fn backend() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        0 => Backend::Auto,
        _ => Backend::Blas,
    }
}

/// The kernels that run here: `"avx512+openblas"` (relumax's AVX-512 kernels for the products
/// where they are faster, OpenBLAS for the rest) or `"openblas"`.
pub fn active() -> &'static str {
    if use_simd() {
        "avx512+openblas"
    } else {
        "openblas"
    }
}

/// The AVX-512 forward kernel runs for mini-batches of at most this many rows (larger products,
/// like evaluation chunks, reuse `w` enough for OpenBLAS's packing to pay off) ...
const SIMD_MAX_ROWS: usize = 64;
/// ... for layers at least this wide (the 10-class output layer stays on OpenBLAS) ...
const SIMD_FORWARD_MIN_COLS: usize = 64;
/// ... and weight matrices up to this size (784 x 2048 is 6.4 MiB). At 2048 x 2048 (16 MiB) the
/// isolated product was 1.07x OpenBLAS on one thread and 1.11-1.25x on two, yet whole 2x2048
/// epochs were slower with it (16.6-19.0 s against 14.0-15.0, interleaved; measured again with
/// the backward's input masks, 9.4-10.8 s against 9.0-9.5), so OpenBLAS keeps that one.
const SIMD_FORWARD_MAX_BYTES: usize = 8 << 20;

/// Layers narrower than this keep OpenBLAS for their backward pass even with [`Backend::Auto`]:
/// the AVX-512 kernels lost below it (256 x 256: 0.71-0.82x, 512 x 512: 0.87-0.95x OpenBLAS's
/// speed, at 1 and 2 threads; the 10-column output layer 2-4x slower).
const SIMD_MIN_OUTPUTS: usize = 1024;

fn use_simd() -> bool {
    backend() == Backend::Auto && simd::available()
}

/// Narrowest block a product is cut into for parallel execution.
pub const MIN_BLOCK: usize = 64;

/// The block width for a dimension of `n`: a quarter of it (enough blocks to balance up to four
/// threads), at least [`MIN_BLOCK`], rounded up to a multiple of 16.
///
/// A function of `n` alone, never of the thread count: OpenBLAS picks a different kernel (its
/// "small matrix" path, which sums in another order) depending on a call's size, so only a
/// partition that stays the same keeps results identical for every number of threads.
pub fn block_size(n: usize) -> usize {
    (n / 4).max(MIN_BLOCK).next_multiple_of(16)
}

/// [`gemm`] run in parallel on the current rayon pool: `dst` and `b` are cut into column
/// blocks of [`block_size`], one single-threaded `sgemm` each, so the result is identical for any
/// number of threads.
///
/// OpenBLAS should be single-threaded meanwhile ([`crate::set_blas_threads`]`(1)`;
/// [`crate::Trainer`] does this), or both kinds of threads compete for the cores.
///
/// # Panics
/// As [`gemm`].
#[track_caller]
pub fn par_gemm(
    dst: &mut ArrayViewMut2<'_, f32>,
    beta: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    alpha: f32,
) {
    check_gemm(dst, a, b);
    let size = block_size(dst.ncols());
    if dst.ncols() <= size {
        return gemm(dst, beta, a, b, alpha);
    }
    dst.axis_chunks_iter_mut(Axis(1), size)
        .into_par_iter()
        .zip(b.axis_chunks_iter(Axis(1), size).into_par_iter())
        .for_each(|(mut d, bb)| gemm(&mut d, beta, a, &bb, alpha));
}

/// A layer's forward product `z = x w`: the AVX-512 kernel where it measured faster than
/// OpenBLAS (see [`Backend::Auto`]), otherwise [`par_gemm`].
///
/// # Panics
/// If shapes disagree (`x: (m, k)`, `w: (k, n)`, `z: (m, n)`).
#[track_caller]
pub fn forward(z: &mut ArrayViewMut2<'_, f32>, x: &ArrayView2<'_, f32>, w: &ArrayView2<'_, f32>) {
    forward_over(z, x, w, None);
}

/// The columns of `x` that hold a nonzero value, ascending, into `support` (reusing its
/// allocation). `+0.0` and `-0.0` count as zero, NaN as nonzero.
///
/// A batch of 32 MNIST images leaves about 42% of the 784 pixel columns zero throughout.
pub fn nonzero_columns(x: &ArrayView2<'_, f32>, support: &mut Vec<u32>) {
    let cols = x.ncols();
    support.clear();
    support.resize(cols, 0);
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout");
    for row in values.chunks_exact(cols.max(1)) {
        for (bits, v) in support.iter_mut().zip(row) {
            *bits |= v.to_bits() << 1;
        }
    }
    // In place, without a branch: column `j` is read before position `kept <= j` is written.
    let mut kept = 0;
    for j in 0..cols {
        let nonzero = support[j] != 0;
        support[kept] = j as u32;
        kept += usize::from(nonzero);
    }
    support.truncate(kept);
}

/// [`forward`] for an input `x` whose columns outside `support` are zero, as
/// [`nonzero_columns`] lists them: the AVX-512 kernel skips the rows of `w` that only zeros
/// would multiply, which gives the same bits as [`forward`]; OpenBLAS computes the whole
/// product.
///
/// # Panics
/// As [`forward`]; also if `support` is not strictly increasing below `x.ncols()`.
#[track_caller]
pub fn forward_sparse(
    z: &mut ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    support: &[u32],
) {
    forward_over(z, x, w, Some(support));
}

#[track_caller]
fn forward_over(
    z: &mut ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    support: Option<&[u32]>,
) {
    check_gemm(z, x, w);
    if let Some(indices) = support {
        simd::Selected { indices, offset: 0 }.check(x.ncols(), "forward_sparse");
    }
    let ((m, k), n) = (x.dim(), w.ncols());
    if use_simd()
        && m <= SIMD_MAX_ROWS
        && n >= SIMD_FORWARD_MIN_COLS
        && k * n * 4 <= SIMD_FORWARD_MAX_BYTES
        && simd::rows_contiguous(z)
        && simd::rows_contiguous(x)
        && simd::rows_contiguous(w)
    {
        let size = (n / 8).max(32).next_multiple_of(32);
        let min_len = min_blocks_per_task(2 * m * k * n);
        z.axis_chunks_iter_mut(Axis(1), size)
            .into_par_iter()
            .zip(w.axis_chunks_iter(Axis(1), size).into_par_iter())
            .with_min_len(min_len)
            .for_each(|(zb, wb)| simd::forward(zb, x, &wb, support));
        return;
    }
    par_gemm(z, 0.0, x, w, 1.0);
}

/// The backward product and SGD update of one dense layer, fused and parallel:
/// `dh = dz W^T` (from the old `W`, when `dh` is given), then `W <- W - lr * x^T dz`.
///
/// `W: (inputs, outputs)`, `dz: (rows, outputs)`, `x: (rows, inputs)`, `dh: (rows, inputs)`.
/// The rows of `W` are cut into blocks, one per task; each task takes its block's columns of
/// `dh` and then updates the block while it is still in cache, so `W` is streamed once for
/// both products. Results do not depend on the number of threads.
///
/// # Panics
/// If shapes disagree.
#[track_caller]
pub fn backward_sgd(
    dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
) {
    backward(dh, w, dz, x, lr, None);
}

/// [`backward_sgd`] for a layer whose input `x` is the output of [`bias_relu_dropout`], with
/// that kernel's backward ([`relu_dropout_backward`] with `x` and `scale`) applied to `dh`:
/// `dh = (dz W^T) * [x > 0] * scale`, then `W <- W - lr * x^T dz`. The same bits as the two
/// calls; the AVX-512 kernels compute only the dot products where `x > 0` (about a quarter of
/// them after ReLU and dropout 0.5).
///
/// # Panics
/// If shapes disagree; where OpenBLAS runs the products, also if `dh` or `x` is not in
/// standard layout (as for [`relu_dropout_backward`]).
#[track_caller]
pub fn backward_sgd_relu(
    dh: &mut ArrayViewMut2<'_, f32>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    (lr, scale): (f32, f32),
) {
    backward(Some(dh), w, dz, x, lr, Some(scale));
}

/// [`backward_sgd`], then, with `relu = Some(scale)`, [`relu_dropout_backward`] of `dh`.
#[track_caller]
fn backward(
    mut dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
    relu: Option<f32>,
) {
    let (inputs, outputs) = w.dim();
    check("backward dz", (x.nrows(), outputs), dz.dim());
    check("backward x", (dz.nrows(), inputs), x.dim());
    if let Some(dh) = &dh {
        check("backward dh", x.dim(), dh.dim());
    }
    if use_simd()
        && outputs >= SIMD_MIN_OUTPUTS
        && simd::rows_contiguous(w)
        && simd::rows_contiguous(dz)
        && simd::rows_contiguous(x)
        && dh.as_ref().is_none_or(|d| simd::rows_contiguous(*d))
    {
        return simd_backward(dh, w, dz, x, lr, relu);
    }
    let size = block_size(inputs);
    let task = |mut wr: ArrayViewMut2<'_, f32>,
                xr: ArrayView2<'_, f32>,
                dhr: Option<ArrayViewMut2<'_, f32>>| {
        if let Some(mut dhr) = dhr {
            gemm(&mut dhr, 0.0, dz, &wr.t(), 1.0);
        }
        gemm(&mut wr, 1.0, &xr.t(), dz, -lr);
    };
    w.axis_chunks_iter_mut(Axis(0), size)
        .into_par_iter()
        .zip(x.axis_chunks_iter(Axis(1), size).into_par_iter())
        .zip(dh_blocks(dh.as_deref_mut(), size, inputs))
        .for_each(|((wr, xr), dhr)| task(wr, xr, dhr));
    if let (Some(dh), Some(scale)) = (dh, relu) {
        relu_dropout_backward(dh.view_mut(), x.view(), scale);
    }
}

/// The column blocks of `dh` matching `W`'s blocks of `size` rows (of `inputs`), or `None` for
/// each block when there is no input gradient.
fn dh_blocks<'a>(
    dh: Option<&'a mut ArrayViewMut2<'_, f32>>,
    size: usize,
    inputs: usize,
) -> impl IndexedParallelIterator<Item = Option<ArrayViewMut2<'a, f32>>> {
    match dh {
        Some(dh) => Either::Left(
            dh.axis_chunks_iter_mut(Axis(1), size)
                .into_par_iter()
                .map(Some),
        ),
        None => Either::Right((0..inputs.div_ceil(size)).into_par_iter().map(|_| None)),
    }
}

/// [`backward_sgd`] with the AVX-512 kernels, over blocks of `W`'s rows small enough to stay in
/// cache between the input gradient and the update. Any blocking gives the same bits.
fn simd_backward(
    dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
    relu: Option<f32>,
) {
    /// Bytes of `W` per block: the block is read for `dh`, then again (from cache) for the update.
    const BLOCK_BYTES: usize = 96 << 10;
    let (inputs, outputs) = w.dim();
    let cached = (BLOCK_BYTES / (4 * outputs.max(1))).max(12) / 12 * 12;
    let size = cached.min(inputs.div_ceil(8).next_multiple_of(12)).max(1);
    let flops = 2 * x.len() * outputs * if dh.is_some() { 2 } else { 1 };
    w.axis_chunks_iter_mut(Axis(0), size)
        .into_par_iter()
        .zip(x.axis_chunks_iter(Axis(1), size).into_par_iter())
        .zip(dh_blocks(dh, size, inputs))
        .with_min_len(min_blocks_per_task(flops))
        .for_each(|((w, x), dh)| {
            let block = simd::Block {
                w,
                x,
                dh,
                update: None,
                relu,
            };
            simd::backward_rows(block, dz, lr);
        });
}

/// The SGD update of a first layer (no input gradient), `W <- W - lr * x^T dz`, for an input
/// `x` whose columns outside `support` are zero, as [`nonzero_columns`] lists them.
///
/// With AVX-512 ([`Backend::Auto`]) only the rows of `W` in `support` are updated: the others'
/// updates are exactly zero. The bits are those of the AVX-512 update kernel at every width,
/// whatever the support. Otherwise this is [`backward_sgd`] without `dh`.
///
/// # Panics
/// If shapes disagree, or `support` is not strictly increasing below `W.nrows()`.
#[track_caller]
pub fn update_sparse(
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
    support: &[u32],
) {
    let (inputs, outputs) = w.dim();
    check("update dz", (x.nrows(), outputs), dz.dim());
    check("update x", (dz.nrows(), inputs), x.dim());
    let selected = simd::Selected {
        indices: support,
        offset: 0,
    };
    selected.check(inputs, "update_sparse");
    if !(use_simd()
        && simd::rows_contiguous(w)
        && simd::rows_contiguous(dz)
        && simd::rows_contiguous(x))
    {
        return backward_sgd(None, w, dz, x, lr);
    }
    // Pieces of equal numbers of rows balance the threads; a multiple of 4 rows fills the
    // kernel's update tiles.
    let size = support.len().div_ceil(8).next_multiple_of(4).max(4);
    let parallel = 2 * x.nrows() * support.len() * outputs >= PAR_MIN_FLOPS;
    let sparse = SparseUpdate {
        dz,
        lr,
        size,
        parallel,
    };
    sparse.run(w.view_mut(), x.view(), support, 0);
}

/// [`update_sparse`] over pieces of the support, split recursively with `rayon::join`.
struct SparseUpdate<'a, 'b> {
    dz: &'a ArrayView2<'b, f32>,
    lr: f32,
    /// Support rows per piece.
    size: usize,
    parallel: bool,
}

impl SparseUpdate<'_, '_> {
    /// Updates the `support` rows of `w`, whose first row is row `offset` of the layer.
    fn run(
        &self,
        w: ArrayViewMut2<'_, f32>,
        x: ArrayView2<'_, f32>,
        support: &[u32],
        offset: usize,
    ) {
        if support.len() <= self.size {
            let update = Some(simd::Selected {
                indices: support,
                offset,
            });
            let block = simd::Block {
                w,
                x,
                dh: None,
                update,
                relu: None,
            };
            return simd::backward_rows(block, self.dz, self.lr);
        }
        let mid = (support.len() / self.size / 2).max(1) * self.size;
        let cut = support[mid] as usize - offset;
        let (w0, w1) = w.split_at(Axis(0), cut);
        let (x0, x1) = x.split_at(Axis(1), cut);
        let (s0, s1) = support.split_at(mid);
        let left = || self.run(w0, x0, s0, offset);
        let right = || self.run(w1, x1, s1, offset + cut);
        if self.parallel {
            rayon::join(left, right);
        } else {
            left();
            right();
        }
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
    if len >= PAR_MIN_ELEMENTS && rayon::current_num_threads() > 1 {
        slice
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        slice
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
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
                    *v = (*v + b).max(0.0);
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
    f32::from_bits((x.max(0.0) * scale).to_bits() & mask)
}

/// In place: `grad <- grad * [h > 0] * scale`, the backward of [`bias_relu_dropout`] given its
/// output `h` (`scale` is `1 / (1 - p)`, or 1 without dropout). ReLU'(0) is taken as 0.
///
/// # Panics
/// If shapes differ or either is not standard layout.
pub fn relu_dropout_backward(mut grad: ArrayViewMut2<'_, f32>, h: ArrayView2<'_, f32>, scale: f32) {
    check("relu backward", grad.dim(), h.dim());
    let cols = grad.ncols();
    let h = h.to_slice().expect("activations must be standard layout");
    for_row_chunks(&mut grad, |chunk, rows| {
        let start = chunk * CHUNK_ROWS * cols;
        let len = rows.len();
        for (g, &a) in rows.iter_mut().zip(&h[start..start + len]) {
            *g = if a > 0.0 { *g * scale } else { 0.0 };
        }
    });
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
        let (max, sum) = shifted_exp_sum(row);
        stats.loss += f64::from(sum.ln() + max - row[y]);
        stats.correct += usize::from(first_argmax(row) == y);
        if let Some(scale) = grad_scale {
            let inv = 1.0 / sum;
            for (j, v) in row.iter_mut().enumerate() {
                let p = (*v - max).exp() * inv;
                *v = (p - f32::from(u8::from(j == y))) * scale;
            }
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
    let sum = row.iter().map(|&v| (v - max).exp()).sum();
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
        let (max, sum) = shifted_exp_sum(row);
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v = (*v - max).exp() * inv;
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

/// `bias <- bias - lr * sum_rows(grad)`, summing rows in order (deterministic).
///
/// # Panics
/// If `bias.len() != grad.ncols()`.
pub fn bias_sgd(mut bias: ArrayViewMut1<'_, f32>, grad: ArrayView2<'_, f32>, lr: f32) {
    check("bias grad", (bias.len(), 1), (grad.ncols(), 1));
    let b = bias.as_slice_mut().expect("bias must be contiguous");
    // Column blocks keep the accumulator on the stack: no allocation per step.
    const BLOCK: usize = 64;
    for (blk, bb) in b.chunks_mut(BLOCK).enumerate() {
        let start = blk * BLOCK;
        let mut acc = [0.0f32; BLOCK];
        for row in grad.rows() {
            let row = row.to_slice().expect("gradient must be standard layout");
            for (a, &g) in acc.iter_mut().zip(&row[start..start + bb.len()]) {
                *a += g;
            }
        }
        for (b, a) in bb.iter_mut().zip(&acc) {
            *b -= lr * a;
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, Axis};
    use rand::RngCore;

    use super::*;
    use crate::testing::{noise, pool};

    #[test]
    fn nonzero_columns_lists_the_columns_with_any_nonzero_value() {
        let tiny = f32::from_bits(1);
        let x = ndarray::array![
            [0.0, -0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, f32::NAN, tiny, -2.0, -0.0, 0.0],
            [0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 3.0],
        ];
        let mut support = vec![9; 20];
        nonzero_columns(&x.view(), &mut support);
        assert_eq!(support, [2, 3, 4, 6]);
        // Any layout, and the buffer's old contents do not matter.
        let xt = x.t().to_owned();
        nonzero_columns(&xt.t(), &mut support);
        assert_eq!(support, [2, 3, 4, 6]);
        nonzero_columns(&Array2::<f32>::zeros((4, 5)).view(), &mut support);
        assert!(support.is_empty());
        nonzero_columns(&Array2::<f32>::ones((2, 3)).view(), &mut support);
        assert_eq!(support, [0, 1, 2]);
    }

    #[test]
    fn sparse_products_equal_the_dense_ones_on_any_thread_count() {
        for n in [128, 1100] {
            let (k, lr) = (300, 0.05);
            let mut x = noise(32, k, 1);
            for c in (0..40).chain((0..k).step_by(3)) {
                x.column_mut(c).fill(0.0);
            }
            let (w0, dz) = (noise(k, n, 2), noise(32, n, 3));
            let mut support = Vec::new();
            nonzero_columns(&x.view(), &mut support);
            assert_eq!(support.len(), 174);
            let everything: Vec<u32> = (0..k as u32).collect();
            let run = |threads: usize, support: &[u32]| {
                pool(threads).install(|| {
                    let mut z = Array2::zeros((32, n));
                    forward_sparse(&mut z.view_mut(), &x.view(), &w0.view(), support);
                    let mut w = w0.clone();
                    update_sparse(&mut w.view_mut(), &dz.view(), &x.view(), lr, support);
                    (z, w)
                })
            };
            let (z, w) = run(2, &support);
            assert_eq!(run(1, &support), (z.clone(), w.clone()), "n = {n}");
            assert_eq!(run(2, &everything), (z.clone(), w.clone()), "n = {n}");
            let mut dense = Array2::zeros((32, n));
            forward(&mut dense.view_mut(), &x.view(), &w0.view());
            assert_eq!(z, dense, "n = {n}");
            for c in (0..k).filter(|c| !support.contains(&(*c as u32))) {
                assert_eq!(w.row(c), w0.row(c), "row {c} of a zero column moved");
            }
            if n >= SIMD_MIN_OUTPUTS || !use_simd() {
                // The same update kernel as the dense backward pass.
                let mut expected = w0.clone();
                backward_sgd(None, &mut expected.view_mut(), &dz.view(), &x.view(), lr);
                assert_eq!(w, expected, "n = {n}");
            }
        }
    }

    #[test]
    fn the_fused_relu_backward_equals_the_two_kernels_on_any_thread_count() {
        // OpenBLAS's backward below 1024 outputs, the AVX-512 one from 1024 (with AVX-512).
        for (inputs, outputs) in [(300, 512), (300, 1100)] {
            // Like a ReLU + dropout output: three quarters zero, the rest positive.
            let x = noise(32, inputs, 1).mapv(|v| (v - 0.25).max(0.0));
            let (w0, dz) = (noise(inputs, outputs, 2), noise(32, outputs, 3));
            let (lr, scale) = (0.05, 2.0);
            let mut w = w0.clone();
            let mut expected = noise(32, inputs, 4);
            backward_sgd(
                Some(&mut expected.view_mut()),
                &mut w.view_mut(),
                &dz.view(),
                &x.view(),
                lr,
            );
            relu_dropout_backward(expected.view_mut(), x.view(), scale);
            for threads in [1, 2] {
                let (mut w_fused, mut dh) = (w0.clone(), noise(32, inputs, 4));
                pool(threads).install(|| {
                    let (dh, w) = (&mut dh.view_mut(), &mut w_fused.view_mut());
                    backward_sgd_relu(dh, w, &dz.view(), &x.view(), (lr, scale));
                });
                let what = format!("{inputs}x{outputs}, {threads} threads");
                assert_eq!(w_fused, w, "{what}");
                let same = dh
                    .iter()
                    .zip(&expected)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{what}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "update_sparse: the support must be strictly increasing")]
    fn an_unordered_support_is_refused() {
        let (mut w, dz, x) = (
            Array2::zeros((6, 4)),
            Array2::zeros((2, 4)),
            Array2::zeros((2, 6)),
        );
        update_sparse(&mut w.view_mut(), &dz.view(), &x.view(), 0.1, &[0, 4, 2]);
    }

    /// `bias_relu_dropout`'s definition, unit by unit: chunk `c` of 8 rows draws from its own
    /// stream, one 64-bit draw per pair of units (low half first), and a unit is kept when its
    /// 32-bit draw is at least `p * 2^32`.
    fn reference(z: &Array2<f32>, bias: &Array1<f32>, d: Dropout) -> Array2<f32> {
        let mut out = z.clone();
        for (chunk, mut rows) in out.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS).enumerate() {
            let mut rng = rng::stream(d.key, Stream::Dropout, &[chunk as u64]);
            for mut row in rows.rows_mut() {
                let mut draws = Vec::new();
                while draws.len() < row.len() {
                    let r = rng.next_u64();
                    draws.extend([r & 0xffff_ffff, r >> 32]);
                }
                for ((v, &b), &draw) in row.iter_mut().zip(bias).zip(&draws) {
                    *v = if draw >= d.threshold() {
                        (*v + b).max(0.0) * d.scale()
                    } else {
                        0.0
                    };
                }
            }
        }
        out
    }

    #[test]
    fn dropout_keeps_and_zeroes_units_as_defined() {
        for (rows, width, p) in [(1, 1, 0.5), (9, 7, 0.5), (20, 128, 0.25), (32, 2048, 0.5)] {
            let z = Array2::from_shape_fn((rows, width), |(i, j)| {
                ((i * 37 + j * 11) % 23) as f32 / 11.0 - 1.0
            });
            let bias = Array1::from_shape_fn(width, |j| (j % 5) as f32 * 0.01);
            let d = Dropout { p, key: 99 };
            let expected = reference(&z, &bias, d);
            let mut h = z.clone();
            bias_relu_dropout(h.view_mut(), bias.view(), Some(d));
            let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&h), bits(&expected), "{rows}x{width}, p = {p}");
            // Dropped and inactive units are +0.0, never -0.0.
            assert!(h.iter().all(|v| v.to_bits() != (-0.0f32).to_bits()));
            if rows * width >= 1000 {
                let kept = h.iter().filter(|&&v| v > 0.0).count() as f32;
                let active = (&z + &bias).iter().filter(|&&v| v > 0.0).count() as f32;
                let rate = kept / active;
                assert!(
                    (rate - (1.0 - p)).abs() < 0.05,
                    "kept {rate} of active units"
                );
            }
        }
    }
}
