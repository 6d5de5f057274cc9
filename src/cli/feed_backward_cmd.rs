//! `relumax feed-backward`: what each class looks like to a network (the paper's Fig. 9).

use std::path::{Path, PathBuf};

use clap::Args;
use relumax::{Mlp, Preimage, class_images};

use super::images::write_panel_grid;
use super::predict_cmd::load_image_model;

#[derive(Debug, Args)]
pub struct FeedBackwardArgs {
    /// A model written by `relumax train` (or its run folder).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The PNG to write.
    #[arg(long, value_name = "FILE", default_value = "classes.png")]
    out: PathBuf,
    /// transpose (the paper's: through the transposed weights) or pinv (minimum-norm
    /// preimage through each layer's pseudo-inverse).
    #[arg(long, value_name = "METHOD", default_value = "transpose")]
    method: Preimage,
}

/// Writes the class-image grid of `model` to `out`.
pub fn write(model: &Mlp, method: Preimage, out: &Path) -> anyhow::Result<()> {
    let images = class_images(model, method)?;
    write_panel_grid(&images, relumax::FRAME, 5, out)
}

pub fn run(args: &FeedBackwardArgs) -> anyhow::Result<()> {
    let model = load_image_model(&args.model)?;
    write(&model, args.method, &args.out)?;
    outln!("wrote {}", args.out.display());
    Ok(())
}
