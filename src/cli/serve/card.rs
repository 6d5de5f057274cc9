//! The model's card: what `GET /api/model` returns, and the feed-backward class images the
//! page shows, all computed once when the server starts.

use std::collections::HashMap;
use std::path::Path;

use relumax::inspect::{Preimage, class_images};
use relumax::preprocess::FRAME;
use relumax::{Mlp, TrainConfig};
use serde_json::{Value, json};

use crate::cli::images::panel_png;
use crate::cli::run::read_run;

/// Pixels per MNIST pixel in a served class image (28 x 28 -> 112 x 112).
const ZOOM: usize = 4;

/// The two ways of pushing a class back to the input space, as named in URLs.
pub const METHODS: [(&str, Preimage); 2] =
    [("transpose", Preimage::Transpose), ("pinv", Preimage::Pinv)];

/// The card of a model, and its class images as PNG files.
pub struct Card {
    pub json: Value,
    /// `images[m][k]`: class `k`'s image by method `METHODS[m]`.
    pub images: Vec<Vec<Vec<u8>>>,
}

impl Card {
    /// The card of `model`, loaded from `path` with `metadata`: its configuration comes from
    /// the metadata, its test results from the run folder around the file (when it is one).
    pub fn new(
        model: &Mlp,
        path: &Path,
        metadata: &HashMap<String, String>,
    ) -> anyhow::Result<Card> {
        let config: Option<TrainConfig> = metadata
            .get("config")
            .and_then(|text| serde_json::from_str(text).ok());
        let run = config.as_ref().and_then(|config| {
            let dir = path.parent()?;
            read_run(dir, config).ok()
        });
        let name = config.as_ref().map_or_else(
            || {
                let sizes: Vec<String> = model.sizes().iter().map(usize::to_string).collect();
                sizes.join("-")
            },
            TrainConfig::arch_name,
        );
        let mut images = Vec::new();
        let mut urls = serde_json::Map::new();
        for (name, method) in METHODS {
            let pngs = class_images(model, method)?
                .rows()
                .into_iter()
                .map(|row| panel_png(row, FRAME, ZOOM))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let list: Vec<String> = (0..pngs.len())
                .map(|k| format!("/api/class-images/{name}/{k}.png"))
                .collect();
            urls.insert(name.to_string(), json!(list));
            images.push(pngs);
        }
        let json = json!({
            "name": name,
            "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
            "sizes": model.sizes(),
            "parameters": model.parameters(),
            "config": config,
            "epochs": run.as_ref().map(|r| r.result.epochs),
            "test_accuracy": run.as_ref().map(|r| r.result.test_accuracy),
            "test_loss": run.as_ref().map(|r| r.result.test_loss),
            "test_samples": run.as_ref().map(|r| r.result.test_samples),
            "class_images": urls,
        });
        Ok(Card { json, images })
    }
}
