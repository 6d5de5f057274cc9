//! Property tests of the IDX parser (any bytes: Ok or Err, never a panic; valid files
//! round-trip), model files that lie, and the fuzzers' regressions.

use std::path::Path;

use proptest::prelude::*;
use relumax::{idx::encode_images, idx::encode_labels, idx::parse_images, idx::parse_labels};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_images(&bytes, Path::new("x"));
        let _ = parse_labels(&bytes, Path::new("x"));
    }

    #[test]
    fn headers_with_any_dimensions_never_panic(dims in proptest::array::uniform3(any::<u32>()), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut bytes = relumax::idx::IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(&tail);
        let expected = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(u64::from(d)));
        match parse_images(&bytes, Path::new("x")) {
            Ok(h) => prop_assert_eq!(Some((h.count * h.rows * h.cols) as u64), expected.filter(|&n| n == tail.len() as u64)),
            Err(_) => prop_assert!(expected != Some(tail.len() as u64) || dims.contains(&0)),
        }
    }

    /// Plausible headers (small dimensions, zero included) with a body of exactly the length
    /// they describe, one byte short or one byte long: Ok exactly when the length matches and
    /// no dimension is zero, and then the header reads back as written.
    #[test]
    fn plausible_headers_parse_exactly_when_the_body_fits(dims in proptest::array::uniform3(0u32..6), delta in -1i64..=1) {
        let mut bytes = relumax::idx::IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let body = dims.iter().map(|&d| i64::from(d)).product::<i64>() + delta;
        prop_assume!(body >= 0);
        bytes.extend((0..body).map(|i| i as u8));
        match parse_images(&bytes, Path::new("x")) {
            Ok(h) => {
                prop_assert!(delta == 0 && !dims.contains(&0));
                prop_assert_eq!([h.count, h.rows, h.cols], dims.map(|d| d as usize));
                prop_assert_eq!(h.offset, 16);
            }
            Err(_) => prop_assert!(delta != 0 || dims.contains(&0)),
        }
        let mut labels = relumax::idx::LABELS_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&dims[0].to_be_bytes());
        let n = i64::from(dims[0]) + delta;
        prop_assume!(n >= 0);
        labels.extend((0..n).map(|i| i as u8));
        prop_assert_eq!(parse_labels(&labels, Path::new("x")).is_ok(), delta == 0 && dims[0] > 0);
    }

    #[test]
    fn valid_files_round_trip(count in 1usize..6, rows in 1usize..5, cols in 1usize..5, seed in any::<u8>()) {
        let pixels: Vec<u8> = (0..count * rows * cols).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let bytes = encode_images(&pixels, count, rows, cols);
        let h = parse_images(&bytes, Path::new("x")).unwrap();
        prop_assert_eq!((h.count, h.rows, h.cols), (count, rows, cols));
        prop_assert_eq!(&bytes[h.offset..], &pixels[..]);
        let labels: Vec<u8> = pixels.iter().take(count).copied().collect();
        let lb = encode_labels(&labels);
        let lh = parse_labels(&lb, Path::new("x")).unwrap();
        prop_assert_eq!(&lb[lh.offset..], &labels[..]);
        // Any truncation or extension of a valid file is an error.
        for cut in 0..bytes.len() {
            prop_assert!(parse_images(&bytes[..cut], Path::new("x")).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(parse_images(&longer, Path::new("x")).is_err());
    }
}

#[test]
fn model_files_with_wrong_dtype_or_lying_offsets_are_rejected() {
    use safetensors::tensor::{Dtype, TensorView};
    use std::collections::HashMap;
    let tmp = tempfile::tempdir().unwrap();
    let meta: HashMap<String, String> = [
        ("format", "relumax-mlp"),
        ("version", "1"),
        ("sizes", "2,2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let w = vec![0u8; 4 * 8];
    let b = vec![0u8; 2 * 8];
    let views = vec![
        (
            "layers.0.weight",
            TensorView::new(Dtype::F64, vec![2, 2], &w).unwrap(),
        ),
        (
            "layers.0.bias",
            TensorView::new(Dtype::F64, vec![2], &b).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let path = tmp.path().join("f64.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let err = relumax::Mlp::load(&path).unwrap_err().to_string();
    assert!(err.contains("dtype F64, expected F32"), "{err}");
    // A header whose offsets point past the end of the file.
    let good = relumax::Mlp::new(&[2, 2], relumax::Init::He, 0)
        .unwrap()
        .to_safetensors(&[]);
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + n].to_vec()).unwrap();
    let lying = header.replacen("[16,24]", "[16,99]", 1);
    assert_ne!(lying, header, "{header}");
    let mut bad = good[..8].to_vec();
    bad.extend_from_slice(lying.as_bytes());
    bad.extend_from_slice(&good[8 + n..]);
    let path = tmp.path().join("lying.safetensors");
    std::fs::write(&path, &bad).unwrap();
    let err = relumax::Mlp::load(&path).unwrap_err().to_string();
    assert!(err.contains("not safetensors"), "{err}");
    assert!(err.contains("lying.safetensors"), "{err}");
}

/// Inputs the fuzzers found, kept as regressions.
#[test]
fn fuzz_regressions_are_rejected_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    // A model whose first weight matrix holds NaN and infinite values: loading must refuse it
    // (it used to load, and a NaN model predicts nothing).
    let err = relumax::Mlp::load(dir.join("model-nan-weights.safetensors")).unwrap_err();
    assert!(err.to_string().contains("non-finite value"), "{err}");
}
