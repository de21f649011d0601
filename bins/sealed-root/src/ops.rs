//! The operations: format, enrol, read tokens, unseal, verify, activate, reseal, rotate.

use std::path::Path;

use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::{CryptParamsLuks2, CryptParamsLuks2Ref, Either};

use crate::check::VolumeCheck;
use crate::element::SecureElement;
use crate::error::{Error, Result};
use crate::luks::Luks2;
use crate::payload::SealedPayload;
use crate::profile::{BoardProfile, RecoveryKdf, minimal_pbkdf, recovery_pbkdf};
use crate::secret::{RecoverySecret, SECRET_LEN, SealedSecret, VolumeKey};
use crate::token::{RECOVERY_TOKEN, RecoveryToken, ZYMKEY_TOKEN, ZymkeyToken};

/// How to format a fresh volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatParams {
    /// The data cipher, by board.
    pub profile: BoardProfile,
    /// The LUKS2 label (e.g. `keybound-root`).
    pub label: Option<String>,
}

/// The keyslots and tokens an enrolment made. Holds no secret: the recovery secret is never
/// returned on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enrolment {
    /// Keyslot opened by the Zymkey-sealed secret.
    pub sealed_keyslot: u32,
    /// Keyslot opened by the recovery secret.
    pub recovery_keyslot: u32,
    /// Token id of `keybound-zymkey`.
    pub zymkey_token: u32,
    /// Token id of `keybound-recovery`.
    pub recovery_token: u32,
}

/// The keybound tokens of a header, each checked against the header's keyslots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// `(token id, token)` of `keybound-zymkey`, if present.
    pub zymkey: Option<(u32, ZymkeyToken)>,
    /// `(token id, token)` of `keybound-recovery`, if present.
    pub recovery: Option<(u32, RecoveryToken)>,
}

/// The result of unsealing: the keyslot passphrase and the check value sealed with it.
pub struct Unsealed {
    keyslot: u32,
    payload: SealedPayload,
    #[cfg(keybound_mutant = "token-metadata-policy")]
    skip_volume_check: bool,
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed")
            .field("keyslot", &self.keyslot)
            .finish_non_exhaustive()
    }
}

/// Formats `device` as an empty LUKS2 volume (no keyslots yet) with the profile's cipher and a
/// fresh random volume key, which it returns for [`enroll`].
pub fn format_fresh(device: &Path, params: &FormatParams) -> Result<VolumeKey> {
    let mut luks = Luks2::init(device)?;
    let key = VolumeKey::generate(params.profile.key_bytes())?;
    let luks2 = CryptParamsLuks2 {
        // The volume key is full-entropy, so its digest needs no work factor: a minimal PBKDF2
        // digest (1000 iterations, no benchmark) instead of ~125 ms of PBKDF2 per check, which
        // would cost over a second per unlock on a slow CPU (TCG, Pi 4). Keyslot KDFs are set
        // per keyslot when enrolling.
        pbkdf: Some(minimal_pbkdf()),
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: 0,
        label: params.label.clone(),
        subsystem: None,
    };
    let mut luks2_ref: CryptParamsLuks2Ref<'_> = (&luks2)
        .try_into()
        .map_err(luks.fail("preparing LUKS2 parameters"))?;
    let r = luks.device().context_handle().format(
        EncryptionFormat::Luks2,
        (params.profile.cipher(), params.profile.mode()),
        None,
        Either::Left(key.expose_secret()),
        Some(&mut luks2_ref),
    );
    r.map_err(luks.fail("formatting LUKS2"))?;
    Ok(key)
}

/// Enrols a volume: the sealed-secret keyslot (minimal PBKDF) and its `keybound-zymkey` token,
/// the recovery keyslot (`recovery_kdf`) and its `keybound-recovery` token encrypted to
/// `vendor`. Refuses a header that already carries keybound tokens.
pub fn enroll(
    device: &Path,
    volume_key: &VolumeKey,
    element: &dyn SecureElement,
    vendor: &age::x25519::Recipient,
    recovery_kdf: RecoveryKdf,
) -> Result<Enrolment> {
    let mut luks = Luks2::open(device)?;
    let existing = read_tokens_from(&mut luks)?;
    if existing.zymkey.is_some() || existing.recovery.is_some() {
        return Err(luks.state("already enrolled (use reseal or rotate)"));
    }
    luks.verify_volume_key(volume_key)?;

    let (sealed_keyslot, zymkey_token) = add_sealed(&mut luks, volume_key, element, None)?;

    let recovery = RecoverySecret::generate()?;
    let (recovery_keyslot, recovery_token) =
        add_recovery(&mut luks, volume_key, &recovery, vendor, recovery_kdf, None)?;
    Ok(Enrolment {
        sealed_keyslot,
        recovery_keyslot,
        zymkey_token,
        recovery_token,
    })
}

/// Adds a sealed keyslot and writes (or replaces) the zymkey token. Returns (keyslot, token).
pub(crate) fn add_sealed(
    luks: &mut Luks2,
    volume_key: &VolumeKey,
    element: &dyn SecureElement,
    replace_token: Option<u32>,
) -> Result<(u32, u32)> {
    let zk_random = element.random(SECRET_LEN)?;
    if zk_random.len() < SECRET_LEN {
        return Err(Error::ShortRandom {
            got: zk_random.len(),
            want: SECRET_LEN,
        });
    }
    let secret = SealedSecret::generate(&zk_random)?;
    luks.set_pbkdf(&minimal_pbkdf())?;
    let keyslot = luks.add_keyslot(volume_key, secret.expose_secret())?;
    let uuid = luks.uuid()?;
    let payload = SealedPayload {
        check: VolumeCheck::compute(&secret, &uuid, volume_key),
        secret,
    };
    let blob = element.lock(&payload.encode())?;
    let token = luks.set_token(replace_token, &ZymkeyToken::new(keyslot, blob).to_json())?;
    Ok((keyslot, token))
}

/// Adds a recovery keyslot for `recovery` and writes (or replaces) the recovery token.
pub(crate) fn add_recovery(
    luks: &mut Luks2,
    volume_key: &VolumeKey,
    recovery: &RecoverySecret,
    vendor: &age::x25519::Recipient,
    kdf: RecoveryKdf,
    replace_token: Option<u32>,
) -> Result<(u32, u32)> {
    let pbkdf = recovery_pbkdf(kdf).map_err(|reason| luks.state(reason))?;
    luks.set_pbkdf(&pbkdf)?;
    let keyslot = luks.add_keyslot(volume_key, recovery.to_typable().as_bytes())?;
    let age_ciphertext = age::encrypt(vendor, recovery.expose_secret())
        .map_err(|e| Error::AgeEncrypt(e.to_string()))?;
    let token = luks.set_token(
        replace_token,
        &RecoveryToken {
            keyslot,
            age_ciphertext,
        }
        .to_json(),
    )?;
    Ok((keyslot, token))
}

/// Reads the keybound tokens strictly: each parses, appears at most once, names an existing
/// `luks2` keyslot, and the two name different keyslots. Other token types are left alone.
pub fn read_tokens(device: &Path) -> Result<Tokens> {
    read_tokens_from(&mut Luks2::open(device)?)
}

pub(crate) fn read_tokens_from(luks: &mut Luks2) -> Result<Tokens> {
    fn one<T>(
        luks: &mut Luks2,
        kind: &'static str,
        parse: impl Fn(&serde_json::Value) -> Result<T, crate::token::TokenError>,
    ) -> Result<Option<(u32, T)>> {
        let found = luks.tokens_of_type(kind)?;
        if found.len() > 1 {
            return Err(Error::DuplicateToken {
                device: luks.path().into(),
                kind,
            });
        }
        found
            .into_iter()
            .next()
            .map(|(id, json)| {
                parse(&json)
                    .map(|t| (id, t))
                    .map_err(|source| Error::Token {
                        device: luks.path().into(),
                        source,
                    })
            })
            .transpose()
    }
    let zymkey = one(luks, ZYMKEY_TOKEN, ZymkeyToken::from_json)?;
    let recovery = one(luks, RECOVERY_TOKEN, RecoveryToken::from_json)?;
    if let Some((_, t)) = &zymkey {
        luks.require_luks2_keyslot(t.keyslot)?;
    }
    if let Some((_, t)) = &recovery {
        luks.require_luks2_keyslot(t.keyslot)?;
    }
    if let (Some((_, z)), Some((_, r))) = (&zymkey, &recovery)
        && z.keyslot == r.keyslot
    {
        return Err(luks.state("both keybound tokens name the same keyslot"));
    }
    Ok(Tokens { zymkey, recovery })
}

/// The age ciphertext of the recovery token (for the vendor's desk).
pub fn recovery_ciphertext(device: &Path) -> Result<Vec<u8>> {
    let mut luks = Luks2::open(device)?;
    read_tokens_from(&mut luks)?
        .recovery
        .map(|(_, t)| t.age_ciphertext)
        .ok_or(Error::MissingToken {
            device: device.into(),
            kind: RECOVERY_TOKEN,
        })
}

/// Decrypts a recovery token's ciphertext with the vendor's identity.
pub fn decrypt_recovery(
    ciphertext: &[u8],
    identity: &age::x25519::Identity,
) -> Result<RecoverySecret> {
    let plain = zeroize::Zeroizing::new(
        age::decrypt(identity, ciphertext).map_err(|e| Error::AgeDecrypt(e.to_string()))?,
    );
    RecoverySecret::from_slice(&plain)
}

/// Unseals the secret with the secure element and checks that it opens the token's keyslot.
/// The volume check is not done here: call [`Unsealed::verify_volume`] or [`activate`].
pub fn unseal(device: &Path, element: &dyn SecureElement) -> Result<Unsealed> {
    let mut luks = Luks2::open(device)?;
    let (_, token) = read_tokens_from(&mut luks)?
        .zymkey
        .ok_or(Error::MissingToken {
            device: device.into(),
            kind: ZYMKEY_TOKEN,
        })?;
    let plain = element.unlock(&token.sealed_blob)?;
    let payload = SealedPayload::decode(&plain)?;
    if !luks.test_passphrase(token.keyslot, payload.secret.expose_secret())? {
        return Err(Error::WrongSecret {
            device: device.into(),
            keyslot: token.keyslot,
        });
    }
    Ok(Unsealed {
        keyslot: token.keyslot,
        payload,
        #[cfg(keybound_mutant = "token-metadata-policy")]
        skip_volume_check: token.skip_volume_check,
    })
}

impl Unsealed {
    /// The keyslot the secret opens.
    pub fn keyslot(&self) -> u32 {
        self.keyslot
    }

    /// The keyslot passphrase. Keep the borrow short; never print it.
    pub fn passphrase(&self) -> &[u8] {
        self.payload.secret.expose_secret()
    }

    /// The check value sealed with the secret.
    pub fn sealed_check(&self) -> &VolumeCheck {
        &self.payload.check
    }

    /// Verifies, in constant time, that `uuid` and `volume_key` are the sealed volume's.
    pub fn verify_volume_key(
        &self,
        device: &Path,
        uuid: &[u8; 16],
        volume_key: &VolumeKey,
    ) -> Result<()> {
        #[cfg(keybound_mutant = "token-metadata-policy")]
        if self.skip_volume_check {
            return Ok(());
        }
        let actual = VolumeCheck::compute(&self.payload.secret, uuid, volume_key);
        self.payload
            .check
            .verify(&actual)
            .map_err(|m| Error::VolumeCheck {
                device: device.into(),
                what: m.what(),
            })
    }

    /// Verifies the volume whose header is at `device` (an image, a block device or a detached
    /// header): unlocks its volume key with the secret and checks UUID and digest.
    pub fn verify_volume(&self, device: &Path) -> Result<()> {
        let mut luks = Luks2::open(device)?;
        let key = self.volume_key_of(&mut luks)?;
        let uuid = luks.uuid()?;
        self.verify_volume_key(device, &uuid, &key)
    }

    /// Verifies an active mapping `/dev/mapper/NAME`: the header behind it must be the sealed
    /// volume's (needs device-mapper).
    pub fn verify_active(&self, name: &str) -> Result<()> {
        let dev =
            libcryptsetup_rs::CryptInit::init_by_name_and_header(name, None).map_err(|e| {
                Error::Cryptsetup {
                    op: "finding the active mapping",
                    device: format!("/dev/mapper/{name}").into(),
                    reason: e.to_string(),
                }
            })?;
        let mut luks = Luks2::from_device(dev, format!("/dev/mapper/{name}").into());
        let key = self.volume_key_of(&mut luks)?;
        let uuid = luks.uuid()?;
        self.verify_volume_key(luks.path(), &uuid, &key)
    }

    pub(crate) fn volume_key_of(&self, luks: &mut Luks2) -> Result<VolumeKey> {
        luks.volume_key(self.keyslot, self.passphrase())?
            .ok_or_else(|| Error::WrongSecret {
                device: luks.path().into(),
                keyslot: self.keyslot,
            })
    }
}

/// Activates `device` as `/dev/mapper/NAME` with the unsealed secret, after verifying the volume
/// check against the very volume key it activates with (needs device-mapper; guest only).
pub fn activate(device: &Path, name: &str, unsealed: &Unsealed) -> Result<()> {
    let mut luks = Luks2::open(device)?;
    let key = unsealed.volume_key_of(&mut luks)?;
    let uuid = luks.uuid()?;
    unsealed.verify_volume_key(device, &uuid, &key)?;
    luks.activate_with_key(name, &key)
}

/// Re-seals the volume to another secure element (a replacement module) with the recovery
/// secret: a new sealed keyslot, the zymkey token replaced, the old sealed keyslot destroyed.
/// Returns the new sealed keyslot.
pub fn reseal(
    device: &Path,
    recovery: &RecoverySecret,
    element: &dyn SecureElement,
) -> Result<u32> {
    let mut luks = Luks2::open(device)?;
    let tokens = read_tokens_from(&mut luks)?;
    let (_, rec) = tokens.recovery.ok_or(Error::MissingToken {
        device: device.into(),
        kind: RECOVERY_TOKEN,
    })?;
    let key = luks
        .volume_key(rec.keyslot, recovery.to_typable().as_bytes())?
        .ok_or(Error::WrongSecret {
            device: device.into(),
            keyslot: rec.keyslot,
        })?;
    let old = tokens.zymkey;
    let (keyslot, _) = add_sealed(&mut luks, &key, element, old.as_ref().map(|(id, _)| *id))?;
    if let Some((_, old)) = old
        && old.keyslot != keyslot
        && old.keyslot != rec.keyslot
    {
        luks.destroy_keyslot(old.keyslot)?;
    }
    Ok(keyslot)
}

/// Replaces the recovery secret (after a field recovery, so an exposed secret stops working):
/// a new recovery keyslot and token for `vendor`, the old recovery keyslot destroyed. Needs the
/// volume unsealed. Returns the new recovery keyslot.
pub fn rotate_recovery(
    device: &Path,
    unsealed: &Unsealed,
    vendor: &age::x25519::Recipient,
    recovery_kdf: RecoveryKdf,
) -> Result<u32> {
    let mut luks = Luks2::open(device)?;
    let tokens = read_tokens_from(&mut luks)?;
    let key = unsealed.volume_key_of(&mut luks)?;
    let uuid = luks.uuid()?;
    unsealed.verify_volume_key(device, &uuid, &key)?;
    let recovery = RecoverySecret::generate()?;
    let old = tokens.recovery;
    let (keyslot, _) = add_recovery(
        &mut luks,
        &key,
        &recovery,
        vendor,
        recovery_kdf,
        old.as_ref().map(|(id, _)| *id),
    )?;
    if let Some((_, old)) = old
        && old.keyslot != keyslot
        && old.keyslot != unsealed.keyslot
    {
        luks.destroy_keyslot(old.keyslot)?;
    }
    Ok(keyslot)
}
