//! Errors of boards.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong with a board.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// A console expectation was not met in time; shows the console's last lines.
    #[error("console: no match for /{pattern}/ within {timeout:?}; last console lines:\n{tail}")]
    ExpectTimeout {
        /// The pattern.
        pattern: String,
        /// How long we waited.
        timeout: Duration,
        /// The last console lines.
        tail: String,
    },
    /// The board stopped while we waited on the console.
    #[error("console: board stopped before /{pattern}/ appeared; last console lines:\n{tail}")]
    ConsoleClosed {
        /// The pattern.
        pattern: String,
        /// The last console lines.
        tail: String,
    },
    /// The emulator (QEMU) failed to start or died early.
    #[error("{what}: {detail}")]
    Emulator {
        /// What failed.
        what: String,
        /// Its stderr and the last console lines.
        detail: String,
    },
    /// The board is in the wrong power state for the operation.
    #[error("board {board}: {reason}")]
    State {
        /// The board.
        board: String,
        /// Why the operation is not possible now.
        reason: String,
    },
    /// The target cannot do this at all.
    #[error("board {board} cannot {what} on this target")]
    Unsupported {
        /// The board.
        board: String,
        /// The missing capability.
        what: String,
    },
    /// An ssh session failed to run (not an authentication result: those are outcomes).
    #[error("ssh: {0}")]
    Ssh(String),
    /// A regex in an expectation is invalid.
    #[error("invalid pattern /{0}/: {1}")]
    Pattern(String, String),
    /// Card handling failed.
    #[error(transparent)]
    Card(#[from] card::CardError),
    /// An I/O error on a named path.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BoardError {
    /// An I/O error mapper naming what and where.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
