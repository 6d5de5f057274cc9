//! OpenBLAS's own controls, which the BLAS interface does not cover: its thread count and build
//! configuration. The one module that declares foreign functions.
//!
//! Without the `openblas` feature (another BLAS provider), these are no-ops: set that
//! provider's own thread count to 1 (e.g. `MKL_NUM_THREADS=1`) so it does not compete with
//! relumax's own threads.

#![allow(unsafe_code)]

#[cfg(not(feature = "openblas"))]
mod other {
    /// Without the `openblas` feature: does nothing.
    pub fn set_blas_threads(_n: usize) {}

    /// Without the `openblas` feature: always 1.
    pub fn blas_threads() -> usize {
        1
    }

    /// Without the `openblas` feature: a note saying so.
    pub fn blas_config() -> String {
        "a BLAS other than OpenBLAS (built without the openblas feature)".into()
    }
}
#[cfg(not(feature = "openblas"))]
pub use other::*;

use std::sync::Mutex;

/// Runs that hold OpenBLAS single-threaded, and the thread count to give back when the last
/// one ends.
static SINGLE: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// OpenBLAS held at one thread while a training run that uses it lasts (OpenBLAS's thread
/// count is one setting for the whole process). The first of concurrent runs saves the
/// process's setting, the last one to end (or unwind) restores it, so any number of runs
/// leave it as they found it. Meanwhile, the process's other OpenBLAS calls run on one
/// thread too.
pub(crate) struct SingleThreaded(());

impl SingleThreaded {
    /// Holds OpenBLAS at one thread until the guard is dropped.
    pub(crate) fn enter() -> SingleThreaded {
        let mut state = SINGLE.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = blas_threads();
            set_blas_threads(1);
        }
        state.0 += 1;
        SingleThreaded(())
    }
}

impl Drop for SingleThreaded {
    fn drop(&mut self) {
        let mut state = SINGLE.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0 {
            set_blas_threads(state.1);
        }
    }
}

#[cfg(feature = "openblas")]
pub use linked::*;

#[cfg(feature = "openblas")]
mod linked {
    use std::ffi::{CStr, c_char, c_int};

    unsafe extern "C" {
        fn openblas_set_num_threads(n: c_int);
        fn openblas_get_num_threads() -> c_int;
        fn openblas_get_config() -> *const c_char;
    }

    /// Sets the number of threads OpenBLAS uses for each call (process-wide).
    pub fn set_blas_threads(n: usize) {
        let n = c_int::try_from(n.max(1)).unwrap_or(c_int::MAX);
        // SAFETY: plain setter with no preconditions beyond a positive count.
        unsafe { openblas_set_num_threads(n) }
    }

    /// The number of threads OpenBLAS currently uses.
    pub fn blas_threads() -> usize {
        // SAFETY: plain getter.
        let n = unsafe { openblas_get_num_threads() };
        usize::try_from(n).unwrap_or(1).max(1)
    }

    /// OpenBLAS's build description, e.g. `"OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"`.
    pub fn blas_config() -> String {
        // SAFETY: returns a pointer to a static NUL-terminated string owned by OpenBLAS.
        let ptr = unsafe { openblas_get_config() };
        if ptr.is_null() {
            return "unknown".into();
        }
        // SAFETY: non-null, NUL-terminated, static lifetime per OpenBLAS's API.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}
