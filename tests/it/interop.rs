//! Model files read by other frameworks: a committed relumax model, loaded into PyTorch's
//! `nn.Linear` layers by `tests/fixtures/torch/check.py` (safetensors + numpy + torch, as the
//! file's `layout` metadata says), gives the class probabilities committed beside it; relumax
//! must give the same, and still write that file byte for byte.

use std::path::Path;

use ndarray::Array2;
use relumax::{Init, Mlp};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torch"))
}

/// The committed model: 6 -> 5 -> 4 -> 3, He init, seed 7.
fn model() -> Mlp {
    Mlp::new(&[6, 5, 4, 3], Init::He, 7).unwrap()
}

#[test]
fn pytorch_reads_the_model_file_as_relumax_computes_it() {
    let path = fixtures().join("model.safetensors");
    if std::env::var_os("RELUMAX_FIXTURES_WRITE").is_some() {
        model().save(&path).unwrap();
    }
    // relumax still writes the committed file, byte for byte (else the format changed:
    // regenerate both files as check.py says).
    let tmp = tempfile::tempdir().unwrap();
    model().save(tmp.path().join("m.safetensors")).unwrap();
    assert!(
        std::fs::read(tmp.path().join("m.safetensors")).unwrap() == std::fs::read(&path).unwrap(),
        "the model file format changed: regenerate tests/fixtures/torch (see check.py)"
    );
    let loaded = Mlp::load_with_metadata(&path).unwrap();
    let x = Array2::from_shape_fn((4, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
    let ours = loaded.0.predict_proba(x.view()).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("probabilities.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        theirs["layout"].as_str(),
        loaded.1.get("layout").map(String::as_str),
        "check.py read the layout this file states"
    );
    let rows = theirs["probabilities"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        for (j, p) in row.as_array().unwrap().iter().enumerate() {
            let p = p.as_f64().unwrap();
            let q = f64::from(ours[[i, j]]);
            assert!(
                (p - q).abs() < 1e-6,
                "row {i} class {j}: PyTorch {p}, relumax {q}"
            );
        }
    }
}
