//! Helpers shared by the commands: opening data, the kernels choice, JSON output.

use std::path::PathBuf;

use anyhow::Context;
use relumax::Dataset;
use relumax::kernels::Kernels;

use super::DataOpt;

/// The data folder a command uses.
pub fn data_dir(opt: &DataOpt) -> PathBuf {
    opt.data.clone().unwrap_or_else(Dataset::bundled_dir)
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

/// One line of JSON.
pub fn json_line(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("JSON values always serialise")
}

/// `--kernels` if given, else `$RELUMAX_KERNELS`, else auto.
pub fn kernels(flag: Option<Kernels>) -> anyhow::Result<Kernels> {
    Ok(match flag {
        Some(k) => k,
        None => Kernels::from_env()?.unwrap_or_default(),
    })
}
