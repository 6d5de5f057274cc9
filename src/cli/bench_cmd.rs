//! `relumax bench`: training speed per configuration, against this machine's sgemm ceiling.

use std::ops::ControlFlow;
use std::time::Instant;

use clap::Args;
use ndarray::Array2;
use relumax::kernels::{self, Kernels, LayerWork};
use relumax::{
    Dataset, Event, Mlp, TrainConfig, Trainer, data::Batcher, model::StepDropout, model::Workspace,
    model::train_flops_per_sample, openblas::set_blas_threads,
};
use serde_json::json;

use super::DataOpt;
use super::common::{hidden_layers, kernels, open_data};
use super::output::json_line;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Hidden widths to measure [default: 128,256,512,1024,2048]
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS", action = clap::ArgAction::Set)]
    hidden: Vec<usize>,
    /// Hidden layer counts to measure [default: 1,2]
    #[arg(long, value_delimiter = ',', value_name = "COUNTS", action = clap::ArgAction::Set)]
    layers: Vec<usize>,
    /// Timed epochs per configuration, after one warm-up epoch; the median is reported.
    #[arg(long, default_value_t = 3, value_name = "N")]
    epochs: usize,
    /// Samples per mini-batch [default: 32]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Threads [default: all cores; one for a network under 64 MFLOP a step, such as 1x512]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Kernels for the products, one or more, measured interleaved config by config: `auto`
    /// (this CPU's fastest implementation of relumax's arithmetic), `portable`, `avx2`,
    /// `avx512` or `blas` (OpenBLAS) [default: $RELUMAX_KERNELS, else auto]
    #[arg(long, value_delimiter = ',', value_name = "KERNELS", action = clap::ArgAction::Set)]
    kernels: Vec<Kernels>,
    /// Side of the square sgemm that measures the machine's ceiling, before the first
    /// configuration and after each one (0 skips it).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    ceiling_size: usize,
    #[command(flatten)]
    data: DataOpt,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure, on the trained model, the fraction of zeros in each layer's input and the
    /// FLOPs the kernels execute (zeros skipped) against the dense count.
    #[arg(long)]
    sparsity: bool,
}

/// Training batches the sparsity line measures, after a configuration's timed epochs.
const SPARSITY_BATCHES: usize = 20;

/// Per layer, the work of [`SPARSITY_BATCHES`] training steps of `model` (the first batches of
/// an epoch, with the configuration's dropout), as the configuration's kernels run them.
fn sparsity(config: &TrainConfig, model: &Mlp, data: &Dataset) -> Vec<LayerWork> {
    let all = (0..data.train.len()).collect();
    let mut batcher = Batcher::new(all, config.batch_size, data.features(), config.seed);
    batcher.shuffle(0);
    let mut ws = Workspace::with_kernels(model, config.batch_size, config.kernels);
    let mut total = vec![LayerWork::default(); model.layers().len()];
    for step in 0..SPARSITY_BATCHES.min(batcher.num_batches()) {
        let (x, y) = batcher.batch(&data.train, step);
        let dropout = StepDropout {
            p: config.dropout,
            seed: config.seed,
            epoch: 0,
            step,
        };
        for (sum, layer) in total
            .iter_mut()
            .zip(model.step_work(x, y, &mut ws, dropout))
        {
            sum.add(&layer);
        }
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// GFLOP/s of an `n x n x n` sgemm through OpenBLAS with `threads` threads: the median of
/// three after a warm-up.
pub fn sgemm_ceiling(n: usize, threads: usize) -> f64 {
    set_blas_threads(threads);
    let a = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j) % 13) as f32 * 0.01);
    let b = a.t().to_owned();
    let mut c = Array2::<f32>::zeros((n, n));
    let mut times = Vec::new();
    for rep in 0..4 {
        let start = Instant::now();
        kernels::gemm(&mut c.view_mut(), 0.0, &a.view(), &b.view(), 1.0);
        if rep > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    2.0 * (n as f64).powi(3) / median(times) / 1e9
}

impl BenchArgs {
    /// The configurations to measure, validated (nothing read or written yet).
    pub fn configs(&self) -> anyhow::Result<Vec<TrainConfig>> {
        if self.epochs == 0 {
            anyhow::bail!("invalid --epochs: must be at least 1, got 0");
        }
        let choices = match self.kernels.as_slice() {
            [] => vec![kernels(None)?],
            given => given.to_vec(),
        };
        let widths = if self.hidden.is_empty() {
            vec![128, 256, 512, 1024, 2048]
        } else {
            self.hidden.clone()
        };
        let layer_counts = if self.layers.is_empty() {
            vec![1, 2]
        } else {
            self.layers.clone()
        };
        let mut configs = Vec::new();
        for &layers in &layer_counts {
            for &width in &widths {
                for &kernels in &choices {
                    let config = TrainConfig {
                        hidden: hidden_layers(width, layers, "--layers")?,
                        // One warm-up epoch.
                        epochs: self.epochs.checked_add(1).ok_or_else(|| {
                            anyhow::anyhow!(
                                "invalid --epochs: at most {}, got {}",
                                usize::MAX - 1,
                                self.epochs
                            )
                        })?,
                        batch_size: self.batch_size.unwrap_or(TrainConfig::default().batch_size),
                        threads: self.threads,
                        kernels: kernels.resolve()?,
                        ..Default::default()
                    };
                    config.validate()?;
                    configs.push(config);
                }
            }
        }
        Ok(configs)
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let configs = args.configs()?;
    let data = open_data(&args.data)?;
    for config in &configs {
        Trainer::new(config.clone())?.check_memory(&data)?;
    }
    // The ceiling's three square matrices.
    let side = args.ceiling_size as f64;
    let ceiling = relumax::train::MemoryEstimate {
        weights: 0.0,
        workspace: 3.0 * side * side * 4.0,
        records: 0.0,
    };
    ceiling.check(&format!(
        "the sgemm ceiling of {0} x {0}",
        args.ceiling_size
    ))?;
    // The ceiling runs on every core (or `--threads`); a configuration may train on fewer.
    let threads = args.threads.unwrap_or_else(relumax::train::cores);
    // This machine's speed drifts (it is shared), so the ceiling is measured again after each
    // configuration, and each row is held against the two measurements around it.
    let measure = || (args.ceiling_size > 0).then(|| sgemm_ceiling(args.ceiling_size, threads));
    let first = measure();
    if !args.json {
        outln!(
            "{} training samples, up to {threads} threads, {}, kernels this CPU runs: {}",
            configs[0].train_samples(&data),
            relumax::openblas::blas_config(),
            runnable()
        );
        if let Some(c) = first {
            outln!(
                "sgemm ceiling: {c:.1} GFLOP/s ({0} x {0} x {0}, {threads} threads), measured \
                 again after each configuration; a row's ceiling is the mean of the two around it",
                args.ceiling_size
            );
        }
        outln!(
            "| config | kernels | threads | s/epoch | epochs/s | samples/s | GFLOP/s | ceiling \
             GFLOP/s | % of ceiling |"
        );
        outln!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    let (mut rows, mut samples_taken, mut before) = (Vec::new(), Vec::from_iter(first), first);
    let mut sparsity_lines = Vec::new();
    for config in &configs {
        let mut secs = Vec::new();
        let mut samples = 0.0;
        let trained = Trainer::new(config.clone())?.fit(&data, |e| {
            if let Event::Epoch(m) = e {
                if m.epoch > 1 {
                    secs.push(m.train_seconds);
                }
                samples = m.samples_per_second * m.train_seconds;
            }
            ControlFlow::Continue(())
        })?;
        let after = measure();
        samples_taken.extend(after);
        let ceiling = before.zip(after).map(|(b, a)| (b + a) / 2.0);
        before = after;
        let s = median(secs.clone());
        let threads_used = config.thread_count(&data);
        let flops =
            train_flops_per_sample(&config.sizes(data.features(), data.classes())) * samples;
        let gflops = flops / s / 1e9;
        let pct = ceiling.map(|c| 100.0 * gflops / c);
        if !args.json {
            let dash = || "–".to_string();
            outln!(
                "| {} | {} | {} | {s:.3} | {:.2} | {:.0} | {gflops:.1} | {} | {} |",
                config.arch_name(),
                config.kernels,
                threads_used,
                1.0 / s,
                samples / s,
                ceiling.map_or_else(dash, |c| format!("{c:.1}")),
                pct.map_or_else(dash, |p| format!("{p:.0}%"))
            );
        }
        let mut row = json!({
            "config": config.arch_name(), "kernels": config.kernels,
            "threads": threads_used,
            "layers": config.hidden.len(), "hidden": config.hidden[0],
            "seconds_per_epoch": s, "epoch_seconds": secs, "epochs_per_second": 1.0 / s,
            "samples_per_second": samples / s, "gflops": gflops, "ceiling_gflops": ceiling,
            "percent_of_ceiling": pct,
        });
        if args.sparsity {
            let work = sparsity(config, &trained.model, &data);
            let dense: f64 = work.iter().map(|w| w.dense_flops).sum();
            let executed: f64 = work.iter().map(|w| w.executed_flops).sum();
            let fraction = executed / dense;
            let zeros: Vec<f64> = work.iter().map(LayerWork::zero_fraction).collect();
            row["sparsity"] = json!({
                "input_zero_fraction": zeros, "executed_fraction": fraction,
                "executed_gflops": gflops * fraction,
                "executed_percent_of_ceiling": pct.map(|p| p * fraction),
            });
            sparsity_lines.push(format!(
                "| {} | {} | {} | {:.0}% | {:.1} |",
                config.arch_name(),
                config.kernels,
                zeros
                    .iter()
                    .map(|z| format!("{:.0}%", 100.0 * z))
                    .collect::<Vec<_>>()
                    .join(" / "),
                100.0 * fraction,
                gflops * fraction
            ));
        }
        rows.push(row);
    }
    if args.sparsity && !args.json {
        outln!("");
        outln!(
            "sparsity ({SPARSITY_BATCHES} training batches of the trained model): zeros in each \
             layer's input, FLOPs the kernels execute against the dense count"
        );
        outln!("| config | kernels | input zeros by layer | executed / dense | executed GFLOP/s |");
        outln!("|---|---|---|---:|---:|");
        for line in &sparsity_lines {
            outln!("{line}");
        }
    }
    if args.json {
        outln!(
            "{}",
            json_line(&json!({
                "threads": threads, "ceiling_gflops": first, "ceiling_size": args.ceiling_size,
                "ceiling_samples": samples_taken, "blas": relumax::openblas::blas_config(),
                "runnable_kernels": runnable(), "configs": rows,
            }))
        );
    } else if let Some((lo, hi)) = spread(&samples_taken)
        && hi > 1.1 * lo
    {
        outln!(
            "note: the sgemm ceiling drifted from {lo:.1} to {hi:.1} GFLOP/s during this run \
             (another load on the machine?); compare rows through their % of ceiling"
        );
    }
    Ok(())
}

/// The kernels this CPU runs, comma-separated.
fn runnable() -> String {
    let names: Vec<_> = Kernels::runnable().iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// The smallest and largest of `values`, if any.
fn spread(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}
