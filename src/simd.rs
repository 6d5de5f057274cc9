//! Hand-written AVX-512 kernels for the products of a training step where they measurably beat
//! OpenBLAS (see the README's benchmarks), and a cache prefetch hint.
//!
//! - [`forward`]: `z = x W` for a mini-batch, streaming `W` in its own row-major layout without
//!   packing it (prefetching the rows ahead that the hardware prefetchers do not follow).
//! - [`backward_rows`]: the input gradient and SGD update of a layer, fused per block of rows.
//! - [`prefetch`]: a cache hint, for the next batch's scattered rows.
//!
//! With a batch of 32 rows, OpenBLAS packs all of `W` on every call before using it 32 times.
//! For `x W`, streaming `W` directly is faster while `W` fits in the last-level cache (up to
//! 8 MiB; at 16 MiB OpenBLAS's packing pays off again). For the backward pass, each small block
//! of `W`'s rows is read once, while it sits in cache: its columns of `dh = dz W^T` first, then
//! its update `W -= lr x^T dz`, where OpenBLAS packs all of `W` for the first product and
//! streams it again for the second.
//!
//! Every output element has one fixed sequence of operations, whatever the tiling, the block a
//! thread takes, or the CPU:
//! - `z[i, j]`: the fused multiply-add chain of `x[i, k] * w[k, j]` over `k` in order, from 0;
//! - `dh[i, r]`: `dz[i, c] * w[r, c]` summed with fused multiply-adds into 16 lanes (lane
//!   `c % 16`, in increasing `c`), then the lanes reduced in a fixed tree;
//! - the update: `acc` = the chain of `x[i, r] * dz[i, c]` over `i` in order from 0, then
//!   `w = fma(-lr, acc, w)`.
//!
//! Both the forward product and the update can be given the *support* of `x`: the ascending
//! list of its columns that hold a nonzero value (MNIST images are zero at their borders, so a
//! batch of 32 has about 42% of its 784 pixel columns zero throughout). The kernels then skip
//! the rows of `w` that only zeros multiply. Likewise, the update of a hidden layer (its input
//! three quarters zeros after ReLU and dropout) skips, per tile of rows of `w`, the batch rows
//! whose inputs are all zero there. This changes no bit: a zero term leaves a fused
//! multiply-add chain exactly as it was unless the chain stands at -0, which only a sum that
//! underflows to zero can produce, and a zero `acc` leaves `w` as it was. Non-finite weights
//! would also tell the difference (`0 * inf` is NaN).
//!
//! The `reference` module (in tests) is that definition in portable Rust; the tests hold the
//! AVX-512 code to it bit for bit.
//!
//! This module and the FFI and memory-map modules are the only ones allowed `unsafe`: the
//! intrinsics are `unsafe` to call, and the kernels address their operands through raw
//! pointers whose bounds the safe entry points check first.

#![allow(unsafe_code)]

use ndarray::{ArrayView2, ArrayViewMut2};

/// Whether this CPU runs the AVX-512 kernels (detected once, then cached by `std`).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Asks the CPU to bring `data` into its L2 cache ahead of use (one prefetch per 64-byte line).
/// A hint only: it never faults and changes no value. A no-op on other architectures.
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let start = data.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: `offset` is inside `data`, so the pointer stays inside the allocation;
            // a prefetch reads nothing architecturally and cannot fault. SSE is part of the
            // x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.add(offset)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Operands of one block of `W`'s rows.
pub(crate) struct Block<'a, 'b> {
    /// `(rows, outputs)`: the block of `W`, rows contiguous.
    pub w: ArrayViewMut2<'b, f32>,
    /// `(batch, rows)`: the block's columns of the layer input.
    pub x: ArrayView2<'a, f32>,
    /// `(batch, rows)`: the block's columns of the input gradient, if wanted.
    pub dh: Option<ArrayViewMut2<'b, f32>>,
    /// The rows to update, if not all: `indices[t] - offset` (the input gradient still covers
    /// every row).
    pub update: Option<Selected<'a>>,
    /// With `Some(scale)`, the input gradient goes through the backward of ReLU + dropout
    /// (`x` is that layer's output): `dh[i, r] = (dz W^T)[i, r] * scale` where `x[i, r] > 0`,
    /// else `+0.0`, and only those dot products are computed.
    pub relu: Option<f32>,
}

/// Some of a matrix's rows: `indices[t] - offset`, strictly increasing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selected<'a> {
    /// Row indices, strictly increasing, all in `offset..offset + rows`.
    pub indices: &'a [u32],
    /// Subtracted from each index.
    pub offset: usize,
}

impl Selected<'_> {
    /// Panics, naming `what`, unless every index lies in `offset..offset + rows`, strictly
    /// increasing.
    #[track_caller]
    pub(crate) fn check(&self, rows: usize, what: &str) {
        let ok = self.indices.windows(2).all(|p| p[0] < p[1])
            && self
                .indices
                .first()
                .is_none_or(|&i| i as usize >= self.offset)
            && self
                .indices
                .last()
                .is_none_or(|&i| (i as usize) < self.offset + rows);
        let (start, end) = (self.offset, self.offset + rows);
        assert!(
            ok,
            "{what}: the support must be strictly increasing indices in {start}..{end}"
        );
    }
}

#[track_caller]
fn checked<'a, 'b>(block: &Block<'a, 'b>, dz: &ArrayView2<'_, f32>) -> (usize, usize, usize) {
    let (rows, n) = block.w.dim();
    let m = dz.nrows();
    assert_eq!(dz.ncols(), n, "simd backward: dz columns");
    assert_eq!(block.x.dim(), (m, rows), "simd backward: x block");
    require_rows(&block.w, "simd backward: W");
    require_rows(dz, "simd backward: dz");
    require_rows(&block.x, "simd backward: x");
    if let Some(dh) = &block.dh {
        assert_eq!(dh.dim(), (m, rows), "simd backward: dh block");
        require_rows(dh, "simd backward: dh");
    }
    if let Some(update) = &block.update {
        update.check(rows, "simd backward");
    }
    (m, rows, n)
}

/// For one block of `W`'s rows: `dh = dz W^T` (from the old `W`, when `dh` is given), then
/// `W -= lr * x^T dz` (on the rows `block.update` selects, or all), with the AVX-512 kernels.
///
/// # Panics
/// If [`available`] is false, or shapes or layouts disagree (rows must be contiguous).
#[track_caller]
pub(crate) fn backward_rows(mut block: Block<'_, '_>, dz: &ArrayView2<'_, f32>, lr: f32) {
    assert!(
        available(),
        "AVX-512 kernels called on a CPU without AVX-512"
    );
    let (m, rows, n) = checked(&block, dz);
    if m == 0 || rows == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ldw = block.w.strides()[0] as usize;
        let ldx = block.x.strides()[0] as usize;
        let ldz = dz.strides()[0] as usize;
        let shape = Shape { m, rows, n };
        let w = block.w.as_mut_ptr();
        let dh = block
            .dh
            .as_mut()
            .map(|d| (d.as_mut_ptr(), d.strides()[0] as usize));
        let dh = dh.map(|d| (d, block.relu));
        // SAFETY: `available()` checked AVX-512F. `checked` proved every operand's shape, that
        // rows are contiguous with the leading dimensions read here and that the selected rows
        // are in the block, so the kernels' accesses `p + i * ld + j` (i < rows of p,
        // j < columns of p) stay inside the views; `w` and `dh` are exclusive borrows, `x` and
        // `dz` shared ones, so nothing aliases.
        unsafe {
            avx512::backward(
                shape,
                dh,
                (w, ldw),
                (block.x.as_ptr(), ldx),
                (dz.as_ptr(), ldz),
                lr,
                block.update,
            );
        }
    }
}

/// `z = x w` with the AVX-512 kernels: `x: (m, k)`, `w: (k, n)`, `z: (m, n)`; with a
/// `support`, only over those `k` (the columns of `x` that can be nonzero).
///
/// `z[i, j]` is the fused multiply-add chain over `k` in increasing order, starting from zero,
/// whatever the blocking or the CPU.
///
/// # Panics
/// If [`available`] is false, or shapes or layouts disagree (rows must be contiguous), or the
/// support is not strictly increasing below `k`.
#[track_caller]
pub(crate) fn forward(
    mut z: ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    support: Option<&[u32]>,
) {
    assert!(
        available(),
        "AVX-512 kernels called on a CPU without AVX-512"
    );
    let ((m, k), n) = (x.dim(), w.ncols());
    assert_eq!(w.nrows(), k, "simd forward: w rows");
    assert_eq!(z.dim(), (m, n), "simd forward: z shape");
    require_rows(&z, "simd forward: z");
    require_rows(x, "simd forward: x");
    require_rows(w, "simd forward: w");
    if let Some(indices) = support {
        Selected { indices, offset: 0 }.check(k, "simd forward");
    }
    if m == 0 || n == 0 {
        return;
    }
    if support.map_or(k, <[u32]>::len) == 0 {
        z.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let shape = Shape { m, rows: k, n };
        let zp = (z.as_mut_ptr(), z.strides()[0] as usize);
        let xp = (x.as_ptr(), x.strides()[0] as usize);
        let wp = (w.as_ptr(), w.strides()[0] as usize);
        // SAFETY: AVX-512F is available (checked above); the shapes, contiguous rows and the
        // support (below `k`) were checked, so every access `p + i * ld + j` stays inside its
        // view (`z` has `m` rows of `n`, `x` `m` rows of `k`, `w` `k` rows of `n`; prefetches
        // use wrapping addresses and never dereference). `z` is an exclusive borrow, so it
        // aliases neither `x` nor `w`.
        unsafe { avx512::forward(shape, zp, xp, wp, support) }
    }
}

/// Panics, naming `what`, unless [`rows_contiguous`] holds for `view`.
#[track_caller]
fn require_rows<S, D>(view: &ndarray::ArrayBase<S, D>, what: &str)
where
    S: ndarray::RawData,
    D: ndarray::Dimension,
{
    assert!(rows_contiguous(view), "{what} rows must be contiguous");
}

/// The kernels can address `view` as `p + i * ld + j`: its rows are contiguous and in order
/// (unit column stride, non-negative row stride of at least the row length, or a single row).
pub(crate) fn rows_contiguous<S, D>(view: &ndarray::ArrayBase<S, D>) -> bool
where
    S: ndarray::RawData,
    D: ndarray::Dimension,
{
    let (shape, strides) = (view.shape(), view.strides());
    let (rows, cols) = (shape[0], shape[1]);
    (cols <= 1 || strides[1] == 1) && (rows <= 1 || strides[0] >= cols.max(1) as isize)
}

#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Shape {
    m: usize,
    rows: usize,
    n: usize,
}

/// The AVX-512 kernels. Every function here is `unsafe` with one contract: the CPU has
/// AVX-512F, and each `(pointer, leading dimension)` pair addresses a matrix whose rows the
/// function reads or writes (`p + i * ld + j` for the rows and columns its shape arguments
/// name) entirely inside one live allocation, with written operands aliasing nothing else.
/// [`backward_rows`] and [`forward`] establish it.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Shape;

    /// `W` rows per dot-product tile.
    const DR: usize = 6;
    /// `dz` rows per dot-product tile.
    const DI: usize = 4;
    /// `W` rows per update tile.
    const UR: usize = 4;
    /// Registers of 16 columns per wide update tile.
    const UV: usize = 6;

    /// The rows of `w` (and columns of `x`) a kernel visits, by position `t`: all of them, or
    /// a list.
    trait Rows: Copy {
        /// How many.
        fn len(self) -> usize;
        /// The row at position `t < len()`.
        ///
        /// # Safety
        /// `t < len()`.
        unsafe fn at(self, t: usize) -> usize;
        /// A row to prefetch while position `t < len()` is used: [`PREFETCH_ROWS`] positions
        /// later, possibly past the end (prefetches use wrapping addresses and never
        /// dereference them).
        ///
        /// # Safety
        /// `t < len()`.
        unsafe fn ahead(self, t: usize) -> usize;
    }

    /// Every row, `0..len`.
    #[derive(Clone, Copy)]
    struct All(usize);

    impl Rows for All {
        fn len(self) -> usize {
            self.0
        }
        unsafe fn at(self, t: usize) -> usize {
            t
        }
        unsafe fn ahead(self, t: usize) -> usize {
            t + PREFETCH_ROWS
        }
    }

    /// The rows `indices[t] - offset` of a [`super::Selected`], which the caller checked.
    #[derive(Clone, Copy)]
    struct Listed {
        indices: *const u32,
        len: usize,
        offset: usize,
    }

    impl Listed {
        fn new(rows: super::Selected<'_>) -> Listed {
            Listed {
                indices: rows.indices.as_ptr(),
                len: rows.indices.len(),
                offset: rows.offset,
            }
        }
    }

    impl Rows for Listed {
        fn len(self) -> usize {
            self.len
        }
        unsafe fn at(self, t: usize) -> usize {
            // SAFETY: `t < len` (this method's contract) indexes the list.
            unsafe { *self.indices.add(t) as usize - self.offset }
        }
        unsafe fn ahead(self, t: usize) -> usize {
            // SAFETY: the position is below `len` (`t < len`, so `len >= 1`).
            unsafe { self.at((t + PREFETCH_ROWS).min(self.len - 1)) }
        }
    }

    /// The fixed reduction tree of `reference::reduce`.
    #[inline(always)]
    unsafe fn reduce(v: __m512) -> f32 {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let lo = _mm512_castps512_ps256(v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let s8 = _mm256_add_ps(lo, hi);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
            _mm_cvtss_f32(s1)
        }
    }

    /// The lanes of a register that hold one of the `left` columns still to go: all 16, or the
    /// first `left`.
    #[inline(always)]
    fn lanes(left: usize) -> __mmask16 {
        if left >= 16 { !0 } else { (1 << left) - 1 }
    }

    /// Columns per pass of the dot-product tiles. Between passes a tile's accumulators wait in
    /// a stack buffer, so a pass's slice of the `W` rows stays in L1 for every tile of `dz`
    /// rows instead of coming from L2 once per tile.
    const DC: usize = 512;
    /// `dz` rows per group of passes: the accumulators of a group fill that buffer.
    const DG: usize = 32;

    /// One pass of `dh[i, r] = sum_c dz[i, c] w[r, c]` for `R` rows of `w` and `I` rows of
    /// `dz`, over columns `c0..c1` (`c0` a multiple of 16): the 16 lane sums continue from
    /// `acc` (unless `c0 == 0`) and go back to it, or, on the pass that ends at column `n`,
    /// are reduced into `dh`.
    #[inline(always)]
    unsafe fn d_tile<const R: usize, const I: usize>(
        acc: *mut [[__m512; R]; I],
        dh: (*mut f32, usize),
        dz: (*const f32, usize),
        w: (*const f32, usize),
        (c0, c1, n): (usize, usize, usize),
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds;
        // `acc` points to a live, exclusively borrowed buffer of `I * R` registers.
        unsafe {
            let mut sums = [[_mm512_setzero_ps(); R]; I];
            if c0 > 0 {
                // Element by element: a whole-array copy kept the sums in memory.
                for (i, row) in sums.iter_mut().enumerate() {
                    for (r, a) in row.iter_mut().enumerate() {
                        *a = (*acc)[i][r];
                    }
                }
            }
            let mut c = c0;
            while c + 16 <= c1 {
                // `I` registers of `dz`, then one row of `w` at a time: 29 registers for the
                // largest tile (all `R` rows of `w` at once needed 31, and sums spilled).
                let mut zv = [_mm512_setzero_ps(); I];
                for (i, v) in zv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(dz.0.add(i * dz.1 + c));
                }
                for r in 0..R {
                    let wr = _mm512_loadu_ps(w.0.add(r * w.1 + c));
                    for (row, &z) in sums.iter_mut().zip(&zv) {
                        row[r] = _mm512_fmadd_ps(z, wr, row[r]);
                    }
                }
                c += 16;
            }
            if c < c1 {
                // The last columns, fewer than 16 (only on the last pass): masked-off lanes
                // keep their sums.
                let mask: __mmask16 = (1 << (c1 - c)) - 1;
                let mut wv = [_mm512_setzero_ps(); R];
                for (r, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(mask, w.0.add(r * w.1 + c));
                }
                for (i, row) in sums.iter_mut().enumerate() {
                    let zv = _mm512_maskz_loadu_ps(mask, dz.0.add(i * dz.1 + c));
                    for (a, &wr) in row.iter_mut().zip(&wv) {
                        *a = _mm512_mask3_fmadd_ps(zv, wr, *a, mask);
                    }
                }
            }
            if c1 < n {
                for (i, row) in sums.iter().enumerate() {
                    for (r, &a) in row.iter().enumerate() {
                        (*acc)[i][r] = a;
                    }
                }
                return;
            }
            for (i, row) in sums.iter().enumerate() {
                for (r, &a) in row.iter().enumerate() {
                    *dh.0.add(i * dh.1 + r) = reduce(a);
                }
            }
        }
    }

    /// [`d_tile`] over all `m` rows of `dz`, for `R` rows of `w`: groups of [`DG`] rows, each
    /// in passes of [`DC`] columns.
    #[inline(always)]
    unsafe fn d_rows<const R: usize>(
        dh: (*mut f32, usize),
        dz: (*const f32, usize),
        w: (*const f32, usize),
        m: usize,
        n: usize,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        // Tile `t` of a group parks its sums in `parked[t]`, inside the buffer.
        unsafe {
            let mut parked = [[[_mm512_setzero_ps(); R]; DI]; DG / DI];
            // Every slot is addressed from this one pointer.
            let slots = parked.as_mut_ptr();
            for g in (0..m).step_by(DG) {
                let rows = (m - g).min(DG);
                for c0 in (0..n).step_by(DC) {
                    let cols = (c0, (c0 + DC).min(n), n);
                    let mut t = 0;
                    while DI * (t + 1) <= rows {
                        let i = g + DI * t;
                        let (dh, dz) = ((dh.0.add(i * dh.1), dh.1), (dz.0.add(i * dz.1), dz.1));
                        d_tile::<R, DI>(slots.add(t), dh, dz, w, cols);
                        t += 1;
                    }
                    let i = g + DI * t;
                    let (dh, dz) = ((dh.0.add(i * dh.1), dh.1), (dz.0.add(i * dz.1), dz.1));
                    // The group's last rows, fewer than a tile, park in the next slot (its
                    // first rows): `t < DG / DI` whenever any are left.
                    let slot = slots.wrapping_add(t);
                    match rows - DI * t {
                        0 => {}
                        1 => d_tile::<R, 1>(slot.cast(), dh, dz, w, cols),
                        2 => d_tile::<R, 2>(slot.cast(), dh, dz, w, cols),
                        _ => d_tile::<R, 3>(slot.cast(), dh, dz, w, cols),
                    }
                }
            }
        }
    }

    /// Rows of `w` per pass of [`backward`]: the input masks of that many rows are computed at
    /// once, then their input gradient, then their update.
    const MR: usize = 64;

    /// For each row `r < len` (at most [`MR`]) of `x`, the bits `1 << (i - i0)` of the batch
    /// rows `i` in `i0..i1` (at most 64 of them) at which `x[i, r] > 0` (into `positive`) and at
    /// which `x[i, r] != 0`, NaN included (into `nonzero`). Batch rows whose terms are all zero
    /// can be skipped: that leaves every sum as it is.
    #[inline(always)]
    unsafe fn masks(
        x: (*const f32, usize),
        (i0, i1): (usize, usize),
        len: usize,
        positive: &mut [u64; MR],
        nonzero: &mut [u64; MR],
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and `x` addresses rows `i0..i1`, columns `0..len`; masked-off lanes are
        // neither read nor written, and the stores stay in the arrays (`g + 16 <= MR`).
        unsafe {
            let zero = _mm512_setzero_ps();
            for g in (0..len).step_by(16) {
                let live = lanes(len - g);
                let mut pos = [_mm512_setzero_si512(); 2];
                let mut nz = [_mm512_setzero_si512(); 2];
                for i in i0..i1 {
                    let v = _mm512_maskz_loadu_ps(live, x.0.add(i * x.1 + g));
                    let kp = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
                    let kn = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                    let bit = _mm512_set1_epi64(1i64 << (i - i0));
                    for (h, (p, z)) in pos.iter_mut().zip(&mut nz).enumerate() {
                        *p = _mm512_mask_or_epi64(*p, (kp >> (8 * h)) as u8, *p, bit);
                        *z = _mm512_mask_or_epi64(*z, (kn >> (8 * h)) as u8, *z, bit);
                    }
                }
                for h in 0..2 {
                    let at = g + 8 * h;
                    _mm512_storeu_si512(positive.as_mut_ptr().add(at).cast(), pos[h]);
                    _mm512_storeu_si512(nonzero.as_mut_ptr().add(at).cast(), nz[h]);
                }
            }
        }
    }

    /// One batch row's terms of [`u_tile`]: `acc[r] += x[i, r] dz[i, ..]`.
    #[inline(always)]
    unsafe fn u_step<const R: usize, const V: usize>(
        acc: &mut [[__m512; V]; R],
        i: usize,
        (x, dz): ((*const f32, usize), (*const f32, usize)),
        mask: __mmask16,
        rows: [usize; R],
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let mut zv = [_mm512_setzero_ps(); V];
            for (v, z) in zv.iter_mut().enumerate() {
                *z = _mm512_maskz_loadu_ps(mask, dz.0.add(i * dz.1 + 16 * v));
            }
            for (accs, &r) in acc.iter_mut().zip(&rows) {
                let b = _mm512_set1_ps(*x.0.add(i * x.1 + r));
                for (a, &z) in accs.iter_mut().zip(&zv) {
                    *a = _mm512_fmadd_ps(b, z, *a);
                }
            }
        }
    }

    /// `w[r, c..c + 16 V] = fma(-lr, sum_i x[i, r] dz[i, c..], w[r, c..])` for the `R` rows
    /// `r` in `rows`, over the batch rows in the bits of `active` (see [`masks`]) or all `m`;
    /// with `mask`, one register whose lanes past the mask are neither read nor written.
    #[inline(always)]
    unsafe fn u_tile<const R: usize, const V: usize>(
        w: (*mut f32, usize),
        x: (*const f32, usize),
        dz: (*const f32, usize),
        (m, neg_lr, mask): (usize, f32, __mmask16),
        (rows, active): ([usize; R], Option<u64>),
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds;
        // `active` only names rows below `m`.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            match active {
                Some(mut bits) => {
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        u_step(&mut acc, i, (x, dz), mask, rows);
                    }
                }
                None => {
                    for i in 0..m {
                        u_step(&mut acc, i, (x, dz), mask, rows);
                    }
                }
            }
            let l = _mm512_set1_ps(neg_lr);
            for (accs, &r) in acc.iter().zip(&rows) {
                for (v, &a) in accs.iter().enumerate() {
                    let p = w.0.add(r * w.1 + 16 * v);
                    let old = _mm512_maskz_loadu_ps(mask, p);
                    _mm512_mask_storeu_ps(p, mask, _mm512_fmadd_ps(l, a, old));
                }
            }
        }
    }

    /// [`u_tile`] across all `n` columns, for the `R` rows `rows` of `w`.
    #[inline(always)]
    unsafe fn u_rows<const R: usize>(
        w: (*mut f32, usize),
        x: (*const f32, usize),
        dz: (*const f32, usize),
        (m, n, neg_lr): (usize, usize, f32),
        (rows, active): ([usize; R], Option<u64>),
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let all = !0;
            let at = |c: usize| ((w.0.add(c), w.1), (dz.0.add(c), dz.1));
            let rows = (rows, active);
            let mut c = 0;
            while c + 16 * UV <= n {
                let (wc, zc) = at(c);
                u_tile::<R, UV>(wc, x, zc, (m, neg_lr, all), rows);
                c += 16 * UV;
            }
            while c + 16 <= n {
                let (wc, zc) = at(c);
                u_tile::<R, 1>(wc, x, zc, (m, neg_lr, all), rows);
                c += 16;
            }
            if c < n {
                let (wc, zc) = at(c);
                let mask = (1u16 << (n - c)) - 1;
                u_tile::<R, 1>(wc, x, zc, (m, neg_lr, mask), rows);
            }
        }
    }

    /// The update of the `rows` of `w`, [`UR`] at a time; with `nonzero` (see [`masks`], one
    /// word per row), each tile skips the batch rows where its inputs are all zero.
    #[inline(always)]
    unsafe fn update<K: Rows>(
        w: (*mut f32, usize),
        x: (*const f32, usize),
        dz: (*const f32, usize),
        (m, n, nonzero): (usize, usize, Option<&[u64]>),
        lr: f32,
        rows: K,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds;
        // every position passed to `rows.at` is below `rows.len()`.
        unsafe {
            let args = (m, n, -lr);
            let tile = |r: &[usize]| nonzero.map(|bits| r.iter().fold(0, |a, &r| a | bits[r]));
            let (len, mut t) = (rows.len(), 0);
            while t + UR <= len {
                let r: [usize; UR] = std::array::from_fn(|j| rows.at(t + j));
                u_rows::<UR>(w, x, dz, args, (r, tile(&r)));
                t += UR;
            }
            match len - t {
                0 => {}
                1 => {
                    let r = [rows.at(t)];
                    u_rows::<1>(w, x, dz, args, (r, tile(&r)));
                }
                2 => {
                    let r = [rows.at(t), rows.at(t + 1)];
                    u_rows::<2>(w, x, dz, args, (r, tile(&r)));
                }
                _ => {
                    let r = [rows.at(t), rows.at(t + 1), rows.at(t + 2)];
                    u_rows::<3>(w, x, dz, args, (r, tile(&r)));
                }
            }
        }
    }

    /// Column `r` of `dh` through the backward of ReLU + dropout, for row `r` of `w` (`w` points
    /// to it, `dh` to column `r` and `dz` to the same batch row): `dh[i] = reduce(sum_c dz[i, c]
    /// w[c]) * scale` for the batch rows `i` in the bits of `positive` (see [`masks`]; the
    /// others are zeroed by the caller). They go [`DI`] at a time, sharing each load of `w`; the
    /// lane sums are those of [`d_tile`].
    #[inline(always)]
    unsafe fn d_relu_row(
        dh: (*mut f32, usize),
        dz: (*const f32, usize),
        w: *const f32,
        (positive, n): (u64, usize),
        scale: f32,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds,
        // for every batch row in `positive`.
        unsafe {
            let (mut bits, mut rows, mut len) = (positive, [0usize; DI], 0);
            while bits != 0 {
                rows[len] = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                len += 1;
                if len == DI {
                    d_relu_dots(dh, dz, w, n, scale, rows);
                    len = 0;
                }
            }
            match len {
                0 => {}
                1 => d_relu_dots(dh, dz, w, n, scale, [rows[0]]),
                2 => d_relu_dots(dh, dz, w, n, scale, [rows[0], rows[1]]),
                _ => d_relu_dots(dh, dz, w, n, scale, [rows[0], rows[1], rows[2]]),
            }
        }
    }

    /// `dh[i] = reduce(sum_c dz[i, c] w[c]) * scale` for the `G` batch rows `rows`.
    #[inline(always)]
    unsafe fn d_relu_dots<const G: usize>(
        dh: (*mut f32, usize),
        dz: (*const f32, usize),
        w: *const f32,
        n: usize,
        scale: f32,
        rows: [usize; G],
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let mut sums = [_mm512_setzero_ps(); G];
            let mut c = 0;
            while c + 16 <= n {
                let wv = _mm512_loadu_ps(w.add(c));
                for (a, &i) in sums.iter_mut().zip(&rows) {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(dz.0.add(i * dz.1 + c)), wv, *a);
                }
                c += 16;
            }
            if c < n {
                // As in `d_tile`: masked-off lanes keep their sums.
                let mask: __mmask16 = (1 << (n - c)) - 1;
                let wv = _mm512_maskz_loadu_ps(mask, w.add(c));
                for (a, &i) in sums.iter_mut().zip(&rows) {
                    let zv = _mm512_maskz_loadu_ps(mask, dz.0.add(i * dz.1 + c));
                    *a = _mm512_mask3_fmadd_ps(zv, wv, *a, mask);
                }
            }
            for (&a, &i) in sums.iter().zip(&rows) {
                *dh.0.add(i * dh.1) = reduce(a) * scale;
            }
        }
    }

    /// The whole block: `dh` columns (if any, and through ReLU + dropout with a scale), then the
    /// update of every row, or of the rows `indices[t] - offset` of `update` (checked by the
    /// caller to lie in the block).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn backward(
        s: Shape,
        dh: Option<((*mut f32, usize), Option<f32>)>,
        w: (*mut f32, usize),
        x: (*const f32, usize),
        dz: (*const f32, usize),
        lr: f32,
        update: Option<super::Selected<'_>>,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            if let Some((dh, None)) = dh {
                dense_dh(s, dh, w, dz);
            }
            // A hidden layer's input (ReLU, then dropout) is about three quarters zeros, so a
            // tile of 4 rows finds about a third of the batch rows all zero; the first layer's
            // pixels (no `dh`) are zero in whole columns, which a listed `update` skips. The
            // masks are words of 64 batch rows, so only a batch of at most 64 skips: then the
            // ReLU pass below runs once, over all of it, and leaves `nonzero` for the update.
            let skip = dh.is_some() && s.m <= 64;
            let relu = dh.and_then(|(dh, scale)| scale.map(|scale| (dh, scale)));
            let (mut positive, mut nonzero) = ([0; MR], [0; MR]);
            for r0 in (0..s.rows).step_by(MR) {
                let len = (s.rows - r0).min(MR);
                let (wr, xr) = ((w.0.add(r0 * w.1), w.1), (x.0.add(r0), x.1));
                if let Some((dh, scale)) = relu {
                    for i0 in (0..s.m).step_by(64) {
                        let i1 = (i0 + 64).min(s.m);
                        masks(xr, (i0, i1), len, &mut positive, &mut nonzero);
                        let dh = (dh.0.add(i0 * dh.1 + r0), dh.1);
                        zero(dh, i1 - i0, len);
                        let dz = (dz.0.add(i0 * dz.1), dz.1);
                        for (r, &bits) in positive[..len].iter().enumerate() {
                            let w = wr.0.add(r * w.1).cast_const();
                            d_relu_row((dh.0.add(r), dh.1), dz, w, (bits, s.n), scale);
                        }
                    }
                } else if skip {
                    masks(xr, (0, s.m), len, &mut positive, &mut nonzero);
                }
                if update.is_none() {
                    let mnb = (s.m, s.n, skip.then_some(&nonzero[..len]));
                    self::update(wr, xr, dz, mnb, lr, All(len));
                }
            }
            if let Some(list) = update {
                self::update(w, x, dz, (s.m, s.n, None), lr, Listed::new(list));
            }
        }
    }

    /// `dh = dz w^T` for all rows of the block, [`DR`] rows of `w` at a time.
    #[inline(always)]
    unsafe fn dense_dh(
        s: Shape,
        dh: (*mut f32, usize),
        w: (*mut f32, usize),
        dz: (*const f32, usize),
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let row = |r: usize| (w.0.add(r * w.1).cast_const(), w.1);
            let mut r = 0;
            while r + DR <= s.rows {
                d_rows::<DR>((dh.0.add(r), dh.1), dz, row(r), s.m, s.n);
                r += DR;
            }
            let (dh, w) = ((dh.0.add(r), dh.1), row(r));
            match s.rows - r {
                0 => {}
                1 => d_rows::<1>(dh, dz, w, s.m, s.n),
                2 => d_rows::<2>(dh, dz, w, s.m, s.n),
                3 => d_rows::<3>(dh, dz, w, s.m, s.n),
                4 => d_rows::<4>(dh, dz, w, s.m, s.n),
                _ => d_rows::<5>(dh, dz, w, s.m, s.n),
            }
        }
    }

    /// Sets `rows x cols` (at most [`MR`] columns) of `dh` to `+0.0`.
    #[inline(always)]
    unsafe fn zero(dh: (*mut f32, usize), rows: usize, cols: usize) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and `dh` addresses `rows` rows of `cols` columns; masked-off lanes are
        // not written.
        unsafe {
            for i in 0..rows {
                for c in (0..cols).step_by(16) {
                    let live = lanes(cols - c);
                    _mm512_mask_storeu_ps(dh.0.add(i * dh.1 + c), live, _mm512_setzero_ps());
                }
            }
        }
    }

    /// Rows of `x` per forward tile (24 accumulators of 16 lanes with two column registers).
    const FR: usize = 12;
    /// Rows of `w` per pass of the forward product (its column panel stays in L1/L2).
    const FK: usize = 512;
    /// How many rows of `w` ahead the first row tile prefetches: a panel's rows are a whole
    /// row of `w` apart, which the hardware prefetchers do not follow.
    const PREFETCH_ROWS: usize = 8;

    /// `z[0..R][..16 V] (+)= x[0..R][k] w[k][..16 V]` over the rows `k` at positions
    /// `t0..t1` of `rows`; with `mask`, one register whose lanes past the mask are neither read
    /// nor written.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn f_tile<const R: usize, const V: usize, K: Rows>(
        z: (*mut f32, usize),
        x: (*const f32, usize),
        w: (*const f32, usize),
        (rows, t0, t1): (K, usize, usize),
        first: bool,
        prefetch: bool,
        mask: __mmask16,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if !first {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (v, a) in row.iter_mut().enumerate() {
                        *a = _mm512_maskz_loadu_ps(mask, z.0.add(r * z.1 + 16 * v));
                    }
                }
            }
            for t in t0..t1 {
                let kk = rows.at(t);
                let wp = w.0.add(kk * w.1);
                if prefetch {
                    let ahead = w.0.wrapping_add(rows.ahead(t) * w.1);
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16 * v).cast());
                    }
                }
                let mut wv = [_mm512_setzero_ps(); V];
                for (v, r) in wv.iter_mut().enumerate() {
                    *r = _mm512_maskz_loadu_ps(mask, wp.add(16 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*x.0.add(r * x.1 + kk));
                    for (a, &wr) in row.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(b, wr, *a);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (v, &a) in row.iter().enumerate() {
                    _mm512_mask_storeu_ps(z.0.add(r * z.1 + 16 * v), mask, a);
                }
            }
        }
    }

    /// One panel of `16 V` columns of `z`, all rows, over the `rows` of `w`.
    #[inline(always)]
    unsafe fn f_panel<const V: usize, K: Rows>(
        m: usize,
        z: (*mut f32, usize),
        x: (*const f32, usize),
        w: (*const f32, usize),
        (rows, mask): (K, __mmask16),
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let k = rows.len();
            for k0 in (0..k).step_by(FK) {
                let ks = (rows, k0, (k0 + FK).min(k));
                let first = k0 == 0;
                let mut i = 0;
                while i + FR <= m {
                    let (zi, xi) = ((z.0.add(i * z.1), z.1), (x.0.add(i * x.1), x.1));
                    f_tile::<FR, V, K>(zi, xi, w, ks, first, i == 0, mask);
                    i += FR;
                }
                let (zi, xi) = ((z.0.add(i * z.1), z.1), (x.0.add(i * x.1), x.1));
                let pf = i == 0;
                match m - i {
                    0 => {}
                    1 => f_tile::<1, V, K>(zi, xi, w, ks, first, pf, mask),
                    2 => f_tile::<2, V, K>(zi, xi, w, ks, first, pf, mask),
                    3 => f_tile::<3, V, K>(zi, xi, w, ks, first, pf, mask),
                    4 => f_tile::<4, V, K>(zi, xi, w, ks, first, pf, mask),
                    5 => f_tile::<5, V, K>(zi, xi, w, ks, first, pf, mask),
                    6 => f_tile::<6, V, K>(zi, xi, w, ks, first, pf, mask),
                    7 => f_tile::<7, V, K>(zi, xi, w, ks, first, pf, mask),
                    8 => f_tile::<8, V, K>(zi, xi, w, ks, first, pf, mask),
                    9 => f_tile::<9, V, K>(zi, xi, w, ks, first, pf, mask),
                    10 => f_tile::<10, V, K>(zi, xi, w, ks, first, pf, mask),
                    _ => f_tile::<11, V, K>(zi, xi, w, ks, first, pf, mask),
                }
            }
        }
    }

    /// `z = x w` over every row of `w`, or over the rows in `support` (checked by the caller
    /// to be below `s.rows`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        s: Shape,
        z: (*mut f32, usize),
        x: (*const f32, usize),
        w: (*const f32, usize),
        support: Option<&[u32]>,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs).
        unsafe {
            match support {
                None => panels(s, z, x, w, All(s.rows)),
                Some(indices) => {
                    let rows = super::Selected { indices, offset: 0 };
                    panels(s, z, x, w, Listed::new(rows))
                }
            }
        }
    }

    /// [`forward`]'s panels: 32 columns, then 16, then a masked one.
    #[inline(always)]
    unsafe fn panels<K: Rows>(
        s: Shape,
        z: (*mut f32, usize),
        x: (*const f32, usize),
        w: (*const f32, usize),
        rows: K,
    ) {
        // SAFETY: the caller holds this function's contract (module `avx512` docs): AVX-512F
        // is available and every pointer + leading dimension addresses its operand in bounds.
        unsafe {
            let mut c = 0;
            while c < s.n {
                let (zc, wc) = ((z.0.add(c), z.1), (w.0.add(c), w.1));
                let left = s.n - c;
                if left >= 32 {
                    f_panel::<2, K>(s.m, zc, x, wc, (rows, !0));
                    c += 32;
                } else {
                    let mask = lanes(left);
                    f_panel::<1, K>(s.m, zc, x, wc, (rows, mask));
                    c += 16;
                }
            }
        }
    }
}

/// The definition the AVX-512 kernels follow, in portable Rust (for tests).
#[cfg(test)]
pub(crate) mod reference {
    use ndarray::{ArrayView2, ArrayViewMut2};

    /// Lanes of the dot-product accumulators (one AVX-512 register of `f32`).
    const LANES: usize = 16;

    /// The fixed lane-reduction tree: halves, then quarters, then pairs.
    pub fn reduce(v: [f32; LANES]) -> f32 {
        let s8: Vec<f32> = (0..8).map(|l| v[l] + v[l + 8]).collect();
        let s4: Vec<f32> = (0..4).map(|l| s8[l] + s8[l + 4]).collect();
        let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
        s2[0] + s2[1]
    }

    /// `z = x w`: each element the fused multiply-add chain over `k` from zero.
    pub fn forward(mut z: ArrayViewMut2<'_, f32>, x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) {
        for ((i, j), out) in z.indexed_iter_mut() {
            *out = (0..x.ncols()).fold(0.0f32, |acc, k| x[[i, k]].mul_add(w[[k, j]], acc));
        }
    }

    /// `dh = dz w^T` (when given), then `w = fma(-lr, x^T dz, w)`, element by element.
    pub fn backward(
        dh: Option<ArrayViewMut2<'_, f32>>,
        mut w: ArrayViewMut2<'_, f32>,
        x: ArrayView2<'_, f32>,
        dz: ArrayView2<'_, f32>,
        lr: f32,
    ) {
        let (rows, n) = w.dim();
        let m = dz.nrows();
        if let Some(mut dh) = dh {
            for i in 0..m {
                for r in 0..rows {
                    let mut lanes = [0.0f32; LANES];
                    for c in 0..n {
                        lanes[c % LANES] = dz[[i, c]].mul_add(w[[r, c]], lanes[c % LANES]);
                    }
                    dh[[i, r]] = reduce(lanes);
                }
            }
        }
        for r in 0..rows {
            for c in 0..n {
                let mut acc = 0.0f32;
                for i in 0..m {
                    acc = x[[i, r]].mul_add(dz[[i, c]], acc);
                }
                w[[r, c]] = (-lr).mul_add(acc, w[[r, c]]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Axis};

    use super::*;
    use crate::testing::noise;

    /// True (after saying so) on a CPU without AVX-512, where the kernel tests cannot run.
    fn skipped_without_avx512() -> bool {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
        }
        !available()
    }

    fn bits(a: &Array2<f32>) -> Vec<u32> {
        a.iter().map(|v| v.to_bits()).collect()
    }

    /// `(w, dh)` after [`backward_rows`] over all of `w0`'s rows, with an input gradient (its
    /// buffer starting as noise) and the update of every row.
    fn whole_block(
        w0: &Array2<f32>,
        x: &Array2<f32>,
        dz: &Array2<f32>,
        (lr, relu): (f32, Option<f32>),
    ) -> (Array2<f32>, Array2<f32>) {
        let (mut w, mut dh) = (w0.clone(), noise(x.nrows(), x.ncols(), 4));
        let block = Block {
            w: w.view_mut(),
            x: x.view(),
            dh: Some(dh.view_mut()),
            update: None,
            relu,
        };
        backward_rows(block, &dz.view(), lr);
        (w, dh)
    }

    #[test]
    fn matches_the_reference_bit_for_bit_for_every_remainder() {
        if skipped_without_avx512() {
            return;
        }
        // Every remainder of the tiles: batch rows mod 4, W rows mod 6 and 4, columns mod 16
        // and 96 (including fewer than 16 columns, like the output layer's 10); passes of 512
        // columns with a short last pass, and more than one group of 32 batch rows.
        for (m, rows, n) in [
            (5, 7, 1037),
            (37, 9, 1100),
            (70, 6, 530),
            (32, 24, 96),
            (6, 15, 40),
            (2, 16, 3),
            (32, 12, 2048),
            (1, 1, 1),
            (7, 5, 10),
            (33, 13, 127),
            (15, 26, 200),
            (32, 784, 128),
            (9, 11, 113),
        ] {
            // Dense inputs, and inputs three quarters zero like a hidden layer's after ReLU and
            // dropout (the update skips the batch rows where a tile's inputs are all zero).
            for x in [
                noise(m, rows, 1),
                noise(m, rows, 1).mapv(|v| (v - 0.25).max(0.0)),
            ] {
                let dz = noise(m, n, 2);
                let w0 = noise(rows, n, 3);
                let lr = 0.37;
                let (mut w_ref, mut dh_ref) = (w0.clone(), Array2::zeros((m, rows)));
                reference::backward(
                    Some(dh_ref.view_mut()),
                    w_ref.view_mut(),
                    x.view(),
                    dz.view(),
                    lr,
                );
                // And through the backward of ReLU + dropout: only where `x > 0`, scaled.
                let scale = 1.75;
                let relu_ref = Array2::from_shape_fn((m, rows), |(i, r)| {
                    if x[[i, r]] > 0.0 {
                        dh_ref[[i, r]] * scale
                    } else {
                        0.0
                    }
                });
                for (relu, expected) in [(None, &dh_ref), (Some(scale), &relu_ref)] {
                    let (w, dh) = whole_block(&w0, &x, &dz, (lr, relu));
                    let what = format!("shape {m}x{rows}x{n}, relu {relu:?}");
                    assert_eq!(bits(&dh), bits(expected), "dh, {what}");
                    assert_eq!(bits(&w), bits(&w_ref), "w, {what}");
                    assert_ne!(bits(&w), bits(&w0), "the update changed nothing");
                }
            }
        }
    }

    /// `x` with its columns outside `support` set to zero.
    fn zeroed_outside(x: &Array2<f32>, support: &[u32]) -> Array2<f32> {
        let mut zeroed = Array2::zeros(x.raw_dim());
        for &c in support {
            zeroed.column_mut(c as usize).assign(&x.column(c as usize));
        }
        zeroed
    }

    #[test]
    fn skipping_the_rows_outside_the_support_gives_the_dense_bits() {
        if skipped_without_avx512() {
            return;
        }
        // Supports of every length modulo the 4-row update tiles, across 512-row passes,
        // empty and full; `x` is nonzero everywhere, so a kernel that did not skip the rows
        // outside the support would differ from the dense product of the zeroed `x`.
        for (m, k, n, every) in [
            (32, 784, 128, 3),
            (32, 1100, 48, 2),
            (7, 30, 10, 1),
            (13, 50, 200, 7),
            (32, 21, 33, 0),
            (5, 9, 16, 4),
            (3, 6, 17, 5),
        ] {
            // Drop every `every`-th column (none when 0), plus a run at the start.
            let support: Vec<u32> = (0..k as u32)
                .filter(|&c| c >= 4 && (every == 0 || c % every != 1))
                .collect();
            let (x, w0, dz) = (noise(m, k, 20), noise(k, n, 21), noise(m, n, 22));
            let zeroed = zeroed_outside(&x, &support);
            let shape = format!("{m}x{k}x{n}, {} of {k} rows", support.len());

            let mut expected = Array2::zeros((m, n));
            reference::forward(expected.view_mut(), zeroed.view(), w0.view());
            let mut z = noise(m, n, 23);
            forward(z.view_mut(), &x.view(), &w0.view(), Some(&support));
            assert_eq!(bits(&z), bits(&expected), "forward, {shape}");
            forward(z.view_mut(), &zeroed.view(), &w0.view(), None);
            assert_eq!(bits(&z), bits(&expected), "dense forward, {shape}");

            let mut w_ref = w0.clone();
            reference::backward(None, w_ref.view_mut(), zeroed.view(), dz.view(), 0.37);
            // The update in two blocks cut at row `k / 3`, each with its part of the support.
            let mut w = w0.clone();
            let cut = k / 3;
            let split = support.partition_point(|&c| (c as usize) < cut);
            let (w_a, w_b) = w.view_mut().split_at(Axis(0), cut);
            let (x_a, x_b) = x.view().split_at(Axis(1), cut);
            let (s_a, s_b) = support.split_at(split);
            for (w, x, indices, offset) in [(w_a, x_a, s_a, 0), (w_b, x_b, s_b, cut)] {
                let update = Some(Selected { indices, offset });
                let block = Block {
                    w,
                    x,
                    dh: None,
                    update,
                    relu: None,
                };
                backward_rows(block, &dz.view(), 0.37);
            }
            assert_eq!(bits(&w), bits(&w_ref), "update, {shape}");
        }
    }

    #[test]
    fn a_nan_input_is_never_skipped_as_zero() {
        if skipped_without_avx512() {
            return;
        }
        // Batch row 5 is zero but for a NaN at `x[5, 3]`: the update's skip must count it as
        // nonzero (so all of row 3 of `w` becomes NaN), while the ReLU backward must count it
        // as not positive (so `dh[5, 3]` is `+0.0`), as the definition has it.
        let (m, rows, n) = (32, 8, 40);
        let mut x = noise(m, rows, 1).mapv(|v| (v - 0.25).max(0.0));
        x.row_mut(5).fill(0.0);
        x[[5, 3]] = f32::NAN;
        let dz = noise(m, n, 2);
        let w0 = noise(rows, n, 3);
        for relu in [None, Some(1.5)] {
            let (w, dh) = whole_block(&w0, &x, &dz, (0.37, relu));
            for (r, row) in w.outer_iter().enumerate() {
                assert_eq!(row.iter().all(|v| v.is_nan()), r == 3, "row {r}, {relu:?}");
                assert!(
                    r == 3 || row.iter().all(|v| v.is_finite()),
                    "row {r}, {relu:?}"
                );
            }
            if relu.is_some() {
                assert_eq!(dh[[5, 3]].to_bits(), 0, "dh where x is NaN");
            }
        }
    }

    #[test]
    fn row_selections_out_of_order_or_outside_the_block_are_refused() {
        let accepted = |indices: &[u32], offset: usize| {
            std::panic::catch_unwind(|| Selected { indices, offset }.check(8, "test")).is_ok()
        };
        assert!(accepted(&[], 0));
        assert!(accepted(&[0, 3, 7], 0));
        assert!(accepted(&[5, 8, 12], 5));
        assert!(!accepted(&[1, 5, 3], 0), "out of order");
        assert!(!accepted(&[1, 1], 0), "repeated");
        assert!(!accepted(&[0, 8], 0), "past the block");
        assert!(!accepted(&[4, 6], 5), "before the block");
        assert!(!accepted(&[5, 13], 5), "past the offset block");
    }

    #[test]
    fn only_views_with_rows_in_order_are_addressable() {
        let a = noise(4, 6, 1);
        assert!(rows_contiguous(&a.view()));
        assert!(rows_contiguous(&a.slice(ndarray::s![1..3, 2..5])));
        assert!(rows_contiguous(&a.slice(ndarray::s![..;2, ..])));
        assert!(rows_contiguous(&a.slice(ndarray::s![.., 2..3])));
        assert!(!rows_contiguous(&a.slice(ndarray::s![2..3, ..;2])));
        assert!(!rows_contiguous(&a.slice(ndarray::s![..;-1, ..])));
        assert!(!rows_contiguous(&a.slice(ndarray::s![.., ..;2])));
        assert!(!rows_contiguous(&a.t()));
    }

    #[test]
    fn forward_matches_the_reference_bit_for_bit() {
        if skipped_without_avx512() {
            return;
        }
        // Row tiles of 12 and every remainder, 32/16/masked column panels, and inner
        // dimensions across the 512-row passes.
        for (m, k, n) in [
            (32, 784, 128),
            (1, 1, 1),
            (13, 7, 10),
            (25, 513, 48),
            (11, 1100, 31),
            (32, 64, 100),
            (5, 3, 16),
            (24, 1030, 77),
        ] {
            let x = noise(m, k, 7);
            let w = noise(k, n, 8);
            let mut expected = Array2::zeros((m, n));
            reference::forward(expected.view_mut(), x.view(), w.view());
            let mut z = noise(m, n, 9);
            forward(z.view_mut(), &x.view(), &w.view(), None);
            assert_eq!(bits(&z), bits(&expected), "shape {m}x{k}x{n}");
        }
        // A column block of a wider matrix (row stride larger than the row).
        let (x, w) = (noise(32, 200, 10), noise(200, 96, 11));
        let mut whole = Array2::zeros((32, 96));
        forward(whole.view_mut(), &x.view(), &w.view(), None);
        let mut part = Array2::zeros((32, 96));
        for (zb, wb) in part
            .axis_chunks_iter_mut(Axis(1), 40)
            .zip(w.axis_chunks_iter(Axis(1), 40))
        {
            forward(zb, &x.view(), &wb, None);
        }
        assert_eq!(bits(&part), bits(&whole));
    }

    #[test]
    fn blocks_of_any_size_give_the_same_bits() {
        if skipped_without_avx512() {
            return;
        }
        let (m, rows, n) = (32, 100, 300);
        let x = noise(m, rows, 4);
        let dz = noise(m, n, 5);
        let w0 = noise(rows, n, 6);
        let run = |size: usize| {
            let (mut w, mut dh) = (w0.clone(), Array2::<f32>::zeros((m, rows)));
            for ((wb, xb), dhb) in w
                .axis_chunks_iter_mut(Axis(0), size)
                .zip(x.axis_chunks_iter(Axis(1), size))
                .zip(dh.axis_chunks_iter_mut(Axis(1), size))
            {
                let block = Block {
                    w: wb,
                    x: xb,
                    dh: Some(dhb),
                    update: None,
                    relu: None,
                };
                backward_rows(block, &dz.view(), 0.5);
            }
            (bits(&w), bits(&dh))
        };
        let whole = run(rows);
        for size in [1, 7, 12, 33] {
            assert_eq!(run(size), whole, "block size {size}");
        }
        // And without the input gradient, the update alone is the same.
        let mut w = w0.clone();
        let block = Block {
            w: w.view_mut(),
            x: x.view(),
            dh: None,
            update: None,
            relu: None,
        };
        backward_rows(block, &dz.view(), 0.5);
        assert_eq!(bits(&w), whole.0);
    }
}
