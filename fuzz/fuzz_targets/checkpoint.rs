//! Any bytes as a checkpoint folder (a state file, and a velocity file for the step `1:0`,
//! split where the first four bytes say) through the checkpoint loader: a state or an error
//! naming a file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (len, rest) = data.split_at(4);
    let len = (u32::from_le_bytes(len.try_into().unwrap()) as usize).min(rest.len());
    let (state, velocity) = rest.split_at(len);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.safetensors"), state).unwrap();
    if !velocity.is_empty() {
        std::fs::write(dir.path().join("velocity-1-0.safetensors"), velocity).unwrap();
    }
    if let Ok((config, state)) = relumax::load_checkpoint(dir.path()) {
        let layers = state.model.layers();
        assert!(
            state.velocity.is_empty()
                || state.velocity.len() == layers.len()
                    && state
                        .velocity
                        .iter()
                        .zip(layers)
                        .all(|(v, l)| v.0.dim() == l.weight.dim() && v.1.len() == l.bias.len())
        );
        let _ = config.validate();
    }
});
