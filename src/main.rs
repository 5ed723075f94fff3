//! The `repozo` binary: parse the flags, run the plan, map the result to an
//! exit status (0 success, 1 any failure, as Python repozo).

use std::io::Write;
use std::process::ExitCode;

use repozo::cli::{Plan, RawArgs, USAGE};

/// The name this binary is installed under: `repozo`, or `repozo-rs` from
/// the Python wheel (python/Cargo.toml builds this same file).
const BIN: &str = env!("CARGO_BIN_NAME");

fn main() -> ExitCode {
    let checked = match RawArgs::parse(std::env::args_os().skip(1)).and_then(Plan::from_raw) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{BIN}: {e}");
            eprintln!("Try '{BIN} --help' for more information.");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    let printed = match checked.plan {
        // A closed pipe after -h is no error worth a status (as before).
        Plan::Help => {
            return out
                .write_all(USAGE.as_bytes())
                .map_or(ExitCode::SUCCESS, |()| ExitCode::SUCCESS)
        }
        Plan::Version => writeln!(out, "{BIN} {}", env!("CARGO_PKG_VERSION")),
        Plan::Manpage => repozo::manual::write_man(BIN, &mut out),
        Plan::Completions(shell) => repozo::manual::write_completions(shell, BIN, &mut out),
        _ => return run(&checked),
    };
    match printed.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `repozo --manpage | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{BIN}: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(checked: &repozo::cli::Checked) -> ExitCode {
    match repozo::run(checked) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
