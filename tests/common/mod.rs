//! Fixtures shared by the integration tests: small synthetic IDX datasets written to temp
//! folders, raw or gzipped, with or without SHA256SUMS.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(feature = "cli")]
use std::process::{Command, Output};

use relumax::{idx::encode_images, idx::encode_labels};
use sha2::{Digest, Sha256};

/// A learnable synthetic dataset: class `c` lights a distinct band of pixels, plus noise.
pub struct Synthetic {
    pub train_images: Vec<u8>,
    pub train_labels: Vec<u8>,
    pub test_images: Vec<u8>,
    pub test_labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

pub fn synthetic(
    n_train: usize,
    n_test: usize,
    rows: usize,
    cols: usize,
    classes: u8,
) -> Synthetic {
    let f = rows * cols;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut make = |n: usize| {
        let mut px = vec![0u8; n * f];
        let mut lb = vec![0u8; n];
        for i in 0..n {
            let c = (next() % u64::from(classes)) as u8;
            lb[i] = c;
            let band = f / usize::from(classes);
            for j in 0..f {
                let noise = (next() % 60) as u8;
                let on = j / band.max(1) == usize::from(c);
                px[i * f + j] = if on { 190 + noise } else { noise };
            }
        }
        (px, lb)
    };
    let (train_images, train_labels) = make(n_train);
    let (test_images, test_labels) = make(n_test);
    Synthetic {
        train_images,
        train_labels,
        test_images,
        test_labels,
        rows,
        cols,
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The four IDX files of `s`, by standard name.
pub fn files(s: &Synthetic) -> [(&'static str, Vec<u8>); 4] {
    let n_train = s.train_labels.len();
    let n_test = s.test_labels.len();
    [
        (
            "train-images-idx3-ubyte",
            encode_images(&s.train_images, n_train, s.rows, s.cols),
        ),
        ("train-labels-idx1-ubyte", encode_labels(&s.train_labels)),
        (
            "t10k-images-idx3-ubyte",
            encode_images(&s.test_images, n_test, s.rows, s.cols),
        ),
        ("t10k-labels-idx1-ubyte", encode_labels(&s.test_labels)),
    ]
}

/// Writes `s` into `dir` (gzipped or raw, with or without SHA256SUMS).
pub fn write_dataset(dir: &Path, s: &Synthetic, gz: bool, sums: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut list = String::new();
    for (name, bytes) in files(s) {
        list += &format!("{}  {name}\n", sha256_hex(&bytes));
        if gz {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
    }
    if sums {
        std::fs::write(dir.join("SHA256SUMS"), list).unwrap();
    }
}

/// A temp folder holding a small synthetic dataset (1,000 train, 300 test, 8x8, 4 classes).
pub fn small_dataset(gz: bool) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    write_dataset(&dir, &synthetic(1000, 300, 8, 8, 4), gz, true);
    (tmp, dir)
}

/// Every file name in `dir`.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A team of exactly `threads` threads, to run a test's work on that many (`.install(...)`),
/// as `Trainer::run` does.
pub fn pool(threads: usize) -> relumax::kernels::Team {
    relumax::kernels::Team::new(threads).unwrap()
}

/// A rayon pool of exactly `threads` threads: the kernels' fallback without a team.
#[allow(dead_code)]
pub fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// A JSON array of numbers, as `f64`s (panics on anything else).
pub fn numbers(v: &serde_json::Value) -> Vec<f64> {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    items.iter().map(|x| x.as_f64().unwrap()).collect()
}

/// The `relumax` binary, ready for arguments.
#[cfg(feature = "cli")]
pub fn relumax_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relumax"))
}

/// The `relumax` binary, ready for arguments, under a shell's `ulimit -f blocks` (512- or
/// 1024-byte blocks, as the shell counts them): a write past that size fails with EFBIG, as on
/// a disk filling up. SIGXFSZ is ignored, as a process that handles the error asks. (Through a
/// shell, not `pre_exec`: a fork of the test process would run OpenBLAS's pre-fork handler,
/// which can hang joining its threads.)
#[cfg(feature = "cli")]
pub fn relumax_limited(blocks: u32) -> Command {
    let mut limited = Command::new("sh");
    limited
        .args([
            "-c",
            &format!(r#"ulimit -f {blocks} && trap '' XFSZ && exec "$@""#),
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_relumax"));
    limited
}

/// Sends `signal` (`"-INT"`, `"-KILL"`...) to process `pid` with `kill`.
#[cfg(feature = "cli")]
pub fn send(pid: impl std::fmt::Display, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(status.unwrap().success(), "kill {signal} {pid}");
}

/// Runs the `relumax` binary with `args` and returns what it did.
#[cfg(feature = "cli")]
pub fn relumax(args: &[&str]) -> Output {
    relumax_cmd()
        .args(args)
        .output()
        .expect("the relumax binary runs")
}

/// A command's standard output, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The standard output of a command that must have succeeded.
pub fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    stdout(o)
}

/// Trains `config` on `data` to the end, seeing no event.
pub fn train(config: relumax::TrainConfig, data: &relumax::Dataset) -> relumax::TrainResult {
    relumax::Trainer::new(config)
        .unwrap()
        .fit(data, |_| std::ops::ControlFlow::Continue(()))
        .unwrap()
}
