//! relumax's arithmetic: the definition of every product of a training step, and its portable
//! implementation (what aarch64 and every CPU without AVX2 + FMA run; compiled again with AVX2 +
//! FMA enabled, it is also the [`super::avx2`] path).
//!
//! Each output element has one fixed sequence of IEEE single-precision operations, whatever the
//! tiling, the block a thread takes, or the CPU (`fma` is the fused multiply-add, rounded once):
//! - forward, `z = x W`, `(m, k) x (k, n)`: `z[i, j]` is the chain `acc = fma(x[i, k], w[k, j],
//!   acc)` over `k` in increasing order, from `acc = +0`;
//! - input gradient, `dh = dz W^T`, `(m, n) x (n, k)`: `dz[i, c] * w[r, c]` summed with `fma`
//!   into 16 lanes (lane `c % 16`, `c` increasing, each from `+0`), then the lanes reduced by
//!   [`reduce`]'s fixed tree; fused with the backward of ReLU + dropout, `dh[i, r] =
//!   reduce(..) * scale` where `x[i, r] > 0` and `+0` elsewhere (NaN is not positive);
//! - weight gradient, `g = x^T dz`: for each block of [`BATCH_BLOCK`] consecutive batch rows,
//!   the chain `p = fma(x[i, r], dz[i, c], p)` over its rows in order from `+0`; one block gives
//!   `g = p`, more give `g = f32(p_0 + p_1 + ...)`, the partials added in order in f64 (so that
//!   a batch of 60,000 rounds as accurately as one of 64);
//! - SGD update: `w = fma(-lr, g, w)`, each weight rounded once per step; with momentum `mu`,
//!   `v = fma(mu, v, g)`, then `w = fma(-lr, v, w)`.
//!
//! The element-wise kernels ([`super::elementwise`]) complete the definition: bias sums, ReLU,
//! dropout scaling, softmax with relumax's own `exp` and `log` ([`super::math`]).
//!
//! A zero term leaves a fused multiply-add chain exactly as it was (unless the chain stands at
//! `-0`, which only a sum that underflows to zero produces, or a factor is infinite or NaN), so
//! an implementation may skip the terms whose `x` is zero: the first layer's pixel columns that
//! are zero throughout the batch, a hidden layer's inputs zeroed by ReLU and dropout.
//!
//! The functions here address operands through raw pointers, so that threads can own disjoint
//! column blocks of one matrix; they share the contract of [`super::avx512`] minus the CPU
//! feature: each `(pointer, leading dimension)` pair addresses a matrix whose rows the function
//! reads or writes (`p + i * ld + j` for the rows and columns its shape arguments name) inside
//! one live allocation, written operands aliasing nothing else. [`super::operands`] establishes
//! it; each `// SAFETY:` below refers to this contract.

#![allow(unsafe_code)]

use super::operands::{Nonzero, Shape};

/// Lanes of the input gradient's partial sums (one AVX-512 register of `f32`).
pub(crate) const LANES: usize = 16;

/// Batch rows per partial sum of the weight and bias gradients.
pub const BATCH_BLOCK: usize = 64;

/// The fused multiply-add `a * b + c`, rounded once: the hardware instruction where the code is
/// compiled with it, else an exact software emulation (the same bits).
pub(crate) trait Fma: Copy {
    /// Whether [`Fma::fma`] is one instruction: code that runs more multiply-adds to run them
    /// as vectors ([`NARROW`]) pays off only then.
    const INSTRUCTION: bool;

    /// `a * b + c`, rounded once.
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// `f32::mul_add`: one instruction on aarch64 and inside `#[target_feature(enable = "fma")]`.
#[derive(Clone, Copy)]
pub(crate) struct Hardware;

impl Fma for Hardware {
    const INSTRUCTION: bool = true;

    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// The pure-Rust `fmaf` of the `libm` crate: exact without an FMA unit, and no call into the
/// platform's C library (whose fallback changes the rounding mode for every call).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Software;

impl Fma for Software {
    const INSTRUCTION: bool = false;

    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        libm::fmaf(a, b, c)
    }
}

/// The `Fma` of the portable path: the instruction where the target always has one.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) type Native = Hardware;
/// The `Fma` of the portable path: x86-64's baseline has no FMA unit.
#[cfg(target_arch = "x86_64")]
pub(crate) type Native = Software;

/// The fixed reduction tree of the 16 lanes: halves, then quarters, then pairs.
#[inline(always)]
pub(crate) fn reduce(v: &[f32; LANES]) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|l| v[l] + v[l + 8]);
    let s4: [f32; 4] = std::array::from_fn(|l| s8[l] + s8[l + 4]);
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// The rows of `w` (columns of `x`) a product visits: all, or an ascending list.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// `0..n`.
    All(usize),
    /// `indices[t] - offset`.
    Nonzero(Nonzero<'a>),
}

impl Rows<'_> {
    #[inline(always)]
    fn len(self) -> usize {
        match self {
            Rows::All(n) => n,
            Rows::Nonzero(s) => s.indices.len(),
        }
    }

    #[inline(always)]
    fn at(self, t: usize) -> usize {
        match self {
            Rows::All(_) => t,
            Rows::Nonzero(s) => s.indices[t] as usize - s.offset,
        }
    }
}

/// Loads `P` consecutive values.
///
/// # Safety
/// `p..p + P` is readable.
#[inline(always)]
unsafe fn load<const P: usize>(p: *const f32) -> [f32; P] {
    // SAFETY: this function's contract.
    unsafe { p.cast::<[f32; P]>().read_unaligned() }
}

/// Stores `P` consecutive values.
///
/// # Safety
/// `p..p + P` is writable.
#[inline(always)]
unsafe fn store<const P: usize>(p: *mut f32, v: [f32; P]) {
    // SAFETY: this function's contract.
    unsafe { p.cast::<[f32; P]>().write_unaligned(v) }
}

/// A stack buffer starting on a cache line: a vector load from a misaligned buffer splits
/// across two lines.
#[repr(C, align(64))]
pub(crate) struct Aligned<T>(pub(crate) T);

/// The cache level of [`hint`]: L2.
const T1: i32 = 2;

/// Asks the CPU to bring the cache line at `p` into cache level `LEVEL`: a hint, never
/// dereferenced (x86-64 only; elsewhere nothing).
#[inline(always)]
fn hint<const LEVEL: i32>(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever the address;
    // SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<LEVEL>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Rows of `x` per forward tile (with 16 columns: 12 accumulators of 8 lanes).
const FR: usize = 6;
/// Rows of `w` per pass of the forward product (its column panel stays in L1).
const FK: usize = 64;
/// Rows of `x` per group of the forward product (their slice of `x` stays in L2).
const FM: usize = 192;

/// Where a forward tile reads its rows of `w`: [`STRIDED`] from `w` itself, [`PACK`] from `w`
/// while copying them to the panel's contiguous buffer, or [`PACKED`] from that buffer. Rows of
/// `w` a power of two of bytes apart share a few L1 sets, so a panel's tiles after the first
/// read the copy (a panel of 256 rows of 2048 columns thrashed one set of 8 lines).
const STRIDED: u8 = 0;
const PACK: u8 = 1;
const PACKED: u8 = 2;

/// `z[0..R][..P] (+)= x[0..R][k] w[k][..P]` over the rows `k` at positions `t0..t1` of `rows`;
/// `pack` holds row `t - t0` of the panel at `pack + (t - t0) P` (see [`PACK`]).
#[inline(always)]
unsafe fn f_tile<F: Fma, const R: usize, const P: usize, const MODE: u8>(
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    (rows, t0, t1): (Rows<'_>, usize, usize),
    first: bool,
    pack: *mut f32,
) {
    // SAFETY: the module's contract; `pack` holds `(t1 - t0) P` floats when `MODE` is not
    // `STRIDED`.
    unsafe {
        let mut acc = [[0.0f32; P]; R];
        if !first {
            for (r, a) in acc.iter_mut().enumerate() {
                *a = load(z.0.add(r * z.1));
            }
        }
        for t in t0..t1 {
            let k = rows.at(t);
            let wv: [f32; P] = if MODE == PACKED {
                load(pack.add((t - t0) * P))
            } else {
                // This panel's line in the next pass of rows (into L2: it is used after
                // every panel of this pass), and this row's line of the next panel (into L1:
                // used by that panel's first tile). A panel's rows are a whole row of `w`
                // apart, which the hardware prefetchers do not follow.
                let ahead = rows.at((t + FK).min(rows.len() - 1));
                hint::<T1>(w.0.wrapping_add(ahead * w.1));
                hint::<T1>(w.0.wrapping_add(k * w.1 + P));
                load(w.0.add(k * w.1))
            };
            if MODE == PACK {
                store(pack.add((t - t0) * P), wv);
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let b = *x.0.add(r * x.1 + k);
                for (a, &wl) in a.iter_mut().zip(&wv) {
                    *a = F::fma(b, wl, *a);
                }
            }
        }
        for (r, &a) in acc.iter().enumerate() {
            store(z.0.add(r * z.1), a);
        }
    }
}

/// [`f_tile`] for the last `m < FR` rows of a panel.
#[inline(always)]
unsafe fn f_rest<F: Fma, const P: usize, const MODE: u8>(
    m: usize,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    (ks, first, pack): ((Rows<'_>, usize, usize), bool, *mut f32),
) {
    // SAFETY: the module's contract.
    unsafe {
        match m {
            0 => {}
            1 => f_tile::<F, 1, P, MODE>(z, x, w, ks, first, pack),
            2 => f_tile::<F, 2, P, MODE>(z, x, w, ks, first, pack),
            3 => f_tile::<F, 3, P, MODE>(z, x, w, ks, first, pack),
            4 => f_tile::<F, 4, P, MODE>(z, x, w, ks, first, pack),
            _ => f_tile::<F, 5, P, MODE>(z, x, w, ks, first, pack),
        }
    }
}

/// One panel of `P` columns of `z`, rows `0..m`, over the positions `t0..t1` of `rows`.
#[inline(always)]
unsafe fn f_panel<F: Fma, const P: usize>(
    m: usize,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    ks: (Rows<'_>, usize, usize),
) {
    // SAFETY: the module's contract; `buffer` holds the `FK` rows of `P` that a pass has at
    // most.
    unsafe {
        let first = ks.1 == 0;
        let at = |i: usize| ((z.0.add(i * z.1), z.1), (x.0.add(i * x.1), x.1));
        if m <= FR {
            let (zi, xi) = at(0);
            return f_rest::<F, P, STRIDED>(m, zi, xi, w, (ks, first, std::ptr::null_mut()));
        }
        let mut buffer = std::mem::MaybeUninit::<Aligned<[[f32; P]; FK]>>::uninit();
        let pack = buffer.as_mut_ptr().cast::<f32>();
        let (zi, xi) = at(0);
        f_tile::<F, FR, P, PACK>(zi, xi, w, ks, first, pack);
        let mut i = FR;
        while i + FR <= m {
            let (zi, xi) = at(i);
            f_tile::<F, FR, P, PACKED>(zi, xi, w, ks, first, pack);
            i += FR;
        }
        let (zi, xi) = at(i);
        f_rest::<F, P, PACKED>(m - i, zi, xi, w, (ks, first, pack));
    }
}

/// `z = x w`, `(m, k) x (k, n)`, over the `rows` of `w` (all `k`, or the nonzero columns of `x`),
/// in panels of `PANEL` columns (16; 64 on AVX-512), then narrower ones for the rest.
#[inline(always)]
pub(crate) unsafe fn forward<F: Fma, const PANEL: usize>(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    rows: Rows<'_>,
) {
    // SAFETY: the module's contract.
    unsafe {
        let k = rows.len();
        for i0 in (0..s.m).step_by(FM) {
            let m = (s.m - i0).min(FM);
            let (z, x) = ((z.0.add(i0 * z.1), z.1), (x.0.add(i0 * x.1), x.1));
            for k0 in (0..k).step_by(FK) {
                let ks = (rows, k0, (k0 + FK).min(k));
                let mut c = 0;
                while c + PANEL <= s.n {
                    f_panel::<F, PANEL>(m, (z.0.add(c), z.1), x, (w.0.add(c), w.1), ks);
                    c += PANEL;
                }
                for p in [32, 16, 8, 4, 2, 1] {
                    if p < PANEL && s.n - c >= p {
                        let (zc, wc) = ((z.0.add(c), z.1), (w.0.add(c), w.1));
                        match p {
                            32 => f_panel::<F, 32>(m, zc, x, wc, ks),
                            16 => f_panel::<F, 16>(m, zc, x, wc, ks),
                            8 => f_panel::<F, 8>(m, zc, x, wc, ks),
                            4 => f_panel::<F, 4>(m, zc, x, wc, ks),
                            2 => f_panel::<F, 2>(m, zc, x, wc, ks),
                            _ => f_panel::<F, 1>(m, zc, x, wc, ks),
                        }
                        c += p;
                    }
                }
            }
            if k == 0 {
                for i in 0..m {
                    std::ptr::write_bytes(z.0.add(i * z.1), 0, s.n);
                }
            }
        }
    }
}

/// Inputs per pass of [`forward_rows`]: the nonzero lists of a pass live on the stack, and a
/// column tile of that many rows of `w` stays in L2 even when its rows are a power of two of
/// bytes apart (measurements in `docs/performance.md`).
pub(crate) const RK: usize = 128;
/// Columns per register tile of [`forward_rows`] (8 AVX2 registers).
const RP: usize = 64;
/// `z[i][..P] (+)= sum_t values[t] w[slots[t]][..P]`: one row of `x` over its nonzero
/// `values` in a pass, `w` the pass's packed rows.
#[inline(always)]
unsafe fn r_tile<F: Fma, const P: usize>(
    z: *mut f32,
    w: *const f32,
    (slots, values): (&[u32], &[f32]),
    first: bool,
) {
    // SAFETY: the module's contract; `slots` are rows of the packed `w`.
    unsafe {
        let mut acc: [f32; P] = if first { [0.0; P] } else { load(z) };
        for (&slot, &b) in slots.iter().zip(values) {
            let wv: [f32; P] = load(w.add(slot as usize * P));
            for (a, &wl) in acc.iter_mut().zip(&wv) {
                *a = F::fma(b, wl, *a);
            }
        }
        store(z, acc);
    }
}

/// Rows of `x` per group of [`forward_rows`]: their nonzero lists (on the stack, 128 KiB) are
/// built once per pass, then each column tile runs every row of the group, so the tile's
/// columns of `w`, copied once, serve all of them. A training batch (32 rows) is one group;
/// evaluation's chunks of 1000 rows copy each tile 8 times instead of 32 (2x2048 evaluation
/// 17% faster than with groups of 32, `docs/performance.md`).
const RG: usize = 128;

/// The nonzero lists of a group of [`forward_rows`] in one pass of inputs `k0..k0 + RK`.
struct Group {
    /// The first batch row of the group.
    i0: usize,
    /// Rows in the group.
    rows: usize,
    /// The first input of the pass.
    k0: usize,
    /// The inputs of the pass nonzero in some row of the group (relative to `k0`), in order:
    /// the rows of `w` a tile packs.
    used: [u32; RK],
    used_len: usize,
    /// Row `g`'s nonzero values in the pass, `values[g][..lens[g]]`, and the position of each
    /// one's input in `used`: entries past a row's length are never read (left
    /// uninitialised).
    values: *mut [f32; RK],
    slots: *mut [u32; RK],
    lens: [usize; RG],
}

impl Group {
    /// The lists of rows `i0..i0 + rows` of `x` over the pass `k0..k1`.
    ///
    /// # Safety
    /// The rows and inputs are inside `x`.
    #[inline(always)]
    unsafe fn build<L: Lister>(
        &mut self,
        x: (*const f32, usize),
        (i0, rows): (usize, usize),
        k0: usize,
        k1: usize,
    ) {
        // SAFETY: this function's contract. Every loop is branch-free: which inputs are zero
        // is random. NaN counts as nonzero.
        unsafe {
            (self.i0, self.rows, self.k0) = (i0, rows, k0);
            let pass = k1 - k0;
            let mut any = [0u32; RK];
            for g in 0..rows {
                let xi = x.0.add((i0 + g) * x.1 + k0);
                for (r, a) in any.iter_mut().enumerate().take(pass) {
                    *a |= (*xi.add(r)).to_bits() << 1;
                }
            }
            let mut slot = [0u32; RK];
            self.used_len = 0;
            for r in 0..pass {
                slot[r] = self.used_len as u32;
                self.used[self.used_len] = r as u32;
                self.used_len += usize::from(any[r] != 0);
            }
            for g in 0..rows {
                let xi = x.0.add((i0 + g) * x.1 + k0);
                let out = (self.values.add(g).cast(), self.slots.add(g).cast());
                self.lens[g] = L::nonzero(xi, (&slot, pass), out);
            }
        }
    }
}

/// How [`forward_rows`] lists a row's nonzero inputs: the portable loop ([`Scalar`]) or an
/// ISA's vector code. Which values are listed, and in which order, is the same.
pub(crate) trait Lister: Copy {
    /// Writes the nonzero values of `x[..pass]` in order (NaN counts as nonzero, `-0` as zero)
    /// to `values`, and `slot[r]` of each one's input `r` to `slots`; returns how many.
    ///
    /// # Safety
    /// `x[..pass]` is readable, `pass <= RK`, and `values` and `slots` hold [`RK`] elements
    /// each (an implementation may write past the listed ones, below `RK`).
    unsafe fn nonzero(x: *const f32, slot: (&[u32; RK], usize), out: (*mut f32, *mut u32))
    -> usize;
}

/// The portable [`Lister`]: one element at a time, without a branch (which inputs are zero is
/// random).
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Scalar {
    /// [`Lister::nonzero`] of the inputs `r0..pass`, after the `len <= r0` listed before them;
    /// returns the new length.
    ///
    /// # Safety
    /// As [`Lister::nonzero`].
    #[inline(always)]
    pub(crate) unsafe fn list_from(
        x: *const f32,
        (slot, pass): (&[u32; RK], usize),
        (values, slots): (*mut f32, *mut u32),
        (r0, mut len): (usize, usize),
    ) -> usize {
        // SAFETY: the contract of `Lister::nonzero`; `len <= r < pass`.
        unsafe {
            for (r, &slot) in slot.iter().enumerate().take(pass).skip(r0) {
                let v = *x.add(r);
                *values.add(len) = v;
                *slots.add(len) = slot;
                len += usize::from(v != 0.0);
            }
            len
        }
    }
}

impl Lister for Scalar {
    #[inline(always)]
    unsafe fn nonzero(
        x: *const f32,
        slot: (&[u32; RK], usize),
        out: (*mut f32, *mut u32),
    ) -> usize {
        // SAFETY: the trait's contract.
        unsafe { Scalar::list_from(x, slot, out, (0, 0)) }
    }
}

/// Copies `P` columns of the rows `used` of `w` (from row `k0`) to `pack`, one after the
/// other, while bringing the same rows `next` columns further into L2 when `next` is given.
#[inline(always)]
unsafe fn r_pack<const P: usize>(
    w: (*const f32, usize),
    group: &Group,
    pack: *mut f32,
    next: Option<usize>,
) {
    // SAFETY: the module's contract; `pack` holds `RK * RP >= used_len * P` floats;
    // prefetches use wrapping addresses and never dereference.
    unsafe {
        for (u, &r) in group.used[..group.used_len].iter().enumerate() {
            let row = w.0.add((group.k0 + r as usize) * w.1);
            if let Some(nc) = next {
                for line in (0..RP).step_by(16) {
                    hint::<T1>(row.wrapping_add(nc + line));
                }
            }
            store::<P>(pack.add(u * P), load(row));
        }
    }
}

/// One column tile of [`forward_rows`], `p` columns from `c`, for every row of the group.
/// The tile's rows of `w` that some row of the group needs are first copied to `pack`,
/// contiguous: read in place, rows a power of two of bytes apart share a few cache sets (a
/// tile of 128 rows of 2048 columns did not stay in L2), and the first layer skips the pixels
/// no image of the group has. Meanwhile, the same rows at the next tile's columns `next` are
/// brought into L2: which rows a sample needs follows no pattern a prefetcher could see.
#[inline(always)]
unsafe fn r_block<F: Fma>(
    z: (*mut f32, usize),
    w: (*const f32, usize),
    (group, pack): (&Group, *mut f32),
    (c, p, first): (usize, usize, bool),
    next: Option<usize>,
) {
    // SAFETY: the module's contract; `pack` holds `RK * RP` floats.
    unsafe {
        let wc = (w.0.add(c), w.1);
        // The next tile's columns, from this tile's (always to its right).
        let next = next.map(|nc| nc - c);
        match p {
            RP => r_pack::<RP>(wc, group, pack, next),
            32 => r_pack::<32>(wc, group, pack, next),
            16 => r_pack::<16>(wc, group, pack, next),
            8 => r_pack::<8>(wc, group, pack, next),
            4 => r_pack::<4>(wc, group, pack, next),
            2 => r_pack::<2>(wc, group, pack, next),
            _ => r_pack::<1>(wc, group, pack, next),
        }
        for g in 0..group.rows {
            let zi = z.0.add((group.i0 + g) * z.1 + c);
            let len = group.lens[g];
            let lists = (
                std::slice::from_raw_parts(group.slots.add(g).cast::<u32>(), len),
                std::slice::from_raw_parts(group.values.add(g).cast::<f32>(), len),
            );
            let w = pack.cast_const();
            match p {
                RP => r_tile::<F, RP>(zi, w, lists, first),
                32 => r_tile::<F, 32>(zi, w, lists, first),
                16 => r_tile::<F, 16>(zi, w, lists, first),
                8 => r_tile::<F, 8>(zi, w, lists, first),
                4 => r_tile::<F, 4>(zi, w, lists, first),
                2 => r_tile::<F, 2>(zi, w, lists, first),
                _ => r_tile::<F, 1>(zi, w, lists, first),
            }
        }
    }
}

/// The column tiles of [`forward_rows`], `(first column, width)`: [`RP`] wide, then one of
/// each narrower power of two the remainder needs.
fn column_tiles(n: usize) -> impl Iterator<Item = (usize, usize)> {
    let full = n / RP;
    let mut c = full * RP;
    let rest = [32, 16, 8, 4, 2, 1].into_iter().filter_map(move |p| {
        let tile = (c, p);
        (n - c >= p).then(|| {
            c += p;
            tile
        })
    });
    (0..full).map(|t| (t * RP, RP)).chain(rest)
}

/// `z = x w` row by row, each row of `x` over its own nonzero inputs only: the same bits as
/// [`forward`] (a zero term leaves a chain as it was), a quarter of the work when `x` is a
/// hidden layer's output after ReLU and dropout, a fifth for MNIST images.
#[inline(always)]
pub(crate) unsafe fn forward_rows<F: Fma, L: Lister>(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
) {
    // SAFETY: the module's contract.
    unsafe {
        let mut values = std::mem::MaybeUninit::<Aligned<[[f32; RK]; RG]>>::uninit();
        let mut slots = std::mem::MaybeUninit::<Aligned<[[u32; RK]; RG]>>::uninit();
        let group = &mut Group {
            i0: 0,
            rows: 0,
            k0: 0,
            used: [0; RK],
            used_len: 0,
            values: values.as_mut_ptr().cast(),
            slots: slots.as_mut_ptr().cast(),
            lens: [0; RG],
        };
        let mut pack = std::mem::MaybeUninit::<Aligned<[f32; RK * RP]>>::uninit();
        let pack = pack.as_mut_ptr().cast::<f32>();
        for i0 in (0..s.m).step_by(RG) {
            for k0 in (0..s.rows).step_by(RK) {
                group.build::<L>(x, (i0, (s.m - i0).min(RG)), k0, (k0 + RK).min(s.rows));
                let mut tiles = column_tiles(s.n).peekable();
                while let Some((c, p)) = tiles.next() {
                    let next = tiles.peek().map(|&(nc, _)| nc);
                    r_block::<F>(z, w, (group, pack), (c, p, k0 == 0), next);
                }
            }
        }
    }
}

/// `dh[i_g] = reduce(sum_c dz[i_g, c] w[c]) * scale` for the `G` batch rows `rows` and one row
/// `w` of `W` (`dh` points to its column).
#[inline(always)]
unsafe fn dots<F: Fma, const G: usize>(
    dh: (*mut f32, usize),
    dz: (*const f32, usize),
    w: *const f32,
    n: usize,
    scale: Option<f32>,
    rows: [usize; G],
) {
    // SAFETY: the module's contract.
    unsafe {
        let mut acc = [[0.0f32; LANES]; G];
        let mut c = 0;
        while c + LANES <= n {
            let wv: [f32; LANES] = load(w.add(c));
            for (a, &i) in acc.iter_mut().zip(&rows) {
                let zv: [f32; LANES] = load(dz.0.add(i * dz.1 + c));
                for l in 0..LANES {
                    a[l] = F::fma(zv[l], wv[l], a[l]);
                }
            }
            c += LANES;
        }
        for l in 0..n - c {
            for (a, &i) in acc.iter_mut().zip(&rows) {
                a[l] = F::fma(*dz.0.add(i * dz.1 + c + l), *w.add(c + l), a[l]);
            }
        }
        for (a, &i) in acc.iter().zip(&rows) {
            let sum = reduce(a);
            *dh.0.add(i * dh.1) = match scale {
                Some(scale) => sum * scale,
                None => sum,
            };
        }
    }
}

/// Dot products per group sharing each load of a row of `W`.
const DG: usize = 4;

/// Column `r` of `dh` for row `w` of `W`: every batch row, or with `relu = Some((x, scale))`
/// only those where `x[i] > 0` (the others set to `+0`).
#[inline(always)]
unsafe fn dh_column<F: Fma>(
    dh: (*mut f32, usize),
    dz: (*const f32, usize),
    w: *const f32,
    (m, n): (usize, usize),
    relu: Option<(Inputs, f32)>,
) {
    // SAFETY: the module's contract.
    unsafe {
        let scale = relu.map(|(_, s)| s);
        // The batch rows to compute, listed without a branch per row (which inputs are
        // positive is random), a chunk of rows at a time; the others' gradient is `+0`.
        let mut list = [0u32; ACTIVE_ON_STACK];
        for i0 in (0..m).step_by(ACTIVE_ON_STACK) {
            let i1 = (i0 + ACTIVE_ON_STACK).min(m);
            let mut len = 0;
            for i in i0..i1 {
                // NaN is not positive: its gradient is zero, as an inactive unit's.
                let keep = relu.is_none_or(|(x, _)| x.at(i, 0) > 0.0);
                *dh.0.add(i * dh.1) = 0.0;
                *list.as_mut_ptr().add(len) = i as u32;
                len += usize::from(keep);
            }
            let mut groups = list[..len].chunks_exact(DG);
            for g in &mut groups {
                let rows = std::array::from_fn(|j| g[j] as usize);
                dots::<F, DG>(dh, dz, w, n, scale, rows);
            }
            match *groups.remainder() {
                [] => {}
                [a] => dots::<F, 1>(dh, dz, w, n, scale, [a as usize]),
                [a, b] => dots::<F, 2>(dh, dz, w, n, scale, [a as usize, b as usize]),
                [a, b, c, ..] => {
                    dots::<F, 3>(dh, dz, w, n, scale, [a as usize, b as usize, c as usize]);
                }
            }
        }
    }
}

/// `W` rows per update tile of the first layer (pixels, its rows of `W`, are nonzero in
/// runs across a batch, so 4 neighbours' rows of the batch are hardly more than one's).
pub(crate) const UR_PIXELS: usize = 4;

/// The step of one weight (or weight register) from its gradient `g`.
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// `w = fma(-lr, g, w)`.
    Sgd {
        /// The learning rate.
        lr: f32,
    },
    /// `v = fma(mu, v, g)`, then `w = fma(-lr, v, w)`; `v` addresses the velocity rows of the
    /// block, as `w` does.
    Momentum {
        /// The learning rate.
        lr: f32,
        /// The momentum.
        mu: f32,
        /// The velocity, laid out as the block of `W`.
        v: (*mut f32, usize),
    },
}

impl Step {
    /// The step of the `P` weights `w[r, c..c + P]`, whose values are `old`, from their
    /// gradient `g` (and of the velocity at the same place).
    ///
    /// # Safety
    /// The weights are inside the block.
    #[inline(always)]
    unsafe fn tile<F: Fma, const P: usize>(
        self,
        w: (*mut f32, usize),
        (r, c): (usize, usize),
        old: [f32; P],
        g: &[f32; P],
    ) {
        // SAFETY: this function's contract.
        unsafe {
            let new: [f32; P] = match self {
                Step::Sgd { lr } => std::array::from_fn(|l| F::fma(-lr, g[l], old[l])),
                Step::Momentum { lr, mu, v } => {
                    let pv = v.0.add(r * v.1 + c);
                    let vel: [f32; P] = load(pv);
                    let vel: [f32; P] = std::array::from_fn(|l| F::fma(mu, vel[l], g[l]));
                    store(pv, vel);
                    std::array::from_fn(|l| F::fma(-lr, vel[l], old[l]))
                }
            };
            store(w.0.add(r * w.1 + c), new);
        }
    }

    /// The step of the rows of a block from its row `r0` on (the velocity moves with `w`).
    ///
    /// # Safety
    /// `r0` is a row of the block.
    #[inline(always)]
    unsafe fn rows_from(self, r0: usize) -> Step {
        match self {
            Step::Sgd { lr } => Step::Sgd { lr },
            Step::Momentum { lr, mu, v } => Step::Momentum {
                lr,
                mu,
                // SAFETY: this function's contract.
                v: (unsafe { v.0.add(r0 * v.1) }, v.1),
            },
        }
    }
}

/// The update of `R` rows `r` of `w` over `P` columns from `c`: the gradient over the batch
/// rows in `active` (the rows where one of their inputs is nonzero), in blocks of
/// [`BATCH_BLOCK`].
#[inline(always)]
unsafe fn u_tile<F: Fma, const R: usize, const P: usize>(
    w: (*mut f32, usize),
    x: Inputs,
    dz: (*const f32, usize),
    (rows, c): ([usize; R], usize),
    active: &[u32],
    step: Step,
) {
    // SAFETY: the module's contract; `active` holds batch rows of `x` and `dz`.
    unsafe {
        let mut g = [[0.0f32; P]; R];
        // The f64 sum of the blocks' partials, from the second block on.
        let mut wide = Partials::<P, R>(None);
        // Each row's inputs, addressed once: per batch row, one offset serves all `R`.
        let columns: [Inputs; R] = std::array::from_fn(|j| x.offset(rows[j]));
        let mut t = 0;
        while t < active.len() {
            let block = active[t] as usize / BATCH_BLOCK;
            let mut acc = [[0.0f32; P]; R];
            while t < active.len() && active[t] as usize / BATCH_BLOCK == block {
                let i = active[t] as usize;
                let zv: [f32; P] = load(dz.0.add(i * dz.1 + c));
                for (a, column) in acc.iter_mut().zip(&columns) {
                    let b = column.at(i, 0);
                    for (a, &z) in a.iter_mut().zip(&zv) {
                        *a = F::fma(b, z, *a);
                    }
                }
                t += 1;
            }
            // Every active row in the first block: one partial, `g = p` (the f64 sum of one
            // partial is that partial).
            if wide.0.is_none() && t == active.len() {
                g = acc;
                break;
            }
            wide.add(&acc);
        }
        let g = wide.gradient(g);
        for (gr, &r) in g.iter().zip(&rows) {
            let old: [f32; P] = load(w.0.add(r * w.1 + c));
            step.tile::<F, P>(w, (r, c), old, gr);
        }
    }
}

/// The f64 sums of a gradient's block partials, `R` sets of `P` (the definition: a batch of
/// more than [`BATCH_BLOCK`] rows adds its blocks' partials in order in f64); `None` until the
/// first is added.
struct Partials<const P: usize, const R: usize>(Option<[[f64; P]; R]>);

impl<const P: usize, const R: usize> Partials<P, R> {
    /// Adds a block's partials.
    #[inline(always)]
    fn add(&mut self, acc: &[[f32; P]; R]) {
        let sum = self.0.get_or_insert([[0.0; P]; R]);
        for (sr, ar) in sum.iter_mut().zip(acc) {
            for (s, &a) in sr.iter_mut().zip(ar) {
                *s += f64::from(a);
            }
        }
    }

    /// The gradient: the sums rounded once, or `one` (a single block's partial) if none was
    /// added.
    #[inline(always)]
    fn gradient(self, one: [[f32; P]; R]) -> [[f32; P]; R] {
        match self.0 {
            Some(sum) => sum.map(|row| row.map(|s| s as f32)),
            None => one,
        }
    }
}

/// [`u_tile`] across all `n` columns.
#[inline(always)]
unsafe fn u_rows<F: Fma, const R: usize>(
    w: (*mut f32, usize),
    x: Inputs,
    dz: (*const f32, usize),
    (rows, n): ([usize; R], usize),
    active: &[u32],
    step: Step,
) {
    // SAFETY: the module's contract.
    unsafe {
        let mut c = 0;
        // One row: 8 AVX2 registers of sums, each batch row's 8 loads of `dz` feeding 8
        // multiply-adds.
        if R == 1 {
            while c + 64 <= n {
                u_tile::<F, R, 64>(w, x, dz, (rows, c), active, step);
                c += 64;
            }
        }
        // Several rows: two AVX2 registers of a row per tile, 8 sums for 4 rows, each batch
        // row's 2 loads of `dz` and 4 of `x` feeding 8 multiply-adds. (Three registers of 4
        // rows, 12 sums, left too few registers: the compiler kept one sum on the stack, and
        // its store-to-load chain took a quarter of the first layer's update.)
        if R > 1 {
            while c + 16 <= n {
                u_tile::<F, R, 16>(w, x, dz, (rows, c), active, step);
                c += 16;
            }
        }
        while c + 24 <= n {
            u_tile::<F, R, 24>(w, x, dz, (rows, c), active, step);
            c += 24;
        }
        for p in [16, 8, 4, 2, 1] {
            if n - c >= p {
                match p {
                    16 => u_tile::<F, R, 16>(w, x, dz, (rows, c), active, step),
                    8 => u_tile::<F, R, 8>(w, x, dz, (rows, c), active, step),
                    4 => u_tile::<F, R, 4>(w, x, dz, (rows, c), active, step),
                    2 => u_tile::<F, R, 2>(w, x, dz, (rows, c), active, step),
                    _ => u_tile::<F, R, 1>(w, x, dz, (rows, c), active, step),
                }
                c += p;
            }
        }
    }
}

/// The largest batch [`update`] handles without allocating its list of active rows.
const ACTIVE_ON_STACK: usize = 256;

/// The update of the `rows` of `w`, in tiles of `R` rows; each tile skips the batch rows where
/// its inputs are all zero. A hidden layer's inputs are zero at random, a quarter of them
/// nonzero: one row per tile visits a quarter of the batch, 4 rows would visit two thirds.
#[inline(always)]
unsafe fn update<F: Fma, const R: usize>(
    w: (*mut f32, usize),
    x: Inputs,
    dz: (*const f32, usize),
    (m, n): (usize, usize),
    rows: Rows<'_>,
    step: Step,
) {
    // SAFETY: the module's contract.
    unsafe {
        let mut stack = [0u32; ACTIVE_ON_STACK];
        let mut heap = Vec::new();
        let active: &mut [u32] = if m <= ACTIVE_ON_STACK {
            &mut stack[..m]
        } else {
            heap.resize(m, 0);
            &mut heap
        };
        // Without a branch per element: the inputs' zeros fall at random, so a branch would be
        // mispredicted often (a third of the update's time at width 128).
        let collect = |active: &mut [u32], r: &[usize]| {
            let (out, mut len) = (active.as_mut_ptr(), 0);
            for i in 0..m {
                let nonzero = r.iter().fold(false, |a, &r| a | (x.at(i, r) != 0.0));
                // `len <= i < m`, the length of `active`.
                *out.add(len) = i as u32;
                len += usize::from(nonzero);
            }
            len
        };
        let (len, mut t) = (rows.len(), 0);
        while t + R <= len {
            let r: [usize; R] = std::array::from_fn(|j| rows.at(t + j));
            let live = collect(active, &r);
            u_rows::<F, R>(w, x, dz, (r, n), &active[..live], step);
            t += R;
        }
        for t in t..len {
            let r = [rows.at(t)];
            let live = collect(active, &r);
            u_rows::<F, 1>(w, x, dz, (r, n), &active[..live], step);
        }
    }
}

/// For one block of `W`'s rows, `(rows, n)`: `dh = dz W^T` (from the old `W`, when `dh` is
/// given; through ReLU + dropout with a scale), then the update of every row, or of the rows
/// `update` selects.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn backward<F: Fma>(
    s: Shape,
    dh: Option<((*mut f32, usize), Option<f32>)>,
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    step: Step,
    nonzero_rows: Option<Nonzero<'_>>,
) {
    // SAFETY: the module's contract; `xt` holds `len` rows of `s.m <= BATCH_BLOCK` inputs.
    unsafe {
        let strided = Inputs {
            p: x.0,
            si: x.1,
            sr: 1,
        };
        match nonzero_rows {
            Some(list) => {
                self::update::<F, UR_PIXELS>(w, strided, dz, (s.m, s.n), Rows::Nonzero(list), step)
            }
            None if narrow_backward::<F>(s.n) => narrow::<F>((s, dh, w, x, dz, step)),
            // The block's columns of `x`, a few rows of `W` at a time, copied so that each
            // row of `W` finds its inputs contiguous: read in place, a column of `x` is one
            // line per batch row, and rows a power of two of bytes apart share an L1 set.
            None if s.m <= BATCH_BLOCK => {
                let mut xt = std::mem::MaybeUninit::<Aligned<[[f32; BATCH_BLOCK]; XT]>>::uninit();
                let xt = xt.as_mut_ptr().cast::<f32>();
                let mut dht = std::mem::MaybeUninit::<Aligned<[[f32; BATCH_BLOCK]; XT]>>::uninit();
                let dht = dht.as_mut_ptr().cast::<f32>();
                for r0 in (0..s.rows).step_by(XT) {
                    let len = (s.rows - r0).min(XT);
                    for i in 0..s.m {
                        for r in 0..len {
                            *xt.add(r * BATCH_BLOCK + i) = *x.0.add(i * x.1 + r0 + r);
                        }
                    }
                    let copy = Inputs {
                        p: xt,
                        si: 1,
                        sr: BATCH_BLOCK,
                    };
                    // The input gradient goes to a transposed buffer too, then row by row
                    // to `dh`, for the same reason.
                    let to_copy = dh.map(|(_, scale)| {
                        let g = Gradient {
                            p: dht,
                            si: 1,
                            sr: BATCH_BLOCK,
                        };
                        (g, scale)
                    });
                    rows_block::<F>(s, to_copy, w, dz, step, (r0, len, copy));
                    if let Some(((dh, ld), _)) = dh {
                        for i in 0..s.m {
                            for r in 0..len {
                                *dh.add(i * ld + r0 + r) = *dht.add(r * BATCH_BLOCK + i);
                            }
                        }
                    }
                }
            }
            None => {
                let dh = dh.map(|((p, si), scale)| (Gradient { p, si, sr: 1 }, scale));
                rows_block::<F>(s, dh, w, dz, step, (0, s.rows, strided));
            }
        }
    }
}

/// Outputs up to which [`backward`] takes a block's rows of `W` [`NR`] at a time across the
/// vector lanes ([`narrow`]; where the FMA is an instruction, and on AVX2, not in AVX-512's own
/// kernels): the output layer's 10 classes.
/// Row by row, each dot product and each row's update is shorter than a register, and the
/// batch rows they skip save less than that costs: a 128 x 10 output layer's backward took 22
/// µs on one core, against 12 µs across the lanes with every product computed
/// (`docs/performance.md`).
pub(crate) const NARROW: usize = LANES;

/// Whether [`backward`] of a block with `n` outputs (and no nonzero list) runs [`narrow`]:
/// the rule `bench --sparsity` counts by too.
pub(crate) fn narrow_backward<F: Fma>(n: usize) -> bool {
    F::INSTRUCTION && n <= NARROW
}

/// Whether a hidden layer's backward through ReLU + dropout over a batch of `m` rows runs in
/// one pass per row of `W` ([`fused_row`], which computes the input gradient's dot products
/// for every nonzero input and keeps the positive ones'): the rule `bench --sparsity` counts
/// by too.
pub(crate) fn one_pass_backward(m: usize) -> bool {
    m <= BATCH_BLOCK
}

/// Rows of `W` per tile of [`narrow`] (one AVX2 register).
const NR: usize = 8;

/// [`backward`] of a block of `W` with `s.n <= NARROW` outputs: [`narrow_n`] for that many.
#[inline(always)]
unsafe fn narrow<F: Fma>(args: NarrowArgs) {
    // SAFETY: the module's contract; each arm runs with `N == s.n`.
    unsafe {
        match args.0.n {
            1 => narrow_n::<F, 1>(args),
            2 => narrow_n::<F, 2>(args),
            3 => narrow_n::<F, 3>(args),
            4 => narrow_n::<F, 4>(args),
            5 => narrow_n::<F, 5>(args),
            6 => narrow_n::<F, 6>(args),
            7 => narrow_n::<F, 7>(args),
            8 => narrow_n::<F, 8>(args),
            9 => narrow_n::<F, 9>(args),
            10 => narrow_n::<F, 10>(args),
            11 => narrow_n::<F, 11>(args),
            12 => narrow_n::<F, 12>(args),
            13 => narrow_n::<F, 13>(args),
            14 => narrow_n::<F, 14>(args),
            15 => narrow_n::<F, 15>(args),
            _ => narrow_n::<F, 16>(args),
        }
    }
}

/// The arguments of a narrow backward (here [`narrow`], and AVX-512's), as [`backward`] takes
/// them (without a nonzero list): the step `S` is a [`Step`] here, the learning rate on
/// AVX-512.
pub(crate) type NarrowArgs<S = Step> = (
    Shape,
    Option<((*mut f32, usize), Option<f32>)>,
    (*mut f32, usize),
    (*const f32, usize),
    (*const f32, usize),
    S,
);

/// [`backward`] of a block of `W` with `N = s.n <= NARROW` outputs, every product dense (zero
/// terms included, as the definition reads), [`NR`] rows of `W` across the lanes: the
/// input gradient `dh[i, r]` for every batch row, then each row's gradient, chained over the
/// batch in blocks of [`BATCH_BLOCK`].
#[inline(always)]
unsafe fn narrow_n<F: Fma, const N: usize>((s, dh, w, x, dz, step): NarrowArgs) {
    // SAFETY: the module's contract; `N = s.n`, and row `r0 + j` is read and written only for
    // `j < len`.
    unsafe {
        for r0 in (0..s.rows).step_by(NR) {
            let len = (s.rows - r0).min(NR);
            // The tile of `W`, transposed (lanes past `len` are `+0`).
            let mut wt = [[0.0f32; NR]; N];
            for (j, r) in (r0..r0 + len).enumerate() {
                let row: [f32; N] = load(w.0.add(r * w.1));
                for (column, &v) in wt.iter_mut().zip(&row) {
                    column[j] = v;
                }
            }
            // The block's inputs of batch row `i`, lanes past `len` zero.
            let inputs = |i: usize| -> [f32; NR] {
                let p = x.0.add(i * x.1 + r0);
                if len == NR {
                    load(p)
                } else {
                    std::array::from_fn(|j| if j < len { *p.add(j) } else { 0.0 })
                }
            };
            if let Some(((dh, ld), scale)) = dh {
                for i in 0..s.m {
                    // Lane `c` of the input gradient's sums holds its one term (`+0` past `N`).
                    let d: [f32; N] = load(dz.0.add(i * dz.1));
                    let mut lanes = [[0.0f32; NR]; LANES];
                    for c in 0..N {
                        lanes[c] = std::array::from_fn(|j| F::fma(d[c], wt[c][j], 0.0));
                    }
                    let sum = reduce_lanes(&lanes);
                    let xi = inputs(i);
                    let out: [f32; NR] = match scale {
                        // NaN is not positive: its gradient is zero, as an inactive unit's.
                        Some(scale) => {
                            std::array::from_fn(|j| if xi[j] > 0.0 { sum[j] * scale } else { 0.0 })
                        }
                        None => sum,
                    };
                    let p = dh.add(i * ld + r0);
                    if len == NR {
                        store(p, out);
                    } else {
                        for (j, &v) in out.iter().enumerate().take(len) {
                            *p.add(j) = v;
                        }
                    }
                }
            }
            let mut g = [[0.0f32; NR]; N];
            let mut wide = Partials::<NR, N>(None);
            for b0 in (0..s.m).step_by(BATCH_BLOCK) {
                let mut acc = [[0.0f32; NR]; N];
                for i in b0..(b0 + BATCH_BLOCK).min(s.m) {
                    let xi = inputs(i);
                    let d: [f32; N] = load(dz.0.add(i * dz.1));
                    for (a, &d) in acc.iter_mut().zip(&d) {
                        *a = std::array::from_fn(|j| F::fma(xi[j], d, a[j]));
                    }
                }
                if s.m <= BATCH_BLOCK {
                    g = acc;
                    break;
                }
                wide.add(&acc);
            }
            let g = wide.gradient(g);
            for j in 0..len {
                for (c, gc) in g.iter().enumerate() {
                    let old = *w.0.add((r0 + j) * w.1 + c);
                    step.tile::<F, 1>(w, (r0 + j, c), [old], &[gc[j]]);
                }
            }
        }
    }
}

/// [`reduce`] of `NR` sets of lanes at once: `lanes[l][j]` is lane `l` of set `j`.
#[inline(always)]
fn reduce_lanes(lanes: &[[f32; NR]; LANES]) -> [f32; NR] {
    let add = |a: &[f32; NR], b: &[f32; NR]| -> [f32; NR] { std::array::from_fn(|j| a[j] + b[j]) };
    let s8: [[f32; NR]; 8] = std::array::from_fn(|l| add(&lanes[l], &lanes[l + 8]));
    let s4: [[f32; NR]; 4] = std::array::from_fn(|l| add(&s8[l], &s8[l + 4]));
    add(&add(&s4[0], &s4[2]), &add(&s4[1], &s4[3]))
}

/// [`backward`] for the `len` rows of `W` from `r0`, whose inputs are `x` (from row `r0`).
/// A function, not a closure: a closure would not inherit the caller's target features.
#[inline(always)]
unsafe fn rows_block<F: Fma>(
    s: Shape,
    dh: Option<(Gradient, Option<f32>)>,
    w: (*mut f32, usize),
    dz: (*const f32, usize),
    step: Step,
    (r0, len, x): (usize, usize, Inputs),
) {
    // SAFETY: the module's contract.
    unsafe {
        if let Some((dh, Some(scale))) = dh
            && one_pass_backward(s.m)
        {
            for r in 0..len {
                let dh = (dh.p.add(r * dh.sr), dh.si);
                let w = (w.0.add((r0 + r) * w.1), w.1);
                let step = step.rows_from(r0 + r);
                fused_row::<F>(dh, w, x.offset(r), dz, (s.m, s.n), (scale, step));
            }
            return;
        }
        if let Some((dh, scale)) = dh {
            for r in 0..len {
                let relu = scale.map(|scale| (x.offset(r), scale));
                let wr = w.0.add((r0 + r) * w.1).cast_const();
                dh_column::<F>((dh.p.add(r * dh.sr), dh.si), dz, wr, (s.m, s.n), relu);
            }
        }
        let w = (w.0.add(r0 * w.1), w.1);
        update::<F, 1>(w, x, dz, (s.m, s.n), Rows::All(len), step.rows_from(r0));
    }
}

/// One row `w` of `W` (row 0 of `w` and of the step's velocity) whose inputs `x` (column 0)
/// are a layer's output after ReLU + dropout, for a batch of up to [`BATCH_BLOCK`] rows: the
/// input gradient `dh[i] = reduce(dz[i] w) * scale` where `x[i] > 0` (`+0` elsewhere), and the
/// update of `w` over the batch rows where `x[i] != 0`, both in one pass over the columns, so
/// that each load of `dz[i]` (from L2 at wide layers) serves both products.
#[inline(always)]
unsafe fn fused_row<F: Fma>(
    dh: (*mut f32, usize),
    w: (*mut f32, usize),
    x: Inputs,
    dz: (*const f32, usize),
    (m, n): (usize, usize),
    (scale, step): (f32, Step),
) {
    // SAFETY: the module's contract; `m <= BATCH_BLOCK`, the length of `active` and `lanes`.
    unsafe {
        let mut active = [0u32; BATCH_BLOCK];
        let mut len = 0;
        for i in 0..m {
            // Branch-free (the zeros fall at random); NaN counts as nonzero.
            let nonzero = x.at(i, 0) != 0.0;
            *dh.0.add(i * dh.1) = 0.0;
            *active.as_mut_ptr().add(len) = i as u32;
            len += usize::from(nonzero);
        }
        let active = &active[..len];
        // The input gradient's 16 lanes for each active row (the negative ones' are computed
        // and dropped: ReLU + dropout outputs have none).
        let mut lanes = std::mem::MaybeUninit::<Aligned<[[f32; LANES]; BATCH_BLOCK]>>::uninit();
        let lanes = lanes.as_mut_ptr().cast::<[f32; LANES]>();
        for t in 0..len {
            lanes.add(t).write([0.0; LANES]);
        }
        let mut c = 0;
        while c + 32 <= n {
            f_row_tile::<F, 32>(w, x, dz, (c, active, lanes), step);
            c += 32;
        }
        for p in [16, 8, 4, 2, 1] {
            if n - c >= p {
                let at = (c, active, lanes);
                match p {
                    16 => f_row_tile::<F, 16>(w, x, dz, at, step),
                    8 => f_row_tile::<F, 8>(w, x, dz, at, step),
                    4 => f_row_tile::<F, 4>(w, x, dz, at, step),
                    2 => f_row_tile::<F, 2>(w, x, dz, at, step),
                    _ => f_row_tile::<F, 1>(w, x, dz, at, step),
                }
                c += p;
            }
        }
        for (t, &i) in active.iter().enumerate() {
            let i = i as usize;
            if x.at(i, 0) > 0.0 {
                *dh.0.add(i * dh.1) = reduce(&*lanes.add(t)) * scale;
            }
        }
    }
}

/// [`fused_row`] over the `P` columns from `c`: each active row's `dz` adds to its input
/// gradient's lanes (lane `c % 16`) and to the weights' gradient, then the step of the
/// `P` weights.
#[inline(always)]
unsafe fn f_row_tile<F: Fma, const P: usize>(
    w: (*mut f32, usize),
    x: Inputs,
    dz: (*const f32, usize),
    (c, active, lanes): (usize, &[u32], *mut [f32; LANES]),
    step: Step,
) {
    // SAFETY: the module's contract; `lanes` holds one initialised set per active row.
    unsafe {
        let wv: [f32; P] = load(w.0.add(c));
        let lane0 = c % LANES;
        let mut g = [0.0f32; P];
        for (t, &i) in active.iter().enumerate() {
            let i = i as usize;
            let zv: [f32; P] = load(dz.0.add(i * dz.1 + c));
            let lane = &mut *lanes.add(t);
            for l in 0..P {
                // Tiles of 16 columns and more start at a multiple of 16.
                let k = if P >= LANES {
                    l % LANES
                } else {
                    (lane0 + l) % LANES
                };
                lane[k] = F::fma(zv[l], wv[l], lane[k]);
            }
            let b = x.at(i, 0);
            for (g, &z) in g.iter_mut().zip(&zv) {
                *g = F::fma(b, z, *g);
            }
        }
        step.tile::<F, P>(w, (0, c), wv, &g);
    }
}

/// Rows of `W` per copy of their inputs in [`backward`].
const XT: usize = 16;

/// Where [`rows_block`] writes the input gradient `dh[i, r] = p[i si + r sr]`: `dh` itself
/// or a transposed buffer.
#[derive(Clone, Copy)]
struct Gradient {
    p: *mut f32,
    si: usize,
    sr: usize,
}

/// The inputs `x[i, r] = p[i si + r sr]` of a block of `W`'s rows: `x` in place (`si` its
/// leading dimension, `sr = 1`) or a transposed copy (`si = 1`).
#[derive(Clone, Copy)]
struct Inputs {
    p: *const f32,
    si: usize,
    sr: usize,
}

impl Inputs {
    /// `x[i, r]`.
    ///
    /// # Safety
    /// `(i, r)` is inside the block.
    #[inline(always)]
    unsafe fn at(self, i: usize, r: usize) -> f32 {
        // SAFETY: this function's contract.
        unsafe { *self.p.add(i * self.si + r * self.sr) }
    }

    /// The inputs from row `r` on.
    ///
    /// # Safety
    /// `r` is inside the block.
    #[inline(always)]
    unsafe fn offset(self, r: usize) -> Inputs {
        Inputs {
            // SAFETY: this function's contract.
            p: unsafe { self.p.add(r * self.sr) },
            ..self
        }
    }
}
