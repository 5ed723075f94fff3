//! The Python wheel's binary, `repozo-rs`: the same program as `repozo`
//! (`repozo::entry::main`), installed under another name beside ZODB's own
//! `bin/repozo` (docs/install.md).

fn main() -> std::process::ExitCode {
    repozo::entry::main(env!("CARGO_BIN_NAME"))
}
