//! What the server answers: a fixed table of routes to embedded pages, the model's card and
//! class images, the bundled samples, and predictions. No request names a file: every path
//! is matched against this table, and anything else is a 404.

use ndarray::Array2;
use relumax::Mlp;
use relumax::preprocess::{FRAME, mnist_digit};
use serde_json::{Value, json};

use super::card::{Card, METHODS};
use crate::cli::images::{DecodeLimits, Prediction, classify_frame, decode_gray_bytes};

/// Decoding limits of an uploaded image: far above a canvas drawing, far below what would
/// let a small compressed upload take much memory or time.
pub const UPLOAD_LIMITS: DecodeLimits = DecodeLimits {
    max_side: 4096,
    max_alloc: 64 << 20,
};

/// The page, embedded in the binary (no CDN, fonts or scripts from elsewhere).
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// The ten hand-painted digits of `data/samples/`, `SAMPLES[d]` showing digit `d`.
const SAMPLES: [&[u8]; 10] = [
    include_bytes!("../../../data/samples/0.png"),
    include_bytes!("../../../data/samples/1.png"),
    include_bytes!("../../../data/samples/2.png"),
    include_bytes!("../../../data/samples/3.png"),
    include_bytes!("../../../data/samples/4.png"),
    include_bytes!("../../../data/samples/5.png"),
    include_bytes!("../../../data/samples/6.png"),
    include_bytes!("../../../data/samples/7.png"),
    include_bytes!("../../../data/samples/8.png"),
    include_bytes!("../../../data/samples/9.png"),
];

/// A response: status, content type and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    fn json(value: &Value) -> Reply {
        Reply::ok("application/json", value.to_string())
    }

    /// A `status` error with a JSON body `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: json!({ "error": message.to_string() })
                .to_string()
                .into_bytes(),
        }
    }
}

/// What the routes need: the model and its card.
pub struct App {
    pub model: Mlp,
    pub card: Card,
}

impl App {
    /// Answers `method` on `path` (query string removed) with the request's `body`.
    pub fn route(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let get = |reply: Reply| match method {
            "GET" | "HEAD" => reply,
            _ => Reply::error(405, format!("{path} takes GET, not {method}")),
        };
        match path {
            "/" | "/index.html" => get(Reply::ok("text/html; charset=utf-8", INDEX_HTML)),
            "/app.js" => get(Reply::ok("text/javascript; charset=utf-8", APP_JS)),
            "/style.css" => get(Reply::ok("text/css; charset=utf-8", STYLE_CSS)),
            "/api/model" => get(Reply::json(&self.card.json)),
            "/api/predict" => match method {
                "POST" => self.predict(body),
                _ => Reply::error(405, format!("{path} takes POST, not {method}")),
            },
            _ => match self.asset(path) {
                Some(png) => get(Reply::ok("image/png", png)),
                None => Reply::error(404, format!("no such page: {path}")),
            },
        }
    }

    /// A sample (`/samples/{d}.png`) or a class image (`/api/class-images/{method}/{k}.png`).
    fn asset(&self, path: &str) -> Option<&[u8]> {
        let digit = |name: &str| -> Option<usize> {
            let stem = name.strip_suffix(".png")?;
            (stem.len() == 1).then(|| stem.parse().ok()).flatten()
        };
        if let Some(name) = path.strip_prefix("/samples/") {
            return SAMPLES.get(digit(name)?).copied();
        }
        let rest = path.strip_prefix("/api/class-images/")?;
        let (method, name) = rest.split_once('/')?;
        let m = METHODS.iter().position(|(n, _)| *n == method)?;
        self.card.images[m].get(digit(name)?).map(Vec::as_slice)
    }

    /// `POST /api/predict`: a PNG or JPEG of a digit (preprocessed as MNIST's were), or a JSON
    /// array of 784 numbers in `[0, 1]` (an image already in MNIST's convention).
    fn predict(&self, body: &[u8]) -> Reply {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let frame = if first == Some(&b'[') {
            frame_from_json(body)
        } else {
            frame_from_image(body)
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(reply) => return reply,
        };
        match classify_frame(&self.model, frame.view()) {
            Ok(Prediction {
                digit,
                probabilities,
            }) => Reply::json(&json!({
                "class": digit,
                "probabilities": probabilities,
                "image": frame.iter().collect::<Vec<_>>(),
            })),
            Err(e) => Reply::error(500, e),
        }
    }
}

/// The 28 x 28 frame an uploaded image becomes.
fn frame_from_image(body: &[u8]) -> Result<Array2<f32>, Reply> {
    if body.is_empty() {
        return Err(Reply::error(
            400,
            "empty body: send a PNG or JPEG, or a JSON array of 784 numbers",
        ));
    }
    let gray = decode_gray_bytes(body, UPLOAD_LIMITS).map_err(|e| Reply::error(400, e))?;
    // A blank image is the client's input, not a server failure.
    mnist_digit(gray.view()).map_err(|e| Reply::error(422, e))
}

/// The 28 x 28 frame a JSON array of 784 numbers in `[0, 1]` stands for.
fn frame_from_json(body: &[u8]) -> Result<Array2<f32>, Reply> {
    let values: Vec<f64> = serde_json::from_slice(body)
        .map_err(|e| Reply::error(400, format!("not a JSON array of numbers: {e}")))?;
    if values.len() != FRAME * FRAME {
        return Err(Reply::error(
            400,
            format!(
                "expected {} numbers ({FRAME} x {FRAME}, row by row), got {}",
                FRAME * FRAME,
                values.len()
            ),
        ));
    }
    if let Some(i) = values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(Reply::error(
            400,
            format!(
                "value {i} is {}: pixels are in [0, 1] (0 background, 1 ink)",
                values[i]
            ),
        ));
    }
    let pixels = values.into_iter().map(|v| v as f32).collect();
    Ok(Array2::from_shape_vec((FRAME, FRAME), pixels).expect("FRAME * FRAME values"))
}
