//! Helpers shared by the commands that turn their arguments into the library's values:
//! the dataset, the kernels choice, a model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use relumax::kernels::Kernels;
use relumax::{Dataset, Evaluation, Mlp, Split, TrainResult, model::MAX_LAYERS, preprocess::FRAME};

use super::DataOpt;

/// The data folder a command uses.
pub fn data_dir(opt: &DataOpt) -> PathBuf {
    opt.data.clone().unwrap_or_else(Dataset::bundled_dir)
}

/// The test split of an IDX dataset (every IDX folder has one; in-memory data may not).
pub fn test_split(data: &Dataset) -> anyhow::Result<&Split> {
    data.test.as_ref().context("the dataset has no test split")
}

/// The test evaluation of a run on an IDX dataset.
pub fn test_evaluation(result: &TrainResult) -> anyhow::Result<&Evaluation> {
    result
        .test
        .as_ref()
        .context("the dataset has no test split")
}

/// Opens the dataset and prints its loading notes to stderr.
pub fn open_data(opt: &DataOpt) -> anyhow::Result<Dataset> {
    let dir = data_dir(opt);
    let data = match &opt.data {
        Some(_) => Dataset::open(&dir),
        None => Dataset::bundled(),
    }
    .with_context(|| format!("cannot load dataset {}", dir.display()))?;
    for note in data.notes() {
        eprintln!("note: {note}");
    }
    Ok(data)
}

/// `--kernels` if given, else `$RELUMAX_KERNELS`, else auto.
pub fn kernels(flag: Option<Kernels>) -> anyhow::Result<Kernels> {
    Ok(match flag {
        Some(k) => k,
        None => Kernels::from_env()?.unwrap_or_default(),
    })
}

/// Resolves a run folder to its model file.
pub fn model_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    }
}

/// Loads a model (a file or a run folder) and checks that it takes 28 x 28 images.
pub fn load_image_model(path: &Path) -> anyhow::Result<Mlp> {
    let path = model_path(path);
    let model = Mlp::load(&path)?;
    check_image_model(&model, &path)?;
    Ok(model)
}

/// Checks that `model` (loaded from `path`) takes 28 x 28 images.
pub fn check_image_model(model: &Mlp, path: &Path) -> anyhow::Result<()> {
    if model.inputs() != FRAME * FRAME {
        anyhow::bail!(
            "{}: the model takes {} inputs, not the {} pixels of a {FRAME} x {FRAME} image",
            path.display(),
            model.inputs(),
            FRAME * FRAME
        );
    }
    Ok(())
}

/// `layers` hidden layers of `width` units, refusing more layers than a network may have
/// before the list is allocated (`flag` names the value in the message).
pub fn hidden_layers(width: usize, layers: usize, flag: &str) -> anyhow::Result<Vec<usize>> {
    if layers > MAX_LAYERS {
        anyhow::bail!("invalid {flag}: at most {MAX_LAYERS} hidden layers, got {layers}");
    }
    Ok(vec![width; layers])
}
