//! Helpers shared by the commands: opening data, JSON output.

use std::path::PathBuf;

use anyhow::Context;
use relumax::Dataset;

use super::DataOpt;

/// The data folder a command uses.
pub fn data_dir(opt: &DataOpt) -> PathBuf {
    opt.data.clone().unwrap_or_else(Dataset::bundled_dir)
}

/// Opens the dataset and prints its loading notes to stderr.
pub fn open_data(opt: &DataOpt) -> anyhow::Result<Dataset> {
    let dir = data_dir(opt);
    let data =
        Dataset::open(&dir).with_context(|| format!("cannot load dataset {}", dir.display()))?;
    for note in data.notes() {
        eprintln!("note: {note}");
    }
    Ok(data)
}

/// One line of JSON.
pub fn json_line(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("JSON values always serialise")
}
