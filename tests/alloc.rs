//! The training step allocates nothing: a counting global allocator sees no allocation while
//! a workspace-backed SGD step runs (after a warm-up), on one thread or on a pool of two.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ndarray::Array2;
use relumax::{
    Batcher, Dataset, Holdout, Init, Mlp, Sgd, StepDropout, Workspace, set_blas_threads,
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

#[test]
fn training_steps_allocate_nothing() {
    set_blas_threads(1);
    // The counter sees allocations from the library's kind of code.
    COUNTING.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(Array2::<f32>::zeros((4, 4)));
    COUNTING.store(false, Ordering::SeqCst);
    drop(probe);
    assert_eq!(
        ALLOCATIONS.swap(0, Ordering::SeqCst),
        1,
        "the counter works"
    );
    let x0 = Array2::from_shape_fn((1000, 784), |(i, j)| ((i * 7 + j) % 255) as f32 / 255.0);
    let y0: Vec<u32> = (0..1000).map(|i| i % 10).collect();
    let data = Dataset::from_arrays(x0.clone(), y0.clone(), x0, y0, 10).unwrap();
    for threads in [1, 2] {
        common::pool(threads).install(|| {
            let mut model = Mlp::new(&[784, 256, 256, 10], Init::He, 0).unwrap();
            let mut ws = Workspace::new(&model, 32);
            let mut sgd = Sgd::new(&model, 0.01, 0.0);
            let holdout = Holdout::new(1000, 0.2, 0);
            let mut batcher = Batcher::new(holdout.train, 32, 784, 0);
            batcher.shuffle(0);
            let mut step = |k: usize, batcher: &mut Batcher| {
                let (x, y) = batcher.batch(&data.train, k % batcher.num_batches());
                let dropout = StepDropout {
                    p: 0.5,
                    seed: 0,
                    epoch: 0,
                    step: k,
                };
                sgd.step(&mut model, &mut ws, x, y, dropout).loss
            };
            for k in 0..5 {
                step(k, &mut batcher);
            }
            ALLOCATIONS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            for k in 5..30 {
                step(k, &mut batcher);
            }
            COUNTING.store(false, Ordering::SeqCst);
        });
        let n = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(
            n, 0,
            "{threads} threads: {n} allocations in 25 training steps"
        );
    }
}
