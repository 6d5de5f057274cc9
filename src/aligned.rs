//! Matrices whose first element starts a cache line.
//!
//! The allocator aligns an `f32` buffer to 16 bytes (glibc puts a large one 16 bytes past a
//! page), so every 64-byte vector load from the rows of such a matrix straddles two cache
//! lines. The weights, the workspace's activations and gradients and the batches the kernels
//! read are allocated here instead: one line of slack, and the array starts at the first line
//! inside it (ndarray's owned arrays may start anywhere in their buffer). Per product, Intel
//! Xeon (AVX-512), 2048 columns: the hidden layer's backward 1.35 -> 1.11 ms, the first
//! layer's update 0.23 -> 0.17 ms (`docs/performance.md`).

use ndarray::{Array1, Array2, ArrayView2, s};

/// The bytes of a cache line.
const LINE: usize = 64;

/// `len` zeros, the first at the start of a cache line.
pub(crate) fn zeros1(len: usize) -> Array1<f32> {
    let slack = LINE / size_of::<f32>() - 1;
    let buffer = Array1::<f32>::zeros(len + slack);
    let skip = (buffer.as_ptr() as usize).wrapping_neg() % LINE / size_of::<f32>();
    buffer.slice_move(s![skip..skip + len])
}

/// A `(rows, cols)` matrix of zeros in standard layout, its first element at the start of a
/// cache line (each row too when `cols` is a multiple of 16).
pub(crate) fn zeros(rows: usize, cols: usize) -> Array2<f32> {
    zeros1(rows * cols)
        .into_shape_with_order((rows, cols))
        .expect("a contiguous buffer of rows * cols elements")
}

/// A copy of `a` in a matrix from [`zeros`].
pub(crate) fn copy(a: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = zeros(a.nrows(), a.ncols());
    out.assign(&a);
    out
}

/// Whether `a` starts at a cache line.
pub(crate) fn is_aligned<T>(a: &[T]) -> bool {
    (a.as_ptr() as usize).is_multiple_of(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_matrix_starts_a_cache_line_whatever_the_allocator_returns() {
        // Sizes from one float to past glibc's mmap threshold, allocated between odd ones so
        // that the allocator's addresses vary.
        let mut keep = Vec::new();
        for (rows, cols) in [(1, 1), (3, 5), (32, 128), (784, 2048), (17, 10), (0, 7)] {
            keep.push(vec![0u8; rows * 3 + 1]);
            let a = zeros(rows, cols);
            assert_eq!(a.dim(), (rows, cols));
            assert!(a.is_standard_layout());
            assert!(a.iter().all(|&v| v == 0.0));
            // (An empty matrix has no first element to place.)
            assert!(
                a.is_empty() || is_aligned(a.as_slice().unwrap()),
                "{rows}x{cols}"
            );
            let b = Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f32);
            let c = copy(b.view());
            assert_eq!(c, b);
            assert!(
                c.is_empty() || is_aligned(c.as_slice().unwrap()),
                "{rows}x{cols}"
            );
        }
        let v = zeros1(1000);
        assert_eq!(v.len(), 1000);
        assert!(is_aligned(v.as_slice().unwrap()));
    }
}
