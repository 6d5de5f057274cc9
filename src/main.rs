//! The `relumax` command line: a thin layer over the library's public API.
//!
//! Only this binary prints. Errors are printed as one line (`error: ` and the `{:#}` chain) and
//! mapped to exit codes: 1 for any failure, 2 for bad usage (clap), 3 for diverged training.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
