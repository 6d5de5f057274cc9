//! The paper reproduction's report: Tables I and II beside the paper's numbers, a summary
//! figure, the feed-backward figure, the sample digits, CSV and JSON, and a discussion
//! generated from the numbers.
//!
//! `results` aggregates the runs, `experiments` runs experiments 2 and 3 on their models,
//! `render` turns both into text and figures; this module writes the files.

mod experiments;
mod render;
mod results;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::run::RunRecord;

pub use render::print_tables;

/// Writes report.md, results.csv, results.json and the figures into `out`; returns the
/// report's path. `expected` is the number of runs the report should cover.
pub fn write(out: &Path, records: &[RunRecord], expected: usize) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let rows = results::rows(records);
    let rel = |p: &Path| p.strip_prefix(out).unwrap_or(p).display().to_string();
    relumax::fs::write_atomic(&out.join("results.csv"), render::csv(records).as_bytes())?;
    let has_summary = render::summary_figure(&rows, out)?;

    // Experiment 3: feed backward on the paper's choice, the 1x128 model.
    let feed_backward = match rows.iter().find(|r| (r.layers, r.width) == (1, 128)) {
        Some(row) => experiments::feed_backward(row, out)?,
        None => false,
    };
    // Experiment 2: the best model on the hand-painted samples.
    let best = results::best(&rows);
    let samples = best.and_then(|row| Some((row, experiments::samples_run(row)?)));
    let samples_json = samples.as_ref().map_or(Value::Null, |(row, s)| {
        experiments::samples_json(row, s, rel)
    });

    let json = render::json(&rows, records, samples_json, rel);
    let text = serde_json::to_string_pretty(&json)?;
    relumax::fs::write_atomic(&out.join("results.json"), format!("{text}\n").as_bytes())?;
    let contents = render::Contents {
        rows: &rows,
        records,
        expected,
        has_summary,
        samples: samples.as_ref().map(|(row, s)| (*row, s.as_slice())),
        feed_backward,
    };
    let path = out.join("report.md");
    relumax::fs::write_atomic(&path, render::markdown(&contents, rel).as_bytes())?;
    Ok(path)
}
