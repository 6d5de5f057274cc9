//! The integration tests: one binary, a module per topic, one shared `common`.
//!
//! Two suites are binaries of their own, because each replaces a global symbol for its whole
//! process: `tests/alloc.rs` (a counting allocator) and `tests/blas.rs` (an interposed
//! `cblas_sgemm`). The modules that run the `relumax` binary need the `cli` feature.

#[path = "../common/mod.rs"]
mod common;

mod accuracy;
mod api;
mod data;
mod gradients;
mod interop;
mod robustness;
mod training;

#[cfg(feature = "cli")]
mod browser;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod experiments;
#[cfg(feature = "cli")]
mod portability;
#[cfg(feature = "cli")]
mod resume;
#[cfg(feature = "cli")]
mod serve;
