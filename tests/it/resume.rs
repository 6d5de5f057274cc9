//! Checkpoint and resume through the real binary: a run stopped by Ctrl-C or killed outright,
//! then resumed, ends with a model file byte-identical to an uninterrupted run's.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{relumax_cmd, send};

const CONFIG: [&str; 6] = ["--hidden", "512", "--epochs", "3", "--momentum", "0.5"];

/// Trains `CONFIG` into `out`, sending `signal` once `after` epoch lines have been printed;
/// returns the exit code.
fn train_and_signal(out: &Path, after: usize, signal: &str) -> Option<i32> {
    train_and(out, after, |pid| {
        send(pid, signal);
    })
    .status
    .code()
}

/// Trains `CONFIG` into `out`, calling `act` with the process id once `after` epoch lines
/// have been printed; returns its output (stdout read to the end here, so never closed on it).
fn train_and(out: &Path, after: usize, act: impl FnOnce(u32)) -> std::process::Output {
    train_and_with(out, after, &[], act)
}

/// [`train_and`] with `extra` arguments.
fn train_and_with(
    out: &Path,
    after: usize,
    extra: &[&str],
    act: impl FnOnce(u32),
) -> std::process::Output {
    let mut child = relumax_cmd()
        .args([
            "train",
            "--no-progress",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(CONFIG)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut epochs = 0;
    let mut act = Some(act);
    for line in stdout.lines() {
        if line.unwrap().contains(r#""type":"epoch""#) {
            epochs += 1;
            if epochs == after {
                (act.take().unwrap())(child.id());
            }
        }
    }
    child.wait_with_output().unwrap()
}

fn model_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

/// `metrics.jsonl` of a run folder without what depends on the clock or the folder's name.
fn metrics_without_timings(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let map = v.as_object_mut().unwrap();
            for key in ["train_seconds", "samples_per_second", "out"] {
                map.remove(key);
            }
            v
        })
        .collect()
}

fn uninterrupted(tmp: &Path) -> Vec<u8> {
    let out = tmp.join("full");
    let o = relumax_cmd()
        .args(["train", "--no-progress", "--out", out.to_str().unwrap()])
        .args(CONFIG)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    model_bytes(&out)
}

fn resume(out: &Path, extra: &[&str]) -> std::process::Output {
    relumax_cmd()
        .args(["train", "--no-progress", "--resume", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn ctrl_c_checkpoints_and_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    let out = tmp.path().join("run");
    // A third of an epoch (about a second here) after the first epoch's line: mid-epoch, so
    // the checkpoint holds a step the handler saved, not the end-of-epoch one.
    let o = train_and(&out, 1, |pid| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        send(pid, "-INT");
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    // "interrupted at epoch E, step S: ...", with S > 0: inside an epoch.
    let step: usize = err
        .split_once(", step ")
        .and_then(|(_, rest)| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no step in: {err}"));
    assert!(step > 0, "{err}");
    assert!(!out.exists(), "no run folder until training completes");
    let ck = tmp.path().join("run.checkpoint");
    assert!(ck.join("state.safetensors").is_file());
    let velocity_files = std::fs::read_dir(&ck)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("velocity-")
        })
        .count();
    assert_eq!(velocity_files, 1, "one velocity file, named by its step");
    // A different configuration is refused; another thread count is not.
    let o = resume(&out, &["--lr", "0.1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another configuration"));
    let o = resume(&out, &["--threads", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        model_bytes(&out) == full,
        "resumed model differs from the uninterrupted one"
    );
    assert_eq!(
        metrics_without_timings(&out),
        metrics_without_timings(&tmp.path().join("full"))
    );
    assert!(
        !ck.exists(),
        "the checkpoint is removed once the run is complete"
    );
}

/// Hidden entries of `dir` (temporary files a stopped run must not leave).
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn sigterm_and_sighup_stop_as_ctrl_c_does_with_their_own_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    for (signal, code) in [("-TERM", 143), ("-HUP", 129)] {
        let out = tmp.path().join(format!("run{code}"));
        assert_eq!(train_and_signal(&out, 1, signal), Some(code), "{signal}");
        assert!(!out.exists());
        let ck = tmp.path().join(format!("run{code}.checkpoint"));
        assert!(ck.join("state.safetensors").is_file(), "{signal}");
        assert!(hidden(tmp.path()).is_empty(), "{:?}", hidden(tmp.path()));
        let o = resume(&out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(model_bytes(&out) == full, "{signal}: resumed model differs");
    }
}

#[test]
fn a_failed_final_write_keeps_the_trained_model_in_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    let out = tmp.path().join("run");
    // Something else writes into the output folder during training: the final write
    // refuses to replace a folder that is not a relumax run.
    let o = train_and(&out, 1, |_| {
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the trained model is kept in") && err.contains("run.checkpoint"),
        "{err}"
    );
    assert!(err.contains("not a relumax run"), "{err}");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    // Once the folder is out of the way, resuming only writes the run.
    std::fs::remove_dir_all(&out).unwrap();
    let o = resume(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(model_bytes(&out) == full, "the kept model differs");
}

#[test]
fn a_run_under_timeout_is_checkpointed_when_its_time_is_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // As a scheduler stops a job: SIGTERM after 2 s, long before 1000 epochs are done.
    let o = Command::new("timeout")
        .args(["--preserve-status", "-s", "TERM", "2"])
        .arg(env!("CARGO_BIN_EXE_relumax"))
        .args([
            "train",
            "--no-progress",
            "--epochs",
            "1000",
            "--hidden",
            "64",
        ])
        .args(["--checkpoint-every", "0", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("checkpoint saved"), "{err}");
    assert!(
        tmp.path()
            .join("run.checkpoint/state.safetensors")
            .is_file()
    );
    assert!(hidden(tmp.path()).is_empty(), "{:?}", hidden(tmp.path()));
}

#[test]
fn a_killed_run_resumes_from_its_last_epoch_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    let out = tmp.path().join("run");
    // SIGKILL: no handler runs; what is on disk is the checkpoint of a finished epoch.
    assert_eq!(train_and_signal(&out, 2, "-KILL"), None);
    let o = resume(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        model_bytes(&out) == full,
        "resumed model differs from the uninterrupted one"
    );
}

#[test]
fn resume_without_a_checkpoint_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = resume(&tmp.path().join("nothing"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot resume") && err.contains("nothing.checkpoint"),
        "{err}"
    );
    // A damaged checkpoint is named, not trusted.
    let ck = tmp.path().join("bad.checkpoint");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("state.safetensors"), b"garbage").unwrap();
    let o = resume(&tmp.path().join("bad"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid relumax model"));
}

/// Entries of `dir` whose names start with `prefix`.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // One step of 60,000 samples through 2 x 2048 units: seconds, longer than the test waits,
    // so the first Ctrl-C (taken at the end of a step) cannot be honoured before the second.
    let child = relumax_cmd()
        .args([
            "train",
            "--no-progress",
            "--hidden",
            "2048",
            "--layers",
            "2",
        ])
        .args([
            "--batch-size",
            "60000",
            "--val-fraction",
            "0",
            "--epochs",
            "1",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let interrupt = || {
        send(child.id(), "-INT");
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    interrupt();
    std::thread::sleep(std::time::Duration::from_millis(700));
    interrupt();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Stopped inside the step: no checkpoint (the first Ctrl-C alone would have saved one),
    // no run folder, nothing half-written.
    assert_eq!(crate::common::listing(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_kill_while_a_checkpoint_is_written_keeps_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    let out = tmp.path().join("run");
    let ck = tmp.path().join("run.checkpoint");
    let mut child = relumax_cmd()
        .args(["train", "--no-progress", "--out", out.to_str().unwrap()])
        .args(CONFIG)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // After the first epoch's checkpoint, watch for the second one's temporary files (the
    // velocity, then the state, each written under a temporary name and renamed) and kill the
    // process as soon as one appears.
    let mut caught = false;
    while child.try_wait().unwrap().is_none() {
        if ck.join("state.safetensors").is_file() && !entries_starting(&ck, ".relumax-").is_empty()
        {
            send(child.id(), "-KILL");
            caught = true;
            break;
        }
    }
    assert!(caught, "the run ended before a checkpoint write was seen");
    assert_eq!(child.wait().unwrap().code(), None, "killed");
    let o = resume(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(model_bytes(&out) == full, "resumed model differs");
    assert!(
        !ck.exists(),
        "the checkpoint and its stray temporary file are removed"
    );
}

#[test]
fn checkpoints_every_n_epochs_or_only_when_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let full = uninterrupted(tmp.path());
    for (every, kept_epoch) in [("2", Some(2)), ("0", None)] {
        let out = tmp.path().join(format!("run{every}"));
        let ck = tmp.path().join(format!("run{every}.checkpoint"));
        // Killed once the third epoch has begun: with --checkpoint-every 2, the checkpoint
        // on disk is the second epoch's (none was written after the first); with 0, none.
        let o = train_and_with(&out, 2, &["--checkpoint-every", every], |pid| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let pid = pid.to_string();
            send(pid, "-KILL");
        });
        assert_eq!(o.status.code(), None);
        match kept_epoch {
            Some(epoch) => {
                let stamp = std::fs::read_dir(&ck)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with("velocity-"))
                    .unwrap();
                assert_eq!(stamp, format!("velocity-{epoch}-0.safetensors"));
                let o = resume(&out, &[]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                assert!(
                    model_bytes(&out) == full,
                    "--checkpoint-every {every}: differs"
                );
            }
            None => assert!(!ck.exists(), "--checkpoint-every 0 wrote {ck:?}"),
        }
    }
}

#[test]
fn ctrl_c_during_paper_keeps_the_finished_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("paper");
    let args = [
        "paper",
        "--only",
        "1x128,2x512",
        "--epochs",
        "2",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut child = relumax_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ctrl-C half a second into the second configuration, once the first has reported.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains("1x128 seed 0: test loss") {
            std::thread::sleep(std::time::Duration::from_millis(500));
            send(child.id(), "-INT");
        }
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("finished configurations are kept"), "{err}");
    assert!(out.join("1x128-seed0/model.safetensors").is_file());
    assert!(!out.join("2x512-seed0").exists());
    assert!(
        !out.join("report.md").exists(),
        "no report of an unfinished paper"
    );
    // The same command again reuses the first and finishes the second.
    let o = relumax_cmd().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("1x128: done already"), "{text}");
    assert!(out.join("2x512-seed0/model.safetensors").is_file());
    assert!(out.join("report.md").is_file());
}

#[test]
fn ctrl_c_stops_configurations_trained_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("paper");
    // Two one-thread networks: side by side on two cores or more; 20 epochs take seconds.
    let child = relumax_cmd()
        .args([
            "paper",
            "--only",
            "1x128,2x128",
            "--epochs",
            "20",
            "--no-progress",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    send(child.id(), "-INT");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("finished configurations are kept"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing half-trained is left: {left:?}");
}
