//! The paper's experiments through the real binary: `paper` (report, resume, shards,
//! aggregation), `predict` on the shipped samples and on bad images, `feed-backward`; and the
//! MNIST preprocessing golden test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{listing, numbers, ok, relumax, relumax_limited, stderr, stdout};
use ndarray::Array2;
use relumax::{preprocess::FRAME, preprocess::mnist_digit};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One `paper --only 1x128 --epochs 1` run shared by the tests that read its output.
fn paper_run() -> &'static (tempfile::TempDir, PathBuf) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("paper");
        ok(&relumax(&[
            "paper",
            "--only",
            "1x128",
            "--epochs",
            "1",
            "--out",
            s(&out),
            "--no-progress",
        ]));
        (tmp, out)
    })
}

#[test]
fn paper_writes_every_promised_file() {
    let (_, out) = paper_run();
    assert_eq!(
        listing(out),
        [
            "1x128-seed0",
            "classes.png",
            "classes_pinv.png",
            "report.md",
            "results.csv",
            "results.json",
            "summary.png",
            "summary.svg"
        ]
    );
    assert_eq!(
        listing(&out.join("1x128-seed0")),
        [
            "config.json",
            "curves.png",
            "curves.svg",
            "metrics.jsonl",
            "model.safetensors"
        ]
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    // The relumax columns are this run's results (goldens, the same on every CPU: one epoch
    // of 1x128 at seed 0), beside the paper's; the discussion's verdict follows from them.
    for needle in [
        "Table I: one hidden layer",
        "| 128 | 0.28978 | 0.9202 | 0.45365 | 0.8855 | -0.0347 |",
        "relumax is above its accuracy in 0 of 1 configurations, by -3.47 pp",
        "**10 of 10 right**",
        "### Discussion",
        "1875 iterations",
        "48,000 / 32 = 1500",
        "![validation accuracy of every configuration](summary.png)",
        "1x128-seed0/curves.png",
        "of 10 right",
        "(classes.png)",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with("1,128,0,1,0.4536529408931732,0.8855,0.28978,0.9202,"),
        "{csv}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let config = &json["configs"][0];
    assert_eq!(config["test_accuracy_mean"], 0.8855);
    assert_eq!(config["test_loss_mean"], 0.4536529408931732);
    // The report's relumax columns are results.json's numbers.
    let row = format!(
        "| 128 | 0.28978 | 0.9202 | {:.5} | {:.4} |",
        config["test_loss_mean"].as_f64().unwrap(),
        config["test_accuracy_mean"].as_f64().unwrap()
    );
    assert!(report.contains(&row), "{row}\n{report}");
    // Every sample digit is classified right, even by this one-epoch model.
    assert_eq!(
        (&json["samples"]["right"], &json["samples"]["of"]),
        (&10.into(), &10.into())
    );
    for (digit, image) in json["samples"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            (&image["digit"], &image["prediction"]),
            (&digit.into(), &digit.into())
        );
    }
}

#[test]
fn paper_resumes_and_aggregates_the_same_tables() {
    let (tmp, base) = paper_run();
    let out = tmp.path().join("copy");
    copy_dir(base, &out);
    let results = results_without_timings;
    let before = results(&out);
    let before_bytes = std::fs::read(out.join("results.csv")).unwrap();
    // A complete folder is reused, not retrained.
    let model = out.join("1x128-seed0/model.safetensors");
    let stamp = std::fs::metadata(&model).unwrap().modified().unwrap();
    let stdout = paper_1x128(&out, &["--no-progress"]);
    assert!(stdout.contains("done already"), "{stdout}");
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        stamp
    );
    // Aggregation alone gives the same tables.
    std::fs::remove_file(out.join("results.csv")).unwrap();
    paper_1x128(&out, &["--aggregate"]);
    assert_eq!(
        std::fs::read(out.join("results.csv")).unwrap(),
        before_bytes
    );
    // --force retrains it: a new model file, with the same results.
    let model_before = std::fs::read(&model).unwrap();
    let stdout = paper_1x128(&out, &["--no-progress", "--force"]);
    assert!(!stdout.contains("done already"), "{stdout}");
    assert_ne!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        stamp
    );
    assert!(std::fs::read(&model).unwrap() == model_before);
    assert_eq!(results(&out), before);
    // An interrupted folder (no final metrics) is redone, with identical results.
    std::fs::write(out.join("1x128-seed0/metrics.jsonl"), b"").unwrap();
    let stdout = paper_1x128(&out, &["--no-progress"]);
    assert!(!stdout.contains("done already"), "{stdout}");
    assert_eq!(results(&out), before);
    // A different configuration (2 epochs) is not mistaken for the 1-epoch run.
    let o = relumax(&[
        "paper",
        "--aggregate",
        "--only",
        "1x128",
        "--epochs",
        "2",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no finished runs"), "{}", stderr(&o));
}

/// `relumax paper --only 1x128 --epochs 1 --out OUT EXTRA...`, which must succeed.
fn paper_1x128(out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["paper", "--only", "1x128", "--epochs", "1", "--out", s(out)];
    args.extend_from_slice(extra);
    ok(&relumax(&args))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn paper_shards_then_aggregates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let paper = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "paper",
            "--only",
            "1x128,2x128",
            "--epochs",
            "1",
            "--out",
            s(out),
            "--no-progress",
        ];
        a.extend_from_slice(extra);
        relumax(&a)
    };
    let args = |extra: &[&str]| paper(&out, extra);
    let first = ok(&args(&["--shard", "0/2"]));
    assert!(first.contains("shard 0/2 done"), "{first}");
    assert_eq!(listing(&out), ["1x128-seed0"]);
    ok(&args(&["--shard", "1/2"]));
    assert_eq!(listing(&out), ["1x128-seed0", "2x128-seed0"]);
    let report = ok(&args(&["--aggregate"]));
    assert!(report.contains("Table II: two hidden layers"), "{report}");
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("Two hidden layers beat one")
    );
    // The same run unsharded (on two cores or more, the two networks side by side, each on one
    // thread) gives the same models and the same results.
    let whole = tmp.path().join("whole");
    ok(&paper(&whole, &[]));
    for run in ["1x128-seed0", "2x128-seed0"] {
        let model = |root: &Path| std::fs::read(root.join(run).join("model.safetensors")).unwrap();
        assert!(model(&out) == model(&whole), "{run}: the models differ");
    }
    assert_eq!(
        results_without_timings(&out),
        results_without_timings(&whole)
    );
}

/// The lines of `results.csv` in `out` without their two timing columns (retraining changes
/// only those).
fn results_without_timings(out: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    csv.lines()
        .map(|l| l.rsplitn(3, ',').last().unwrap().to_string())
        .collect()
}

#[test]
fn failed_overwrites_keep_the_report_and_the_class_images() {
    let (tmp, base) = paper_run();
    let out = tmp.path().join("overwrite");
    copy_dir(base, &out);
    let files = || -> Vec<(String, Vec<u8>)> {
        listing(&out)
            .into_iter()
            .filter(|n| out.join(n).is_file())
            .map(|n| (n.clone(), std::fs::read(out.join(&n)).unwrap()))
            .collect()
    };
    let before = files();
    // Files may grow to one block (512 or 1024 bytes): the report's and the figures' writes
    // fail part way, as on a full disk.
    let o = relumax_limited(1)
        .args(["paper", "--only", "1x128", "--epochs", "1", "--aggregate"])
        .args(["--out", s(&out)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    let png = out.join("classes.png");
    let model = out.join("1x128-seed0/model.safetensors");
    let o = relumax_limited(1)
        .args(["feed-backward", "--model", s(&model), "--out", s(&png)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(files() == before, "a file changed");
    assert_eq!(listing(&out), listing(base), "something was left behind");
}

#[test]
fn paper_reports_the_spread_over_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let stdout = ok(&relumax(&[
        "paper",
        "--only",
        "1x128",
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--seed",
        "5",
        "--out",
        s(&out),
        "--no-progress",
    ]));
    assert!(
        stdout.contains("seed 5") && stdout.contains("seed 6"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("2 seeds (mean ± standard deviation)"),
        "{report}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let sd = json["configs"][0]["test_accuracy_sd"].as_f64().unwrap();
    assert!(sd > 0.0 && sd < 0.02, "two seeds differ a little: {sd}");
}

#[test]
fn paper_rejects_bad_arguments() {
    for (flags, code, needle) in [
        // Malformed values exit 2 naming the flag, well-formed ones out of range exit 1.
        (&["--only", "3x"][..], 2, "'--only <LIST>'"),
        (&["--only", "0x128"][..], 1, "invalid --only"),
        (&["--seeds", "0"][..], 1, "invalid --seeds"),
        // Found by the `cli` fuzz target: every job was listed before the check, 6e14 of them.
        (&["--seeds", "333333333333333"][..], 1, "invalid --seeds"),
        // Also the fuzzer's: 727,370,956 layers were listed before the memory check.
        (
            &["--only", "727370956x2"][..],
            1,
            "invalid --only: at most 1024 hidden layers",
        ),
        (&["--epochs", "0"][..], 1, "invalid --epochs"),
        (&["--shard", "2/2"][..], 1, "invalid --shard"),
        (&["--shard", "x"][..], 2, "expected I/N"),
        (&["--jobs", "0"][..], 1, "invalid --jobs"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("p");
        let mut a = vec!["paper", "--out", s(&out)];
        a.extend_from_slice(flags);
        let o = relumax(&a);
        assert_eq!(o.status.code(), Some(code), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{flags:?}: {}", stderr(&o));
        assert!(!out.exists());
    }
}

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples");
    (0..10).map(|d| dir.join(format!("{d}.png"))).collect()
}

#[test]
fn predict_classifies_the_samples_with_distributions() {
    let (_, out) = paper_run();
    let model = out.join("1x128-seed0/model.safetensors");
    let mut args = vec![
        "predict".to_string(),
        "--json".into(),
        "--model".into(),
        s(&model).into(),
    ];
    args.extend(samples().iter().map(|p| s(p).to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ok(&relumax(&args));
    let mut right = 0;
    for (digit, line) in stdout.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = numbers(&v["probabilities"]);
        assert_eq!(p.len(), 10);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{line}");
        right += usize::from(v["prediction"] == digit);
    }
    assert_eq!(stdout.lines().count(), 10);
    assert_eq!(
        right, 10,
        "the one-epoch 1x128 model classifies every sample digit right"
    );
    // The same digits as JPEGs (a phone's photo format) are read and classified alike.
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["predict".to_string(), "--model".into(), s(&model).into()];
    for (digit, png) in samples().iter().enumerate() {
        let jpeg = dir.path().join(format!("{digit}.jpg"));
        let mut file = std::fs::File::create(&jpeg).unwrap();
        image::open(png)
            .unwrap()
            .into_rgb8()
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut file, 90,
            ))
            .unwrap();
        args.push(s(&jpeg).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ok(&relumax(&args));
    for digit in 0..10 {
        assert!(
            stdout.contains(&format!("{digit}.jpg: {digit}")),
            "{digit}.jpg: {stdout}"
        );
    }
}

/// A PNG whose header claims `w x h` pixels, with an empty image stream.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn predict_reports_each_bad_image_and_goes_on() {
    let (tmp, out) = paper_run();
    let model = out.join("1x128-seed0/model.safetensors");
    let dir = tmp.path().join("bad-images");
    std::fs::create_dir_all(&dir).unwrap();
    let good = &samples()[3];
    let bytes = std::fs::read(good).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.png",
            b"this is not an image".to_vec(),
            "cannot decode image",
        ),
        ("empty.png", Vec::new(), "cannot decode image"),
        (
            "truncated.png",
            bytes[..bytes.len() / 2].to_vec(),
            "cannot decode image",
        ),
        (
            "huge.png",
            png_header_only(100_000, 100_000),
            "cannot decode image",
        ),
        (
            "blank.png",
            {
                let mut c = std::io::Cursor::new(Vec::new());
                image::GrayImage::from_pixel(30, 30, image::Luma([255]))
                    .write_to(&mut c, image::ImageFormat::Png)
                    .unwrap();
                c.into_inner()
            },
            "no ink found",
        ),
        ("notes.txt", b"hello".to_vec(), "not a PNG or JPEG image"),
    ];
    let mut args = vec!["predict".to_string(), "--model".into(), s(&model).into()];
    for (name, b, _) in &cases {
        std::fs::write(dir.join(name), b).unwrap();
        args.push(s(&dir.join(name)).into());
    }
    args.push(s(good).into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = relumax(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    for (name, _, needle) in &cases {
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no error for {name}: {err}"));
        assert!(line.contains(needle), "{name}: {line}");
    }
    assert_eq!(err.lines().count(), cases.len(), "{err}");
    // The good image after them still ran.
    assert!(stdout(&o).contains("3.png: 3"), "{}", stdout(&o));
    // A 1x1 image is legal, and classified, with a note that it says little.
    let tiny = dir.join("tiny.png");
    image::GrayImage::from_pixel(1, 1, image::Luma([0]))
        .save(&tiny)
        .unwrap();
    let o = relumax(&["predict", "--model", s(&model), s(&tiny)]);
    let err = stderr(&o);
    assert!(err.contains("tiny.png is 1x1 pixels"), "{err}");
}

#[test]
fn predict_and_feed_backward_reject_models_that_are_not_28x28() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    relumax::Mlp::new(&[64, 8, 4], relumax::Init::He, 0)
        .unwrap()
        .save(&path)
        .unwrap();
    let o = relumax(&["predict", "--model", s(&path), s(&samples()[0])]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("takes 64 inputs"), "{}", stderr(&o));
    let o = relumax(&[
        "feed-backward",
        "--model",
        s(&path),
        "--out",
        s(&tmp.path().join("c.png")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!tmp.path().join("c.png").exists());
}

#[test]
fn feed_backward_draws_ten_different_panels() {
    let (tmp, out) = paper_run();
    let model = out.join("1x128-seed0/model.safetensors");
    for method in ["transpose", "pinv"] {
        let png = tmp.path().join(format!("classes-{method}.png"));
        ok(&relumax(&[
            "feed-backward",
            "--model",
            s(&model),
            "--out",
            s(&png),
            "--method",
            method,
        ]));
        let img = image::open(&png).unwrap().into_rgb8();
        // Five columns of 8x-zoomed 28 x 28 panels with 10 px gaps, two rows with 28 px labels.
        assert_eq!(
            img.dimensions(),
            (5 * (224 + 10) + 10, 2 * (224 + 10 + 28) + 10)
        );
        let panel = |k: u32| -> Vec<u8> {
            let (x0, y0) = (10 + (k % 5) * 234, 10 + (k / 5) * 262 + 28);
            (0..224)
                .flat_map(|y| (0..224).map(move |x| (x, y)))
                .flat_map(|(x, y)| img.get_pixel(x0 + x, y0 + y).0)
                .collect()
        };
        let panels: Vec<Vec<u8>> = (0..10).map(panel).collect();
        for a in 0..10 {
            assert!(panels[a].iter().any(|&v| v != 255), "panel {a} is blank");
            for b in a + 1..10 {
                assert_ne!(
                    panels[a], panels[b],
                    "{method}: panels {a} and {b} are equal"
                );
            }
        }
    }
    let o = relumax(&["feed-backward", "--model", s(&model), "--method", "magic"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn preprocessing_golden_rectangle() {
    // A black 30 x 10 bar on a white 40 x 20 canvas: inverted (light background), cropped to
    // 30 x 10, scaled by 20/30 to 20 x 7 (all ink), and placed with its centre of mass
    // (10, 3.5) at (14, 14): rows 4..24, columns round(10.5) = 11..18.
    let mut gray = Array2::from_elem((40, 20), 1.0f32);
    gray.slice_mut(ndarray::s![5..35, 5..15]).fill(0.0);
    let digit = mnist_digit(gray.view()).unwrap();
    let mut want = Array2::<f32>::zeros((FRAME, FRAME));
    want.slice_mut(ndarray::s![4..24, 11..18]).fill(1.0);
    let diff = (&digit - &want)
        .mapv(f32::abs)
        .iter()
        .copied()
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "max difference {diff}\n{digit}");
    // Light ink on a dark background gives the same digit.
    let inverted = gray.mapv(|v| 1.0 - v);
    assert_eq!(mnist_digit(inverted.view()).unwrap(), digit);
    // A blank image is an error, not a digit.
    let err = mnist_digit(Array2::from_elem((10, 10), 1.0f32).view()).unwrap_err();
    assert!(
        matches!(&err, relumax::Error::NoDigit { reason } if reason.contains("no ink")),
        "{err}"
    );
    let err = mnist_digit(Array2::<f32>::zeros((0, 5)).view()).unwrap_err();
    assert!(matches!(err, relumax::Error::NoDigit { .. }), "{err}");
}

#[test]
fn preprocessing_keeps_the_aspect_ratio_and_centres_the_mass() {
    // A wide 10 x 60 bar becomes 20 wide and round(10 * 20 / 60) = 3 tall.
    let mut gray = Array2::from_elem((50, 80), 0.9f32);
    gray.slice_mut(ndarray::s![20..30, 10..70]).fill(0.1);
    let d = mnist_digit(gray.view()).unwrap();
    let rows: Vec<usize> = (0..FRAME)
        .filter(|&r| d.row(r).iter().any(|&v| v > 0.5))
        .collect();
    let cols: Vec<usize> = (0..FRAME)
        .filter(|&c| d.column(c).iter().any(|&v| v > 0.5))
        .collect();
    assert_eq!((rows.len(), cols.len()), (3, 20));
    assert!(
        (d.iter().copied().fold(0.0f32, f32::max) - 1.0).abs() < 1e-6,
        "ink stretched to 1"
    );
}
