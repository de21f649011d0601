//! Typed errors of the production client.

use std::path::PathBuf;

/// Why a locked blob was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRejection {
    /// It was locked by another module.
    ForeignModule,
    /// It was modified.
    Modified,
    /// It is truncated.
    Truncated,
    /// Its format version is unknown to the module.
    UnsupportedVersion,
    /// It was locked with the other key.
    WrongKey,
}

impl std::fmt::Display for BlobRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ForeignModule => "locked by another module",
            Self::Modified => "modified",
            Self::Truncated => "truncated",
            Self::UnsupportedVersion => "unsupported format version",
            Self::WrongKey => "locked with the other key",
        })
    }
}

/// Errors of [`crate::Zymkey`] and [`crate::Library`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `libzk_app_utils.so` could not be loaded.
    #[error("libzk_app_utils is not installed ({name}): {reason}")]
    LibraryNotInstalled {
        /// What was loaded.
        name: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library lacks a function this call needs.
    #[error("libzk_app_utils lacks {0}")]
    MissingFunction(&'static str),
    /// No module: not present, not attached, or its host service is not running.
    #[error("no Zymkey module is present")]
    ModuleAbsent,
    /// The module did not answer (I/O error or timeout talking to it).
    #[error("the Zymkey module is not answering")]
    NotAnswering,
    /// The module and its host disagree on the protocol.
    #[error("protocol error talking to the Zymkey module")]
    Protocol,
    /// Binding check failed: the module is bound to another host; security services stopped.
    #[error("Zymkey binding check failed: the module is bound to another host")]
    BindingFailed,
    /// The module self-destructed.
    #[error("the Zymkey module self-destructed")]
    Destroyed,
    /// A locked blob was refused.
    #[error("locked blob refused: {0}")]
    BlobRejected(BlobRejection),
    /// An argument was refused (size, slot, channel, path).
    #[error("invalid argument")]
    InvalidArgument,
    /// A wait timed out (reported as `Ok(false)` by the wait wrappers).
    #[error("timed out")]
    TimedOut,
    /// The module does not support this call.
    #[error("not supported by this module")]
    Unsupported,
    /// The library could not allocate memory.
    #[error("out of memory")]
    OutOfMemory,
    /// Any other code (a real Zymbit library publishes no error table).
    #[error("Zymkey call failed with code {0}")]
    Unknown(i32),
}

impl Error {
    /// Maps a negative return code of `libzk_app_utils` to an error.
    pub fn from_code(code: i32) -> Self {
        match code {
            -19 | -1003 => Self::ModuleAbsent,
            -5 => Self::NotAnswering,
            -71 => Self::Protocol,
            -1001 => Self::BindingFailed,
            -1002 => Self::Destroyed,
            -1010 => Self::BlobRejected(BlobRejection::ForeignModule),
            -1011 => Self::BlobRejected(BlobRejection::Modified),
            -1012 => Self::BlobRejected(BlobRejection::Truncated),
            -1013 => Self::BlobRejected(BlobRejection::UnsupportedVersion),
            -1014 => Self::BlobRejected(BlobRejection::WrongKey),
            -22 => Self::InvalidArgument,
            -110 => Self::TimedOut,
            -95 => Self::Unsupported,
            -12 => Self::OutOfMemory,
            other => Self::Unknown(other),
        }
    }

    /// Whether retrying later may help (the module was absent or silent).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NotAnswering | Self::ModuleAbsent)
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, Error>;
