//! The vendor's boot-signing key: RSA-2048, as the Pi's boot ROM requires.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

use super::BootError;

/// The modulus size the Pi's boot ROM verifies.
pub(crate) const BITS: usize = 2048;

/// The operating system's random source, in the form `rsa` takes.
struct OsRng;

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
struct OsRngError(getrandom::Error);

impl TryRng for OsRng {
    type Error = OsRngError;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        getrandom::fill(dst).map_err(OsRngError)
    }
}

impl TryCryptoRng for OsRng {}

/// The vendor's private boot-signing key (RSA-2048). Its memory is zeroed on drop by `rsa`.
pub struct BootKey(PrivateKey);

/// A board's boot public key: what the Pi's OTP holds (as a hash) and its ROM verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPublicKey(PublicKey);

impl std::fmt::Debug for BootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootKey(RSA-2048, private)")
    }
}

impl BootKey {
    /// A fresh RSA-2048 key from the operating system's random source.
    pub fn generate() -> Result<Self, BootError> {
        PrivateKey::new(&mut OsRng, BITS)
            .map(Self)
            .map_err(|e| BootError::Rsa(e.to_string()))
    }

    /// Reads a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, as
    /// `openssl genrsa` writes for `rpi-eeprom-digest`); only RSA-2048 is accepted.
    pub fn read(path: &Path) -> Result<Self, BootError> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(BootError::io("reading", path))?,
        );
        let key = PrivateKey::from_pkcs8_pem(&text)
            .or_else(|_| PrivateKey::from_pkcs1_pem(&text))
            .map_err(|_| BootError::BadKey(path.into()))?;
        if key.size() * 8 != BITS {
            return Err(BootError::BadKey(path.into()));
        }
        Ok(Self(key))
    }

    /// Writes the key as PKCS#8 PEM with mode 0600, never overwriting; writes the public key
    /// next to it (`NAME.pub.pem`, SPKI PEM) and returns that path.
    pub fn write_new(&self, path: &Path) -> Result<PathBuf, BootError> {
        let pem = self
            .0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| BootError::Rsa(e.to_string()))?;
        let public_path = public_path_for(path);
        let public_pem = self.public_key().to_pem()?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(BootError::io("creating (it must not exist yet)", path))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(BootError::io("writing", path))?;
        std::fs::write(&public_path, public_pem).map_err(BootError::io("writing", &public_path))?;
        Ok(public_path)
    }

    /// The matching public key.
    pub fn public_key(&self) -> BootPublicKey {
        BootPublicKey(self.0.to_public_key())
    }

    /// PKCS#1 v1.5 signature over SHA-256 of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BootError> {
        self.0
            .pkcs1v15_sign::<rsa::sha2::Sha256>(message)
            .map_err(|e| BootError::Rsa(e.to_string()))
    }
}

/// `vendor-boot.pem` → `vendor-boot.pub.pem`; other names get `.pub.pem` appended.
fn public_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    path.with_file_name(format!("{stem}.pub.pem"))
}

impl BootPublicKey {
    /// Parses a PEM public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`); only RSA-2048.
    pub fn from_pem(text: &str) -> Result<Self, BootError> {
        let key = PublicKey::from_public_key_pem(text)
            .or_else(|_| PublicKey::from_pkcs1_pem(text))
            .map_err(|_| BootError::BadPublicKey)?;
        if key.size() * 8 != BITS {
            return Err(BootError::BadPublicKey);
        }
        Ok(Self(key))
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, BootError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| BootError::Rsa(e.to_string()))
    }

    /// Checks a PKCS#1 v1.5 signature over a SHA-256 digest.
    pub(crate) fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        self.0
            .pkcs1v15_verify_prehash::<rsa::sha2::Sha256>(digest, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_path_sits_next_to_the_key() {
        assert_eq!(
            public_path_for(Path::new("/k/vendor-boot.pem")),
            Path::new("/k/vendor-boot.pub.pem")
        );
        assert_eq!(public_path_for(Path::new("key")), Path::new("key.pub.pem"));
    }
}
