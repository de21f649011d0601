//! The volume check: proof, sealed together with the secret, of which volume the secret belongs
//! to. A root partition swapped for another LUKS2 volume carrying a copied token fails it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::{SealedSecret, VolumeKey};

/// Domain separation for the digest.
const CHECK_LABEL: &[u8] = b"keybound-volume-check";

/// The check value of one volume: its LUKS2 UUID and
/// `HMAC-SHA256(secret, "keybound-volume-check" || uuid || volume key)`.
#[derive(Clone, PartialEq, Eq)]
pub struct VolumeCheck {
    /// The LUKS2 header UUID (16 bytes).
    pub uuid: [u8; 16],
    /// The keyed digest of UUID and volume key.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for VolumeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeCheck")
            .field("uuid", &format_uuid(&self.uuid))
            .finish_non_exhaustive()
    }
}

/// Which part of a volume check differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMismatch {
    /// Another header (different UUID).
    Uuid,
    /// Same UUID, another volume key.
    VolumeKey,
}

impl CheckMismatch {
    /// For messages.
    pub fn what(self) -> &'static str {
        match self {
            Self::Uuid => "LUKS2 UUID differs",
            Self::VolumeKey => "volume key digest differs",
        }
    }
}

impl VolumeCheck {
    /// The check value of the volume with `uuid` and `volume_key`, keyed by `secret`.
    pub fn compute(secret: &SealedSecret, uuid: &[u8; 16], volume_key: &VolumeKey) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(CHECK_LABEL);
        mac.update(uuid);
        mac.update(volume_key.expose_secret());
        Self {
            uuid: *uuid,
            digest: mac.finalize().into_bytes().into(),
        }
    }

    /// Compares in constant time (both parts are always compared).
    pub fn verify(&self, actual: &VolumeCheck) -> Result<(), CheckMismatch> {
        let uuid_ok = self.uuid.ct_eq(&actual.uuid);
        let digest_ok = self.digest.ct_eq(&actual.digest);
        if bool::from(uuid_ok & digest_ok) {
            Ok(())
        } else if !bool::from(uuid_ok) {
            Err(CheckMismatch::Uuid)
        } else {
            Err(CheckMismatch::VolumeKey)
        }
    }
}

/// A UUID in its usual text form.
pub(crate) fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses a UUID's text form (hyphens optional).
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let t = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(t, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn check_binds_uuid_and_volume_key() {
        let s = SealedSecret::from_bytes([7; 32]);
        let vk = VolumeKey::from_vec(Zeroizing::new(vec![1; 64]));
        let vk2 = VolumeKey::from_vec(Zeroizing::new(vec![2; 64]));
        let c = VolumeCheck::compute(&s, &[9; 16], &vk);
        assert_eq!(c.verify(&VolumeCheck::compute(&s, &[9; 16], &vk)), Ok(()));
        assert_eq!(
            c.verify(&VolumeCheck::compute(&s, &[8; 16], &vk)),
            Err(CheckMismatch::Uuid)
        );
        assert_eq!(
            c.verify(&VolumeCheck::compute(&s, &[9; 16], &vk2)),
            Err(CheckMismatch::VolumeKey)
        );
        let other = SealedSecret::from_bytes([6; 32]);
        assert!(
            c.verify(&VolumeCheck::compute(&other, &[9; 16], &vk))
                .is_err()
        );
    }

    #[test]
    fn uuid_text_round_trips() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let t = format_uuid(&u);
        assert_eq!(t, "12345678-9abc-def0-0102-030405060708");
        assert_eq!(parse_uuid(&t), Some(u));
        assert_eq!(parse_uuid("xyz"), None);
    }
}
