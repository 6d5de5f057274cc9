//! The report's numbers: the paper's results, and relumax's runs aggregated per
//! configuration over seeds.

use std::collections::BTreeMap;

use crate::cli::run::RunRecord;

/// The paper's test results: (hidden layers, width) -> (loss, accuracy).
pub const PAPER: [((usize, usize), f64, f64); 10] = [
    ((1, 128), 0.28978, 0.9202),
    ((1, 256), 0.27435, 0.9235),
    ((1, 512), 0.26734, 0.9278),
    ((1, 1024), 0.25647, 0.9288),
    ((1, 2048), 0.24820, 0.9316),
    ((2, 128), 0.23520, 0.9316),
    ((2, 256), 0.21163, 0.9369),
    ((2, 512), 0.19700, 0.9426),
    ((2, 1024), 0.17729, 0.9496),
    ((2, 2048), 0.16562, 0.9509),
];

/// The paper's (loss, accuracy) for a configuration, if it has one.
pub fn paper(layers: usize, width: usize) -> Option<(f64, f64)> {
    PAPER
        .iter()
        .find(|(k, _, _)| *k == (layers, width))
        .map(|&(_, l, a)| (l, a))
}

/// A run's configuration: (hidden layers, first width).
pub fn key(r: &RunRecord) -> (usize, usize) {
    (r.config.hidden.len(), r.config.hidden[0])
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// One configuration's results over its seeds.
pub struct Row {
    pub layers: usize,
    pub width: usize,
    pub seeds: usize,
    /// Test loss, (mean, standard deviation).
    pub loss: (f64, f64),
    /// Test accuracy, (mean, standard deviation).
    pub acc: (f64, f64),
    /// Mean seconds per epoch.
    pub secs: f64,
    /// The paper's (loss, accuracy).
    pub paper: Option<(f64, f64)>,
    /// The run of the first seed, whose curves and model the figures use.
    pub first: RunRecord,
}

/// The records grouped by configuration, in (layers, width) order.
pub fn rows(records: &[RunRecord]) -> Vec<Row> {
    let mut groups: BTreeMap<(usize, usize), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((layers, width), rs)| {
            let losses: Vec<f64> = rs.iter().map(|r| r.result.test_loss).collect();
            let accs: Vec<f64> = rs.iter().map(|r| r.result.test_accuracy).collect();
            let secs: Vec<f64> = rs.iter().map(|r| r.seconds_per_epoch()).collect();
            Row {
                layers,
                width,
                seeds: rs.len(),
                loss: mean_sd(&losses),
                acc: mean_sd(&accs),
                secs: mean_sd(&secs).0,
                paper: paper(layers, width),
                first: rs[0].clone(),
            }
        })
        .collect()
}

/// The row with the best mean test accuracy.
pub fn best(rows: &[Row]) -> Option<&Row> {
    rows.iter().max_by(|a, b| a.acc.0.total_cmp(&b.acc.0))
}
