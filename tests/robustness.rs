//! Property tests of the IDX parser (any bytes: Ok or Err, never a panic; valid files
//! round-trip) and a load test of parallel `relumax eval` processes on one model and dataset.

mod common;

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use relumax::{encode_images, encode_labels, parse_images, parse_labels};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_images(&bytes, Path::new("x"));
        let _ = parse_labels(&bytes, Path::new("x"));
    }

    #[test]
    fn headers_with_any_dimensions_never_panic(dims in proptest::array::uniform3(any::<u32>()), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut bytes = relumax::IMAGES_MAGIC.to_be_bytes().to_vec();
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
fn ten_parallel_evals_share_the_mapped_data_and_agree() {
    let (tmp, dir) = common::small_dataset(false);
    let model = tmp.path().join("m.safetensors");
    let data = relumax::Dataset::open(&dir).unwrap();
    let trained = relumax::Trainer::new(relumax::TrainConfig {
        hidden: vec![16],
        epochs: 1,
        ..Default::default()
    })
    .unwrap()
    .fit(&data, |_| std::ops::ControlFlow::Continue(()))
    .unwrap();
    trained.model.save(&model).unwrap();
    let children: Vec<_> = (0..10)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_relumax"))
                .args([
                    "eval",
                    "--json",
                    "--model",
                    model.to_str().unwrap(),
                    "--data",
                    dir.to_str().unwrap(),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    let first: serde_json::Value = serde_json::from_str(outputs[0].trim()).unwrap();
    assert_eq!(
        first["test_accuracy"].as_f64().unwrap(),
        trained.test.accuracy
    );
    assert!(outputs.iter().all(|o| o == &outputs[0]), "all ten agree");
}
