//! A width sweep through the library: one hidden layer of 128 to 1024 units, one epoch each,
//! printing accuracy and speed.
//!
//! Threads: `TrainConfig::threads` (default: every core) sizes a rayon pool that cuts every
//! matrix product into fixed blocks, each a single-threaded OpenBLAS call; OpenBLAS's own
//! thread count is set to 1 while training and restored after. Results do not depend on the
//! thread count, so a sweep can run one configuration per core (`threads: Some(1)` each, in
//! parallel processes) or one at a time with all cores, with identical numbers.
//!
//! Run with: `cargo run --release --example sweep`

use std::ops::ControlFlow;

use relumax::{Dataset, TrainConfig, Trainer};

fn main() -> Result<(), relumax::Error> {
    let data = Dataset::bundled()?;
    let widths: &[usize] = if cfg!(test) {
        &[128, 256]
    } else {
        &[128, 256, 512, 1024]
    };
    println!("| width | test accuracy | s/epoch |");
    for &width in widths {
        let config = TrainConfig {
            hidden: vec![width],
            epochs: 1,
            ..Default::default()
        };
        let r = Trainer::new(config)?.fit(&data, |_| ControlFlow::Continue(()))?;
        println!(
            "| {width} | {:.4} | {:.2} |",
            r.test.accuracy, r.train_seconds
        );
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn runs() {
    main().unwrap();
}
