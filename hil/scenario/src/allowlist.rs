//! The committed list of scenarios allowed to skip on the QEMU target, each with its reason.

use std::path::Path;

use serde::Deserialize;

/// The allow-list's file name (in the scenario root).
pub const FILE_NAME: &str = "skip-allowlist.toml";

/// One allowed skip.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedSkip {
    /// The scenario's name (`attacks/card-moved-stays-sealed`).
    pub scenario: String,
    /// Why it may skip on QEMU for now (what it waits for).
    pub reason: String,
}

/// The allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipAllowList {
    /// The entries.
    #[serde(default)]
    pub skip: Vec<AllowedSkip>,
}

impl SkipAllowList {
    /// Reads the list (a missing file is an empty list); every entry needs a reason.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let list: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(bad) = list.skip.iter().find(|s| s.reason.trim().is_empty()) {
            return Err(format!(
                "{}: the entry for {} has no reason",
                path.display(),
                bad.scenario
            ));
        }
        Ok(list)
    }

    /// The reason a scenario may skip, if it is listed.
    pub fn allows(&self, scenario: &str) -> Option<&str> {
        self.skip
            .iter()
            .find(|s| s.scenario == scenario)
            .map(|s| s.reason.as_str())
    }
}
