//! relumax: fast, reproducible training of the ReLU + softmax multilayer perceptrons of
//! "Using a Neural Network with ReLU and Softmax activation functions to train a classifier
//! for handwritten digits images", on MNIST or any IDX dataset, backed by OpenBLAS.
//!
//! The main types:
//! - [`Dataset`]: an IDX folder (raw or gzipped, checksummed, memory-mapped) or in-memory
//!   arrays, with a [`Holdout`] split and a [`Batcher`] of reused batch buffers;
//! - [`Mlp`]: the network, `784 -> hidden... -> 10`, ReLU hidden layers, softmax output;
//! - [`TrainConfig`] (the paper's hyper-parameters by default) and [`Trainer`], whose `fit`
//!   reports every step and epoch to a callback and returns a [`TrainResult`];
//! - [`save_model`] / [`load_model`]: safetensors files readable from numpy or PyTorch.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use relumax::{Dataset, TrainConfig, Trainer};
//!
//! let data = Dataset::bundled()?;
//! let trainer = Trainer::new(TrainConfig { hidden: vec![128], epochs: 1, ..Default::default() })?;
//! let result = trainer.fit(&data, |_| ControlFlow::Continue(()))?;
//! println!("test accuracy {:.4}", result.test.accuracy);
//! # Ok::<(), relumax::Error>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

// Links OpenBLAS as the provider of the CBLAS symbols ndarray calls.
extern crate blas_src;

mod data;
mod error;
mod ffi;
mod idx;
mod init;
mod inspect;
pub mod kernels;
mod layer;
mod mmap;
mod model;
mod model_file;
mod optim;
mod preprocess;
mod rng;
mod train;

pub use data::{
    Batcher, ChecksumStatus, Dataset, FILE_NAMES, FileReport, FileSource, Holdout, LoadOptions,
    SUMS_FILE, Split, shuffle,
};
pub use error::{Error, Result};
pub use ffi::{blas_config, blas_threads, set_blas_threads};
pub use idx::{
    IMAGES_MAGIC, ImagesHeader, LABELS_MAGIC, LabelsHeader, encode_images, encode_labels,
    parse_images, parse_labels,
};
pub use init::Init;
pub use inspect::{Preimage, class_images};
pub use layer::Dense;
pub use model::{MAX_WIDTH, Mlp, StepDropout, Workspace, train_flops_per_sample, validate_sizes};
pub use model_file::{
    LoadedModel, load as load_model, save as save_model, to_bytes as model_to_bytes, write_atomic,
};
pub use optim::Sgd;
pub use preprocess::{BOX, FRAME, mnist_digit};
pub use rng::{Rng, Stream, derive as derive_seed, stream as rng_stream};
pub use train::{
    CURVE_EVERY, CurvePoint, EVAL_ROWS, EpochMetrics, Evaluation, Event, MAX_LR, TrainConfig,
    TrainResult, Trainer, check_fits, evaluate,
};

/// Facts about this build, recorded by `build.rs`: git revision and target CPU features.
pub mod build_info {
    /// `git describe --always --dirty` at build time, or `"unknown"`.
    pub const GIT_REVISION: &str = env!("RELUMAX_GIT_REVISION");
    /// The target CPU features enabled for this build (comma-separated).
    pub const TARGET_FEATURES: &str = env!("RELUMAX_TARGET_FEATURES");
    /// The build profile (`release` or `debug`).
    pub const PROFILE: &str = env!("RELUMAX_PROFILE");
}
