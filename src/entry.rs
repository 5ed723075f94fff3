//! What the binaries run: parse the flags, run the plan, map the result to
//! an exit status (0 success, 1 any failure, as Python repozo).
//!
//! Here rather than in `src/main.rs` so that each binary is a two-line
//! file inside its own package: `src/main.rs` (`repozo`) and
//! `python/src/main.rs` (`repozo-rs`, the wheel's). A `[[bin]]` whose
//! source lies outside its package is dropped from the source distribution
//! maturin makes, which then does not build (docs/install.md).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Checked, Plan, RawArgs, USAGE};

/// Run repozo with the process's arguments, naming itself `bin` (the name
/// the binary was built under) in usage errors, `--version`, the man page
/// and the completion scripts.
#[must_use]
pub fn main(bin: &str) -> ExitCode {
    let checked = match RawArgs::parse(std::env::args_os().skip(1)).and_then(Plan::from_raw) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{bin}: {e}");
            eprintln!("Try '{bin} --help' for more information.");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    let printed = match checked.plan {
        Plan::Help => {
            // A closed pipe after -h is no error worth a status (as before).
            let usage = USAGE.replacen("Usage: repozo ", &format!("Usage: {bin} "), 1);
            let _ = out.write_all(usage.as_bytes());
            return ExitCode::SUCCESS;
        }
        Plan::Version => writeln!(out, "{bin} {}", env!("CARGO_PKG_VERSION")),
        Plan::Manpage => crate::manual::write_man(bin, &mut out),
        Plan::Completions(shell) => crate::manual::write_completions(shell, bin, &mut out),
        _ => return run(&checked),
    };
    match printed.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `repozo --manpage | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{bin}: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(checked: &Checked) -> ExitCode {
    match crate::run(checked) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
