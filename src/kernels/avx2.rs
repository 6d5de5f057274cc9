//! The AVX2 + FMA implementation: [`super::portable`]'s code compiled again with those features
//! enabled, so that its fused multiply-adds become `vfmadd` instructions on 8 lanes (the lane
//! arrays of its tiles are what the compiler vectorises). The same bits by construction, and
//! checked by the tests like every implementation.
//!
//! Every function here is `unsafe` with the contract of [`super::portable`], plus: the CPU has
//! AVX2 and FMA ([`super::Isa::Avx2`] is supported).

#![allow(unsafe_code)]

use super::operands::{Nonzero, Shape};
use super::portable::{self, Hardware, Lister, RK, Rows, Scalar, Step};

/// [`portable::forward`] with AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn forward(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
    rows: Rows<'_>,
) {
    // SAFETY: this module's contract.
    unsafe { portable::forward::<Hardware, 16>(s, z, x, w, rows) }
}

/// [`super::elementwise::pixels_to_features`] with AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn pixels_to_features(src: &[u8], dst: &mut [f32]) {
    super::elementwise::pixels_to_features::<Hardware>(src, dst);
}

/// [`portable::forward_rows`] with AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn forward_rows(
    s: Shape,
    z: (*mut f32, usize),
    x: (*const f32, usize),
    w: (*const f32, usize),
) {
    // SAFETY: this module's contract.
    unsafe { portable::forward_rows::<Hardware, Lists>(s, z, x, w) }
}

/// The AVX2 [`portable::Lister`]: 8 inputs at a time, their nonzero lanes packed to the front
/// by one permutation from [`PACK`] (listed one input at a time, the hidden-layer forward at
/// 128-512 columns took 20-30% longer; `docs/performance.md`).
#[derive(Clone, Copy)]
pub(crate) struct Lists;

impl Lister for Lists {
    #[inline(always)]
    unsafe fn nonzero(
        x: *const f32,
        slot: (&[u32; RK], usize),
        out: (*mut f32, *mut u32),
    ) -> usize {
        // SAFETY: the trait's contract; the callers run with AVX2 (this module's contract).
        unsafe { nonzero(x, slot, out) }
    }
}

/// For each mask of 8 lanes, the lanes that are set, in order, then zeros: the permutation
/// that packs them to the front.
static PACK: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut len) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][len] = lane as u8;
                len += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// [`Lists::nonzero`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn nonzero(
    x: *const f32,
    (slot, pass): (&[u32; RK], usize),
    (values, slots): (*mut f32, *mut u32),
) -> usize {
    use std::arch::x86_64::*;
    // SAFETY: `x[..pass]` is readable and `values`, `slots` hold `RK >= pass` elements (the
    // trait's contract): each group of 8 inputs `r..r + 8 <= pass` writes 8 lanes from
    // `len <= r`, so below `pass`.
    unsafe {
        let (mut len, mut r) = (0, 0);
        while r + 8 <= pass {
            let v = _mm256_loadu_ps(x.add(r));
            let s = _mm256_loadu_si256(slot.as_ptr().add(r).cast());
            // Not-equal, unordered: NaN is listed, +0 and -0 are not (as `v != 0.0`).
            let keep = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps());
            let mask = _mm256_movemask_ps(keep) as usize;
            let order = _mm256_cvtepu8_epi32(_mm_loadl_epi64(PACK[mask].as_ptr().cast()));
            _mm256_storeu_ps(values.add(len), _mm256_permutevar8x32_ps(v, order));
            _mm256_storeu_si256(slots.add(len).cast(), _mm256_permutevar8x32_epi32(s, order));
            len += mask.count_ones() as usize;
            r += 8;
        }
        Scalar::list_from(x, (slot, pass), (values, slots), (r, len))
    }
}

/// [`portable::backward`] with AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn backward(
    s: Shape,
    dh: Option<((*mut f32, usize), Option<f32>)>,
    w: (*mut f32, usize),
    x: (*const f32, usize),
    dz: (*const f32, usize),
    step: Step,
    nonzero_rows: Option<Nonzero<'_>>,
) {
    // SAFETY: this module's contract.
    unsafe { portable::backward::<Hardware>(s, dh, w, x, dz, step, nonzero_rows) }
}
