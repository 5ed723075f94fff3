//! Verbose messages (`-v`), on stderr so that they never mix with a
//! recovery written to stdout; and, when stderr is a terminal, a progress
//! line below them (indicatif), which cron mails never see.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where `-v` messages and the progress line go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    verbose: bool,
    /// The progress line, when stderr is a terminal and it is wanted.
    bar: Option<ProgressBar>,
}

impl Log {
    /// A log that prints only when `verbose`, with no progress line.
    pub fn new(verbose: bool) -> Log {
        Log { verbose, bar: None }
    }

    /// [`Log::new`], with a progress line when `progress` and stderr is a
    /// terminal.
    pub fn with_progress(verbose: bool, progress: bool) -> Log {
        let bar = (progress && std::io::stderr().is_terminal()).then(|| {
            // Hidden until there is work to show.
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta} left) {wide_bar}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Log { verbose, bar }
    }

    /// Whether messages are printed.
    pub(crate) fn enabled(&self) -> bool {
        self.verbose
    }

    /// Show progress towards `total` bytes of `what` (`recovering`, ...).
    pub(crate) fn start(&self, what: &'static str, total: u64) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_length(total);
            bar.set_message(what);
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// `n` more bytes done.
    pub(crate) fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The work shown is done: the line goes.
    pub(crate) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    /// Print a message that is always shown: something repozo did that the
    /// user did not ask for.
    pub(crate) fn notice(&self, msg: std::fmt::Arguments<'_>) {
        self.print(msg);
    }

    /// Print one message line, if verbose.
    pub fn line(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            self.print(msg);
        }
    }

    fn print(&self, msg: std::fmt::Arguments<'_>) {
        match &self.bar {
            // Above the progress line, which is drawn again below it.
            Some(bar) if !bar.is_hidden() => {
                bar.println(msg.to_string());
            }
            // A closed stderr must not turn a good backup into a failure.
            _ => {
                let _ = writeln!(std::io::stderr().lock(), "{msg}");
            }
        }
    }
}

/// `log!(log, "format", args…)`: a verbose message.
#[macro_export]
macro_rules! log {
    ($log:expr, $($arg:tt)*) => {
        $log.line(format_args!($($arg)*))
    };
}
