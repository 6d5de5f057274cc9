//! Training-engine benchmarks over the paper's width grid (batch 32): the forward pass, one
//! full SGD step, the backward pass of a layer, the fused kernels alone, the GEMM shapes of a
//! step, a layer's products on every implementation this CPU runs and on OpenBLAS, and one
//! epoch of 1x128.
//!
//! Run with: `cargo bench --bench train` (or `-- step` etc. for one group).
//! Throughput is in FLOP (matrix products) or elements (element-wise kernels) per second.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use relumax::kernels::Kernels;
use relumax::{
    Dataset, Init, Mlp, Sgd, TrainConfig, Trainer, kernels, model::StepDropout, model::Workspace,
    model::train_flops_per_sample,
};

const WIDTHS: [usize; 5] = [128, 256, 512, 1024, 2048];
const BATCH: usize = 32;

fn input(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 7) % 255) as f32 / 255.0
    })
}

/// A batch of 32 real MNIST training images (rows spread over the file) and their labels: the
/// first layer skips the pixel columns that are zero in every image of a batch, so synthetic
/// inputs would not time what training runs.
fn mnist_batch() -> (Array2<f32>, Vec<u32>) {
    let rows: Vec<usize> = (0..BATCH).map(|i| i * 1871 + 5).collect();
    mnist().train.rows(&rows)
}

/// The bundled MNIST, loaded (and its checksums verified) once for every group.
fn mnist() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| Dataset::bundled().expect("bundled MNIST loads"))
}

/// The columns of `x` that are not zero throughout.
fn nonzero(x: &Array2<f32>) -> Vec<u32> {
    let mut nonzero = Vec::new();
    kernels::nonzero_columns(&x.view(), &mut nonzero);
    nonzero
}

/// The threads the groups run their products on, as training does: a team of every core (what
/// `Trainer::run` starts for networks of 64 MFLOP a step and more).
fn team() -> &'static kernels::Team {
    static TEAM: OnceLock<kernels::Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        kernels::Team::new(relumax::train::cores()).expect("the benchmark's threads start")
    })
}

fn labels() -> Vec<u32> {
    (0..BATCH as u32).map(|i| i % 10).collect()
}

fn dropout(step: usize) -> StepDropout {
    StepDropout {
        p: 0.5,
        seed: 0,
        epoch: 0,
        step,
    }
}

fn step(c: &mut Criterion) {
    team().install(|| {
        // As in training: parallelism comes from the team splitting the products.
        relumax::openblas::set_blas_threads(1);
        let mut group = c.benchmark_group("step");
        let (x, y) = mnist_batch();
        for layers in [1usize, 2] {
            for width in WIDTHS {
                let sizes: Vec<usize> = std::iter::once(784)
                    .chain(std::iter::repeat_n(width, layers))
                    .chain(std::iter::once(10))
                    .collect();
                let mut model = Mlp::new(&sizes, Init::He, 0).unwrap();
                model.advise_huge_pages();
                let mut ws = Workspace::new(&model, BATCH);
                let mut sgd = Sgd::new(&model, 1e-4, 0.0);
                group.throughput(Throughput::Elements(
                    (train_flops_per_sample(&sizes) * BATCH as f64) as u64,
                ));
                let mut k = 0;
                group.bench_function(BenchmarkId::new(format!("sgd_{layers}x"), width), |b| {
                    b.iter(|| {
                        k += 1;
                        model
                            .train_step(x.view(), &y, &mut ws, dropout(k), &mut sgd)
                            .loss
                    })
                });
                let mut model = Mlp::new(&sizes, Init::He, 0).unwrap();
                model.advise_huge_pages();
                group.throughput(Throughput::Elements(
                    sizes
                        .windows(2)
                        .map(|w| 2 * BATCH * w[0] * w[1])
                        .sum::<usize>() as u64,
                ));
                group.bench_function(BenchmarkId::new(format!("forward_{layers}x"), width), |b| {
                    b.iter(|| model.forward_train(x.view(), &y, &mut ws, dropout(0)).loss)
                });
            }
        }
        group.finish();
    })
}

/// The input of a network's second hidden layer of `width` units in training: the first
/// layer's output on `images` (bias, ReLU, dropout 0.5), from a 784 -> width -> width -> 10
/// network trained one epoch on 6,000 MNIST images. About three quarters zeros, as real
/// activations fall (not a synthetic pattern).
fn hidden_input(width: usize, images: &Array2<f32>) -> Array2<f32> {
    let m = mnist();
    let (x, y) = m.train.rows(&(0..6000).collect::<Vec<_>>());
    let (tx, ty) = m
        .test
        .as_ref()
        .unwrap()
        .rows(&(0..1000).collect::<Vec<_>>());
    let data = Dataset::from_arrays(x, y, 10)
        .expect("MNIST arrays")
        .with_test(tx, ty)
        .expect("MNIST arrays");
    let config = TrainConfig {
        hidden: vec![width, width],
        epochs: 1,
        ..TrainConfig::default()
    };
    let trained = Trainer::new(config)
        .and_then(|t| t.fit(&data, |_| ControlFlow::Continue(())))
        .expect("one epoch trains");
    let first = &trained.model.layers()[0];
    let mut h = images.dot(first.weight());
    kernels::bias_relu_dropout(h.view_mut(), first.bias().view(), dropout(1).layer(0));
    h
}

/// A weight matrix `(inputs, outputs)` of values in `[-0.5, 0.5]`, held as training holds it:
/// the one layer of a model, in huge pages when large.
fn weights(inputs: usize, outputs: usize) -> Mlp {
    let mut model = Mlp::new(&[inputs, outputs], Init::He, 0).expect("a valid layer");
    let (mut w, _) = model.layers_mut().next().expect("one layer");
    w.assign(&input(inputs, outputs).mapv(|v| v - 0.5));
    model.advise_huge_pages();
    model
}

/// One layer's operands at a width, and its products as training runs them: the first layer
/// (784 inputs, a real MNIST batch) skips the pixel columns that are zero throughout the batch
/// (`kernels::matmul_nonzero`, `kernels::update_nonzero`, no input gradient); a width x width
/// hidden layer and the width x 10 output layer, whose input is a trained network's real
/// activations ([`hidden_input`]), run `kernels::matmul` and `kernels::backward_sgd_relu`.
struct Layer {
    name: &'static str,
    x: Array2<f32>,
    /// `W`, the weights of a one-layer model: backed by huge pages as in training.
    w: Mlp,
    dz: Array2<f32>,
    z: Array2<f32>,
    dh: Array2<f32>,
    /// The first layer's nonzero input columns.
    nonzero: Option<Vec<u32>>,
    /// The code that runs the products.
    kernels: Kernels,
}

impl Layer {
    /// The first layer, a hidden layer and the output layer at `width`.
    fn all(width: usize, images: &Array2<f32>) -> [Layer; 3] {
        let layer = |name, x: Array2<f32>, outputs, nonzero| {
            let inputs = x.ncols();
            Layer {
                name,
                w: weights(inputs, outputs),
                dz: input(BATCH, outputs).mapv(|v| (v - 0.5) * 1e-3),
                z: Array2::zeros((BATCH, outputs)),
                dh: Array2::zeros((BATCH, inputs)),
                x,
                nonzero,
                kernels: Kernels::Auto,
            }
        };
        let hidden = hidden_input(width, images);
        [
            layer("first", images.clone(), width, Some(nonzero(images))),
            layer("hidden", hidden.clone(), width, None),
            layer("output", hidden, 10, None),
        ]
    }

    /// FLOPs of one dense product `x W`.
    fn product_flops(&self) -> u64 {
        (2 * self.x.len() * self.w.classes()) as u64
    }

    fn forward(&mut self) {
        let x = self.x.view();
        let w = self.w.layers()[0].weight().view();
        match &self.nonzero {
            Some(s) => kernels::matmul_nonzero(self.kernels, &mut self.z.view_mut(), &x, &w, s),
            None => kernels::matmul(self.kernels, &mut self.z.view_mut(), &x, &w),
        }
    }

    /// FLOPs of the dense backward products: the update, and the input gradient if any.
    fn backward_flops(&self) -> u64 {
        self.product_flops() * if self.nonzero.is_some() { 1 } else { 2 }
    }

    fn backward(&mut self) {
        let (dz, x) = (self.dz.view(), self.x.view());
        let w = &mut self.w.layers_mut().next().expect("one layer").0;
        let k = self.kernels;
        match &self.nonzero {
            Some(s) => kernels::update_nonzero(k, w, &dz, &x, 1e-6, s),
            None => {
                let dh = &mut self.dh.view_mut();
                kernels::backward_sgd_relu(k, dh, w, &dz, &x, (1e-6, 2.0));
            }
        }
    }
}

/// The backward pass of one layer alone, as training runs it ([`Layer`]). Throughput counts
/// the dense products.
fn backward(c: &mut Criterion) {
    team().install(|| {
        relumax::openblas::set_blas_threads(1);
        let mut group = c.benchmark_group("backward");
        let (images, _) = mnist_batch();
        for width in WIDTHS {
            for mut layer in Layer::all(width, &images) {
                group.throughput(Throughput::Elements(layer.backward_flops()));
                let id = BenchmarkId::new(format!("{}_layer", layer.name), width);
                group.bench_function(id, |b| b.iter(|| layer.backward()));
            }
        }
        group.finish();
    })
}

fn fused(c: &mut Criterion) {
    team().install(|| {
        let mut group = c.benchmark_group("fused");
        for width in WIDTHS {
            let z0 = input(BATCH, width).mapv(|v| v - 0.5);
            let bias = ndarray::Array1::from_elem(width, 0.01f32);
            group.throughput(Throughput::Elements((BATCH * width) as u64));
            let mut z = z0.clone();
            group.bench_function(BenchmarkId::new("bias_relu_dropout", width), |b| {
                b.iter(|| {
                    z.assign(&z0);
                    let d = kernels::Dropout { p: 0.5, key: 7 };
                    kernels::bias_relu_dropout(z.view_mut(), bias.view(), Some(d));
                })
            });
            let h = z.clone();
            let mut g = z0.clone();
            group.bench_function(BenchmarkId::new("relu_dropout_backward", width), |b| {
                b.iter(|| kernels::relu_dropout_backward(g.view_mut(), h.view(), 2.0))
            });
            let grad = z0.clone();
            let mut bias_mut = bias.clone();
            group.bench_function(BenchmarkId::new("bias_sgd", width), |b| {
                b.iter(|| kernels::bias_sgd(bias_mut.view_mut(), grad.view(), 1e-3))
            });
        }
        let logits0 = input(BATCH, 10);
        let bias = ndarray::Array1::zeros(10);
        let y = labels();
        let mut logits = logits0.clone();
        group.throughput(Throughput::Elements((BATCH * 10) as u64));
        group.bench_function("softmax_cross_entropy", |b| {
            b.iter(|| {
                logits.assign(&logits0);
                kernels::softmax_cross_entropy(logits.view_mut(), bias.view(), &y, Some(1.0 / 32.0))
            })
        });
        group.finish();
    })
}

fn gemm(c: &mut Criterion) {
    team().install(|| {
        relumax::openblas::set_blas_threads(1);
        let mut group = c.benchmark_group("gemm");
        for width in WIDTHS {
            for (name, m, k, n, ta) in [
                ("x_w", BATCH, width, width, false),
                ("xT_dz_update", width, BATCH, width, true),
                ("input_x_w0", BATCH, 784, width, false),
            ] {
                let a = if ta { input(k, m) } else { input(m, k) };
                let b = input(k, n);
                let mut out = Array2::<f32>::zeros((m, n));
                group.throughput(Throughput::Elements((2 * m * k * n) as u64));
                group.bench_function(BenchmarkId::new(name, width), |bench| {
                    bench.iter(|| {
                        let av = if ta { a.t() } else { a.view() };
                        kernels::par_gemm(&mut out.view_mut(), 1.0, &av, &b.view(), -1e-6)
                    })
                });
            }
            let dz = input(BATCH, width);
            let w = input(width, width);
            let mut dh = Array2::<f32>::zeros((BATCH, width));
            group.throughput(Throughput::Elements((2 * BATCH * width * width) as u64));
            group.bench_function(BenchmarkId::new("dz_wT", width), |bench| {
                bench.iter(|| kernels::par_gemm(&mut dh.view_mut(), 0.0, &dz.view(), &w.t(), 1.0))
            });
        }
        group.finish();
    })
}

/// A layer's products as training runs them ([`Layer`]) on every implementation this CPU runs
/// (`portable`, `avx2`, `avx512`) and on OpenBLAS (`blas`), side by side.
/// Throughput counts the dense products.
fn backends(c: &mut Criterion) {
    team().install(|| {
        relumax::openblas::set_blas_threads(1);
        let mut group = c.benchmark_group("backends");
        let (images, _) = mnist_batch();
        for width in WIDTHS {
            for mut layer in Layer::all(width, &images) {
                for kernels in Kernels::runnable() {
                    layer.kernels = kernels;
                    let label = kernels.name();
                    let name = layer.name;
                    group.throughput(Throughput::Elements(layer.product_flops()));
                    let id = BenchmarkId::new(format!("forward_{name}_{label}"), width);
                    group.bench_function(id, |b| b.iter(|| layer.forward()));
                    group.throughput(Throughput::Elements(layer.backward_flops()));
                    let id = BenchmarkId::new(format!("backward_{name}_{label}"), width);
                    group.bench_function(id, |b| b.iter(|| layer.backward()));
                }
            }
        }
        group.finish();
    })
}

fn epoch(c: &mut Criterion) {
    let data = mnist();
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(48_000));
    let trainer = Trainer::new(TrainConfig {
        epochs: 1,
        ..Default::default()
    })
    .unwrap();
    group.bench_function("1x128", |b| {
        b.iter(|| {
            trainer
                .fit(data, |_| ControlFlow::Continue(()))
                .unwrap()
                .train_seconds
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = step, backward, fused, gemm, backends, epoch
}
criterion_main!(benches);
