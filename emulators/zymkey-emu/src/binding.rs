//! Binding: the fingerprint a module's host software measures, and Zymbit's rules for it.
//!
//! The fingerprint is SHA-256 over the board id, the card id and the module's own serial. In
//! developer mode the module follows its host (rebinds on a move, so it still unlocks); in
//! production mode (tab cut, permanent) a foreign fingerprint stops every security service.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Binding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Tab intact: the binding follows the host.
    Developer,
    /// Tab cut: bound for good.
    Production,
}

/// What the harness reports about the board the module sits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Board id (the Pi's CPU serial, revision, MAC: whatever the board model reports).
    pub board: String,
    /// Card id (SD/eMMC CID).
    pub card: String,
}

/// A fingerprint digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({}..)", hex::encode(&self.0[..4]))
    }
}

impl Fingerprint {
    /// Measures `host` as seen by module `serial`.
    pub fn measure(host: &Host, serial: &str) -> Self {
        let mut h = Sha256::new();
        for field in [
            host.board.as_bytes(),
            host.card.as_bytes(),
            serial.as_bytes(),
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        Self(h.finalize().into())
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// The outcome of a binding check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Services run; in developer mode `rebind` is the new binding to store, if it changed.
    Allowed {
        /// A new binding to persist.
        rebind: Option<Fingerprint>,
    },
    /// No host measured: the module is not on a board.
    NotAttached,
    /// Production mode on a foreign host: services stopped.
    Foreign,
}

/// Zymbit's rule: developer mode follows the host, production mode insists on the bound one.
pub fn check(mode: Mode, bound: Option<Fingerprint>, measured: Option<Fingerprint>) -> Verdict {
    let Some(measured) = measured else {
        return Verdict::NotAttached;
    };
    match (mode, bound) {
        (_, Some(b)) if b.matches(&measured) => Verdict::Allowed { rebind: None },
        (Mode::Developer, _) => Verdict::Allowed {
            rebind: Some(measured),
        },
        (Mode::Production, _) => Verdict::Foreign,
    }
}
