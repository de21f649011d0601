//! The payload the Zymkey locks: a small versioned struct holding the secret and the volume
//! check. Layout v1 (81 bytes): `version (1) || secret (32) || LUKS2 UUID (16) || digest (32)`.

use zeroize::Zeroizing;

use crate::check::VolumeCheck;
use crate::error::{Error, Result};
use crate::secret::{SECRET_LEN, SealedSecret};

/// The payload version this build writes and reads.
pub const PAYLOAD_VERSION: u8 = 1;
const LEN: usize = 1 + SECRET_LEN + 16 + 32;

/// Secret plus the check value of the volume it opens.
pub struct SealedPayload {
    /// The keyslot passphrase.
    pub secret: SealedSecret,
    /// The check value of the volume.
    pub check: VolumeCheck,
}

impl std::fmt::Debug for SealedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPayload")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl SealedPayload {
    /// The bytes to lock (wiped on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(LEN));
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(self.secret.expose_secret());
        out.extend_from_slice(&self.check.uuid);
        out.extend_from_slice(&self.check.digest);
        out
    }

    /// Parses unlocked bytes: exact length, known version.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != LEN {
            return Err(Error::Payload("wrong length"));
        }
        if bytes[0] != PAYLOAD_VERSION {
            return Err(Error::Payload("unknown version"));
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&bytes[1..1 + SECRET_LEN]);
        let secret = SealedSecret::from_bytes(secret);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[1 + SECRET_LEN..1 + SECRET_LEN + 16]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[1 + SECRET_LEN + 16..]);
        Ok(Self {
            secret,
            check: VolumeCheck { uuid, digest },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_is_strict() {
        let p = SealedPayload {
            secret: SealedSecret::from_bytes([5; 32]),
            check: VolumeCheck {
                uuid: [6; 16],
                digest: [7; 32],
            },
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), 81);
        let back = SealedPayload::decode(&bytes).unwrap();
        assert_eq!(back.secret.expose_secret(), &[5; 32]);
        assert_eq!(back.check, p.check);
        assert!(SealedPayload::decode(&bytes[..80]).is_err());
        let mut v2 = bytes.to_vec();
        v2[0] = 2;
        assert!(SealedPayload::decode(&v2).is_err());
        assert!(!format!("{back:?}").contains("5, 5"));
    }
}
