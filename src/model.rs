//! The multilayer perceptron and its forward pass.
//!
//! `sizes = [inputs, hidden_1, ..., hidden_k, classes]`. Hidden layers compute
//! `h = relu(x W + b) * m / (1 - p)` (dropout only in training), the output layer
//! `s = softmax(h W + b)` with cross-entropy loss. Activations live in a [`Workspace`] sized once
//! for a number of rows, so a training step allocates nothing.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};

use crate::aligned;
use crate::error::{Error, Result};
pub use crate::init::Init;
use crate::kernels::{self, BatchStats, Dropout, Kernels};
pub use crate::layer::Dense;

/// Rows per inference chunk: evaluation (validation, test, [`Mlp::evaluate`]) and
/// [`Mlp::predict_proba`] run in batches of this many rows.
pub(crate) const EVAL_ROWS: usize = 1000;

/// Loss, accuracy and confusion matrix on a set of samples.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Number of samples.
    pub samples: usize,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// The evaluation of samples whose losses sum to `loss_sum`, classified as `confusion`
    /// counts.
    pub(crate) fn new(loss_sum: f64, confusion: Vec<Vec<usize>>) -> Evaluation {
        let samples: usize = confusion.iter().flatten().sum();
        let correct: usize = (0..confusion.len()).map(|c| confusion[c][c]).sum();
        let denom = samples.max(1) as f64;
        Evaluation {
            loss: loss_sum / denom,
            accuracy: correct as f64 / denom,
            samples,
            confusion,
        }
    }
}

/// Most hidden layers accepted: far beyond what trains (plain SGD without normalisation
/// fades out long before), and a bound before anything is allocated per layer.
pub const MAX_LAYERS: usize = 1024;

/// Largest layer width accepted (a 65,536 x 65,536 weight matrix is already 16 GiB).
pub const MAX_WIDTH: usize = 1 << 16;

/// Whether `n` units is a layer width relumax accepts: `1..=MAX_WIDTH` (the one range behind
/// the checks of hidden widths, of inputs and classes, and of a layer built from parts).
pub(crate) fn width_accepted(n: usize) -> bool {
    (1..=MAX_WIDTH).contains(&n)
}

/// A ReLU + softmax multilayer perceptron.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub(crate) layers: Vec<Dense>,
}

/// Dropout for one training step: probability `p`, and the coordinates from which each layer's
/// mask stream is derived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDropout {
    /// Drop probability in `[0, 1)`; 0 disables dropout.
    pub p: f32,
    /// The run seed.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based step within the epoch.
    pub step: usize,
}

impl StepDropout {
    /// The dropout of hidden layer `layer` at this step, or `None` when `p == 0`.
    pub fn layer(&self, layer: usize) -> Option<Dropout> {
        (self.p > 0.0).then(|| Dropout {
            p: self.p,
            key: Dropout::key(self.seed, self.epoch, self.step, layer),
        })
    }
}

/// Floats from one row of a layer's gradient to the next in the workspace: the width rounded
/// up to whole cache lines, and one line more. Each row starts a line (the buffer does), and
/// rows are not a power of two of bytes apart: the fused backward reads a column tile of `dz`
/// across the batch rows, and such rows would put all their lines of the tile in one set of
/// the L1 cache, which holds 8 (`docs/performance.md`).
pub(crate) fn gradient_stride(width: usize) -> usize {
    width.next_multiple_of(16) + 16
}

/// Reused buffers for forward and backward passes of up to `rows` samples.
#[derive(Debug)]
pub struct Workspace {
    /// `acts[l]`: output of layer `l`, `(rows, sizes[l + 1])`; the last holds logits, then the
    /// output gradient.
    pub(crate) acts: Vec<Array2<f32>>,
    /// Two ping-pong gradient buffers of `rows` rows of [`gradient_stride`]`(widest hidden
    /// layer)` floats, viewed as `(rows, width)` matrices of whatever width a layer needs, each
    /// row [`gradient_stride`]`(width)` floats after the previous one.
    pub(crate) grads: [Array1<f32>; 2],
    /// The buffer of a training batch's nonzero input columns: the step fills it and passes
    /// the list to the forward product and the update ([`Workspace::with_nonzero`]).
    nonzero: Vec<u32>,
    /// The code that runs the products (resolved: never `Auto`).
    pub(crate) kernels: Kernels,
    rows: usize,
}

impl Workspace {
    /// Buffers for `model` and batches of up to `rows` samples, with this CPU's fastest
    /// implementation of relumax's arithmetic ([`Kernels::Auto`]).
    pub fn new(model: &Mlp, rows: usize) -> Workspace {
        Workspace::with_kernels(model, rows, Kernels::Auto)
    }

    /// Buffers for `model` and batches of up to `rows` samples, whose products run on
    /// `kernels` (from [`Kernels::resolve`]).
    ///
    /// # Panics
    /// If this CPU cannot run `kernels`.
    pub fn with_kernels(model: &Mlp, rows: usize, kernels: Kernels) -> Workspace {
        let kernels = kernels
            .resolve()
            .unwrap_or_else(|e| panic!("Workspace::with_kernels: {e}"));
        let sizes = model.sizes();
        let widest = sizes[1..sizes.len() - 1].iter().copied().max().unwrap_or(0);
        Workspace {
            acts: sizes[1..]
                .iter()
                .map(|&n| aligned::zeros(rows, n))
                .collect(),
            grads: std::array::from_fn(|_| aligned::zeros1(rows * gradient_stride(widest))),
            nonzero: Vec::with_capacity(model.inputs()),
            kernels,
            rows,
        }
    }

    /// The code that runs the products.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The largest batch these buffers hold.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Runs `f` with the nonzero columns of the batch `x` ([`kernels::nonzero_columns`]),
    /// listed in this workspace's buffer (taken out for the call, so `f` also gets the rest of
    /// the workspace; no allocation once the buffer has grown).
    pub(crate) fn with_nonzero<T>(
        &mut self,
        x: &ArrayView2<'_, f32>,
        f: impl FnOnce(&mut Workspace, &[u32]) -> T,
    ) -> T {
        let mut nonzero = std::mem::take(&mut self.nonzero);
        kernels::nonzero_columns(x, &mut nonzero);
        let out = f(self, &nonzero);
        self.nonzero = nonzero;
        out
    }

    fn fits(&self, model: &Mlp, rows: usize) -> bool {
        rows <= self.rows
            && self.acts.len() == model.layers.len()
            && self
                .acts
                .iter()
                .zip(&model.layers)
                .all(|(a, l)| a.ncols() == l.outputs())
    }
}

#[cold]
#[track_caller]
#[inline(never)]
fn workspace_error(rows: usize) -> ! {
    panic!("workspace does not fit this model and a batch of {rows} rows")
}

impl Mlp {
    /// A freshly initialised network with layer sizes `[inputs, hidden..., classes]`.
    ///
    /// Layer `l`'s weights come from the stream `(seed, Init, l)`.
    ///
    /// # Errors
    /// [`Error::Config`] when fewer than two sizes are given or a size is 0 or above
    /// [`MAX_WIDTH`].
    pub fn new(sizes: &[usize], init: Init, seed: u64) -> Result<Mlp> {
        validate_sizes(sizes)?;
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(l, w)| Dense::from_stream(w[0], w[1], init, &[l as u64], seed))
            .collect();
        Ok(Mlp { layers })
    }

    /// A network from existing layers (each built by [`Dense::new`] or [`Dense::from_parts`],
    /// which check its own shapes).
    ///
    /// # Errors
    /// [`Error::Shape`] when consecutive layers do not chain; [`Error::Config`] for an empty
    /// list or more than [`MAX_LAYERS`] hidden layers.
    pub fn from_layers(layers: Vec<Dense>) -> Result<Mlp> {
        if layers.is_empty() {
            return Err(Error::Config {
                field: "layers",
                reason: "a network needs at least one layer".into(),
            });
        }
        for (l, pair) in layers.windows(2).enumerate() {
            if pair[1].inputs() != pair[0].outputs() {
                return Err(Error::Shape {
                    what: format!("layer {} inputs", l + 1),
                    expected: pair[0].outputs(),
                    found: pair[1].inputs(),
                });
            }
        }
        let model = Mlp { layers };
        validate_sizes(&model.sizes())?;
        Ok(model)
    }

    /// `[inputs, hidden..., classes]`.
    pub fn sizes(&self) -> Vec<usize> {
        std::iter::once(self.inputs())
            .chain(self.layers.iter().map(Dense::outputs))
            .collect()
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs()
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs()
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(Dense::outputs)
            .collect()
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// Each layer's weights and biases as mutable views, input first: values can change,
    /// shapes cannot (a network stays one that [`Mlp::from_layers`] would accept).
    ///
    /// ```
    /// # use relumax::{Init, Mlp};
    /// let mut model = Mlp::new(&[4, 8, 3], Init::He, 0)?;
    /// for (mut weight, _bias) in model.layers_mut() {
    ///     weight.mapv_inplace(|w| w * 0.5);
    /// }
    /// # Ok::<(), relumax::Error>(())
    /// ```
    ///
    /// Replacing a layer by one of another shape does not compile:
    ///
    /// ```compile_fail
    /// # use relumax::{Dense, Init, Mlp};
    /// let mut model = Mlp::new(&[4, 8, 3], Init::He, 0)?;
    /// model.layers_mut()[0] = Dense::new(5, 8, Init::He, 0);
    /// # Ok::<(), relumax::Error>(())
    /// ```
    pub fn layers_mut(
        &mut self,
    ) -> impl ExactSizeIterator<Item = (ArrayViewMut2<'_, f32>, ArrayViewMut1<'_, f32>)> {
        self.layers
            .iter_mut()
            .map(|l| (l.weight.view_mut(), l.bias.view_mut()))
    }

    /// Asks the operating system to back each large weight matrix (4 MiB and more) with 2 MiB
    /// pages: the forward product reads a wide layer's weights a few lines per row, rows apart,
    /// which with 4 KiB pages needs a TLB entry per row. A hint (Linux with glibc only; elsewhere,
    /// or when refused, nothing changes); the values never change. Training calls it; call it on
    /// a model you train with [`Mlp::train_step`] yourself.
    pub fn advise_huge_pages(&mut self) {
        for weight in self
            .layers
            .iter_mut()
            .filter_map(|l| l.weight.as_slice_mut())
        {
            crate::pages::advise_huge(weight);
        }
    }

    /// Total number of parameters.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(Dense::parameters).sum()
    }

    /// Forward pass of a training step: fills `ws` with every layer's output for `x`
    /// (`(rows, inputs)`), then replaces the logits with the loss gradient `(S - Y) / rows`.
    /// Returns the summed cross-entropy loss and the correct predictions (with dropout).
    ///
    /// # Panics
    /// If `x` has the wrong number of columns or is not standard layout, `labels.len()` differs
    /// from `x.nrows()`, or `ws` was made for another model or fewer rows.
    pub fn forward_train(
        &self,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        ws: &mut Workspace,
        dropout: StepDropout,
    ) -> BatchStats {
        ws.with_nonzero(&x, |ws, nonzero| {
            self.forward_nonzero(x, labels, ws, dropout, nonzero)
        })
    }

    /// [`Mlp::forward_train`] given the batch's nonzero input columns
    /// ([`kernels::nonzero_columns`] of `x`), which its first product skips to.
    pub(crate) fn forward_nonzero(
        &self,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        ws: &mut Workspace,
        dropout: StepDropout,
        nonzero: &[u32],
    ) -> BatchStats {
        let rows = x.nrows();
        let last = self.layers.len() - 1;
        self.forward_hidden(x, ws, Some(nonzero), |l| dropout.layer(l));
        let logits = ws.acts[last].slice_mut(s![..rows, ..]);
        kernels::softmax_cross_entropy(
            logits,
            self.layers[last].bias.view(),
            labels,
            Some(1.0 / rows as f32),
        )
    }

    /// What the products of one training step on `(x, labels)` with `dropout` execute, layer
    /// by layer ([`kernels::layer_work`]): the zeros of each layer's input and the FLOPs run
    /// against the dense count. Runs the step's forward pass in `ws`; the weights do not
    /// change.
    ///
    /// # Panics
    /// As [`Mlp::forward_train`].
    pub fn step_work(
        &self,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        ws: &mut Workspace,
        dropout: StepDropout,
    ) -> Vec<kernels::LayerWork> {
        ws.with_nonzero(&x, |ws, nonzero| {
            self.forward_nonzero(x, labels, ws, dropout, nonzero);
            let rows = x.nrows();
            let work = |l: usize, layer: &Dense| {
                let outputs = layer.bias.len();
                match l {
                    0 => kernels::layer_work(ws.kernels, &x, outputs, Some(nonzero)),
                    _ => {
                        let input = ws.acts[l - 1].slice(s![..rows, ..]);
                        kernels::layer_work(ws.kernels, &input, outputs, None)
                    }
                }
            };
            self.layers
                .iter()
                .enumerate()
                .map(|(l, layer)| work(l, layer))
                .collect()
        })
    }

    /// Runs every layer's product (and the hidden layers' bias + ReLU + dropout), leaving the
    /// output layer's product `h W` without its bias in `ws.acts[last]`. Given `x`'s nonzero
    /// columns, the first layer's product skips the others.
    fn forward_hidden(
        &self,
        x: ArrayView2<'_, f32>,
        ws: &mut Workspace,
        nonzero: Option<&[u32]>,
        dropout: impl Fn(usize) -> Option<Dropout>,
    ) {
        let rows = x.nrows();
        if x.ncols() != self.inputs() || !ws.fits(self, rows) {
            workspace_error(rows);
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.acts.split_at_mut(l);
            let input = if l == 0 {
                x.view()
            } else {
                before[l - 1].slice(s![..rows, ..])
            };
            let mut z = after[0].slice_mut(s![..rows, ..]);
            let w = layer.weight.view();
            if let (0, Some(nonzero)) = (l, nonzero) {
                kernels::matmul_nonzero(ws.kernels, &mut z, &input, &w, nonzero);
            } else {
                kernels::matmul(ws.kernels, &mut z, &input, &w);
            }
            if l < last {
                kernels::bias_relu_dropout(z, layer.bias.view(), dropout(l));
            }
        }
    }

    /// Inference on a chunk: summed loss, correct count and predicted classes for `x`
    /// (no dropout).
    /// `ws.acts[last]` is left holding the logits (bias included).
    ///
    /// # Panics
    /// As [`Mlp::forward_train`]; also if `predictions.len() != x.nrows()`.
    pub fn loss_and_predict(
        &self,
        x: ArrayView2<'_, f32>,
        labels: &[u32],
        predictions: &mut [u32],
        ws: &mut Workspace,
    ) -> BatchStats {
        let rows = x.nrows();
        let last = self.layers.len() - 1;
        self.forward_hidden(x, ws, None, |_| None);
        let stats = kernels::softmax_cross_entropy(
            ws.acts[last].slice_mut(s![..rows, ..]),
            self.layers[last].bias.view(),
            labels,
            None,
        );
        kernels::argmax_rows(ws.acts[last].slice(s![..rows, ..]), predictions);
        stats
    }

    /// An error unless `x` has one column per input of the model.
    fn check_features(&self, x: &ArrayView2<'_, f32>) -> Result<()> {
        if x.ncols() != self.inputs() {
            return Err(Error::Shape {
                what: "features (columns of x) vs the model's inputs".into(),
                expected: self.inputs(),
                found: x.ncols(),
            });
        }
        Ok(())
    }

    /// Class probabilities for each row of `x` (`(samples, inputs)` -> `(samples, classes)`),
    /// without dropout. `x` may have any memory layout.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` does not have [`Mlp::inputs`] columns.
    pub fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.check_features(&x)?;
        let x = x.as_standard_layout();
        let mut out = Array2::zeros((x.nrows(), self.classes()));
        let mut ws = Workspace::new(self, EVAL_ROWS.min(x.nrows()).max(1));
        let last = self.layers.len() - 1;
        for (xc, mut oc) in x
            .axis_chunks_iter(Axis(0), EVAL_ROWS)
            .zip(out.axis_chunks_iter_mut(Axis(0), EVAL_ROWS))
        {
            self.forward_hidden(xc, &mut ws, None, |_| None);
            let rows = xc.nrows();
            let mut logits: ArrayViewMut2<'_, f32> = ws.acts[last].slice_mut(s![..rows, ..]);
            kernels::softmax(logits.view_mut(), self.layers[last].bias.view());
            oc.assign(&logits);
        }
        Ok(out)
    }

    /// The most probable class of each row of `x` (any memory layout).
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` does not have [`Mlp::inputs`] columns.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Vec<u32>> {
        let p = self.predict_proba(x)?;
        let mut out = vec![0; p.nrows()];
        kernels::argmax_rows(p.view(), &mut out);
        Ok(out)
    }

    /// Mean cross-entropy, accuracy and confusion matrix of the model on the rows of `x` (any
    /// memory layout) with labels `y`, without dropout: what [`crate::train::evaluate`] gives for a
    /// [`crate::Split`] holding the same samples.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` does not have [`Mlp::inputs`] columns or `y` one label per
    /// row; [`Error::LabelOutOfRange`] for a label not below [`Mlp::classes`].
    pub fn evaluate(&self, x: ArrayView2<'_, f32>, y: &[u32]) -> Result<Evaluation> {
        self.check_features(&x)?;
        if y.len() != x.nrows() {
            return Err(Error::Shape {
                what: "labels (y) vs rows of x".into(),
                expected: x.nrows(),
                found: y.len(),
            });
        }
        let classes = self.classes();
        check_labels(y, classes, "y")?;
        let x = x.as_standard_layout();
        let rows = EVAL_ROWS.min(x.nrows()).max(1);
        let mut ws = Workspace::new(self, rows);
        let mut predictions = vec![0; rows];
        let mut confusion = vec![vec![0usize; classes]; classes];
        let mut loss = 0.0f64;
        for (xc, yc) in x
            .axis_chunks_iter(Axis(0), EVAL_ROWS)
            .zip(y.chunks(EVAL_ROWS))
        {
            let pred = &mut predictions[..yc.len()];
            loss += self.loss_and_predict(xc, yc, pred, &mut ws).loss;
            for (&t, &p) in yc.iter().zip(pred.iter()) {
                confusion[t as usize][p as usize] += 1;
            }
        }
        Ok(Evaluation::new(loss, confusion))
    }
}

/// An error naming the first label of `labels` (called `name` in the message) that is not
/// below `classes`.
pub(crate) fn check_labels(labels: &[u32], classes: usize, name: &str) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(index) => Err(Error::LabelOutOfRange {
            labels: name.into(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}

/// Matrix-product FLOPs of one training sample through a network of `sizes`: forward
/// `2 * in * out` per layer, the weight-gradient update as much again, and the input gradient
/// as much again for every layer but the first (whose input gradient is never computed).
pub fn train_flops_per_sample(sizes: &[usize]) -> f64 {
    sizes
        .windows(2)
        .enumerate()
        .map(|(l, w)| 2.0 * w[0] as f64 * w[1] as f64 * if l == 0 { 2.0 } else { 3.0 })
        .sum()
}

/// Checks hidden-layer widths: at most [`MAX_LAYERS`] of them, each in `1..=MAX_WIDTH`.
pub(crate) fn validate_hidden(hidden: &[usize]) -> Result<()> {
    if hidden.len() > MAX_LAYERS {
        return Err(Error::Config {
            field: "layers",
            reason: format!("at most {MAX_LAYERS} hidden layers, got {}", hidden.len()),
        });
    }
    if let Some(&bad) = hidden.iter().find(|&&n| !width_accepted(n)) {
        return Err(Error::Config {
            field: "hidden",
            reason: format!("widths must be in 1..={MAX_WIDTH}, got {bad}"),
        });
    }
    Ok(())
}

/// Checks layer sizes `[inputs, hidden..., classes]`.
///
/// # Errors
/// [`Error::Config`] naming the offending size.
pub(crate) fn validate_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.len() < 2 {
        return Err(Error::Config {
            field: "sizes",
            reason: format!("need at least inputs and classes, got {sizes:?}"),
        });
    }
    validate_hidden(&sizes[1..sizes.len() - 1])?;
    if let Some(&bad) = [sizes[0], sizes[sizes.len() - 1]]
        .iter()
        .find(|&&n| !width_accepted(n))
    {
        return Err(Error::Config {
            field: "sizes",
            reason: format!("inputs and classes must be in 1..={MAX_WIDTH}, got {bad}"),
        });
    }
    Ok(())
}
