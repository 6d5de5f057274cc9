//! relumax: fast, reproducible training of the ReLU + softmax multilayer perceptrons of
//! "Using a Neural Network with ReLU and Softmax activation functions to train a classifier
//! for handwritten digits images", on MNIST or any dense dataset, with the same bits on every
//! CPU ([`kernels::Kernels`]).
//!
//! # Train on your arrays, predict, evaluate, keep the best model, save for PyTorch
//!
//! ```
//! use std::ops::ControlFlow;
//! use relumax::{Dataset, Event, Mlp, TrainConfig, Trainer};
//! use relumax::ndarray::Array2;
//!
//! // Your data: a (samples, features) f32 matrix and labels below the class count. Here, 600
//! // points of two noisy classes in 4 features.
//! let points = |n: usize, shift: f32| {
//!     let x = Array2::from_shape_fn((n, 4), |(i, j)| {
//!         let class = (i % 2) as f32;
//!         class * 2.0 - 1.0 + ((i * 7 + j * 13 + n) % 17) as f32 / 17.0 - 0.5 + shift
//!     });
//!     let y = (0..n).map(|i| (i % 2) as u32).collect::<Vec<_>>();
//!     (x, y)
//! };
//! let ((x, y), (vx, vy), (tx, ty)) = (points(600, 0.0), points(200, 0.01), points(200, 0.02));
//! let data = Dataset::from_arrays(x, y, 2)?      // training split, 2 classes
//!     .with_validation(vx, vy)?                   // optional: else val_fraction is held out
//!     .with_test(tx.clone(), ty.clone())?;        // optional: else `result.test` is None
//!
//! let config = TrainConfig {
//!     hidden: vec![32],
//!     epochs: 20,
//!     dropout: 0.0,
//!     keep_best: true, // return the model of the best validation loss, not the last
//!     ..Default::default()
//! };
//! let result = Trainer::new(config)?.fit(&data, |event| {
//!     if let Event::Epoch(e) = event {
//!         println!("epoch {}: validation loss {:?}", e.epoch, e.val_loss);
//!     }
//!     ControlFlow::Continue(()) // `Break` stops training early
//! })?;
//! println!("kept epoch {:?}", result.best_epoch);
//! assert!(result.test.as_ref().unwrap().accuracy > 0.9);
//!
//! // Inference on any 2-D view (any layout): classes, probabilities, or loss, accuracy and
//! // confusion matrix against labels. A wrong feature count is an error, not a panic.
//! let model = &result.model;
//! let classes: Vec<u32> = model.predict(tx.view())?;
//! let probabilities: Array2<f32> = model.predict_proba(tx.view())?;
//! let evaluation = model.evaluate(tx.view(), &ty)?;
//! assert_eq!(Some(&evaluation), result.test.as_ref());
//! assert!(model.predict(Array2::zeros((1, 5)).view()).is_err());
//! # assert_eq!((classes.len(), probabilities.dim()), (200, (200, 2)));
//!
//! // Save as safetensors (atomically), load back bit for bit.
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.safetensors");
//! model.save(&path)?;
//! assert_eq!(&Mlp::load(&path)?, model);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In PyTorch, layer `l` of the file is `torch.nn.Linear(inputs, outputs)` with
//! `weight = layers.{l}.weight.T` and `bias = layers.{l}.bias` (the file's `layout` metadata
//! says so too): relumax stores weights as `(inputs, outputs)`, `h @ W + b`.
//!
//! MNIST is [`Dataset::open`] on a folder of the four IDX files (raw or gzipped), or
//! [`Dataset::bundled`], which opens the folder the `RELUMAX_MNIST` environment variable names
//! ([`data::MNIST_ENV`]), else this source tree's `data/mnist` (not part of the crates.io
//! package). `relumax::TrainConfig::default()` is the paper's configuration.
//!
//! # The public API
//!
//! At the crate root, what training and inference need:
//! - data: [`Dataset`] (IDX folder or in-memory arrays), [`Split`], [`LoadOptions`];
//! - the network: [`Mlp`] (`new`, `from_layers`, `predict`, `predict_proba`, `evaluate`,
//!   `save`, `save_with_metadata`, `load`, `load_with_metadata`, `to_safetensors`,
//!   `from_safetensors`, `train_step`), [`Dense`], [`Init`], [`Evaluation`];
//! - training: [`TrainConfig`], [`Trainer`] (`fit`, `fit_model`, `run`), [`Event`],
//!   [`EpochMetrics`], [`TrainResult`], [`Outcome`], and [`Sgd`] for your own loop with
//!   [`Mlp::train_step`];
//! - [`Error`] and [`Result`]; [`ndarray`], the version of ndarray this API takes.
//!
//! In modules, for the less common tasks:
//! - [`data`]: the data pipeline of a custom loop ([`data::Holdout`], [`data::Batcher`]) and
//!   what loading reports ([`data::FileReport`]);
//! - [`idx`]: reading and writing IDX files;
//! - [`model`]: a training step's buffers ([`model::Workspace`], [`model::StepDropout`]),
//!   size limits, FLOP counts;
//! - [`train`]: resumable runs ([`train::TrainState`], [`train::save_checkpoint`],
//!   [`train::load_checkpoint`]), memory estimates, evaluation of a [`Split`];
//! - [`inspect`]: the paper's "feed backward" class images;
//! - [`preprocess`]: a drawn digit to MNIST's 28 x 28 convention;
//! - [`kernels`]: the fused kernels and products, and the choice of implementation;
//! - [`openblas`]: OpenBLAS's thread count and build, [`fs`]: atomic file writes.
//!
//! # Global state
//!
//! No call leaves process-wide state changed: the kernels and thread count are
//! [`TrainConfig`] fields, training runs on its own [`kernels::Team`] of threads, and
//! OpenBLAS's thread count is only touched as [`openblas`] documents.

#![deny(unsafe_code)]
#![deny(missing_docs)]

// Links OpenBLAS as the provider of the CBLAS symbols ndarray calls.
#[cfg(feature = "openblas")]
extern crate blas_src;

mod aligned;
mod backward;
mod checkpoint;
pub mod data;
mod error;
pub mod fs;
pub mod idx;
mod init;
pub mod inspect;
pub mod kernels;
mod layer;
mod mmap;
pub mod model;
mod model_file;
pub mod openblas;
pub mod optim;
mod pages;
pub mod preprocess;
mod resources;
mod rng;
#[cfg(test)]
mod testing;
pub mod train;

pub use data::{Dataset, LoadOptions, Split};
pub use error::{Error, Result};
pub use model::{Dense, Evaluation, Init, Mlp};
/// The ndarray this crate's API takes and returns: use `relumax::ndarray` to build arrays of
/// the same version (another version in your tree would be another, incompatible type).
pub use ndarray;
pub use optim::Sgd;
pub use train::{EpochMetrics, Event, Outcome, TrainConfig, TrainResult, Trainer};

/// Facts about this build, recorded by `build.rs`: git revision and target CPU features.
pub mod build_info {
    /// `git rev-parse --short=12 HEAD` at build time, or `"unknown"` outside a git checkout.
    pub const GIT_REVISION: &str = env!("RELUMAX_GIT_REVISION");
    /// The target CPU features enabled for this build (comma-separated).
    pub const TARGET_FEATURES: &str = env!("RELUMAX_TARGET_FEATURES");
    /// The build profile (`release` or `debug`).
    pub const PROFILE: &str = env!("RELUMAX_PROFILE");
}
