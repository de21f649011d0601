//! What a header says about its protection, for `keybound status`: cipher, keyslots with their
//! role and KDF, tokens. Public facts only (no salts, digests or blobs).

use std::path::Path;

use serde_json::{Value, json};

use crate::error::Result;
use crate::luks::Luks2;
use crate::ops::read_tokens_from;

/// Who a keyslot belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRole {
    /// Opened by the Zymkey-sealed secret (named by the `keybound-zymkey` token).
    Sealed,
    /// Opened by the vendor's recovery secret (named by the `keybound-recovery` token).
    Recovery,
    /// Not keybound's: e.g. a passphrase someone added. Worth reporting.
    Other,
}

impl SlotRole {
    /// For text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sealed => "sealed",
            Self::Recovery => "recovery",
            Self::Other => "other",
        }
    }
}

/// One keyslot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyslotSummary {
    /// Keyslot number.
    pub keyslot: u32,
    /// Whose it is.
    pub role: SlotRole,
    /// `pbkdf2`, `argon2id` or `argon2i`.
    pub kdf: String,
    /// PBKDF2 iterations, or argon2 time cost.
    pub kdf_time: u64,
    /// Argon2 memory in KiB (0 for PBKDF2).
    pub kdf_memory_kib: u64,
}

/// The protection a header shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSummary {
    /// LUKS2 UUID.
    pub uuid: String,
    /// Data cipher, `cipher-mode`.
    pub cipher: String,
    /// Volume key size in bits.
    pub volume_key_bits: u64,
    /// Keyslots in number order.
    pub keyslots: Vec<KeyslotSummary>,
    /// A valid `keybound-zymkey` token is present.
    pub zymkey_token: bool,
    /// A valid `keybound-recovery` token is present.
    pub recovery_token: bool,
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Summarises the header at `device` (tokens parsed strictly: a malformed one is an error).
pub fn summarize(device: &Path) -> Result<VolumeSummary> {
    let mut luks = Luks2::open(device)?;
    let tokens = read_tokens_from(&mut luks)?;
    let json = luks.header_json()?;
    let uuid = crate::check::format_uuid(&luks.uuid()?);
    let cipher = luks.cipher_spec()?;
    let sealed = tokens.zymkey.as_ref().map(|(_, t)| t.keyslot);
    let recovery = tokens.recovery.as_ref().map(|(_, t)| t.keyslot);
    let mut keyslots: Vec<KeyslotSummary> = json["keyslots"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, ks)| {
            let keyslot = id.parse::<u32>().ok()?;
            let kdf = &ks["kdf"];
            let kdf_name = kdf["type"].as_str().unwrap_or("unknown").to_string();
            let (kdf_time, kdf_memory_kib) = if kdf_name == "pbkdf2" {
                (number(&kdf["iterations"]), 0)
            } else {
                (number(&kdf["time"]), number(&kdf["memory"]))
            };
            Some(KeyslotSummary {
                keyslot,
                role: if Some(keyslot) == sealed {
                    SlotRole::Sealed
                } else if Some(keyslot) == recovery {
                    SlotRole::Recovery
                } else {
                    SlotRole::Other
                },
                kdf: kdf_name,
                kdf_time,
                kdf_memory_kib,
            })
        })
        .collect();
    keyslots.sort_by_key(|k| k.keyslot);
    let volume_key_bits = json["keyslots"]
        .as_object()
        .and_then(|m| m.values().next())
        .map_or(0, |ks| number(&ks["key_size"]) * 8);
    Ok(VolumeSummary {
        uuid,
        cipher,
        volume_key_bits,
        keyslots,
        zymkey_token: sealed.is_some(),
        recovery_token: recovery.is_some(),
    })
}

impl VolumeSummary {
    /// As JSON, for `keybound status --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "uuid": self.uuid,
            "cipher": self.cipher,
            "volume_key_bits": self.volume_key_bits,
            "keyslots": self.keyslots.iter().map(|k| json!({
                "keyslot": k.keyslot,
                "role": k.role.name(),
                "kdf": k.kdf,
                "kdf_time": k.kdf_time,
                "kdf_memory_kib": k.kdf_memory_kib,
            })).collect::<Vec<_>>(),
            "tokens": {
                "keybound-zymkey": self.zymkey_token,
                "keybound-recovery": self.recovery_token,
            },
        })
    }
}
