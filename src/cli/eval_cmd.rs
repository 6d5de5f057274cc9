//! `relumax eval`: test loss, accuracy and confusion matrix of a saved model.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use relumax::Mlp;
use relumax::train::{check_fits, evaluate};
use serde_json::json;

use super::DataOpt;
use super::common::{model_path, open_data, test_split};
use super::output::{json_line, print_evaluation};

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

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let path = model_path(&args.model);
    let model = Mlp::load(&path)?;
    let data = open_data(&args.data)?;
    check_fits(&model, &data)
        .with_context(|| format!("{} does not fit this dataset", path.display()))?;
    let ev = evaluate(&model, test_split(&data)?, None);
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
