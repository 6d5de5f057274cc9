//! Any command line: clap's parsing of relumax's flags, then the checks each command makes
//! of their values before any work, answer with an error, never a panic. Arguments are the
//! input split at NUL bytes (the first is the program's name).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_macros)]
#[path = "../../src/cli/mod.rs"]
mod cli;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = std::iter::once("relumax").chain(text.split('\0'));
    if let Ok(parsed) = cli::try_parse_from(args) {
        let _ = cli::check(&parsed);
    }
});
