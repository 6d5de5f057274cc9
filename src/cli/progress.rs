//! Training progress on stderr: a bar with samples/s and running loss while a terminal is
//! attached, nothing otherwise (the commands print one line per epoch themselves).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use relumax::Event;

/// A progress display for one training run.
pub struct Progress {
    bar: Option<ProgressBar>,
    batch_size: usize,
}

impl Progress {
    /// A bar labelled `label`, shown only when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, label: &str, batch_size: usize) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} epoch {msg} [{bar:30}] {human_pos}/{human_len} samples, {rate}, eta {eta}",
                )
                .expect("static template")
                .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} samples/s", state.per_sec());
                })
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress { bar, batch_size }
    }

    /// Updates the bar for a training event.
    pub fn update(&self, event: &Event<'_>) {
        let Some(bar) = &self.bar else { return };
        if let Event::Step {
            epoch,
            step,
            steps,
            running_loss,
            ..
        } = event
        {
            // Positions count samples, so the bar's rate reads in samples/s.
            let batch = self.batch_size as u64;
            if *step == 1 {
                bar.reset();
                bar.set_length(*steps as u64 * batch);
            }
            bar.set_position(*step as u64 * batch);
            if step % 25 == 1 || step == steps {
                bar.set_message(format!("{epoch} loss {running_loss:.4}"));
            }
        }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| outln!("{line}")),
            None => outln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
