//! The AVX-512 implementation of the products of [`super::portable`]'s arithmetic, with the
//! same bits: its own dense kernels, `z = x W` streamed without packing, which win on narrow
//! layers, and the fused input gradient + update of a block of `W`'s rows, for every layer of
//! a batch of up to 64 rows without momentum (the first layer's update, the output layer, the
//! hidden layers, wide ones in one pass per row); and [`super::portable`]'s kernels compiled
//! with AVX-512F: the row-by-row forward ([`forward_rows`]), which wins on wide sparse layers,
//! and the backward for momentum and larger batches ([`backward_rows`]). The rules that choose
//! are in [`super::operands`] and [`super`] (see `docs/performance.md` for why each kernel is
//! shaped as it is).
//!
//! Every function here is `unsafe` with one contract: the CPU has AVX-512F, and each
//! `(pointer, leading dimension)` pair addresses a matrix whose rows the function reads or
//! writes (`p + i * ld + j` for the rows and columns its shape arguments name) entirely inside
//! one live allocation, with written operands aliasing nothing else. The safe entry points in
//! [`super::operands`] establish it; each `// SAFETY:` below refers to this contract.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::operands::{Nonzero, Shape, avx512_fused_backward};
use super::portable::{self, Aligned, Hardware, Lister, NARROW, RK, Scalar, Step};

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
    /// Rows of `x` per forward tile over these rows of `w`: [`FR`] for all, [`FR_LISTED`] for
    /// a list.
    const TILE: usize;
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
    const TILE: usize = FR;
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

/// The rows `indices[t] - offset` of a [`Nonzero`], which the caller checked, as raw parts.
#[derive(Clone, Copy)]
struct RawNonzero {
    indices: *const u32,
    len: usize,
    offset: usize,
}

impl RawNonzero {
    fn new(rows: Nonzero<'_>) -> RawNonzero {
        RawNonzero {
            indices: rows.indices.as_ptr(),
            len: rows.indices.len(),
            offset: rows.offset,
        }
    }
}

impl Rows for RawNonzero {
    const TILE: usize = FR_LISTED;
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
    // SAFETY: the module's contract.
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
    // SAFETY: the module's contract; `acc` points to a live, exclusively borrowed buffer of
    // `I * R` registers.
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
    // SAFETY: the module's contract; tile `t` of a group parks its sums in `parked[t]`,
    // inside the buffer.
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
/// rows `i` in `i0..i1` (at most 64 of them) at which `x[i, r] > 0` (into `positive`; zeros
/// without `POSITIVE`: the first layer's update needs only the other) and at which
/// `x[i, r] != 0`, NaN included (into `nonzero`). Batch rows whose terms are all zero can be skipped: that
/// leaves every sum as it is.
#[inline(always)]
unsafe fn masks<const POSITIVE: bool>(
    x: (*const f32, usize),
    (i0, i1): (usize, usize),
    len: usize,
    positive: &mut [u64; MR],
    nonzero: &mut [u64; MR],
) {
    // SAFETY: the module's contract (`x` addresses rows `i0..i1`, columns `0..len`);
    // masked-off lanes are neither read nor written, and the stores stay in the arrays
    // (`g + 16 <= MR`).
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
                    if POSITIVE {
                        *p = _mm512_mask_or_epi64(*p, (kp >> (8 * h)) as u8, *p, bit);
                    }
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
    // SAFETY: the module's contract.
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
    // SAFETY: the module's contract; `active` only names rows below `m`.
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

/// [`u_tile`] across all `n` columns, `V` registers at a time, for the `R` rows `rows` of `w`.
#[inline(always)]
unsafe fn u_rows<const R: usize, const V: usize>(
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    (m, n, neg_lr): (usize, usize, f32),
    (rows, active): ([usize; R], Option<u64>),
) {
    // SAFETY: the module's contract.
    unsafe {
        let all = !0;
        let at = |c: usize| ((w.0.add(c), w.1), (dz.0.add(c), dz.1));
        let rows = (rows, active);
        let mut c = 0;
        while c + 16 * V <= n {
            let (wc, zc) = at(c);
            u_tile::<R, V>(wc, x, zc, (m, neg_lr, all), rows);
            c += 16 * V;
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

/// The update of the first `len` rows of `w`, [`UR`] at a time, over every batch row (a
/// block without an input gradient or nonzero list).
#[inline(always)]
unsafe fn update(
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    (m, n): (usize, usize),
    lr: f32,
    len: usize,
) {
    // SAFETY: the module's contract.
    unsafe {
        let args = (m, n, -lr);
        let mut r = 0;
        while r + UR <= len {
            let rows: [usize; UR] = std::array::from_fn(|j| r + j);
            u_rows::<UR, UV>(w, x, dz, args, (rows, None));
            r += UR;
        }
        match len - r {
            0 => {}
            1 => u_rows::<1, UV>(w, x, dz, args, ([r], None)),
            2 => u_rows::<2, UV>(w, x, dz, args, ([r, r + 1], None)),
            _ => u_rows::<3, UV>(w, x, dz, args, ([r, r + 1, r + 2], None)),
        }
    }
}

/// Registers of 16 columns per pass of [`update_row`] and [`update_pixels`]: a 128-wide
/// layer in one pass.
const UV_ROW: usize = 8;

/// The update of row `r` of `w` over only the batch rows in `bits` (see [`masks`]), where its
/// input is nonzero: for a hidden layer's input (ReLU, then dropout) about a quarter of the
/// batch. One row at a time executes about a third of the multiply-adds of tiles of [`UR`]
/// rows over the batch rows any of them needs (a hidden layer's backward at 256 columns,
/// Intel Xeon: 31-35 -> 30 µs; pairs of rows were no faster).
#[inline(always)]
unsafe fn update_row(
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    (m, n, lr): (usize, usize, f32),
    (r, bits): (usize, u64),
) {
    // SAFETY: the module's contract; `bits` only names batch rows below `m`. A row without
    // nonzero inputs keeps its weights: `fma(-lr, +0, w) = w`.
    unsafe {
        if bits != 0 {
            u_rows::<1, UV_ROW>(w, x, dz, (m, n, -lr), ([r], Some(bits)));
        }
    }
}

/// The first layer's update of the listed `rows` (pixels) of `w`, two at a time (positions
/// `2t` and `2t + 1` of the list) over the batch rows either is ink in: the bits of [`masks`],
/// taken for the block of [`MR`] rows around each. Neighbouring pixels are ink in mostly the
/// same images. A batch of at most 64. Per layer, Intel Xeon: against 4-row tiles over every
/// batch row, 512 columns 62-64 -> 40-43 µs a pixel at a time; pairs share each load of
/// `dz`'s row, which made a 1x128 epoch 6% faster again (0.114 -> 0.107 s), 1x512 4%; 4 at a
/// time over 64 columns was no faster.
#[inline(always)]
unsafe fn update_pixels(
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    (m, n, all): (usize, usize, usize),
    lr: f32,
    rows: RawNonzero,
) {
    // SAFETY: the module's contract; `m <= 64` (the caller), and each block of masks covers
    // rows `r0..r0 + len` of `w`, inside its `all` rows.
    unsafe {
        let (mut positive, mut nonzero) = ([0; MR], [0; MR]);
        let mut block = usize::MAX;
        let mut t = 0;
        while t < rows.len() {
            let pair = t + 2 <= rows.len();
            let (r, q) = (rows.at(t), rows.at(t + usize::from(pair)));
            // The pair's bits, each from its block's masks (written out: a closure holding
            // the masks made a 1x128 epoch 2.5x slower).
            let mut bits = 0;
            for r in [r, q] {
                let r0 = r - r % MR;
                if r0 != block {
                    block = r0;
                    let len = (all - r0).min(MR);
                    masks::<false>((x.0.add(r0), x.1), (0, m), len, &mut positive, &mut nonzero);
                }
                bits |= nonzero[r - r0];
            }
            if !pair {
                return update_row(w, x, dz, (m, n, lr), (r, bits));
            }
            if bits != 0 {
                u_rows::<2, UV_ROW>(w, x, dz, (m, n, -lr), ([r, q], Some(bits)));
            }
            t += 2;
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
    // SAFETY: the module's contract, for every batch row in `positive`.
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

/// Active batch rows per group of [`fused_row`]: each holds a register of input-gradient
/// lanes and one of its broadcast input, with two of `w`, two of the gradient and two of `dz`
/// (22 of the 32 registers). 6, 10 and 12 were no faster.
const FG: usize = 8;
/// Columns per chunk of [`fused_row`]: its weight gradient waits in a stack buffer of that
/// many between groups (a layer up to 4096 wide in one chunk; smaller chunks, for `dz` to
/// stay in L1 across rows, were slower).
const FC: usize = 4096;

/// Row `r` of `w` (`w` points to it) of a hidden layer's backward through ReLU + dropout, in
/// one pass over its columns, for a batch of at most 64 rows: `dh[i, r] = reduce(sum_c dz[i,
/// c] w[c]) * scale` for the batch rows in `positive` (the others are zeroed by the caller),
/// and the update of `w` over the batch rows in `nonzero` (see [`masks`]; `x` and `dh` point
/// to column `r`). The rows of `nonzero` go [`FG`] at a time, each load of `w` and of `dz`
/// serving both products, their lanes and inputs in registers; the weight gradient continues
/// across groups in order, and the last group steps `w` (every group read the old `w`).
#[inline(always)]
unsafe fn fused_row(
    dh: (*mut f32, usize),
    w: *mut f32,
    (x, dz): ((*const f32, usize), (*const f32, usize)),
    (n, lr, scale): (usize, f32, f32),
    (positive, nonzero): (u64, u64),
) {
    // SAFETY: the module's contract, for the batch rows in `nonzero` (below 64). `sums` holds
    // a register of lanes per listed batch row, `gradient` a chunk's columns.
    unsafe {
        let (mut rows, mut len, mut bits) = ([0usize; 64], 0, nonzero);
        while bits != 0 {
            rows[len] = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            len += 1;
        }
        // Only the listed rows' lanes start at `+0`: zeroing all 64 registers' worth was a
        // 4 KiB memset per row of `W` (1% of a 2x2048 epoch).
        let mut sums = std::mem::MaybeUninit::<[__m512; 64]>::uninit();
        let sums = sums.as_mut_ptr().cast::<__m512>();
        for k in 0..len {
            sums.add(k).write(_mm512_setzero_ps());
        }
        let mut gradient = std::mem::MaybeUninit::<Aligned<[f32; FC]>>::uninit();
        let gradient = gradient.as_mut_ptr().cast::<f32>();
        for c0 in (0..n).step_by(FC) {
            let ops = (w.add(c0), x, (dz.0.add(c0), dz.1), gradient);
            for g0 in (0..len).step_by(FG) {
                let group = &rows[g0..(g0 + FG).min(len)];
                let at = ((n - c0).min(FC), g0 == 0, g0 + FG >= len);
                let sums = sums.add(g0);
                match group.len() {
                    8 => fused_group::<8>(ops, group, sums, at, lr),
                    7 => fused_group::<7>(ops, group, sums, at, lr),
                    6 => fused_group::<6>(ops, group, sums, at, lr),
                    5 => fused_group::<5>(ops, group, sums, at, lr),
                    4 => fused_group::<4>(ops, group, sums, at, lr),
                    3 => fused_group::<3>(ops, group, sums, at, lr),
                    2 => fused_group::<2>(ops, group, sums, at, lr),
                    _ => fused_group::<1>(ops, group, sums, at, lr),
                }
            }
        }
        for (k, &i) in rows[..len].iter().enumerate() {
            if positive >> i & 1 != 0 {
                *dh.0.add(i * dh.1) = reduce(*sums.add(k)) * scale;
            }
        }
    }
}

/// The operands of [`fused_group`]: a chunk's columns of the row of `w` and of `dz`, `x` at
/// the row's column, and the gradient buffer.
type FusedOps = (*mut f32, (*const f32, usize), (*const f32, usize), *mut f32);

/// [`fused_row`]'s `K` batch rows `rows` over a chunk of `cols` columns: their input-gradient
/// lanes continue from `sums`; the weight gradient starts at `+0` (`first`) or continues from
/// the buffer, and goes back to it, or (`last`) steps `w`. Two registers of columns a step.
#[inline(always)]
unsafe fn fused_group<const K: usize>(
    (w, x, dz, gradient): FusedOps,
    rows: &[usize],
    sums: *mut __m512,
    (cols, first, last): (usize, bool, bool),
    lr: f32,
) {
    // SAFETY: `fused_row`'s; masked-off lanes are neither read nor written.
    unsafe {
        let xb: [__m512; K] = std::array::from_fn(|k| _mm512_set1_ps(*x.0.add(rows[k] * x.1)));
        let zr: [*const f32; K] = std::array::from_fn(|k| dz.0.add(rows[k] * dz.1));
        let mut acc: [__m512; K] = std::array::from_fn(|k| *sums.add(k));
        let neg = _mm512_set1_ps(-lr);
        let mut c = 0;
        while c < cols {
            let m: [__mmask16; 2] = std::array::from_fn(|v| lanes(cols.saturating_sub(c + 16 * v)));
            let wv: [__m512; 2] =
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(m[v], w.add(c + 16 * v)));
            let mut g: [__m512; 2] = if first {
                [_mm512_setzero_ps(); 2]
            } else {
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(m[v], gradient.add(c + 16 * v)))
            };
            for k in 0..K {
                for v in 0..2 {
                    let z = _mm512_maskz_loadu_ps(m[v], zr[k].add(c + 16 * v));
                    acc[k] = _mm512_mask3_fmadd_ps(z, wv[v], acc[k], m[v]);
                    g[v] = _mm512_fmadd_ps(xb[k], z, g[v]);
                }
            }
            for v in 0..2 {
                let p = c + 16 * v;
                if last {
                    _mm512_mask_storeu_ps(w.add(p), m[v], _mm512_fmadd_ps(neg, g[v], wv[v]));
                } else {
                    _mm512_mask_storeu_ps(gradient.add(p), m[v], g[v]);
                }
            }
            c += 32;
        }
        for (k, &a) in acc.iter().enumerate() {
            *sums.add(k) = a;
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
    // SAFETY: the module's contract.
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
/// caller to lie in the block). A batch of at most 64 rows (the masks' words:
/// [`super::operands::avx512_own_backward`]). Up to [`NARROW`] outputs without a list (the
/// output layer), [`narrow`]; a wide hidden layer's rows through ReLU + dropout, both
/// products in one pass each ([`fused_row`]); otherwise each row of `w` is updated over the
/// batch rows its input is nonzero in ([`update_row`]), except a block without `dh` or list
/// (every batch row, [`update`]).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn backward(
    s: Shape,
    dh: Option<((*mut f32, usize), Option<f32>)>,
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    lr: f32,
    nonzero_rows: Option<Nonzero<'_>>,
) {
    debug_assert!(s.m <= 64, "the masks hold 64 batch rows");
    // SAFETY: the module's contract.
    unsafe {
        if s.n <= NARROW && nonzero_rows.is_none() {
            return narrow((s, dh, w, x, dz, lr));
        }
        if let Some(list) = nonzero_rows {
            return update_pixels(w, x, dz, (s.m, s.n, s.rows), lr, RawNonzero::new(list));
        }
        let Some((dh, scale)) = dh else {
            return self::update(w, x, dz, (s.m, s.n), lr, s.rows);
        };
        if scale.is_none() {
            dense_dh(s, dh, w, dz);
        }
        // Through ReLU + dropout, a wide layer's rows of `w` in one pass each.
        let fused = scale.is_some() && avx512_fused_backward(s.n);
        let (mut positive, mut nonzero) = ([0; MR], [0; MR]);
        for r0 in (0..s.rows).step_by(MR) {
            let len = (s.rows - r0).min(MR);
            let (wr, xr) = ((w.0.add(r0 * w.1), w.1), (x.0.add(r0), x.1));
            masks::<true>(xr, (0, s.m), len, &mut positive, &mut nonzero);
            if let Some(scale) = scale {
                let dh = (dh.0.add(r0), dh.1);
                zero(dh, s.m, len);
                for r in 0..len {
                    let (dhr, wr) = ((dh.0.add(r), dh.1), wr.0.add(r * w.1));
                    if fused {
                        let ops = ((xr.0.add(r), xr.1), dz);
                        fused_row(dhr, wr, ops, (s.n, lr, scale), (positive[r], nonzero[r]));
                    } else {
                        d_relu_row(dhr, dz, wr.cast_const(), (positive[r], s.n), scale);
                    }
                }
            }
            if !fused {
                for (r, &bits) in nonzero[..len].iter().enumerate() {
                    update_row(wr, xr, dz, (s.m, s.n, lr), (r, bits));
                }
            }
        }
    }
}

/// The arguments of [`narrow`] (portable's, with the learning rate for the step).
type NarrowArgs = portable::NarrowArgs<f32>;

/// [`narrow_n`] for `s.n <= NARROW` outputs.
#[inline(always)]
unsafe fn narrow(a: NarrowArgs) {
    // SAFETY: the module's contract; each arm runs with `N == s.n`.
    unsafe {
        match a.0.n {
            1 => narrow_n::<1>(a),
            2 => narrow_n::<2>(a),
            3 => narrow_n::<3>(a),
            4 => narrow_n::<4>(a),
            5 => narrow_n::<5>(a),
            6 => narrow_n::<6>(a),
            7 => narrow_n::<7>(a),
            8 => narrow_n::<8>(a),
            9 => narrow_n::<9>(a),
            10 => narrow_n::<10>(a),
            11 => narrow_n::<11>(a),
            12 => narrow_n::<12>(a),
            13 => narrow_n::<13>(a),
            14 => narrow_n::<14>(a),
            15 => narrow_n::<15>(a),
            _ => narrow_n::<16>(a),
        }
    }
}

/// The backward of a block of `w` with `N = s.n <= NARROW` outputs, 16 rows of `w` across the
/// lanes: their `N` columns are copied into `N` registers, which stay there while every batch
/// row's input gradient is computed (the lanes of [`d_tile`], each one product, summed by the
/// tree of [`reduce`] across registers instead of within one) and its update chained (every
/// product, zero terms included, as the definition reads), then go back. Per row of `w` and
/// batch row, the dot product's reduction is 15 adds shared by 16 rows instead of 6
/// dependent shuffles and adds of its own.
#[inline(always)]
unsafe fn narrow_n<const N: usize>((s, dh, w, x, dz, lr): NarrowArgs) {
    // SAFETY: the module's contract; masked-off lanes (rows past the block) are neither read
    // nor written, and the copies stay inside `t`'s `N x 16` floats.
    unsafe {
        let zero = _mm512_setzero_ps();
        let mut t = Aligned([[0f32; 16]; N]);
        let t = &mut t.0;
        for r0 in (0..s.rows).step_by(16) {
            let len = (s.rows - r0).min(16);
            let live = lanes(len);
            for r in 0..len {
                for (c, col) in t.iter_mut().enumerate() {
                    col[r] = *w.0.add((r0 + r) * w.1 + c);
                }
            }
            let wt: [__m512; N] = std::array::from_fn(|c| _mm512_loadu_ps(t[c].as_ptr()));
            let row = |i: usize| _mm512_maskz_loadu_ps(live, x.0.add(i * x.1 + r0));
            let dzi = |i: usize, c: usize| _mm512_set1_ps(*dz.0.add(i * dz.1 + c));
            if let Some((dh, scale)) = dh {
                for i in 0..s.m {
                    // Lane `c` of `d_tile`'s sums is `fma(dz[i, c], w[r, c], +0)`, or `+0`
                    // past `N`; `reduce` adds them as halves, quarters, eighths, pairs.
                    let mut l = [zero; 16];
                    for (c, v) in l.iter_mut().take(N).enumerate() {
                        *v = _mm512_fmadd_ps(dzi(i, c), wt[c], zero);
                    }
                    let s8: [__m512; 8] = std::array::from_fn(|j| _mm512_add_ps(l[j], l[j + 8]));
                    let s4: [__m512; 4] = std::array::from_fn(|j| _mm512_add_ps(s8[j], s8[j + 4]));
                    let s2: [__m512; 2] = std::array::from_fn(|j| _mm512_add_ps(s4[j], s4[j + 2]));
                    let mut g = _mm512_add_ps(s2[0], s2[1]);
                    if let Some(scale) = scale {
                        // Through ReLU + dropout: `+0` where the input is not positive.
                        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(row(i), zero);
                        g = _mm512_maskz_mul_ps(positive, g, _mm512_set1_ps(scale));
                    }
                    _mm512_mask_storeu_ps(dh.0.add(i * dh.1 + r0), live, g);
                }
            }
            let mut g = [zero; N];
            for i in 0..s.m {
                let xi = row(i);
                for (c, a) in g.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(xi, dzi(i, c), *a);
                }
            }
            let l = _mm512_set1_ps(-lr);
            for (c, col) in t.iter_mut().enumerate() {
                _mm512_storeu_ps(col.as_mut_ptr(), _mm512_fmadd_ps(l, g[c], wt[c]));
            }
            for r in 0..len {
                for (c, col) in t.iter().enumerate() {
                    *w.0.add((r0 + r) * w.1 + c) = col[r];
                }
            }
        }
    }
}

/// `dh = dz w^T` for all rows of the block, [`DR`] rows of `w` at a time.
#[inline(always)]
unsafe fn dense_dh(s: Shape, dh: (*mut f32, usize), w: (*mut f32, usize), dz: (*const f32, usize)) {
    // SAFETY: the module's contract.
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
    // SAFETY: the module's contract (`dh` addresses `rows` rows of `cols` columns);
    // masked-off lanes are not written.
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
/// Rows of `x` per forward tile over a nonzero list (the first layer): with 12, the compiler
/// kept two of the 24 sums on the stack, a store-to-load chain per row of `w` (perf annotate).
/// Intel Xeon, one thread, a batch of 32 images: 256 columns 74 -> 58 µs, 128 columns 36 -> 30
/// µs; over every row, 12 stays 1-3% faster than 8.
const FR_LISTED: usize = 8;
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
    // SAFETY: the module's contract.
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
    // SAFETY: the module's contract.
    unsafe {
        let k = rows.len();
        for k0 in (0..k).step_by(FK) {
            let ks = (rows, k0, (k0 + FK).min(k));
            let first = k0 == 0;
            let mut i = 0;
            while i + K::TILE <= m {
                let (zi, xi) = ((z.0.add(i * z.1), z.1), (x.0.add(i * x.1), x.1));
                if K::TILE == FR {
                    f_tile::<FR, V, K>(zi, xi, w, ks, first, i == 0, mask);
                } else {
                    f_tile::<FR_LISTED, V, K>(zi, xi, w, ks, first, i == 0, mask);
                }
                i += K::TILE;
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

/// `z = x w` over every row of `w`, or over the rows in `nonzero` (checked by the caller
/// to be below `s.rows`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    nonzero: Option<&[u32]>,
) {
    // SAFETY: the module's contract.
    unsafe {
        match nonzero {
            None => panels(s, z, x, w, All(s.rows)),
            Some(indices) => {
                let rows = Nonzero { indices, offset: 0 };
                panels(s, z, x, w, RawNonzero::new(rows))
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
    // SAFETY: the module's contract.
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

/// [`portable::forward_rows`] compiled with AVX-512F: its tiles of 16-lane arrays become single
/// registers, and [`Lists`] packs each row's nonzeros 16 inputs at a time.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward_rows(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
) {
    // SAFETY: the module's contract (the same as `portable`'s, plus AVX-512F).
    unsafe { portable::forward_rows::<Hardware, Lists>(s, z, x, w) }
}

/// [`portable::backward`] compiled with AVX-512F: every layer of a batch over 64 rows or with
/// momentum, which [`backward`] does not know.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn backward_rows(
    s: Shape,
    dh: Option<((*mut f32, usize), Option<f32>)>,
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    step: Step,
    nonzero_rows: Option<Nonzero<'_>>,
) {
    // SAFETY: the module's contract (the same as `portable`'s, plus AVX-512F).
    unsafe { portable::backward::<Hardware>(s, dh, w, x, dz, step, nonzero_rows) }
}

/// [`super::operands::nonzero_columns_with`]: the columns of `rows x cols` row-major `values`
/// with a nonzero value, ascending, into `columns` (`cols` slots); their number.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn nonzero_columns(
    values: *const f32,
    (rows, cols): (usize, usize),
    columns: &mut [u32],
) -> usize {
    // SAFETY: the module's contract (`values` holds `rows` rows of `cols`); masked-off lanes
    // are neither read nor written: a group of columns `c..` stores its `count <= cols - c`
    // nonzero ones from `kept <= c`, inside `columns`' `cols` slots.
    unsafe {
        debug_assert!(columns.len() >= cols);
        let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let (mut kept, mut c) = (0, 0);
        while c < cols {
            let live = lanes(cols - c);
            // The bits of every row but the sign: nonzero exactly where a value is not +-0.
            let mut any = _mm512_setzero_si512();
            for i in 0..rows {
                let v = _mm512_maskz_loadu_epi32(live, values.add(i * cols + c).cast());
                any = _mm512_or_si512(any, _mm512_slli_epi32::<1>(v));
            }
            let nonzero = _mm512_test_epi32_mask(any, any);
            let packed = _mm512_maskz_compress_epi32(nonzero, index);
            // The first `count` lanes only (a compressing store to memory is slow on AMD).
            let count = nonzero.count_ones() as usize;
            let first = ((1u32 << count) - 1) as __mmask16;
            _mm512_mask_storeu_epi32(columns.as_mut_ptr().add(kept).cast(), first, packed);
            kept += count;
            index = _mm512_add_epi32(index, _mm512_set1_epi32(16));
            c += 16;
        }
        kept
    }
}

/// The AVX-512 [`Lister`]: 16 inputs at a time, their nonzero lanes compressed to the front.
#[derive(Clone, Copy)]
pub(super) struct Lists;

impl Lister for Lists {
    #[inline(always)]
    unsafe fn nonzero(
        x: *const f32,
        (slot, pass): (&[u32; RK], usize),
        (values, slots): (*mut f32, *mut u32),
    ) -> usize {
        // SAFETY: the trait's contract (`x[..pass]` readable, `values` and `slots` hold `RK >=
        // pass` elements): each group of 16 inputs `r..r + 16 <= pass` writes 16 lanes from
        // `len <= r`, so below `pass`. Callers run with AVX-512F (this module's contract).
        unsafe {
            let (mut len, mut r) = (0, 0);
            while r + 16 <= pass {
                let v = _mm512_loadu_ps(x.add(r));
                let s = _mm512_loadu_si512(slot.as_ptr().add(r).cast());
                // Not-equal, unordered: NaN is listed, +0 and -0 are not (as `v != 0.0`).
                let keep = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps());
                _mm512_storeu_ps(values.add(len), _mm512_maskz_compress_ps(keep, v));
                let packed = _mm512_maskz_compress_epi32(keep, s);
                _mm512_storeu_si512(slots.add(len).cast(), packed);
                len += keep.count_ones() as usize;
                r += 16;
            }
            Scalar::list_from(x, (slot, pass), (values, slots), (r, len))
        }
    }
}

/// [`portable::forward`] compiled with AVX-512F: dense tiles of 6 rows x 64 columns (24
/// registers of sums) that copy each panel of `w` once. Panels of 64 columns against 16
/// (6 sums, too few to hide the multiply-add's latency): evaluation of 12000 samples, Intel
/// Xeon, 2x2048 0.63-0.64 -> 0.42-0.44 s, 2x1024 0.18-0.19 -> 0.15 (32 columns: 0.46-0.50 and
/// 0.15).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward_packed(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    rows: portable::Rows<'_>,
) {
    // SAFETY: the module's contract (the same as `portable`'s, plus AVX-512F).
    unsafe { portable::forward::<Hardware, 64>(s, z, x, w, rows) }
}
