//! PIN/UV auth protocols 1 and 2 (CTAP2.1 §6.5.6, §6.5.7): key agreement, shared secrets,
//! encryption and authentication.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::FromEncodedPoint;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::random;
use crate::ctap2::{Status, cose};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// A PIN/UV auth protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinProtocol {
    /// Protocol 1: SHA-256 shared secret, zero IV, 16-byte authentication.
    One,
    /// Protocol 2: HKDF shared secret (HMAC key || AES key), random IV, 32-byte authentication.
    Two,
}

impl PinProtocol {
    /// From the protocol number in a request (`INVALID_PARAMETER` when unsupported).
    pub fn from_number(n: u64) -> Result<Self, Status> {
        match n {
            1 => Ok(Self::One),
            2 => Ok(Self::Two),
            _ => Err(Status::InvalidParameter),
        }
    }

    /// The number.
    pub fn number(self) -> u64 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// Derives the shared secret from the ECDH x-coordinate `z`.
    fn kdf(self, z: &[u8]) -> SharedSecret {
        match self {
            Self::One => SharedSecret {
                protocol: self,
                bytes: Zeroizing::new(Sha256::digest(z).to_vec()),
            },
            Self::Two => {
                let hk = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                let mut okm = Zeroizing::new(vec![0u8; 64]);
                let (hmac_key, aes_key) = okm.split_at_mut(32);
                hk.expand(b"CTAP2 HMAC key", hmac_key)
                    .and_then(|()| hk.expand(b"CTAP2 AES key", aes_key))
                    .expect("64 bytes is a valid HKDF-SHA256 output length");
                SharedSecret {
                    protocol: self,
                    bytes: okm,
                }
            }
        }
    }

    /// Authenticates `message` with `key` (a shared secret's HMAC part or a pinUvAuthToken).
    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac =
            HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        match self {
            Self::One => tag[..16].to_vec(),
            Self::Two => tag.to_vec(),
        }
    }

    /// Checks `param == authenticate(key, message)` in constant time.
    pub fn verify_with_key(self, key: &[u8], message: &[u8], param: &[u8]) -> bool {
        let expected = self.mac(key, message);
        expected.len() == param.len() && bool::from(expected.ct_eq(param))
    }

    /// `authenticate(key, message)` with a pinUvAuthToken (or any raw key) as the key.
    pub fn authenticate_with_key(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        self.mac(key, message)
    }
}

/// The authenticator's key agreement key, regenerated at power-up and after PIN failures.
pub struct KeyAgreement {
    secret: p256::SecretKey,
}

impl std::fmt::Debug for KeyAgreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyAgreement(..)")
    }
}

impl Default for KeyAgreement {
    fn default() -> Self {
        Self::generate()
    }
}

impl KeyAgreement {
    /// A fresh key.
    pub fn generate() -> Self {
        loop {
            let bytes = Zeroizing::new(random::<32>());
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes[..]) {
                return Self { secret };
            }
        }
    }

    /// The public key as COSE (alg ECDH-ES+HKDF-256), for getKeyAgreement.
    pub fn cose_public_key(&self) -> ciborium::Value {
        let public = p256::ecdsa::VerifyingKey::from(self.secret.public_key());
        let (x, y) = crate::crypto::p256_coordinates(&public);
        cose::p256_key(&x, &y, cose::ECDH_ES_HKDF_256)
    }

    /// ECDH with the platform's COSE key, then the protocol's KDF.
    pub fn shared_secret(
        &self,
        protocol: PinProtocol,
        peer: &ciborium::Value,
    ) -> Result<SharedSecret, Status> {
        let (x, y) = cose::parse_p256_key(peer)?;
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let peer = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
            .ok_or(Status::InvalidParameter)?;
        let z = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(protocol.kdf(z.raw_secret_bytes()))
    }
}

/// A shared secret with the platform (32 bytes for protocol 1, 64 for protocol 2).
pub struct SharedSecret {
    protocol: PinProtocol,
    bytes: Zeroizing<Vec<u8>>,
}

impl SharedSecret {
    /// Builds one from raw bytes (the platform side, in tests).
    pub fn from_bytes(protocol: PinProtocol, bytes: &[u8]) -> Self {
        Self {
            protocol,
            bytes: Zeroizing::new(bytes.to_vec()),
        }
    }

    /// Derives the platform's view: ECDH of `platform_secret` with the authenticator's public
    /// key (for clients and tests).
    pub fn platform_side(
        protocol: PinProtocol,
        platform_secret: &p256::SecretKey,
        authenticator: &ciborium::Value,
    ) -> Result<Self, Status> {
        let (x, y) = cose::parse_p256_key(authenticator)?;
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let peer = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
            .ok_or(Status::InvalidParameter)?;
        let z = p256::ecdh::diffie_hellman(platform_secret.to_nonzero_scalar(), peer.as_affine());
        Ok(protocol.kdf(z.raw_secret_bytes()))
    }

    /// The protocol.
    pub fn protocol(&self) -> PinProtocol {
        self.protocol
    }

    fn hmac_key(&self) -> &[u8] {
        &self.bytes[..32]
    }

    fn aes_key(&self) -> &[u8] {
        match self.protocol {
            PinProtocol::One => &self.bytes[..32],
            PinProtocol::Two => &self.bytes[32..64],
        }
    }

    /// Encrypts `plaintext` (a multiple of 16 bytes). Protocol 2 prepends a random IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let iv = match self.protocol {
            PinProtocol::One => [0u8; 16],
            PinProtocol::Two => random::<16>(),
        };
        let ct = Aes256CbcEnc::new(self.aes_key().into(), &iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(plaintext);
        match self.protocol {
            PinProtocol::One => ct,
            PinProtocol::Two => [iv.as_slice(), &ct].concat(),
        }
    }

    /// Decrypts; `None` when the length is not a whole number of blocks (plus the IV).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (iv, ct) = match self.protocol {
            PinProtocol::One => ([0u8; 16], ciphertext),
            PinProtocol::Two => {
                if ciphertext.len() < 16 {
                    return None;
                }
                let (iv, ct) = ciphertext.split_at(16);
                (<[u8; 16]>::try_from(iv).ok()?, ct)
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return None;
        }
        Aes256CbcDec::new(self.aes_key().into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(ct)
            .ok()
            .map(Zeroizing::new)
    }

    /// `authenticate(sharedSecret, message)`.
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.mac(self.hmac_key(), message)
    }

    /// Checks `param == authenticate(sharedSecret, message)` in constant time.
    pub fn verify(&self, message: &[u8], param: &[u8]) -> bool {
        self.protocol
            .verify_with_key(self.hmac_key(), message, param)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_secret_and_round_trip() {
        for protocol in [PinProtocol::One, PinProtocol::Two] {
            let auth = KeyAgreement::generate();
            let platform = KeyAgreement::generate();
            let a = auth
                .shared_secret(protocol, &platform.cose_public_key())
                .unwrap();
            let p =
                SharedSecret::platform_side(protocol, &platform.secret, &auth.cose_public_key())
                    .unwrap();
            let msg = [7u8; 64];
            let ct = p.encrypt(&msg);
            assert_eq!(&a.decrypt(&ct).unwrap()[..], &msg[..]);
            assert!(a.verify(&ct, &p.authenticate(&ct)));
            assert!(!a.verify(&ct, &[0u8; 32]));
            assert_eq!(a.decrypt(&ct[..ct.len() - 1]), None);
        }
    }

    #[test]
    fn protocol_one_uses_a_zero_iv_and_short_tags() {
        let s = SharedSecret::from_bytes(PinProtocol::One, &[1u8; 32]);
        assert_eq!(s.encrypt(&[0u8; 16]).len(), 16);
        assert_eq!(s.authenticate(b"x").len(), 16);
        let s = SharedSecret::from_bytes(PinProtocol::Two, &[1u8; 64]);
        assert_eq!(s.encrypt(&[0u8; 16]).len(), 32);
        assert_eq!(s.authenticate(b"x").len(), 32);
    }
}
