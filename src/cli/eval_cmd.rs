//! `relumax eval`: test loss, accuracy and confusion matrix of a saved model.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use relumax::{Evaluation, check_fits, evaluate, load_model};
use serde_json::json;

use super::DataOpt;
use super::common::{json_line, open_data};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model written by `relumax train` (model.safetensors), or its run folder.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    #[command(flatten)]
    data: DataOpt,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Resolves a run folder to its model file.
pub fn model_path(path: &std::path::Path) -> PathBuf {
    if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    }
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let path = model_path(&args.model);
    let loaded = load_model(&path)?;
    let data = open_data(&args.data)?;
    check_fits(&loaded.model, &data)
        .with_context(|| format!("{} does not fit this dataset", path.display()))?;
    let ev = evaluate(&loaded.model, &data.test, None);
    if args.json {
        outln!(
            "{}",
            json_line(&json!({
                "model": path,
                "test_loss": ev.loss,
                "test_accuracy": ev.accuracy,
                "samples": ev.samples,
                "confusion": ev.confusion,
            }))
        );
    } else {
        outln!("model     {}", path.display());
        print_evaluation("test", &ev);
    }
    Ok(())
}

/// Prints loss, accuracy and the confusion matrix.
pub fn print_evaluation(name: &str, ev: &Evaluation) {
    outln!(
        "{name} loss {:.5}  accuracy {:.4}  ({} samples)",
        ev.loss,
        ev.accuracy,
        ev.samples
    );
    outln!("confusion matrix (rows: true class, columns: predicted class)");
    let classes = ev.confusion.len();
    let width = ev
        .confusion
        .iter()
        .flatten()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max(classes.to_string().len())
        + 1;
    let header: String = (0..classes).map(|c| format!("{c:>width$}")).collect();
    outln!("{:>4} {header}", "");
    for (t, row) in ev.confusion.iter().enumerate() {
        let cells: String = row.iter().map(|n| format!("{n:>width$}")).collect();
        outln!("{t:>4} {cells}");
    }
}
