//! Any bytes through the model loader: a model or an error, never a panic; a model that loads
//! serialises back to bytes that load to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = relumax::model_from_bytes(data) {
        let again = relumax::model_from_bytes(&relumax::model_to_bytes(&loaded.model, &[]))
            .expect("a saved model loads");
        assert_eq!(again.model, loaded.model);
    }
});
