//! The content-addressed build cache: entries named by the hash of their inputs, each with a
//! sha256 sidecar checked on use, written through a temporary name and renamed into place, all
//! under one lock so two builds at once never corrupt it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::{ImageError, Progress};

/// The open, locked cache.
pub(crate) struct Cache {
    root: PathBuf,
    _lock: Flock<File>,
}

/// Hashes a file's content (hex sha256).
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = File::open(path).map_err(ImageError::io("hashing", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(ImageError::io("hashing", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A cache key: the hash of everything a stage's output depends on.
pub(crate) struct Key(Sha256);

impl Key {
    /// Starts a key for `stage` (stages never share keys).
    pub(crate) fn new(stage: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"keybound-cache-v1\0");
        h.update(stage.as_bytes());
        Self(h)
    }

    /// Adds a labelled value.
    pub(crate) fn add(mut self, label: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// Adds every file under `dir` (relative path, mode and content), in a stable order.
    pub(crate) fn add_tree(mut self, label: &str, dir: &Path) -> Result<Self, ImageError> {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        for path in files {
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).map_err(ImageError::io("reading", &path))?;
            let content = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .map_err(ImageError::io("reading", &path))?
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                fs::read(&path).map_err(ImageError::io("reading", &path))?
            };
            use std::os::unix::fs::PermissionsExt;
            self = self.add(
                &format!("{label}:{rel}:{:o}", meta.permissions().mode()),
                content,
            );
        }
        Ok(self)
    }

    /// The key as 32 hex digits.
    pub(crate) fn finish(self) -> String {
        hex::encode(&self.0.finalize()[..16])
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    for entry in fs::read_dir(dir).map_err(ImageError::io("listing", dir))? {
        let entry = entry.map_err(ImageError::io("listing", dir))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .map_err(ImageError::io("listing", &path))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

impl Cache {
    /// Opens (creating) the cache at `root` and takes its lock, waiting for another build.
    pub(crate) fn open(root: &Path, progress: &Progress) -> Result<Self, ImageError> {
        fs::create_dir_all(root).map_err(ImageError::io("creating cache", root))?;
        let lock_path = root.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(ImageError::io("opening cache lock", &lock_path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((file, _)) => {
                progress.println(format!(
                    "waiting for another build holding {}",
                    lock_path.display()
                ));
                Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| {
                    ImageError::io("locking cache", &lock_path)(std::io::Error::from(e))
                })?
            }
        };
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The cache directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The path of entry `name` in `stage`, creating the stage directory.
    pub(crate) fn entry(&self, stage: &str, name: &str) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(stage);
        fs::create_dir_all(&dir).map_err(ImageError::io("creating cache stage", &dir))?;
        Ok(dir.join(name))
    }

    /// A fresh scratch directory under the cache (removed by the returned guard).
    pub(crate) fn scratch(&self, what: &str) -> Result<Scratch, ImageError> {
        let dir = self
            .root
            .join("tmp")
            .join(format!("{what}-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(ImageError::io("clearing scratch", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(ImageError::io("creating scratch", &dir))?;
        Ok(Scratch(dir))
    }

    /// Whether `path` is a complete, uncorrupted entry. A corrupted one (content no longer
    /// matching its sidecar) is removed, so the caller rebuilds it.
    pub(crate) fn verified(&self, path: &Path, progress: &Progress) -> Result<bool, ImageError> {
        let Ok(expected) = fs::read_to_string(sidecar(path)) else {
            return Ok(false);
        };
        if !path.exists() {
            return Ok(false);
        }
        if sha256_file(path)? == expected.trim() {
            return Ok(true);
        }
        progress.println(format!(
            "cache entry {} is corrupted (hash mismatch): rebuilding it",
            path.display()
        ));
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(sidecar(path));
        Ok(false)
    }

    /// Moves the finished file `tmp` into place as `dest`, with its sha256 sidecar.
    pub(crate) fn commit(&self, tmp: &Path, dest: &Path) -> Result<String, ImageError> {
        let hash = sha256_file(tmp)?;
        self.write_plain(&sidecar(dest), format!("{hash}\n").as_bytes())?;
        fs::rename(tmp, dest).map_err(ImageError::io("committing cache entry", dest))?;
        Ok(hash)
    }

    /// Writes a small file atomically (no sidecar).
    pub(crate) fn write_plain(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = path.with_extension("tmp-write");
        let mut f = File::create(&tmp).map_err(ImageError::io("writing", &tmp))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(ImageError::io("writing", &tmp))?;
        fs::rename(&tmp, path).map_err(ImageError::io("writing", path))
    }
}

/// A scratch directory removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupted_entry_is_detected_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path(), &Progress::hidden()).unwrap();
        let dest = cache.entry("stage", "thing").unwrap();
        let src = tmp.path().join("src");
        fs::write(&src, b"good").unwrap();
        cache.commit(&src, &dest).unwrap();
        assert!(cache.verified(&dest, &Progress::hidden()).unwrap());
        fs::write(&dest, b"evil").unwrap();
        assert!(!cache.verified(&dest, &Progress::hidden()).unwrap());
        assert!(!dest.exists());
    }

    #[test]
    fn keys_depend_on_labels_values_and_order() {
        let a = Key::new("s").add("x", "1").add("y", "2").finish();
        assert_eq!(a, Key::new("s").add("x", "1").add("y", "2").finish());
        assert_ne!(a, Key::new("s").add("y", "2").add("x", "1").finish());
        assert_ne!(a, Key::new("s").add("x", "12").add("y", "").finish());
        assert_ne!(a, Key::new("t").add("x", "1").add("y", "2").finish());
    }
}
