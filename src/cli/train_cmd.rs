//! `relumax train`: one training run, written to a run folder that is complete or absent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use relumax::kernels::Kernels;
use relumax::{Event, Init, TrainConfig};

use super::DataOpt;
use super::common::{data_dir, hidden_layers, kernels, open_data, test_evaluation};
use super::output::{epoch_line, json_line, print_evaluation};
use super::progress::Progress;
use super::run::{
    FinalMetrics, MetricsLine, RunEnd, RunOptions, checkpoint_dir, default_run_dir,
    load_run_checkpoint, train_to_dir,
};

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
    /// Fraction of the training split held out for validation, in [0, 1); 0 is --full-train
    /// [default: 0.2]
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub val_fraction: Option<f64>,
    /// Train on the whole training split, with no validation
    #[arg(long)]
    pub full_train: bool,
    /// Keep (save and test) the model of the epoch with the lowest validation loss, not the
    /// last one
    #[arg(long)]
    pub keep_best: bool,
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
    /// [default: all cores; one for a network under 64 MFLOP a step, such as 1x512]
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
            || self.keep_best
            || self.momentum.is_some()
            || self.init.is_some()
            || self.seed.is_some()
    }

    /// The validated configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let d = TrainConfig::default();
        let hidden = match (self.hidden.as_slice(), self.layers) {
            (_, Some(0)) => anyhow::bail!("invalid --layers: must be at least 1, got 0"),
            ([], layers) => hidden_layers(d.hidden[0], layers.unwrap_or(1), "--layers")?,
            ([w], layers) => hidden_layers(*w, layers.unwrap_or(1), "--layers")?,
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
            keep_best: self.keep_best,
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

impl TrainArgs {
    /// Checks every value as the run will, reading and writing nothing (a resumed run's
    /// configuration is its checkpoint's, read later).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.resume.is_none() {
            self.hp.config()?;
        }
        Ok(())
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    // From the start: a stop signal while the data loads stops the run at its first step.
    let interrupt = super::interrupt_flag();
    let (config, state, out) = match &args.resume {
        Some(dir) => {
            let (saved, state) = load_run_checkpoint(dir)?;
            (resumed_config(args, dir, saved)?, Some(state), dir.clone())
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
    let resuming = state.is_some();
    let options = RunOptions {
        state,
        checkpoint_every: Some(args.checkpoint_every),
        interrupt: Some(interrupt),
    };
    let outcome = train_to_dir(
        &config,
        (&data, &data_dir(&args.data)),
        &out,
        options,
        |event| {
            progress.update(event);
            if let Event::Epoch(e) = event {
                progress.println(&if args.json {
                    json_line(&MetricsLine::Epoch((*e).clone()))
                } else {
                    epoch_line(e, config.epochs)
                });
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
    let result = match outcome? {
        RunEnd::Done(result) => result,
        RunEnd::Interrupted {
            checkpoint,
            epoch,
            step,
        } => {
            let saved = checkpoint.map_or("no checkpoint".into(), |c| {
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
    let mut summary = FinalMetrics::new(&result, &out)?;
    if args.json {
        summary.kernels = Some(config.kernels.resolve()?);
        outln!("{}", json_line(&MetricsLine::Final(summary)));
    } else {
        print_evaluation("test", test_evaluation(&result)?);
        outln!(
            "trained in {:.2} s ({:.0} samples/s); saved {}",
            result.train_seconds,
            summary.samples_per_second,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration a resumed run continues with: the checkpoint's, with the flags that do
/// not change results (--threads, and --kernels between implementations of relumax's
/// arithmetic) applied; any other flag must agree with it.
fn resumed_config(args: &TrainArgs, dir: &Path, saved: TrainConfig) -> anyhow::Result<TrainConfig> {
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
        threads: args.hp.threads.or(saved.threads),
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
    Ok(resumed)
}
