//! The man page and the shell completions, generated from the clap
//! definition the binary parses with and documented with the text `-h`
//! prints, so the three cannot disagree (`--manpage`, `--completions`).
//!
//! `-h` is repozo's own hand-laid text ([`USAGE`]); each option's paragraph
//! is read back out of it here and attached to the option, rather than
//! written twice.

use std::io::{self, Write};

use clap::Command;
use roff::{bold, roman, Roff};

use crate::cli::{command, USAGE};

/// What `--completions` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

impl Shell {
    /// The shell named `name` (as `--completions` takes it).
    pub fn from_name(name: &str) -> Option<Shell> {
        match name {
            "bash" => Some(Shell::Bash),
            "zsh" => Some(Shell::Zsh),
            "fish" => Some(Shell::Fish),
            _ => None,
        }
    }
}

/// One place `-h` describes an option: under which mode, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Described {
    /// The mode of the "Options for ..." section ("" for the general part).
    mode: String,
    /// Its paragraphs, each joined into one line.
    paragraphs: Vec<String>,
    /// The value's name (`dir` of `-r dir / --repository=dir`).
    value: Option<String>,
}

/// What `-h` says, read back: each long option's descriptions in order, and
/// the paragraphs of each mode's section that are about no one option.
#[derive(Debug, Default)]
struct Usage {
    options: Vec<(String, Described)>,
    notes: Vec<(String, Vec<String>)>,
    exit_status: Vec<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Lines from `lines[*at]` on that belong to the paragraph block started
/// just before (deeper than `than`), as paragraphs.
fn block(lines: &[&str], at: &mut usize, than: usize) -> Vec<String> {
    let mut paragraphs = vec![String::new()];
    while *at < lines.len() {
        let line = lines[*at];
        if line.trim().is_empty() {
            let next = lines[*at..].iter().find(|l| !l.trim().is_empty());
            match next {
                Some(n) if indent(n) > than => {
                    paragraphs.push(String::new());
                    *at += 1;
                    continue;
                }
                _ => break,
            }
        }
        if indent(line) <= than {
            break;
        }
        let last = paragraphs.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(line.trim());
        *at += 1;
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs
}

/// The long options a heading such as `-r dir / --repository=dir` or
/// `--since=time / --until=time` names, and the value's name.
fn heading_names(heading: &str) -> (Vec<String>, Option<String>) {
    let mut longs = Vec::new();
    let mut value = None;
    for word in heading.split([' ', ',']).filter(|w| w.starts_with("--")) {
        let (name, v) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        longs.push(name.trim_start_matches("--").to_string());
        if let Some(v) = v {
            value = Some(v.to_string());
        }
    }
    (longs, value)
}

fn read_usage() -> Usage {
    let lines: Vec<&str> = USAGE.lines().collect();
    let mut usage = Usage::default();
    let mut mode = String::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        at += 1;
        if line.trim().is_empty() {
            continue;
        }
        if indent(line) == 0 {
            mode = line
                .strip_prefix("Options for ")
                .and_then(|m| m.strip_suffix(':'))
                .unwrap_or("")
                .to_string();
            if let Some(rest) = line.strip_prefix("Exit status: ") {
                usage.exit_status.push(rest.to_string());
            }
            continue;
        }
        let text = line.trim_start();
        if indent(line) == 4 && text.starts_with('-') {
            // "-B / --backup        Back up ..." or a heading alone.
            let (heading, first) = match text.find("  ") {
                Some(gap) => (&text[..gap], Some(text[gap..].trim())),
                None => (text, None),
            };
            // A two-column line's text may go on below it, deeper.
            let continued = lines.get(at).is_some_and(|l| !l.trim().is_empty());
            let mut paragraphs = block(&lines, &mut at, 4);
            if let Some(first) = first {
                match paragraphs.first_mut() {
                    Some(p) if continued => *p = format!("{first} {p}"),
                    _ => paragraphs.insert(0, first.to_string()),
                }
            }
            let (longs, value) = heading_names(heading);
            for (i, long) in longs.iter().enumerate() {
                // Options described together: the text once, with the first.
                let paragraphs = match i {
                    0 => paragraphs.clone(),
                    _ => vec![format!("See --{}.", longs[0])],
                };
                let described = Described {
                    mode: mode.clone(),
                    paragraphs,
                    value: value.clone(),
                };
                usage.options.push((long.clone(), described));
            }
        } else if !mode.is_empty() {
            at -= 1;
            let paragraphs = block(&lines, &mut at, 3);
            match usage.notes.iter_mut().find(|(m, _)| *m == mode) {
                Some((_, p)) => p.extend(paragraphs),
                None => usage.notes.push((mode.clone(), paragraphs)),
            }
        }
    }
    usage
}

/// The first sentence of `text`, cut at its first clause when long: the
/// one-line help that completions show beside each option.
fn summary(text: &str) -> &str {
    let sentence = match text.find(". ") {
        Some(end) => &text[..=end],
        None => text,
    };
    if sentence.len() <= 72 {
        return sentence;
    }
    [": ", "; ", " ("]
        .iter()
        .filter_map(|sep| sentence.find(sep))
        .filter(|&at| at >= 12)
        .min()
        .map_or(sentence, |at| &sentence[..at])
}

/// The parser's own command, with each option's `-h` text (from `usage`)
/// attached.
fn documented_command(bin_name: &str, usage: &Usage) -> Command {
    let about = USAGE
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map_or("", |(_, about)| about)
        .to_string();
    let mut cmd = command()
        .name(bin_name.to_string())
        .bin_name(bin_name.to_string())
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .mut_arg("stray", |a| a.hide(true));
    let ids: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let found: Vec<&Described> = usage
            .options
            .iter()
            .filter(|(long, _)| *long == id)
            .map(|(_, d)| d)
            .collect();
        let Some(first) = found.first() else {
            continue;
        };
        // "See --keep-full.": the summary of the option it points to.
        let lead = match first.paragraphs[0].strip_prefix("See --") {
            Some(other) => usage
                .options
                .iter()
                .find(|(l, _)| Some(l.as_str()) == other.strip_suffix('.'))
                .map_or(&first.paragraphs[0], |(_, d)| &d.paragraphs[0]),
            None => &first.paragraphs[0],
        };
        let short = summary(lead).to_string();
        let long = found
            .iter()
            .map(|d| {
                let text = d.paragraphs.join("\n\n");
                // -h says it by the section; the man page's one list must.
                if !d.mode.is_empty() {
                    format!("With {}: {text}", d.mode)
                } else {
                    text
                }
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        let value = found.iter().find_map(|d| d.value.clone());
        cmd = cmd.mut_arg(id.as_str(), |a| {
            let a = a.help(short).long_help(long);
            match value {
                Some(v) => a.value_name(v),
                None => a,
            }
        });
    }
    cmd
}

/// The synopsis lines: one per mode.
const SYNOPSIS: &[&str] = &[
    "-B -r dir -f file [-F] [-Q] [-z] [-k] [--blob-dir=dir] [--keep-full=N] [--keep-daily=N] [--keep-weekly=N] [--keep-monthly=N] [--dry-run] [-v] [--no-progress]",
    "-R -r dir [-o file] [-D date | --at=time | --at-tid=tid] [-F] [-Q] [-w] [--blob-dir=dir] [-v] [--no-progress]",
    "-V -r dir [-Q] [--deep] [-v] [--no-progress]",
    "--transactions -r dir [--since=time] [--until=time] [--json]",
    "-L -r dir [--json] [--max-age=duration]",
    "--prune -r dir [--keep-full=N] [--keep-daily=N] [--keep-weekly=N] [--keep-monthly=N] [--dry-run] [-v]",
    "-h | --version | --manpage | --completions=shell",
];

/// Write the man page (section 1) for the binary named `bin_name`.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_man(bin_name: &str, out: &mut dyn Write) -> io::Result<()> {
    let usage = read_usage();
    let man = clap_mangen::Man::new(documented_command(bin_name, &usage));
    // clap_mangen leaves the date empty, and roff drops an empty argument,
    // shifting the header's fields: the title line is ours.
    writeln!(
        out,
        ".TH {} 1 \"\" \"{} {}\" \"User Commands\"",
        bin_name.to_uppercase().replace('-', "\\-"),
        bin_name.replace('-', "\\-"),
        env!("CARGO_PKG_VERSION")
    )?;
    man.render_name_section(out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    for (i, line) in SYNOPSIS.iter().enumerate() {
        if i > 0 {
            roff.control("br", []);
        }
        roff.text([bold(bin_name), roman(format!(" {line}"))]);
    }
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(format!(
        "{bin_name} makes full and incremental backups of a ZODB FileStorage \
         (Data.fs), with the FileStorage index of each, and its blob files; \
         recovers the Data.fs (and blob directory) as of a date or a \
         transaction; and verifies, lists and prunes the repository. It reads \
         and writes the repositories of ZODB's own repozo script, whose \
         command lines it takes unchanged."
    ))]);
    roff.control("PP", []);
    roff.text([roman(
        "Exactly one mode is given: -B, -R, -V, --transactions, -L or --prune.",
    )]);
    roff.to_writer(out)?;

    man.render_options_section(out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["NOTES"]);
    for (mode, paragraphs) in &usage.notes {
        roff.control("SS", [mode.as_str()]);
        for (i, p) in paragraphs.iter().enumerate() {
            if i > 0 {
                roff.control("PP", []);
            }
            roff.text([roman(p.as_str())]);
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(usage.exit_status.join(" "))]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "The documentation in docs/ of the source, installed by the Debian \
         package in /usr/share/doc/repozo/docs/: the compatibility table \
         against ZODB's repozo, the repository format, standby recovery, \
         point-in-time recovery and the JSON schema of --list --json.",
    )]);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

/// Write the completion script of `shell` for the binary named `bin_name`.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_completions(shell: Shell, bin_name: &str, out: &mut dyn Write) -> io::Result<()> {
    use clap_complete::{generate, shells};
    let mut cmd = documented_command(bin_name, &read_usage());
    let mut buf = Vec::new();
    match shell {
        Shell::Bash => generate(shells::Bash, &mut cmd, bin_name, &mut buf),
        Shell::Zsh => generate(shells::Zsh, &mut cmd, bin_name, &mut buf),
        Shell::Fish => generate(shells::Fish, &mut cmd, bin_name, &mut buf),
    }
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_of_the_parser_has_its_usage_paragraph() {
        let longs: Vec<String> = read_usage().options.into_iter().map(|(l, _)| l).collect();
        for arg in command().get_arguments().filter(|a| !a.is_positional()) {
            let id = arg.get_id().as_str();
            assert!(
                longs.iter().any(|l| l == id),
                "--{id} is parsed but -h does not describe it"
            );
        }
        // And the other way: -h names nothing the parser lacks.
        for long in &longs {
            assert!(
                command().get_arguments().any(|a| a.get_id() == long),
                "-h describes --{long}, which the parser does not take"
            );
        }
    }

    #[test]
    fn paragraphs_are_read_back_whole() {
        let usage = read_usage();
        let get = |long: &str| -> Vec<&Described> {
            usage
                .options
                .iter()
                .filter(|(l, _)| l == long)
                .map(|(_, d)| d)
                .collect()
        };
        let repo = get("repository");
        assert_eq!(repo.len(), 1);
        assert_eq!(repo[0].value.as_deref(), Some("dir"));
        assert!(repo[0].paragraphs[0].starts_with("The repository directory"));
        assert!(repo[0].paragraphs[0].ends_with("in it."));
        let progress = get("no-progress");
        assert!(progress[0].paragraphs[0].starts_with("No progress line"));
        assert!(progress[0].paragraphs[0].ends_with("cron mails)."));
        let quick = get("quick");
        let modes: Vec<&str> = quick.iter().map(|d| d.mode.as_str()).collect();
        assert_eq!(modes, ["-B/--backup", "-R/--recover", "-V/--verify"]);
        let output = get("output");
        assert!(output[0].paragraphs.len() >= 2, "{output:?}");
        assert_eq!(get("keep-weekly")[0].value.as_deref(), Some("N"));
        assert_eq!(get("until")[0].value.as_deref(), Some("time"));
        assert!(usage
            .notes
            .iter()
            .any(|(m, p)| m == "-B/--backup" && p[0].starts_with("Each backup also writes")));
        assert!(usage.exit_status[0].starts_with("0 on success"));
    }
}
