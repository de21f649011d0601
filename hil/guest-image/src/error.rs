//! Errors of the image build, each naming what is wrong and where.

use std::path::PathBuf;

/// What can go wrong building an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The recipe file is malformed.
    #[error("{path}: {message}")]
    Recipe {
        /// The recipe file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A host tool is missing.
    #[error(
        "`{tool}` not found: install the {package} package (scripts/setup installs everything)"
    )]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A host tool failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The command.
        tool: String,
        /// Its error output (last lines).
        detail: String,
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
    /// A kernel module named in the recipe does not exist in the kernel package.
    #[error("kernel module {name:?} (recipe [modules]) is neither in {kernel} nor built in")]
    NoSuchModule {
        /// The module.
        name: String,
        /// The kernel version searched.
        kernel: String,
    },
    /// A module file could not be parsed.
    #[error("kernel module {0}: {1}")]
    BadModule(PathBuf, String),
    /// The build needs root to give guest files their owners.
    #[error(
        "building an image needs root (guest files must be owned by root and by the guest's users); run it as root or with sudo"
    )]
    NotRoot,
    /// No image has been built yet.
    #[error("no image built yet ({0} missing): run `cargo lab image build`")]
    NoImage(PathBuf),
    /// A recorded file is unreadable.
    #[error("{0}: {1}")]
    Corrupt(PathBuf, String),
    /// Card layout or boot partition error.
    #[error(transparent)]
    Card(#[from] card::CardError),
    /// A cross-built binary named in the recipe was not provided.
    #[error("binary {0:?} (recipe [[binaries]]) was not cross-built")]
    MissingBinary(String),
}

impl ImageError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

/// Runs a command, mapping "not found" to [`ImageError::MissingTool`] and failure to
/// [`ImageError::Tool`] with the last lines of its error output.
pub(crate) fn run(
    cmd: &mut std::process::Command,
    tool: &'static str,
    package: &'static str,
) -> Result<std::process::Output, ImageError> {
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::MissingTool { tool, package },
        _ => ImageError::Tool {
            tool: tool.into(),
            detail: e.to_string(),
        },
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let detail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(ImageError::Tool {
            tool: format!("{cmd:?}"),
            detail,
        });
    }
    Ok(out)
}
