//! Figures: learning curves (PNG and SVG) with an embedded font, so no system font library is
//! needed.

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use relumax::{EpochMetrics, train::CurvePoint};

/// Registers the embedded DejaVu Sans as plotters' "sans-serif" (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Size of the learning-curve figure in pixels.
const CURVES_SIZE: (u32, u32) = (1200, 460);

/// One chart: a title, an x-axis label, its series, and where the legend goes.
pub struct Panel {
    pub title: String,
    pub x_label: &'static str,
    pub series: Vec<Series>,
    /// Legend in the lower right (for rising curves) instead of the upper right.
    pub legend_low: bool,
}

/// One series of points with a label.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub markers: bool,
}

/// The learning curves of one run: loss by iteration (running, and per epoch for training
/// and validation) and accuracy by epoch.
pub fn learning_curves(
    title: &str,
    epochs: &[EpochMetrics],
    curve: &[CurvePoint],
    steps_per_epoch: usize,
) -> [Panel; 2] {
    let at_epoch = |e: &EpochMetrics| (e.epoch * steps_per_epoch) as f64;
    let mut loss = vec![Series {
        label: "training loss (running)".into(),
        points: curve.iter().map(|p| (p.iteration as f64, p.loss)).collect(),
        color: RGBColor(160, 190, 230),
        markers: false,
    }];
    loss.push(Series {
        label: "training loss (epoch mean)".into(),
        points: epochs.iter().map(|e| (at_epoch(e), e.train_loss)).collect(),
        color: BLUE,
        markers: true,
    });
    let val_loss: Vec<_> = epochs
        .iter()
        .filter_map(|e| e.val_loss.map(|v| (at_epoch(e), v)))
        .collect();
    if !val_loss.is_empty() {
        loss.push(Series {
            label: "validation loss".into(),
            points: val_loss,
            color: RGBColor(220, 90, 30),
            markers: true,
        });
    }
    let mut acc = vec![Series {
        label: "training accuracy".into(),
        points: epochs
            .iter()
            .map(|e| (e.epoch as f64, e.train_accuracy))
            .collect(),
        color: BLUE,
        markers: true,
    }];
    let val_acc: Vec<_> = epochs
        .iter()
        .filter_map(|e| e.val_accuracy.map(|v| (e.epoch as f64, v)))
        .collect();
    if !val_acc.is_empty() {
        acc.push(Series {
            label: "validation accuracy".into(),
            points: val_acc,
            color: RGBColor(220, 90, 30),
            markers: true,
        });
    }
    [
        Panel {
            title: format!("{title}: loss by iteration"),
            x_label: "iteration",
            series: loss,
            legend_low: false,
        },
        Panel {
            title: format!("{title}: accuracy by epoch"),
            x_label: "epoch",
            series: acc,
            legend_low: true,
        },
    ]
}

fn range(series: &[Series], axis: impl Fn(&(f64, f64)) -> f64, pad: f64) -> (f64, f64) {
    let vals = series.iter().flat_map(|s| s.points.iter().map(&axis));
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-6);
    (lo - span * pad, hi + span * pad)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let series = &panel.series;
    let (x0, x1) = range(series, |p| p.0, 0.02);
    let (y0, y1) = range(series, |p| p.1, 0.08);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label)
        // x is an iteration or an epoch: whole numbers, as few labels as there are epochs.
        .x_labels(((x1 - x0).round() as usize + 1).clamp(2, 10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        if s.markers {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .position(if panel.legend_low {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .draw()?;
    Ok(())
}

fn draw_all<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[Panel],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present()
}

/// Draws `panels` side by side into `png` and `svg` (either may be skipped with `None`).
pub fn write_panels(
    panels: &[Panel],
    png: Option<&Path>,
    svg: Option<&Path>,
) -> anyhow::Result<()> {
    register_font();
    let size = (CURVES_SIZE.0 * panels.len() as u32 / 2, CURVES_SIZE.1);
    if let Some(svg) = svg {
        let mut text = String::new();
        draw_all(
            SVGBackend::with_string(&mut text, size).into_drawing_area(),
            panels,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", svg.display()))?;
        relumax::fs::write_atomic(svg, text.as_bytes())?;
    }
    if let Some(png) = png {
        let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
        draw_all(
            BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(),
            panels,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw {}", png.display()))?;
        write_png(png, size, &rgb)?;
    }
    Ok(())
}

/// Encodes an RGB buffer as PNG and writes it atomically.
pub fn write_png(path: &Path, size: (u32, u32), rgb: &[u8]) -> anyhow::Result<()> {
    let bytes =
        encode_png(size, rgb).with_context(|| format!("cannot encode {}", path.display()))?;
    relumax::fs::write_atomic(path, &bytes)?;
    Ok(())
}

/// An RGB buffer of `size` (width, height) as PNG bytes.
pub fn encode_png(size: (u32, u32), rgb: &[u8]) -> anyhow::Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(size.0, size.1, rgb.to_vec())
        .context("image buffer has the wrong size")?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}
