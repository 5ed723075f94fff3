//! The `repozo` binary: all of it is `repozo::entry::main`, which
//! `python/src/main.rs` runs too, as `repozo-rs` for the Python wheel.

fn main() -> std::process::ExitCode {
    repozo::entry::main(env!("CARGO_BIN_NAME"))
}
