//! The paper's largest network, 784 -> 2048 -> 2048 -> 10, trained on MNIST with the paper's
//! hyper-parameters through the library, and saved.
//!
//! Run with: `cargo run --release --example train_mnist [MNIST_DIR [MODEL_FILE]]`. MNIST_DIR
//! holds MNIST's four files (raw or .gz); without it, `$RELUMAX_MNIST` or this repository's
//! `data/mnist` is used. The model goes to MODEL_FILE (default `model-2x2048.safetensors`).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use relumax::{Dataset, Event, TrainConfig, TrainResult, Trainer};

/// Trains `config` on `data`, printing each epoch, and saves the model to `out`.
fn train(data: &Dataset, config: TrainConfig, out: &Path) -> Result<TrainResult, relumax::Error> {
    let result = Trainer::new(config)?.fit(data, |event| {
        if let Event::Epoch(e) = event {
            println!(
                "epoch {}: train loss {:.4}, val accuracy {:.4}",
                e.epoch,
                e.train_loss,
                e.val_accuracy.unwrap_or(f64::NAN)
            );
        }
        ControlFlow::Continue(())
    })?;
    // An IDX folder always has a test split; in-memory data has one after `with_test`.
    if let Some(test) = &result.test {
        println!(
            "test loss {:.4}, test accuracy {:.4} ({:.1} s of training)",
            test.loss, test.accuracy, result.train_seconds
        );
    }
    result.model.save(out)?;
    Ok(result)
}

fn main() -> Result<(), relumax::Error> {
    let mut args = std::env::args_os().skip(1);
    let data = match args.next() {
        Some(dir) => Dataset::open(dir)?,
        None => Dataset::bundled()?,
    };
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("model-2x2048.safetensors"), PathBuf::from);
    let config = TrainConfig {
        hidden: vec![2048, 2048],
        ..Default::default()
    };
    train(&data, config, &out)?;
    println!("saved {}", out.display());
    Ok(())
}

#[test]
fn trains_saves_and_reloads() {
    // The same routine, kept quick: one epoch of 1x128.
    let data = Dataset::bundled().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model.safetensors");
    let config = TrainConfig {
        hidden: vec![128],
        epochs: 1,
        ..Default::default()
    };
    let result = train(&data, config, &out).unwrap();
    // The golden of `tests/it/training.rs`: the same bits on every CPU.
    assert_eq!(result.test.unwrap().accuracy, 0.8855);
    assert_eq!(relumax::Mlp::load(&out).unwrap(), result.model);
}
