//! The run folder: its format, as serde types used both to write and to read it back, and
//! training into a folder that is complete or absent.
//!
//! A run folder holds `config.json` ([`RunInfo`]), `metrics.jsonl` (one [`MetricsLine`] per
//! line: every epoch, the loss curve, then the final metrics), `model.safetensors` and the
//! learning curves (`curves.png`, `curves.svg`). Its checkpoint, while the run is unfinished,
//! is the folder `OUT.checkpoint` beside it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use relumax::kernels::Kernels;
use relumax::{
    Dataset, EpochMetrics, Event, Outcome, Split, TrainConfig, TrainResult, Trainer, build_info,
    train::CurvePoint, train::TrainState, train::load_checkpoint, train::save_checkpoint,
};
use serde::{Deserialize, Serialize};

use super::common::test_evaluation;
use super::output::json_line;
use super::plot;
use super::run_dir::RunDir;

/// `config.json`: everything needed to repeat the run exactly, and what ran it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub config: TrainConfig,
    pub threads_used: usize,
    /// The implementation of the products that ran (absent if it could not be resolved).
    pub kernels_used: Option<Kernels>,
    pub data: DataInfo,
    pub relumax_version: String,
    pub git_revision: String,
    /// The target features the binary was compiled with.
    pub target_features: String,
    /// The BLAS library and the kernels it chose on this CPU.
    pub blas: String,
}

/// The dataset a run was trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataInfo {
    pub dir: PathBuf,
    pub features: usize,
    pub classes: usize,
    pub train_samples: usize,
    pub test_samples: usize,
}

impl RunInfo {
    /// What `config.json` says of a run of `config` on `data` (read from `data_dir`).
    pub fn new(config: &TrainConfig, data: &Dataset, data_dir: &Path) -> RunInfo {
        RunInfo {
            config: config.clone(),
            threads_used: config.thread_count(data),
            kernels_used: config.kernels.resolve().ok(),
            data: DataInfo {
                dir: data_dir.to_path_buf(),
                features: data.features(),
                classes: data.classes(),
                train_samples: data.train.len(),
                test_samples: data.test.as_ref().map_or(0, Split::len),
            },
            relumax_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: build_info::GIT_REVISION.into(),
            target_features: build_info::TARGET_FEATURES.into(),
            blas: relumax::openblas::blas_config(),
        }
    }
}

/// One line of `metrics.jsonl`, and of `train --json`'s output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MetricsLine {
    /// A finished epoch.
    Epoch(EpochMetrics),
    /// A point of the running training-loss curve.
    Curve(CurvePoint),
    /// The run's result; the last line.
    Final(FinalMetrics),
}

/// The result of a finished run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalMetrics {
    /// The run folder.
    pub out: PathBuf,
    pub epochs: usize,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub test_samples: usize,
    /// `confusion[true][predicted]` counts on the test split.
    pub confusion: Vec<Vec<usize>>,
    pub train_seconds: f64,
    pub samples_per_second: f64,
    /// True when training stopped before its last epoch.
    pub stopped_early: bool,
    /// With `--keep-best`: the epoch whose model the run kept (and tested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// The implementation of the products that ran (in `train --json`'s output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
}

impl FinalMetrics {
    /// The final metrics of `result`, written to the folder `out`.
    pub fn new(result: &TrainResult, out: &Path) -> anyhow::Result<FinalMetrics> {
        let test = test_evaluation(result)?;
        let samples: f64 = result
            .epochs
            .iter()
            .map(|e| e.samples_per_second * e.train_seconds)
            .sum();
        Ok(FinalMetrics {
            out: out.to_path_buf(),
            epochs: result.epochs.len(),
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            test_samples: test.samples,
            confusion: test.confusion.clone(),
            train_seconds: result.train_seconds,
            samples_per_second: samples / result.train_seconds.max(1e-12),
            stopped_early: result.stopped_early,
            best_epoch: result.best_epoch,
            kernels: None,
        })
    }
}

/// A finished run, read back from its folder.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub config: TrainConfig,
    pub dir: PathBuf,
    pub epochs: Vec<EpochMetrics>,
    pub result: FinalMetrics,
}

impl RunRecord {
    /// Training seconds per epoch.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.result.train_seconds / self.epochs.len().max(1) as f64
    }
}

/// Reads a finished run folder, checking that it was trained with `expected` (the thread
/// count and the implementation of the arithmetic aside, which do not change results).
pub fn read_run(dir: &Path, expected: &TrainConfig) -> anyhow::Result<RunRecord> {
    let info: RunInfo = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    if info.config.canonical() != expected.canonical() {
        anyhow::bail!("{} was trained with another configuration", dir.display());
    }
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let mut epochs = Vec::new();
    let mut result = None;
    for line in text.lines() {
        match serde_json::from_str(line)? {
            MetricsLine::Epoch(e) => epochs.push(e),
            MetricsLine::Curve(_) => {}
            MetricsLine::Final(f) => result = Some(f),
        }
    }
    Ok(RunRecord {
        config: info.config,
        dir: dir.to_path_buf(),
        epochs,
        result: result.context("no final metrics")?,
    })
}

/// Where the checkpoint of the run folder `out` is kept: `OUT.checkpoint` beside it.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint");
    out.with_file_name(name)
}

/// The default run folder of a configuration under `root`.
pub fn default_run_dir(root: &Path, config: &TrainConfig) -> PathBuf {
    root.join(format!("{}-seed{}", config.arch_name(), config.seed))
}

/// Loads the checkpoint of the unfinished run folder `dir`.
pub fn load_run_checkpoint(dir: &Path) -> anyhow::Result<(TrainConfig, TrainState)> {
    load_checkpoint(&checkpoint_dir(dir))
        .with_context(|| format!("cannot resume {}", dir.display()))
}

/// How a training run into a folder may be checkpointed, resumed and interrupted.
#[derive(Default)]
pub struct RunOptions {
    /// Continue from this state instead of a fresh network.
    pub state: Option<TrainState>,
    /// Save a checkpoint every this many epochs (0: only when interrupted), in `OUT.checkpoint`.
    pub checkpoint_every: Option<usize>,
    /// Raised by a stop signal.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// How a training run into a folder ended.
pub enum RunEnd {
    /// Trained, evaluated and saved in the folder.
    Done(Box<TrainResult>),
    /// Interrupted at (epoch, step); the checkpoint, if any, was saved here.
    Interrupted {
        checkpoint: Option<PathBuf>,
        epoch: usize,
        step: usize,
    },
}

/// Trains `config` on `data` (read from `data_dir`) and writes the run folder `out` whole or
/// not at all, checkpointing and resuming as `options` say. `on_event` sees every training
/// event.
pub fn train_to_dir(
    config: &TrainConfig,
    (data, data_dir): (&Dataset, &Path),
    out: &Path,
    options: RunOptions,
    mut on_event: impl FnMut(&Event<'_>) + Send,
) -> anyhow::Result<RunEnd> {
    let mut trainer = Trainer::new(config.clone())?;
    // Memory first (what the run allocates), then the disk (what it writes): the model file,
    // a checkpoint (the model and its velocity) and the rest (metrics, curves: under a MiB).
    trainer.check_memory(data)?;
    let parameters = config.parameters(data.features(), data.classes());
    let needed = parameters.saturating_mul(12).saturating_add(1 << 20);
    RunDir::check(out, needed)?;
    if let Some(flag) = options.interrupt {
        trainer = trainer.with_interrupt(flag);
    }
    let checkpoint = options.checkpoint_every.map(|_| checkpoint_dir(out));
    if let Some(every) = options.checkpoint_every {
        trainer = trainer.checkpoint_every(every);
    }
    let state = match options.state {
        Some(state) => state,
        None => TrainState::new(trainer.init_model(data)?),
    };
    let mut steps = 0;
    let mut checkpoint_error = None;
    let outcome = trainer.run(state, data, |event| {
        match event {
            Event::Step { steps: s, .. } => steps = *s,
            Event::Checkpoint(state) => {
                if let Some(dir) = &checkpoint
                    && let Err(e) = save_checkpoint(dir, config, state)
                {
                    checkpoint_error = Some(e);
                    return ControlFlow::Break(());
                }
            }
            _ => {}
        }
        on_event(event);
        ControlFlow::Continue(())
    })?;
    if let Some(e) = checkpoint_error {
        return Err(e).context("cannot save a checkpoint");
    }
    let result = match outcome {
        Outcome::Finished(result) => result,
        Outcome::Interrupted(state) => {
            if let Some(dir) = &checkpoint {
                save_checkpoint(dir, config, &state).context("cannot save a checkpoint")?;
            }
            return Ok(RunEnd::Interrupted {
                checkpoint,
                epoch: state.epoch,
                step: state.step,
            });
        }
    };
    let written = RunDir::new(out, needed)
        .and_then(|run| write_run(run, config, (data, data_dir), out, &result, steps));
    if let Err(e) = written {
        // The trained model is not lost: it stays as a finished checkpoint, and resuming it
        // only writes the folder.
        if let Some(ck) = &checkpoint {
            let state = TrainState {
                epoch: result.epochs.len(),
                epochs: result.epochs.clone(),
                curve: result.curve.clone(),
                progress: relumax::train::EpochProgress {
                    total_seconds: result.train_seconds,
                    ..Default::default()
                },
                // The kept model is the run's model; with --keep-best, also its best.
                best: result.best_epoch.map(|epoch| relumax::train::Best {
                    epoch,
                    val_loss: result.epochs[epoch - 1].val_loss.unwrap_or(f64::NAN),
                    model: result.model.clone(),
                }),
                ..TrainState::new(result.model.clone())
            };
            if save_checkpoint(ck, config, &state).is_ok() {
                return Err(e.context(format!(
                    "the trained model is kept in {}; once the problem is fixed, write the run \
                     with: relumax train --resume {}",
                    ck.display(),
                    out.display()
                )));
            }
        }
        return Err(e);
    }
    if let Some(ck) = &checkpoint {
        let _ = std::fs::remove_dir_all(ck);
    }
    Ok(RunEnd::Done(Box::new(result)))
}

/// Writes a finished run's files into `run` and moves the folder into place.
fn write_run(
    run: RunDir,
    config: &TrainConfig,
    (data, data_dir): (&Dataset, &Path),
    out: &Path,
    result: &TrainResult,
    steps: usize,
) -> anyhow::Result<()> {
    let info = serde_json::to_string_pretty(&RunInfo::new(config, data, data_dir))?;
    run.write("config.json", format!("{info}\n").as_bytes())?;
    let lines = (result.epochs.iter().cloned().map(MetricsLine::Epoch))
        .chain(result.curve.iter().copied().map(MetricsLine::Curve))
        .chain([MetricsLine::Final(FinalMetrics::new(result, out)?)]);
    let metrics: String = lines.map(|line| json_line(&line) + "\n").collect();
    run.write("metrics.jsonl", metrics.as_bytes())?;
    // Neither the thread count nor the implementation of relumax's arithmetic changes results,
    // so they stay out of the model file: the same training gives the same bytes however many
    // threads ran it, on any CPU.
    let meta = [("config", serde_json::to_string(&config.canonical())?)];
    result
        .model
        .save_with_metadata(run.file("model.safetensors"), &meta)?;
    let panels = plot::learning_curves(&config.arch_name(), &result.epochs, &result.curve, steps);
    plot::write_panels(
        &panels,
        Some(&run.file("curves.png")),
        Some(&run.file("curves.svg")),
    )
    .context("cannot draw the learning curves")?;
    run.commit()?;
    Ok(())
}
