//! relumax: fast, reproducible training of the ReLU + softmax multilayer perceptrons of
//! "Using a Neural Network with ReLU and Softmax activation functions to train a classifier
//! for handwritten digits images", on MNIST or any IDX dataset, with the same bits on every
//! CPU ([`kernels::Kernels`]).
//!
//! The main types:
//! - [`Dataset`]: an IDX folder (raw or gzipped, checksummed, memory-mapped) or in-memory
//!   arrays, with a [`Holdout`] split and a [`Batcher`] of reused batch buffers;
//! - [`Mlp`]: the network, `784 -> hidden... -> 10`, ReLU hidden layers, softmax output;
//! - [`TrainConfig`] (the paper's hyper-parameters by default) and [`Trainer`], whose `fit`
//!   reports every step and epoch to a callback and returns a [`TrainResult`];
//! - [`save_model`] / [`load_model`]: safetensors files readable from numpy or PyTorch.
//!
//! Train one epoch on a subset of the bundled MNIST and print the test accuracy:
//!
//! ```
//! use std::ops::ControlFlow;
//! use relumax::{Dataset, Event, TrainConfig, Trainer};
//!
//! // MNIST from a folder of yours would be `Dataset::open(dir)`; `bundled` opens the folder
//! // $RELUMAX_MNIST names, or this repository's data/mnist.
//! let mnist = Dataset::bundled()?;
//! // 6,000 training and 2,000 test images, as in-memory arrays, to keep this quick.
//! let (x, y) = mnist.train.rows(&(0..6000).collect::<Vec<_>>());
//! let (tx, ty) = mnist.test.rows(&(0..2000).collect::<Vec<_>>());
//! let data = Dataset::from_arrays(x, y, tx.clone(), ty.clone(), mnist.classes())?;
//!
//! let config = TrainConfig { hidden: vec![128], epochs: 1, ..Default::default() };
//! let result = Trainer::new(config)?.fit(&data, |event| {
//!     if let Event::Epoch(e) = event {
//!         println!("epoch {}: validation accuracy {:?}", e.epoch, e.val_accuracy);
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! println!("test accuracy {:.4}", result.test.accuracy);
//! assert!(result.test.accuracy > 0.6);
//!
//! // Inference on any 2-D array of 784 columns (any layout): classes, probabilities, or
//! // loss, accuracy and confusion matrix against labels.
//! let classes = result.model.predict(tx.view())?;
//! let probabilities = result.model.predict_proba(tx.view())?;
//! let evaluation = result.model.evaluate(tx.view(), &ty)?;
//! assert_eq!(evaluation, result.test);
//! # assert_eq!((classes.len(), probabilities.dim()), (2000, (2000, 10)));
//! # Ok::<(), relumax::Error>(())
//! ```
//!
//! Models save to safetensors with [`save_model`]; [`kernels`] exposes the fused kernels and
//! the BLAS-backed products for building other layers.

#![deny(unsafe_code)]
#![deny(missing_docs)]

// Links OpenBLAS as the provider of the CBLAS symbols ndarray calls.
#[cfg(feature = "openblas")]
extern crate blas_src;

mod backward;
mod checkpoint;
mod data;
mod error;
mod idx;
mod init;
mod inspect;
pub mod kernels;
mod layer;
mod mmap;
mod model;
mod model_file;
mod openblas;
mod optim;
mod preprocess;
mod resources;
mod rng;
#[cfg(test)]
mod testing;
mod train;

pub use checkpoint::{load_checkpoint, save_checkpoint};
pub use data::{
    Batcher, ChecksumStatus, Dataset, FILE_NAMES, FileReport, FileSource, Holdout, LoadOptions,
    MNIST_ENV, SUMS_FILE, Split,
};
pub use error::{Error, Result};
pub use idx::{
    IMAGES_MAGIC, ImagesHeader, LABELS_MAGIC, LabelsHeader, encode_images, encode_labels,
    parse_images, parse_labels,
};
pub use init::Init;
pub use inspect::{Preimage, class_images};
pub use layer::Dense;
pub use model::{
    Evaluation, MAX_LAYERS, MAX_WIDTH, Mlp, StepDropout, Workspace, train_flops_per_sample,
};
pub use model_file::{
    LoadedModel, load as load_model, model_from_bytes, save as save_model,
    to_bytes as model_to_bytes, write_atomic,
};
/// The ndarray this crate's API takes and returns: use `relumax::ndarray` to build arrays of
/// the same version (another version in your tree would be another, incompatible type).
pub use ndarray;
pub use openblas::{blas_config, blas_threads, set_blas_threads};
pub use optim::Sgd;
pub use preprocess::{BOX, FRAME, mnist_digit};
pub use resources::MemoryEstimate;
pub use train::{
    Best, CurvePoint, EpochMetrics, EpochProgress, Event, MAX_LR, Outcome, TrainConfig,
    TrainResult, TrainState, Trainer, check_fits, evaluate,
};

/// Facts about this build, recorded by `build.rs`: git revision and target CPU features.
pub mod build_info {
    /// `git rev-parse --short=12 HEAD` at build time, or `"unknown"` outside a git checkout.
    pub const GIT_REVISION: &str = env!("RELUMAX_GIT_REVISION");
    /// The target CPU features enabled for this build (comma-separated).
    pub const TARGET_FEATURES: &str = env!("RELUMAX_TARGET_FEATURES");
    /// The build profile (`release` or `debug`).
    pub const PROFILE: &str = env!("RELUMAX_PROFILE");
}
