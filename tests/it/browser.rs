//! `relumax serve` in a real browser: headless Chromium, driven over the DevTools protocol,
//! loads the page, draws digits on the canvas with synthetic mouse events (which the page
//! receives as pointer events), and reads the prediction the page shows; the feed-backward
//! gallery's images and the samples strip are checked too.
//!
//! Needs Chromium (`.ci/run` installs Debian's `chromium`); without it the test fails saying
//! so. `RELUMAX_SCREENSHOT=docs/serve.png` writes the README's screenshot.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::WebSocket;
use tungstenite::stream::MaybeTlsStream;

use super::serve::Server;

/// A headless Chromium and a DevTools session on one page.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url` in a page of `width` x `height`.
    fn open(url: &str, (width, height): (u32, u32)) -> Browser {
        let binary = std::env::var("RELUMAX_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): this test needs Chromium (Debian: apt-get \
                     install chromium; .ci/run installs it; RELUMAX_CHROMIUM names another \
                     binary), or skip it with `cargo test --release -- --skip browser`"
                )
            });
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let endpoint = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "Chromium exited before it listened"
            );
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_string();
            }
        };
        // Chromium goes on logging: keep its pipe drained.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let (socket, _) = tungstenite::connect(endpoint.as_str()).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Calls a DevTools method (on the page, once attached); returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression on the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true on the page (an exception, as before the page has a
    /// body, counts as false).
    fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let guarded =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()");
        while self.eval(&guarded) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Draws `strokes` (canvas coordinates, 280 x 280) with the mouse, then waits for the
    /// page's predictions to settle; returns the class it shows.
    fn draw(&mut self, strokes: &[Vec<(f64, f64)>]) -> String {
        let pad = self.eval(
            "(() => { const b = document.getElementById('pad').getBoundingClientRect(); \
             return [b.left, b.top]; })()",
        );
        let (left, top) = (pad[0].as_f64().unwrap(), pad[1].as_f64().unwrap());
        for stroke in strokes {
            let mut mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| {
                self.call(
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": left + x, "y": top + y, "button": "left",
                            "buttons": buttons, "clickCount": 1 }),
                );
            };
            mouse("mousePressed", stroke[0], 1);
            // Moves a few pixels apart, as a hand's are.
            for pair in stroke.windows(2) {
                let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                let steps = ((x1 - x0).hypot(y1 - y0) / 6.0).ceil().max(1.0) as usize;
                for s in 1..=steps {
                    let t = s as f64 / steps as f64;
                    mouse("mouseMoved", (x0 + t * (x1 - x0), y0 + t * (y1 - y0)), 1);
                }
            }
            mouse("mouseReleased", *stroke.last().unwrap(), 0);
        }
        self.settled()
    }

    /// The class the page shows once no prediction is in flight (and it agrees with the
    /// large digit on the page).
    fn settled(&mut self) -> String {
        self.wait_for(
            "document.body.dataset.prediction !== undefined && !document.body.dataset.busy",
        );
        let shown = self.eval("document.getElementById('predicted').textContent");
        let class = self.eval("document.body.dataset.prediction");
        assert_eq!(shown, class);
        class.as_str().unwrap().to_string()
    }

    fn clear(&mut self) {
        self.eval("document.getElementById('clear').click()");
        self.wait_for("document.body.dataset.prediction === undefined");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ellipse's outline from its top, as one stroke.
fn ellipse((cx, cy): (f64, f64), (rx, ry): (f64, f64)) -> Vec<(f64, f64)> {
    (0..=48)
        .map(|i| {
            let a = std::f64::consts::TAU * f64::from(i) / 48.0;
            (cx + rx * a.sin(), cy - ry * a.cos())
        })
        .collect()
}

#[test]
fn browser_draws_digits_and_the_page_reads_them() {
    let server = Server::start(&[]);
    let url = format!("http://{}/", server.addr);
    let mut page = Browser::open(&url, (1200, 1000));
    page.wait_for("document.body.dataset.card === 'loaded'");
    // The feed-backward gallery: 20 images (2 methods x 10 classes), every one loaded.
    page.wait_for(
        "(() => { const i = [...document.querySelectorAll('#gallery img')]; \
         return i.length === 20 && i.every(x => x.complete && x.naturalWidth === 112); })()",
    );
    let seven = vec![vec![(70.0, 60.0), (210.0, 60.0), (120.0, 235.0)]];
    assert_eq!(page.draw(&seven), "7");
    // What the network sees is drawn: the 28 x 28 preview holds ink.
    let ink = page.eval(
        "(() => { const d = document.getElementById('seen').getContext('2d')\
         .getImageData(0, 0, 28, 28).data; let s = 0; \
         for (let i = 0; i < d.length; i += 4) s += d[i]; return s; })()",
    );
    assert!(ink.as_f64().unwrap() > 1000.0, "{ink}");
    let shot = page.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if let Ok(path) = std::env::var("RELUMAX_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
    page.clear();
    let one = vec![vec![(140.0, 40.0), (140.0, 240.0)]];
    assert_eq!(page.draw(&one), "1");
    page.clear();
    let zero = vec![ellipse((140.0, 140.0), (65.0, 95.0))];
    assert_eq!(page.draw(&zero), "0");
    // A sample from the strip is read as `relumax predict` reads the file.
    page.clear();
    page.eval("document.querySelectorAll('#samples img')[2].click()");
    assert_eq!(page.settled(), "2");
}
