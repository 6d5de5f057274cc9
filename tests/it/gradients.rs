//! Gradient checks: relumax's fused backward + SGD step, held to central finite differences
//! of the loss computed here in float64, independently of relumax, with the step's own dropout
//! masks. Every tensor's gradient must be within 1e-4 of its largest element: small networks
//! in every parameter, and a wide one (MNIST images through 1,024 and 1,024 units, batches
//! below and above 64 rows) in sampled ones, through the kernels a real step takes (the first
//! layer's row-by-row sparse forward and sparse update, the hidden layers' row-by-row forward
//! and fused backward through ReLU + dropout, the transposed-input and multi-block update).

use ndarray::{Array1, Array2, Axis};
use relumax::kernels::bias_relu_dropout;
use relumax::{Dataset, Init, Mlp, Sgd, model::StepDropout, model::Workspace};

/// The largest error allowed, relative to the tensor's largest gradient element.
const TOLERANCE: f64 = 1e-4;

/// The finite-difference step, in float64 (its rounding and truncation errors are far below
/// the tolerance; small enough that few perturbations move a ReLU input across zero).
const EPS: f64 = 1e-7;

/// A network, batch and dropout masks in float64.
struct Reference {
    layers: Vec<(Array2<f64>, Array1<f64>)>,
    /// Per hidden layer: 0 where the unit is dropped, `1 / (1 - p)` where kept.
    masks: Vec<Array2<f64>>,
    x: Array2<f64>,
    labels: Vec<u32>,
}

impl Reference {
    fn new(model: &Mlp, x: &Array2<f32>, labels: &[u32], dropout: StepDropout) -> Reference {
        let hidden = &model.layers()[..model.layers().len() - 1];
        let masks = hidden
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                // relumax's own dropout kernel on ones: its mask, scale included.
                let mut ones = Array2::<f32>::ones((x.nrows(), layer.bias().len()));
                let zero = Array1::<f32>::zeros(layer.bias().len());
                bias_relu_dropout(ones.view_mut(), zero.view(), dropout.layer(l));
                ones.mapv(f64::from)
            })
            .collect();
        Reference {
            layers: model
                .layers()
                .iter()
                .map(|l| (l.weight().mapv(f64::from), l.bias().mapv(f64::from)))
                .collect(),
            masks,
            x: x.mapv(f64::from),
            labels: labels.to_vec(),
        }
    }

    /// The mean cross-entropy of the batch.
    fn loss(&self) -> f64 {
        let mut h = self.x.clone();
        for (l, (w, b)) in self.layers.iter().enumerate() {
            h = h.dot(w) + b;
            if let Some(mask) = self.masks.get(l) {
                h.mapv_inplace(|v| v.max(0.0));
                h *= mask;
            }
        }
        let total: f64 = h
            .rows()
            .into_iter()
            .zip(&self.labels)
            .map(|(row, &y)| {
                let max = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
                let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
                sum.ln() + max - row[y as usize]
            })
            .sum();
        total / self.x.nrows() as f64
    }

    /// `d loss / d parameter` by central differences; `bias` picks the layer's bias (index
    /// `(0, j)`) instead of its weight.
    fn numeric(&mut self, layer: usize, bias: bool, (i, j): (usize, usize)) -> f64 {
        let nudge = |this: &mut Reference, by: f64| {
            let (w, b) = &mut this.layers[layer];
            let p = if bias { &mut b[j] } else { &mut w[[i, j]] };
            *p += by;
        };
        let at = |this: &mut Reference, d: f64| {
            nudge(this, d);
            let loss = this.loss();
            nudge(this, -d);
            loss
        };
        let (plus, minus) = (at(self, EPS), at(self, -EPS));
        (plus - minus) / (2.0 * EPS)
    }
}

/// relumax's gradient of each layer's weight and bias (as `(1, n)`): one SGD step with
/// learning rate 1, old minus new parameters, in float64.
fn relumax_gradients(
    model: &Mlp,
    x: &Array2<f32>,
    labels: &[u32],
    dropout: StepDropout,
) -> Vec<[Array2<f64>; 2]> {
    let mut stepped = model.clone();
    let mut ws = Workspace::new(model, x.nrows());
    let mut sgd = Sgd::new(&stepped, 1.0, 0.0);
    stepped.train_step(x.view(), labels, &mut ws, dropout, &mut sgd);
    model
        .layers()
        .iter()
        .zip(stepped.layers())
        .map(|(before, after)| {
            let w = (before.weight() - after.weight()).mapv(f64::from);
            let b = (before.bias() - after.bias()).mapv(f64::from);
            [w, b.insert_axis(Axis(0))]
        })
        .collect()
}

/// Checks relumax's gradients of `model` on `(x, labels)` with `dropout` against finite
/// differences: every parameter, or per tensor its `probes` largest gradients and `probes`
/// spread over the rest.
fn gradient_check(model: &Mlp, x: &Array2<f32>, labels: &[u32], p: f32, probes: Option<usize>) {
    let dropout = StepDropout {
        p,
        seed: 3,
        epoch: 1,
        step: 2,
    };
    let analytic = relumax_gradients(model, x, labels, dropout);
    let mut reference = Reference::new(model, x, labels, dropout);
    let mut checked = 0;
    for (layer, tensors) in analytic.iter().enumerate() {
        for (t, g) in tensors.iter().enumerate() {
            let largest = g.fold(0.0f64, |a, &v| a.max(v.abs()));
            assert!(largest > 1e-4, "layer {layer} tensor {t}: no gradient");
            let mut at: Vec<(usize, usize)> = g.indexed_iter().map(|(ij, _)| ij).collect();
            if let Some(k) = probes {
                let spread: Vec<(usize, usize)> =
                    at.iter().step_by(at.len() / k + 1).copied().collect();
                at.sort_by(|a, b| g[*b].abs().total_cmp(&g[*a].abs()));
                at.truncate(k);
                at.extend(spread);
            }
            for ij in at {
                let numeric = reference.numeric(layer, t == 1, ij);
                let error = (numeric - g[ij]).abs();
                assert!(
                    error <= TOLERANCE * largest,
                    "layer {layer} {} {ij:?} (p {p}): relumax {} against {numeric}, error \
                     {:.1e} of the largest gradient {largest:e}",
                    ["weight", "bias"][t],
                    g[ij],
                    error / largest
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    if p > 0.0 {
        // The masks really mattered: the gradient differs from the one without dropout.
        let plain = relumax_gradients(model, x, labels, StepDropout { p: 0.0, ..dropout });
        assert_ne!(plain[0][0], analytic[0][0]);
    }
}

/// A small batch of mixed-sign inputs and labels cycling through the classes.
fn small(sizes: &[usize]) -> (Mlp, Array2<f32>, Vec<u32>) {
    let rows = 5;
    let x = Array2::from_shape_fn((rows, sizes[0]), |(i, j)| {
        ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0
    });
    let classes = *sizes.last().unwrap() as u32;
    let labels = (0..rows as u32).map(|i| i % classes).collect();
    (Mlp::new(sizes, Init::He, 11).unwrap(), x, labels)
}

#[test]
fn gradients_match_finite_differences_one_hidden_layer() {
    let (model, x, y) = small(&[6, 9, 4]);
    gradient_check(&model, &x, &y, 0.0, None);
    gradient_check(&model, &x, &y, 0.5, None);
}

#[test]
fn gradients_match_finite_differences_two_hidden_layers() {
    let (model, x, y) = small(&[6, 8, 7, 3]);
    gradient_check(&model, &x, &y, 0.0, None);
    gradient_check(&model, &x, &y, 0.5, None);
}

#[test]
fn gradients_match_finite_differences_through_the_wide_kernels() {
    let mnist = Dataset::bundled().unwrap();
    let model = Mlp::new(&[784, 1024, 1024, 10], Init::He, 5).unwrap();
    // 40 rows (one partial sum, transposed inputs) and 80 (two partial sums).
    for rows in [40, 80] {
        let (x, y) = mnist.train.rows(&(0..rows).collect::<Vec<_>>());
        gradient_check(&model, &x, &y, 0.5, Some(12));
    }
}
