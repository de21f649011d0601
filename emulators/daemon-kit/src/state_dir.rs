//! A state directory owned by one daemon at a time, with atomic file replacement.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Errors of a [`StateDir`].
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Another process holds the directory's lock.
    #[error("state directory {dir} is in use by another daemon (pid {holder})")]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// The pid recorded by the holder, or `?` if unreadable.
        holder: String,
    },
    /// A file name that is not a plain name inside the directory.
    #[error("state file name {0:?} must be a plain file name")]
    BadName(String),
    /// An I/O error on a named path.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateDirError + 'a {
    move |source| StateDirError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of state files, locked (`flock` on `DIR/lock`) for as long as this value lives.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Creates (if needed) and locks `dir`. Fails with [`StateDirError::Busy`] if another live
    /// process holds it; a lock left by a dead process is released by the kernel, never stale.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateDirError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("creating state directory", &dir))?;
        let lock_path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("opening lock file", &lock_path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                return Err(StateDirError::Busy {
                    dir,
                    holder: if holder.is_empty() {
                        "?".into()
                    } else {
                        holder
                    },
                });
            }
        };
        lock.set_len(0)
            .map_err(io_err("writing lock file", &lock_path))?;
        writeln!(&mut *lock, "{}", std::process::id())
            .map_err(io_err("writing lock file", &lock_path))?;
        Ok(Self { dir, _lock: lock })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file_path(&self, name: &str) -> Result<PathBuf, StateDirError> {
        let plain = !name.is_empty()
            && name != "lock"
            && !name.starts_with('.')
            && !name.contains('/')
            && name != "..";
        if plain {
            Ok(self.dir.join(name))
        } else {
            Err(StateDirError::BadName(name.into()))
        }
    }

    /// Reads a state file; `Ok(None)` if it does not exist yet.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateDirError> {
        let path = self.file_path(name)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading state file", &path)(e)),
        }
    }

    /// Replaces a state file atomically: the old content or the new, never a mix, also across a
    /// power cut (temporary file, `fsync`, `rename`, `fsync` of the directory). Mode 0600.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateDirError> {
        let path = self.file_path(name)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating temporary state file", &tmp))?;
        file.write_all(bytes)
            .map_err(io_err("writing temporary state file", &tmp))?;
        file.sync_all()
            .map_err(io_err("syncing temporary state file", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("replacing state file", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing state directory", &self.dir))?;
        Ok(())
    }

    /// Removes a state file if it exists.
    pub fn remove(&self, name: &str) -> Result<(), StateDirError> {
        let path = self.file_path(name)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err("removing state file", &path)(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_locked_directory_is_busy_and_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StateDir::open(tmp.path()).unwrap();
        match StateDir::open(tmp.path()) {
            Err(StateDirError::Busy { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        StateDir::open(tmp.path()).expect("lock released on drop");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert_eq!(dir.read("state.json").unwrap(), None);
        dir.write_atomic("state.json", b"one").unwrap();
        dir.write_atomic("state.json", b"two").unwrap();
        assert_eq!(
            dir.read("state.json").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "left {names:?}");
        dir.remove("state.json").unwrap();
        assert_eq!(dir.read("state.json").unwrap(), None);
    }

    #[test]
    fn names_that_escape_the_directory_or_hit_the_lock_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        for bad in ["", "lock", "../x", "a/b", ".hidden"] {
            assert!(
                matches!(dir.write_atomic(bad, b"x"), Err(StateDirError::BadName(_))),
                "{bad}"
            );
        }
    }
}
