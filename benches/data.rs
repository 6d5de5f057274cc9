//! Data loading benchmarks: opening and mapping the bundled MNIST, and gathering mini-batches.
//!
//! Run with: `cargo bench --bench data`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use relumax::{Dataset, LoadOptions, data::Batcher, data::Holdout};

fn open(c: &mut Criterion) {
    // The first open decompresses and caches; the benchmark measures the steady state.
    Dataset::bundled().expect("bundled MNIST loads");
    let mut group = c.benchmark_group("open");
    group.sample_size(20);
    group.throughput(Throughput::Elements(70_000));
    group.bench_function("mnist_verified", |b| b.iter(Dataset::bundled));
    let opts = LoadOptions {
        verify: false,
        ..Default::default()
    };
    group.bench_function("mnist_unverified", |b| {
        b.iter(|| Dataset::open_with(Dataset::bundled_dir(), &opts))
    });
    group.finish();
}

fn gather(c: &mut Criterion) {
    let data = Dataset::bundled().expect("bundled MNIST loads");
    let holdout = Holdout::new(data.train.len(), 0.2, 0);
    let mut group = c.benchmark_group("gather");
    for batch in [32usize, 256, 1000] {
        let mut batcher = Batcher::new(holdout.train.clone(), batch, data.features(), 0);
        batcher.shuffle(0);
        let steps = batcher.num_batches();
        group.throughput(Throughput::Elements(batch as u64));
        let mut step = 0;
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, _| {
            b.iter(|| {
                step = (step + 1) % steps;
                let (x, _) = batcher.batch(&data.train, step);
                x[[0, 0]]
            })
        });
    }
    group.finish();
}

criterion_group!(benches, open, gather);
criterion_main!(benches);
