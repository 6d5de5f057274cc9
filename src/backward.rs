//! The training step ([`Mlp::train_step`]) and its backward walk: from the loss gradient of the
//! logits (left in the workspace by the forward pass) back through every layer, last to
//! first. Each layer's input gradient is formed while the optimizer updates the layer
//! ([`Sgd::update`], fused per block of its weights), so no weight gradient is ever stored: the
//! input gradients alternate between the workspace's two flat buffers.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder, s};

use crate::kernels::BatchStats;
use crate::model::{Mlp, StepDropout, Workspace, gradient_stride};
use crate::optim::{LayerGradients, Sgd};

impl Mlp {
    /// One training step on a batch: the forward pass with `dropout`, the loss gradient, and
    /// the backward pass through every layer, each layer updated by `sgd` as its input
    /// gradient is formed. Returns the batch's summed loss (divide by `x.nrows()` for the
    /// mean) and its correct predictions (with dropout).
    ///
    /// # Panics
    /// As [`Mlp::forward_train`]; also if `sgd` was made for a model of other shapes.
    pub fn train_step(
        &mut self,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        ws: &mut Workspace,
        dropout: StepDropout,
        sgd: &mut Sgd,
    ) -> BatchStats {
        // The batch's nonzero input columns, listed once: the first layer's forward product
        // and its update both skip the others.
        ws.with_nonzero(&x, |ws, nonzero| {
            let stats = self.forward_nonzero(x, labels, ws, dropout, nonzero);
            backward(self, ws, x, nonzero, dropout.p, sgd);
            stats
        })
    }
}

/// Walks the step's gradient back through `model` for the batch `x` (whose forward pass with
/// dropout `p` filled `ws`; `nonzero`, its nonzero columns), updating every layer with `sgd`.
fn backward(
    model: &mut Mlp,
    ws: &mut Workspace,
    x: ArrayView2<'_, f32>,
    nonzero: &[u32],
    p: f32,
    sgd: &mut Sgd,
) {
    let rows = x.nrows();
    let relu_scale = 1.0 / (1.0 - p);
    let n = model.layers().len();
    let Workspace {
        acts,
        grads,
        kernels,
        ..
    } = ws;
    let [g0, g1] = grads
        .each_mut()
        .map(|g| g.as_slice_mut().expect("a contiguous buffer"));
    for l in (0..n).rev() {
        let layer = &mut model.layers[l];
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
        let dz = if l == n - 1 {
            ArrayView2::from_shape((rows, outputs), &dz_buf[..rows * outputs])
        } else {
            let (shape, len) = gradient_layout(rows, outputs);
            ArrayView2::from_shape(shape, &dz_buf[..len])
        }
        .expect("gradient buffer holds the batch");
        let input = if l == 0 {
            x.view()
        } else {
            acts[l - 1].slice(s![..rows, ..])
        };
        // The first layer's input gradient is never needed: its product is skipped.
        let dh = (l > 0).then(|| {
            let (shape, len) = gradient_layout(rows, inputs);
            ArrayViewMut2::from_shape(shape, &mut dh_buf[..len])
                .expect("gradient buffer holds the batch")
        });
        let gradients = LayerGradients {
            kernels: *kernels,
            dz,
            input,
            dh,
            relu_scale,
            nonzero,
        };
        sgd.update(l, layer, gradients);
    }
}

/// The shape and strides of a hidden layer's `(rows, width)` gradient in a workspace buffer
/// (rows [`gradient_stride`]`(width)` apart), and the floats it spans.
fn gradient_layout(rows: usize, width: usize) -> (ndarray::StrideShape<ndarray::Ix2>, usize) {
    let stride = gradient_stride(width);
    let len = rows.checked_sub(1).map_or(0, |last| last * stride + width);
    ((rows, width).strides((stride, 1)), len)
}
