//! The provisioned-card cache: a card provisioned once in a QEMU guest (the in-place encryption
//! takes tens of seconds under TCG) is kept with its Zymkey module's state, so later scenarios
//! that start from "a provisioned board" get an overlay of it and a module in the same state.
//!
//! Copying a module's state is a harness cache operation only: no scenario step can ask for it.
//! An entry is keyed by everything that shaped it (the image, the board's id, the module's binding
//! mode, the board profile, the vendor's recipient, the Zymkey emulator's build); concurrent runs
//! wanting the same entry wait for each other on a lock file instead of provisioning twice.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The cache directory (one sub-directory per entry).
#[derive(Debug, Clone)]
pub(crate) struct ProvisionedCache {
    dir: PathBuf,
}

/// A cached provisioned card.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The card (qcow2; an overlay over the image's card).
    pub(crate) card: PathBuf,
    /// The card id the module was bound with.
    pub(crate) card_serial: String,
    /// The module's state (`snapshot` of zymkey-emu's control protocol).
    pub(crate) module_state: Value,
}

/// Held while an entry is looked up, made, or stored.
pub(crate) struct EntryLock(#[allow(dead_code)] Flock<File>);

impl ProvisionedCache {
    /// The cache under `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The key for these inputs, in order.
    pub(crate) fn key(parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Locks `key` (blocking until another run finished with it).
    pub(crate) fn lock(&self, key: &str) -> std::io::Result<EntryLock> {
        std::fs::create_dir_all(&self.dir)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("{key}.lock")))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(EntryLock)
            .map_err(|(_, e)| std::io::Error::from(e))
    }

    /// The entry for `key`, if complete.
    pub(crate) fn get(&self, key: &str, _lock: &EntryLock) -> Option<Entry> {
        let dir = self.entry_dir(key);
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join("entry.json")).ok()?).ok()?;
        let card = dir.join("card.qcow2");
        card.is_file().then(|| Entry {
            card,
            card_serial: meta["card_serial"].as_str().unwrap_or_default().to_string(),
            module_state: meta["module_state"].clone(),
        })
    }

    /// Stores a provisioned card (copied) with its module's state, replacing any old entry.
    /// Written into a scratch directory first and renamed: a crash leaves no half entry.
    pub(crate) fn put(
        &self,
        key: &str,
        _lock: &EntryLock,
        card: &Path,
        card_serial: &str,
        module_state: &Value,
    ) -> std::io::Result<()> {
        let dir = self.entry_dir(key);
        let scratch = self.dir.join(format!("{key}.partial"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        std::fs::copy(card, scratch.join("card.qcow2"))?;
        let meta = json!({"card_serial": card_serial, "module_state": module_state});
        std::fs::write(scratch.join("entry.json"), serde_json::to_vec(&meta)?)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&scratch, &dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_with_any_input_and_entries_round_trip() {
        assert_ne!(
            ProvisionedCache::key(&["a", "bc"]),
            ProvisionedCache::key(&["ab", "c"])
        );
        let dir = tempfile::tempdir().unwrap();
        let cache = ProvisionedCache::new(dir.path().join("cache"));
        let key = ProvisionedCache::key(&["image", "board"]);
        let lock = cache.lock(&key).unwrap();
        assert!(cache.get(&key, &lock).is_none());
        let card = dir.path().join("card.qcow2");
        std::fs::write(&card, b"qcow2").unwrap();
        cache
            .put(&key, &lock, &card, "SD0001", &json!({"secret": "00"}))
            .unwrap();
        let entry = cache.get(&key, &lock).unwrap();
        assert_eq!(entry.card_serial, "SD0001");
        assert_eq!(entry.module_state["secret"], "00");
        assert_eq!(std::fs::read(entry.card).unwrap(), b"qcow2");
    }
}
