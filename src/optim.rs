//! The optimizer: mini-batch SGD, plain or with momentum. It owns the learning rate, the
//! momentum and the velocity, and applies each layer's update when the backward walk
//! ([`Mlp::train_step`](crate::Mlp::train_step)) reaches the layer, choosing the kernel:
//!
//! - plain SGD: `W <- W - lr * x^T dz`, fused with the input gradient `dh = dz W^T` (taken from
//!   the old `W`) per block of `W`'s rows, with no gradient buffer and each weight rounded
//!   once; the first layer updates only the rows of the input columns that are not zero
//!   throughout the batch (the others' update is zero); `b <- b - lr * sum_rows(dz)`;
//! - with momentum `mu > 0`: `V <- mu V + x^T dz`, `W <- W - lr V` (PyTorch's convention),
//!   with the same fused input gradient.
//!
//! In both, the input gradient goes through the previous layer's ReLU + dropout backward
//! (`dh * [h_prev > 0] / (1 - p)`), computing only the dot products it keeps.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Zip};

use crate::kernels::{self, Kernels};
use crate::layer::Dense;
use crate::model::Mlp;

/// Plain SGD, optionally with momentum.
#[derive(Debug)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    velocity: Vec<(Array2<f32>, Array1<f32>)>,
}

impl Sgd {
    /// SGD with learning rate `lr` and momentum `momentum` (0 for none).
    pub fn new(model: &Mlp, lr: f32, momentum: f32) -> Sgd {
        let velocity = if momentum > 0.0 {
            model
                .layers()
                .iter()
                .map(|l| {
                    (
                        crate::aligned::zeros(l.inputs(), l.outputs()),
                        Array1::zeros(l.outputs()),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Sgd {
            lr,
            momentum,
            velocity,
        }
    }

    /// SGD continuing with saved `velocity` (one `(weights, biases)` pair per layer; empty, or
    /// ignored, without momentum).
    ///
    /// # Panics
    /// If `momentum > 0` and the velocity does not match the model's layer shapes.
    pub fn with_velocity(
        model: &Mlp,
        lr: f32,
        momentum: f32,
        velocity: Vec<(Array2<f32>, Array1<f32>)>,
    ) -> Sgd {
        let mut sgd = Sgd::new(model, lr, momentum);
        if momentum > 0.0 && !velocity.is_empty() {
            assert!(
                velocity.len() == sgd.velocity.len()
                    && velocity
                        .iter()
                        .zip(&sgd.velocity)
                        .all(|(a, b)| a.0.dim() == b.0.dim() && a.1.len() == b.1.len()),
                "velocity shapes do not match the model"
            );
            sgd.velocity = velocity;
        }
        sgd
    }

    /// The momentum buffers, one `(weights, biases)` pair per layer (empty without momentum).
    pub fn velocity(&self) -> &[(Array2<f32>, Array1<f32>)] {
        &self.velocity
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Updates `layer` (layer `l` of the model) from its gradients, and writes its input
    /// gradient into `g.dh` when given; see the module docs for the arithmetic.
    pub(crate) fn update(&mut self, l: usize, layer: &mut Dense, g: LayerGradients<'_, '_>) {
        let LayerGradients {
            kernels: k,
            dz,
            input,
            mut dh,
            relu_scale,
            nonzero,
        } = g;
        let w = &mut layer.weight.view_mut();
        if self.velocity.is_empty() {
            match dh.as_mut() {
                None => kernels::update_nonzero(k, w, &dz, &input, self.lr, nonzero),
                Some(dh) => {
                    kernels::backward_sgd_relu(k, dh, w, &dz, &input, (self.lr, relu_scale));
                }
            }
            kernels::bias_sgd(layer.bias.view_mut(), dz, self.lr);
        } else {
            let (vw, vb) = &mut self.velocity[l];
            let dh = dh.as_mut().map(|dh| (dh, Some(relu_scale)));
            let step = (self.lr, self.momentum);
            kernels::backward_momentum(k, dh, w, &mut vw.view_mut(), &dz, &input, step);
            vb.mapv_inplace(|v| v * self.momentum);
            kernels::bias_sgd(vb.view_mut(), dz, -1.0);
            Zip::from(&mut layer.bias)
                .and(&*vb)
                .for_each(|b, &v| *b -= self.lr * v);
        }
    }
}

/// What the backward walk hands [`Sgd::update`] for one layer.
pub(crate) struct LayerGradients<'a, 'b> {
    pub kernels: Kernels,
    /// `(rows, outputs)`: the loss gradient of the layer's pre-activation, divided by the
    /// batch size.
    pub dz: ArrayView2<'a, f32>,
    /// `(rows, inputs)`: the layer's input.
    pub input: ArrayView2<'a, f32>,
    /// `(rows, inputs)`: where the input gradient goes (through the previous layer's ReLU +
    /// dropout backward), or `None` for the first layer, whose input gradient is never needed.
    pub dh: Option<ArrayViewMut2<'b, f32>>,
    /// The dropout scale of the previous layer's kept units, `1 / (1 - p)`.
    pub relu_scale: f32,
    /// The first layer's nonzero input columns ([`kernels::nonzero_columns`]).
    pub nonzero: &'a [u32],
}
