//! The safe entry points of the product implementations: which instruction sets this CPU runs
//! ([`Isa`]), the operands of a block ([`Block`]), and [`forward`] and [`backward_rows`], which
//! check every shape, layout and index before handing raw pointers to an implementation.
//!
//! `unsafe` here is the calls into the implementations, whose contract (stated in
//! [`super::portable`] and [`super::avx512`]) the checks establish, and one cache hint.

#![allow(unsafe_code)]

use ndarray::{ArrayView2, ArrayViewMut2};

use super::portable::{self, Native, Rows, Step};
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// An implementation of relumax's arithmetic. All give the same bits; they differ in speed and
/// in the CPUs that run them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// Portable Rust: every CPU.
    Portable,
    /// AVX2 + FMA (x86-64 since Haswell and Zen).
    Avx2,
    /// AVX-512F: [`super::avx512`]'s own kernels, or [`super::portable`]'s compiled with it.
    Avx512,
}

impl Isa {
    /// Whether this CPU runs it (detected at run time; `std` caches the answer).
    pub(crate) fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            match self {
                Isa::Portable => true,
                Isa::Avx2 => avx2,
                Isa::Avx512 => avx2 && has!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Portable
        }
    }

    /// The fastest this CPU runs.
    pub(crate) fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Portable)
    }

    #[track_caller]
    fn require(self) {
        assert!(
            self.supported(),
            "the {self:?} kernels were called on a CPU without them"
        );
    }
}

/// The columns of the row-major `values` (rows of `cols`) that hold a nonzero value (NaN
/// included, `-0.0` not), ascending, into `columns`, with `isa`'s code: AVX-512 ORs 16 columns
/// of every row in a register and compresses the indices of the nonzero ones (a batch of 32
/// images: 2.8% of a 1x128 epoch's profile before, Intel Xeon); the others in portable code.
///
/// # Panics
/// If `values` is not whole rows, or this CPU does not run `isa`.
pub(crate) fn nonzero_columns_with(isa: Isa, values: &[f32], cols: usize, columns: &mut Vec<u32>) {
    isa.require();
    columns.clear();
    if cols == 0 {
        return;
    }
    assert_eq!(values.len() % cols, 0, "nonzero_columns: not whole rows");
    let rows = values.len() / cols;
    // Every path writes at most `cols` indices.
    columns.resize(cols, 0);
    let kept = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (`require` above); `values` holds `rows` rows of `cols`
        // and `columns` `cols` slots.
        Isa::Avx512 => unsafe { avx512::nonzero_columns(values.as_ptr(), (rows, cols), columns) },
        _ => {
            for row in values.chunks_exact(cols) {
                for (bits, v) in columns.iter_mut().zip(row) {
                    *bits |= v.to_bits() << 1;
                }
            }
            // In place, without a branch: column `j` is read before position `kept <= j` is
            // written.
            let mut kept = 0;
            for j in 0..cols {
                let nonzero = columns[j] != 0;
                columns[kept] = j as u32;
                kept += usize::from(nonzero);
            }
            kept
        }
    };
    columns.truncate(kept);
}

/// An image's pixel bytes to features, `byte / 255` each, with the fastest code this CPU runs
/// (every one gives the same bits: [`pixels_to_features_with`]).
///
/// # Panics
/// If the lengths differ.
pub(crate) fn pixels_to_features(src: &[u8], dst: &mut [f32]) {
    // Only AVX2's FMA matters here: AVX-512 is no faster on 784 bytes.
    pixels_to_features_with(Isa::best().min(Isa::Avx2), src, dst);
}

/// [`super::elementwise::pixels_to_features`] with `isa`'s instructions.
///
/// # Panics
/// If the lengths differ, or this CPU does not run `isa`.
pub(crate) fn pixels_to_features_with(isa: Isa, src: &[u8], dst: &mut [f32]) {
    isa.require();
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (`require` above; AVX-512 implies them).
        Isa::Avx2 | Isa::Avx512 => unsafe { avx2::pixels_to_features(src, dst) },
        _ => super::elementwise::pixels_to_features::<Native>(src, dst),
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
    pub nonzero_rows: Option<Nonzero<'a>>,
    /// With `Some(scale)`, the input gradient goes through the backward of ReLU + dropout
    /// (`x` is that layer's output): `dh[i, r] = (dz W^T)[i, r] * scale` where `x[i, r] > 0`,
    /// else `+0.0`, and only those dot products are computed.
    pub relu_scale: Option<f32>,
    /// With momentum: the block's rows of the velocity, and the momentum.
    pub velocity: Option<(ArrayViewMut2<'b, f32>, f32)>,
}

/// Some of a matrix's rows: `indices[t] - offset`, strictly increasing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nonzero<'a> {
    /// Row indices, strictly increasing, all in `offset..offset + rows`.
    pub indices: &'a [u32],
    /// Subtracted from each index.
    pub offset: usize,
}

impl Nonzero<'_> {
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
            "{what}: the nonzero list must be strictly increasing indices in {start}..{end}"
        );
    }
}

/// The sizes of a product: `m` batch rows, `rows` rows of `W` (its inner dimension), `n`
/// columns of `W`.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub m: usize,
    pub rows: usize,
    pub n: usize,
}

#[track_caller]
fn checked(block: &Block<'_, '_>, dz: &ArrayView2<'_, f32>) -> Shape {
    let (rows, n) = block.w.dim();
    let m = dz.nrows();
    assert_eq!(dz.ncols(), n, "backward: dz columns");
    assert_eq!(block.x.dim(), (m, rows), "backward: x block");
    require_rows(&block.w, "backward: W");
    require_rows(dz, "backward: dz");
    require_rows(&block.x, "backward: x");
    if let Some(dh) = &block.dh {
        assert_eq!(dh.dim(), (m, rows), "backward: dh block");
        require_rows(dh, "backward: dh");
    }
    if let Some((v, _)) = &block.velocity {
        assert_eq!(v.dim(), (rows, n), "backward: velocity block");
        require_rows(v, "backward: velocity");
        assert!(
            block.nonzero_rows.is_none(),
            "backward: momentum updates every row"
        );
    }
    if let Some(update) = &block.nonzero_rows {
        update.check(rows, "backward");
    }
    Shape { m, rows, n }
}

/// For one block of `W`'s rows: `dh = dz W^T` (from the old `W`, when `dh` is given), then the
/// step of `W` (on the rows `block.nonzero_rows` lists, or all) with learning rate `lr`, with
/// `isa`'s kernels (on AVX-512, its own or portable's compiled for it: [`avx512_own_backward`]).
///
/// # Panics
/// If `isa` is not supported here, or shapes or layouts disagree (rows must be contiguous).
#[track_caller]
pub(crate) fn backward_rows(isa: Isa, mut block: Block<'_, '_>, dz: &ArrayView2<'_, f32>, lr: f32) {
    isa.require();
    let s = checked(&block, dz);
    if s.m == 0 || s.rows == 0 || s.n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let own = avx512_own_backward(s, block.velocity.is_some());
    let ld = |strides: &[isize]| strides[0] as usize;
    let w = (block.w.as_mut_ptr(), ld(block.w.strides()));
    let x = (block.x.as_ptr(), ld(block.x.strides()));
    let dzp = (dz.as_ptr(), ld(dz.strides()));
    let dh = block
        .dh
        .as_mut()
        .map(|d| ((d.as_mut_ptr(), ld(d.strides())), block.relu_scale));
    let step = match &mut block.velocity {
        None => Step::Sgd { lr },
        Some((v, mu)) => Step::Momentum {
            lr,
            mu: *mu,
            v: (v.as_mut_ptr(), ld(v.strides())),
        },
    };
    // SAFETY: `isa` is supported (checked above). `checked` proved every operand's shape, that rows
    // are contiguous with the leading dimensions read here and that the selected rows are in
    // the block, so the kernels' accesses `p + i * ld + j` stay inside the views; `w`, `dh` and
    // the velocity are exclusive borrows, `x` and `dz` shared ones, so nothing aliases.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if own => avx512::backward(s, dh, w, x, dzp, lr, block.nonzero_rows),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::backward_rows(s, dh, w, x, dzp, step, block.nonzero_rows),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::backward(s, dh, w, x, dzp, step, block.nonzero_rows),
            _ => portable::backward::<Native>(s, dh, w, x, dzp, step, block.nonzero_rows),
        }
    }
}

/// How [`forward`] runs a product. Any gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// The ISA's dense tiles over the nonzero list, or every row of `w`.
    Tiles,
    /// [`portable::forward`]'s dense tiles, which copy each panel of `w` while its first tile
    /// reads it: on AVX-512 compiled with AVX-512F; elsewhere the same as `Tiles`.
    PackedTiles,
    /// Each row of `x` over its own nonzeros ([`portable::forward_rows`], compiled for the
    /// ISA; it needs no list).
    Rows,
}

/// `z = x w` with `isa`'s kernels: `x: (m, k)`, `w: (k, n)`, `z: (m, n)`; with a `nonzero`,
/// only over those `k` (the columns of `x` that can be nonzero), by `product`'s method.
///
/// # Panics
/// If `isa` is not supported here, or shapes or layouts disagree (rows must be contiguous), or
/// the nonzero list is not strictly increasing below `k`.
#[track_caller]
pub(crate) fn forward(
    isa: Isa,
    mut z: ArrayViewMut2<'_, f32>,
    x: &ArrayView2<'_, f32>,
    w: &ArrayView2<'_, f32>,
    (nonzero, product): (Option<&[u32]>, Product),
) {
    isa.require();
    let ((m, k), n) = (x.dim(), w.ncols());
    assert_eq!(w.nrows(), k, "forward: w rows");
    assert_eq!(z.dim(), (m, n), "forward: z shape");
    require_rows(&z, "forward: z");
    require_rows(x, "forward: x");
    require_rows(w, "forward: w");
    if let Some(indices) = nonzero {
        Nonzero { indices, offset: 0 }.check(k, "forward");
    }
    if m == 0 || n == 0 {
        return;
    }
    if nonzero.map_or(k, <[u32]>::len) == 0 {
        z.fill(0.0);
        return;
    }
    let shape = Shape { m, rows: k, n };
    let zp = (z.as_mut_ptr(), z.strides()[0] as usize);
    let xp = (x.as_ptr(), x.strides()[0] as usize);
    let wp = (w.as_ptr(), w.strides()[0] as usize);
    let rows = match nonzero {
        None => Rows::All(k),
        Some(indices) => Rows::Nonzero(Nonzero { indices, offset: 0 }),
    };
    // SAFETY: `isa` is supported (checked above); the shapes, contiguous rows and the nonzero list
    // (below `k`) were checked, so every access `p + i * ld + j` stays inside its view (`z` has
    // `m` rows of `n`, `x` `m` rows of `k`, `w` `k` rows of `n`; prefetches use wrapping
    // addresses and never dereference). `z` is an exclusive borrow, so it aliases neither `x`
    // nor `w`.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => match product {
                Product::Rows => avx512::forward_rows(shape, zp, xp, wp),
                Product::PackedTiles => avx512::forward_packed(shape, zp, xp, wp, rows),
                Product::Tiles => avx512::forward(shape, zp, xp, wp, nonzero),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if product == Product::Rows => avx2::forward_rows(shape, zp, xp, wp),
            _ if product == Product::Rows => {
                portable::forward_rows::<Native, portable::Scalar>(shape, zp, xp, wp);
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::forward(shape, zp, xp, wp, rows),
            _ => portable::forward::<Native, 16>(shape, zp, xp, wp, rows),
        }
    }
}

/// Whether AVX-512's own backward kernels ([`avx512::backward`]) run a block of `s.m` batch
/// rows, rather than [`portable::backward`] compiled with AVX-512F
/// ([`avx512::backward_rows`]). Its own sum a batch in one block and know no velocity; they
/// win on the first layer's update (a pixel at a time over the images it is ink in), on the
/// output layer (16 rows of `W` across the lanes), and on a hidden layer's gradient through
/// ReLU + dropout (see [`avx512_fused_backward`]). The rule `bench --sparsity` counts by too.
pub(crate) fn avx512_own_backward(s: Shape, momentum: bool) -> bool {
    s.m <= portable::BATCH_BLOCK && !momentum
}

/// Whether AVX-512's own backward of a hidden layer through ReLU + dropout with `n` outputs
/// runs in one pass per row of `W` for both products, the input gradient's dot products for
/// every nonzero input (the positive ones kept), rather than the dot products where the input
/// is positive, then the update: from [`AVX512_FUSED_MIN_COLS`]. The rule `bench --sparsity`
/// counts by too.
pub(crate) fn avx512_fused_backward(n: usize) -> bool {
    n >= AVX512_FUSED_MIN_COLS
}

/// Outputs from which a hidden layer's backward on AVX-512 reads each row of `W` once for both
/// products. Per layer (32 rows), Intel Xeon (AVX-512), interleaved: 512 columns 101-103 µs
/// against 122-193 in two passes and 107-113 for portable's one-pass row walk compiled for
/// AVX-512, 1024 337-347 against 499-507 and 384-400, 2048 1.41-1.45 ms against 2.21 and
/// 1.58-1.61; at 256 30-31 µs in two passes against 34-35, at 128 13 against 15-16
/// (`docs/performance.md`).
pub(crate) const AVX512_FUSED_MIN_COLS: usize = 512;

/// The number of nonzero elements of `x` (NaN counts as nonzero).
pub(crate) fn nonzeros(x: &ArrayView2<'_, f32>) -> usize {
    x.rows()
        .into_iter()
        .map(|row| row.iter().map(|&v| usize::from(v != 0.0)).sum::<usize>())
        .sum()
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

/// `view` itself when the kernels can address it ([`rows_contiguous`]: standard layout, or
/// rows further apart than their length, as a column block of a wider matrix), else a copy in
/// standard layout.
pub(crate) fn with_rows<'a>(
    view: &'a ArrayView2<'_, f32>,
) -> ndarray::CowArray<'a, f32, ndarray::Ix2> {
    if rows_contiguous(view) {
        view.view().into()
    } else {
        view.as_standard_layout()
    }
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
