//! Digit images in and out: reading a person's digit images (PNG or JPEG, any size, with
//! decoding limits) and classifying them, and drawing class images as a panel grid.

use std::path::Path;

use anyhow::Context;
use ndarray::{Array2, ArrayView1, ArrayView2};
use relumax::{
    Mlp, inspect::Preimage, inspect::class_images, preprocess::FRAME, preprocess::mnist_digit,
};

/// How large an image the decoder may take: a decompression bomb is refused, not decoded.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest accepted image side, in pixels.
    pub max_side: u32,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
}

/// The limits of `relumax predict`.
pub const FILE_LIMITS: DecodeLimits = DecodeLimits {
    max_side: 8192,
    max_alloc: 256 << 20,
};

/// Decodes `path` and returns its luminance in `[0, 1]`, `(rows, cols)`, with transparent
/// pixels composited onto white.
pub fn read_gray(path: &Path) -> anyhow::Result<Array2<f32>> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    decode_gray(reader, FILE_LIMITS).with_context(|| path.display().to_string())
}

/// [`read_gray`] for an image held in memory (an upload).
pub fn decode_gray_bytes(bytes: &[u8], limits: DecodeLimits) -> anyhow::Result<Array2<f32>> {
    decode_gray(image::ImageReader::new(std::io::Cursor::new(bytes)), limits)
}

fn decode_gray<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    limits: DecodeLimits,
) -> anyhow::Result<Array2<f32>> {
    let mut reader = reader.with_guessed_format()?;
    if reader.format().is_none() {
        anyhow::bail!("not a PNG or JPEG image");
    }
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(limits.max_side);
    bounds.max_image_height = Some(limits.max_side);
    bounds.max_alloc = Some(limits.max_alloc);
    reader.limits(bounds);
    let img = reader
        .decode()
        .map_err(|e| anyhow::anyhow!("cannot decode image: {e}"))?
        .into_rgba8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        anyhow::bail!("the image has no pixels");
    }
    Ok(Array2::from_shape_fn((h as usize, w as usize), |(r, c)| {
        let [red, green, blue, alpha] = img.get_pixel(c as u32, r as u32).0.map(f32::from);
        let lum = (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0;
        let alpha = alpha / 255.0;
        lum * alpha + (1.0 - alpha)
    }))
}

/// Images narrower or shorter than this get a note: scaled up to MNIST's 20 x 20 box, they
/// hold little of a digit (MNIST's own are 28 x 28).
const MIN_SIDE: usize = 8;

/// One classified image.
pub struct Prediction {
    pub digit: usize,
    pub probabilities: Vec<f32>,
}

/// Classifies one image file with MNIST's preprocessing.
pub fn classify(model: &Mlp, path: &Path) -> anyhow::Result<Prediction> {
    let gray = read_gray(path)?;
    let (h, w) = gray.dim();
    if h.min(w) < MIN_SIDE {
        eprintln!(
            "note: {} is {w}x{h} pixels; a digit is scaled to fill 20x20, so so small an image \
             says little",
            path.display()
        );
    }
    let digit = mnist_digit(gray.view()).with_context(|| format!("{}", path.display()))?;
    Ok(classify_frame(model, digit.view())?)
}

/// Classifies a preprocessed `FRAME x FRAME` digit (MNIST's convention: 0 background, 1 ink).
pub fn classify_frame(model: &Mlp, frame: ArrayView2<'_, f32>) -> relumax::Result<Prediction> {
    let x = frame
        .to_shape((1, FRAME * FRAME))
        .expect("a frame has FRAME * FRAME pixels");
    let probabilities = model.predict_proba(x.view())?.row(0).to_vec();
    let digit = relumax::kernels::argmax(&probabilities);
    Ok(Prediction {
        digit,
        probabilities,
    })
}

/// Writes the grid of what each class looks like to `model` (the paper's Fig. 9) to `out`.
pub fn write_class_images(model: &Mlp, method: Preimage, out: &Path) -> anyhow::Result<()> {
    let images = class_images(model, method)?;
    write_panel_grid(&images, FRAME, 5, out)
}

/// A diverging colour: blue for negative, white for zero, red for positive (`v` in `[-1, 1]`).
fn diverging(v: f32) -> [u8; 3] {
    let v = v.clamp(-1.0, 1.0);
    let (lo, hi) = ([33.0, 102.0, 172.0], [178.0, 24.0, 43.0]);
    let end = if v < 0.0 { lo } else { hi };
    let t = v.abs();
    let mix = |e: f32| (255.0 * (1.0 - t) + e * t).round() as u8;
    [mix(end[0]), mix(end[1]), mix(end[2])]
}

/// Draws one square panel per row of `images` (each `side * side` values) in a grid of
/// `cols` columns, each scaled to its own largest magnitude, labelled by index; writes a PNG.
pub fn write_panel_grid(
    images: &Array2<f32>,
    side: usize,
    cols: usize,
    path: &Path,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    super::plot::register_font();
    let zoom = 8usize;
    let (label_h, pad) = (28usize, 10usize);
    let cell_w = side * zoom + pad;
    let cell_h = side * zoom + pad + label_h;
    let rows = images.nrows().div_ceil(cols);
    let size = ((cols * cell_w + pad) as u32, (rows * cell_h + pad) as u32);
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        let fail =
            |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("cannot draw {}: {e}", path.display());
        root.fill(&WHITE).map_err(fail)?;
        for (k, img) in images.rows().into_iter().enumerate() {
            let (x0, y0) = (pad + (k % cols) * cell_w, pad + (k / cols) * cell_h);
            draw_panel(&root, img, side, zoom, (x0, y0 + label_h)).map_err(fail)?;
            root.draw(&Text::new(
                k.to_string(),
                ((x0 + side * zoom / 2 - 5) as i32, (y0 + 4) as i32),
                ("sans-serif", 20).into_font().color(&BLACK),
            ))
            .map_err(fail)?;
        }
        root.present().map_err(fail)?;
    }
    super::plot::write_png(path, size, &rgb)
}

/// One class image (`side * side` values) as a PNG of `zoom`-pixel squares, coloured as in
/// the panel grid.
pub fn panel_png(img: ArrayView1<'_, f32>, side: usize, zoom: usize) -> anyhow::Result<Vec<u8>> {
    let width = side * zoom;
    let mut rgb = vec![0u8; width * width * 3];
    for (i, colour) in panel_colours(img).into_iter().enumerate() {
        let (r, c) = (i / side, i % side);
        for y in r * zoom..(r + 1) * zoom {
            for x in c * zoom..(c + 1) * zoom {
                rgb[(y * width + x) * 3..][..3].copy_from_slice(&colour);
            }
        }
    }
    super::plot::encode_png((width as u32, width as u32), &rgb)
}

/// Each value's diverging colour, scaled to the image's own largest magnitude.
fn panel_colours(img: ArrayView1<'_, f32>) -> Vec<[u8; 3]> {
    let scale = img
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    img.iter().map(|&v| diverging(v / scale)).collect()
}

fn draw_panel<DB: plotters::prelude::DrawingBackend>(
    root: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    img: ArrayView1<'_, f32>,
    side: usize,
    zoom: usize,
    (x0, y0): (usize, usize),
) -> Result<(), plotters::prelude::DrawingAreaErrorKind<DB::ErrorType>> {
    use plotters::prelude::*;
    for (i, [red, green, blue]) in panel_colours(img).into_iter().enumerate() {
        let (r, c) = (i / side, i % side);
        let (x, y) = ((x0 + c * zoom) as i32, (y0 + r * zoom) as i32);
        root.draw(&Rectangle::new(
            [(x, y), (x + zoom as i32, y + zoom as i32)],
            RGBColor(red, green, blue).filled(),
        ))?;
    }
    Ok(())
}
