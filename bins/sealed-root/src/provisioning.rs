//! What first-boot provisioning needs beyond enrolment: resuming an interrupted in-place
//! encryption (the LUKS2 online-reencrypt requirement, the temporary keyslot's volume key,
//! clearing a half-written enrolment) and re-enrolling a sealed volume while keeping its
//! volume key.

use std::path::Path;

use libcryptsetup_rs::TokenInput;
use libcryptsetup_rs::consts::flags::CryptRequirement;

use crate::element::SecureElement;
use crate::error::Result;
use crate::luks::Luks2;
use crate::ops::{Enrolment, Unsealed, add_recovery, add_sealed, read_tokens_from};
use crate::profile::RecoveryKdf;
use crate::secret::{RecoverySecret, VolumeKey};
use crate::token::{MAX_KEYSLOTS, RECOVERY_TOKEN, ZYMKEY_TOKEN};

/// Whether the header at `device` carries the LUKS2 online-reencrypt requirement: an in-place
/// encryption (or re-encryption) started and has not finished; `cryptsetup reencrypt
/// --resume-only` completes it.
pub fn reencrypt_pending(device: &Path) -> Result<bool> {
    let mut luks = Luks2::open(device)?;
    let r = luks
        .device()
        .luks2_flag_handle::<CryptRequirement>()
        .persistent_flags_get();
    let flags = r.map_err(luks.fail("reading the LUKS2 requirement flags"))?;
    Ok(flags.contains(CryptRequirement::ONLINE_REENCRYPT))
}

/// The volume key unlocked from `keyslot` with `passphrase` (the temporary provisioning
/// keyslot); `None` if the passphrase does not open it or the keyslot is gone.
pub fn volume_key_from_keyslot(
    device: &Path,
    keyslot: u32,
    passphrase: &[u8],
) -> Result<Option<VolumeKey>> {
    let mut luks = Luks2::open(device)?;
    if luks.require_luks2_keyslot(keyslot).is_err() {
        return Ok(None);
    }
    luks.volume_key(keyslot, passphrase)
}

/// Removes a half-written enrolment left by an interrupted provisioning: every keybound token
/// and every keyslot except `keep` (the temporary keyslot). Only for a volume the caller's own
/// provisioning created (it knows from its state record), never for a volume in service.
pub fn discard_partial_enrolment(device: &Path, keep: u32) -> Result<()> {
    let mut luks = Luks2::open(device)?;
    for kind in [ZYMKEY_TOKEN, RECOVERY_TOKEN] {
        for (id, _) in luks.tokens_of_type(kind)? {
            let r = luks
                .device()
                .token_handle()
                .json_set(TokenInput::RemoveToken(id));
            r.map_err(luks.fail("removing a token"))?;
        }
    }
    for keyslot in active_keyslots(&mut luks)? {
        if keyslot != keep {
            luks.destroy_keyslot(keyslot)?;
        }
    }
    Ok(())
}

/// Keyslot numbers present in the header.
fn active_keyslots(luks: &mut Luks2) -> Result<Vec<u32>> {
    let json = luks.header_json()?;
    let mut out: Vec<u32> = json["keyslots"]
        .as_object()
        .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    out.retain(|k| *k < MAX_KEYSLOTS);
    out.sort_unstable();
    Ok(out)
}

/// Re-enrols a sealed volume, keeping its volume key (so no data is re-encrypted): a new
/// sealed secret bound to `element` (the module present now) and a new recovery secret
/// encrypted to `vendor`, each token replaced in one header write, then the old sealed and
/// recovery keyslots destroyed. `unsealed` is the current enrolment, unsealed by the same
/// volume's token; its volume check is verified first.
pub fn re_enroll(
    device: &Path,
    unsealed: &Unsealed,
    element: &dyn SecureElement,
    vendor: &age::x25519::Recipient,
    recovery_kdf: RecoveryKdf,
) -> Result<Enrolment> {
    let mut luks = Luks2::open(device)?;
    let tokens = read_tokens_from(&mut luks)?;
    let key = unsealed.volume_key_of(&mut luks)?;
    let uuid = luks.uuid()?;
    unsealed.verify_volume_key(device, &uuid, &key)?;

    let old_sealed = tokens.zymkey.map(|(id, t)| (id, t.keyslot));
    let (sealed_keyslot, zymkey_token) =
        add_sealed(&mut luks, &key, element, old_sealed.map(|(id, _)| id))?;
    if let Some((_, old)) = old_sealed
        && old != sealed_keyslot
    {
        luks.destroy_keyslot(old)?;
    }

    let old_recovery = tokens.recovery.map(|(id, t)| (id, t.keyslot));
    let recovery = RecoverySecret::generate()?;
    let (recovery_keyslot, recovery_token) = add_recovery(
        &mut luks,
        &key,
        &recovery,
        vendor,
        recovery_kdf,
        old_recovery.map(|(id, _)| id),
    )?;
    if let Some((_, old)) = old_recovery
        && old != recovery_keyslot
        && old != sealed_keyslot
    {
        luks.destroy_keyslot(old)?;
    }
    Ok(Enrolment {
        sealed_keyslot,
        recovery_keyslot,
        zymkey_token,
        recovery_token,
    })
}
