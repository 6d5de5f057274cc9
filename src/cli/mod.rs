//! Command-line definitions and dispatch.

/// `outln!` for the commands' standard output. A closed pipe (`relumax data | head -1`)
/// ends the process quietly with 141, as SIGPIPE would for a C tool, instead of panicking
/// as `outln!` does.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod bench_cmd;
mod common;
mod data_cmd;
mod eval_cmd;
mod feed_backward_cmd;
mod images;
mod output;
mod paper_cmd;
mod plot;
mod predict_cmd;
mod progress;
mod report;
mod run;
mod run_dir;
mod serve;
mod side_by_side;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

/// Exit code for training that diverged (non-finite loss).
pub const EXIT_DIVERGED: u8 = 3;

/// Exit code after Ctrl-C (128 + SIGINT, as shells report it); SIGTERM gives 143 and SIGHUP
/// 129 ([`interrupted_exit_code`]).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The signals that stop a run gracefully: Ctrl-C, and what schedulers (Slurm, `timeout`)
/// and a closed terminal send.
#[cfg(unix)]
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];
#[cfg(not(unix))]
const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// The last stop signal received (0 before any).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// A stop signal this long after the first exits at once; sooner, it is taken as the same
/// request sent twice (`timeout` signals its child, then its whole process group).
const REPEAT_AFTER: Duration = Duration::from_millis(500);

/// The flag a stop signal (Ctrl-C, SIGTERM, SIGHUP) raises; installs the handlers on first use.
/// Training stops at the next step boundary, saves a checkpoint and cleans its temporary files;
/// a second signal, from [`REPEAT_AFTER`] on, exits at once (with 128 + its number).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        // If the handlers cannot be installed, the signals keep their default effect.
        if let Ok(mut signals) = signal_hook::iterator::Signals::new(STOP_SIGNALS) {
            let raised = flag.clone();
            let watch = move || {
                let mut first: Option<Instant> = None;
                for signal in signals.forever() {
                    match first {
                        None => {
                            first = Some(Instant::now());
                            RECEIVED.store(signal as usize, Ordering::SeqCst);
                            raised.store(true, Ordering::SeqCst);
                        }
                        Some(at) if at.elapsed() >= REPEAT_AFTER => {
                            signal_hook::low_level::exit(128 + signal)
                        }
                        Some(_) => {}
                    }
                }
            };
            let _ = std::thread::Builder::new()
                .name("relumax-signals".into())
                .spawn(watch);
        }
        flag
    })
    .clone()
}

/// The exit code of a run a stop signal ended: 128 + the signal's number (130 for Ctrl-C, 143
/// for SIGTERM, 129 for SIGHUP).
pub fn interrupted_exit_code() -> ExitCode {
    let signal = RECEIVED.load(Ordering::SeqCst);
    match u8::try_from(128 + signal) {
        Ok(code) if signal > 0 => ExitCode::from(code),
        _ => ExitCode::from(EXIT_INTERRUPTED),
    }
}

/// Train and study the ReLU + softmax MLPs of the MNIST paper, fast and reproducibly.
#[derive(Debug, Parser)]
#[command(
    name = "relumax",
    version,
    about,
    long_about = None,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reproduce the paper: train all ten configurations, write tables, figures and a report.
    Paper(paper_cmd::PaperArgs),
    /// Measure training speed per configuration against this machine's sgemm ceiling.
    Bench(bench_cmd::BenchArgs),
    /// Describe a dataset: counts, image shape, class histogram, checksum status.
    Data(DataArgs),
    /// Train one network and save its model, metrics and learning curves.
    Train(train_cmd::TrainArgs),
    /// Evaluate a saved model on a dataset's test split.
    Eval(eval_cmd::EvalArgs),
    /// Classify your own digit images (PNG or JPEG) with MNIST's preprocessing.
    Predict(predict_cmd::PredictArgs),
    /// Draw what each class looks like to a model, pushed back to the input space.
    FeedBackward(feed_backward_cmd::FeedBackwardArgs),
    /// Open a local web page to draw digits and watch the model read them.
    Serve(serve::ServeArgs),
}

/// Where the data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataOpt {
    /// Dataset folder holding the four standard IDX files, raw or .gz
    /// [default: the bundled MNIST]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    data: DataOpt,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Exit code when standard output is a closed pipe (128 + SIGPIPE).
const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes one line to standard output; see `outln!`.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Parses the command line (exiting with clap's message and code 2 when it cannot be parsed).
/// A value that starts with `-` is taken as the flag's value, so that `--seed -1` is refused
/// as a malformed `--seed` rather than as an unknown argument.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program's name first) as [`parse`] does, returning clap's error.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_subcommands(|sub| {
        sub.mut_args(|arg| {
            if arg.get_action().takes_values() {
                arg.allow_negative_numbers(true)
            } else {
                arg
            }
        })
    });
    Cli::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// Checks a parsed command line's values as its command will before any work, reading and
/// writing nothing: what exits 1 as out of range. The fuzz target `cli` drives it.
pub fn check(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Train(a) => a.check(),
        Command::Paper(a) => a.check(),
        Command::Bench(a) => a.configs().map(drop),
        Command::Data(_)
        | Command::Eval(_)
        | Command::Predict(_)
        | Command::FeedBackward(_)
        | Command::Serve(_) => Ok(()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // relumax parallelises products itself (its threads over single-threaded calls); OpenBLAS's own
    // threads would only compete for the cores. `bench` raises it for its sgemm ceiling.
    relumax::openblas::set_blas_threads(1);
    check(&cli)?;
    match cli.command {
        Command::Data(a) => data_cmd::run(&a.data, a.json),
        Command::Bench(a) => bench_cmd::run(&a),
        Command::Train(a) => return train_cmd::run(&a),
        Command::Eval(a) => eval_cmd::run(&a),
        Command::Paper(a) => return paper_cmd::run(&a),
        Command::FeedBackward(a) => feed_backward_cmd::run(&a),
        Command::Serve(a) => serve::run(&a),
        Command::Predict(a) => {
            // Every image is tried; a failed one makes the exit status non-zero at the end.
            return Ok(if predict_cmd::run(&a)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

/// The one-line message for an error: its chain joined by ": ", with the library's
/// configuration fields named as their flags (`invalid --val-fraction: ...`,
/// `... learning rate (--lr)`).
pub fn message(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err
        .chain()
        .map(|cause| match cause.downcast_ref::<relumax::Error>() {
            Some(relumax::Error::Config { field, reason }) => {
                format!("invalid --{}: {reason}", field.replace('_', "-"))
            }
            Some(e @ relumax::Error::Diverged { .. }) => e.to_string().replace("(lr)", "(--lr)"),
            _ => cause.to_string(),
        })
        .collect();
    parts.join(": ")
}

/// The exit code for an error: [`EXIT_DIVERGED`] for diverged training, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<relumax::Error>() {
        Some(relumax::Error::Diverged { .. }) => EXIT_DIVERGED,
        _ => 1,
    }
}
