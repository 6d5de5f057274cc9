//! Proof that the hot path reaches OpenBLAS, and that its results do not depend on the thread
//! count.
//!
//! This test binary defines its own `cblas_sgemm`, which the linker prefers over OpenBLAS's
//! for every call made from the binary (ndarray's included). It counts the call and forwards
//! it to the real function found with `dlsym(RTLD_NEXT)`. If ndarray fell back to its
//! pure-Rust multiplier, the count would stay at zero. (The same idea as ndarray's
//! `blas-mock-tests`, without replacing the arithmetic.)

#![allow(unsafe_code)]

mod common;

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, s};
use relumax::kernels::Kernels;
use relumax::{
    Init, Mlp, Sgd, kernels, model::StepDropout, model::Workspace, openblas::set_blas_threads,
};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// The tests here count calls and read OpenBLAS's process-wide thread count: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_NEXT`.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

/// Counts the call, then runs OpenBLAS's `cblas_sgemm`.
///
/// # Safety
/// Called only by CBLAS users with valid arguments, which are passed through unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cblas_sgemm(
    layout: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: RTLD_NEXT finds the next definition after this binary: OpenBLAS's, which has
    // exactly this signature.
    unsafe {
        let real = dlsym(RTLD_NEXT, c"cblas_sgemm".as_ptr());
        assert!(!real.is_null(), "OpenBLAS's cblas_sgemm not found");
        let real: Sgemm = std::mem::transmute(real);
        real(
            layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
        );
    }
}

fn calls_during(f: impl FnOnce()) -> usize {
    let before = CALLS.load(Ordering::SeqCst);
    f();
    CALLS.load(Ordering::SeqCst) - before
}

/// One SGD step (dropout 0.5) of a fresh `sizes` network on `x`, with `kernels`; the number
/// of `cblas_sgemm` calls it made, and the model after it.
fn one_step(sizes: &[usize], kernels: Kernels, x: &Array2<f32>) -> (usize, Mlp) {
    let mut model = Mlp::new(sizes, Init::He, 0).unwrap();
    let mut ws = Workspace::with_kernels(&model, 32, kernels);
    let y: Vec<u32> = (0..32).map(|i| i % 10).collect();
    let mut sgd = Sgd::new(&model, 0.01, 0.0);
    let dropout = StepDropout {
        p: 0.5,
        seed: 0,
        epoch: 0,
        step: 0,
    };
    let calls = calls_during(|| {
        model.train_step(x.view(), &y, &mut ws, dropout, &mut sgd);
    });
    (calls, model)
}

fn counting_step(sizes: &[usize], kernels: Kernels) -> usize {
    one_step(sizes, kernels, &Array2::from_elem((32, sizes[0]), 0.5f32)).0
}

/// Values in `[-0.5, 0.5)` from a xorshift generator seeded by `seed`.
fn pseudo_random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    })
}

// One test function: the call counter is global to this binary, so nothing may run beside it.
#[test]
fn training_products_reach_cblas_sgemm_and_do_not_depend_on_thread_count() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The counter really sees a fallback: a strided operand keeps ndarray off BLAS.
    let a = pseudo_random(64, 128, 1);
    let b = pseudo_random(128, 64, 2);
    let mut c = Array2::<f32>::zeros((64, 32));
    let strided = calls_during(|| {
        kernels::gemm(
            &mut c.view_mut(),
            0.0,
            &a.view(),
            &b.slice(s![.., ..;2]),
            1.0,
        )
    });
    assert_eq!(strided, 0, "a strided operand must not reach BLAS");
    let mut c = Array2::<f32>::zeros((64, 64));
    assert_eq!(
        calls_during(|| kernels::gemm(&mut c.view_mut(), 0.0, &a.view(), &b.view(), 1.0)),
        1
    );

    set_blas_threads(1);
    // The OpenBLAS backend: every product through sgemm.
    for threads in [1, 2] {
        // 784 -> 128 -> 10. Forward: x W0 in 2 column blocks of 64, each issued as k = 768 + 16
        // (4 calls), then h W1 (1). Backward: for W1's 2 row blocks, dz W1^T and the fused
        // update (4); W0's update in 4 row blocks of 208, 208, 208, 160 (4); the first layer's
        // input gradient is skipped. The same calls for any thread count.
        let step =
            |sizes: &[usize]| common::pool(threads).install(|| counting_step(sizes, Kernels::Blas));
        assert_eq!(step(&[784, 128, 10]), 4 + 1 + 4 + 4);
        // 784 -> 256 -> 256 -> 10: forward 4 blocks x 2 + 4 + 1; backward (dh, W) in 4 row
        // blocks for two layers, and W0's 4 blocks.
        assert_eq!(step(&[784, 256, 256, 10]), 8 + 4 + 1 + 8 + 8 + 4);
    }
    // relumax's arithmetic, on every implementation this CPU runs: no product leaves it.
    for kernels in Kernels::runnable() {
        if kernels.is_portable_arithmetic() {
            let calls = common::pool(2).install(|| counting_step(&[784, 256, 10], kernels));
            assert_eq!(calls, 0, "{kernels}");
        }
    }

    // OpenBLAS's own threads may change its bits (on an AVX2-only EPYC, OpenBLAS 0.3.21 gives
    // other bits with 1 and 2 threads for a 32 x 520 product at every inner dimension): so the
    // Blas backend runs it single-threaded inside rayon's fixed blocks, and a step gives the
    // same bits on any number of rayon threads.
    let x = pseudo_random(32, 784, 3).mapv(|v| v.max(0.0));
    let step = |threads: usize| {
        common::pool(threads).install(|| one_step(&[784, 300, 10], Kernels::Blas, &x).1)
    };
    assert_eq!(step(1), step(2));
}

#[test]
fn concurrent_fits_leave_openblas_threads_as_they_found_them() {
    use std::ops::ControlFlow;
    use std::sync::atomic::AtomicBool;

    use relumax::{Dataset, Event, TrainConfig, Trainer, openblas::blas_threads};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, dir) = common::small_dataset(false);
    let data = Dataset::open(&dir).unwrap();
    set_blas_threads(3);
    let single_while_running = AtomicBool::new(true);
    let fit = |kernels: Kernels, threads: usize| {
        let config = TrainConfig {
            hidden: vec![32],
            epochs: 2,
            threads: Some(threads),
            kernels,
            ..Default::default()
        };
        Trainer::new(config)
            .unwrap()
            .fit(&data, |event| {
                // OpenBLAS stays single-threaded while a run through it lasts.
                if kernels == Kernels::Blas && matches!(event, Event::Step { .. }) {
                    let one = blas_threads() == 1;
                    single_while_running.fetch_and(one, Ordering::SeqCst);
                }
                ControlFlow::Continue(())
            })
            .unwrap()
    };
    // Two runs through OpenBLAS and one through relumax's kernels, overlapping, with other
    // thread counts: the first to start saves the setting, the last to end restores it.
    std::thread::scope(|s| {
        let a = s.spawn(|| fit(Kernels::Blas, 1));
        let b = s.spawn(|| fit(Kernels::Blas, 2));
        let c = s.spawn(|| fit(Kernels::Auto, 2));
        for run in [a, b, c] {
            run.join().unwrap();
        }
    });
    assert!(single_while_running.load(Ordering::SeqCst));
    assert_eq!(blas_threads(), 3, "the process's setting is restored");
    // relumax's own kernels never touch it.
    fit(Kernels::Auto, 1);
    assert_eq!(blas_threads(), 3);
    set_blas_threads(1);
}
