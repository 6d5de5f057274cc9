//! The paper's largest network, 784 -> 2048 -> 2048 -> 10, trained on the bundled MNIST with
//! the paper's hyper-parameters, through the library.
//!
//! Run with: `cargo run --release --example train_mnist`

use std::ops::ControlFlow;

use relumax::{Dataset, Event, TrainConfig, Trainer};

fn main() -> Result<(), relumax::Error> {
    let data = Dataset::bundled()?;
    let mut config = TrainConfig {
        hidden: vec![2048, 2048],
        ..Default::default()
    };
    if cfg!(test) {
        // `cargo test` runs this example too; keep that quick.
        config = TrainConfig {
            hidden: vec![128],
            epochs: 1,
            ..config
        };
    }
    let result = Trainer::new(config)?.fit(&data, |event| {
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
    println!(
        "test loss {:.4}, test accuracy {:.4} ({:.1} s of training)",
        result.test.loss, result.test.accuracy, result.train_seconds
    );
    relumax::save_model(
        &result.model,
        std::env::temp_dir()
            .join("relumax-2x2048.safetensors")
            .as_path(),
        &[],
    )?;
    Ok(())
}

#[cfg(test)]
#[test]
fn runs() {
    main().unwrap();
}
