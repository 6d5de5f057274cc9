//! Checkpoints: a [`TrainState`] with its [`TrainConfig`] in a folder, so an interrupted run
//! continues bit-identically.
//!
//! `state.safetensors` holds the weights, with the position, metrics and configuration (and
//! the configuration's SHA-256) in its metadata; `velocity-<epoch>-<step>.safetensors` holds
//! the momentum buffers when there are any (both carry a stamp, `epoch:step`, that must
//! agree), and `best-<epoch>.safetensors` the best model so far with `keep_best`. Each file is
//! written atomically: the side files under their own names first, then the state, and only
//! then are older side files removed. So a crash at any point leaves a state whose side files
//! are still there: the previous checkpoint or the new one.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::layer::Dense;
use crate::model::Mlp;
use crate::model_file::{load, to_bytes};
use crate::train::{Best, EpochProgress, TrainConfig, TrainState};

const STATE_FILE: &str = "state.safetensors";
/// The velocity file that goes with the state stamped `epoch:step`.
fn velocity_file(stamp: &str) -> String {
    format!("velocity-{}.safetensors", stamp.replace(':', "-"))
}

/// Whether `name` is a velocity file of any stamp.
fn is_velocity_file(name: &str) -> bool {
    name.starts_with("velocity-") && name.ends_with(".safetensors")
}

/// The file of the best model so far (`TrainConfig::keep_best`), from 1-based `epoch`.
fn best_file(epoch: usize) -> String {
    format!("best-{epoch}.safetensors")
}

/// Whether `name` is a best-model file of any epoch.
fn is_best_file(name: &str) -> bool {
    name.starts_with("best-") && name.ends_with(".safetensors")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    epoch: usize,
    step: usize,
    epochs: Vec<crate::train::EpochMetrics>,
    curve: Vec<crate::train::CurvePoint>,
    progress: EpochProgress,
    /// The best model's epoch and validation loss (as its bits, exactly).
    #[serde(default)]
    best: Option<(usize, u64)>,
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
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.into(),
        source,
    })?;
    let stamp = format!("{}:{}", state.epoch, state.step);
    let written = write_velocity(dir, state, &stamp)
        .and_then(|velocity| write_best(dir, state).map(|best| [velocity, best]))
        .and_then(|keep| write_state(dir, config, state, &stamp).map(|()| keep));
    let keep = match written {
        Ok(keep) => keep,
        Err(e) => {
            // A first checkpoint that could not be written leaves no folder behind (an older
            // one stays as it was).
            if fresh {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    // The new state is in place: velocity and best-model files of older states are no
    // longer needed.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let side = is_velocity_file(&name) || is_best_file(&name);
            if side && !keep.iter().flatten().any(|k| *k == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// Writes the velocity of `state` under its stamp's name; returns that name (`None` without
/// momentum buffers).
fn write_velocity(dir: &Path, state: &TrainState, stamp: &str) -> Result<Option<String>> {
    if state.velocity.is_empty() {
        Ok(None)
    } else {
        let layers = state
            .velocity
            .iter()
            .map(|(w, b)| Dense {
                weight: crate::aligned::copy(w.view()),
                bias: b.clone(),
            })
            .collect();
        let velocity = Mlp::from_layers(layers)?;
        let name = velocity_file(stamp);
        write_atomic(
            &dir.join(&name),
            &to_bytes(&velocity, &[("stamp", stamp.to_string())]),
        )?;
        Ok(Some(name))
    }
}

/// Writes the best model of `state` under its epoch's name; returns that name (`None` without
/// one).
fn write_best(dir: &Path, state: &TrainState) -> Result<Option<String>> {
    let Some(best) = &state.best else {
        return Ok(None);
    };
    let name = best_file(best.epoch);
    write_atomic(&dir.join(&name), &to_bytes(&best.model, &[]))?;
    Ok(Some(name))
}

/// The shapes of a model's layers, to hold a side file to the state's model.
fn shapes(m: &Mlp) -> Vec<((usize, usize), usize)> {
    m.layers()
        .iter()
        .map(|l| (l.weight.dim(), l.bias.len()))
        .collect()
}

/// Reads a side file (velocity or best model) of the state's `model`, refusing one of other
/// shapes.
fn load_side(path: &Path, model: &Mlp) -> Result<crate::model_file::LoadedModel> {
    let side = load(path)?;
    if shapes(&side.model) != shapes(model) {
        return Err(Error::Model {
            path: path.into(),
            reason: format!(
                "its layers {:?} are not shaped as the model's in {STATE_FILE}, {:?}",
                side.model.sizes(),
                model.sizes()
            ),
        });
    }
    Ok(side)
}

/// Writes the weights, position and configuration of `state`, stamped `stamp`.
fn write_state(dir: &Path, config: &TrainConfig, state: &TrainState, stamp: &str) -> Result<()> {
    let config_json = serde_json::to_string(config).expect("configs serialise");
    let position = Position {
        epoch: state.epoch,
        step: state.step,
        epochs: state.epochs.clone(),
        curve: state.curve.clone(),
        progress: state.progress,
        best: state.best.as_ref().map(|b| (b.epoch, b.val_loss.to_bits())),
    };
    let meta = [
        (
            "state",
            serde_json::to_string(&position).expect("positions serialise"),
        ),
        ("config_sha256", config_hash(&config_json)),
        ("config", config_json),
        ("stamp", stamp.to_string()),
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
    let velocity_path = Some(dir.join(velocity_file(&stamp))).filter(|path| path.is_file());
    if let (true, Some(velocity_path)) = (config.momentum > 0.0, velocity_path) {
        let v = load_side(&velocity_path, &loaded.model)?;
        if v.metadata.get("stamp") != Some(&stamp) {
            return Err(bad(format!(
                "{} belongs to another step than {STATE_FILE}",
                velocity_path.display()
            )));
        }
        velocity = v
            .model
            .layers()
            .iter()
            .map(|l| (l.weight.clone(), l.bias.clone()))
            .collect();
    }
    let best = match position.best {
        Some((epoch, bits)) => Some(Best {
            epoch,
            val_loss: f64::from_bits(bits),
            model: load_side(&dir.join(best_file(epoch)), &loaded.model)?.model,
        }),
        None => None,
    };
    let state = TrainState {
        best,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;

    fn state(seed: u64, epoch: usize) -> TrainState {
        let sizes = [3, 4, 2];
        let velocity = Mlp::new(&sizes, Init::He, seed + 100).unwrap();
        let mut s = TrainState::new(Mlp::new(&sizes, Init::He, seed).unwrap());
        s.velocity = velocity
            .layers()
            .iter()
            .map(|l| (l.weight.clone(), l.bias.clone()))
            .collect();
        s.epoch = epoch;
        s
    }

    fn with_momentum() -> TrainConfig {
        TrainConfig {
            momentum: 0.5,
            ..Default::default()
        }
    }

    fn velocity_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| is_velocity_file(n))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_crash_between_the_two_files_leaves_the_previous_checkpoint_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let config = with_momentum();
        let a = state(1, 1);
        save_checkpoint(tmp.path(), &config, &a).unwrap();
        // The next checkpoint's velocity is written, then the process dies before its state.
        let b = state(2, 2);
        write_velocity(tmp.path(), &b, "2:0").unwrap();
        let (_, loaded) = load_checkpoint(tmp.path()).unwrap();
        assert_eq!(loaded.epoch, 1);
        assert_eq!(loaded.velocity, a.velocity);
        assert_eq!(loaded.model.layers()[0].weight, a.model.layers()[0].weight);
        // A whole save replaces both, and only its own velocity file is left.
        save_checkpoint(tmp.path(), &config, &b).unwrap();
        let (_, loaded) = load_checkpoint(tmp.path()).unwrap();
        assert_eq!(loaded.epoch, 2);
        assert_eq!(loaded.velocity, b.velocity);
        assert_eq!(velocity_files(tmp.path()), ["velocity-2-0.safetensors"]);
        // Without momentum buffers, no velocity file stays behind.
        let mut c = state(3, 3);
        c.velocity.clear();
        save_checkpoint(tmp.path(), &config, &c).unwrap();
        assert!(velocity_files(tmp.path()).is_empty());
    }

    #[test]
    fn a_velocity_of_another_shape_is_refused_naming_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        save_checkpoint(tmp.path(), &with_momentum(), &state(1, 1)).unwrap();
        // The velocity of a [3, 5, 2] network under the stamp of the [3, 4, 2] state.
        let mut other = state(1, 1);
        let wide = Mlp::new(&[3, 5, 2], Init::He, 7).unwrap();
        other.velocity = wide
            .layers()
            .iter()
            .map(|l| (l.weight.clone(), l.bias.clone()))
            .collect();
        write_velocity(tmp.path(), &other, "1:0").unwrap();
        let err = load_checkpoint(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&velocity_file("1:0")) && err.contains("not shaped as the model"),
            "{err}"
        );
    }

    #[test]
    fn a_velocity_of_another_step_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let config = with_momentum();
        save_checkpoint(tmp.path(), &config, &state(1, 1)).unwrap();
        // The velocity of another step under this step's name.
        write_velocity(tmp.path(), &state(2, 2), "2:0").unwrap();
        std::fs::rename(
            tmp.path().join(velocity_file("2:0")),
            tmp.path().join(velocity_file("1:0")),
        )
        .unwrap();
        let err = load_checkpoint(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("belongs to another step"), "{err}");
    }
}
