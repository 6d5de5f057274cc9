//! Mini-batch SGD with the backward pass fused into the update.
//!
//! For layer `l` (last to first), with `dz` the loss gradient w.r.t. its pre-activation
//! (already divided by the batch size):
//!
//! - `dh = dz W^T` (the previous layer's output gradient), taken from the old `W`;
//! - `W <- W - lr * x^T dz`, fused with `dh` per block of `W`'s rows: no gradient buffer, each
//!   weight rounded once (for the first layer, only the rows of the input columns that are not
//!   zero throughout the batch: the others' update is zero);
//! - `b <- b - lr * sum_rows(dz)`;
//! - `dz_prev = dh * [h_prev > 0] / (1 - p)`, fused with `dh` (only the needed dot products).
//!
//! With momentum `mu > 0` the gradient goes through a velocity instead:
//! `V <- mu V + x^T dz`, `W <- W - lr V` (PyTorch's convention).

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Zip, s};

use crate::kernels::{self, BatchStats};
use crate::model::{Mlp, StepDropout, Workspace};

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
                        Array2::zeros(l.weight.raw_dim()),
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

    /// One training step on a batch: forward with dropout, backward, update. Returns the
    /// batch's summed loss (divide by `x.nrows()` for the mean) and correct predictions.
    ///
    /// # Panics
    /// As [`Mlp::forward_train`].
    pub fn step(
        &mut self,
        model: &mut Mlp,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        dropout: StepDropout,
    ) -> BatchStats {
        let stats = model.forward_train(x, labels, ws, dropout);
        self.backward(model, ws, x, dropout.p);
        stats
    }

    fn backward(&mut self, model: &mut Mlp, ws: &mut Workspace, x: ArrayView2<'_, f32>, p: f32) {
        let rows = x.nrows();
        let scale = 1.0 / (1.0 - p);
        let n = model.layers().len();
        let Workspace {
            acts,
            grads,
            support,
            kernels,
            ..
        } = ws;
        let [g0, g1] = grads;
        for l in (0..n).rev() {
            let layer = &mut model.layers_mut()[l];
            let (inputs, outputs) = (layer.inputs(), layer.outputs());
            // dz of the last layer is in the logits buffer; below it, the gradients alternate
            // between the two flat buffers: layer l's dh goes to grads[(n - 1 - l) % 2].
            let (dz_buf, dh_buf): (&[f32], &mut [f32]) = if l == n - 1 {
                (acts[l].as_slice().expect("standard layout"), &mut g0[..])
            } else if (n - 1 - l) % 2 == 1 {
                (&g0[..], &mut g1[..])
            } else {
                (&g1[..], &mut g0[..])
            };
            let dz = ArrayView2::from_shape((rows, outputs), &dz_buf[..rows * outputs])
                .expect("gradient buffer holds the batch");
            let input = if l == 0 {
                x.view()
            } else {
                acts[l - 1].slice(s![..rows, ..])
            };
            // The first layer's input gradient is never needed: skip its product.
            let mut dh = (l > 0).then(|| {
                ArrayViewMut2::from_shape((rows, inputs), &mut dh_buf[..rows * inputs])
                    .expect("gradient buffer holds the batch")
            });
            let k = *kernels;
            if self.velocity.is_empty() {
                let w = &mut layer.weight.view_mut();
                match dh.as_mut() {
                    // `forward_train` listed the batch's nonzero input columns.
                    None => kernels::update_sparse(k, w, &dz, &input, self.lr, support),
                    // The input is the previous layer's ReLU + dropout output.
                    Some(dh) => {
                        kernels::backward_sgd_relu(k, dh, w, &dz, &input, (self.lr, scale));
                    }
                }
                kernels::bias_sgd(layer.bias.view_mut(), dz, self.lr);
            } else {
                let (vw, vb) = &mut self.velocity[l];
                let w = &mut layer.weight.view_mut();
                let dh = dh.as_mut().map(|dh| (dh, Some(scale)));
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
}
