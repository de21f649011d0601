//! Hardened file access: pam_u2f's checks and a little more. A file is read only if it is a
//! regular file reached without following a symlink, owned by an allowed uid, and neither group-
//! nor world-writable. Anything else is an error the caller must treat as a failure.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SafeFileError {
    /// The file does not exist.
    #[error("{0}: does not exist")]
    NotFound(PathBuf),
    /// The path names a symlink (never followed).
    #[error("{0}: is a symlink")]
    Symlink(PathBuf),
    /// Not a regular file.
    #[error("{0}: not a regular file")]
    NotRegular(PathBuf),
    /// Owned by a uid that is not allowed.
    #[error("{path}: owned by uid {uid}, not an allowed owner")]
    BadOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Group- or world-writable.
    #[error("{path}: mode {mode:o} is group- or world-writable")]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Larger than the caller's limit.
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Not valid UTF-8.
    #[error("{0}: not UTF-8 text")]
    NotText(PathBuf),
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Opens `path` read-only without following a final symlink, and checks type, owner and mode.
pub fn open_checked(path: &Path, allowed_owners: &[u32]) -> Result<File, SafeFileError> {
    let io = |source| SafeFileError::Io {
        path: path.to_owned(),
        source,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    // O_NONBLOCK: a FIFO planted at the path cannot hang the login.
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENOENT) => SafeFileError::NotFound(path.to_owned()),
            Some(libc::ELOOP) => SafeFileError::Symlink(path.to_owned()),
            _ => io(err),
        });
    }
    // SAFETY: fd was just returned by open(2) and is owned by nobody else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(SafeFileError::NotRegular(path.to_owned()));
    }
    if !allowed_owners.contains(&meta.uid()) {
        return Err(SafeFileError::BadOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(SafeFileError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(file)
}

/// Reads a checked text file of at most `limit` bytes.
pub fn read_text(path: &Path, allowed_owners: &[u32], limit: u64) -> Result<String, SafeFileError> {
    let file = open_checked(path, allowed_owners)?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| SafeFileError::Io {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(SafeFileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    String::from_utf8(buf).map_err(|_| SafeFileError::NotText(path.to_owned()))
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "alice:x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn accepts_owner_and_safe_modes() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644, 0o400] {
            let p = file_with_mode(d.path(), &format!("f{mode:o}"), mode);
            assert_eq!(read_text(&p, &[euid()], 1024).unwrap(), "alice:x\n");
        }
    }

    #[test]
    fn rejects_group_or_world_writable() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o620, 0o602, 0o666, 0o660] {
            let p = file_with_mode(d.path(), &format!("f{mode:o}"), mode);
            assert!(
                matches!(
                    read_text(&p, &[euid()], 1024),
                    Err(SafeFileError::Writable { .. })
                ),
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn rejects_wrong_owner_symlink_dir_fifo_missing_and_large() {
        let d = tempfile::tempdir().unwrap();
        let p = file_with_mode(d.path(), "f", 0o600);
        let other = euid().wrapping_add(4242);
        assert!(matches!(
            read_text(&p, &[other], 1024),
            Err(SafeFileError::BadOwner { .. })
        ));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(
            read_text(&link, &[euid()], 1024),
            Err(SafeFileError::Symlink(_))
        ));
        assert!(matches!(
            read_text(d.path(), &[euid()], 1024),
            Err(SafeFileError::NotRegular(_))
        ));
        let fifo = d.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_text(&fifo, &[euid()], 1024),
            Err(SafeFileError::NotRegular(_))
        ));
        assert!(matches!(
            read_text(&d.path().join("none"), &[euid()], 1024),
            Err(SafeFileError::NotFound(_))
        ));
        assert!(matches!(
            read_text(&p, &[euid()], 3),
            Err(SafeFileError::TooLarge { .. })
        ));
    }
}
