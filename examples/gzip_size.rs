//! How `repozo -V -Q` inflates a gzip file: prints `size=N split=true`
//! when the file was inflated on two threads ([`repozo::gzip_size`]),
//! `split=false` when one thread did it all, and `none` when that way does
//! not apply (the usual reader is used then). For checking that Python
//! repozo's `.fsz` files take the fast way:
//! `cargo run --release --example gzip_size -- FILE.fsz [MIN]`, where MIN
//! is the smallest file to split (default: what `-V -Q` uses, 4 MiB).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: gzip_size FILE [MIN]");
        return ExitCode::from(2);
    };
    let min = match args.next().map(|m| m.to_string_lossy().parse::<u64>()) {
        None => repozo::codec::gzip_size::MIN_SPLIT,
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            eprintln!("MIN: {e}");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", path.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    match repozo::codec::gzip_size::inflated_size(&file, min) {
        Some(found) => println!("size={} split={}", found.size, found.split),
        None => println!("none"),
    }
    ExitCode::SUCCESS
}
