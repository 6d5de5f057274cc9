//! `relumax predict`: classify a person's own digit images with MNIST's preprocessing.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::common::load_image_model;
use super::images::classify;
use super::output::json_line;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model written by `relumax train` (or its run folder).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// PNG or JPEG images of single digits, any size.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the command; returns whether every image was classified.
pub fn run(args: &PredictArgs) -> anyhow::Result<bool> {
    let model = load_image_model(&args.model)?;
    let mut all_ok = true;
    for path in &args.images {
        match classify(&model, path) {
            Ok(p) if args.json => outln!(
                "{}",
                json_line(
                    &json!({"image": path, "prediction": p.digit, "probabilities": p.probabilities})
                )
            ),
            Ok(p) => {
                let probs: Vec<String> = p
                    .probabilities
                    .iter()
                    .enumerate()
                    .map(|(c, v)| format!("{c}:{v:.3}"))
                    .collect();
                outln!(
                    "{}: {} (p = {:.3})  [{}]",
                    path.display(),
                    p.digit,
                    p.probabilities[p.digit],
                    probs.join(" ")
                );
            }
            Err(e) => {
                all_ok = false;
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(all_ok)
}
