//! What an image holds: every package with version and sha256, the kernel, our binaries, the card
//! layout; and how two package sets differ.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Profile;

/// One Debian package on the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageEntry {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture (`arm64` or `all`).
    pub arch: String,
    /// The `.deb` file's size in bytes.
    pub size: u64,
    /// The `.deb` file's sha256 (verified by apt against the signed index when fetched).
    pub sha256: String,
}

/// One of our binaries on the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryEntry {
    /// Where it is in the guest.
    pub dest: String,
    /// Its sha256.
    pub sha256: String,
}

/// The manifest of a built image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Test or production.
    pub profile: Profile,
    /// The raw card image in the cache.
    pub card: PathBuf,
    /// The card image's sha256.
    pub card_sha256: String,
    /// Partition layout.
    pub layout: card::CardLayout,
    /// The kernel release (`uname -r` in the guest).
    pub kernel_release: String,
    /// The guest's ssh host public key (`ssh-ed25519 …`), for strict host-key checking.
    pub host_key: String,
    /// Every Debian package, sorted by name.
    pub packages: Vec<PackageEntry>,
    /// Our binaries.
    pub binaries: Vec<BinaryEntry>,
    /// Cache keys of the stages this card was assembled from.
    pub stages: BTreeMap<String, String>,
}

/// How a package set changed between two resolutions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDiff {
    /// Packages that are new.
    pub added: Vec<(String, String)>,
    /// Packages that are gone.
    pub removed: Vec<(String, String)>,
    /// Packages whose version changed: name, old, new.
    pub changed: Vec<(String, String, String)>,
}

impl ManifestDiff {
    /// Compares two package lists.
    pub fn between(old: &[PackageEntry], new: &[PackageEntry]) -> Self {
        let old: BTreeMap<_, _> = old.iter().map(|p| (&p.name, &p.version)).collect();
        let new: BTreeMap<_, _> = new.iter().map(|p| (&p.name, &p.version)).collect();
        let mut diff = Self::default();
        for (name, version) in &new {
            match old.get(name) {
                None => diff.added.push(((*name).clone(), (*version).clone())),
                Some(o) if o != version => {
                    diff.changed
                        .push(((*name).clone(), (*o).clone(), (*version).clone()))
                }
                Some(_) => {}
            }
        }
        for (name, version) in &old {
            if !new.contains_key(name) {
                diff.removed.push(((*name).clone(), (*version).clone()));
            }
        }
        diff
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for ManifestDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "package set unchanged");
        }
        for (name, old, new) in &self.changed {
            writeln!(f, "  ~ {name} {old} -> {new}")?;
        }
        for (name, version) in &self.added {
            writeln!(f, "  + {name} {version}")?;
        }
        for (name, version) in &self.removed {
            writeln!(f, "  - {name} {version}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> PackageEntry {
        PackageEntry {
            name: name.into(),
            version: version.into(),
            arch: "arm64".into(),
            size: 1,
            sha256: String::new(),
        }
    }

    #[test]
    fn diff_names_changed_added_and_removed_packages() {
        let old = [pkg("a", "1"), pkg("b", "1"), pkg("c", "1")];
        let new = [pkg("a", "1"), pkg("b", "2"), pkg("d", "1")];
        let diff = ManifestDiff::between(&old, &new);
        assert_eq!(diff.changed, vec![("b".into(), "1".into(), "2".into())]);
        assert_eq!(diff.added, vec![("d".into(), "1".into())]);
        assert_eq!(diff.removed, vec![("c".into(), "1".into())]);
        assert_eq!(diff.to_string(), "  ~ b 1 -> 2\n  + d 1\n  - c 1\n");
        assert!(ManifestDiff::between(&old, &old).is_empty());
    }
}
