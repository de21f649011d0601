//! Rotation after a field recovery (DESIGN.md §4): a new volume key (the data re-encrypted,
//! online on the active mapping), a new recovery secret for the vendor, and the Zymkey slot's
//! volume check re-sealed to the new key — so a recovery secret, or a volume key, that was ever
//! exposed stops opening the card.
//!
//! Order, and what a power cut at each step leaves:
//! 1. unseal with the Zymkey, verify the volume check (nothing written);
//! 2. add two keyslots for a fresh volume key, not yet used by the data: the sealed secret
//!    (same passphrase as the current sealed slot, so the one unsealed secret opens both keys,
//!    which is what resuming needs) and a fresh recovery secret; then a `keybound-rotation`
//!    token recording them: the new keyslots, the secret re-sealed with the new key's volume
//!    check, and the new recovery secret encrypted to the vendor (a cut before the data phase:
//!    [`finish_rotation`] discards all of it; the card boots as before);
//! 3. re-encrypt the data with checksum resilience (libcryptsetup; a cut leaves the LUKS2
//!    online-reencrypt requirement and [`finish_rotation`] resumes it with the unsealed
//!    secret); at the end libcryptsetup removes every keyslot of the old key — the old sealed
//!    slot, the old recovery slot, any foreign slot;
//! 4. promote: after checking that the recorded blob unseals, opens the new sealed slot and
//!    matches the new key's volume check, `keybound-zymkey` and `keybound-recovery` are
//!    rewritten from the `keybound-rotation` token, which is then removed (a cut here:
//!    [`finish_rotation`] promotes again).
//!
//! The `keybound-rotation` token is parsed strictly and drives nothing by itself: what it
//! records is verified against the Zymkey and the header before it is used.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::check::VolumeCheck;
use crate::element::SecureElement;
use crate::error::{Error, Result};
use crate::luks::Luks2;
use crate::ops::{read_tokens_from, unseal};
use crate::payload::SealedPayload;
use crate::profile::{RecoveryKdf, minimal_pbkdf, recovery_pbkdf};
use crate::secret::{RecoverySecret, SECRET_LEN, SealedSecret, VolumeKey};
use crate::token::{MAX_KEYSLOTS, MAX_PAYLOAD, RECOVERY_TOKEN, RecoveryToken, ZYMKEY_TOKEN};
use crate::token::{TOKEN_VERSION, ZymkeyToken};

/// Token type of a rotation under way.
pub const ROTATION_TOKEN: &str = "keybound-rotation";

/// Progress of the data phase: `(bytes done, bytes total)`; return `false` to stop cleanly
/// (the rotation is then finished later by [`finish_rotation`]).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> bool;

/// What a rotation changed. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The new sealed keyslot (the `keybound-zymkey` token names it).
    pub sealed_keyslot: u32,
    /// The new recovery keyslot (the `keybound-recovery` token names it).
    pub recovery_keyslot: u32,
    /// Keyslots of the old volume key that are gone.
    pub removed_keyslots: Vec<u32>,
    /// Whether the data was re-encrypted on an active mapping (online) or offline.
    pub online: bool,
    /// Whether this finished a rotation that an earlier run started.
    pub resumed: bool,
}

/// The `keybound-rotation` token.
struct Pending {
    sealed_keyslot: u32,
    recovery_keyslot: u32,
    sealed_blob: Vec<u8>,
    age_ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("sealed_keyslot", &self.sealed_keyslot)
            .field("recovery_keyslot", &self.recovery_keyslot)
            .finish_non_exhaustive()
    }
}

impl Pending {
    const FIELDS: [&'static str; 7] = [
        "type",
        "keyslots",
        "version",
        "sealed-keyslot",
        "recovery-keyslot",
        "sealed-blob",
        "age-ciphertext",
    ];

    fn to_json(&self) -> Value {
        json!({
            "type": ROTATION_TOKEN,
            "keyslots": [],
            "version": TOKEN_VERSION,
            "sealed-keyslot": self.sealed_keyslot,
            "recovery-keyslot": self.recovery_keyslot,
            "sealed-blob": B64.encode(&self.sealed_blob),
            "age-ciphertext": B64.encode(&self.age_ciphertext),
        })
    }

    /// Strict: exactly the fields above, each of its type; keyslots in range and distinct.
    fn from_json(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("not a JSON object")?;
        if let Some(k) = obj.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field {:?}",
                k.chars().take(64).collect::<String>()
            ));
        }
        let get = |f: &str| obj.get(f).ok_or(format!("field `{f}` is missing"));
        if get("type")? != ROTATION_TOKEN {
            return Err("field `type` is not keybound-rotation".into());
        }
        if get("keyslots")?.as_array().is_none_or(|a| !a.is_empty()) {
            return Err("field `keyslots` must be an empty array".into());
        }
        if get("version")?.as_u64() != Some(TOKEN_VERSION) {
            return Err(format!("field `version` must be {TOKEN_VERSION}"));
        }
        let keyslot = |f: &str| -> Result<u32, String> {
            get(f)?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n < MAX_KEYSLOTS)
                .ok_or(format!("field `{f}` must be a keyslot number"))
        };
        let bytes = |f: &str| -> Result<Vec<u8>, String> {
            let s = get(f)?
                .as_str()
                .ok_or(format!("field `{f}` must be a string"))?;
            if s.len() > MAX_PAYLOAD * 4 / 3 + 4 {
                return Err(format!("field `{f}` is too long"));
            }
            B64.decode(s)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or(format!("field `{f}` must be non-empty padded base64"))
        };
        let p = Self {
            sealed_keyslot: keyslot("sealed-keyslot")?,
            recovery_keyslot: keyslot("recovery-keyslot")?,
            sealed_blob: bytes("sealed-blob")?,
            age_ciphertext: bytes("age-ciphertext")?,
        };
        if p.sealed_keyslot == p.recovery_keyslot {
            return Err("both keyslots are the same".into());
        }
        Ok(p)
    }
}

/// The rotation token of the header, if any: `(token id, token)`.
fn pending(luks: &mut Luks2) -> Result<Option<(u32, Pending)>> {
    let mut found = luks.tokens_of_type(ROTATION_TOKEN)?;
    if found.len() > 1 {
        return Err(Error::DuplicateToken {
            device: luks.path().into(),
            kind: ROTATION_TOKEN,
        });
    }
    found
        .pop()
        .map(|(id, json)| {
            Pending::from_json(&json)
                .map(|p| (id, p))
                .map_err(|e| luks.state(format!("{ROTATION_TOKEN} token: {e}")))
        })
        .transpose()
}

/// Rotates the volume key and the recovery secret of the sealed volume at `device` (see the
/// module documentation). `active_name` is the active mapping (`/dev/mapper/NAME`) for an
/// online re-encryption, `None` for a volume that is not open. The new recovery secret is
/// encrypted to `vendor` and never returned. An interrupted earlier rotation is finished
/// instead (its new secret was already made).
pub fn rotate(
    device: &Path,
    active_name: Option<&str>,
    element: &dyn SecureElement,
    vendor: &age::x25519::Recipient,
    recovery_kdf: RecoveryKdf,
    progress: Option<Progress<'_>>,
) -> Result<Rotation> {
    let mut progress = progress;
    // A reborrow with a shorter trait-object lifetime (as_deref_mut cannot shorten it).
    #[allow(clippy::option_as_ref_deref)]
    let first: Option<Progress<'_>> = progress.as_mut().map(|p| -> Progress<'_> { &mut **p });
    if let Some(done) = finish_rotation(device, active_name, element, first)? {
        return Ok(done);
    }
    let unsealed = unseal(device, element)?;
    let mut luks = Luks2::open(device)?;
    if luks.reencrypt_in_progress()? {
        return Err(luks.state(
            "a re-encryption that is not keybound's rotation is in progress; finish it first \
             (cryptsetup reencrypt --resume-only)",
        ));
    }
    read_tokens_from(&mut luks)?
        .zymkey
        .ok_or(Error::MissingToken {
            device: device.into(),
            kind: ZYMKEY_TOKEN,
        })?;
    let old_key = unsealed.volume_key_of(&mut luks)?;
    let uuid = luks.uuid()?;
    unsealed.verify_volume_key(device, &uuid, &old_key)?;
    if let Some(name) = active_name {
        unsealed.verify_active(name)?;
    }
    let before = keyslots(&mut luks)?;

    // 2. The new key's keyslots, inert until the data uses the new key, and the record.
    let new_key = VolumeKey::generate(old_key.expose_secret().len())?;
    drop(old_key);
    luks.set_pbkdf(&minimal_pbkdf())?;
    let sealed_keyslot = luks.add_unbound_keyslot(&new_key, unsealed.passphrase())?;
    let recovery = RecoverySecret::generate()?;
    let pbkdf = recovery_pbkdf(recovery_kdf).map_err(|reason| luks.state(reason))?;
    luks.set_pbkdf(&pbkdf)?;
    let recovery_keyslot = luks.add_unbound_keyslot(&new_key, recovery.to_typable().as_bytes())?;
    let age_ciphertext = age::encrypt(vendor, recovery.expose_secret())
        .map_err(|e| Error::AgeEncrypt(e.to_string()))?;
    drop(recovery);
    let mut secret = [0u8; SECRET_LEN];
    secret.copy_from_slice(unsealed.passphrase());
    let secret = SealedSecret::from_bytes(secret);
    let payload = SealedPayload {
        check: VolumeCheck::compute(&secret, &uuid, &new_key),
        secret,
    };
    drop(new_key);
    let record = Pending {
        sealed_keyslot,
        recovery_keyslot,
        sealed_blob: element.lock(&payload.encode())?,
        age_ciphertext,
    };
    luks.set_token(None, &record.to_json())?;

    // 3. The data, to the new key.
    luks.set_pbkdf(&minimal_pbkdf())?;
    luks.reencrypt(
        active_name,
        unsealed.passphrase(),
        Some((unsealed.keyslot(), sealed_keyslot)),
        false,
        progress,
    )?;
    if luks.reencrypt_in_progress()? {
        return Err(interrupted(&luks));
    }
    drop(luks);

    // 4. Promote the record.
    let mut r = promote(device, element)?;
    r.online = active_name.is_some();
    r.removed_keyslots = before
        .into_iter()
        .filter(|k| *k != r.sealed_keyslot && *k != r.recovery_keyslot)
        .collect();
    Ok(r)
}

/// Finishes a rotation that was interrupted (a power cut, a stop from `progress`): resumes the
/// re-encryption with the unsealed secret (online through `active_name`, or offline) and
/// promotes the new tokens; or, if the data phase never started, discards the record and the
/// two new keyslots. `Ok(None)` when there is no rotation under way (nothing is written).
/// keybound-init can call this before unlocking; `keybound rotate` calls it first.
pub fn finish_rotation(
    device: &Path,
    active_name: Option<&str>,
    element: &dyn SecureElement,
    progress: Option<Progress<'_>>,
) -> Result<Option<Rotation>> {
    let mut luks = Luks2::open(device)?;
    let Some((token_id, record)) = pending(&mut luks)? else {
        return Ok(None);
    };
    if luks.reencrypt_in_progress()? {
        // The current zymkey token still names the old sealed slot; its secret opens both.
        let (_, zymkey) = luks
            .tokens_of_type(ZYMKEY_TOKEN)?
            .pop()
            .ok_or(Error::MissingToken {
                device: device.into(),
                kind: ZYMKEY_TOKEN,
            })?;
        let zymkey = ZymkeyToken::from_json(&zymkey).map_err(|source| Error::Token {
            device: device.into(),
            source,
        })?;
        let payload = SealedPayload::decode(&element.unlock(&zymkey.sealed_blob)?)?;
        luks.reencrypt(
            active_name,
            payload.secret.expose_secret(),
            None,
            true,
            progress,
        )?;
        if luks.reencrypt_in_progress()? {
            return Err(interrupted(&luks));
        }
    } else if !luks.keyslot_bound_to_data(record.sealed_keyslot)? {
        // Cut before the data phase: the old key still serves; undo the preparation.
        for ks in [record.sealed_keyslot, record.recovery_keyslot] {
            if !luks.keyslot_bound_to_data(ks)? && keyslots(&mut luks)?.contains(&ks) {
                luks.destroy_keyslot(ks)?;
            }
        }
        luks.remove_token(token_id)?;
        return Ok(None);
    }
    drop(luks);
    let mut r = promote(device, element)?;
    r.online = active_name.is_some();
    r.resumed = true;
    Ok(Some(r))
}

/// Step 4: verifies the record against the Zymkey and the header, rewrites the two tokens from
/// it, removes it, and destroys any keyslot other than the two new ones.
fn promote(device: &Path, element: &dyn SecureElement) -> Result<Rotation> {
    let mut luks = Luks2::open(device)?;
    let (record_id, record) = pending(&mut luks)?.ok_or_else(|| {
        luks.state("the re-encryption finished but its keybound-rotation token is gone")
    })?;
    let payload = SealedPayload::decode(&element.unlock(&record.sealed_blob)?)?;
    luks.require_luks2_keyslot(record.sealed_keyslot)?;
    luks.require_luks2_keyslot(record.recovery_keyslot)?;
    if !luks.keyslot_bound_to_data(record.sealed_keyslot)? {
        return Err(luks.state("the rotation's sealed keyslot does not open the data"));
    }
    let key = luks
        .volume_key(record.sealed_keyslot, payload.secret.expose_secret())?
        .ok_or(Error::WrongSecret {
            device: device.into(),
            keyslot: record.sealed_keyslot,
        })?;
    let uuid = luks.uuid()?;
    payload
        .check
        .verify(&VolumeCheck::compute(&payload.secret, &uuid, &key))
        .map_err(|m| Error::VolumeCheck {
            device: device.into(),
            what: m.what(),
        })?;
    drop(key);
    // By id: the old tokens may name keyslots that are gone.
    let zymkey_id = luks.tokens_of_type(ZYMKEY_TOKEN)?.first().map(|t| t.0);
    let recovery_id = luks.tokens_of_type(RECOVERY_TOKEN)?.first().map(|t| t.0);
    let zymkey = ZymkeyToken::new(record.sealed_keyslot, record.sealed_blob.clone());
    luks.set_token(zymkey_id, &zymkey.to_json())?;
    let recovery = RecoveryToken {
        keyslot: record.recovery_keyslot,
        age_ciphertext: record.age_ciphertext.clone(),
    };
    luks.set_token(recovery_id, &recovery.to_json())?;
    luks.remove_token(record_id)?;
    let mut removed = Vec::new();
    for ks in keyslots(&mut luks)? {
        if ks != record.sealed_keyslot && ks != record.recovery_keyslot {
            luks.destroy_keyslot(ks)?;
            removed.push(ks);
        }
    }
    Ok(Rotation {
        sealed_keyslot: record.sealed_keyslot,
        recovery_keyslot: record.recovery_keyslot,
        removed_keyslots: removed,
        online: false,
        resumed: false,
    })
}

/// The data phase stopped before the end (the progress callback said stop).
fn interrupted(luks: &Luks2) -> Error {
    luks.state(
        "the re-encryption stopped before the end; the data is safe, and the rotation \
         finishes when it is run again (sealed_root::finish_rotation)",
    )
}

/// The keyslot numbers in the header.
fn keyslots(luks: &mut Luks2) -> Result<Vec<u32>> {
    let json = luks.header_json()?;
    let mut v: Vec<u32> = json["keyslots"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, _)| id.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        Pending {
            sealed_keyslot: 2,
            recovery_keyslot: 3,
            sealed_blob: vec![1; 40],
            age_ciphertext: b"age-encryption.org/v1\n".to_vec(),
        }
        .to_json()
    }

    #[test]
    fn rotation_token_round_trips_and_is_strict() {
        let p = Pending::from_json(&valid()).unwrap();
        assert_eq!((p.sealed_keyslot, p.recovery_keyslot), (2, 3));
        let bad = |field: &str, v: Value| {
            let mut j = valid();
            j[field] = v;
            Pending::from_json(&j).unwrap_err()
        };
        assert!(bad("extra", json!(1)).contains("unknown field"));
        assert!(bad("version", json!(2)).contains("version"));
        assert!(bad("keyslots", json!(["2"])).contains("keyslots"));
        assert!(bad("sealed-keyslot", json!(32)).contains("sealed-keyslot"));
        assert!(bad("recovery-keyslot", json!(2)).contains("same"));
        assert!(bad("sealed-blob", json!("not base64!")).contains("sealed-blob"));
        assert!(bad("age-ciphertext", json!("")).contains("age-ciphertext"));
        assert!(bad("type", json!("keybound-zymkey")).contains("type"));
        let mut j = valid();
        j.as_object_mut().unwrap().remove("sealed-blob");
        assert!(Pending::from_json(&j).unwrap_err().contains("missing"));
    }
}
