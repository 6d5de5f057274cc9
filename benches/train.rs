//! Training-engine benchmarks over the paper's width grid (batch 32): the forward pass, one
//! full SGD step, the backward pass of a layer, the fused kernels alone, the GEMM shapes of a
//! step, a layer's products under each kernel backend (relumax's AVX-512 kernels against
//! OpenBLAS), and one epoch of 1x128.
//!
//! Run with: `cargo bench --bench train` (or `-- step` etc. for one group).
//! Throughput is in FLOP (matrix products) or elements (element-wise kernels) per second.

use std::ops::ControlFlow;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use relumax::{
    Dataset, Init, Mlp, Sgd, StepDropout, TrainConfig, Trainer, Workspace, kernels,
    train_flops_per_sample,
};

const WIDTHS: [usize; 5] = [128, 256, 512, 1024, 2048];
const BATCH: usize = 32;

fn input(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 7) % 255) as f32 / 255.0
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
    // As in training: parallelism comes from rayon splitting the products.
    relumax::set_blas_threads(1);
    let mut group = c.benchmark_group("step");
    let x = input(BATCH, 784);
    let y = labels();
    for layers in [1usize, 2] {
        for width in WIDTHS {
            let sizes: Vec<usize> = std::iter::once(784)
                .chain(std::iter::repeat_n(width, layers))
                .chain(std::iter::once(10))
                .collect();
            let mut model = Mlp::new(&sizes, Init::He, 0).unwrap();
            let mut ws = Workspace::new(&model, BATCH);
            let mut sgd = Sgd::new(&model, 1e-4, 0.0);
            group.throughput(Throughput::Elements(
                (train_flops_per_sample(&sizes) * BATCH as f64) as u64,
            ));
            let mut k = 0;
            group.bench_function(BenchmarkId::new(format!("sgd_{layers}x"), width), |b| {
                b.iter(|| {
                    k += 1;
                    sgd.step(&mut model, &mut ws, x.view(), &y, dropout(k)).loss
                })
            });
            let model = Mlp::new(&sizes, Init::He, 0).unwrap();
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
}

/// The backward pass of one hidden layer alone: the input gradient and the fused SGD update
/// (`kernels::backward_sgd`), for the first layer (784 inputs, no input gradient) and a
/// width x width hidden layer.
fn backward(c: &mut Criterion) {
    relumax::set_blas_threads(1);
    let mut group = c.benchmark_group("backward");
    for width in WIDTHS {
        for (name, inputs, with_dh) in [("first_layer", 784, false), ("hidden_layer", width, true)]
        {
            let mut w = input(inputs, width).mapv(|v| v - 0.5);
            let dz = input(BATCH, width).mapv(|v| (v - 0.5) * 1e-3);
            let x = input(BATCH, inputs);
            let mut dh = Array2::<f32>::zeros((BATCH, inputs));
            let products = if with_dh { 2 } else { 1 };
            group.throughput(Throughput::Elements(
                (products * 2 * BATCH * inputs * width) as u64,
            ));
            group.bench_function(BenchmarkId::new(name, width), |b| {
                b.iter(|| {
                    let mut dh_view = dh.view_mut();
                    let dh_arg = with_dh.then_some(&mut dh_view);
                    kernels::backward_sgd(dh_arg, &mut w.view_mut(), &dz.view(), &x.view(), 1e-6)
                })
            });
        }
    }
    group.finish();
}

fn fused(c: &mut Criterion) {
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
}

fn gemm(c: &mut Criterion) {
    relumax::set_blas_threads(1);
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
}

/// A layer's products as training runs them (`kernels::forward`, `kernels::backward_sgd` with
/// the input gradient) under each backend: relumax's AVX-512 kernels where they apply
/// (`auto`) against OpenBLAS for everything (`blas`), side by side.
fn backends(c: &mut Criterion) {
    relumax::set_blas_threads(1);
    let mut group = c.benchmark_group("backends");
    for width in WIDTHS {
        for (name, inputs) in [("first", 784), ("hidden", width)] {
            let x = input(BATCH, inputs);
            let mut w = input(inputs, width).mapv(|v| v - 0.5);
            let dz = input(BATCH, width).mapv(|v| (v - 0.5) * 1e-3);
            let mut z = Array2::<f32>::zeros((BATCH, width));
            let mut dh = Array2::<f32>::zeros((BATCH, inputs));
            group.throughput(Throughput::Elements((2 * BATCH * inputs * width) as u64));
            for (label, backend) in [
                ("auto", kernels::Backend::Auto),
                ("blas", kernels::Backend::Blas),
            ] {
                kernels::set_backend(backend);
                group.bench_function(
                    BenchmarkId::new(format!("forward_{name}_{label}"), width),
                    |b| b.iter(|| kernels::forward(&mut z.view_mut(), &x.view(), &w.view())),
                );
                group.bench_function(
                    BenchmarkId::new(format!("backward_{name}_{label}"), width),
                    |b| {
                        b.iter(|| {
                            let mut dh_view = dh.view_mut();
                            kernels::backward_sgd(
                                Some(&mut dh_view),
                                &mut w.view_mut(),
                                &dz.view(),
                                &x.view(),
                                1e-6,
                            )
                        })
                    },
                );
            }
        }
    }
    kernels::set_backend(kernels::Backend::Auto);
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let data = Dataset::bundled().expect("bundled MNIST loads");
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
                .fit(&data, |_| ControlFlow::Continue(()))
                .unwrap()
                .test
                .accuracy
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
