//! The paper reproduction's report: Tables I and II beside the paper's numbers, a summary
//! figure, the feed-backward figure, the sample digits, CSV and JSON, and a discussion
//! generated from the numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::style::RGBColor;
use relumax::{EpochMetrics, Preimage, TrainConfig, build_info, load_model};
use serde_json::{Value, json};

use super::feed_backward_cmd;
use super::plot::{self, Panel, Series};
use super::predict_cmd;

/// The paper's test results: (hidden layers, width) -> (loss, accuracy).
pub const PAPER: [((usize, usize), f64, f64); 10] = [
    ((1, 128), 0.28978, 0.9202),
    ((1, 256), 0.27435, 0.9235),
    ((1, 512), 0.26734, 0.9278),
    ((1, 1024), 0.25647, 0.9288),
    ((1, 2048), 0.24820, 0.9316),
    ((2, 128), 0.23520, 0.9316),
    ((2, 256), 0.21163, 0.9369),
    ((2, 512), 0.19700, 0.9426),
    ((2, 1024), 0.17729, 0.9496),
    ((2, 2048), 0.16562, 0.9509),
];

fn paper(layers: usize, width: usize) -> Option<(f64, f64)> {
    PAPER
        .iter()
        .find(|(k, _, _)| *k == (layers, width))
        .map(|&(_, l, a)| (l, a))
}

/// One finished run, read back from its folder.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub config: TrainConfig,
    pub dir: PathBuf,
    pub epochs: Vec<EpochMetrics>,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub train_seconds: f64,
}

impl RunRecord {
    fn key(&self) -> (usize, usize) {
        (self.config.hidden.len(), self.config.hidden[0])
    }
    fn seconds_per_epoch(&self) -> f64 {
        self.train_seconds / self.epochs.len().max(1) as f64
    }
}

/// Reads a finished run folder, checking that it was trained with `expected` (the thread
/// count and the implementation of the arithmetic aside, which do not change results).
pub fn read_run(dir: &Path, expected: &TrainConfig) -> anyhow::Result<RunRecord> {
    let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let config: TrainConfig = serde_json::from_value(cfg["config"].clone())?;
    if config.canonical() != expected.canonical() {
        anyhow::bail!("{} was trained with another configuration", dir.display());
    }
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let mut epochs = Vec::new();
    let mut fin = None;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        match v["type"].as_str() {
            Some("epoch") => epochs.push(serde_json::from_value(v)?),
            Some("final") => fin = Some(v),
            _ => {}
        }
    }
    let fin = fin.context("no final metrics")?;
    let num = |k: &str| {
        fin[k]
            .as_f64()
            .with_context(|| format!("no {k} in final metrics"))
    };
    Ok(RunRecord {
        config,
        dir: dir.to_path_buf(),
        epochs,
        test_loss: num("test_loss")?,
        test_accuracy: num("test_accuracy")?,
        train_seconds: num("train_seconds")?,
    })
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// Per-configuration aggregate over seeds.
struct Row {
    layers: usize,
    width: usize,
    seeds: usize,
    loss: (f64, f64),
    acc: (f64, f64),
    secs: f64,
    paper: Option<(f64, f64)>,
    first: RunRecord,
}

fn rows(records: &[RunRecord]) -> Vec<Row> {
    let mut groups: BTreeMap<(usize, usize), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(r.key()).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((layers, width), rs)| {
            let losses: Vec<f64> = rs.iter().map(|r| r.test_loss).collect();
            let accs: Vec<f64> = rs.iter().map(|r| r.test_accuracy).collect();
            let secs: Vec<f64> = rs.iter().map(|r| r.seconds_per_epoch()).collect();
            Row {
                layers,
                width,
                seeds: rs.len(),
                loss: mean_sd(&losses),
                acc: mean_sd(&accs),
                secs: mean_sd(&secs).0,
                paper: paper(layers, width),
                first: rs[0].clone(),
            }
        })
        .collect()
}

fn pm((m, sd): (f64, f64), seeds: usize, digits: usize) -> String {
    if seeds > 1 {
        format!("{m:.digits$} ± {sd:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

fn table(rows: &[&Row]) -> String {
    let mut t = String::from(
        "| hidden units | paper loss | paper accuracy | relumax loss | relumax accuracy | Δ accuracy | s/epoch | epochs/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (pl, pa) = r.paper.map_or(("–".into(), "–".into()), |(l, a)| {
            (format!("{l:.5}"), format!("{a:.4}"))
        });
        let delta = r
            .paper
            .map_or("–".into(), |(_, a)| format!("{:+.4}", r.acc.0 - a));
        let _ = writeln!(
            t,
            "| {} | {pl} | {pa} | {} | {} | {delta} | {:.2} | {:.2} |",
            r.width,
            pm(r.loss, r.seeds, 5),
            pm(r.acc, r.seeds, 4),
            r.secs,
            1.0 / r.secs.max(1e-12)
        );
    }
    t
}

/// Prints Tables I and II to stdout.
pub fn print_tables(records: &[RunRecord]) {
    let rows = rows(records);
    for (layers, name) in [
        (1, "Table I: one hidden layer"),
        (2, "Table II: two hidden layers"),
    ] {
        let part: Vec<&Row> = rows.iter().filter(|r| r.layers == layers).collect();
        if !part.is_empty() {
            outln!("\n{name}\n{}", table(&part));
        }
    }
}

/// Sentences comparing the configurations, generated from the numbers.
fn discussion(rows: &[Row]) -> String {
    let mut d = String::new();
    let by = |l: usize, w: usize| rows.iter().find(|r| r.layers == l && r.width == w);
    let pairs: Vec<(usize, f64, f64)> = rows
        .iter()
        .filter(|r| r.layers == 1)
        .filter_map(|one| {
            let two = by(2, one.width)?;
            Some((one.width, two.acc.0 - one.acc.0, one.loss.0 - two.loss.0))
        })
        .collect();
    if !pairs.is_empty() {
        let wins = pairs.iter().filter(|p| p.1 > 0.0).count();
        let mean_gain = pairs.iter().map(|p| p.1).sum::<f64>() / pairs.len() as f64;
        let widths: Vec<String> = pairs
            .iter()
            .map(|(w, g, _)| format!("{w}: {:+.2} pp", 100.0 * g))
            .collect();
        let verdict = if wins == pairs.len() {
            format!(
                "Two hidden layers beat one at every width compared ({} of {})",
                wins,
                pairs.len()
            )
        } else {
            format!(
                "Two hidden layers beat one at {wins} of {} widths",
                pairs.len()
            )
        };
        let _ = writeln!(
            d,
            "- {verdict}, by {:+.2} percentage points of test accuracy on average ({}). The paper \
             found the same direction at every width.",
            100.0 * mean_gain,
            widths.join(", ")
        );
    }
    for layers in [1, 2] {
        let part: Vec<&Row> = rows.iter().filter(|r| r.layers == layers).collect();
        if part.len() > 1 {
            let rising = part.windows(2).filter(|w| w[1].acc.0 > w[0].acc.0).count();
            let (lo, hi) = (part[0], part[part.len() - 1]);
            let _ = writeln!(
                d,
                "- With {layers} hidden layer{}, accuracy rises in {rising} of {} steps up in width, \
                 from {:.4} at {} units to {:.4} at {}.",
                if layers == 1 { "" } else { "s" },
                part.len() - 1,
                lo.acc.0,
                lo.width,
                hi.acc.0,
                hi.width
            );
        }
    }
    let with_paper: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| Some((r, r.acc.0 - r.paper?.1)))
        .collect();
    if !with_paper.is_empty() {
        let above = with_paper.iter().filter(|p| p.1 > 0.0).count();
        let mean = with_paper.iter().map(|p| p.1).sum::<f64>() / with_paper.len() as f64;
        let _ = writeln!(
            d,
            "- Against the paper: relumax is above its accuracy in {above} of {} configurations, by \
             {:+.2} pp on average. Differences of a few tenths of a point are within seed-to-seed \
             spread (run with `--seeds 5` to measure it); the paper reports a single run.",
            with_paper.len(),
            100.0 * mean
        );
    }
    if let Some(best) = rows.iter().max_by(|a, b| a.acc.0.total_cmp(&b.acc.0)) {
        let total: f64 = rows
            .iter()
            .map(|r| r.secs * r.first.epochs.len() as f64 * r.seeds as f64)
            .sum();
        let _ = writeln!(
            d,
            "- The best configuration is {}x{} with test accuracy {:.4}. Training all {} \
             configurations took {total:.1} s of training time.",
            best.layers,
            best.width,
            best.acc.0,
            rows.len()
        );
    }
    d
}

fn val_series(rows: &[Row], layers: usize) -> Vec<Series> {
    const COLORS: [RGBColor; 5] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    rows.iter()
        .filter(|r| r.layers == layers)
        .enumerate()
        .map(|(k, r)| Series {
            label: format!("{}x{}", r.layers, r.width),
            points: r
                .first
                .epochs
                .iter()
                .filter_map(|e| Some((e.epoch as f64, e.val_accuracy?)))
                .collect(),
            color: COLORS[k % COLORS.len()],
            markers: true,
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The sample digits shipped in `data/samples`, as (true digit, path).
fn samples() -> Vec<(usize, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("samples");
    (0..10)
        .map(|d| (d, dir.join(format!("{d}.png"))))
        .filter(|(_, p)| p.is_file())
        .collect()
}

/// Writes report.md, results.csv, results.json and the figures into `out`; returns the
/// report's path.
pub fn write(out: &Path, records: &[RunRecord], expected: usize) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let rows = rows(records);
    let rel = |p: &Path| p.strip_prefix(out).unwrap_or(p).display().to_string();

    let mut csv = String::from(
        "layers,hidden,seed,epochs,test_loss,test_accuracy,paper_loss,paper_accuracy,seconds_per_epoch,epochs_per_second\n",
    );
    for r in records {
        let (l, w) = r.key();
        let (pl, pa) = paper(l, w).map_or((String::new(), String::new()), |(a, b)| {
            (a.to_string(), b.to_string())
        });
        let s = r.seconds_per_epoch();
        let _ = writeln!(
            csv,
            "{l},{w},{},{},{},{},{pl},{pa},{s:.4},{:.4}",
            r.config.seed,
            r.epochs.len(),
            r.test_loss,
            r.test_accuracy,
            1.0 / s.max(1e-12)
        );
    }
    relumax::write_atomic(&out.join("results.csv"), csv.as_bytes())?;

    let configs: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "layers": r.layers, "hidden": r.width, "seeds": r.seeds,
                "test_loss_mean": r.loss.0, "test_loss_sd": r.loss.1,
                "test_accuracy_mean": r.acc.0, "test_accuracy_sd": r.acc.1,
                "paper_loss": r.paper.map(|p| p.0), "paper_accuracy": r.paper.map(|p| p.1),
                "seconds_per_epoch": r.secs, "epochs_per_second": 1.0 / r.secs.max(1e-12),
            })
        })
        .collect();
    let runs: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({"layers": r.key().0, "hidden": r.key().1, "seed": r.config.seed,
            "test_loss": r.test_loss, "test_accuracy": r.test_accuracy,
            "seconds_per_epoch": r.seconds_per_epoch(), "dir": rel(&r.dir)})
        })
        .collect();

    let summary_png = out.join("summary.png");
    let panels: Vec<Panel> = [(1, "one hidden layer"), (2, "two hidden layers")]
        .into_iter()
        .map(|(layers, name)| Panel {
            title: format!("validation accuracy, {name}"),
            x_label: "epoch",
            series: val_series(&rows, layers),
            legend_low: true,
        })
        .filter(|p| !p.series.is_empty())
        .collect();
    let has_summary = !panels.is_empty();
    if has_summary {
        plot::write_panels(&panels, Some(&summary_png), Some(&out.join("summary.svg")))?;
    }

    // Experiment 3: feed backward on the paper's choice, the 1x128 model.
    let feed = rows
        .iter()
        .find(|r| (r.layers, r.width) == (1, 128))
        .map(|r| r.first.dir.join("model.safetensors"));
    let mut feed_note = String::from("(no 1x128 run in this report)");
    if let Some(model_path) = feed.filter(|p| p.is_file()) {
        let model = load_model(&model_path)?.model;
        if model.inputs() == relumax::FRAME * relumax::FRAME {
            feed_backward_cmd::write(&model, Preimage::Transpose, &out.join("classes.png"))?;
            feed_backward_cmd::write(&model, Preimage::Pinv, &out.join("classes_pinv.png"))?;
            feed_note = "![feed backward, transpose](classes.png)\n\nThe same through each layer's pseudo-inverse (minimum-norm preimage):\n\n![feed backward, pinv](classes_pinv.png)".into();
        }
    }

    // Experiment 2: the best model on the hand-painted samples.
    let mut samples_md = String::new();
    let mut samples_json = Value::Null;
    if let Some(best) = rows.iter().max_by(|a, b| a.acc.0.total_cmp(&b.acc.0)) {
        let model_path = best.first.dir.join("model.safetensors");
        if let Ok(model) = predict_cmd::load_image_model(&model_path) {
            let mut right = 0;
            let mut lines = Vec::new();
            let mut js = Vec::new();
            for (digit, path) in samples() {
                if let Ok(p) = predict_cmd::classify(&model, &path) {
                    right += usize::from(p.digit == digit);
                    lines.push(format!(
                        "| {digit} | {} | {:.3} | {} |",
                        p.digit,
                        p.probabilities[p.digit],
                        if p.digit == digit { "yes" } else { "no" }
                    ));
                    js.push(json!({"digit": digit, "prediction": p.digit, "probabilities": p.probabilities}));
                }
            }
            if !lines.is_empty() {
                samples_md = format!(
                    "The best model ({}x{}, seed {}) on the ten hand-painted digits in `data/samples/` \
                     (painted with a round brush, not taken from MNIST): **{right} of {} right** \
                     (the paper's best model got 7 of 10).\n\n| digit | predicted | probability | right |\n|---:|---:|---:|:---:|\n{}\n",
                    best.layers,
                    best.width,
                    best.first.config.seed,
                    lines.len(),
                    lines.join("\n")
                );
                samples_json = json!({"model": rel(&best.first.dir), "right": right, "of": lines.len(), "images": js});
            }
        }
    }

    let results = json!({
        "configs": configs, "runs": runs, "samples": samples_json,
        "relumax_version": env!("CARGO_PKG_VERSION"), "git_revision": build_info::GIT_REVISION,
        "blas": relumax::blas_config(),
    });
    let text = serde_json::to_string_pretty(&results)?;
    relumax::write_atomic(&out.join("results.json"), format!("{text}\n").as_bytes())?;

    let c = &records[0].config;
    let mut md = String::new();
    let _ = writeln!(md, "# relumax: reproduction of the paper's experiments\n");
    let _ = writeln!(
        md,
        "Setup: {} epochs, learning rate {}, batch {}, dropout {}, He init, plain SGD; {} \
         seed{} per configuration; {} of {} runs finished. relumax {} ({}), {}.\n",
        c.epochs,
        c.lr,
        c.batch_size,
        c.dropout,
        rows.first().map_or(1, |r| r.seeds),
        if rows.first().is_some_and(|r| r.seeds > 1) {
            "s (mean ± standard deviation)"
        } else {
            ""
        },
        records.len(),
        expected,
        env!("CARGO_PKG_VERSION"),
        build_info::GIT_REVISION,
        relumax::blas_config()
    );
    let _ = writeln!(md, "## Experiment 1: Tables I and II\n");
    for (layers, name) in [
        (1, "Table I: one hidden layer"),
        (2, "Table II: two hidden layers"),
    ] {
        let part: Vec<&Row> = rows.iter().filter(|r| r.layers == layers).collect();
        if !part.is_empty() {
            let _ = writeln!(md, "### {name}\n\n{}", table(&part));
        }
    }
    let _ = writeln!(md, "### Discussion\n\n{}", discussion(&rows));
    if has_summary {
        let _ = writeln!(
            md,
            "![validation accuracy of every configuration](summary.png)\n"
        );
    }
    let _ = writeln!(
        md,
        "Learning curves of each run (loss by iteration, accuracy by epoch):\n"
    );
    for r in records {
        let _ = writeln!(
            md,
            "- {} seed {}: ![]({}/curves.png)",
            r.config.arch_name(),
            r.config.seed,
            rel(&r.dir)
        );
    }
    let _ = writeln!(
        md,
        "\n**A note on the paper's iteration count.** The paper states 1875 iterations per epoch \
         (60,000 / 32) while also holding out 20% of the training images for validation, which \
         leaves 48,000 / 32 = 1500. relumax follows the split (1500 iterations); \
         `relumax paper --full-train` trains on all 60,000 images without validation, the other \
         reading.\n"
    );
    let _ = writeln!(
        md,
        "## Experiment 2: the hand-painted digits\n\n{}",
        if samples_md.is_empty() {
            "(no sample digits or no 28 x 28 model)\n".into()
        } else {
            samples_md
        }
    );
    let _ = writeln!(
        md,
        "## Experiment 3: feed backward\n\nEach class's one-hot vector pushed back through the \
         transposed weights of the 1x128 model to a 28 x 28 image (red positive, blue negative, \
         each panel scaled to its own range):\n\n{feed_note}\n"
    );
    let path = out.join("report.md");
    relumax::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}
