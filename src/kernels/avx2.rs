//! The AVX2 + FMA implementation: [`super::portable`]'s code compiled again with those features
//! enabled, so that its fused multiply-adds become `vfmadd` instructions on 8 lanes (the lane
//! arrays of its tiles are what the compiler vectorises). The same bits by construction, and
//! checked by the tests like every implementation.
//!
//! Every function here is `unsafe` with the contract of [`super::portable`], plus: the CPU has
//! AVX2 and FMA ([`super::Isa::Avx2`] is supported).

#![allow(unsafe_code)]

use super::operands::{Nonzero, Shape};
use super::portable::{self, Hardware, Rows, Step};

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
    unsafe { portable::forward::<Hardware>(s, z, x, w, rows) }
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
    unsafe { portable::forward_rows::<Hardware>(s, z, x, w) }
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
