//! A dense layer: `z = x W + b`, `x: (batch, inputs)`, `W: (inputs, outputs)`, `b: (outputs,)`.
//!
//! `W` is stored row-major as `(inputs, outputs)`: the forward product `x W` streams its rows,
//! and the input gradient `dz W^T` and the update from `x^T dz` both walk them, one block of
//! rows at a time (and all three reach `cblas_sgemm` without copies on the OpenBLAS backend).

use ndarray::{Array1, Array2};

use crate::aligned;
use crate::error::{Error, Result};
use crate::init::{self, Init};
use crate::model::{MAX_WIDTH, width_accepted};
use crate::rng::{self, Stream};

/// One fully connected layer.
///
/// Its shapes are fixed once built: the weights and biases can be read, and changed in place
/// through views in a network ([`crate::Mlp::layers_mut`]), but not replaced by
/// arrays of another shape or layout.
#[derive(Debug, PartialEq)]
pub struct Dense {
    /// Weights, `(inputs, outputs)`, standard layout, starting a cache line
    /// ([`crate::aligned`]).
    pub(crate) weight: Array2<f32>,
    /// Biases, `(outputs,)`.
    pub(crate) bias: Array1<f32>,
}

/// A copy's weights start a cache line too (ndarray's clone keeps the offset into a buffer the
/// allocator may align differently).
impl Clone for Dense {
    fn clone(&self) -> Dense {
        Dense {
            weight: aligned::copy(self.weight.view()),
            bias: self.bias.clone(),
        }
    }
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

    /// A layer from its weights (`(inputs, outputs)`, any layout) and biases (`(outputs,)`).
    ///
    /// # Errors
    /// [`Error::Shape`] when the bias length differs from the weights' columns;
    /// [`Error::Config`] when a dimension is 0 or above [`MAX_WIDTH`].
    pub fn from_parts(weight: Array2<f32>, bias: Array1<f32>) -> Result<Dense> {
        if bias.len() != weight.ncols() {
            return Err(Error::Shape {
                what: "bias length vs weight columns (outputs)".into(),
                expected: weight.ncols(),
                found: bias.len(),
            });
        }
        for (what, n) in [("inputs", weight.nrows()), ("outputs", weight.ncols())] {
            if !width_accepted(n) {
                return Err(Error::Config {
                    field: "layers",
                    reason: format!("a layer's {what} must be 1..={MAX_WIDTH}, got {n}"),
                });
            }
        }
        let weight = match weight.as_slice() {
            Some(values) if aligned::is_aligned(values) => weight,
            _ => aligned::copy(weight.view()),
        };
        Ok(Dense { weight, bias })
    }

    /// The weights, `(inputs, outputs)`, standard layout.
    pub fn weight(&self) -> &Array2<f32> {
        &self.weight
    }

    /// The biases, `(outputs,)`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::is_aligned;
    use crate::model::Mlp;

    fn starts_a_line(layer: &Dense) -> bool {
        is_aligned(layer.weight().as_slice().expect("standard layout"))
    }

    #[test]
    fn weights_start_a_cache_line_however_the_layer_was_made() {
        let model = Mlp::new(&[784, 128, 37, 10], Init::He, 7).unwrap();
        assert!(model.layers().iter().all(starts_a_line));
        // Clones, saved and loaded models, and layers from parts in any layout.
        let mut keep = Vec::new();
        for _ in 0..8 {
            keep.push(vec![0u8; 24]);
            assert!(model.clone().layers().iter().all(starts_a_line));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        model.save(&path).unwrap();
        let loaded = Mlp::load(&path).unwrap();
        assert_eq!(loaded, model);
        assert!(loaded.layers().iter().all(starts_a_line));
        let w = Array2::from_shape_fn((6, 5), |(i, j)| (i * 5 + j) as f32);
        for weight in [
            w.clone(),
            w.t().to_owned().reversed_axes(),
            w.slice_move(ndarray::s![.., ..]),
        ] {
            let layer = Dense::from_parts(weight.clone(), Array1::zeros(5)).unwrap();
            assert!(starts_a_line(&layer));
            assert_eq!(layer.weight(), &weight);
        }
    }
}
