//! `relumax serve`: a local web page to draw a digit on and watch the network read it.
//!
//! The page (`page/`, embedded in the binary) posts the drawing to `POST /api/predict` as the
//! person draws and shows the probabilities, the 28 x 28 image the network sees, and the
//! model's card (`GET /api/model`) with its feed-backward class images. `api.rs` answers
//! requests, `http.rs` bounds them, `card.rs` describes the model.

mod api;
mod card;
mod http;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use relumax::Mlp;

use super::common::{check_image_model, model_path};

/// The port `relumax serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7840;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model written by `relumax train` (or its run folder).
    #[arg(long, value_name = "FILE", required_unless_present = "run")]
    model: Option<PathBuf>,
    /// A run folder, e.g. runs/paper/2x2048-seed0: its model, configuration and test results.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    run: Option<PathBuf>,
    /// The address to listen on; anything but a loopback address makes the page reachable
    /// from other machines.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// The port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
}

/// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight and returns.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let path = match (&args.run, &args.model) {
        (Some(dir), _) => dir.join("model.safetensors"),
        (None, Some(model)) => model_path(model),
        (None, None) => anyhow::bail!("give --model or --run"),
    };
    let (model, metadata) = Mlp::load_with_metadata(&path)?;
    check_image_model(&model, &path)?;
    let card = card::Card::new(&model, &path, &metadata)?;
    let stop = super::interrupt_flag();
    let listener = http::bind(SocketAddr::new(args.host, args.port))?;
    let addr = listener.local_addr()?;
    if !args.host.is_loopback() {
        eprintln!(
            "warning: listening on {addr}, reachable from other machines (there is no \
             authentication)"
        );
    }
    outln!(
        "serving {} at http://{addr}/ (Ctrl-C stops)",
        path.display()
    );
    let app = Arc::new(api::App { model, card });
    http::serve(&listener, &app, &stop)?;
    eprintln!("stopped");
    Ok(())
}
