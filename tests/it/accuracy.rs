//! One full gradient step, held to a float64 computation of the same step written here
//! independently: at batch sizes 32, 1,000 and 60,000, every layer's weight and bias step must be
//! within 1e-4 of its largest element. (Adding each block's gradient into `W` as it goes, as
//! OpenBLAS's `beta = 1` did, rounded `W` about 190 times in a step of 60,000 rows and missed
//! this by 25x.)

use ndarray::{Array1, Array2, ArrayView2, Axis};
use relumax::kernels::Kernels;
use relumax::{Dataset, Init, Mlp, Sgd, model::StepDropout, model::Workspace};

/// The largest error allowed, relative to the step's largest element.
const TOLERANCE: f64 = 1e-4;

fn f64s(a: ArrayView2<'_, f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

/// The steps `-lr * gradient` of `[W0, b0, W1, b1]` for the mean cross-entropy of a
/// 784 -> hidden -> 10 ReLU network without dropout, in float64 throughout.
fn reference_step(model: &Mlp, x: &Array2<f64>, y: &[u32], lr: f64) -> Vec<Array2<f64>> {
    let [l0, l1] = model.layers() else {
        panic!("two layers")
    };
    let (w0, w1) = (f64s(l0.weight().view()), f64s(l1.weight().view()));
    let (b0, b1) = (l0.bias().mapv(f64::from), l1.bias().mapv(f64::from));
    let m = x.nrows() as f64;
    let h = (x.dot(&w0) + &b0).mapv(|v| v.max(0.0));
    let mut dz = h.dot(&w1) + &b1;
    for (mut row, &label) in dz.rows_mut().into_iter().zip(y) {
        let max = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum / m);
        row[label as usize] -= 1.0 / m;
    }
    let mut dh = dz.dot(&w1.t());
    dh.zip_mut_with(&h, |g, &a| *g = if a > 0.0 { *g } else { 0.0 });
    let column = |b: Array1<f64>| b.insert_axis(Axis(0));
    vec![
        x.t().dot(&dh) * -lr,
        column(dh.sum_axis(Axis(0))) * -lr,
        h.t().dot(&dz) * -lr,
        column(dz.sum_axis(Axis(0))) * -lr,
    ]
}

/// The steps relumax took: new minus old parameters, in float64.
fn taken_step(before: &Mlp, after: &Mlp) -> Vec<Array2<f64>> {
    before
        .layers()
        .iter()
        .zip(after.layers())
        .flat_map(|(b, a)| {
            let w = f64s(a.weight().view()) - f64s(b.weight().view());
            let bias = (a.bias().mapv(f64::from) - b.bias().mapv(f64::from)).insert_axis(Axis(0));
            [w, bias]
        })
        .collect()
}

#[test]
fn one_step_matches_float64_at_every_batch_size() {
    let mnist = Dataset::bundled().unwrap();
    let (x_all, y_all) = mnist.train.rows(&(0..60_000).collect::<Vec<_>>());
    let lr = 0.5;
    for batch in [32, 1000, 60_000] {
        let x = x_all.slice(ndarray::s![..batch, ..]);
        let y = &y_all[..batch];
        let before = Mlp::new(&[784, 32, 10], Init::He, 7).unwrap();
        let mut after = before.clone();
        let mut ws = Workspace::with_kernels(&before, batch, Kernels::Auto);
        let mut sgd = Sgd::new(&after, lr, 0.0);
        let no_dropout = StepDropout {
            p: 0.0,
            seed: 0,
            epoch: 0,
            step: 0,
        };
        after.train_step(x, y, &mut ws, no_dropout, &mut sgd);
        let expected = reference_step(&before, &f64s(x), y, f64::from(lr));
        let taken = taken_step(&before, &after);
        for (p, (t, e)) in ["W0", "b0", "W1", "b1"]
            .iter()
            .zip(taken.iter().zip(&expected))
        {
            let largest = e.fold(0.0f64, |a, &v| a.max(v.abs()));
            let error = (t - e).fold(0.0f64, |a, &v| a.max(v.abs()));
            assert!(largest > 0.0, "{p}: no step at batch {batch}");
            assert!(
                error <= TOLERANCE * largest,
                "{p} at batch {batch}: error {error:e} of a largest step {largest:e} ({:.1e})",
                error / largest
            );
        }
    }
}
