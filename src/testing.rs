//! Helpers shared by the unit tests.

use ndarray::Array2;

use crate::rng::{self, Stream};

/// Values in `[-0.5, 0.5)` from the crate's own seeded stream.
pub(crate) fn noise(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut r = rng::stream(seed, Stream::Init, &[]);
    Array2::from_shape_fn((rows, cols), |_| rand::Rng::random::<f32>(&mut r) - 0.5)
}

/// A team of exactly `threads` threads, to run a test's work on that many (`.install(...)`),
/// as [`crate::Trainer`] does.
pub(crate) fn pool(threads: usize) -> crate::kernels::Team {
    crate::kernels::Team::new(threads).unwrap()
}

/// FNV-1a over a list of indices: a short fingerprint of an order or a mask, for goldens.
pub(crate) fn fingerprint(v: &[usize]) -> u64 {
    v.iter().fold(0xcbf2_9ce4_8422_2325, |h, &i| {
        (h ^ i as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
