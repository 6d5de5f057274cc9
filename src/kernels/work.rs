//! What the products of a training step execute, layer by layer: how much of each layer's
//! input is zero, and the FLOPs the kernels run against the dense count (`relumax bench
//! --sparsity`). The counts follow the kernels' skip rules through the functions that choose
//! the code paths ([`super::forward_product`], `avx512_own_backward`), so the two cannot drift
//! apart.

use ndarray::ArrayView2;

use super::operands::{Isa, Product, Shape, avx512_fused_backward, avx512_own_backward};
use super::portable::{Hardware, NARROW, Native, UR_PIXELS, narrow_backward, one_pass_backward};
use super::{Kernels, forward_product};

/// The work of one layer in one training step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerWork {
    /// Elements of the layer's input.
    pub inputs: f64,
    /// Of those, the zeros (`+0.0` or `-0.0`).
    pub zeros: f64,
    /// FLOPs of the layer's products as dense matrix products: forward and update, and for
    /// every layer but the first the input gradient (as `train_flops_per_sample` counts).
    pub dense_flops: f64,
    /// FLOPs the kernels execute, skipping zeros as they do.
    pub executed_flops: f64,
}

impl LayerWork {
    /// The fraction of the input that is zero.
    pub fn zero_fraction(&self) -> f64 {
        self.zeros / self.inputs.max(1.0)
    }

    /// Adds `other` (another step's work on the same layer).
    pub fn add(&mut self, other: &LayerWork) {
        self.inputs += other.inputs;
        self.zeros += other.zeros;
        self.dense_flops += other.dense_flops;
        self.executed_flops += other.executed_flops;
    }
}

/// The work of a layer with `outputs` units on the batch `x` with `kernels`: the first layer
/// when `columns` lists the columns of `x` that hold a nonzero (as
/// [`super::nonzero_columns`]), else a hidden or output layer whose input is a hidden layer's
/// output after ReLU + dropout. [`Kernels::Blas`] executes the dense count.
///
/// # Panics
/// If this CPU cannot run `kernels`.
pub fn layer_work(
    kernels: Kernels,
    x: &ArrayView2<'_, f32>,
    outputs: usize,
    columns: Option<&[u32]>,
) -> LayerWork {
    let (m, k) = x.dim();
    let n = outputs as f64;
    let nonzero = x.iter().filter(|&&v| v != 0.0).count() as f64;
    let positive = x.iter().filter(|&&v| v > 0.0).count() as f64;
    let dense_one = 2.0 * (m * k) as f64 * n;
    let dense_flops = dense_one * if columns.is_some() { 2.0 } else { 3.0 };
    let mut work = LayerWork {
        inputs: (m * k) as f64,
        zeros: (m * k) as f64 - nonzero,
        dense_flops,
        executed_flops: dense_flops,
    };
    let Some(isa) = kernels.run() else {
        return work;
    };
    let by_rows = forward_product(isa, outputs, x) == Product::Rows;
    let forward = match columns {
        _ if by_rows => 2.0 * nonzero * n,
        Some(columns) => 2.0 * (m * columns.len()) as f64 * n,
        None => dense_one,
    };
    // The backward's implementation, by the kernels' own rules: AVX-512's own kernels, or
    // portable's compiled for the ISA.
    let shape = Shape {
        m,
        rows: k,
        n: outputs,
    };
    let own = isa == Isa::Avx512 && avx512_own_backward(shape, false);
    // A narrow layer's backward (the output layer) computes every product, zeros included.
    let narrow = columns.is_none()
        && match isa {
            _ if own => outputs <= NARROW,
            Isa::Avx512 | Isa::Avx2 => narrow_backward::<Hardware>(outputs),
            Isa::Portable => narrow_backward::<Native>(outputs),
        };
    let one_pass = if own {
        avx512_fused_backward(outputs)
    } else {
        one_pass_backward(m)
    };
    // The input gradient through ReLU + dropout: where the input is positive; in one pass with
    // the update, where it is nonzero (the same, after ReLU).
    let gradient = match columns {
        Some(_) => 0.0,
        None if narrow => dense_one,
        None if one_pass => 2.0 * nonzero * n,
        None => 2.0 * positive * n,
    };
    // The update visits, per tile of rows of `W`, the batch rows where one of its inputs is
    // nonzero: tiles of `UR_PIXELS` nonzero rows in the first layer (of two on AVX-512), of
    // one row elsewhere.
    let update = match columns {
        Some(columns) => {
            let tile = if own { 2 } else { UR_PIXELS };
            tiled_update(x, columns.iter().map(|&c| c as usize), tile) * n
        }
        None if narrow => dense_one,
        None => 2.0 * nonzero * n,
    };
    work.executed_flops = forward + gradient + update;
    work
}

/// Twice the multiply-adds per output column of an update in tiles of `tile` consecutive
/// `columns` of `x`: each tile computes all its rows for every batch row where any of its
/// columns is nonzero.
fn tiled_update(x: &ArrayView2<'_, f32>, columns: impl Iterator<Item = usize>, tile: usize) -> f64 {
    let columns: Vec<usize> = columns.collect();
    columns
        .chunks(tile)
        .map(|cols| {
            let active = x
                .rows()
                .into_iter()
                .filter(|row| cols.iter().any(|&c| row[c] != 0.0))
                .count();
            2.0 * (active * cols.len()) as f64
        })
        .sum()
}
