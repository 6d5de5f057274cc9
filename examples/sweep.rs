//! A width sweep through the library: one hidden layer of 128 to 1024 units, one epoch each,
//! printing accuracy and speed.
//!
//! Threads: `TrainConfig::threads` (default: every core) sizes the rayon pool that runs every
//! product in fixed blocks. Results do not depend on the thread count, so a sweep can run one
//! configuration per core (`threads: Some(1)` each, in parallel processes) or one at a time
//! with all cores, with identical numbers.
//!
//! Run with: `cargo run --release --example sweep [MNIST_DIR]` (default: `$RELUMAX_MNIST`,
//! else this repository's `data/mnist`).

use std::ops::ControlFlow;

use relumax::{Dataset, TrainConfig, Trainer};

/// One row of the sweep: width, test accuracy, training seconds.
struct Row {
    width: usize,
    accuracy: f64,
    seconds: f64,
}

/// Trains one epoch of one hidden layer of each width in `widths`.
fn sweep(data: &Dataset, widths: &[usize]) -> Result<Vec<Row>, relumax::Error> {
    widths
        .iter()
        .map(|&width| {
            let config = TrainConfig {
                hidden: vec![width],
                epochs: 1,
                ..Default::default()
            };
            let r = Trainer::new(config)?.fit(data, |_| ControlFlow::Continue(()))?;
            Ok(Row {
                width,
                // An IDX folder always has a test split.
                accuracy: r.test.map_or(f64::NAN, |t| t.accuracy),
                seconds: r.train_seconds,
            })
        })
        .collect()
}

fn main() -> Result<(), relumax::Error> {
    let data = match std::env::args_os().nth(1) {
        Some(dir) => Dataset::open(dir)?,
        None => Dataset::bundled()?,
    };
    println!("| width | test accuracy | s/epoch |\n|---:|---:|---:|");
    for row in sweep(&data, &[128, 256, 512, 1024])? {
        println!(
            "| {} | {:.4} | {:.2} |",
            row.width, row.accuracy, row.seconds
        );
    }
    Ok(())
}

#[test]
fn sweeps_the_widths_in_order() {
    let data = Dataset::bundled().unwrap();
    let rows = sweep(&data, &[128, 256]).unwrap();
    let widths: Vec<usize> = rows.iter().map(|r| r.width).collect();
    assert_eq!(widths, [128, 256]);
    // The golden of `tests/it/training.rs` for one epoch of 1x128, on every CPU.
    assert_eq!(rows[0].accuracy, 0.8855);
    assert!(rows[1].accuracy > 0.85 && rows.iter().all(|r| r.seconds > 0.0));
}
