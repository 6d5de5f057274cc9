//! `relumax paper`: the paper's experiments, resumable and shardable.
//!
//! Every (configuration, seed) is one run folder under `--out`, written whole or not at all by
//! `train`'s machinery. A folder whose config matches is reused, so an interrupted reproduction
//! resumes, and `--shard I/N` plus `--aggregate` spread the work over machines.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relumax::kernels::Kernels;
use relumax::train::MemoryEstimate;
use relumax::{Event, TrainConfig, Trainer, model::train_flops_per_sample};

use super::DataOpt;
use super::common::{data_dir, hidden_layers, kernels, open_data, test_evaluation};
use super::report;
use super::run::{RunEnd, RunOptions, RunRecord, default_run_dir, read_run, train_to_dir};
use super::side_by_side::{self, Limits};

/// The paper's ten configurations: hidden layers and width.
pub const CONFIGS: [(usize, usize); 10] = [
    (1, 128),
    (1, 256),
    (1, 512),
    (1, 1024),
    (1, 2048),
    (2, 128),
    (2, 256),
    (2, 512),
    (2, 1024),
    (2, 2048),
];

/// Most seeds per configuration: every job is listed before any runs, and 10,000 seeds of the
/// ten configurations are already 100,000 runs (years on one machine).
const MAX_SEEDS: usize = 10_000;

/// A slice of the work: jobs `i, i + n, i + 2n, ...` (0-based `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected I/N (e.g. 0/4), got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        Ok(Shard {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl Shard {
    /// A well-formed shard that names no job slice (`0/0`, `5/3`) is refused as a value the
    /// run cannot use (exit 1), like every out-of-range flag.
    fn check(self) -> anyhow::Result<Shard> {
        if self.count == 0 || self.index >= self.count {
            anyhow::bail!(
                "invalid --shard: I/N needs 0 <= I < N, got {}/{}",
                self.index,
                self.count
            );
        }
        Ok(self)
    }
}

/// A configuration of `--only`: `LAYERSxWIDTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arch {
    layers: usize,
    width: usize,
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s
            .split_once('x')
            .and_then(|(l, w)| Some((l.trim().parse().ok()?, w.trim().parse().ok()?)));
        match parsed {
            Some((layers, width)) => Ok(Arch { layers, width }),
            None => Err(format!("{s:?} is not LAYERSxWIDTH (e.g. 2x2048)")),
        }
    }
}

#[derive(Debug, Args)]
pub struct PaperArgs {
    /// Epochs per configuration [default: 4, the paper's]
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// First seed.
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// Seeds per configuration (seed, seed + 1, ...), reported as mean +- standard deviation.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seeds: usize,
    /// Only these configurations, e.g. 1x128,2x2048 [default: all ten]
    #[arg(long, value_delimiter = ',', value_name = "LIST", action = clap::ArgAction::Set)]
    only: Vec<Arch>,
    /// Threads to train on: every product is cut into blocks run on this many threads
    /// [default: all cores; one for a network under 64 MFLOP a step, such as 1x512]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Configurations trained at once, while their threads together fit the cores: networks
    /// that train on one thread share the cores; 1 trains one at a time [default: as many
    /// as fit]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// The code that runs the products: auto, portable, avx2, avx512 (the same bits) or blas
    /// [default: $RELUMAX_KERNELS, else auto]
    #[arg(long, value_name = "KERNELS")]
    kernels: Option<Kernels>,
    /// Output folder.
    #[arg(long, default_value = "runs/paper", value_name = "DIR")]
    out: PathBuf,
    /// Retrain configurations whose results already exist.
    #[arg(long)]
    force: bool,
    /// Run only every N-th job, starting at job I (0-based), for job arrays; then build the
    /// report with --aggregate once all shards are done.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Build the report from the run folders that exist, without training.
    #[arg(long)]
    aggregate: bool,
    /// Train on all training images with no validation split (the paper's "1875 iterations").
    #[arg(long)]
    full_train: bool,
    #[command(flatten)]
    data: DataOpt,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn parse_only(only: &[Arch]) -> anyhow::Result<Vec<(usize, usize)>> {
    if only.is_empty() {
        return Ok(CONFIGS.to_vec());
    }
    only.iter()
        .map(|a| match (a.layers, a.width) {
            (0, _) | (_, 0) => anyhow::bail!(
                "invalid --only: {}x{} has no layer or no unit (e.g. 2x2048)",
                a.layers,
                a.width
            ),
            lw => Ok(lw),
        })
        .collect()
}

impl PaperArgs {
    /// Checks every value as the run will, reading and writing nothing.
    pub fn check(&self) -> anyhow::Result<()> {
        self.jobs()?;
        self.shard.map(Shard::check).transpose()?;
        Ok(())
    }

    /// Every (config, seed) this invocation covers, before sharding.
    fn jobs(&self) -> anyhow::Result<Vec<TrainConfig>> {
        if !(1..=MAX_SEEDS).contains(&self.seeds) {
            anyhow::bail!(
                "invalid --seeds: must be from 1 to {MAX_SEEDS}, got {}",
                self.seeds
            );
        }
        if self.jobs == Some(0) {
            anyhow::bail!("invalid --jobs: must be at least 1, got 0");
        }
        let kernels = kernels(self.kernels)?;
        let mut jobs = Vec::new();
        for (layers, width) in parse_only(&self.only)? {
            for k in 0..self.seeds as u64 {
                let config = TrainConfig {
                    hidden: hidden_layers(width, layers, "--only")?,
                    epochs: self.epochs.unwrap_or(TrainConfig::default().epochs),
                    seed: self
                        .seed
                        .checked_add(k)
                        .context("invalid --seed: too large")?,
                    threads: self.threads,
                    full_train: self.full_train,
                    kernels,
                    ..Default::default()
                };
                config.validate()?;
                jobs.push(config);
            }
        }
        Ok(jobs)
    }
}

/// The run folder of a job.
pub fn run_dir(root: &Path, config: &TrainConfig) -> PathBuf {
    let dir = default_run_dir(root, config);
    if config.full_train {
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push("-full");
        dir.with_file_name(name)
    } else {
        dir
    }
}

pub fn run(args: &PaperArgs) -> anyhow::Result<ExitCode> {
    let jobs = args.jobs()?;
    if !args.aggregate {
        // From the start: a stop signal while the data loads stops at the first step.
        super::interrupt_flag();
        let mine: Vec<TrainConfig> = match args.shard.map(Shard::check).transpose()? {
            Some(s) => jobs
                .iter()
                .skip(s.index)
                .step_by(s.count)
                .cloned()
                .collect(),
            None => jobs.clone(),
        };
        if !train_jobs(args, &mine)? {
            eprintln!(
                "interrupted: finished configurations are kept; run the same command again to continue"
            );
            return Ok(super::interrupted_exit_code());
        }
        if let Some(s) = args.shard {
            outln!(
                "shard {}/{} done; once every shard is, build the report with: relumax paper --aggregate --out {}",
                s.index,
                s.count,
                args.out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let records: Vec<RunRecord> = jobs
        .iter()
        .filter_map(|c| read_run(&run_dir(&args.out, c), c).ok())
        .collect();
    if records.is_empty() {
        anyhow::bail!(
            "no finished runs under {} for these configurations (run relumax paper without --aggregate first)",
            args.out.display()
        );
    }
    if records.len() < jobs.len() {
        eprintln!(
            "note: {} of {} runs are finished; the report covers those",
            records.len(),
            jobs.len()
        );
    }
    let written = report::write(&args.out, &records, jobs.len())?;
    report::print_tables(&records);
    outln!("report: {}", written.display());
    Ok(ExitCode::SUCCESS)
}

/// Work units of a job, for the time-left estimate: its matrix-product FLOPs.
fn job_flops(config: &TrainConfig, features: usize, classes: usize, samples: usize) -> f64 {
    train_flops_per_sample(&config.sizes(features, classes)) * samples as f64 * config.epochs as f64
}

/// Trains the jobs not done yet; `Ok(false)` when Ctrl-C interrupted them.
fn train_jobs(args: &PaperArgs, jobs: &[TrainConfig]) -> anyhow::Result<bool> {
    let mut todo = Vec::new();
    for config in jobs {
        let dir = run_dir(&args.out, config);
        if !args.force && read_run(&dir, config).is_ok() {
            outln!(
                "{}: done already, reusing {}",
                config.arch_name(),
                dir.display()
            );
        } else {
            todo.push(config.clone());
        }
    }
    if todo.is_empty() {
        return Ok(true);
    }
    let data = open_data(&args.data)?;
    // Every configuration fits in memory, before any is trained or any folder made.
    for config in &todo {
        Trainer::new(config.clone())?.check_memory(&data)?;
    }
    let ddir = data_dir(&args.data);
    let weights: Vec<f64> = todo
        .iter()
        .map(|c| job_flops(c, data.features(), data.classes(), c.train_samples(&data)))
        .collect();
    let total: f64 = weights.iter().sum();
    let bar = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {percent}% eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let say = |line: String| match &bar {
        Some(b) => b.suspend(|| outln!("{line}")),
        None => outln!("{line}"),
    };
    // Jobs side by side while their threads fit the cores and their memory the machine.
    let threads: Vec<usize> = todo.iter().map(|c| c.thread_count(&data)).collect();
    let memory: Vec<MemoryEstimate> = todo.iter().map(|c| c.memory(&data)).collect();
    let fits = |running: &[usize], j: usize| {
        let together = running.iter().fold(memory[j], |sum, &r| sum + memory[r]);
        together.check("side by side").is_ok()
    };
    let limits = Limits {
        jobs: args.jobs.unwrap_or(usize::MAX),
        cores: relumax::train::cores(),
    };
    // The fraction of each job done, for the bar.
    let progress = Mutex::new(vec![0.0f64; todo.len()]);
    let train = |j: usize| {
        let config = &todo[j];
        let label = format!("{} seed {}", config.arch_name(), config.seed);
        let options = RunOptions {
            interrupt: Some(super::interrupt_flag()),
            ..Default::default()
        };
        let epochs = config.epochs;
        train_to_dir(
            config,
            (&data, &ddir),
            &run_dir(&args.out, config),
            options,
            |event| {
                if let (
                    Some(b),
                    Event::Step {
                        epoch,
                        step,
                        steps,
                        running_loss,
                        ..
                    },
                ) = (&bar, event)
                {
                    let frac = ((epoch - 1) as f64 + *step as f64 / *steps as f64) / epochs as f64;
                    let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                    progress[j] = frac;
                    let done: f64 = progress.iter().zip(&weights).map(|(f, w)| f * w).sum();
                    b.set_position((1000.0 * done / total) as u64);
                    if *step == 1 || step % 100 == 0 {
                        b.set_message(format!("{label} epoch {epoch} loss {running_loss:.3}"));
                    }
                }
            },
        )
        .with_context(|| format!("while training {}", config.arch_name()))
    };
    let start = Instant::now();
    let (mut done, mut ended) = (0.0f64, 0);
    let mut outcome: anyhow::Result<bool> = Ok(true);
    side_by_side::run(
        todo.len(),
        limits,
        |j| threads[j],
        fits,
        train,
        |j, end| {
            let config = &todo[j];
            let line = end.and_then(|end| {
                let RunEnd::Done(result) = end else {
                    return Ok(None);
                };
                ended += 1;
                done += weights[j];
                let elapsed = start.elapsed().as_secs_f64();
                let left = elapsed * (total - done) / done.max(1.0);
                let per_epoch = result.train_seconds / result.epochs.len().max(1) as f64;
                let test = test_evaluation(&result)?;
                Ok(Some(format!(
                    "[{ended}/{}] {} seed {}: test loss {:.4} accuracy {:.4}, {per_epoch:.2} \
                     s/epoch; about {left:.0} s left",
                    todo.len(),
                    config.arch_name(),
                    config.seed,
                    test.loss,
                    test.accuracy
                )))
            });
            match line {
                Ok(Some(line)) => {
                    say(line);
                    return ControlFlow::Continue(());
                }
                // Interrupted: the others stop at their next step too.
                Ok(None) if outcome.is_ok() => outcome = Ok(false),
                Ok(None) => {}
                // The first error is the one reported.
                Err(e) if outcome.is_ok() => outcome = Err(e),
                Err(_) => {}
            }
            ControlFlow::Break(())
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    outcome
}
