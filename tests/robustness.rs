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

/// A 64 KiB tmpfs, unmounted when dropped.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    /// Mounts it, or `None` where this machine does not allow mounting (not root).
    fn mount(at: &Path) -> Option<TinyDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=64k",
                "tmpfs",
                at.to_str().unwrap(),
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TinyDisk(at.to_path_buf()))
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_save_fails_cleanly_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = TinyDisk::mount(&tmp.path().join("tiny")) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let (_data_tmp, dir) = common::small_dataset(false);
    // A 64 -> 512 -> 4 model is about 140 KB: more than the disk holds, which is known before
    // training (the output's size against the file system's free space).
    for (every, needle) in [
        ("0", "file system has 0 MiB free"),
        ("1", "file system has"),
    ] {
        let out = disk.0.join("run");
        let o = Command::new(env!("CARGO_BIN_EXE_relumax"))
            .args(["train", "--no-progress", "--hidden", "512", "--epochs", "2"])
            .args(["--checkpoint-every", every, "--data", dir.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let left: Vec<_> = std::fs::read_dir(&disk.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.is_dir() || std::fs::read_dir(p).unwrap().next().is_some())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
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
    let err = relumax::load_model(&path).unwrap_err().to_string();
    assert!(err.contains("dtype F64, expected F32"), "{err}");
    // A header whose offsets point past the end of the file.
    let good = relumax::model_to_bytes(
        &relumax::Mlp::new(&[2, 2], relumax::Init::He, 0).unwrap(),
        &[],
    );
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + n].to_vec()).unwrap();
    let lying = header.replacen("[16,24]", "[16,99]", 1);
    assert_ne!(lying, header, "{header}");
    let mut bad = good[..8].to_vec();
    bad.extend_from_slice(lying.as_bytes());
    bad.extend_from_slice(&good[8 + n..]);
    let path = tmp.path().join("lying.safetensors");
    std::fs::write(&path, &bad).unwrap();
    let err = relumax::load_model(&path).unwrap_err().to_string();
    assert!(err.contains("not safetensors"), "{err}");
    assert!(err.contains("lying.safetensors"), "{err}");
}

/// Inputs the fuzzers found, kept as regressions.
#[test]
fn fuzz_regressions_are_rejected_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    // A model whose first weight matrix holds NaN and infinite values: loading must refuse it
    // (it used to load, and a NaN model predicts nothing).
    let err = relumax::load_model(&dir.join("model-nan-weights.safetensors")).unwrap_err();
    assert!(err.to_string().contains("non-finite value"), "{err}");
}
