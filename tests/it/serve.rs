//! `relumax serve` through its HTTP API, against a server on an ephemeral localhost port:
//! predictions from PNGs and from arrays, every kind of bad request answered with a 4xx and a
//! JSON error, slow and oversized clients bounded, many clients at once; after each, the
//! server still answers, and SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{ok, relumax, relumax_cmd, send};

/// A run folder of 1x128 trained for 3 epochs on the bundled MNIST (91% on its test split),
/// made once per test process.
pub fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-1x128");
        let _ = std::fs::remove_dir_all(&run);
        ok(&relumax(&[
            "train",
            "--hidden",
            "128",
            "--epochs",
            "3",
            "--no-progress",
            "--out",
            run.to_str().unwrap(),
        ]));
        run
    })
}

/// A running `relumax serve`; SIGTERM and a wait when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `relumax serve --run <trained run> --port 0 <extra>`, once it listens.
    pub fn start(extra: &[&str]) -> Server {
        let mut child = relumax_cmd()
            .args([
                "serve",
                "--run",
                trained_run().to_str().unwrap(),
                "--port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let addr = url["http://".len()..]
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Server { child, addr }
    }

    /// Stops the server with `signal`; returns its exit code and standard error.
    fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        send(self.child.id(), signal);
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        std::mem::forget(self);
        (status.code(), err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        send(self.child.id(), "-TERM");
        let _ = self.child.wait();
    }
}

/// Sends `raw` bytes as a request; returns the status and the body of the reply.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).unwrap();
    read_reply(&mut stream)
}

fn read_reply(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", String::from_utf8_lossy(&reply)));
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, reply[split + 4..].to_vec())
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
}

/// The JSON error of a reply that must have `status`.
fn error_of((got, body): (u16, Vec<u8>), status: u16) -> String {
    let v = json(&body);
    assert_eq!(got, status, "{v}");
    v["error"].as_str().unwrap().to_string()
}

fn sample(d: usize) -> Vec<u8> {
    std::fs::read(format!(
        "{}/data/samples/{d}.png",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The server answers its model card: still alive and well.
fn assert_alive(addr: SocketAddr) {
    let (status, body) = get(addr, "/api/model");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["name"], "1x128");
}

#[test]
fn predicts_digits_from_pngs_and_from_arrays() {
    let server = Server::start(&[]);
    let expected = ok(&relumax(&[
        "predict",
        "--json",
        "--model",
        trained_run().to_str().unwrap(),
        &format!("{}/data/samples/7.png", env!("CARGO_MANIFEST_DIR")),
    ]));
    let expected = json(expected.as_bytes());
    let (status, body) = post(server.addr, "/api/predict", &sample(7));
    assert_eq!(status, 200);
    let v = json(&body);
    // The same answer, to the bit, as `relumax predict` on the same file.
    assert_eq!(v["class"], 7);
    assert_eq!(v["probabilities"], expected["probabilities"]);
    let image = crate::common::numbers(&v["image"]);
    assert_eq!(image.len(), 784);
    assert!(image.iter().all(|p| (0.0..=1.0).contains(p)));
    // The image the network saw, sent back as an array, gives the same answer.
    let (status, again) = post(
        server.addr,
        "/api/predict",
        v["image"].to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(json(&again)["probabilities"], v["probabilities"]);
    // Every sample is read as its digit but one at most (the 1x128 model reads 9 of 10).
    let right = (0..10)
        .filter(|&d| json(&post(server.addr, "/api/predict", &sample(d)).1)["class"] == d)
        .count();
    assert!(right >= 9, "{right} of 10 samples");
}

#[test]
fn serves_the_page_the_card_and_the_images_and_nothing_else() {
    let server = Server::start(&[]);
    let (status, page) = get(server.addr, "/");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("<canvas id=\"pad\""), "{page}");
    // Nothing comes from elsewhere.
    for asset in ["/", "/app.js", "/style.css"] {
        let text = String::from_utf8(get(server.addr, asset).1).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset}"
        );
    }
    let card = json(&get(server.addr, "/api/model").1);
    assert_eq!(card["sizes"], serde_json::json!([784, 128, 10]));
    assert_eq!(card["config"]["hidden"], serde_json::json!([128]));
    let run_metrics = std::fs::read_to_string(trained_run().join("metrics.jsonl")).unwrap();
    let last = json(run_metrics.lines().last().unwrap().as_bytes());
    assert_eq!(card["test_accuracy"], last["test_accuracy"]);
    for method in ["transpose", "pinv"] {
        let urls = card["class_images"][method].as_array().unwrap();
        assert_eq!(urls.len(), 10);
        for url in urls {
            let (status, png) = get(server.addr, url.as_str().unwrap());
            assert_eq!(status, 200);
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
    for d in 0..10 {
        assert_eq!(get(server.addr, &format!("/samples/{d}.png")).1, sample(d));
    }
    // No request names a file: only the routes exist.
    for path in [
        "/../Cargo.toml",
        "/samples/../../Cargo.toml",
        "/samples/10.png",
        "/samples/%2e%2e/Cargo.toml",
        "/api/class-images/transpose/../../../etc/passwd",
        "/api/class-images/other/1.png",
        "/etc/passwd",
    ] {
        let message = error_of(get(server.addr, path), 404);
        assert!(message.contains("no such page"), "{path}: {message}");
    }
    let message = error_of(get(server.addr, "/api/predict"), 405);
    assert!(message.contains("POST"), "{message}");
    error_of(post(server.addr, "/api/model", b"x"), 405);
    assert_alive(server.addr);
}

#[test]
fn bad_requests_get_a_4xx_with_a_json_error() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let blank = std::fs::read(format!(
        "{}/tests/fixtures/blank.png",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let out_of_range = format!("[{}2]", "0,".repeat(783));
    let cases: [(&[u8], u16, &str); 8] = [
        (&blank, 422, "no digit in the image"),
        (b"hello, world", 400, "not a PNG or JPEG"),
        (b"", 400, "empty body"),
        (&sample(3)[..200], 400, "cannot decode"),
        (b"[0.5, 0.5]", 400, "expected 784 numbers"),
        (b"[1, 2", 400, "not a JSON array"),
        (b"[\"a\"]", 400, "not a JSON array"),
        (out_of_range.as_bytes(), 400, "value 783 is 2"),
    ];
    for (body, status, words) in cases {
        let message = error_of(post(addr, "/api/predict", body), status);
        assert!(message.contains(words), "{words}: {message}");
    }
    // An image past the decoding limits (4096 pixels a side), small as a file.
    let mut wide = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(5000, 2, image::Luma([255]))
        .write_to(&mut wide, image::ImageFormat::Png)
        .unwrap();
    let message = error_of(post(addr, "/api/predict", wide.get_ref()), 400);
    assert!(message.contains("limit"), "{message}");
    // A malformed head, and a chunked body (no length to bound it by).
    error_of(exchange(addr, b"NOT HTTP\r\n\r\n"), 400);
    error_of(
        exchange(
            addr,
            b"POST /api/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        411,
    );
    // A head larger than the limit.
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    error_of(exchange(addr, huge.as_bytes()), 431);
    assert_alive(addr);
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let server = Server::start(&[]);
    let addr = server.addr;
    // 3 MiB, over the 2 MiB limit, sent whole.
    let message = error_of(post(addr, "/api/predict", &vec![0u8; 3 << 20]), 413);
    assert!(message.contains("limit"), "{message}");
    // A declared length far beyond memory, with no body at all: refused from the head.
    for length in [
        "10000000000000",
        "18446744073709551615",
        "99999999999999999999999",
    ] {
        let raw = format!("POST /api/predict HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
        let (status, _) = exchange(addr, raw.as_bytes());
        assert!(status == 413 || status == 400, "{length}: {status}");
    }
    assert_alive(addr);
}

#[test]
fn a_slow_client_times_out_and_holds_nobody_up() {
    let server = Server::start(&[]);
    let addr = server.addr;
    // Half a request head, then nothing.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /api/predict HTTP/1.1\r\nContent-Le")
        .unwrap();
    // A body that stops halfway.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .write_all(b"POST /api/predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n0123")
        .unwrap();
    // Meanwhile others are served.
    for _ in 0..3 {
        assert_eq!(post(addr, "/api/predict", &sample(4)).0, 200);
    }
    // Both get a 408 once the read timeout (5 s) passes, not never.
    let started = Instant::now();
    for stream in [&mut slow, &mut stalled] {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let message = error_of(read_reply(stream), 408);
        assert!(message.contains("in time"), "{message}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_alive(addr);
}

#[test]
fn many_clients_at_once_and_a_limit_on_connections() {
    let server = Server::start(&[]);
    let addr = server.addr;
    // 32 predictions from 8 threads at once: all answered, all the same answer.
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(move || {
                    (0..4)
                        .map(|_| {
                            let (status, body) = post(addr, "/api/predict", &sample(2));
                            assert_eq!(status, 200);
                            json(&body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), 32);
    assert!(answers.iter().all(|a| a == &answers[0]));
    // 16 idle connections fill the server; the 17th is turned away at once with a 503.
    let idle: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let message = error_of(get(addr, "/api/model"), 503);
    assert!(message.contains("too many connections"), "{message}");
    drop(idle);
    // Their slots come back once they are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/api/model").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the connection slots never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_and_ctrl_c_stop_it_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let server = Server::start(&[]);
        assert_alive(server.addr);
        let addr = server.addr;
        let (code, err) = server.stop(signal);
        assert_eq!(code, Some(0), "{signal}: {err}");
        assert!(err.contains("stopped"), "{err}");
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after {signal}"
        );
    }
}

#[test]
fn binding_beyond_localhost_says_so_and_bad_models_are_refused() {
    let server = Server::start(&["--host", "0.0.0.0"]);
    assert!(server.addr.ip().is_unspecified());
    let (_, err) = server.stop("-TERM");
    assert!(err.contains("reachable from other machines"), "{err}");
    // A model that does not take 28 x 28 images, and a missing one: one line, exit 1.
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small.safetensors");
    relumax::Mlp::new(&[64, 8, 4], relumax::Init::He, 0)
        .unwrap()
        .save(&small)
        .unwrap();
    let missing = tmp.path().join("missing.safetensors");
    for (model, words) in [(&small, "takes 64 inputs"), (&missing, "cannot read")] {
        let o = relumax(&["serve", "--model", model.to_str().unwrap(), "--port", "0"]);
        assert_eq!(o.status.code(), Some(1));
        let err = crate::common::stderr(&o);
        assert!(err.contains(words) && err.lines().count() == 1, "{err}");
    }
    // --model and --run together, or neither: a usage error.
    assert_eq!(relumax(&["serve"]).status.code(), Some(2));
    let run = trained_run().to_str().unwrap();
    let both = relumax(&["serve", "--run", run, "--model", run]);
    assert_eq!(both.status.code(), Some(2));
}
