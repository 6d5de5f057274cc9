//! The OpenBLAS backend ([`super::Kernels::Blas`]): every product through `cblas_sgemm`, cut
//! into fixed blocks so that the bits do not depend on the thread count (though they do on the
//! OpenBLAS build and the CPU kernel it picks). Also the `sgemm` that `relumax bench` measures as
//! the machine's ceiling.
//!
//! - [`gemm`]: `C = alpha * A B + beta * C` (operands must be standard layout or `.t()` of it,
//!   which is what keeps ndarray on the BLAS path);
//! - [`par_gemm`]: [`gemm`] over fixed column blocks on the current threads.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, s};

use super::elementwise::relu_dropout_backward;
use super::{blocks_or_none, check, for_each};

/// The inner dimension of every `sgemm` call is a multiple of this, or below it.
///
/// OpenBLAS's single-threaded and threaded drivers block the inner dimension `k` differently
/// when `Q < k < 2Q` (`Q` = 320 for single precision in OpenBLAS's Cooperlake kernels): one
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
/// result is bit-identical for any OpenBLAS thread count (the inner dimension is split into
/// a multiple of 64 and a remainder, which OpenBLAS's drivers block alike).
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

/// [`gemm`] run in parallel on the current threads (the installed [`super::Team`]'s, else the
/// current rayon pool's): `dst` and `b` are cut into column
/// blocks (a quarter of the columns, at least 64: a function of the size alone), one
/// single-threaded `sgemm` each, so the result is identical for any number of threads.
///
/// OpenBLAS should be single-threaded meanwhile ([`crate::openblas::set_blas_threads`]`(1)`;
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
    let blocks = dst
        .axis_chunks_iter_mut(Axis(1), size)
        .zip(b.axis_chunks_iter(Axis(1), size));
    for_each(true, blocks, |(mut d, bb)| {
        gemm(&mut d, beta, a, &bb, alpha)
    });
}

/// The backward pass of one layer through OpenBLAS: `dh = dz W^T` (then, with
/// `relu = Some(scale)`, [`relu_dropout_backward`]), and the update `W <- W - lr * x^T dz`
/// (with a velocity `(V, mu)`: `V <- mu V + x^T dz`, `W <- W - lr V`), over fixed blocks of
/// `W`'s rows.
pub(super) fn backward(
    mut dh: Option<&mut ArrayViewMut2<'_, f32>>,
    w: &mut ArrayViewMut2<'_, f32>,
    velocity: Option<(&mut ArrayViewMut2<'_, f32>, f32)>,
    dz: &ArrayView2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    (lr, relu): (f32, Option<f32>),
) {
    let size = block_size(w.nrows());
    if let Some((v, mu)) = velocity {
        if let Some(dh) = dh.as_deref_mut() {
            par_gemm(dh, 0.0, dz, &w.t(), 1.0);
        }
        par_gemm(v, mu, &x.t(), dz, 1.0);
        w.scaled_add(-lr, v);
    } else {
        let task = |mut wr: ArrayViewMut2<'_, f32>,
                    xr: ArrayView2<'_, f32>,
                    dhr: Option<ArrayViewMut2<'_, f32>>| {
            if let Some(mut dhr) = dhr {
                gemm(&mut dhr, 0.0, dz, &wr.t(), 1.0);
            }
            gemm(&mut wr, 1.0, &xr.t(), dz, -lr);
        };
        let blocks = w
            .axis_chunks_iter_mut(Axis(0), size)
            .zip(x.axis_chunks_iter(Axis(1), size))
            .zip(blocks_or_none(dh.as_deref_mut(), Axis(1), size));
        for_each(true, blocks, |((wr, xr), dhr)| task(wr, xr, dhr));
    }
    if let (Some(dh), Some(scale)) = (dh, relu) {
        relu_dropout_backward(dh.view_mut(), x.view(), scale);
    }
}
