//! `relumax data`: what a dataset folder holds, and whether it checks out.

use relumax::{Dataset, Split};
use serde_json::json;

use super::DataOpt;
use super::common::{data_dir, open_data};
use super::output::json_line;

fn histogram(split: &Split, data: &Dataset) -> Vec<usize> {
    split.class_histogram(data.classes())
}

pub fn run(opt: &DataOpt, as_json: bool) -> anyhow::Result<()> {
    let data = open_data(opt)?;
    let dir = data_dir(opt);
    let shape = data.image_shape();
    if as_json {
        let split = |s: &Split| json!({"samples": s.len(), "class_histogram": histogram(s, &data)});
        let v = json!({
            "dir": dir,
            "image_shape": shape,
            "features": data.features(),
            "classes": data.classes(),
            "train": split(&data.train),
            "test": data.test.as_ref().map(split),
            "files": data.files(),
        });
        outln!("{}", json_line(&v));
        return Ok(());
    }
    outln!("dataset   {}", dir.display());
    match shape {
        Some((r, c)) => outln!("images    {r} x {c} = {} pixels, u8", data.features()),
        None => outln!("features  {}", data.features()),
    }
    outln!("classes   {}", data.classes());
    let splits = [("train", Some(&data.train)), ("test", data.test.as_ref())];
    for (name, split) in splits.into_iter().filter_map(|(n, s)| Some((n, s?))) {
        let h = histogram(split, &data);
        let cells: Vec<String> = h
            .iter()
            .enumerate()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        outln!(
            "{name:<9} {} samples; per class {}",
            split.len(),
            cells.join(" ")
        );
    }
    for f in data.files() {
        let word = |v: serde_json::Value| v.as_str().unwrap_or("?").replace('_', " ");
        outln!(
            "file      {:<26} {:<22} checksum {}",
            f.name,
            word(serde_json::to_value(&f.source)?),
            word(serde_json::to_value(&f.checksum)?)
        );
    }
    Ok(())
}
