//! Usage errors: the command line asked for something it cannot mean (a
//! missing endpoint, a malformed value). They end with exit status 2, as
//! clap's own parse errors do (README, CLI reference), and under `--json`
//! with `{"error": …, "exit": 2}` on stdout like every other error.
use std::fmt;

/// Exit status of a usage error.
pub const EXIT_USAGE: u8 = 2;

/// A usage error; make one with [`usage!`](crate::usage!).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `usage!("…", args)`: an `anyhow::Error` holding a [`UsageError`].
#[macro_export]
macro_rules! usage {
    ($($t:tt)*) => {
        anyhow::Error::new($crate::usage::UsageError(format!($($t)*)))
    };
}

/// Whether `e` (or anything it wraps) is a usage error.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}
