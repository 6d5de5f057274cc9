//! The `relumax` command line: a thin layer over the library's public API.
//!
//! Only this binary prints. Errors are printed as one line (`error: ` and the `{:#}` chain) and
//! mapped to exit codes: 2 for a command line that does not parse (an unknown flag, a value
//! that is not of its flag's type), 1 for any other failure (including a well-formed value out
//! of range), 3 for diverged training.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::message(&err));
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
