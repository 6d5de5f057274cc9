//! Training on in-memory data that is not MNIST: three interleaved 2-D spirals (2 features,
//! 3 classes), generated here, with a network of two hidden layers.
//!
//! Run with: `cargo run --release --example custom_data`

use std::ops::ControlFlow;

use ndarray::Array2;
use relumax::{Dataset, TrainConfig, Trainer};

/// `n` points per class on `classes` spiral arms, with a little deterministic jitter.
fn spirals(n: usize, classes: usize, phase: f32) -> (Array2<f32>, Vec<u32>) {
    let mut x = Array2::zeros((n * classes, 2));
    let mut y = Vec::with_capacity(n * classes);
    for c in 0..classes {
        for i in 0..n {
            let r = i as f32 / n as f32;
            let jitter = ((i * 7919 + c * 104_729) % 1000) as f32 / 1000.0 - 0.5;
            let t =
                c as f32 * std::f32::consts::TAU / classes as f32 + 4.0 * r + 0.2 * jitter + phase;
            x[[c * n + i, 0]] = r * t.cos();
            x[[c * n + i, 1]] = r * t.sin();
            y.push(c as u32);
        }
    }
    (x, y)
}

fn main() -> Result<(), relumax::Error> {
    let (train_x, train_y) = spirals(1000, 3, 0.0);
    let (test_x, test_y) = spirals(300, 3, 0.01);
    let data = Dataset::from_arrays(train_x, train_y, 3)?.with_test(test_x, test_y)?;
    let config = TrainConfig {
        hidden: vec![64, 64],
        epochs: 60,
        lr: 0.1,
        dropout: 0.0,
        momentum: 0.9,
        ..Default::default()
    };
    let result = Trainer::new(config)?.fit(&data, |_| ControlFlow::Continue(()))?;
    // `test` is `None` for a dataset without `with_test`.
    let accuracy = result.test.map_or(0.0, |test| test.accuracy);
    println!(
        "spirals: test accuracy {accuracy:.4} after {} epochs",
        result.epochs.len()
    );
    assert!(accuracy > 0.9, "the spirals are learnable");
    Ok(())
}

#[test]
fn learns_the_spirals() {
    // main asserts the accuracy.
    main().unwrap();
}
