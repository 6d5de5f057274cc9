//! `relumax predict`: classify a person's own digit images with MNIST's preprocessing.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ndarray::Array2;
use relumax::{FRAME, Mlp, load_model, mnist_digit};
use serde_json::json;

use super::common::json_line;
use super::eval_cmd::model_path;
use super::images::read_gray;

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

/// Images narrower or shorter than this get a note: scaled up to MNIST's 20 x 20 box, they
/// hold little of a digit (MNIST's own are 28 x 28).
const MIN_SIDE: usize = 8;

/// One classified image.
pub struct Prediction {
    pub digit: usize,
    pub probabilities: Vec<f32>,
}

/// Classifies one image file.
pub fn classify(model: &Mlp, path: &Path) -> anyhow::Result<Prediction> {
    let gray = read_gray(path)?;
    let (h, w) = gray.dim();
    if h.min(w) < MIN_SIDE {
        eprintln!(
            "note: {} is {w}x{h} pixels; a digit is scaled to fill 20x20, so so small an image \
             says little",
            path.display()
        );
    }
    let digit = mnist_digit(gray.view()).with_context(|| format!("{}", path.display()))?;
    let x = Array2::from_shape_vec((1, FRAME * FRAME), digit.into_iter().collect())
        .expect("a frame has FRAME * FRAME pixels");
    let probabilities = model.predict_proba(x.view()).row(0).to_vec();
    let digit = relumax::kernels::argmax(&probabilities);
    Ok(Prediction {
        digit,
        probabilities,
    })
}

/// Loads a model and checks that it takes 28 x 28 images.
pub fn load_image_model(path: &Path) -> anyhow::Result<Mlp> {
    let path = model_path(path);
    let model = load_model(&path)?.model;
    if model.inputs() != FRAME * FRAME {
        anyhow::bail!(
            "{}: the model takes {} inputs, not the {} pixels of a {FRAME} x {FRAME} image",
            path.display(),
            model.inputs(),
            FRAME * FRAME
        );
    }
    Ok(model)
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
