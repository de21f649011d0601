//! Key material: randomness, credential keys (ES256, EdDSA) and the test attestation key.

use ed25519_dalek::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use zeroize::Zeroizing;

use crate::ctap2::cose;

/// The TEST-ONLY attestation key (PKCS#8 DER), from `fixtures/test-keys/` (see its README).
pub const TEST_ATTESTATION_KEY_PKCS8: &[u8] =
    include_bytes!("../../../fixtures/test-keys/virtual-fido-attestation.key.pk8.der");
/// The TEST-ONLY attestation certificate (DER, self-signed), from `fixtures/test-keys/`.
pub const TEST_ATTESTATION_CERT: &[u8] =
    include_bytes!("../../../fixtures/test-keys/virtual-fido-attestation.crt.der");

/// Fills a fresh array from the operating system's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// A supported credential algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (COSE -7).
    Es256,
    /// Ed25519 (COSE -8).
    EdDsa,
}

impl Algorithm {
    /// From a COSE algorithm number.
    pub fn from_cose(alg: i64) -> Option<Self> {
        match alg {
            cose::ES256 => Some(Self::Es256),
            cose::EDDSA => Some(Self::EdDsa),
            _ => None,
        }
    }
    /// The COSE algorithm number.
    pub fn cose(self) -> i64 {
        match self {
            Self::Es256 => cose::ES256,
            Self::EdDsa => cose::EDDSA,
        }
    }
}

/// A credential's private key.
pub enum CredentialKey {
    /// P-256.
    Es256(p256::ecdsa::SigningKey),
    /// Ed25519.
    EdDsa(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

/// A stored private key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored private key is invalid")]
pub struct BadKey;

impl CredentialKey {
    /// A fresh random key.
    pub fn generate(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Es256 => loop {
                let bytes = Zeroizing::new(random::<32>());
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes[..]) {
                    break Self::Es256(key);
                }
            },
            Algorithm::EdDsa => {
                let bytes = Zeroizing::new(random::<32>());
                Self::EdDsa(ed25519_dalek::SigningKey::from_bytes(&bytes))
            }
        }
    }

    /// Loads a key from its 32 secret bytes.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<Self, BadKey> {
        match alg {
            Algorithm::Es256 => p256::ecdsa::SigningKey::from_slice(bytes)
                .map(Self::Es256)
                .map_err(|_| BadKey),
            Algorithm::EdDsa => {
                let bytes: &[u8; 32] = bytes.try_into().map_err(|_| BadKey)?;
                Ok(Self::EdDsa(ed25519_dalek::SigningKey::from_bytes(bytes)))
            }
        }
    }

    /// The 32 secret bytes, for the state file.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Self::Es256(k) => k.to_bytes().to_vec(),
            Self::EdDsa(k) => k.to_bytes().to_vec(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::Es256,
            Self::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// The public key as COSE.
    pub fn cose_public_key(&self) -> ciborium::Value {
        match self {
            Self::Es256(k) => {
                let (x, y) = p256_coordinates(k.verifying_key());
                cose::p256_key(&x, &y, cose::ES256)
            }
            Self::EdDsa(k) => cose::ed25519_key(&k.verifying_key().to_bytes()),
        }
    }

    /// The uncompressed SEC1 public key (U2F's 65-byte `04 || x || y`); P-256 only.
    pub fn sec1_public_key(&self) -> Option<Vec<u8>> {
        match self {
            Self::Es256(k) => Some(
                k.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            ),
            Self::EdDsa(_) => None,
        }
    }

    /// Signs `message`: DER ECDSA-SHA256 for ES256, raw 64 bytes for EdDSA.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            Self::EdDsa(k) => k.sign(message).to_bytes().to_vec(),
        }
    }
}

/// The affine coordinates of a P-256 public key.
pub fn p256_coordinates(key: &p256::ecdsa::VerifyingKey) -> ([u8; 32], [u8; 32]) {
    let point = key.to_encoded_point(false);
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    // An uncompressed point of a valid key always has both coordinates.
    if let (Some(px), Some(py)) = (point.x(), point.y()) {
        x.copy_from_slice(px);
        y.copy_from_slice(py);
    }
    (x, y)
}

/// The TEST-ONLY attestation key.
pub fn test_attestation_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_pkcs8_der(TEST_ATTESTATION_KEY_PKCS8)
        .expect("the bundled test attestation key parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn keys_round_trip_through_bytes_and_sign_verifiably() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let key = CredentialKey::generate(alg);
            let again = CredentialKey::from_bytes(alg, &key.to_bytes()).unwrap();
            assert_eq!(key.cose_public_key(), again.cose_public_key());
            let sig = again.sign(b"message");
            match &key {
                CredentialKey::Es256(k) => {
                    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
                    k.verifying_key().verify(b"message", &sig).unwrap();
                }
                CredentialKey::EdDsa(k) => {
                    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                    k.verifying_key().verify_strict(b"message", &sig).unwrap();
                }
            }
        }
        assert_eq!(
            CredentialKey::from_bytes(Algorithm::Es256, &[0u8; 32]).unwrap_err(),
            BadKey
        );
    }

    #[test]
    fn the_test_attestation_key_loads() {
        let key = test_attestation_key();
        let _ = p256_coordinates(key.verifying_key());
        assert!(!TEST_ATTESTATION_CERT.is_empty());
    }
}
