//! Verbose messages (`-v`), on stderr so that they never mix with a
//! recovery written to stdout.

use std::io::Write;

/// Where `-v` messages go.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Log {
    verbose: bool,
}

impl Log {
    /// A log that prints only when `verbose`.
    pub fn new(verbose: bool) -> Log {
        Log { verbose }
    }

    /// Whether messages are printed.
    pub(crate) fn enabled(&self) -> bool {
        self.verbose
    }

    /// Print a message that is always shown: something repozo did that the
    /// user did not ask for.
    pub(crate) fn notice(&self, msg: std::fmt::Arguments<'_>) {
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }

    /// Print one message line, if verbose.
    pub fn line(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            // A closed stderr must not turn a good backup into a failure.
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
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
