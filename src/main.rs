//! The `repozo` binary: parse the flags, run the plan, map the result to an
//! exit status (0 success, 1 any failure, as Python repozo).

use std::io::Write;
use std::process::ExitCode;

use repozo::cli::{Plan, RawArgs, USAGE};

fn main() -> ExitCode {
    let checked = match RawArgs::parse(std::env::args_os().skip(1)).and_then(Plan::from_raw) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("repozo: {e}");
            eprintln!("Try 'repozo --help' for more information.");
            return ExitCode::from(1);
        }
    };
    if matches!(checked.plan, Plan::Help) {
        let _ = std::io::stdout().write_all(USAGE.as_bytes());
        return ExitCode::SUCCESS;
    }
    if matches!(checked.plan, Plan::Version) {
        println!("repozo {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match repozo::run(&checked) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
