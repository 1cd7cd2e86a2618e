//! Exit codes scripts can rely on, and how errors are printed.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (bad configuration, I/O, unexpected answer) |
//! | 2 | usage error (clap) or a request the agent refused (HTTP 400/403/413/422) |
//! | 3 | the counter does not exist (HTTP 404) |
//! | 4 | compare-and-set mismatch (HTTP 409) |
//! | 5 | unavailable: the agent or ZooKeeper could not be reached (HTTP 503, connection refused) |
//! | 6 | unauthorized (HTTP 401) |

use std::process::ExitCode;

/// An error that maps to a specific exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Prints `error` (with its causes) to stderr and returns its exit code.
#[allow(clippy::print_stderr)]
pub(crate) fn report(error: anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Failure>().map_or(1, |f| f.code);
    eprintln!("countermesh: {error:#}");
    ExitCode::from(code)
}
