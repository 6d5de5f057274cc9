//! The training loop: configuration, holdout, epochs of shuffled mini-batches, evaluation.
//!
//! The only module that sees both a dataset and a model. It never prints: progress goes to the
//! caller's callback as [`Event`]s, and the callback can stop training early.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array1, Array2, s};

pub use crate::checkpoint::{load_checkpoint, save_checkpoint};
use crate::data::{Batcher, Dataset, Holdout, Split};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::kernels::{Kernels, Team};
use crate::model::{self, EVAL_ROWS, Evaluation, Mlp, StepDropout, Workspace};
use crate::openblas;
use crate::optim::Sgd;
pub use crate::resources::MemoryEstimate;
use crate::resources::bytes;
pub use crate::resources::cores;

/// Steps averaged into each point of the running training-loss curve.
pub(crate) const CURVE_EVERY: usize = 50;

/// Hyper-parameters of a training run. `Default` is the paper's configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Hidden layer widths, input side first. Default `[128]`.
    pub hidden: Vec<usize>,
    /// Passes over the training split. Default 4.
    pub epochs: usize,
    /// SGD learning rate. Default 0.0085.
    pub lr: f32,
    /// Samples per mini-batch. Default 32.
    pub batch_size: usize,
    /// Dropout probability of every hidden unit during training. Default 0.5.
    pub dropout: f32,
    /// Fraction of the training split held out for validation, in `[0, 1)`; 0 holds out
    /// nothing (no validation, the same run as `full_train`). Not used when the dataset has a
    /// validation split of its own ([`Dataset::with_validation`]). Default 0.2.
    pub val_fraction: f64,
    /// Train on the whole training split with no validation (the paper's "1875 iterations"
    /// reading). Default `false`.
    pub full_train: bool,
    /// SGD momentum (0 disables it). Default 0.
    pub momentum: f32,
    /// Weight initialisation. Default He, `N(0, 2 / fan_in)`.
    pub init: Init,
    /// The run seed: init, split, shuffle and dropout streams all derive from it. Default 0.
    pub seed: u64,
    /// Threads of the team ([`crate::kernels::Team`]) that runs every product and element-wise
    /// kernel; `None` uses every core, or one for a small network
    /// ([`TrainConfig::thread_count`]). Default `None`.
    /// (With [`Kernels::Blas`], each OpenBLAS call inside it runs single-threaded; see
    /// [`Trainer::run`].)
    pub threads: Option<usize>,
    /// The code that runs the products: [`Kernels::Auto`] (default) picks the fastest
    /// implementation of relumax's arithmetic on this CPU; every choice but
    /// [`Kernels::Blas`] gives the same bits on every CPU.
    pub kernels: Kernels,
    /// Return the model of the epoch with the lowest validation loss instead of the last one
    /// (Keras's `restore_best_weights`); the test split evaluates that model. Needs a
    /// validation split. Default `false`. (Left out of the serialised configuration when
    /// `false`, so that model files and checkpoints of other runs keep their bytes.)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_best: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![128],
            epochs: 4,
            lr: 0.0085,
            batch_size: 32,
            dropout: 0.5,
            val_fraction: 0.2,
            full_train: false,
            momentum: 0.0,
            init: Init::He,
            seed: 0,
            threads: None,
            kernels: Kernels::Auto,
            keep_best: false,
        }
    }
}

/// Largest learning rate accepted: anything above diverges on these networks at once.
pub const MAX_LR: f32 = 10.0;

/// Without [`TrainConfig::threads`], networks whose training step (dense products of one
/// batch) is under this many FLOPs train on one thread: splitting their products costs more
/// than it saves, even with the team's spinning hand-offs. Intel Xeon, 2 cores, seconds per
/// epoch (`relumax bench`, two rounds) with 1 and 2 threads: 1x128 (12 MFLOP a step) 0.095
/// against 0.112-0.120, 1x256 0.160-0.164 against 0.168-0.176, 1x512 (52 MFLOP) 0.272-0.275
/// against 0.279-0.280, 2x128 0.124-0.126 against 0.161-0.165, 2x256 0.259-0.270 against
/// 0.291-0.296; 2x512 (102 MFLOP) was already faster on two with rayon's hand-offs
/// (`docs/performance.md`). `relumax paper` trains such networks side by side instead.
pub const ONE_THREAD_BELOW_STEP_FLOPS: f64 = 64e6;

impl TrainConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field out of range and the value given.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::Config { field, reason });
        if self.hidden.is_empty() {
            return bad("hidden", "at least one hidden layer is required".into());
        }
        model::validate_hidden(&self.hidden)?;
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1, got 0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            return bad(
                "lr",
                format!("must be finite and in (0, {MAX_LR}], got {}", self.lr),
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1, got 0".into());
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be in [0, 1), got {}", self.val_fraction),
            );
        }
        if self.keep_best && self.full_train {
            return bad(
                "keep_best",
                "needs a validation split to pick the best epoch by (full_train has none)".into(),
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            );
        }
        if let Some(threads) = self.threads {
            let max = crate::resources::max_threads();
            if !(1..=max).contains(&threads) {
                return bad(
                    "threads",
                    format!(
                        "must be in 1..={max} on this machine ({} per core), got {threads}",
                        crate::resources::MAX_THREADS_PER_CORE
                    ),
                );
            }
        }
        self.kernels.resolve()?;
        Ok(())
    }

    /// Layer sizes for a dataset: `[features, hidden..., classes]`.
    pub fn sizes(&self, features: usize, classes: usize) -> Vec<usize> {
        std::iter::once(features)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(classes))
            .collect()
    }

    /// Weights and biases of this configuration's network for `features` inputs and
    /// `classes` classes (saturating: a configuration too large to count is too large to run).
    pub fn parameters(&self, features: usize, classes: usize) -> u64 {
        self.sizes(features, classes).windows(2).fold(0u64, |n, w| {
            n.saturating_add((w[0] as u64 + 1).saturating_mul(w[1] as u64))
        })
    }

    /// What training with this configuration on `data` will allocate; [`Trainer::run`] and
    /// [`Trainer::init_model`] refuse a run it does not leave room for.
    pub fn memory(&self, data: &Dataset) -> MemoryEstimate {
        const F32: f64 = 4.0;
        let (features, classes, train_len) = (data.features(), data.classes(), data.train.len());
        let sizes: Vec<f64> = self
            .sizes(features, classes)
            .into_iter()
            .map(|s| s as f64)
            .collect();
        let parameters = self.parameters(features, classes) as f64;
        let widest = sizes[1..].iter().copied().fold(0.0, f64::max);
        let rows = self.batch_size.max(EVAL_ROWS) as f64;
        // The model, its velocity, and a model file being written (a serialised copy and the
        // file's bytes).
        let copies = if self.momentum > 0.0 { 4.0 } else { 3.0 };
        let steps = (self.train_samples(data) as f64 / self.batch_size.max(1) as f64).ceil();
        let epochs = self.epochs as f64;
        MemoryEstimate {
            weights: parameters * F32 * copies,
            workspace: (sizes[1..].iter().sum::<f64>()
                + 2.0 * crate::model::gradient_stride(widest as usize) as f64)
                * rows
                * F32
                + features as f64 * 4.0,
            records: epochs * (steps / CURVE_EVERY as f64 + 1.0) * size_of::<CurvePoint>() as f64
                + epochs * size_of::<EpochMetrics>() as f64
                + train_len as f64 * 2.0 * size_of::<usize>() as f64,
        }
    }

    /// Training samples per epoch on `data`: its whole training split with `full_train` or a
    /// validation split of its own ([`Dataset::with_validation`]), otherwise what the holdout
    /// leaves.
    pub fn train_samples(&self, data: &Dataset) -> usize {
        let n = data.train.len();
        if self.full_train || data.validation().is_some() {
            n
        } else {
            n - Holdout::val_len(n, self.val_fraction)
        }
    }

    /// This configuration with the fields that never change results normalised: no thread
    /// count, and `Kernels::Auto` for every implementation of relumax's arithmetic (`Blas`,
    /// which rounds differently, stays). Two runs whose canonical configurations are equal give
    /// the same bits.
    pub fn canonical(&self) -> TrainConfig {
        TrainConfig {
            threads: None,
            kernels: if self.kernels.is_portable_arithmetic() {
                Kernels::Auto
            } else {
                Kernels::Blas
            },
            ..self.clone()
        }
    }

    /// The thread count a run on `data` uses: [`TrainConfig::threads`], else every core, or
    /// one for a network whose training step is under [`ONE_THREAD_BELOW_STEP_FLOPS`].
    pub fn thread_count(&self, data: &Dataset) -> usize {
        self.threads.unwrap_or_else(|| {
            let sizes = self.sizes(data.features(), data.classes());
            let step = model::train_flops_per_sample(&sizes) * self.batch_size as f64;
            if step < ONE_THREAD_BELOW_STEP_FLOPS {
                1
            } else {
                cores()
            }
        })
    }

    /// A short name such as `2x2048` or `512-256`.
    pub fn arch_name(&self) -> String {
        match self.hidden.as_slice() {
            [first, rest @ ..] if rest.iter().all(|w| w == first) => {
                format!("{}x{first}", self.hidden.len())
            }
            widths => widths
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout).
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (with dropout, weights changing as it goes).
    pub train_accuracy: f64,
    /// Validation loss, absent with `full_train`.
    pub val_loss: Option<f64>,
    /// Validation accuracy, absent with `full_train`.
    pub val_accuracy: Option<f64>,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
}

/// A point of the running training-loss curve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// Global iteration (1-based) at the end of the averaged window.
    pub iteration: usize,
    /// Mean training loss over the window.
    pub loss: f64,
}

/// What [`Trainer::fit`] reports while it runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A training step finished.
    Step {
        /// 1-based epoch, as [`EpochMetrics::epoch`].
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Mean loss of the epoch so far.
        running_loss: f64,
    },
    /// An epoch finished and was evaluated.
    Epoch(&'a EpochMetrics),
    /// A checkpoint is due (see [`Trainer::checkpoint_every`]): the state to save.
    Checkpoint(&'a TrainState),
}

/// The outcome of [`Trainer::fit`].
#[derive(Debug)]
pub struct TrainResult {
    /// The trained network.
    pub model: Mlp,
    /// One entry per finished epoch.
    pub epochs: Vec<EpochMetrics>,
    /// The running training loss, averaged over windows of 50 steps.
    pub curve: Vec<CurvePoint>,
    /// Evaluation of the final (or kept best) model on the test split; `None` when the
    /// dataset has none.
    pub test: Option<Evaluation>,
    /// Seconds spent in training steps over all epochs.
    pub train_seconds: f64,
    /// True when the callback stopped training before the last epoch.
    pub stopped_early: bool,
    /// With [`TrainConfig::keep_best`]: the 1-based epoch whose model this is.
    pub best_epoch: Option<usize>,
}

/// Accumulators of the epoch in progress, kept in a [`TrainState`] so an interrupted epoch
/// resumes with the same running numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochProgress {
    /// Sum of the epoch's batch-mean losses so far.
    pub loss_sum: f64,
    /// Correct training predictions in the epoch so far.
    pub correct: usize,
    /// Sum of the batch losses in the current curve window.
    pub window: f64,
    /// Steps in the current curve window.
    pub window_len: usize,
    /// Training seconds spent in this epoch before the last interruption.
    pub seconds: f64,
    /// Training seconds of all finished epochs.
    pub total_seconds: f64,
}

/// Everything needed to continue a run exactly where it stopped: weights, momentum, position
/// and the metrics so far. Shuffles and dropout masks are derived from `(seed, epoch, step)`,
/// so no generator state needs saving, and a resumed run ends bit-identical to an
/// uninterrupted one.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The network being trained.
    pub model: Mlp,
    /// Momentum buffers (one `(weights, biases)` pair per layer); empty without momentum.
    pub velocity: Vec<(Array2<f32>, Array1<f32>)>,
    /// The epoch in progress (0-based); equals the configured epochs when training is done.
    pub epoch: usize,
    /// Steps of `epoch` already taken.
    pub step: usize,
    /// Metrics of the finished epochs.
    pub epochs: Vec<EpochMetrics>,
    /// The running training-loss curve so far.
    pub curve: Vec<CurvePoint>,
    /// Accumulators of the epoch in progress.
    pub progress: EpochProgress,
    /// With [`TrainConfig::keep_best`]: the best model so far.
    pub best: Option<Best>,
}

/// The model of the epoch with the lowest validation loss so far ([`TrainConfig::keep_best`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    /// Its 1-based epoch.
    pub epoch: usize,
    /// Its validation loss.
    pub val_loss: f64,
    /// The network at the end of that epoch.
    pub model: Mlp,
}

impl TrainState {
    /// The model a run returns: the best one with `keep_best`, else the current one.
    fn kept_model(&self) -> &Mlp {
        self.best.as_ref().map_or(&self.model, |b| &b.model)
    }

    /// The result of a run that ended in this state, with its test evaluation.
    fn into_result(
        self,
        test: Option<Evaluation>,
        train_seconds: f64,
        stopped_early: bool,
    ) -> TrainResult {
        TrainResult {
            best_epoch: self.best.as_ref().map(|b| b.epoch),
            model: self.best.map_or(self.model, |b| b.model),
            epochs: self.epochs,
            curve: self.curve,
            test,
            train_seconds,
            stopped_early,
        }
    }

    /// The state of a run that has not started, for `model`.
    pub fn new(model: Mlp) -> TrainState {
        TrainState {
            model,
            velocity: Vec::new(),
            epoch: 0,
            step: 0,
            epochs: Vec::new(),
            curve: Vec::new(),
            progress: EpochProgress::default(),
            best: None,
        }
    }
}

/// How [`Trainer::run`] ended.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Every epoch ran (or the callback stopped training); the test split was evaluated.
    Finished(TrainResult),
    /// The interrupt flag was raised; the state continues the run with [`Trainer::run`].
    Interrupted(TrainState),
}

/// `2x2048, 4 epochs, batch 32` for messages.
fn describe(c: &TrainConfig) -> String {
    format!(
        "{}, {} epochs, batch {}",
        c.arch_name(),
        c.epochs,
        c.batch_size
    )
}

/// Trains networks with a validated [`TrainConfig`].
#[derive(Clone, Debug)]
pub struct Trainer {
    config: TrainConfig,
    interrupt: Option<Arc<AtomicBool>>,
    checkpoint_every: Option<usize>,
}

impl Trainer {
    /// A trainer for `config`.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`].
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        Ok(Trainer {
            config,
            interrupt: None,
            checkpoint_every: None,
        })
    }

    /// Checks `flag` before every step; once it is raised, [`Trainer::run`] returns
    /// [`Outcome::Interrupted`] with the state at that step boundary (a Ctrl-C handler sets it).
    pub fn with_interrupt(mut self, flag: Arc<AtomicBool>) -> Trainer {
        self.interrupt = Some(flag);
        self
    }

    /// Emits [`Event::Checkpoint`] after every `epochs` finished epochs (but the last).
    pub fn checkpoint_every(mut self, epochs: usize) -> Trainer {
        self.checkpoint_every = (epochs > 0).then_some(epochs);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// A freshly initialised network for `data` (layer `l` from the stream `(seed, Init, l)`).
    ///
    /// # Errors
    /// As [`Mlp::new`].
    pub fn init_model(&self, data: &Dataset) -> Result<Mlp> {
        let c = &self.config;
        self.check_memory(data)?;
        Mlp::new(&c.sizes(data.features(), data.classes()), c.init, c.seed)
    }

    /// Whether this machine has the memory to train on `data` ([`TrainConfig::memory`]);
    /// [`Trainer::init_model`] and [`Trainer::run`] check it too.
    ///
    /// # Errors
    /// [`Error::Memory`] with the estimate.
    pub fn check_memory(&self, data: &Dataset) -> Result<()> {
        let c = &self.config;
        let estimate = c.memory(data);
        estimate.check(&format!("training {}", describe(c)))
    }

    /// Initialises a network for `data` and trains it; see [`Trainer::fit_model`].
    ///
    /// # Errors
    /// As [`Trainer::fit_model`].
    pub fn fit(
        &self,
        data: &Dataset,
        on_event: impl FnMut(&Event<'_>) -> ControlFlow<()> + Send,
    ) -> Result<TrainResult> {
        self.fit_model(self.init_model(data)?, data, on_event)
    }

    /// Trains `model` on `data` for the configured epochs, then evaluates it on the test split.
    /// An interruption (see [`Trainer::with_interrupt`]) ends training early here, as a
    /// `Break` from the callback does; use [`Trainer::run`] to keep the state instead.
    ///
    /// # Errors
    /// As [`Trainer::run`].
    pub fn fit_model(
        &self,
        model: Mlp,
        data: &Dataset,
        on_event: impl FnMut(&Event<'_>) -> ControlFlow<()> + Send,
    ) -> Result<TrainResult> {
        match self.run(TrainState::new(model), data, on_event)? {
            Outcome::Finished(result) => Ok(result),
            Outcome::Interrupted(state) => {
                let test = data
                    .test
                    .as_ref()
                    .map(|split| evaluate(state.kept_model(), split, None));
                let seconds = state.progress.total_seconds + state.progress.seconds;
                Ok(state.into_result(test, seconds, true))
            }
        }
    }

    /// Trains from `state` (a new one, or one returned by an interruption or a checkpoint)
    /// until the configured epochs are done.
    ///
    /// Runs on a [`crate::kernels::Team`] of `threads` threads (this one and `threads - 1`
    /// workers, which end with the run), which splits every matrix product into fixed blocks.
    /// With `Kernels::Blas` those are single-threaded OpenBLAS calls: OpenBLAS's thread count,
    /// one setting for the whole process, is 1 while any such run lasts (the process's other
    /// OpenBLAS calls included), and the last run to end, or to unwind, restores it; relumax's
    /// own kernels leave it alone. `on_event` runs on this thread (its `Send` bound leaves
    /// room to move training to another). `on_event` sees every step and epoch; returning
    /// `ControlFlow::Break(())` stops after the current step (the epoch is then not reported).
    ///
    /// # Errors
    /// [`Error::Shape`] when the model does not fit the data, the batch size exceeds the
    /// training samples, or the state does not fit the configuration; [`Error::Diverged`] when
    /// a loss is not finite.
    pub fn run(
        &self,
        mut state: TrainState,
        data: &Dataset,
        mut on_event: impl FnMut(&Event<'_>) -> ControlFlow<()> + Send,
    ) -> Result<Outcome> {
        let c = &self.config;
        check_fits(&state.model, data)?;
        let sizes = state.model.sizes();
        if sizes[1..sizes.len() - 1] != c.hidden[..] {
            return Err(Error::Config {
                field: "hidden",
                reason: format!(
                    "the configuration has hidden layers {:?}, but the model being trained has {:?}",
                    c.hidden,
                    &sizes[1..sizes.len() - 1]
                ),
            });
        }
        self.check_memory(data)?;
        // A validation split of the user's replaces the holdout: every training sample trains.
        let holdout = if c.full_train || data.validation().is_some() {
            Holdout {
                train: (0..data.train.len()).collect(),
                val: Vec::new(),
            }
        } else {
            Holdout::new(data.train.len(), c.val_fraction, c.seed)
        };
        let validates = !c.full_train && (data.validation().is_some() || !holdout.val.is_empty());
        if c.keep_best && !validates {
            return Err(Error::Config {
                field: "keep_best",
                reason: "needs a validation split to pick the best epoch by (a val_fraction \
                         above 0, or Dataset::with_validation)"
                    .into(),
            });
        }
        if c.val_fraction > 0.0 && !c.full_train && !validates {
            return Err(Error::Config {
                field: "val_fraction",
                reason: format!(
                    "{} of {} training samples holds out none for validation: raise it, or train \
                     on everything with full_train",
                    c.val_fraction,
                    data.train.len()
                ),
            });
        }
        if holdout.train.len() < c.batch_size {
            return Err(Error::Config {
                field: "batch_size",
                reason: format!(
                    "{} exceeds the {} training samples",
                    c.batch_size,
                    holdout.train.len()
                ),
            });
        }
        let steps = holdout.train.len().div_ceil(c.batch_size);
        let misfit = if state.epoch > c.epochs {
            Some(format!(
                "it is at epoch {} of a run of {} epochs",
                state.epoch + 1,
                c.epochs
            ))
        } else if state.step > steps {
            Some(format!(
                "it is at step {} of an epoch that has {steps} ({} training samples in batches \
                 of {})",
                state.step,
                holdout.train.len(),
                c.batch_size
            ))
        } else if state.epochs.len() != state.epoch {
            Some(format!(
                "it records {} finished epochs but stands in epoch {}",
                state.epochs.len(),
                state.epoch + 1
            ))
        } else {
            None
        };
        if let Some(reason) = misfit {
            return Err(Error::Position { reason });
        }
        let threads = c.thread_count(data);
        let team = Team::new(threads).map_err(|e| Error::Config {
            field: "threads",
            reason: format!("cannot start {threads} threads: {e}"),
        })?;
        // With OpenBLAS's products, parallelism comes from the team splitting each into
        // single-threaded sgemm calls: OpenBLAS's own threads would only compete with it for
        // the cores. relumax's own kernels leave OpenBLAS alone.
        let _single = (c.kernels.resolve()? == Kernels::Blas).then(openblas::SingleThreaded::enter);
        let result = team.install(|| {
            let done = self.run_epochs(&mut state, data, &holdout, &mut on_event)?;
            if !done {
                return Ok(None);
            }
            let model = state.kept_model();
            let mut eval = EvalBuffers::new(model, data.features(), self.config.kernels);
            Ok(Some(
                data.test
                    .as_ref()
                    .map(|split| eval.evaluate(model, split, None)),
            ))
        });
        match result? {
            None => Ok(Outcome::Interrupted(state)),
            Some(test) => {
                let (seconds, stopped_early) =
                    (state.progress.total_seconds, state.epoch < c.epochs);
                Ok(Outcome::Finished(state.into_result(
                    test,
                    seconds,
                    stopped_early,
                )))
            }
        }
    }

    /// Runs the remaining steps; `Ok(false)` when interrupted.
    fn run_epochs(
        &self,
        state: &mut TrainState,
        data: &Dataset,
        holdout: &Holdout,
        on_event: &mut impl FnMut(&Event<'_>) -> ControlFlow<()>,
    ) -> Result<bool> {
        let c = &self.config;
        let mut batcher =
            Batcher::new(holdout.train.clone(), c.batch_size, data.features(), c.seed);
        // The weights are read three times a step: 2 MiB pages spare the TLB.
        state.model.advise_huge_pages();
        let mut ws = Workspace::with_kernels(&state.model, c.batch_size, c.kernels);
        let velocity = std::mem::take(&mut state.velocity);
        let mut sgd = Sgd::with_velocity(&state.model, c.lr, c.momentum, velocity);
        let mut eval_buf = EvalBuffers::new(&state.model, data.features(), c.kernels);
        let steps = batcher.num_batches();
        // Reserved up front, so that no step allocates; fallible where the memory check
        // could not run (no `/proc/meminfo`).
        let points = c.epochs.saturating_mul(steps) / CURVE_EVERY + 1;
        let records = state
            .epochs
            .try_reserve(c.epochs)
            .and_then(|()| state.curve.try_reserve(points));
        if records.is_err() {
            return Err(Error::Memory {
                what: format!("the records of {} epochs", c.epochs),
                needed: bytes(points as f64 * size_of::<CurvePoint>() as f64),
                available: "less than that".into(),
            });
        }
        let interrupted = || {
            self.interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed))
        };
        while state.epoch < c.epochs {
            let epoch = state.epoch;
            batcher.shuffle(epoch);
            let start = Instant::now();
            let p = &mut state.progress;
            for step in state.step..steps {
                if interrupted() {
                    p.seconds += secs(start);
                    state.velocity = sgd.velocity().to_vec();
                    return Ok(false);
                }
                let (x, y) = batcher.batch(&data.train, step);
                let rows = y.len();
                let dropout = StepDropout {
                    p: c.dropout,
                    seed: c.seed,
                    epoch,
                    step,
                };
                let stats = state.model.train_step(x, y, &mut ws, dropout, &mut sgd);
                let loss = stats.loss / rows as f64;
                if !loss.is_finite() {
                    return Err(Error::Diverged {
                        epoch: epoch + 1,
                        step: step + 1,
                        loss: loss as f32,
                    });
                }
                p.correct += stats.correct;
                p.loss_sum += loss;
                p.window += loss;
                p.window_len += 1;
                if p.window_len == CURVE_EVERY {
                    state.curve.push(CurvePoint {
                        iteration: epoch * steps + step + 1,
                        loss: p.window / CURVE_EVERY as f64,
                    });
                    (p.window, p.window_len) = (0.0, 0);
                }
                state.step = step + 1;
                let event = Event::Step {
                    epoch: epoch + 1,
                    step: step + 1,
                    steps,
                    running_loss: p.loss_sum / (step + 1) as f64,
                };
                if on_event(&event).is_break() {
                    p.total_seconds += p.seconds + secs(start);
                    p.seconds = 0.0;
                    return Ok(true);
                }
            }
            let train_seconds = p.seconds + secs(start);
            p.total_seconds += train_seconds;
            let val = match data.validation() {
                _ if c.full_train => None,
                Some(split) => Some(eval_buf.evaluate(&state.model, split, None)),
                None => (!holdout.val.is_empty())
                    .then(|| eval_buf.evaluate(&state.model, &data.train, Some(&holdout.val))),
            };
            let metrics = EpochMetrics {
                epoch: epoch + 1,
                train_loss: p.loss_sum / steps as f64,
                train_accuracy: p.correct as f64 / batcher.len() as f64,
                val_loss: val.as_ref().map(|v| v.loss),
                val_accuracy: val.as_ref().map(|v| v.accuracy),
                train_seconds,
                samples_per_second: batcher.len() as f64 / train_seconds.max(1e-12),
            };
            (p.loss_sum, p.correct, p.seconds) = (0.0, 0, 0.0);
            if let (true, Some(val_loss)) = (c.keep_best, metrics.val_loss)
                && state.best.as_ref().is_none_or(|b| val_loss < b.val_loss)
            {
                state.best = Some(Best {
                    epoch: metrics.epoch,
                    val_loss,
                    model: state.model.clone(),
                });
            }
            state.epoch += 1;
            state.step = 0;
            let stop = on_event(&Event::Epoch(&metrics)).is_break();
            state.epochs.push(metrics);
            if stop && state.epoch < c.epochs {
                return Ok(true);
            }
            if let Some(every) = self.checkpoint_every
                && state.epoch.is_multiple_of(every)
                && state.epoch < c.epochs
            {
                state.velocity = sgd.velocity().to_vec();
                let stop = on_event(&Event::Checkpoint(state)).is_break();
                state.velocity.clear();
                if stop {
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Checks that `model` takes `data`'s features and predicts its classes.
///
/// # Errors
/// [`Error::Shape`] naming the mismatch.
pub fn check_fits(model: &Mlp, data: &Dataset) -> Result<()> {
    if model.inputs() != data.features() {
        return Err(Error::Shape {
            what: "model inputs vs dataset features".into(),
            expected: data.features(),
            found: model.inputs(),
        });
    }
    if model.classes() != data.classes() {
        return Err(Error::Shape {
            what: "model classes vs dataset classes".into(),
            expected: data.classes(),
            found: model.classes(),
        });
    }
    Ok(())
}

/// Reused buffers for evaluating in chunks of [`EVAL_ROWS`].
struct EvalBuffers {
    x: Array2<f32>,
    y: Vec<u32>,
    pred: Vec<u32>,
    ws: Workspace,
    indices: Vec<usize>,
}

impl EvalBuffers {
    fn new(model: &Mlp, features: usize, kernels: Kernels) -> EvalBuffers {
        EvalBuffers {
            x: crate::aligned::zeros(EVAL_ROWS, features),
            y: vec![0; EVAL_ROWS],
            pred: vec![0; EVAL_ROWS],
            ws: Workspace::with_kernels(model, EVAL_ROWS, kernels),
            indices: Vec::with_capacity(EVAL_ROWS),
        }
    }

    fn evaluate(&mut self, model: &Mlp, split: &Split, indices: Option<&[usize]>) -> Evaluation {
        let n = indices.map_or(split.len(), <[usize]>::len);
        let classes = model.classes();
        let mut confusion = vec![vec![0usize; classes]; classes];
        let mut loss = 0.0f64;
        for start in (0..n).step_by(EVAL_ROWS) {
            let end = (start + EVAL_ROWS).min(n);
            let rows = end - start;
            self.indices.clear();
            match indices {
                Some(ix) => self.indices.extend_from_slice(&ix[start..end]),
                None => self.indices.extend(start..end),
            }
            split.gather(
                &self.indices,
                self.x.slice_mut(s![..rows, ..]),
                &mut self.y[..rows],
            );
            loss += model
                .loss_and_predict(
                    self.x.slice(s![..rows, ..]),
                    &self.y[..rows],
                    &mut self.pred[..rows],
                    &mut self.ws,
                )
                .loss;
            for (&t, &p) in self.y[..rows].iter().zip(&self.pred[..rows]) {
                confusion[t as usize][p as usize] += 1;
            }
        }
        Evaluation::new(loss, confusion)
    }
}

/// Evaluates `model` on `split` (all of it, or the samples at `indices`) without dropout.
///
/// # Panics
/// If the model's inputs differ from the split's features (see [`check_fits`]) or an index is
/// out of range.
pub fn evaluate(model: &Mlp, split: &Split, indices: Option<&[usize]>) -> Evaluation {
    EvalBuffers::new(model, split.features(), Kernels::Auto).evaluate(model, split, indices)
}
