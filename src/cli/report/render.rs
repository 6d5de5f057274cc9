//! The report rendered: Markdown tables and text, CSV, JSON, the summary figure.

use std::fmt::Write as _;
use std::path::Path;

use plotters::style::RGBColor;
use relumax::build_info;
use serde_json::{Value, json};

use super::experiments::Sample;
use super::results::{Row, key, paper};
use crate::cli::plot::{self, Panel, Series};
use crate::cli::run::RunRecord;

/// The two tables: hidden layers and title.
const TABLES: [(usize, &str); 2] = [
    (1, "Table I: one hidden layer"),
    (2, "Table II: two hidden layers"),
];

fn pm((m, sd): (f64, f64), seeds: usize, digits: usize) -> String {
    if seeds > 1 {
        format!("{m:.digits$} ± {sd:.digits$}")
    } else {
        format!("{m:.digits$}")
    }
}

/// A Markdown table of `rows` beside the paper's numbers.
/// A Markdown table of `rows` beside the paper's numbers.
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
    let rows = super::results::rows(records);
    for (layers, name) in TABLES {
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
    if let Some(best) = super::results::best(rows) {
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

/// Draws the validation accuracy of every configuration by epoch into `summary.png` and
/// `summary.svg` in `out`; false when no run has validation.
pub fn summary_figure(rows: &[Row], out: &Path) -> anyhow::Result<bool> {
    let panels: Vec<Panel> = [(1, "one hidden layer"), (2, "two hidden layers")]
        .into_iter()
        .map(|(layers, name)| Panel {
            title: format!("validation accuracy, {name}"),
            x_label: "epoch",
            series: val_series(rows, layers),
            legend_low: true,
        })
        .filter(|p| !p.series.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(false);
    }
    plot::write_panels(
        &panels,
        Some(&out.join("summary.png")),
        Some(&out.join("summary.svg")),
    )?;
    Ok(true)
}

/// `results.csv`: one line per run.
pub fn csv(records: &[RunRecord]) -> String {
    let mut csv = String::from(
        "layers,hidden,seed,epochs,test_loss,test_accuracy,paper_loss,paper_accuracy,seconds_per_epoch,epochs_per_second\n",
    );
    for r in records {
        let (l, w) = key(r);
        let (pl, pa) = paper(l, w).map_or((String::new(), String::new()), |(a, b)| {
            (a.to_string(), b.to_string())
        });
        let s = r.seconds_per_epoch();
        let _ = writeln!(
            csv,
            "{l},{w},{},{},{},{},{pl},{pa},{s:.4},{:.4}",
            r.config.seed,
            r.epochs.len(),
            r.result.test_loss,
            r.result.test_accuracy,
            1.0 / s.max(1e-12)
        );
    }
    csv
}

/// `results.json`: the configurations, the runs and the samples.
pub fn json(
    rows: &[Row],
    records: &[RunRecord],
    samples: Value,
    rel: impl Fn(&Path) -> String,
) -> Value {
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
            json!({"layers": key(r).0, "hidden": key(r).1, "seed": r.config.seed,
            "test_loss": r.result.test_loss, "test_accuracy": r.result.test_accuracy,
            "seconds_per_epoch": r.seconds_per_epoch(), "dir": rel(&r.dir)})
        })
        .collect();
    json!({
        "configs": configs, "runs": runs, "samples": samples,
        "relumax_version": env!("CARGO_PKG_VERSION"), "git_revision": build_info::GIT_REVISION,
        "blas": relumax::openblas::blas_config(),
    })
}

/// What the report's Markdown is made of.
pub struct Contents<'a> {
    pub rows: &'a [Row],
    pub records: &'a [RunRecord],
    /// How many runs the report should have covered.
    pub expected: usize,
    pub has_summary: bool,
    /// Experiment 2: the best row and its samples.
    pub samples: Option<(&'a Row, &'a [Sample])>,
    /// Experiment 3: whether the feed-backward figures were drawn.
    pub feed_backward: bool,
}

/// `report.md`; `rel` gives paths relative to the report's folder.
pub fn markdown(c: &Contents<'_>, rel: impl Fn(&Path) -> String) -> String {
    let (rows, records) = (c.rows, c.records);
    let cfg = &records[0].config;
    let mut md = String::new();
    let _ = writeln!(md, "# relumax: reproduction of the paper's experiments\n");
    let _ = writeln!(
        md,
        "Setup: {} epochs, learning rate {}, batch {}, dropout {}, He init, plain SGD; {} \
         seed{} per configuration; {} of {} runs finished. relumax {} ({}), {}.\n",
        cfg.epochs,
        cfg.lr,
        cfg.batch_size,
        cfg.dropout,
        rows.first().map_or(1, |r| r.seeds),
        if rows.first().is_some_and(|r| r.seeds > 1) {
            "s (mean ± standard deviation)"
        } else {
            ""
        },
        records.len(),
        c.expected,
        env!("CARGO_PKG_VERSION"),
        build_info::GIT_REVISION,
        relumax::openblas::blas_config()
    );
    let _ = writeln!(md, "## Experiment 1: Tables I and II\n");
    for (layers, name) in TABLES {
        let part: Vec<&Row> = rows.iter().filter(|r| r.layers == layers).collect();
        if !part.is_empty() {
            let _ = writeln!(md, "### {name}\n\n{}", table(&part));
        }
    }
    let _ = writeln!(md, "### Discussion\n\n{}", discussion(rows));
    if c.has_summary {
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
        match c.samples {
            Some((best, samples)) => samples_markdown(best, samples),
            None => "(no sample digits or no 28 x 28 model)\n".into(),
        }
    );
    let feed = if c.feed_backward {
        "![feed backward, transpose](classes.png)\n\nThe same through each layer's \
         pseudo-inverse (minimum-norm preimage):\n\n![feed backward, pinv](classes_pinv.png)"
    } else {
        "(no 1x128 run in this report)"
    };
    let _ = writeln!(
        md,
        "## Experiment 3: feed backward\n\nEach class's one-hot vector pushed back through the \
         transposed weights of the 1x128 model to a 28 x 28 image (red positive, blue negative, \
         each panel scaled to its own range):\n\n{feed}\n"
    );
    md
}

/// Experiment 2's paragraph and table.
fn samples_markdown(best: &Row, samples: &[Sample]) -> String {
    let right = samples.iter().filter(|s| s.prediction == s.digit).count();
    let lines: Vec<String> = samples
        .iter()
        .map(|s| {
            format!(
                "| {} | {} | {:.3} | {} |",
                s.digit,
                s.prediction,
                s.probabilities[s.prediction],
                if s.prediction == s.digit { "yes" } else { "no" }
            )
        })
        .collect();
    format!(
        "The best model ({}x{}, seed {}) on the ten hand-painted digits in `data/samples/` \
         (painted with a round brush, not taken from MNIST): **{right} of {} right** \
         (the paper's best model got 7 of 10).\n\n| digit | predicted | probability | right \
         |\n|---:|---:|---:|:---:|\n{}\n",
        best.layers,
        best.width,
        best.first.config.seed,
        samples.len(),
        lines.join("\n")
    )
}
