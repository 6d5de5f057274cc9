//! The real `relumax` binary: happy paths and bad input, exit codes and messages, and that
//! failures leave no output behind.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{
    listing, numbers, relumax, relumax_cmd, relumax_limited, small_dataset, stderr, stdout,
};

/// Asserts a clean failure: the exit code, one line on stderr containing `needle`, no panic.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn help_lists_the_subcommands() {
    let o = relumax(&["--help"]);
    assert!(o.status.success());
    for cmd in ["data", "train", "eval"] {
        assert!(stdout(&o).contains(cmd), "{}", stdout(&o));
    }
}

#[test]
fn data_describes_the_bundled_mnist() {
    let o = relumax(&["data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("60000 samples"), "{out}");
    assert!(out.contains("10000 samples"), "{out}");
    assert!(out.contains("28 x 28"), "{out}");
    assert!(out.contains("1:6742"), "{out}");
    assert_eq!(out.matches("checksum verified").count(), 4, "{out}");
    let o = relumax(&["data", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["train"]["samples"], 60000);
    assert_eq!(v["test"]["class_histogram"][1], 1135);
}

#[test]
fn relumax_mnist_points_at_the_data_and_its_absence_says_what_to_do() {
    let (_tmp, dir) = small_dataset(true);
    let run = |value: &Path| {
        relumax_cmd()
            .env("RELUMAX_MNIST", value)
            .args(["data", "--json"])
            .output()
            .unwrap()
    };
    let o = run(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"samples\":1000"), "{}", stdout(&o));
    let o = run(Path::new("/nonexistent/mnist"));
    assert_fails(&o, 1, "no MNIST at /nonexistent/mnist");
    assert!(stderr(&o).contains("set RELUMAX_MNIST"), "{}", stderr(&o));
}

#[test]
fn data_fails_cleanly_on_a_corrupted_copy() {
    let (_tmp, dir) = small_dataset(true);
    let gz = dir.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 3]).unwrap();
    let o = relumax(&["data", "--data", dir.to_str().unwrap()]);
    assert_fails(&o, 1, "t10k-images-idx3-ubyte.gz: corrupt gzip data");
    assert!(!dir.join("t10k-images-idx3-ubyte").exists());
    let o = relumax(&["data", "--data", "/nonexistent/folder"]);
    assert_fails(&o, 1, "/nonexistent/folder");
}

fn train_small(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--hidden",
        "32",
        "--epochs",
        "2",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    relumax(&args)
}

#[test]
fn keep_best_keeps_the_epoch_of_the_lowest_validation_loss() {
    let (tmp, dir) = small_dataset(false);
    let out = tmp.path().join("best");
    let o = train_small(&dir, &out, &["--json", "--keep-best", "--lr", "0.5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let val: Vec<f64> = lines
        .iter()
        .filter(|l| l["type"] == "epoch")
        .map(|l| l["val_loss"].as_f64().unwrap())
        .collect();
    let best = if val[1] < val[0] { 2 } else { 1 };
    let last = lines.last().unwrap();
    assert_eq!(last["best_epoch"], best, "{val:?}: {last}");
    // The run folder's config records it; without validation it is refused.
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains(r#""keep_best": true"#), "{config}");
    let o = train_small(
        &dir,
        &tmp.path().join("x"),
        &["--keep-best", "--full-train"],
    );
    assert_fails(&o, 1, "invalid --keep-best: needs a validation split");
}

#[test]
fn train_writes_a_complete_run_folder_and_eval_agrees() {
    let (tmp, dir) = small_dataset(false);
    let out = tmp.path().join("runs").join("small");
    let o = train_small(&dir, &out, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["type"], "epoch");
    assert_eq!(lines[1]["epoch"], 2);
    let fin = &lines[2];
    assert_eq!(fin["type"], "final");
    for key in [
        "test_loss",
        "test_accuracy",
        "train_seconds",
        "samples_per_second",
    ] {
        assert!(fin[key].as_f64().is_some(), "{key} in {fin}");
    }
    let acc = fin["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "{acc}");
    assert_eq!(
        listing(&out),
        [
            "config.json",
            "curves.png",
            "curves.svg",
            "metrics.jsonl",
            "model.safetensors"
        ]
    );
    assert_eq!(
        listing(&tmp.path().join("runs")),
        ["small"],
        "no temporary folders left"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["hidden"][0], 32);
    assert_eq!(config["config"]["lr"].as_f64().unwrap() as f32, 0.0085);
    // A 32-unit network trains on one thread unless told otherwise, and says so.
    assert_eq!(config["threads_used"], 1);
    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("validation loss"));

    let model = out.join("model.safetensors");
    let o = relumax(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(ev["test_accuracy"].as_f64().unwrap(), acc);
    // Text output, given the run folder instead of the file.
    let o = relumax(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("confusion matrix"));

    // Same seed, same bytes.
    let again = tmp.path().join("again");
    assert!(train_small(&dir, &again, &[]).status.success());
    let bytes = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(bytes(&out) == bytes(&again), "model files differ");
}

#[test]
fn bad_flags_are_rejected_before_anything_is_written() {
    let (tmp, dir) = small_dataset(false);
    let out = tmp.path().join("out");
    let cases: &[(&[&str], &str)] = &[
        (&["--lr", "1e9"], "invalid --lr"),
        (&["--lr", "0"], "invalid --lr"),
        (&["--lr", "-0.1"], "invalid --lr"),
        (&["--lr", "nan"], "invalid --lr"),
        (&["--lr", "inf"], "invalid --lr"),
        (&["--hidden", "0"], "invalid --hidden"),
        (&["--hidden", "64,0"], "invalid --hidden"),
        (&["--layers", "0"], "invalid --layers"),
        (&["--hidden", "64,32", "--layers", "3"], "invalid --layers"),
        (&["--dropout", "1"], "invalid --dropout"),
        (&["--dropout", "-0.5"], "invalid --dropout"),
        (&["--batch-size", "0"], "invalid --batch-size"),
        (
            &["--batch-size", "5000"],
            "exceeds the 800 training samples",
        ),
        (&["--val-fraction", "1"], "invalid --val-fraction"),
        (&["--val-fraction", "-0.1"], "invalid --val-fraction"),
        (&["--epochs", "0"], "invalid --epochs"),
        (&["--momentum", "1.5"], "invalid --momentum"),
        (&["--threads", "0"], "invalid --threads"),
        // 0.0001 of 800 samples rounds to none held out: no validation, which was asked for.
        (&["--val-fraction", "0.0001"], "holds out none"),
    ];
    for (flags, needle) in cases {
        let o = train_small(&dir, &out, flags);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {}", stderr(&o));
        assert_fails(&o, 1, needle);
        assert!(!out.exists(), "{flags:?} left {out:?}");
        assert!(
            listing(tmp.path()).iter().all(|n| !n.starts_with('.')),
            "{flags:?}"
        );
    }
    // Sizes are held against what the run would allocate before anything is allocated.
    let huge: &[(&[&str], &str)] = &[
        (&["--epochs", "18446744073709551615"], "not enough memory"),
        (&["--epochs", "100000000000"], "not enough memory"),
        (&["--hidden", "65536", "--layers", "8"], "not enough memory"),
        (&["--threads", "100000"], "invalid --threads"),
        (
            &["--layers", "4000000000"],
            "invalid --layers: at most 1024",
        ),
    ];
    for (flags, needle) in huge {
        let o = train_small(&dir, &out, flags);
        assert_fails(&o, 1, needle);
        assert!(!out.exists(), "{flags:?} left {out:?}");
    }
    let paper_out = tmp.path().join("paper");
    let data = dir.to_str().unwrap();
    let paper_out_str = paper_out.to_str().unwrap();
    for flags in [
        &["--epochs", "18446744073709551615"][..],
        &["--only", "2x2048", "--epochs", "100000000000"],
    ] {
        let args = [&["paper", "--data", data, "--out", paper_out_str], flags].concat();
        assert_fails(&relumax(&args), 1, "not enough memory");
        assert!(!paper_out.exists(), "{flags:?} left {paper_out:?}");
    }
    for (flags, needle) in [
        (
            &["--epochs", "18446744073709551615"][..],
            "invalid --epochs",
        ),
        (
            &["--ceiling-size", "100000"],
            "not enough memory: the sgemm ceiling",
        ),
        (&["--threads", "100000"], "invalid --threads"),
    ] {
        let args = [
            &["bench", "--data", data, "--hidden", "8", "--layers", "1"],
            flags,
        ]
        .concat();
        assert_fails(&relumax(&args), 1, needle);
    }
    // Values that do not parse as their flag's type are usage errors (exit 2) naming the
    // flag, negative numbers included; well-formed values out of range exit 1.
    for (flags, needle) in [
        (&["--seed", "-1"][..], "'--seed <N>'"),
        (&["--hidden", "-5"], "'--hidden <WIDTHS>'"),
        (&["--epochs", "-3"], "'--epochs <N>'"),
    ] {
        let o = train_small(&dir, &out, flags);
        assert_eq!(o.status.code(), Some(2), "{flags:?}");
        assert!(stderr(&o).contains(needle), "{flags:?}: {}", stderr(&o));
    }
    let paper = |flags: &[&str]| {
        let args = [&["paper", "--data", data, "--out", paper_out_str], flags].concat();
        relumax(&args)
    };
    assert_eq!(paper(&["--only", "garbage"]).status.code(), Some(2));
    assert_eq!(paper(&["--shard", "x"]).status.code(), Some(2));
    assert_fails(&paper(&["--shard", "5/3"]), 1, "invalid --shard");
    assert!(!paper_out.exists());
    let o = train_small(&dir, &out, &["--hidden", "abc"]);
    assert_eq!(o.status.code(), Some(2));
    let o = train_small(&dir, &out, &["--init", "zeros"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown init"));
}

#[test]
fn unwritable_output_is_a_clean_error() {
    let (tmp, dir) = small_dataset(false);
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = train_small(&dir, &file.join("run"), &[]);
    assert_fails(&o, 1, "not a folder");
    let o = train_small(&dir, &file, &[]);
    assert_fails(&o, 1, "not a folder");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // Refused before training, not after: the current folder (or one holding it), and a
    // folder that is not a run folder, which replacing would destroy.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("notes")).unwrap();
    std::fs::write(work.join("notes/thesis.tex"), b"x").unwrap();
    for out in [".", "..", "notes"] {
        let o = relumax_cmd()
            .current_dir(&work)
            .args(["train", "--data", dir.to_str().unwrap(), "--out", out])
            .args(["--hidden", "32", "--epochs", "1", "--no-progress"])
            .output()
            .unwrap();
        let needle = if out == "notes" {
            "is not a relumax run"
        } else {
            "current folder"
        };
        assert_fails(&o, 1, needle);
        assert!(
            !stdout(&o).contains("epoch"),
            "{out}: refused after training"
        );
    }
    assert_eq!(std::fs::read(work.join("notes/thesis.tex")).unwrap(), b"x");
    assert_eq!(listing(&work), ["notes"]);
}

#[test]
fn eval_rejects_bad_and_misfitting_models() {
    let (tmp, dir) = small_dataset(false);
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"PK\x03\x04 not a model").unwrap();
    let o = relumax(&[
        "eval",
        "--model",
        junk.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert_fails(&o, 1, "junk.safetensors: not a valid relumax model");
    // A model for MNIST's 784 inputs on a dataset of 64 features.
    let mnist_model = tmp.path().join("mnist.safetensors");
    let model = relumax::Mlp::new(&[784, 16, 10], relumax::Init::He, 0).unwrap();
    model.save(&mnist_model).unwrap();
    let o = relumax(&[
        "eval",
        "--model",
        mnist_model.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert_fails(
        &o,
        1,
        "model inputs vs dataset features: expected 64, found 784",
    );
    let o = relumax(&["eval", "--model", "/nonexistent.safetensors"]);
    assert_fails(&o, 1, "cannot read /nonexistent.safetensors");
    // A device reports no size and never ends: bounded by the bytes read.
    let o = relumax(&["eval", "--model", "/dev/zero"]);
    assert_fails(&o, 1, "/dev/zero: not a valid relumax model: larger than");
}

#[test]
fn divergence_has_its_own_exit_code_and_saves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The largest accepted learning rate blows up a wide network within a few steps.
    let o = relumax(&[
        "train",
        "--out",
        out.to_str().unwrap(),
        "--hidden",
        "2048",
        "--layers",
        "2",
        "--lr",
        "10",
        "--epochs",
        "1",
        "--no-progress",
    ]);
    assert_fails(&o, 3, "training diverged: loss is NaN at epoch 1, step");
    assert!(stderr(&o).contains("--lr"));
    assert!(!out.exists());
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_instead_of_panicking() {
    // As in `relumax data | head -0`: the reader is gone before relumax writes.
    let mut child = relumax_cmd()
        .arg("data")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn bench_reports_speed_per_configuration_and_the_kernels_used() {
    let (_tmp, dir) = small_dataset(false);
    let dir = dir.to_str().unwrap();
    let run = |kernels: &str, extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--data",
            dir,
            "--hidden",
            "32,64",
            "--layers",
            "1",
            "--epochs",
            "2",
            "--ceiling-size",
            "64",
            "--threads",
            "2",
            "--kernels",
            kernels,
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = relumax(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let blas = run("blas", &[]);
    assert!(
        blas["configs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kernels"] == "blas")
    );
    let runnable = blas["runnable_kernels"].as_str().unwrap();
    assert!(runnable.starts_with("portable"), "{runnable}");
    assert_eq!(blas["threads"], 2);
    assert!(blas["ceiling_gflops"].as_f64().unwrap() > 0.0);
    let configs = blas["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    // The ceiling is measured before the first configuration and after each one; a row is
    // held against the mean of the two measurements around it.
    let ceilings = numbers(&blas["ceiling_samples"]);
    assert_eq!(ceilings.len(), 3, "{blas}");
    assert_eq!(ceilings[0], blas["ceiling_gflops"].as_f64().unwrap());
    for (k, (c, name)) in configs.iter().zip(["1x32", "1x64"]).enumerate() {
        assert_eq!(c["config"], name);
        let s = c["seconds_per_epoch"].as_f64().unwrap();
        assert!(s > 0.0);
        assert!((c["epochs_per_second"].as_f64().unwrap() * s - 1.0).abs() < 1e-9);
        // Two timed epochs after the warm-up, which is not reported; 800 training samples each
        // (1,000 less the 20% held out).
        let epochs = numbers(&c["epoch_seconds"]);
        assert_eq!(epochs.len(), 2, "{c}");
        assert!(
            epochs.contains(&s),
            "the median of two is one of them here: {c}"
        );
        assert!((c["samples_per_second"].as_f64().unwrap() * s - 800.0).abs() < 1e-6);
        // GFLOP/s are the dense products' FLOPs of an epoch over its seconds.
        let width = c["hidden"].as_u64().unwrap() as usize;
        let flops = relumax::model::train_flops_per_sample(&[64, width, 4]) * 800.0;
        let gflops = c["gflops"].as_f64().unwrap();
        assert!((gflops * s * 1e9 - flops).abs() < 1e-6 * flops, "{c}");
        let ceiling = c["ceiling_gflops"].as_f64().unwrap();
        // Exactly: serde_json's floats round-trip (its `float_roundtrip` feature).
        let mean = (ceilings[k] + ceilings[k + 1]) / 2.0;
        assert_eq!(ceiling, mean, "{c}");
        let pct = c["percent_of_ceiling"].as_f64().unwrap();
        assert!((pct - 100.0 * gflops / ceiling).abs() < 1e-9, "{c}");
    }
    // `auto` runs, and names, this CPU's fastest implementation; several kernels are
    // measured config by config, interleaved.
    let auto = run("auto", &[]);
    let best = auto["configs"][0]["kernels"].as_str().unwrap();
    assert_eq!(
        Some(best),
        runnable.split(", ").filter(|k| *k != "blas").last()
    );
    let both = run("portable,blas", &[]);
    let order: Vec<_> = both["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["config"].as_str().unwrap(),
                c["kernels"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        order,
        ["1x32 portable", "1x32 blas", "1x64 portable", "1x64 blas"]
    );
    // --sparsity: per configuration, the zeros of each layer's input and the FLOPs executed;
    // OpenBLAS executes the dense count, relumax's kernels less (this data's pixels are
    // nearly all nonzero, but a hidden layer's input after ReLU and dropout 0.5 is at least
    // half zeros).
    for c in both["configs"].as_array().unwrap() {
        assert!(c.get("sparsity").is_none(), "only with --sparsity: {c}");
    }
    let sparse = run("portable,blas", &["--sparsity"]);
    for c in sparse["configs"].as_array().unwrap() {
        let zeros = numbers(&c["sparsity"]["input_zero_fraction"]);
        assert_eq!(zeros.len(), 2, "{c}");
        assert!(zeros[0] < 0.1 && zeros[1] > 0.5, "{c}");
        let fraction = c["sparsity"]["executed_fraction"].as_f64().unwrap();
        let executed = c["sparsity"]["executed_gflops"].as_f64().unwrap();
        assert!((executed - fraction * c["gflops"].as_f64().unwrap()).abs() < 1e-9);
        match c["kernels"].as_str().unwrap() {
            "blas" => assert_eq!(fraction, 1.0),
            _ => assert!(fraction > 0.5 && fraction < 1.0, "{c}"),
        }
    }
    // The table form names the kernels too; a bad value is refused by clap.
    let o = relumax(&[
        "bench",
        "--data",
        dir,
        "--hidden",
        "32",
        "--layers",
        "1",
        "--epochs",
        "1",
        "--ceiling-size",
        "0",
        "--kernels",
        "blas",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("kernels this CPU runs: portable"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("sgemm ceiling"), "{}", stdout(&o));
    assert!(stdout(&o).contains("| 1x32 | blas |"), "{}", stdout(&o));
    assert!(stdout(&o).contains("| – | – |"), "{}", stdout(&o));
    let o = relumax(&["bench", "--kernels", "fast"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--kernels"), "{}", stderr(&o));
}

#[test]
fn kernels_are_chosen_by_flag_or_environment_and_refused_when_the_cpu_lacks_them() {
    let (tmp, dir) = small_dataset(false);
    let dir = dir.to_str().unwrap();
    let train = |flag: Option<&str>, env: Option<&str>, out: &str| {
        let out = tmp.path().join(out);
        let mut cmd = relumax_cmd();
        cmd.args([
            "train", "--data", dir, "--hidden", "16", "--epochs", "1", "--json",
        ])
        .args(["--no-progress", "--out"])
        .arg(&out)
        .env_remove("RELUMAX_KERNELS");
        if let Some(k) = flag {
            cmd.args(["--kernels", k]);
        }
        if let Some(k) = env {
            cmd.env("RELUMAX_KERNELS", k);
        }
        (cmd.output().unwrap(), out)
    };
    // The environment chooses when no flag does; the flag wins over it.
    let (o, _) = train(None, Some("portable"), "env");
    assert!(o.status.success(), "{}", stderr(&o));
    let last = |o: &Output| -> serde_json::Value {
        serde_json::from_str(stdout(o).lines().last().unwrap()).unwrap()
    };
    assert_eq!(last(&o)["kernels"], "portable");
    let (o, _) = train(Some("blas"), Some("portable"), "flag");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(last(&o)["kernels"], "blas");
    // A name that is no kernels: one line naming the variable, exit 1, nothing written.
    let (o, out) = train(None, Some("fast"), "bad");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("RELUMAX_KERNELS: unknown kernels \"fast\""));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(!out.exists());
    // AVX-512 runs where the CPU has it, and is refused with a clear error where it does not.
    let (o, out) = train(Some("avx512"), None, "avx512");
    if relumax::kernels::Kernels::Avx512.supported() {
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(last(&o)["kernels"], "avx512");
    } else {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("this CPU cannot run the avx512 kernels"));
        assert!(!out.exists());
    }
}

#[test]
fn ten_parallel_evals_share_the_mapped_data_and_agree() {
    let (tmp, dir) = crate::common::small_dataset(false);
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
            relumax_cmd()
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
        trained.test.as_ref().unwrap().accuracy
    );
    assert!(outputs.iter().all(|o| o == &outputs[0]), "all ten agree");
}

/// `relumax` in a mount namespace of its own (`unshare`: as root, or as any user where the
/// kernel allows user namespaces) with a 64 KiB tmpfs at `disk`, which only it sees and which
/// goes away with it; the files it left on that disk are listed in `disk.left` next to it.
/// Nothing to unmount, even if the test fails midway.
fn relumax_on_a_tiny_disk(disk: &Path) -> Command {
    std::fs::create_dir_all(disk).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        r#"mount -t tmpfs -o size=64k tmpfs "$0" || exit 99
"$@"; status=$?
find "$0" -mindepth 1 -type f > "$0.left"
exit $status"#,
    ])
    .arg(disk)
    .arg(env!("CARGO_BIN_EXE_relumax"));
    cmd
}

/// Runs `relumax` (`cmd`, ready for its arguments) to train a 64 -> 512 -> 4 model (about
/// 140 KB) for two epochs on `data` into `out`, checkpointing every `every` epochs.
fn train_512(mut cmd: Command, data: &Path, out: &Path, every: &str) -> Output {
    cmd.args(["train", "--no-progress", "--hidden", "512", "--epochs", "2"])
        .args([
            "--checkpoint-every",
            every,
            "--data",
            data.to_str().unwrap(),
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_is_refused_before_training_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("tiny");
    let (_data_tmp, dir) = crate::common::small_dataset(false);
    // A 64 -> 512 -> 4 model is about 140 KB: more than the disk holds, which is known before
    // training (the output's size against the file system's free space).
    for (every, needle) in [
        ("0", "file system has 0 MiB free"),
        ("1", "file system has"),
    ] {
        let o = train_512(
            relumax_on_a_tiny_disk(&disk),
            &dir,
            &disk.join("run"),
            every,
        );
        assert_ne!(
            o.status.code(),
            Some(99),
            "cannot mount a tmpfs in a namespace here (unshare needs root or user namespaces); \
             skip this test with --skip a_full_disk: {}",
            stderr(&o)
        );
        assert_fails(&o, 1, needle);
        let left = std::fs::read_to_string(tmp.path().join("tiny.left")).unwrap();
        assert!(left.is_empty(), "left behind: {left}");
    }
}

#[test]
fn a_write_that_fails_while_saving_leaves_nothing() {
    let (_data_tmp, dir) = crate::common::small_dataset(false);
    for every in ["0", "1"] {
        let tmp = tempfile::tempdir().unwrap();
        // Files may grow to 128 blocks (64 or 128 KiB), less than the 140 KB model: its write
        // fails after training, as a disk filling up meanwhile would.
        let o = train_512(relumax_limited(128), &dir, &tmp.path().join("run"), every);
        assert_fails(&o, 1, "too large");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    // An earlier run in the folder survives a failed overwrite, byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = train_512(relumax_cmd(), &dir, &run, "0");
    assert!(o.status.success(), "{}", stderr(&o));
    let files = |run: &Path| -> Vec<(String, Vec<u8>)> {
        listing(run)
            .into_iter()
            .map(|name| (name.clone(), std::fs::read(run.join(name)).unwrap()))
            .collect()
    };
    let before = files(&run);
    assert!(before.len() >= 3, "{:?}", listing(&run));
    let o = train_512(relumax_limited(128), &dir, &run, "1");
    assert_fails(&o, 1, "too large");
    assert!(files(&run) == before, "the earlier run changed");
    assert_eq!(listing(tmp.path()), ["run"]);
}
