//! The paper's experiments 2 and 3 on the reproduction's models: the hand-painted sample
//! digits, and the feed-backward class images.

use std::path::{Path, PathBuf};

use relumax::{Mlp, inspect::Preimage, preprocess::FRAME};
use serde_json::{Value, json};

use super::results::Row;
use crate::cli::common::load_image_model;
use crate::cli::images::{classify, write_class_images};

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

/// One sample digit, classified.
pub struct Sample {
    pub digit: usize,
    pub prediction: usize,
    pub probabilities: Vec<f32>,
}

/// Experiment 2: `row`'s model (the best one) on the hand-painted digits; `None` when there
/// are no sample images or the model does not take 28 x 28 images.
pub fn samples_run(row: &Row) -> Option<Vec<Sample>> {
    let model = load_image_model(&row.first.dir.join("model.safetensors")).ok()?;
    let done: Vec<Sample> = samples()
        .into_iter()
        .filter_map(|(digit, path)| {
            let p = classify(&model, &path).ok()?;
            Some(Sample {
                digit,
                prediction: p.digit,
                probabilities: p.probabilities,
            })
        })
        .collect();
    (!done.is_empty()).then_some(done)
}

/// The samples as `results.json` holds them.
pub fn samples_json(row: &Row, samples: &[Sample], rel: impl Fn(&Path) -> String) -> Value {
    let images: Vec<Value> = samples
        .iter()
        .map(|s| json!({"digit": s.digit, "prediction": s.prediction, "probabilities": s.probabilities}))
        .collect();
    let right = samples.iter().filter(|s| s.prediction == s.digit).count();
    json!({"model": rel(&row.first.dir), "right": right, "of": samples.len(), "images": images})
}

/// Experiment 3: the feed-backward figures of `row`'s model (the paper's choice, 1x128),
/// through the transposes and the pseudo-inverses, written to `out`; false when the model
/// does not take 28 x 28 images or is missing.
pub fn feed_backward(row: &Row, out: &Path) -> anyhow::Result<bool> {
    let path = row.first.dir.join("model.safetensors");
    if !path.is_file() {
        return Ok(false);
    }
    let model = Mlp::load(&path)?;
    if model.inputs() != FRAME * FRAME {
        return Ok(false);
    }
    write_class_images(&model, Preimage::Transpose, &out.join("classes.png"))?;
    write_class_images(&model, Preimage::Pinv, &out.join("classes_pinv.png"))?;
    Ok(true)
}
