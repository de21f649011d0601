//! Errors of rig drivers.

use std::path::PathBuf;

/// What can go wrong driving a rig.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// A GPIO line could not be driven.
    #[error("GPIO {chip} line {line}: {reason}")]
    Gpio {
        /// The GPIO chip.
        chip: String,
        /// The line on it.
        line: u32,
        /// What went wrong.
        reason: String,
    },
    /// A control command (SD mux, hub port) failed.
    #[error("command `{command}`: {reason}")]
    Command {
        /// The command line, as run.
        command: String,
        /// Its exit status and stderr, or why it did not start.
        reason: String,
    },
    /// The serial console could not be opened or used.
    #[error("serial console {device}: {reason}")]
    Serial {
        /// The device.
        device: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The board is in the wrong state for the operation.
    #[error("board {board}: {reason}")]
    State {
        /// The board.
        board: String,
        /// Why the operation is not possible now.
        reason: String,
    },
    /// The rig has no such resource for this board.
    #[error("board {board} has no {what} in the rig file")]
    Missing {
        /// The board.
        board: String,
        /// The missing resource (e.g. "SD mux").
        what: String,
    },
    /// The card behind the SD mux could not be read or written.
    #[error("card behind the SD mux ({device}): {source}")]
    Card {
        /// The host block device.
        device: PathBuf,
        /// The card error.
        #[source]
        source: card::CardError,
    },
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
    /// A console expectation failed.
    #[error(transparent)]
    Console(#[from] board::BoardError),
}

impl RigError {
    /// An I/O error mapper naming what and where.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
