//! The training step allocates nothing: a counting global allocator sees no allocation while
//! workspace-backed SGD steps run (after a warm-up), on one thread or on a pool of two, with
//! and without momentum, at widths up to 1,024; nor between the steps of `Trainer::fit`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::Array2;
use std::ops::ControlFlow;

use relumax::{
    Dataset, Event, Init, Mlp, Sgd, TrainConfig, Trainer, data::Batcher, data::Holdout,
    model::StepDropout, model::Workspace, openblas::set_blas_threads,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test: the counter is global, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations made while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.swap(0, Ordering::SeqCst)
}

fn synthetic(n: usize) -> Dataset {
    let x = Array2::from_shape_fn((n, 784), |(i, j)| ((i * 7 + j) % 255) as f32 / 255.0);
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    Dataset::from_arrays(x.clone(), y.clone(), 10)
        .unwrap()
        .with_test(x, y)
        .unwrap()
}

#[test]
fn the_counter_counts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let probe = allocations_in(|| drop(std::hint::black_box(Array2::<f32>::zeros((4, 4)))));
    assert_eq!(
        probe, 1,
        "the counter sees allocations from the library's kind of code"
    );
}

#[test]
fn training_steps_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_blas_threads(1);
    let data = synthetic(1000);
    // Plain SGD; momentum; and hidden layers of 1,024, whose fused backward takes the wide
    // blocks and the transposed-input buffers.
    let cases: [(&[usize], f32); 3] = [
        (&[784, 256, 256, 10], 0.0),
        (&[784, 256, 256, 10], 0.9),
        (&[784, 1024, 1024, 10], 0.0),
    ];
    // On a team of one and of two threads (as `Trainer::run`), and on a rayon pool (the
    // kernels' fallback for a caller without a team).
    for (sizes, momentum) in cases {
        for (threads, team) in [(1, true), (2, true), (2, false)] {
            let run = || {
                let mut model = Mlp::new(sizes, Init::He, 0).unwrap();
                let mut ws = Workspace::new(&model, 32);
                let mut sgd = Sgd::new(&model, 0.01, momentum);
                let holdout = Holdout::new(1000, 0.2, 0);
                let mut batcher = Batcher::new(holdout.train, 32, 784, 0);
                batcher.shuffle(0);
                let mut step = |k: usize| {
                    let (x, y) = batcher.batch(&data.train, k % batcher.num_batches());
                    let dropout = StepDropout {
                        p: 0.5,
                        seed: 0,
                        epoch: 0,
                        step: k,
                    };
                    model.train_step(x, y, &mut ws, dropout, &mut sgd).loss
                };
                for k in 0..5 {
                    step(k);
                }
                allocations_in(|| {
                    for k in 5..30 {
                        step(k);
                    }
                })
            };
            let n = if team {
                common::pool(threads).install(run)
            } else {
                common::rayon_pool(threads).install(run)
            };
            let on = if team { "a team" } else { "a rayon pool" };
            assert_eq!(
                n, 0,
                "{sizes:?} momentum {momentum}, {threads} threads on {on}: {n} allocations in 25 \
                 steps"
            );
        }
    }
}

#[test]
fn the_steps_of_a_whole_fit_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_blas_threads(1);
    let data = synthetic(2000);
    // From the third step of each epoch to its last: the training loop itself (batches,
    // dropout, the next batch's gather, running losses, learning-curve points), not the
    // evaluation and bookkeeping between epochs.
    let mut counted = Vec::new();
    let config = TrainConfig {
        hidden: vec![256, 256],
        epochs: 2,
        momentum: 0.5,
        threads: Some(2),
        ..TrainConfig::default()
    };
    let result = Trainer::new(config)
        .unwrap()
        .fit(&data, |event| {
            if let Event::Step { step, steps, .. } = *event {
                if step == 2 {
                    ALLOCATIONS.store(0, Ordering::SeqCst);
                    COUNTING.store(true, Ordering::SeqCst);
                } else if step == steps {
                    COUNTING.store(false, Ordering::SeqCst);
                    counted.push((steps - 2, ALLOCATIONS.swap(0, Ordering::SeqCst)));
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(result.epochs.len(), 2);
    // 1,600 training samples in batches of 32: 50 steps an epoch, 48 of them counted.
    assert_eq!(
        counted,
        [(48, 0), (48, 0)],
        "(steps, allocations) per epoch"
    );
}
