//! The numeric kernels of a training step, over plain ndarray views, and the choice of the code
//! that runs them ([`Kernels`]).
//!
//! relumax's arithmetic is one written definition (the module docs of `kernels/portable.rs` for
//! the products and `kernels/elementwise.rs` for the rest, summed up in
//! `docs/reproducibility.md`): every floating-point operation of a step and of evaluation
//! has one fixed order. Three implementations follow it bit for bit, chosen at run time:
//! portable Rust (the reference, and what aarch64 runs), AVX2 + FMA and AVX-512. So the same
//! seed gives the same bits on every CPU. OpenBLAS ([`Kernels::Blas`]) is the exception: faster
//! on some machines, it rounds as its CPU kernel does.
//!
//! - [`matmul`] and [`matmul_nonzero`]: `z = x W` (the latter skipping the input columns that
//!   are zero throughout the batch, listed by [`nonzero_columns`]);
//! - [`backward_sgd`], [`backward_sgd_relu`], [`update_nonzero`], [`backward_momentum`]: a
//!   layer's input gradient `dh = dz W^T` (through the previous layer's ReLU + dropout
//!   backward) and its update from `x^T dz`, fused per block of `W`'s rows so that each block
//!   is read once for both while it sits in cache;
//! - the element-wise kernels: [`bias_relu_dropout`], [`relu_dropout_backward`],
//!   [`softmax_cross_entropy`], [`softmax`], [`bias_sgd`], [`argmax_rows`];
//! - [`gemm`] and [`par_gemm`]: OpenBLAS's `sgemm`, for the [`Kernels::Blas`] backend and for
//!   building other layers;
//! - [`layer_work`]: what the products of a step execute, zeros skipped, against the dense
//!   count.
//!
//! Products are cut into blocks run in parallel by the installed [`Team`] (else the current
//! rayon pool); every element's operations are fixed by the definition, so results are
//! identical for any thread count.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod blas;
mod elementwise;
mod math;
mod operands;
mod portable;
mod team;
#[cfg(test)]
mod tests;
mod work;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

pub use blas::{gemm, par_gemm};
pub use elementwise::{
    BatchStats, Dropout, argmax, argmax_rows, bias_relu_dropout, bias_sgd, relu_dropout_backward,
    softmax, softmax_cross_entropy,
};
pub use math::{exp, ln};
pub(crate) use math::{ln_f64, sin_cos_f64};
use operands::{Block, Isa, Nonzero, Product};
pub(crate) use operands::{pixels_to_features, prefetch};
pub use portable::BATCH_BLOCK;
pub use team::{Team, current_threads};
pub(crate) use team::{for_each, join};
pub use work::{LayerWork, layer_work};

use crate::error::{Error, Result};

/// The environment variable that forces a [`Kernels`] choice on the command line tool.
pub const KERNELS_ENV: &str = "RELUMAX_KERNELS";

/// Which code runs the matrix products of training and evaluation.
///
/// `Auto`, `Portable`, `Avx2` and `Avx512` all compute relumax's arithmetic, with the same bits;
/// `Blas` sends the products to OpenBLAS (fast, deterministic for any thread count, but its
/// rounding depends on the OpenBLAS build and the CPU).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Kernels {
    /// The fastest implementation of relumax's arithmetic that this CPU runs (the default).
    #[default]
    Auto,
    /// Portable Rust: every CPU (on x86-64 without AVX2 + FMA, and on aarch64).
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512F: its own kernels where they are fastest, portable Rust compiled with AVX-512F
    /// elsewhere.
    Avx512,
    /// OpenBLAS's `sgemm` for every product: not bit-portable across CPUs.
    Blas,
}

impl Kernels {
    /// Every choice, `Auto` first.
    pub const ALL: [Kernels; 5] = [
        Kernels::Auto,
        Kernels::Portable,
        Kernels::Avx2,
        Kernels::Avx512,
        Kernels::Blas,
    ];

    /// The lowercase name (`"auto"`, `"portable"`, `"avx2"`, `"avx512"`, `"blas"`).
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Portable => "portable",
            Kernels::Avx2 => "avx2",
            Kernels::Avx512 => "avx512",
            Kernels::Blas => "blas",
        }
    }

    fn isa(self) -> Option<Isa> {
        match self {
            Kernels::Auto => Some(Isa::best()),
            Kernels::Portable => Some(Isa::Portable),
            Kernels::Avx2 => Some(Isa::Avx2),
            Kernels::Avx512 => Some(Isa::Avx512),
            Kernels::Blas => None,
        }
    }

    /// Whether this CPU (and this build) runs it.
    pub fn supported(self) -> bool {
        self.isa().is_none_or(Isa::supported)
    }

    /// What actually runs: `Auto` becomes the fastest implementation this CPU supports.
    ///
    /// # Errors
    /// [`Error::Config`] when this CPU cannot run the choice (e.g. `Avx512` without AVX-512F).
    pub fn resolve(self) -> Result<Kernels> {
        if !self.supported() {
            return Err(Error::Config {
                field: "kernels",
                reason: format!(
                    "this CPU cannot run the {} kernels (it runs {})",
                    self.name(),
                    Kernels::runnable()
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(match self.isa() {
            Some(Isa::Portable) => Kernels::Portable,
            Some(Isa::Avx2) => Kernels::Avx2,
            Some(Isa::Avx512) => Kernels::Avx512,
            None => Kernels::Blas,
        })
    }

    /// The concrete choices (not `Auto`) this CPU runs.
    pub fn runnable() -> Vec<Kernels> {
        Kernels::ALL[1..]
            .iter()
            .copied()
            .filter(|k| k.supported())
            .collect()
    }

    /// Whether results are relumax's arithmetic, the same bits on every CPU (all but `Blas`).
    pub fn is_portable_arithmetic(self) -> bool {
        self != Kernels::Blas
    }

    /// The choice in [`KERNELS_ENV`], if set.
    ///
    /// # Errors
    /// [`Error::Config`] when it is set to something else than a choice's name.
    pub fn from_env() -> Result<Option<Kernels>> {
        match std::env::var(KERNELS_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v.parse().map(Some).map_err(|reason| Error::Config {
                field: "kernels",
                reason: format!("{KERNELS_ENV}: {reason}"),
            }),
            Err(e) => Err(Error::Config {
                field: "kernels",
                reason: format!("{KERNELS_ENV}: {e}"),
            }),
        }
    }

    /// The implementation to run, for a resolved choice.
    #[track_caller]
    fn run(self) -> Option<Isa> {
        let isa = self.isa();
        if let Some(isa) = isa {
            assert!(
                isa.supported(),
                "the {} kernels were called on a CPU without them",
                self.name()
            );
        }
        isa
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kernels {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Kernels::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown kernels {s:?} (expected auto, portable, avx2, avx512 or blas)")
            })
    }
}

/// Below this many FLOPs (about 10 µs of one core), a product runs on the calling thread:
/// handing blocks to another thread would cost more than it saves.
const PAR_MIN_FLOPS: usize = 1 << 20;

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

/// A layer's forward product `z = x w` with `kernels` (`Auto` resolves to this CPU's fastest).
///
/// # Panics
/// If shapes disagree (`x: (m, k)`, `w: (k, n)`, `z: (m, n)`), or this CPU cannot run
/// `kernels` ([`Kernels::resolve`] says so as an error first).
#[track_caller]
pub fn matmul(
    kernels: Kernels,
    z: &mut ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
) {
    matmul_over(kernels, z, x, w, None);
}

/// The columns of `x` that hold a nonzero value, ascending, into `columns` (reusing its
/// allocation). `+0.0` and `-0.0` count as zero, NaN as nonzero.
pub fn nonzero_columns(x: &ArrayView2<'_, f32>, columns: &mut Vec<u32>) {
    let x = x.as_standard_layout();
    let values = x.as_slice().expect("standard layout");
    operands::nonzero_columns_with(Isa::best(), values, x.ncols(), columns);
}

/// [`matmul`] for an input `x` whose columns outside `nonzero` are zero, as
/// [`nonzero_columns`] lists them: the rows of `w` that only zeros would multiply are skipped,
/// which gives the same bits as [`matmul`] (OpenBLAS computes the whole product).
///
/// # Panics
/// As [`matmul`]; also if `nonzero` is not strictly increasing below `x.ncols()`.
#[track_caller]
pub fn matmul_nonzero(
    kernels: Kernels,
    z: &mut ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    nonzero: &[u32],
) {
    matmul_over(kernels, z, x, w, Some(nonzero));
}

#[track_caller]
fn matmul_over(
    kernels: Kernels,
    z: &mut ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    nonzero: Option<&[u32]>,
) {
    check("forward w", (x.ncols(), z.ncols()), w.dim());
    check("forward z", (x.nrows(), w.ncols()), z.dim());
    if let Some(indices) = nonzero {
        Nonzero { indices, offset: 0 }.check(x.ncols(), "matmul_nonzero");
    }
    let Some(isa) = kernels.run() else {
        return par_gemm(z, 0.0, x, w, 1.0);
    };
    // Rows further apart than their length are read in place; other layouts are copied.
    let (x, w) = (operands::with_rows(x), operands::with_rows(w));
    let ((m, k), n) = (x.dim(), w.ncols());
    // Any blocking gives the same bits. Row by row: products narrower than
    // `SPLIT_ROWS_BELOW_COLS` by batch rows, each thread listing only its own rows' nonzeros;
    // wider ones by column blocks, one per thread (each lists every row's nonzeros again).
    // Dense tiles: column blocks enough to balance up to 8 threads, a multiple of the
    // 32-column panels; by batch rows when that is one block (the output layer: its 10
    // columns were one block, on one thread while the other waited, 21 of 22 µs a step at
    // 2x2048).
    let product = forward_product(isa, n, &x.view());
    let by_rows = product == Product::Rows;
    let parallel = 2 * m * k * n >= PAR_MIN_FLOPS;
    let threads = current_threads();
    let tiles_block = (n / 8).max(32).next_multiple_of(32);
    let run = |z: &mut ArrayViewMut2<'_, f32>| {
        if (by_rows && n < SPLIT_ROWS_BELOW_COLS) || (!by_rows && n <= tiles_block) {
            let size = m.div_ceil(threads).max(1);
            let blocks = z
                .axis_chunks_iter_mut(Axis(0), size)
                .zip(x.axis_chunks_iter(Axis(0), size));
            return for_each(parallel, blocks, |(zb, xb)| {
                operands::forward(isa, zb, &xb, &w.view(), (nonzero, product))
            });
        }
        let size = if by_rows {
            n.div_ceil(threads).next_multiple_of(64)
        } else {
            tiles_block
        };
        let blocks = z
            .axis_chunks_iter_mut(Axis(1), size)
            .zip(w.axis_chunks_iter(Axis(1), size));
        for_each(parallel, blocks, |(zb, wb)| {
            operands::forward(isa, zb, &x.view(), &wb, (nonzero, product));
        });
    };
    if operands::rows_contiguous(z) {
        run(z);
    } else {
        let mut owned = z.to_owned();
        run(&mut owned.view_mut());
        z.assign(&owned);
    }
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
/// If shapes disagree, an operand's rows are not contiguous, or this CPU cannot run `kernels`.
#[track_caller]
pub fn backward_sgd(
    kernels: Kernels,
    dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
) {
    backward(kernels, dh, w, None, dz, x, (lr, None));
}

/// [`backward_sgd`] for a layer whose input `x` is the output of [`bias_relu_dropout`], with
/// that kernel's backward ([`relu_dropout_backward`] with `x` and `scale`) applied to `dh`:
/// `dh = (dz W^T) * [x > 0] * scale`, then `W <- W - lr * x^T dz`. The same bits as the two
/// calls; relumax's kernels compute only the dot products where `x` is nonzero (positive,
/// after ReLU: about a quarter of them after ReLU and dropout 0.5).
///
/// # Panics
/// As [`backward_sgd`].
#[track_caller]
pub fn backward_sgd_relu(
    kernels: Kernels,
    dh: &mut ArrayViewMut2<'_, f32>,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    (lr, scale): (f32, f32),
) {
    backward(kernels, Some(dh), w, None, dz, x, (lr, Some(scale)));
}

/// [`backward_sgd`] with momentum `mu` (PyTorch's convention): `dh` as there (through ReLU +
/// dropout with `Some(scale)`), then `V <- mu V + x^T dz` and `W <- W - lr V`.
///
/// # Panics
/// As [`backward_sgd`]; also if `v` is not shaped as `w`.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn backward_momentum(
    kernels: Kernels,
    dh: Option<(&mut ArrayViewMut2<'_, f32>, Option<f32>)>,
    w: &mut ArrayViewMut2<'_, f32>,
    v: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    (lr, mu): (f32, f32),
) {
    check("momentum velocity", w.dim(), v.dim());
    let (dh, relu) = match dh {
        Some((dh, relu)) => (Some(dh), relu),
        None => (None, None),
    };
    backward(kernels, dh, w, Some((v, mu)), dz, x, (lr, relu));
}

/// How `isa` runs the forward product of `x` into `n` columns: row by row over each row's
/// nonzeros ([`portable::forward_rows`]) when at most half of `x` is nonzero, as a hidden
/// layer's input (three quarters zeros after ReLU and dropout) and a batch of images (four
/// fifths), with AVX-512's exceptions (below); else in dense tiles, on AVX-512 its own below
/// [`AVX512_PACKED_MIN_COLS`].
fn forward_product(isa: Isa, n: usize, x: &ArrayView2<'_, f32>) -> Product {
    // The share of nonzeros, counted over the first rows (evaluation's chunks of 1000 rows are
    // of one kind; counting all of them cost 2% of a 1x128 epoch).
    let m = x.nrows();
    let sample = x.slice(ndarray::s![..m.min(SPARSITY_SAMPLE_ROWS), ..]);
    let (nonzero, len) = (|| operands::nonzeros(&sample), sample.len());
    let by_rows = match isa {
        Isa::Avx512 if n >= AVX512_BY_ROWS_MIN_COLS => 2 * nonzero() <= len,
        Isa::Avx512 => m >= AVX512_BY_ROWS_MIN_BATCH && 4 * nonzero() <= len,
        _ => n >= BY_ROWS_MIN_COLS && 2 * nonzero() <= len,
    };
    if by_rows {
        Product::Rows
    } else if isa == Isa::Avx512 && n >= AVX512_PACKED_MIN_COLS {
        Product::PackedTiles
    } else {
        Product::Tiles
    }
}

/// Rows of an input that [`forward_product`] counts the nonzeros of.
const SPARSITY_SAMPLE_ROWS: usize = 128;

/// Narrower products (the 10-class output layer) keep the dense tiles even for a sparse input:
/// listing each row's nonzeros would cost more than the multiply-adds it saves.
const BY_ROWS_MIN_COLS: usize = 32;

/// AVX-512's own dense tiles (24 accumulators of 16 columns, no listing, no copy of `W`) win
/// over the row-by-row product below this many columns. Per product, Intel Xeon (AVX-512):
/// 1024 columns 0.29 ms against 0.52 (hidden layer) and 0.16-0.18 against 0.27 (first layer);
/// at 512 the first layer 8-18% faster by rows, a hidden layer 5-7% slower; below, its own
/// tiles are faster or level (`docs/performance.md`).
const AVX512_BY_ROWS_MIN_COLS: usize = 512;

/// Below [`AVX512_BY_ROWS_MIN_COLS`], AVX-512 still goes row by row for this many rows and
/// more when at most a quarter of the input is nonzero (images, at evaluation's 1000 rows):
/// its own tiles re-read `W`'s panel from L2 for each tile of 12 rows. Intel Xeon, 1000 MNIST
/// images: 128 columns 0.67 ms against 0.92-0.94, 256 1.01 against 1.86-1.89. A hidden layer's
/// input at evaluation (no dropout: about half zeros) keeps its tiles (128 columns 0.11 ms
/// against 0.16-0.19 row by row), as does a training batch of 32 images (128 columns 24 µs
/// against 30; `docs/performance.md`).
const AVX512_BY_ROWS_MIN_BATCH: usize = 128;

/// From this many columns, AVX-512 runs dense products in portable's tiles, which copy each
/// panel of `W` (compiled with AVX-512F): its own tiles read a panel of 512 rows of `W` in
/// place, whose rows, a power of two of bytes apart, share a few L2 sets. Intel Xeon, 1000
/// rows (an evaluation chunk) of 50% dense inputs: 1024 columns 10.9 ms against 14.5, 2048
/// 43.9 against 62.4; at 512 its own are faster (1.76 against 2.50 ms), and at a batch of 32
/// the two are level (`docs/performance.md`).
const AVX512_PACKED_MIN_COLS: usize = 1024;

/// Row-by-row products narrower than this are cut by batch rows instead of columns: split by
/// columns, each thread listed every row's nonzeros, which at 128 and 256 columns cost as much
/// as its share of the multiply-adds (so the first layer kept the dense tiles below 512). By
/// rows, each thread lists its own and copies the tiles of `W` its rows need; whole steps
/// 1-6% faster at 1x128, 1x256, 2x128 and 2x256 (`docs/performance.md`).
const SPLIT_ROWS_BELOW_COLS: usize = 512;

/// Bytes of `W` per block of the fused backward: the block is read for `dh`, then again (from
/// cache) for the update.
const BACKWARD_BLOCK_BYTES: usize = 96 << 10;

#[track_caller]
fn backward(
    kernels: Kernels,
    dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    velocity: Option<(&mut ArrayViewMut2<'_, f32>, f32)>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    (lr, relu): (f32, Option<f32>),
) {
    let (inputs, outputs) = w.dim();
    check("backward dz", (x.nrows(), outputs), dz.dim());
    check("backward x", (dz.nrows(), inputs), x.dim());
    if let Some(dh) = &dh {
        check("backward dh", x.dim(), dh.dim());
    }
    let Some(isa) = kernels.run() else {
        return blas::backward(dh, w, velocity, dz, x, (lr, relu));
    };
    let cached = (BACKWARD_BLOCK_BYTES / (4 * outputs.max(1))).max(12) / 12 * 12;
    let size = cached.min(inputs.div_ceil(8).next_multiple_of(12)).max(1);
    let flops = 2 * x.len() * outputs * if dh.is_some() { 2 } else { 1 };
    let (v, mu) = match velocity {
        Some((v, mu)) => (Some(v), mu),
        None => (None, 0.0),
    };
    let blocks = w
        .axis_chunks_iter_mut(Axis(0), size)
        .zip(x.axis_chunks_iter(Axis(1), size))
        .zip(blocks_or_none(dh, Axis(1), size))
        .zip(blocks_or_none(v, Axis(0), size));
    for_each(flops >= PAR_MIN_FLOPS, blocks, |(((w, x), dh), v)| {
        let block = Block {
            w,
            x,
            dh,
            nonzero_rows: None,
            relu_scale: relu,
            velocity: v.map(|v| (v, mu)),
        };
        operands::backward_rows(isa, block, dz, lr);
    });
}

/// `m`'s blocks of `size` along `axis`, each as `Some`, or endless `None`s without `m`: the
/// optional operand of a block of `W` (its input gradient, its velocity).
fn blocks_or_none<'a>(
    m: Option<&'a mut ArrayViewMut2<'_, f32>>,
    axis: Axis,
    size: usize,
) -> impl Iterator<Item = Option<ArrayViewMut2<'a, f32>>> + Send {
    m.into_iter()
        .flat_map(move |m| m.axis_chunks_iter_mut(axis, size))
        .map(Some)
        .chain(std::iter::repeat_with(|| None))
}

/// The SGD update of a first layer (no input gradient), `W <- W - lr * x^T dz`, for an input
/// `x` whose columns outside `nonzero` are zero, as [`nonzero_columns`] lists them.
///
/// Only the rows of `W` in `nonzero` are updated: the others' updates are exactly zero. The
/// same bits as [`backward_sgd`] without `dh`. ([`Kernels::Blas`] computes every row.)
///
/// # Panics
/// As [`backward_sgd`]; also if `nonzero` is not strictly increasing below `W.nrows()`.
#[track_caller]
pub fn update_nonzero(
    kernels: Kernels,
    w: &mut ArrayViewMut2<'_, f32>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    lr: f32,
    nonzero: &[u32],
) {
    let (inputs, outputs) = w.dim();
    check("update dz", (x.nrows(), outputs), dz.dim());
    check("update x", (dz.nrows(), inputs), x.dim());
    let selected = Nonzero {
        indices: nonzero,
        offset: 0,
    };
    selected.check(inputs, "update_nonzero");
    let Some(isa) = kernels.run() else {
        return blas::backward(None, w, None, dz, x, (lr, None));
    };
    // Pieces of equal numbers of rows balance the threads; a multiple of 4 rows fills the
    // kernels' update tiles.
    let size = nonzero.len().div_ceil(8).next_multiple_of(4).max(4);
    let parallel = 2 * x.nrows() * nonzero.len() * outputs >= PAR_MIN_FLOPS;
    let pieces = NonzeroPieces {
        w: Some(w.view_mut()),
        x: x.view(),
        nonzero,
        offset: 0,
        size,
    };
    for_each(parallel, pieces, |(w, x, nonzero_rows)| {
        let block = Block {
            w,
            x,
            dh: None,
            nonzero_rows: Some(nonzero_rows),
            relu_scale: None,
            velocity: None,
        };
        operands::backward_rows(isa, block, dz, lr);
    });
}

/// [`update_nonzero`]'s pieces: `size` entries of the nonzero list at a time, each with the
/// rows of `W` (and columns of `x`) from its first entry to the next piece's.
struct NonzeroPieces<'a, 'w> {
    /// The rows of `W` not yet handed out, from row `offset` of the layer.
    w: Option<ArrayViewMut2<'w, f32>>,
    x: ArrayView2<'a, f32>,
    nonzero: &'a [u32],
    offset: usize,
    size: usize,
}

impl<'a, 'w> Iterator for NonzeroPieces<'a, 'w> {
    type Item = (ArrayViewMut2<'w, f32>, ArrayView2<'a, f32>, Nonzero<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let w = self.w.take()?;
        let offset = self.offset;
        let Some(&next) = self.nonzero.get(self.size) else {
            let piece = Nonzero {
                indices: std::mem::take(&mut self.nonzero),
                offset,
            };
            return Some((w, self.x, piece));
        };
        let cut = next as usize - offset;
        let (w0, w1) = w.split_at(Axis(0), cut);
        let (x0, x1) = self.x.split_at(Axis(1), cut);
        let (s0, s1) = self.nonzero.split_at(self.size);
        (self.w, self.x, self.nonzero, self.offset) = (Some(w1), x1, s1, next as usize);
        Some((
            w0,
            x0,
            Nonzero {
                indices: s0,
                offset,
            },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pieces = match self.w {
            Some(_) => self.nonzero.len().div_ceil(self.size).max(1),
            None => 0,
        };
        (pieces, Some(pieces))
    }
}
