//! Checkpoints: a [`TrainState`] with its [`TrainConfig`] in a folder, so an interrupted run
//! continues bit-identically.
//!
//! `state.safetensors` holds the weights, with the position, metrics and configuration (and
//! the configuration's SHA-256) in its metadata; `velocity.safetensors` holds the momentum
//! buffers when there are any. Both carry a stamp (`epoch:step`) that must agree. Each file is
//! written atomically, the velocity first, so a crash leaves the previous checkpoint or the
//! new one.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::layer::Dense;
use crate::model::Mlp;
use crate::model_file::{load, to_bytes, write_atomic};
use crate::train::{EpochProgress, TrainConfig, TrainState};

const STATE_FILE: &str = "state.safetensors";
const VELOCITY_FILE: &str = "velocity.safetensors";

#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    epoch: usize,
    step: usize,
    epochs: Vec<crate::train::EpochMetrics>,
    curve: Vec<crate::train::CurvePoint>,
    progress: EpochProgress,
}

fn config_hash(config_json: &str) -> String {
    Sha256::digest(config_json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `state` (trained with `config`) into the folder `dir`, creating it.
///
/// # Errors
/// [`Error::Write`] when the folder or a file cannot be written.
pub fn save_checkpoint(dir: &Path, config: &TrainConfig, state: &TrainState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.into(),
        source,
    })?;
    let stamp = format!("{}:{}", state.epoch, state.step);
    let velocity_path = dir.join(VELOCITY_FILE);
    if state.velocity.is_empty() {
        let _ = std::fs::remove_file(&velocity_path);
    } else {
        let layers = state
            .velocity
            .iter()
            .map(|(w, b)| Dense {
                weight: w.clone(),
                bias: b.clone(),
            })
            .collect();
        let velocity = Mlp::from_layers(layers)?;
        write_atomic(
            &velocity_path,
            &to_bytes(&velocity, &[("stamp", stamp.clone())]),
        )?;
    }
    let config_json = serde_json::to_string(config).expect("configs serialise");
    let position = Position {
        epoch: state.epoch,
        step: state.step,
        epochs: state.epochs.clone(),
        curve: state.curve.clone(),
        progress: state.progress,
    };
    let meta = [
        (
            "state",
            serde_json::to_string(&position).expect("positions serialise"),
        ),
        ("config_sha256", config_hash(&config_json)),
        ("config", config_json),
        ("stamp", stamp),
    ];
    write_atomic(&dir.join(STATE_FILE), &to_bytes(&state.model, &meta))
}

/// Reads a checkpoint written by [`save_checkpoint`].
///
/// # Errors
/// [`Error::Read`] when the folder holds no checkpoint; [`Error::Model`] when a file is
/// damaged, the configuration does not match its hash, or the velocity belongs to another
/// step.
pub fn load_checkpoint(dir: &Path) -> Result<(TrainConfig, TrainState)> {
    let path = dir.join(STATE_FILE);
    let loaded = load(&path)?;
    let bad = |reason: String| Error::Model {
        path: path.clone(),
        reason,
    };
    let field = |k: &str| {
        loaded
            .metadata
            .get(k)
            .ok_or_else(|| bad(format!("no {k:?} in the checkpoint metadata")))
    };
    let config_json = field("config")?;
    if config_hash(config_json) != *field("config_sha256")? {
        return Err(bad("the saved configuration does not match its hash".into()));
    }
    let config: TrainConfig =
        serde_json::from_str(config_json).map_err(|e| bad(format!("bad config: {e}")))?;
    let position: Position =
        serde_json::from_str(field("state")?).map_err(|e| bad(format!("bad state: {e}")))?;
    let stamp = field("stamp")?.clone();
    let mut velocity = Vec::new();
    let velocity_path = dir.join(VELOCITY_FILE);
    if config.momentum > 0.0 && velocity_path.is_file() {
        let v = load(&velocity_path)?;
        if v.metadata.get("stamp") != Some(&stamp) {
            return Err(bad(format!(
                "{VELOCITY_FILE} belongs to another step than {STATE_FILE}"
            )));
        }
        velocity = v
            .model
            .layers()
            .iter()
            .map(|l| (l.weight.clone(), l.bias.clone()))
            .collect();
    }
    let state = TrainState {
        model: loaded.model,
        velocity,
        epoch: position.epoch,
        step: position.step,
        epochs: position.epochs,
        curve: position.curve,
        progress: position.progress,
    };
    Ok((config, state))
}
