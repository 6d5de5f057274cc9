//! A dense layer: `z = x W + b`, `x: (batch, inputs)`, `W: (inputs, outputs)`, `b: (outputs,)`.
//!
//! `W` is stored row-major as `(inputs, outputs)`: the forward product `x W` streams its rows,
//! and the input gradient `dz W^T` and the update from `x^T dz` both walk them, one block of
//! rows at a time (and all three reach `cblas_sgemm` without copies on the OpenBLAS backend).

use ndarray::{Array1, Array2};

use crate::init::{self, Init};
use crate::rng::{self, Stream};

/// One fully connected layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Weights, `(inputs, outputs)`, standard layout.
    pub weight: Array2<f32>,
    /// Biases, `(outputs,)`.
    pub bias: Array1<f32>,
}

impl Dense {
    /// A layer with weights initialised by `init` from `seed`'s stream, and zero biases.
    pub fn new(inputs: usize, outputs: usize, init: Init, seed: u64) -> Dense {
        Dense::from_stream(inputs, outputs, init, &[], seed)
    }

    /// [`Dense::new`] drawing from the initialisation stream of `seed` at coordinates `at`
    /// (`Mlp::new`'s layer `l` draws at `[l]`).
    pub(crate) fn from_stream(
        inputs: usize,
        outputs: usize,
        init: Init,
        at: &[u64],
        seed: u64,
    ) -> Dense {
        Dense {
            weight: init::weights(
                inputs,
                outputs,
                init,
                &mut rng::stream(seed, Stream::Init, at),
            ),
            bias: Array1::zeros(outputs),
        }
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weight.nrows()
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.weight.ncols()
    }

    /// Number of parameters (weights and biases).
    pub fn parameters(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
}
