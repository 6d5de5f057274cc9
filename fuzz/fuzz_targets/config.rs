//! Any JSON as a training configuration (what `--resume` and run folders read, and what the
//! command line's flags become): validation and the memory estimate answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<relumax::TrainConfig>(data) else {
        return;
    };
    if config.validate().is_ok() {
        let estimate = config.memory(784, 10, 60_000);
        assert!(estimate.total() >= 0.0);
        let _ = estimate.check("fuzz");
        let _ = config.train_samples(60_000);
    }
});
