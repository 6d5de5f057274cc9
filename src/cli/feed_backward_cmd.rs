//! `relumax feed-backward`: what each class looks like to a network (the paper's Fig. 9).

use std::path::PathBuf;

use clap::Args;
use relumax::inspect::Preimage;

use super::common::load_image_model;
use super::images::write_class_images;

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

pub fn run(args: &FeedBackwardArgs) -> anyhow::Result<()> {
    let model = load_image_model(&args.model)?;
    write_class_images(&model, args.method, &args.out)?;
    outln!("wrote {}", args.out.display());
    Ok(())
}
