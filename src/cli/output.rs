//! Printers shared by the commands: JSON lines, an epoch's line, an evaluation.

use relumax::{EpochMetrics, Evaluation};

/// One line of JSON.
pub fn json_line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("relumax's outputs always serialise")
}

/// A one-line text summary of an epoch.
pub fn epoch_line(e: &EpochMetrics, epochs: usize) -> String {
    let val = match (e.val_loss, e.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4} acc {a:.4}"),
        _ => String::new(),
    };
    format!(
        "epoch {}/{epochs}  train loss {:.4} acc {:.4}{val}  {:.2} s ({:.0} samples/s)",
        e.epoch, e.train_loss, e.train_accuracy, e.train_seconds, e.samples_per_second
    )
}

/// Prints loss, accuracy and the confusion matrix.
pub fn print_evaluation(name: &str, ev: &Evaluation) {
    outln!(
        "{name} loss {:.5}  accuracy {:.4}  ({} samples)",
        ev.loss,
        ev.accuracy,
        ev.samples
    );
    outln!("confusion matrix (rows: true class, columns: predicted class)");
    let classes = ev.confusion.len();
    let width = ev
        .confusion
        .iter()
        .flatten()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max(classes.to_string().len())
        + 1;
    let header: String = (0..classes).map(|c| format!("{c:>width$}")).collect();
    outln!("{:>4} {header}", "");
    for (t, row) in ev.confusion.iter().enumerate() {
        let cells: String = row.iter().map(|n| format!("{n:>width$}")).collect();
        outln!("{t:>4} {cells}");
    }
}
