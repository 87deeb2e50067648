//! Errors with context, and the distinction between "cannot run here" and "failed".

use std::fmt;

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// The machine lacks something the test needs (root, `/dev/net/tun`, `nft`, …): the test
    /// cannot run here. `--skip-unavailable` turns this into a skip.
    Unavailable(String),
    /// The test could not be carried out (a setup step or a read failed).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The result type of the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds a description of what was being done to an error.
pub trait Context<T> {
    /// Wraps the error as [`Error::Failed`] with `what` in front of it.
    fn context(self, what: impl fmt::Display) -> Result<T>;
    /// Like [`context`](Context::context), with the description built lazily.
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Failed(format!("{what}: {e}")))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::Failed(format!("{}: {e}", what())))
    }
}

/// A [`Error::Failed`] from a message.
pub fn failed(msg: impl Into<String>) -> Error {
    Error::Failed(msg.into())
}
