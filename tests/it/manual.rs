//! The man page and the completion scripts that `--manpage` and
//! `--completions` write (and the packages install) against `-h`: every
//! option `-h` names is in each, as a user of that shell or of `man` sees it.

use std::collections::BTreeSet;
use std::process::Command;

fn repozo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "repozo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The options `-h` names, long (`--deep`) and short (`-B`), wherever it
/// names them: beside a mode, in a heading, in the prose.
fn options_in_help() -> (BTreeSet<String>, BTreeSet<char>) {
    let help = repozo(&["-h"]);
    let mut longs = BTreeSet::new();
    let mut shorts = BTreeSet::new();
    let bytes = help.as_bytes();
    for (i, _) in help.match_indices('-') {
        let before = if i == 0 { b' ' } else { bytes[i - 1] };
        if before.is_ascii_alphanumeric() || before == b'-' || before == b'[' {
            continue;
        }
        let rest = &help[i + 1..];
        if let Some(long) = rest.strip_prefix('-') {
            let taken: String = long
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            let name = taken.trim_end_matches('-');
            // "--keep-*" names the four rules, each listed on its own.
            if name.len() > 1 && !long[taken.len()..].starts_with('*') {
                longs.insert(name.to_string());
            }
        } else {
            let mut chars = rest.chars();
            if let (Some(c), next) = (chars.next(), chars.next()) {
                let ends = next.is_none_or(|n| !n.is_ascii_alphanumeric());
                if c.is_ascii_alphabetic() && ends {
                    shorts.insert(c);
                }
            }
        }
    }
    (longs, shorts)
}

#[test]
fn help_names_what_the_tests_below_rely_on() {
    let (longs, shorts) = options_in_help();
    for long in [
        "backup",
        "recover",
        "repository",
        "keep-monthly",
        "at-tid",
        "completions",
    ] {
        assert!(longs.contains(long), "--{long} not found in -h: {longs:?}");
    }
    for short in ['B', 'R', 'V', 'L', 'r', 'f', 'o', 'D', 'w', 'k', 'z'] {
        assert!(
            shorts.contains(&short),
            "-{short} not found in -h: {shorts:?}"
        );
    }
}

#[test]
fn the_man_page_names_every_option() {
    // roff writes a hyphen as `\-`; man shows it as `-`.
    let man = repozo(&["--manpage"]).replace("\\-", "-");
    assert!(man.contains(".TH REPOZO 1 \"\" \"repozo "), "{man}");
    // Each option as an entry of OPTIONS (in bold, with its paragraph), not
    // merely mentioned in the synopsis or another option's text.
    let options = man
        .split_once(".SH OPTIONS")
        .and_then(|(_, rest)| rest.split(".SH ").next())
        .expect("an OPTIONS section");
    let (longs, shorts) = options_in_help();
    for long in &longs {
        let entry = format!("\\fB--{long}\\fR");
        assert!(options.contains(&entry), "man page lacks {entry}");
    }
    for short in &shorts {
        let entry = format!("\\fB-{short}\\fR");
        assert!(options.contains(&entry), "man page lacks {entry}");
    }
}

#[test]
fn the_completions_name_every_option() {
    let (longs, shorts) = options_in_help();
    let bash = repozo(&["--completions", "bash"]);
    let zsh = repozo(&["--completions", "zsh"]);
    let fish = repozo(&["--completions=fish"]);
    let bash_words: BTreeSet<&str> = bash
        .lines()
        .filter_map(|l| l.trim().strip_prefix("opts=\""))
        .find(|words| words.starts_with('-'))
        .expect("bash: the option list")
        .trim_end_matches('"')
        .split(' ')
        .collect();
    // zsh: '-B[...]', '*-B[...]' (a counted flag), '-r+[...]', '--file=[...]'.
    let in_zsh = |dashed: &str| {
        ["'", "'*"].iter().any(|pre| {
            ["[", "+[", "=["]
                .iter()
                .any(|post| zsh.contains(&format!("{pre}{dashed}{post}")))
        })
    };
    for long in &longs {
        let dashed = format!("--{long}");
        assert!(bash_words.contains(dashed.as_str()), "bash lacks {dashed}");
        assert!(in_zsh(&dashed), "zsh lacks {dashed}");
        assert!(
            fish.contains(&format!(" -l {long} ")),
            "fish lacks {dashed}"
        );
    }
    for short in &shorts {
        let dashed = format!("-{short}");
        assert!(bash_words.contains(dashed.as_str()), "bash lacks {dashed}");
        assert!(in_zsh(&dashed), "zsh lacks {dashed}");
        assert!(
            fish.contains(&format!(" -s {short} ")),
            "fish lacks {dashed}"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .args(["--completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_full_stdout_is_an_error_and_a_closed_pipe_is_not() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .arg("--manpage")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writing to stdout"), "{err}");

    // `repozo --completions bash | head -1`: the reader is gone before the
    // writing ends (here before it starts).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_repozo"))
        .args(["--completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn completion_offers_file_names_only_for_paths() {
    let fish = repozo(&["--completions", "fish"]);
    // fish: `-F` completes file names, `-f` none; directories by function.
    let line = |long: &str| {
        fish.lines()
            .find(|l| l.contains(&format!(" -l {long} ")))
            .unwrap_or_else(|| panic!("fish has no line for --{long}"))
            .to_string()
    };
    for long in ["file", "output"] {
        assert!(line(long).ends_with(" -r -F"), "{}", line(long));
    }
    for long in ["repository", "blob-dir"] {
        assert!(
            line(long).contains("__fish_complete_directories"),
            "{}",
            line(long)
        );
    }
    for long in [
        "date",
        "at",
        "at-tid",
        "since",
        "until",
        "max-age",
        "keep-full",
        "keep-daily",
        "keep-weekly",
        "keep-monthly",
    ] {
        assert!(line(long).ends_with(" -r -f"), "{}", line(long));
    }
}
