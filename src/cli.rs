//! The command line: repozo's options, read in two stages.
//!
//! [`RawArgs`] holds the flags as given (clap does the getopt work: bundled
//! short flags such as `-BQzr DIR`, `--opt=value` and `--opt value`, unique
//! prefixes of long options). [`Plan::from_raw`] then applies repozo's rules
//! (one mode, a non-empty `-r` required, `-f` for `-B`, options that do not
//! apply are ignored with a note under `-v`) before anything touches the
//! disk.

use clap::{Arg, ArgAction, ArgMatches, Command, ValueHint};

use crate::commands::backup::BackupOptions;
use crate::commands::list::{parse_duration, ListOptions};
use crate::commands::prune::{PruneOptions, Retention};
use crate::commands::recover::{PointInTime, RecoverOptions};
use crate::commands::transactions::TransactionsOptions;
use crate::commands::verify::VerifyOptions;
use crate::manual::Shell;
use crate::repository::{parse_date, parse_utc};

/// The usage text `-h` prints.
pub const USAGE: &str = "\
repozo: incremental and full backups of a ZODB FileStorage (Data.fs) and its index

Usage: repozo [options]

Exactly one of these modes must be given:

    -B / --backup        Back up a Data.fs into the repository.
    -R / --recover       Rebuild a Data.fs from the repository.
    -V / --verify        Check the repository's files against its .dat log.
    --transactions       List the transactions the repository holds.
    -L / --list          List the backups, with a summary and a health check.
    --prune              Apply the retention rules (--keep-*, as for -B) alone.

    -v / --verbose       Say what is done, on stderr.
    --no-progress        No progress line (shown by -B, -R and -V only when
                         stderr is a terminal: never in cron mails).
    -h / --help          Print this text and exit.
    --version            Print the version and exit.
    --manpage            Print the man page (roff) and exit.
    --completions=shell  Print the completion script for bash, zsh or fish
                         and exit.

    -r dir / --repository=dir
        The repository directory holding the backup files (required, not
        empty; it must already exist). Do not edit or add files in it.

Options for -B/--backup:
    -f file / --file=file
        The Data.fs to back up (required).
    -F / --full
        Make a full backup even when an incremental one is possible.
    -Q / --quick
        Decide between full and incremental by the md5 of the range the last
        .dat line names, instead of comparing the whole repository with the
        start of Data.fs. Cheaper, and a little less certain.
    -z / --gzip
        Compress the backup files (.fsz, .deltafsz).
    -k / --kill-old-on-full
        After a full backup, remove older full and incremental backups and
        their .dat and .index files.
    --blob-dir=dir
        Also back up the blob files of the backed-up Data.fs range from this
        ZODB blob directory: each blob file is stored once in the
        repository's blobs/ folder, and each backup lists the ones it needs
        in YYYY-MM-DD-hh-mm-ss.blobs. A blob file missing from dir is named
        on stderr and recorded; the backup completes. A chain with a backup
        made without --blob-dir is followed by a full backup.

    --keep-full=N, --keep-daily=N, --keep-weekly=N, --keep-monthly=N
        After the backup, remove the chains (a full backup and its
        increments) these rules do not keep: the N newest; the newest of
        each of the N most recent days, weeks (from Monday), months that
        have one (a chain counts for the date of its newest backup). The
        rules combine; the newest chain is always kept. A chain goes
        newest file first, its .dat last; blob files no remaining backup
        needs go too. Not applied when blob files of this backup were
        missing.
    --dry-run
        With the rules: print what would be removed, remove nothing.

    Each backup also writes YYYY-MM-DD-hh-mm-ss.index, the FileStorage index
    of Data.fs up to the backed-up position. A backup is never named before
    the newest one in the repository: a second backup in the same second
    waits for the next second, and a clock that went back is refused. A
    chain that cannot be continued (a damaged backup file or .dat line) is
    followed by a full backup, with a line on stderr saying why.

Options for -R/--recover:
    -D str / --date=str
        Recover the state as of this UTC time: yyyy-mm-dd[-hh[-mm[-ss]]].
        Backups whose name sorts after it are not used, so a backup taken on
        a day is not included by that day's plain date. Default: now.
        A number N instead: the state as of the N-th newest backup, 0 being
        the newest (counting every backup file of the repository by name).
    --at=time
        Recover the state as of the last transaction committed at or
        before this UTC time (to the microsecond, as --transactions shows
        it), even inside a backup file: 2024-03-05T14:02:59.250000Z (ISO
        8601; an offset is converted to UTC, no zone means UTC) or
        yyyy-mm-dd[-hh[-mm[-ss]]]. The oldest chain holding it is used.
    --at-tid=tid
        Recover up to and including this transaction (16 hex digits, 0x
        optional, as --transactions shows it); an error if the repository
        does not hold it. --at, --at-tid and -D exclude each other.
    -o filename / --output=filename
        Write the recovered Data.fs here (through filename.part, renamed
        when complete) and install the backup's index as filename.index.
        A symbolic link is followed: its target is replaced, the link kept.
        A device or pipe is refused unless it is stdout itself; so is a
        file in the repository. Default: stdout, with no index.

        When filename exists and holds the state of a backup of the same
        chain (a standby recovered before), it is brought to the date in
        place: the missing backups are appended, or, for an earlier date,
        it is cut back. Its index is removed first and installed again at
        the end; filename.recovering marks the work until then, and a
        killed run is finished by the next. Any doubt (another length,
        other bytes, another chain, other hard links to the file, another
        process reading it) and it is recovered in full; -v says why.
        An existing filename whose ZODB lock (filename.lock) is held, by a
        running ZODB or another recovery, or that another process has open
        for writing, is refused, -F or not.
    -F / --full
        Always recover in full, never in place.
    -Q / --quick
        Before recovering in place, check only the md5 of the last .dat
        range the file keeps, not of every one (a change to the earlier
        bytes then goes unnoticed).
    -w / --with-verify
        Check each file's size and md5 against the .dat log while recovering;
        on a mismatch the output is left untouched (in place: cut back to
        the end of the last whole backup it held, without its index).
    --blob-dir=dir
        With -o: make dir hold exactly the blob files of the recovered state
        (built beside it, then swapped into place; in place, the blob files
        of the appended backups are added and those of the cut ones
        removed). Every backup used must have been made with --blob-dir,
        unless its range holds no blob.

Options for --transactions:
    --since=time / --until=time
        Only the transactions committed at or after / at or before this UTC
        time (forms as for --at).
    --json
        One JSON object a line: tid, time, user, description, size (bytes,
        trailer included), records, file (the backup file holding it),
        offset and end (where it starts and ends in the Data.fs).

    Each transaction is listed once, oldest first: tid, UTC time, size,
    data records, backup file, user and description (the last two as JSON
    strings). Plain backup files are read header to header; no pickle is
    read.

Options for -L/--list:
    --json
        One JSON document (docs/json.md) instead of the text.
    --max-age=duration
        A monitoring check: exit 1 with one line on stderr when the newest
        backup is older than this (26h, 8d: a number and s, m, h, d or w)
        or the health check finds a problem; else one line on stdout.

    The backups are numbered as -D N takes them (0 is the newest) and
    grouped by chain, each with its kind, compression, Data.fs range (from
    the .dat log), size, index and blob files; then the bytes on disk, the
    newest backup and its age, the oldest state that can be recovered, and
    the health: sizes and presence as -V -Q checks them, and what an
    interrupted run left for the next backup to repair. Nothing is hashed.

Options for -V/--verify:
    -Q / --quick
        Check file sizes only, not md5 checksums.
    --deep
        Also read the chain as one FileStorage, in the same pass: every
        transaction complete and well formed, every backup file ending on a
        transaction boundary, transaction ids increasing, each backup's
        .index the index of the chain up to its end, each blob manifest the
        blob records of its range. Catches what md5 cannot: a backup of a
        Data.fs already damaged, a .dat rewritten to match a changed file,
        a wrong .index.

    When the chain's backups hold blob files, each one is checked too (its
    size, and its md5 unless -Q), and a blob that was missing when it was
    backed up is an error.

Exit status: 0 on success, 1 on any error (one line on stderr).
";

/// The flags as given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawArgs {
    pub(crate) backup: u8,
    pub(crate) recover: u8,
    pub(crate) verify: u8,
    pub(crate) verbose: bool,
    pub(crate) help: bool,
    pub(crate) repository: Option<String>,
    pub(crate) file: Option<std::ffi::OsString>,
    pub(crate) full: bool,
    pub(crate) quick: bool,
    pub(crate) gzip: bool,
    pub(crate) kill_old: bool,
    pub(crate) date: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) with_verify: bool,
    pub(crate) blob_dir: Option<std::ffi::OsString>,
    pub(crate) version: bool,
    pub(crate) list: bool,
    pub(crate) max_age: Option<String>,
    pub(crate) prune: bool,
    pub(crate) deep: bool,
    pub(crate) no_progress: bool,
    pub(crate) dry_run: bool,
    pub(crate) keep: [Option<String>; 4],
    pub(crate) transactions: bool,
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) json: bool,
    pub(crate) at: Option<String>,
    pub(crate) at_tid: Option<String>,
    pub(crate) manpage: bool,
    pub(crate) completions: Option<String>,
    pub(crate) stray: Vec<String>,
}

/// A usage error: the message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The parser: repozo's flags, each as `-h` describes it (the man page and
/// the completions are made from it, see `manual`).
pub(crate) fn command() -> Command {
    let flag = |id: &'static str, short: char, long: &'static str| {
        Arg::new(id)
            .short(short)
            .long(long)
            .action(ArgAction::SetTrue)
    };
    let count = |id: &'static str, short: char, long: &'static str| {
        Arg::new(id)
            .short(short)
            .long(long)
            .action(ArgAction::Count)
    };
    let value = |id: &'static str, short: char, long: &'static str| {
        Arg::new(id)
            .short(short)
            .long(long)
            .num_args(1)
            .allow_hyphen_values(true)
            .action(ArgAction::Set)
            // Not a file name, unless said otherwise below: completion
            // offers none for a date, a tid or a count.
            .value_hint(ValueHint::Other)
    };
    let long_flag = |id: &'static str| Arg::new(id).long(id).action(ArgAction::SetTrue);
    let long_value = |id: &'static str| {
        Arg::new(id)
            .long(id)
            .num_args(1)
            .allow_hyphen_values(true)
            .action(ArgAction::Set)
            .value_hint(ValueHint::Other)
    };
    Command::new("repozo")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .infer_long_args(true)
        .args_override_self(true)
        .arg(count("backup", 'B', "backup"))
        .arg(count("recover", 'R', "recover"))
        .arg(count("verify", 'V', "verify"))
        .arg(flag("verbose", 'v', "verbose"))
        .arg(flag("help", 'h', "help"))
        .arg(value("repository", 'r', "repository").value_hint(ValueHint::DirPath))
        .arg(
            value("file", 'f', "file")
                .value_parser(clap::value_parser!(std::ffi::OsString))
                .value_hint(ValueHint::FilePath),
        )
        .arg(flag("full", 'F', "full"))
        .arg(flag("quick", 'Q', "quick"))
        .arg(flag("gzip", 'z', "gzip"))
        .arg(flag("kill-old-on-full", 'k', "kill-old-on-full"))
        .arg(value("date", 'D', "date"))
        .arg(value("output", 'o', "output").value_hint(ValueHint::FilePath))
        .arg(flag("with-verify", 'w', "with-verify"))
        .arg(
            Arg::new("blob-dir")
                .long("blob-dir")
                .num_args(1)
                .allow_hyphen_values(true)
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(std::ffi::OsString))
                .value_hint(ValueHint::DirPath),
        )
        .arg(long_flag("version"))
        .arg(
            Arg::new("list")
                .short('L')
                .long("list")
                .action(ArgAction::SetTrue),
        )
        .arg(long_value("max-age"))
        .arg(long_flag("prune"))
        .arg(long_flag("deep"))
        .arg(long_flag("no-progress"))
        .arg(long_flag("dry-run"))
        .arg(long_value("keep-full"))
        .arg(long_value("keep-daily"))
        .arg(long_value("keep-weekly"))
        .arg(long_value("keep-monthly"))
        .arg(long_flag("transactions"))
        .arg(long_value("since"))
        .arg(long_value("until"))
        .arg(long_flag("json"))
        .arg(long_value("at"))
        .arg(long_value("at-tid"))
        .arg(long_flag("manpage"))
        .arg(
            long_value("completions")
                .value_name("shell")
                .value_parser(["bash", "zsh", "fish"]),
        )
        .arg(Arg::new("stray").num_args(0..).action(ArgAction::Append))
}

impl RawArgs {
    /// Parse `args` (without the program name).
    ///
    /// # Errors
    /// An unknown or ambiguous option, or an option missing its value.
    pub fn parse<I, S>(args: I) -> Result<RawArgs, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("repozo"))
            .chain(args.into_iter().map(Into::into).map(python_prefix));
        let m = command()
            .try_get_matches_from(argv)
            .map_err(|e| UsageError(clap_reason(&e)))?;
        Ok(RawArgs::from_matches(&m))
    }

    fn from_matches(m: &ArgMatches) -> RawArgs {
        let s = |id: &str| m.get_one::<String>(id).cloned();
        RawArgs {
            backup: m.get_count("backup"),
            recover: m.get_count("recover"),
            verify: m.get_count("verify"),
            verbose: m.get_flag("verbose"),
            help: m.get_flag("help"),
            repository: s("repository"),
            file: m.get_one::<std::ffi::OsString>("file").cloned(),
            full: m.get_flag("full"),
            quick: m.get_flag("quick"),
            gzip: m.get_flag("gzip"),
            kill_old: m.get_flag("kill-old-on-full"),
            date: s("date"),
            output: s("output"),
            with_verify: m.get_flag("with-verify"),
            blob_dir: m.get_one::<std::ffi::OsString>("blob-dir").cloned(),
            version: m.get_flag("version"),
            list: m.get_flag("list"),
            max_age: s("max-age"),
            prune: m.get_flag("prune"),
            deep: m.get_flag("deep"),
            no_progress: m.get_flag("no-progress"),
            dry_run: m.get_flag("dry-run"),
            keep: ["keep-full", "keep-daily", "keep-weekly", "keep-monthly"].map(s),
            transactions: m.get_flag("transactions"),
            since: s("since"),
            until: s("until"),
            json: m.get_flag("json"),
            at: s("at"),
            at_tid: s("at-tid"),
            manpage: m.get_flag("manpage"),
            completions: s("completions"),
            stray: m
                .get_many::<String>("stray")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// The prefixes Python repozo's getopt took as unique that options of ours
/// made ambiguous, spelled out: `--b` (`--backup`, before `--blob-dir`),
/// `--d` (`--date`, before `--deep` and `--dry-run`) and `--k`
/// (`--kill-old-on-full`, before `--keep-*`), so that a cron line written
/// for repozo keeps its meaning.
fn python_prefix(arg: std::ffi::OsString) -> std::ffi::OsString {
    let Some(text) = arg.to_str() else {
        return arg;
    };
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (text, None),
    };
    let long = match name {
        "--b" => "--backup",
        "--d" => "--date",
        "--k" => "--kill-old-on-full",
        _ => return arg,
    };
    match value {
        Some(value) => format!("{long}={value}").into(),
        None => long.into(),
    }
}

/// A tid as `--at-tid` takes it: 16 hex digits, `0x` optional.
fn parse_tid(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid tid {s:?}: expected 16 hex digits, as --transactions shows (0x03f7048afccccccc)"
        ));
    }
    u64::from_str_radix(digits, 16).map_err(|e| format!("invalid tid {s:?}: {e}"))
}

/// clap's message without its own "error:" prefix, usage and tips.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let mut reason = first.trim_start_matches("error: ").to_string();
    // "--completions tcsh": say which values there are.
    if let Some(values) = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("[possible values:"))
    {
        reason.push(' ');
        reason.push_str(values);
    }
    reason
}

/// A checked command.
#[derive(Debug, Clone)]
pub enum Plan {
    /// `-h`: print the usage.
    Help,
    /// `--version`: print the version.
    Version,
    /// `--manpage`: print the man page.
    Manpage,
    /// `--completions`: print a shell's completion script.
    Completions(Shell),
    /// `-B`.
    Backup(BackupOptions),
    /// `-R`.
    Recover(RecoverOptions),
    /// `-V`.
    Verify(VerifyOptions),
    /// `--transactions`.
    Transactions(TransactionsOptions),
    /// `-L`, `--max-age`.
    List(ListOptions),
    /// `--prune`.
    Prune(PruneOptions),
}

/// A plan, whether `-v` was given, and notes about ignored options.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What to do.
    pub plan: Plan,
    pub(crate) verbose: bool,
    /// A progress line on a terminal (not `--no-progress`).
    pub(crate) progress: bool,
    /// repozo's "--x option is ignored in y mode" notes, shown under `-v`.
    pub(crate) notes: Vec<String>,
}

impl Plan {
    /// Apply repozo's rules to the raw flags.
    ///
    /// # Errors
    /// No mode or more than one, no `-r` (or an empty one), `-B` without
    /// `-f`, stray arguments, a `-D` that is not a date.
    pub fn from_raw(raw: RawArgs) -> Result<Checked, UsageError> {
        let mut notes = Vec::new();
        let verbose = raw.verbose;
        let generate = match &raw.completions {
            Some(shell) => Shell::from_name(shell).map(Plan::Completions),
            None if raw.manpage => Some(Plan::Manpage),
            None => None,
        };
        if raw.help || raw.version || generate.is_some() {
            let plan = match generate {
                _ if raw.help => Plan::Help,
                _ if raw.version => Plan::Version,
                Some(plan) => plan,
                None => unreachable!("one of the three is set"),
            };
            return Ok(Checked {
                plan,
                verbose,
                progress: false,
                notes,
            });
        }
        // Counted in u32: clap counts each flag in a u8, and 200 -B plus
        // 56 -R wrapped a u8 sum to 0.
        let modes = [raw.backup, raw.recover, raw.verify].map(u32::from);
        let modes: u32 = modes.iter().sum();
        if modes > 1 {
            return Err(UsageError("-B, -R, and -V are mutually exclusive".into()));
        }
        // --max-age is a check of the list: it asks for the list mode.
        let listing = raw.list || raw.max_age.is_some();
        let ours = u32::from(raw.transactions) + u32::from(listing) + u32::from(raw.prune);
        if ours > 0 && modes + ours > 1 {
            return Err(UsageError(
                "--transactions, -L, --prune and -B, -R or -V are mutually exclusive".into(),
            ));
        }
        if !raw.stray.is_empty() {
            return Err(UsageError(format!(
                "Invalid arguments: {}",
                raw.stray.join(", ")
            )));
        }
        if modes + ours == 0 {
            return Err(UsageError(
                "Either --backup, --recover or --verify is required".into(),
            ));
        }
        let Some(repository) = raw.repository.clone() else {
            return Err(UsageError("--repository is required".into()));
        };
        // An empty path is the current directory to the filesystem: a cron
        // line whose $REPO is unset would back up into (or recover from)
        // wherever it runs. Refused, as an empty -f or -o is.
        if repository.is_empty() {
            return Err(UsageError("--repository must not be empty".into()));
        }
        let mut ignore = |given: bool, opt: &str, mode: &str| {
            if given {
                notes.push(format!("--{opt} option is ignored in {mode} mode"));
            }
        };
        if raw.blob_dir.as_ref().is_some_and(|d| d.is_empty()) {
            return Err(UsageError("--blob-dir must not be empty".into()));
        }
        let blob_dir = raw.blob_dir.clone().map(std::path::PathBuf::from);
        let time = |given: &Option<String>| {
            given
                .as_deref()
                .map(parse_utc)
                .transpose()
                .map_err(UsageError)
        };
        let mode = if raw.transactions {
            "transactions"
        } else if raw.prune {
            "prune"
        } else if listing {
            "list"
        } else if raw.backup > 0 {
            "backup"
        } else if raw.recover > 0 {
            "recover"
        } else {
            "verify"
        };
        if mode != "transactions" {
            ignore(raw.since.is_some(), "since", mode);
            ignore(raw.until.is_some(), "until", mode);
        }
        if mode != "transactions" && mode != "list" {
            ignore(raw.json, "json", mode);
        }
        if mode != "verify" {
            ignore(raw.deep, "deep", mode);
        }
        if mode != "recover" {
            ignore(raw.at.is_some(), "at", mode);
            ignore(raw.at_tid.is_some(), "at-tid", mode);
        }
        let count = |given: &Option<String>, opt: &str| {
            given
                .as_deref()
                .map(|n| {
                    n.parse::<usize>().map_err(|_| {
                        UsageError(format!("invalid --{opt} {n:?}: expected a whole number"))
                    })
                })
                .transpose()
        };
        let keep = Retention {
            full: count(&raw.keep[0], "keep-full")?,
            daily: count(&raw.keep[1], "keep-daily")?,
            weekly: count(&raw.keep[2], "keep-weekly")?,
            monthly: count(&raw.keep[3], "keep-monthly")?,
            dry_run: raw.dry_run,
        };
        if mode != "backup" && mode != "prune" {
            for (given, opt) in
                raw.keep
                    .iter()
                    .zip(["keep-full", "keep-daily", "keep-weekly", "keep-monthly"])
            {
                ignore(given.is_some(), opt, mode);
            }
            ignore(raw.dry_run, "dry-run", mode);
        }
        let plan = if raw.prune {
            if !keep.any() {
                return Err(UsageError(
                    "--prune needs --keep-full, --keep-daily, --keep-weekly or --keep-monthly"
                        .into(),
                ));
            }
            ignore(blob_dir.is_some(), "blob-dir", "prune");
            ignore(raw.date.is_some(), "date", "prune");
            ignore(raw.output.is_some(), "output", "prune");
            ignore(raw.file.is_some(), "file", "prune");
            Plan::Prune(PruneOptions { repository, keep })
        } else if listing {
            if blob_dir.is_some() {
                return Err(UsageError("--blob-dir is not used with --list".into()));
            }
            ignore(raw.date.is_some(), "date", "list");
            ignore(raw.output.is_some(), "output", "list");
            ignore(raw.file.is_some(), "file", "list");
            let max_age = raw
                .max_age
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(UsageError)?;
            Plan::List(ListOptions {
                repository,
                json: raw.json,
                max_age,
            })
        } else if raw.transactions {
            if blob_dir.is_some() {
                return Err(UsageError(
                    "--blob-dir is not used with --transactions".into(),
                ));
            }
            ignore(raw.date.is_some(), "date", "transactions");
            ignore(raw.output.is_some(), "output", "transactions");
            ignore(raw.file.is_some(), "file", "transactions");
            Plan::Transactions(TransactionsOptions {
                repository,
                since: time(&raw.since)?,
                until: time(&raw.until)?,
                json: raw.json,
            })
        } else if raw.backup > 0 {
            ignore(raw.date.is_some(), "date", "backup");
            ignore(raw.output.is_some(), "output", "backup");
            ignore(raw.with_verify, "with-verify", "backup");
            let file = match raw.file {
                Some(f) if !f.is_empty() => std::path::PathBuf::from(f),
                _ => return Err(UsageError("--file is required in backup mode".into())),
            };
            if raw.dry_run && !keep.any() {
                return Err(UsageError(
                    "--dry-run is for the retention rules (--keep-full, --keep-daily, ...)".into(),
                ));
            }
            Plan::Backup(BackupOptions {
                repository,
                keep,
                file,
                full: raw.full,
                quick: raw.quick,
                gzip: raw.gzip,
                kill_old: raw.kill_old,
                blob_dir,
            })
        } else if raw.recover > 0 {
            ignore(raw.file.is_some(), "file", "recover");
            ignore(raw.kill_old, "kill-old-on-full", "recover");
            let given = [raw.date.is_some(), raw.at.is_some(), raw.at_tid.is_some()];
            if given.iter().filter(|&&g| g).count() > 1 {
                return Err(UsageError(
                    "--date, --at and --at-tid are mutually exclusive".into(),
                ));
            }
            let at = match (&raw.at, &raw.at_tid) {
                (Some(_), _) => Some(PointInTime::At(time(&raw.at)?.expect("given"))),
                (_, Some(t)) => Some(PointInTime::Tid(parse_tid(t).map_err(UsageError)?)),
                _ => None,
            };
            let (date, revision) = match raw.date {
                Some(d)
                    if !d.is_empty() && d.len() <= 9 && d.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    (
                        None,
                        Some(d.parse::<usize>().map_err(|e| {
                            UsageError(format!("invalid backup number {d:?}: {e}"))
                        })?),
                    )
                }
                Some(d) => (Some(parse_date(&d).map_err(UsageError)?), None),
                None => (None, None),
            };
            if raw.output.as_deref() == Some("") {
                return Err(UsageError("--output must not be empty".into()));
            }
            if blob_dir.is_some() && raw.output.is_none() {
                return Err(UsageError(
                    "--blob-dir needs --output in recover mode: blob files cannot go to stdout"
                        .into(),
                ));
            }
            Plan::Recover(RecoverOptions {
                repository,
                date,
                revision,
                output: raw.output,
                with_verify: raw.with_verify,
                blob_dir,
                full: raw.full,
                quick: raw.quick,
                at,
            })
        } else {
            if blob_dir.is_some() {
                return Err(UsageError(
                    "--blob-dir is not used in verify mode: -V checks the blob files the repository holds"
                        .into(),
                ));
            }
            ignore(raw.date.is_some(), "date", "verify");
            ignore(raw.output.is_some(), "output", "verify");
            ignore(raw.full, "full", "verify");
            ignore(raw.gzip, "gzip", "verify");
            ignore(raw.file.is_some(), "file", "verify");
            ignore(raw.kill_old, "kill-old-on-full", "verify");
            ignore(raw.with_verify, "with-verify", "verify");
            Plan::Verify(VerifyOptions {
                repository,
                quick: raw.quick,
                deep: raw.deep,
            })
        };
        Ok(Checked {
            plan,
            verbose,
            progress: !raw.no_progress,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Checked, UsageError> {
        Plan::from_raw(RawArgs::parse(args)?)
    }

    #[test]
    fn bundled_short_flags_and_long_forms() {
        let c = plan(&["-BQzr", "/backups", "-f", "Data.fs"]).unwrap();
        let Plan::Backup(b) = c.plan else {
            panic!("not a backup")
        };
        assert_eq!(
            (b.repository.as_str(), b.file.to_str().unwrap()),
            ("/backups", "Data.fs")
        );
        assert!(b.quick && b.gzip && !b.full);

        for args in [
            &["--backup", "--repository=/b", "--file", "D.fs"][..],
            &["-B", "-r/b", "-fD.fs"][..],
            &["--back", "--repo", "/b", "--fi=D.fs"][..],
            &["--b", "--rep", "/b", "--fi", "D.fs"][..],
        ] {
            let Plan::Backup(b) = plan(args).unwrap().plan else {
                panic!("not a backup: {args:?}")
            };
            assert_eq!(
                (b.repository.as_str(), b.file.to_str().unwrap()),
                ("/b", "D.fs")
            );
        }
    }

    #[test]
    fn python_repozos_unique_prefixes_keep_their_meaning() {
        // getopt in ZODB's repozo.py: --d is --date, --k --kill-old-on-full.
        for args in [
            &["-R", "-r", "x", "--d", "2010-05-14"][..],
            &["-R", "-r", "x", "--d=2010-05-14"][..],
        ] {
            let Plan::Recover(r) = plan(args).unwrap().plan else {
                panic!("not a recover: {args:?}")
            };
            assert_eq!(r.date.as_deref(), Some("2010-05-14"), "{args:?}");
        }
        let Plan::Backup(b) = plan(&["-B", "-r", "x", "-f", "D.fs", "--k"]).unwrap().plan else {
            panic!("not a backup")
        };
        assert!(b.kill_old);
        // Longer prefixes are ours to resolve as clap does.
        assert!(plan(&["-V", "-r", "x", "--de"]).is_ok());
    }

    #[test]
    fn repozo_rules() {
        let msg = |args: &[&str]| plan(args).unwrap_err().0;
        assert_eq!(
            msg(&["-r", "x"]),
            "Either --backup, --recover or --verify is required"
        );
        assert_eq!(
            msg(&["-B", "-R", "-r", "x"]),
            "-B, -R, and -V are mutually exclusive"
        );
        assert_eq!(msg(&["-V"]), "--repository is required");
        for mode in ["-B", "-R", "-V"] {
            assert_eq!(
                msg(&[mode, "-r", "", "-f", "Data.fs"]),
                "--repository must not be empty",
                "{mode}"
            );
        }
        assert_eq!(msg(&["-B", "-r", "x"]), "--file is required in backup mode");
        assert_eq!(
            msg(&["-V", "-r", "x", "extra", "more"]),
            "Invalid arguments: extra, more"
        );
        assert!(msg(&["-V", "-r", "x", "--bogus"]).contains("--bogus"));
        assert!(msg(&["-R", "-r", "x", "-D", "May 14"]).contains("invalid date"));
        assert!(matches!(plan(&["-h"]).unwrap().plan, Plan::Help));
        // Regression (issue 10, 3): the three counts were added as u8s.
        let mut many = vec!["-B"; 200];
        many.extend(["-R"; 56]);
        many.extend(["-r", "x"]);
        assert_eq!(msg(&many), "-B, -R, and -V are mutually exclusive");
    }

    #[test]
    fn options_that_do_not_apply_are_noted() {
        let c = plan(&["-V", "-r", "x", "-z", "-D", "2010-01-01", "-f", "D.fs"]).unwrap();
        assert_eq!(
            c.notes,
            vec![
                "--date option is ignored in verify mode",
                "--gzip option is ignored in verify mode",
                "--file option is ignored in verify mode",
            ]
        );
        let c = plan(&["-R", "-r", "x", "-k", "-D", "2010-05-14-10"]).unwrap();
        let Plan::Recover(r) = c.plan else {
            panic!("not a recover")
        };
        assert_eq!(r.date.as_deref(), Some("2010-05-14-10"));
        assert_eq!(
            c.notes,
            vec!["--kill-old-on-full option is ignored in recover mode"]
        );
    }
}
