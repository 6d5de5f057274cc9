//! relumax's own `exp` and `log`: the `libm` crate's pure-Rust ports of musl's `expf` and
//! `logf`, pinned by `Cargo.lock`, so that no result depends on the platform's C library (glibc
//! picks among implementations by CPU, and other platforms round differently).

/// `e^x`, in single precision.
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// The natural logarithm, in single precision.
#[inline]
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// The natural logarithm, in double precision (weight initialisation).
#[inline]
pub fn ln_f64(x: f64) -> f64 {
    libm::log(x)
}

/// The sine and cosine, in double precision (weight initialisation).
#[inline]
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    libm::sincos(x)
}
