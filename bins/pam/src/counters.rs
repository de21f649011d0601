//! The signature-counter store: clone detection pam_u2f does not have.
//!
//! One root-owned text file (default `/var/lib/keybound/counters`): a header line, then
//! `<sha256(public key) hex> <counter>` per credential. Every check reads, decides and writes
//! under an exclusive `flock` on `<file>.lock`, and writes by temp file + fsync + rename + fsync of
//! the directory, so a crash leaves the old or the new file, never a half-written one.
//!
//! Rules ([`decide`]): an unknown credential is accepted and recorded; a recorded counter `n > 0`
//! needs a strictly larger one (equal, lower or 0 → possible clone); a credential recorded with 0
//! (a token without a counter) accepts 0 or any larger value, and once it has shown a counter it
//! never accepts 0 again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::authfile::PublicKey;
use crate::safe_file::{self, SafeFileError};

const HEADER: &str = "# keybound signature counters v1";
const MAX_FILE: u64 = 4 << 20;
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A credential's key in the store: SHA-256 of its public key, hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CredentialKey(String);

impl CredentialKey {
    /// The key of a public key.
    pub fn of(pk: &PublicKey) -> Self {
        Self(hex::encode(Sha256::digest(pk.stored_bytes())))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The outcome of a counter check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The counter increased (or the credential was new, or counts nothing): accepted, recorded.
    Accepted,
    /// The counter did not increase: a possible clone. Nothing was recorded.
    PossibleClone {
        /// The counter on record.
        recorded: u32,
        /// The counter the token presented.
        presented: u32,
    },
}

/// Why the store could not be used (callers deny: fail closed).
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The file is unsafe or unreadable.
    #[error(transparent)]
    File(#[from] SafeFileError),
    /// A line that is not `<64 hex> <u32>`.
    #[error("{path}: line {line} is malformed")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The lock was not obtained within its wait.
    #[error("{0}: lock not obtained in time")]
    LockTimeout(PathBuf),
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Decides whether `presented` may follow `recorded`.
pub fn decide(recorded: Option<u32>, presented: u32) -> bool {
    // Planted bug counter-unchecked: caught by scenario login/cloned-token-after-original.
    #[cfg(keybound_mutant = "counter-unchecked")]
    {
        let _ = (recorded, presented);
        return true;
    }
    #[allow(unreachable_code)]
    match recorded {
        None => true,
        Some(0) => true,
        Some(n) => presented > n,
    }
}

/// The store at one path.
#[derive(Debug, Clone)]
pub struct CounterStore {
    path: PathBuf,
}

struct Locked {
    _lock: File,
}

impl CounterStore {
    /// A store at `path` (created on first write; its directory too, mode 0700).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> CounterError {
        CounterError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> Result<Locked, CounterError> {
        if let Some(dir) = self.path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.io(e))?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: the fd belongs to `lock`, which outlives the call.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Locked { _lock: lock });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK)
                && err.raw_os_error() != Some(libc::EINTR)
            {
                return Err(self.io(err));
            }
            if Instant::now() >= deadline {
                return Err(CounterError::LockTimeout(self.path.clone()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read(&self) -> Result<BTreeMap<String, u32>, CounterError> {
        let text = match safe_file::read_text(&self.path, &[0, safe_file::euid()], MAX_FILE) {
            Ok(t) => t,
            Err(SafeFileError::NotFound(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = || CounterError::Corrupt {
                path: self.path.clone(),
                line: i + 1,
            };
            let (k, v) = line.split_once(' ').ok_or_else(corrupt)?;
            if k.len() != 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(corrupt());
            }
            let v: u32 = v.parse().map_err(|_| corrupt())?;
            map.insert(k.to_owned(), v);
        }
        Ok(map)
    }

    fn write(&self, map: &BTreeMap<String, u32>) -> Result<(), CounterError> {
        let mut text = String::with_capacity(map.len() * 76 + 40);
        text.push_str(HEADER);
        text.push('\n');
        for (k, v) in map {
            text.push_str(&format!("{k} {v}\n"));
        }
        write_atomically(&self.path, text.as_bytes(), 0o600).map_err(|e| self.io(e))
    }

    /// Checks `presented` for `key` and records it if accepted, all under the lock.
    pub fn check_and_record(
        &self,
        key: &CredentialKey,
        presented: u32,
    ) -> Result<Verdict, CounterError> {
        let _guard = self.lock()?;
        let mut map = self.read()?;
        let recorded = map.get(key.as_str()).copied();
        if !decide(recorded, presented) {
            return Ok(Verdict::PossibleClone {
                recorded: recorded.unwrap_or(0),
                presented,
            });
        }
        if recorded != Some(presented) {
            map.insert(key.0.clone(), presented);
            self.write(&map)?;
        }
        Ok(Verdict::Accepted)
    }

    /// Records the counter a new credential showed at enrolment (replacing any record).
    pub fn record_enrolment(&self, key: &CredentialKey, counter: u32) -> Result<(), CounterError> {
        let _guard = self.lock()?;
        let mut map = self.read()?;
        map.insert(key.0.clone(), counter);
        self.write(&map)
    }

    /// The recorded counter of `key`.
    pub fn get(&self, key: &CredentialKey) -> Result<Option<u32>, CounterError> {
        let _guard = self.lock()?;
        Ok(self.read()?.get(key.as_str()).copied())
    }

    /// Forgets `key` (its credential was removed).
    pub fn remove(&self, key: &CredentialKey) -> Result<(), CounterError> {
        let _guard = self.lock()?;
        let mut map = self.read()?;
        if map.remove(key.as_str()).is_some() {
            self.write(&map)?;
        }
        Ok(())
    }
}

/// Replaces `path` with `bytes`: a new file in the same directory (mode `mode`), fsync, rename
/// over `path`, fsync of the directory. Readers see the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", hex::encode(nonce)));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CredentialKey {
        CredentialKey::of(&PublicKey::EdDsa([n; 32]))
    }

    #[test]
    fn decide_rules() {
        assert!(decide(None, 0));
        assert!(decide(None, 7));
        assert!(decide(Some(0), 0));
        assert!(decide(Some(0), 3));
        assert!(decide(Some(5), 6));
        assert!(!decide(Some(5), 5));
        assert!(!decide(Some(5), 4));
        assert!(!decide(Some(5), 0));
    }

    #[test]
    fn increase_accepted_equal_lower_zero_denied() {
        let d = tempfile::tempdir().unwrap();
        let s = CounterStore::new(d.path().join("sub/counters"));
        let k = key(1);
        assert_eq!(s.check_and_record(&k, 10).unwrap(), Verdict::Accepted);
        assert_eq!(s.get(&k).unwrap(), Some(10));
        assert_eq!(s.check_and_record(&k, 11).unwrap(), Verdict::Accepted);
        for bad in [11, 3, 0] {
            assert_eq!(
                s.check_and_record(&k, bad).unwrap(),
                Verdict::PossibleClone {
                    recorded: 11,
                    presented: bad
                }
            );
        }
        assert_eq!(s.get(&k).unwrap(), Some(11));
        // Another credential is independent.
        assert_eq!(s.check_and_record(&key(2), 1).unwrap(), Verdict::Accepted);
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(text.starts_with(HEADER));
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn zero_counter_tokens_and_enrolment() {
        let d = tempfile::tempdir().unwrap();
        let s = CounterStore::new(d.path().join("counters"));
        let k = key(3);
        s.record_enrolment(&k, 0).unwrap();
        assert_eq!(s.get(&k).unwrap(), Some(0));
        assert_eq!(s.check_and_record(&k, 0).unwrap(), Verdict::Accepted);
        assert_eq!(s.check_and_record(&k, 4).unwrap(), Verdict::Accepted);
        assert!(matches!(
            s.check_and_record(&k, 0).unwrap(),
            Verdict::PossibleClone { recorded: 4, .. }
        ));
        s.remove(&k).unwrap();
        assert_eq!(s.get(&k).unwrap(), None);
    }

    #[test]
    fn corrupt_or_unsafe_store_fails_closed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("counters");
        std::fs::write(&p, "nonsense\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = CounterStore::new(&p);
        assert!(matches!(
            s.check_and_record(&key(1), 5),
            Err(CounterError::Corrupt { .. })
        ));
        std::fs::write(&p, format!("{HEADER}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            s.check_and_record(&key(1), 5),
            Err(CounterError::File(_))
        ));
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("counters");
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let s = CounterStore::new(&path);
                std::thread::spawn(move || {
                    for i in 1..=25u32 {
                        assert_eq!(s.check_and_record(&key(t), i).unwrap(), Verdict::Accepted);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = CounterStore::new(&path);
        for t in 0..4u8 {
            assert_eq!(s.get(&key(t)).unwrap(), Some(25));
        }
        // Two threads racing the same credential with the same counter: exactly one wins.
        let k = key(9);
        let wins: usize = (0..2)
            .map(|_| {
                let s = CounterStore::new(&path);
                let k = k.clone();
                std::thread::spawn(move || s.check_and_record(&k, 1).unwrap() == Verdict::Accepted)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
