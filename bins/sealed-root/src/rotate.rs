//! Rotation after a field recovery (DESIGN.md §4): a new volume key (the data re-encrypted,
//! online on the active mapping), a new recovery secret for the vendor, and the Zymkey slot's
//! volume check re-sealed to the new key — so a recovery secret, or a volume key, that was ever
//! exposed stops opening the card.
//!
//! Order, and what a power cut at each step leaves:
//! 1. unseal with the Zymkey, verify the volume check (nothing written);
//! 2. add two keyslots for a fresh volume key, not yet used by the data: the sealed secret
//!    (same passphrase as the current sealed slot, so one passphrase opens both keys and an
//!    interrupted re-encryption can be resumed with the unsealed secret) and a fresh recovery
//!    secret (the card still boots as before; the two slots are inert);
//! 3. re-encrypt the data with checksum resilience (libcryptsetup; an interruption leaves the
//!    header's re-encrypt requirement; the data is safe and the operation resumes with the
//!    sealed secret); at the end libcryptsetup removes every keyslot of the old key — the old
//!    sealed slot, the old recovery slot and any foreign slot;
//! 4. re-seal the secret with the new volume check and point `keybound-zymkey` at the new slot;
//!    write `keybound-recovery` with the new secret encrypted to the vendor.
//!
//! Between the end of 3 and the end of 4 (two header writes) the tokens name destroyed keyslots:
//! a power cut exactly there needs the vendor's bench (the volume key is unchanged by then, so
//! the card is not lost: see the README).

use std::path::Path;

use crate::check::VolumeCheck;
use crate::element::SecureElement;
use crate::error::{Error, Result};
use crate::luks::Luks2;
use crate::ops::{Unsealed, read_tokens_from, unseal};
use crate::payload::SealedPayload;
use crate::profile::{RecoveryKdf, minimal_pbkdf, recovery_pbkdf};
use crate::secret::{RecoverySecret, SECRET_LEN, SealedSecret, VolumeKey};
use crate::token::{RecoveryToken, ZYMKEY_TOKEN, ZymkeyToken};

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
}

/// Rotates the volume key and the recovery secret of the sealed volume at `device` (see the
/// module documentation). `active_name` is the active mapping (`/dev/mapper/NAME`) for an
/// online re-encryption, `None` for a volume that is not open. The new recovery secret is
/// encrypted to `vendor` and never returned.
pub fn rotate(
    device: &Path,
    active_name: Option<&str>,
    element: &dyn SecureElement,
    vendor: &age::x25519::Recipient,
    recovery_kdf: RecoveryKdf,
) -> Result<Rotation> {
    let unsealed = unseal(device, element)?;
    let mut luks = Luks2::open(device)?;
    if luks.reencrypt_in_progress()? {
        return Err(luks.state(
            "a re-encryption is already in progress (an interrupted rotation): it resumes when \
             the volume is opened with the sealed secret",
        ));
    }
    let tokens = read_tokens_from(&mut luks)?;
    let (zymkey_token, _) = tokens.zymkey.ok_or(Error::MissingToken {
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

    // 2. The new key's keyslots, inert until the data uses the new key.
    let new_key = VolumeKey::generate(old_key.expose_secret().len())?;
    drop(old_key);
    luks.set_pbkdf(&minimal_pbkdf())?;
    let sealed_keyslot = luks.add_unbound_keyslot(&new_key, unsealed.passphrase())?;
    let recovery = RecoverySecret::generate()?;
    let pbkdf = recovery_pbkdf(recovery_kdf).map_err(|reason| luks.state(reason))?;
    luks.set_pbkdf(&pbkdf)?;
    let recovery_keyslot = luks.add_unbound_keyslot(&new_key, recovery.to_typable().as_bytes())?;
    // The age ciphertext is made before the data phase: nothing can fail after it but writes.
    let age_ciphertext = age::encrypt(vendor, recovery.expose_secret())
        .map_err(|e| Error::AgeEncrypt(e.to_string()))?;
    drop(recovery);
    let blob = seal_for(&unsealed, element, &uuid, &new_key)?;

    // 3. The data, to the new key.
    luks.set_pbkdf(&minimal_pbkdf())?;
    luks.reencrypt(
        active_name,
        unsealed.passphrase(),
        unsealed.keyslot(),
        sealed_keyslot,
    )?;

    // 4. The tokens, at the new keyslots (a fresh context: the header changed under the old).
    drop(luks);
    let mut luks = Luks2::open(device)?;
    luks.set_token(
        Some(zymkey_token),
        &ZymkeyToken::new(sealed_keyslot, blob).to_json(),
    )?;
    let recovery_json = RecoveryToken {
        keyslot: recovery_keyslot,
        age_ciphertext,
    }
    .to_json();
    // The old recovery token may name a keyslot that is gone: replace it by id.
    let old_recovery = luks
        .tokens_of_type(crate::token::RECOVERY_TOKEN)?
        .first()
        .map(|(id, _)| *id);
    luks.set_token(old_recovery, &recovery_json)?;
    // Anything of the old key libcryptsetup left behind goes too.
    let after = keyslots(&mut luks)?;
    for ks in after {
        if ks != sealed_keyslot && ks != recovery_keyslot && before.contains(&ks) {
            luks.destroy_keyslot(ks)?;
        }
    }
    let remaining = keyslots(&mut luks)?;
    Ok(Rotation {
        sealed_keyslot,
        recovery_keyslot,
        removed_keyslots: before
            .into_iter()
            .filter(|k| !remaining.contains(k))
            .collect(),
        online: active_name.is_some(),
    })
}

/// The sealed secret with the volume check of the new key, locked by the element.
fn seal_for(
    unsealed: &Unsealed,
    element: &dyn SecureElement,
    uuid: &[u8; 16],
    new_key: &VolumeKey,
) -> Result<Vec<u8>> {
    let bytes: [u8; SECRET_LEN] = unsealed
        .passphrase()
        .try_into()
        .map_err(|_| Error::Payload("the sealed secret is not 32 bytes"))?;
    let secret = SealedSecret::from_bytes(bytes);
    let payload = SealedPayload {
        check: VolumeCheck::compute(&secret, uuid, new_key),
        secret,
    };
    Ok(element.lock(&payload.encode())?)
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
