//! `relumax train`: one training run, written to a run folder that is complete or absent.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use relumax::kernels::Kernels;
use relumax::{
    Dataset, Event, Init, Outcome, TrainConfig, TrainResult, TrainState, Trainer, build_info,
    load_checkpoint, save_checkpoint,
};
use serde_json::{Value, json};

use super::DataOpt;
use super::common::{data_dir, json_line, kernels, open_data};
use super::eval_cmd::print_evaluation;
use super::plot;
use super::progress::Progress;
use super::run_dir::RunDir;

/// Hyper-parameters shared by the commands that train; unset flags keep the paper's values.
#[derive(Debug, Args, Clone, Default)]
pub struct HyperArgs {
    /// Hidden layer widths: one width (repeated --layers times) or a comma-separated list
    /// such as 512,256 [default: 128]
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS", action = clap::ArgAction::Set)]
    pub hidden: Vec<usize>,
    /// Number of hidden layers when --hidden gives one width [default: 1]
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Passes over the training split [default: 4]
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// SGD learning rate, in (0, 10] [default: 0.0085]
    #[arg(long, value_name = "RATE", allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Samples per mini-batch [default: 32]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Dropout probability of hidden units, in [0, 1) [default: 0.5]
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Fraction of the training split held out for validation, in (0, 1) [default: 0.2]
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub val_fraction: Option<f64>,
    /// Train on the whole training split, with no validation
    #[arg(long)]
    pub full_train: bool,
    /// SGD momentum, in [0, 1) [default: 0]
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Weight initialisation: he (N(0, 2/fan_in)) or xavier (N(0, 1/fan_in)) [default: he]
    #[arg(long, value_name = "SCHEME")]
    pub init: Option<Init>,
    /// Seed of every random stream (init, split, shuffle, dropout) [default: 0]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Threads to train on: every product is cut into blocks run on this many threads
    /// [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// The code that runs the products: auto (this CPU's fastest implementation of relumax's
    /// arithmetic), portable, avx2 or avx512 (all with the same bits), or blas (OpenBLAS, whose
    /// rounding depends on the CPU) [default: $RELUMAX_KERNELS, else auto]
    #[arg(long, value_name = "KERNELS")]
    pub kernels: Option<Kernels>,
}

impl HyperArgs {
    /// True when any hyper-parameter flag other than --threads was given.
    pub fn given(&self) -> bool {
        !self.hidden.is_empty()
            || self.layers.is_some()
            || self.epochs.is_some()
            || self.lr.is_some()
            || self.batch_size.is_some()
            || self.dropout.is_some()
            || self.val_fraction.is_some()
            || self.full_train
            || self.momentum.is_some()
            || self.init.is_some()
            || self.seed.is_some()
    }

    /// The validated configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let d = TrainConfig::default();
        let hidden = match (self.hidden.as_slice(), self.layers) {
            (_, Some(0)) => anyhow::bail!("invalid --layers: must be at least 1, got 0"),
            ([], layers) => vec![d.hidden[0]; layers.unwrap_or(1)],
            ([w], layers) => vec![*w; layers.unwrap_or(1)],
            (ws, Some(n)) if n != ws.len() => anyhow::bail!(
                "invalid --layers: {n} does not match the {} widths given to --hidden",
                ws.len()
            ),
            (ws, _) => ws.to_vec(),
        };
        let config = TrainConfig {
            hidden,
            epochs: self.epochs.unwrap_or(d.epochs),
            lr: self.lr.unwrap_or(d.lr),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            dropout: self.dropout.unwrap_or(d.dropout),
            val_fraction: self.val_fraction.unwrap_or(d.val_fraction),
            full_train: self.full_train,
            momentum: self.momentum.unwrap_or(d.momentum),
            init: self.init.unwrap_or(d.init),
            seed: self.seed.unwrap_or(d.seed),
            threads: self.threads.or(d.threads),
            kernels: kernels(self.kernels)?,
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    hp: HyperArgs,
    #[command(flatten)]
    data: DataOpt,
    /// Output folder [default: runs/<layers>x<width>-seed<seed>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print one JSON object per epoch and a final one on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Save a checkpoint (beside the output folder, as OUT.checkpoint) every N epochs; 0 saves
    /// only when interrupted.
    #[arg(long, default_value_t = 1, value_name = "N")]
    checkpoint_every: usize,
    /// Continue the interrupted run whose output folder is DIR, from its checkpoint, with the
    /// configuration it was started with.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
}

/// Where the checkpoint of the run folder `out` is kept: `OUT.checkpoint` beside it.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint");
    out.with_file_name(name)
}

/// How a training run into a folder may be checkpointed, resumed and interrupted.
#[derive(Default)]
pub struct RunOptions {
    /// Continue from this state instead of a fresh network.
    pub state: Option<TrainState>,
    /// Save a checkpoint every this many epochs (and when interrupted) in this folder.
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Raised by Ctrl-C.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// How a training run into a folder ended.
pub enum RunEnd {
    /// Trained, evaluated and saved in the folder.
    Done(Box<TrainResult>, PathBuf),
    /// Interrupted; the checkpoint (if any) was saved here.
    Interrupted(Option<PathBuf>, usize, usize),
}

/// The default run folder of a configuration.
pub fn default_run_dir(root: &Path, config: &TrainConfig) -> PathBuf {
    root.join(format!("{}-seed{}", config.arch_name(), config.seed))
}

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    // From the start: a stop signal while the data loads stops the run at its first step.
    let interrupt = super::interrupt_flag();
    let (config, state, out) = match &args.resume {
        Some(dir) => {
            let ck = checkpoint_dir(dir);
            let (saved, state) =
                load_checkpoint(&ck).with_context(|| format!("cannot resume {}", dir.display()))?;
            // Threads never change the bits, nor a move between implementations of relumax's
            // arithmetic (but to or from OpenBLAS does).
            if args.hp.given() && args.hp.config()?.canonical() != saved.canonical() {
                anyhow::bail!(
                    "cannot resume {}: its checkpoint was made with another configuration ({}); \
                     --resume continues the run as it was started, so give no hyper-parameter \
                     flags (--threads and --kernels may change)",
                    dir.display(),
                    serde_json::to_string(&saved)?
                );
            }
            let kernels = args.hp.kernels.unwrap_or(saved.kernels);
            let resumed = TrainConfig {
                kernels,
                ..saved.clone()
            };
            if resumed.canonical() != saved.canonical() {
                anyhow::bail!(
                    "cannot resume {} with --kernels {kernels}: it was started with {}, which \
                     rounds differently",
                    dir.display(),
                    saved.kernels
                );
            }
            let config = TrainConfig {
                threads: args.hp.threads.or(saved.threads),
                kernels,
                ..saved
            };
            (config, Some(state), dir.clone())
        }
        None => {
            let config = args.hp.config()?;
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| default_run_dir(Path::new("runs"), &config));
            (config, None, out)
        }
    };
    let data = open_data(&args.data)?;
    let progress = Progress::new(!args.no_progress, &config.arch_name(), config.batch_size);
    let as_json = args.json;
    let print_epoch = |e: &relumax::EpochMetrics| {
        if as_json {
            progress.println(&json_line(&epoch_json(e)));
        } else {
            progress.println(&epoch_line(e, config.epochs));
        }
    };
    let resuming = state.is_some();
    let options = RunOptions {
        state,
        checkpoint: Some((checkpoint_dir(&out), args.checkpoint_every)),
        interrupt: Some(interrupt),
    };
    let outcome = train_to_dir(
        &config,
        &data,
        &data_dir(&args.data),
        &out,
        options,
        |event| {
            progress.update(event);
            if let Event::Epoch(e) = event {
                print_epoch(e);
            }
        },
    );
    progress.finish();
    let outcome = match outcome {
        Err(e) if resuming => Err(e.context(format!(
            "cannot resume {} from {}",
            out.display(),
            checkpoint_dir(&out).display()
        ))),
        other => other,
    };
    let (result, dir) = match outcome? {
        RunEnd::Done(result, dir) => (result, dir),
        RunEnd::Interrupted(ck, epoch, step) => {
            let saved = ck.map_or("no checkpoint".into(), |c| {
                format!("checkpoint saved in {}", c.display())
            });
            eprintln!(
                "interrupted at epoch {}, step {step}: {saved}; continue with: relumax train --resume {}",
                epoch + 1,
                out.display()
            );
            return Ok(super::interrupted_exit_code());
        }
    };
    let mut summary = final_json(&result, &dir);
    if as_json {
        summary["kernels"] = json!(config.kernels.resolve()?);
        outln!("{}", json_line(&summary));
    } else {
        print_evaluation("test", &result.test);
        outln!(
            "trained in {:.2} s ({:.0} samples/s); saved {}",
            result.train_seconds,
            summary["samples_per_second"].as_f64().unwrap_or(0.0),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A one-line text summary of an epoch.
pub fn epoch_line(e: &relumax::EpochMetrics, epochs: usize) -> String {
    let val = match (e.val_loss, e.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4} acc {a:.4}"),
        _ => String::new(),
    };
    format!(
        "epoch {}/{epochs}  train loss {:.4} acc {:.4}{val}  {:.2} s ({:.0} samples/s)",
        e.epoch, e.train_loss, e.train_accuracy, e.train_seconds, e.samples_per_second
    )
}

fn epoch_json(e: &relumax::EpochMetrics) -> Value {
    let mut v = serde_json::to_value(e).expect("metrics serialise");
    v["type"] = json!("epoch");
    v
}

/// The final summary of a run, as printed by `--json` and stored in `metrics.jsonl`.
pub fn final_json(result: &TrainResult, dir: &Path) -> Value {
    let samples: f64 = result
        .epochs
        .iter()
        .map(|e| e.samples_per_second * e.train_seconds)
        .sum();
    json!({
        "type": "final",
        "out": dir,
        "epochs": result.epochs.len(),
        "test_loss": result.test.loss,
        "test_accuracy": result.test.accuracy,
        "test_samples": result.test.samples,
        "confusion": result.test.confusion,
        "train_seconds": result.train_seconds,
        "samples_per_second": samples / result.train_seconds.max(1e-12),
        "stopped_early": result.stopped_early,
    })
}

/// Everything saved beside a result, so the run can be repeated exactly.
pub fn config_json(config: &TrainConfig, data: &Dataset, data_dir: &Path) -> Value {
    json!({
        "config": config,
        "threads_used": config.thread_count(),
        "kernels_used": config.kernels.resolve().ok(),
        "data": {
            "dir": data_dir,
            "features": data.features(),
            "classes": data.classes(),
            "train_samples": data.train.len(),
            "test_samples": data.test.len(),
        },
        "relumax_version": env!("CARGO_PKG_VERSION"),
        "git_revision": build_info::GIT_REVISION,
        "target_features": build_info::TARGET_FEATURES,
        "blas": relumax::blas_config(),
    })
}

/// Trains `config` on `data` and writes the run folder `out` (model, config, metrics, curves),
/// whole or not at all, checkpointing and resuming as `options` say. `on_event` sees every
/// training event.
pub fn train_to_dir(
    config: &TrainConfig,
    data: &Dataset,
    data_dir: &Path,
    out: &Path,
    options: RunOptions,
    mut on_event: impl FnMut(&Event<'_>) + Send,
) -> anyhow::Result<RunEnd> {
    let mut trainer = Trainer::new(config.clone())?;
    // Memory first (what the run allocates), then the disk (what it writes): the model file,
    // a checkpoint (the model and its velocity) and the rest (metrics, curves: under a MiB).
    trainer.check_memory(data)?;
    let parameters = config
        .sizes(data.features(), data.classes())
        .windows(2)
        .fold(0u64, |n, w| {
            n.saturating_add((w[0] as u64 + 1).saturating_mul(w[1] as u64))
        });
    let run = RunDir::new(out, parameters.saturating_mul(12).saturating_add(1 << 20))?;
    if let Some(flag) = options.interrupt {
        trainer = trainer.with_interrupt(flag);
    }
    if let Some((_, every)) = &options.checkpoint {
        trainer = trainer.checkpoint_every(*every);
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
                if let Some((dir, _)) = &options.checkpoint
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
            let ck = match &options.checkpoint {
                Some((dir, _)) => {
                    save_checkpoint(dir, config, &state).context("cannot save a checkpoint")?;
                    Some(dir.clone())
                }
                None => None,
            };
            return Ok(RunEnd::Interrupted(ck, state.epoch, state.step));
        }
    };
    let dir = match write_run(run, config, (data, data_dir), out, &result, steps) {
        Ok(dir) => dir,
        Err(e) => {
            // The trained model is not lost: it stays as a finished checkpoint, and resuming
            // it only writes the folder.
            if let Some((ck, _)) = &options.checkpoint {
                let state = TrainState {
                    epoch: result.epochs.len(),
                    epochs: result.epochs.clone(),
                    curve: result.curve.clone(),
                    progress: relumax::EpochProgress {
                        total_seconds: result.train_seconds,
                        ..Default::default()
                    },
                    ..TrainState::new(result.model.clone())
                };
                if save_checkpoint(ck, config, &state).is_ok() {
                    return Err(e.context(format!(
                        "the trained model is kept in {}; once the problem is fixed, write the \
                         run with: relumax train --resume {}",
                        ck.display(),
                        out.display()
                    )));
                }
            }
            return Err(e);
        }
    };
    if let Some((ck, _)) = &options.checkpoint {
        let _ = std::fs::remove_dir_all(ck);
    }
    Ok(RunEnd::Done(Box::new(result), dir))
}

/// Writes a finished run's files into `run` and moves the folder into place.
fn write_run(
    run: RunDir,
    config: &TrainConfig,
    (data, data_dir): (&Dataset, &Path),
    out: &Path,
    result: &TrainResult,
    steps: usize,
) -> anyhow::Result<PathBuf> {
    let cfg = config_json(config, data, data_dir);
    let cfg_text = serde_json::to_string_pretty(&cfg)?;
    run.write("config.json", format!("{cfg_text}\n").as_bytes())?;
    let mut metrics = String::new();
    for e in &result.epochs {
        metrics += &json_line(&epoch_json(e));
        metrics.push('\n');
    }
    for p in &result.curve {
        metrics += &json_line(&json!({"type": "curve", "iteration": p.iteration, "loss": p.loss}));
        metrics.push('\n');
    }
    metrics += &json_line(&final_json(result, out));
    metrics.push('\n');
    run.write("metrics.jsonl", metrics.as_bytes())?;
    // Neither the thread count nor the implementation of relumax's arithmetic changes results,
    // so they stay out of the model file: the same training gives the same bytes however many
    // threads ran it, on any CPU.
    let model_config = config.canonical();
    let meta = [("config", serde_json::to_string(&model_config)?)];
    let model_path = run.file("model.safetensors");
    relumax::save_model(&result.model, &model_path, &meta)?;
    let panels = plot::learning_curves(&config.arch_name(), &result.epochs, &result.curve, steps);
    plot::write_panels(
        &panels,
        Some(&run.file("curves.png")),
        Some(&run.file("curves.svg")),
    )
    .context("cannot draw the learning curves")?;
    run.commit()
}
