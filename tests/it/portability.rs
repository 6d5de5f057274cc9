//! The cross-machine contract: the same seed, data and configuration give byte-identical
//! model files, the same metrics and the same reported losses on every implementation of
//! relumax's arithmetic this CPU runs, and on the CPUs that `qemu-x86_64` emulates with their
//! real CPUID: Haswell (AVX2 + FMA, no AVX-512) and Nehalem (no AVX: the portable path, with a
//! software FMA). Each run must give the SHA-256 committed here, so a CI machine with yet another
//! CPU catches any drift.

use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

/// A small configuration per kernel family, on the first 640 MNIST training images and 200
/// test images: `(flags, SHA-256 of model.safetensors)`.
///
/// - one hidden layer of 64: the first layer's sparse forward and update, the output layer;
/// - 24 -> 1030 with batches of 100 and momentum 0.9: a hidden layer's fused ReLU backward, a
///   layer of 1024 or more outputs (AVX-512's own backward), gradient sums over two blocks of
///   64 batch rows, and the velocity;
/// - 48 -> 40 with batches of 32: a hidden layer's input gradient and update in one pass per
///   row of `W` (batches of up to 64 rows), the output layer's rows across the vector lanes.
///
/// The hashes were produced by `relumax train --data <slice> <flags> --epochs 1` on an AMD EPYC
/// (AVX2 + FMA, AVX-512 masked), identical on its avx2 and portable paths and under
/// `qemu-x86_64 -cpu Haswell` and `-cpu Nehalem`. (Updated when the file gained its `layout`
/// metadata: the weights did not change. The third was produced by the build before the
/// output layer's lane-wise backward and the one-pass hidden backward, and holds after both.)
const GOLDEN: [(&[&str], &str); 3] = [
    (
        &["--hidden", "64"],
        "69e91619d5f0a449da79909d8dbb61499d9618e1b837cf5fe91acb4b087325bf",
    ),
    (
        &[
            "--hidden",
            "24,1030",
            "--batch-size",
            "100",
            "--momentum",
            "0.9",
        ],
        "a070ff0d5825e792dbef0216a93cf968fb3dc2a861bf8f9b974dd2831bcf54e2",
    ),
    (
        &["--hidden", "48,40"],
        "02c6aa87dfa26279804417f0c0cc7294ba38bd056286d684fe571e2d5d5fa000",
    ),
];

/// The first `train` and `test` images of the bundled MNIST, as raw IDX files in `dir`.
fn mnist_slice(dir: &Path, train: usize, test: usize) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    std::fs::create_dir_all(dir).unwrap();
    for (name, count, header, item) in [
        ("train-images-idx3-ubyte", train, 16, 784),
        ("train-labels-idx1-ubyte", train, 8, 1),
        ("t10k-images-idx3-ubyte", test, 16, 784),
        ("t10k-labels-idx1-ubyte", test, 8, 1),
    ] {
        let gz = std::fs::File::open(src.join(format!("{name}.gz"))).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut GzDecoder::new(gz), &mut bytes).unwrap();
        bytes.truncate(header + count * item);
        bytes[4..8].copy_from_slice(&(count as u32).to_be_bytes());
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// What one run produced: the model file's SHA-256, the kernels it reported, and its
/// metrics without timings.
#[derive(Debug)]
struct Run {
    model: String,
    kernels: String,
    metrics: Vec<serde_json::Value>,
}

/// `relumax train` on `data` with `flags`, under `emulator` (a qemu CPU model) or natively,
/// with `kernels` in `RELUMAX_KERNELS` if given.
fn train(data: &Path, out: &Path, flags: &[&str], emulator: Option<&str>, kernels: &str) -> Run {
    let bin = env!("CARGO_BIN_EXE_relumax");
    let mut cmd = match emulator {
        Some(cpu) => {
            let mut c = Command::new("qemu-x86_64");
            c.args(["-cpu", cpu, bin]);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
        "train",
        "--epochs",
        "1",
        "--no-progress",
        "--json",
        "--data",
    ])
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(flags)
    .env(relumax::kernels::KERNELS_ENV, kernels);
    let o = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?}: {e}; the cross-CPU tests need qemu-user (Debian: apt-get install \
             qemu-user; .ci/run installs it)"
        )
    });
    let what = format!("{emulator:?} {kernels} {flags:?}");
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    let model = std::fs::read(out.join("model.safetensors")).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let map = v.as_object_mut().unwrap();
            map.retain(|k, _| !k.contains("second") && k != "out");
            v
        })
        .collect();
    Run {
        model: format!("{:x}", Sha256::digest(&model)),
        kernels: summary["kernels"].as_str().unwrap().to_string(),
        metrics,
    }
}

fn data() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist-640");
    mnist_slice(&dir, 640, 200);
    (tmp, dir)
}

#[test]
fn every_implementation_here_gives_the_golden_model() {
    let (tmp, dir) = data();
    let runnable = relumax::kernels::Kernels::runnable();
    for (c, (flags, golden)) in GOLDEN.iter().enumerate() {
        let mut first: Option<Run> = None;
        for kernels in runnable.iter().filter(|k| k.is_portable_arithmetic()) {
            let out = tmp.path().join(format!("{c}-{kernels}"));
            let run = train(&dir, &out, flags, None, kernels.name());
            assert_eq!(run.kernels, kernels.name());
            assert_eq!(&run.model, golden, "{kernels} {flags:?}");
            if let Some(first) = &first {
                assert_eq!(run.metrics, first.metrics, "{kernels} {flags:?}");
            }
            first.get_or_insert(run);
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn emulated_cpus_without_avx512_and_without_avx_give_the_golden_model() {
    let (tmp, dir) = data();
    for (c, (flags, golden)) in GOLDEN.iter().enumerate() {
        let native = train(&dir, &tmp.path().join(format!("{c}")), flags, None, "auto");
        for (cpu, path) in [("Haswell", "avx2"), ("Nehalem", "portable")] {
            let out = tmp.path().join(format!("{c}-{cpu}"));
            let run = train(&dir, &out, flags, Some(cpu), "auto");
            // Dispatch chose as on such a machine, and the bits did not move.
            assert_eq!(run.kernels, path, "{cpu}");
            assert_eq!(&run.model, golden, "{cpu} {flags:?}");
            assert_eq!(run.metrics, native.metrics, "{cpu} {flags:?}");
        }
    }
}
