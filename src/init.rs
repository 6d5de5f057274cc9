//! Weight initialisation: `W ~ N(0, gain / fan_in)`, biases zero.
//!
//! He (gain 2, the paper's "Xavier for ReLU") is the default; Xavier/LeCun (gain 1) is the
//! alternative the paper discusses. Normals come from a pinned Box-Muller transform, with
//! relumax's own `log`, `sin` and `cos`, so that initial weights are the same on every platform
//! and do not change when a dependency's sampler does.

use ndarray::Array2;
use rand::RngCore;

use crate::kernels;

/// The initialisation scheme of the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// `N(0, 2 / fan_in)`: He et al., the paper's choice for ReLU layers.
    #[default]
    He,
    /// `N(0, 1 / fan_in)`.
    Xavier,
}

impl Init {
    /// Variance numerator: 2 for He, 1 for Xavier.
    pub fn gain(self) -> f64 {
        match self {
            Init::He => 2.0,
            Init::Xavier => 1.0,
        }
    }

    /// The lowercase name (`"he"`, `"xavier"`).
    pub fn name(self) -> &'static str {
        match self {
            Init::He => "he",
            Init::Xavier => "xavier",
        }
    }
}

impl std::str::FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "he" | "kaiming" => Ok(Init::He),
            "xavier" | "glorot" | "lecun" => Ok(Init::Xavier),
            _ => Err(format!("unknown init {s:?} (expected he or xavier)")),
        }
    }
}

/// A uniform double in the open interval `(0, 1)`.
fn open01(rng: &mut impl RngCore) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A `(fan_in, fan_out)` weight matrix drawn from `N(0, init.gain() / fan_in)`.
pub fn weights(fan_in: usize, fan_out: usize, init: Init, rng: &mut impl RngCore) -> Array2<f32> {
    let std = (init.gain() / fan_in.max(1) as f64).sqrt();
    let mut w = crate::aligned::zeros(fan_in, fan_out);
    let data = w.as_slice_mut().expect("fresh array is standard layout");
    for pair in data.chunks_mut(2) {
        let r = (-2.0 * kernels::ln_f64(open01(rng))).sqrt();
        let (sin, cos) = kernels::sin_cos_f64(std::f64::consts::TAU * open01(rng));
        pair[0] = (std * r * cos) as f32;
        if let Some(v) = pair.get_mut(1) {
            *v = (std * r * sin) as f32;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream};

    #[test]
    fn variance_matches_scheme() {
        for (init, gain) in [(Init::He, 2.0), (Init::Xavier, 1.0)] {
            let w = weights(400, 500, init, &mut stream(3, Stream::Init, &[0]));
            let n = w.len() as f64;
            let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = w
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let want = gain / 400.0;
            // Five standard errors: sqrt(var / n) for the mean, sqrt(2 / n) for var / want.
            assert!(mean.abs() < 5.0 * (want / n).sqrt(), "mean {mean}");
            assert!(
                (var / want - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
                "var {var} want {want}"
            );
        }
    }
}
