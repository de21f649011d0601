//! Errors of card handling.

use std::path::PathBuf;

/// What can go wrong with a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// An I/O error on a named file.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The partition table is missing or not the keybound layout.
    #[error("card {path}: {reason}")]
    Layout {
        /// The card.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The FAT boot partition could not be read or written.
    #[error("boot partition: {0}")]
    Fat(String),
    /// A file is not on the boot partition.
    #[error("boot partition has no file {0:?}")]
    NoSuchBootFile(String),
    /// A qemu-img invocation failed.
    #[error("qemu-img {args}: {stderr}")]
    QemuImg {
        /// The arguments, for the reader.
        args: String,
        /// What qemu-img printed.
        stderr: String,
    },
    /// qemu-img is not installed.
    #[error("qemu-img not found: install the qemu-utils package (scripts/setup does)")]
    NoQemuImg,
}

impl CardError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
