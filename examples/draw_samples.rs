//! Draws the ten sample digits in `data/samples/` the way the paper made its own: strokes of
//! a round, soft-edged brush, as in a painting program, through hand-placed points (not copies
//! of MNIST). Canvas sizes, ink colours and backgrounds vary on purpose, to exercise
//! `relumax predict`'s preprocessing (one has a transparent background, one is light on dark).
//!
//! Run with: `cargo run --release --example draw_samples`

use std::path::Path;

use image::{ImageBuffer, Rgba};

type Stroke = &'static [(f32, f32)];

/// Hand-placed stroke points per digit, in a 100 x 100 box (y down).
const DIGITS: [&[Stroke]; 10] = [
    &[&[
        (50.0, 12.0),
        (30.0, 22.0),
        (24.0, 50.0),
        (32.0, 80.0),
        (52.0, 90.0),
        (70.0, 76.0),
        (75.0, 46.0),
        (66.0, 18.0),
        (48.0, 13.0),
    ]],
    &[&[(38.0, 26.0), (54.0, 12.0), (54.0, 50.0), (53.0, 90.0)]],
    &[&[
        (28.0, 30.0),
        (38.0, 16.0),
        (56.0, 12.0),
        (70.0, 24.0),
        (66.0, 44.0),
        (46.0, 64.0),
        (26.0, 86.0),
        (52.0, 84.0),
        (78.0, 85.0),
    ]],
    &[
        &[
            (28.0, 20.0),
            (50.0, 11.0),
            (68.0, 22.0),
            (64.0, 40.0),
            (46.0, 48.0),
        ],
        &[
            (46.0, 48.0),
            (68.0, 56.0),
            (72.0, 74.0),
            (56.0, 88.0),
            (30.0, 84.0),
        ],
    ],
    &[
        &[
            (58.0, 12.0),
            (40.0, 40.0),
            (24.0, 64.0),
            (52.0, 63.0),
            (80.0, 62.0),
        ],
        &[(62.0, 36.0), (61.0, 62.0), (60.0, 90.0)],
    ],
    &[
        &[(72.0, 13.0), (50.0, 14.0), (36.0, 15.0), (33.0, 46.0)],
        &[
            (33.0, 46.0),
            (54.0, 40.0),
            (70.0, 54.0),
            (70.0, 74.0),
            (52.0, 88.0),
            (28.0, 80.0),
        ],
    ],
    &[&[
        (66.0, 12.0),
        (44.0, 28.0),
        (30.0, 56.0),
        (34.0, 80.0),
        (52.0, 89.0),
        (68.0, 76.0),
        (66.0, 58.0),
        (48.0, 52.0),
        (32.0, 64.0),
    ]],
    &[&[
        (24.0, 17.0),
        (50.0, 15.0),
        (76.0, 15.0),
        (60.0, 46.0),
        (44.0, 89.0),
    ]],
    &[&[
        (63.0, 22.0),
        (50.0, 11.0),
        (34.0, 20.0),
        (37.0, 37.0),
        (50.0, 48.0),
        (66.0, 60.0),
        (66.0, 80.0),
        (50.0, 90.0),
        (33.0, 80.0),
        (34.0, 62.0),
        (50.0, 48.0),
        (62.0, 36.0),
        (63.0, 22.0),
    ]],
    &[
        &[
            (66.0, 28.0),
            (54.0, 13.0),
            (36.0, 17.0),
            (31.0, 33.0),
            (42.0, 46.0),
            (60.0, 42.0),
            (66.0, 28.0),
        ],
        &[(66.0, 28.0), (64.0, 60.0), (60.0, 90.0)],
    ],
];

/// Catmull-Rom spline through `pts`, sampled every `step` units.
fn spline(pts: &[(f32, f32)], step: f32) -> Vec<(f32, f32)> {
    let p = |i: isize| pts[i.clamp(0, pts.len() as isize - 1) as usize];
    let mut out = Vec::new();
    for i in 0..pts.len().saturating_sub(1) as isize {
        let (p0, p1, p2, p3) = (p(i - 1), p(i), p(i + 1), p(i + 2));
        let len = ((p2.0 - p1.0).powi(2) + (p2.1 - p1.1).powi(2)).sqrt();
        let n = (len / step).ceil().max(1.0) as usize;
        for k in 0..n {
            let t = k as f32 / n as f32;
            let (t2, t3) = (t * t, t * t * t);
            let f = |a: f32, b: f32, c: f32, d: f32| {
                0.5 * (2.0 * b
                    + (c - a) * t
                    + (2.0 * a - 5.0 * b + 4.0 * c - d) * t2
                    + (3.0 * b - a - 3.0 * c + d) * t3)
            };
            out.push((f(p0.0, p1.0, p2.0, p3.0), f(p0.1, p1.1, p2.1, p3.1)));
        }
    }
    out.push(pts[pts.len() - 1]);
    out
}

struct Style {
    size: (u32, u32),
    ink: [u8; 3],
    paper: [u8; 4],
    radius: f32,
}

fn paint(digit: usize, style: &Style) -> ImageBuffer<Rgba<u8>, Vec<u8>> {
    let (w, h) = style.size;
    let side = w.min(h) as f32;
    let (ox, oy) = ((w as f32 - side) / 2.0, (h as f32 - side) / 2.0);
    let mut coverage = vec![0.0f32; (w * h) as usize];
    for stroke in DIGITS[digit] {
        for (x, y) in spline(stroke, 0.5) {
            let (cx, cy) = (ox + x / 100.0 * side, oy + y / 100.0 * side);
            let r = style.radius;
            let (x0, x1) = (
                (cx - r - 1.0).max(0.0) as u32,
                ((cx + r + 1.0) as u32).min(w - 1),
            );
            let (y0, y1) = (
                (cy - r - 1.0).max(0.0) as u32,
                ((cy + r + 1.0) as u32).min(h - 1),
            );
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let d =
                        ((px as f32 + 0.5 - cx).powi(2) + (py as f32 + 0.5 - cy).powi(2)).sqrt();
                    // A brush with a soft, anti-aliased rim.
                    let c = (r - d + 1.0).clamp(0.0, 1.0).powf(0.8);
                    let cell = &mut coverage[(py * w + px) as usize];
                    *cell = cell.max(c);
                }
            }
        }
    }
    ImageBuffer::from_fn(w, h, |x, y| {
        let c = coverage[(y * w + x) as usize];
        let mix =
            |ink: u8, paper: u8| (f32::from(paper) * (1.0 - c) + f32::from(ink) * c).round() as u8;
        let [ir, ig, ib] = style.ink;
        let [pr, pg, pb, pa] = style.paper;
        let alpha = (f32::from(pa) * (1.0 - c) + 255.0 * c).round() as u8;
        Rgba([mix(ir, pr), mix(ig, pg), mix(ib, pb), alpha])
    })
}

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("samples");
    std::fs::create_dir_all(&out).expect("create data/samples");
    for digit in 0..10 {
        let style = match digit {
            3 => Style {
                size: (240, 180),
                ink: [20, 30, 120],
                paper: [255, 255, 250, 255],
                radius: 9.0,
            },
            5 => Style {
                size: (160, 220),
                ink: [10, 10, 10],
                paper: [240, 238, 230, 255],
                radius: 7.0,
            },
            7 => Style {
                size: (200, 200),
                ink: [0, 0, 0],
                paper: [255, 255, 255, 0],
                radius: 9.0,
            },
            8 => Style {
                size: (128, 128),
                ink: [250, 250, 250],
                paper: [15, 15, 15, 255],
                radius: 6.0,
            },
            _ => Style {
                size: (200, 200),
                ink: [0, 0, 0],
                paper: [255, 255, 255, 255],
                radius: 10.0,
            },
        };
        let img = paint(digit, &style);
        let path = out.join(format!("{digit}.png"));
        img.save(&path).expect("write sample PNG");
        println!("wrote {}", path.display());
    }
}
