//! Secret values: the sealed secret, the recovery secret, the volume key. Each wipes itself on
//! drop and prints as `Name(..)`: no key byte reaches Debug, Display, errors or logs.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of the sealed secret and of the recovery secret, in bytes (256 bits).
pub const SECRET_LEN: usize = 32;

/// HKDF `info` binding the mixed output to its one use.
const MIX_INFO: &[u8] = b"keybound sealed secret v1";

pub(crate) fn os_random<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut out[..]).map_err(|e| Error::OsRandom(e.to_string()))?;
    Ok(out)
}

/// The sealed secret: the passphrase of the sealed keyslot (32 full-entropy bytes), known only
/// to the Zymkey-locked blob and, briefly, to the unlocking process.
pub struct SealedSecret(Zeroizing<[u8; SECRET_LEN]>);

impl SealedSecret {
    /// Mixes the Zymkey's random bytes with the kernel's: HKDF-SHA256 with `os_random` as salt
    /// and `zymkey_random` as input keying material. The result is unpredictable if either source
    /// is. `zymkey_random` must hold at least [`SECRET_LEN`] bytes.
    pub fn mix(zymkey_random: &[u8], os_random: &[u8; SECRET_LEN]) -> Result<Self> {
        if zymkey_random.len() < SECRET_LEN {
            return Err(Error::ShortRandom {
                got: zymkey_random.len(),
                want: SECRET_LEN,
            });
        }
        let mut out = Zeroizing::new([0u8; SECRET_LEN]);
        Hkdf::<Sha256>::new(Some(os_random), zymkey_random)
            .expand(MIX_INFO, &mut out[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Ok(Self(out))
    }

    /// [`SealedSecret::mix`] with fresh bytes from getrandom.
    pub fn generate(zymkey_random: &[u8]) -> Result<Self> {
        let os = os_random::<SECRET_LEN>()?;
        Self::mix(zymkey_random, &os)
    }

    pub(crate) fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes: the keyslot passphrase. Keep the borrow short.
    pub fn expose_secret(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// The recovery secret: 256 random bits, never shown on the device, stored only encrypted to the
/// vendor's age recipient. Its keyslot passphrase is the typable form
/// ([`RecoverySecret::to_typable`]), so a bench `cryptsetup open` accepts it as typed.
pub struct RecoverySecret(Zeroizing<[u8; SECRET_LEN]>);

impl RecoverySecret {
    /// A fresh secret from getrandom.
    pub fn generate() -> Result<Self> {
        Ok(Self(os_random::<SECRET_LEN>()?))
    }

    /// From exactly [`SECRET_LEN`] raw bytes (as decrypted from the recovery token).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; SECRET_LEN] = bytes
            .try_into()
            .map_err(|_| Error::RecoveryFormat("not 32 bytes"))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The raw bytes (what the recovery token encrypts). Keep the borrow short.
    pub fn expose_secret(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The typable form: 16 groups of 4 lowercase hex digits joined by `-` (79 characters).
    /// This exact string is the recovery keyslot's passphrase.
    pub fn to_typable(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(SECRET_LEN * 2 + 15));
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                s.push('-');
            }
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Parses a typed secret: 64 hex digits, either case, with any `-`, space or newline between
    /// them.
    pub fn parse_typable(text: &str) -> Result<Self> {
        let mut out = Zeroizing::new([0u8; SECRET_LEN]);
        let mut n = 0usize;
        for c in text.chars() {
            if matches!(c, '-' | ' ' | '\t' | '\r' | '\n') {
                continue;
            }
            let v = c
                .to_digit(16)
                .ok_or(Error::RecoveryFormat("only hex digits and `-` are allowed"))?;
            if n >= SECRET_LEN * 2 {
                return Err(Error::RecoveryFormat("more than 64 hex digits"));
            }
            out[n / 2] |= (v as u8) << if n.is_multiple_of(2) { 4 } else { 0 };
            n += 1;
        }
        if n != SECRET_LEN * 2 {
            return Err(Error::RecoveryFormat("fewer than 64 hex digits"));
        }
        Ok(Self(out))
    }
}

impl std::fmt::Debug for RecoverySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoverySecret(..)")
    }
}

/// A LUKS2 volume key (64 bytes for AES-XTS-512, 32 for Adiantum).
pub struct VolumeKey(Zeroizing<Vec<u8>>);

impl VolumeKey {
    /// A fresh key of `len` bytes from getrandom.
    pub fn generate(len: usize) -> Result<Self> {
        let mut k = Zeroizing::new(vec![0u8; len]);
        getrandom::fill(&mut k[..]).map_err(|e| Error::OsRandom(e.to_string()))?;
        Ok(Self(k))
    }

    pub(crate) fn from_vec(v: Zeroizing<Vec<u8>>) -> Self {
        Self(v)
    }

    /// The raw key. Keep the borrow short.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VolumeKey({} bytes, ..)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_depends_on_both_sources() {
        let a = SealedSecret::mix(&[1u8; 32], &[2u8; 32]).unwrap();
        let b = SealedSecret::mix(&[1u8; 32], &[3u8; 32]).unwrap();
        let c = SealedSecret::mix(&[4u8; 32], &[2u8; 32]).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
        assert_ne!(a.expose_secret(), &[1u8; 32]);
        assert!(matches!(
            SealedSecret::mix(&[1u8; 31], &[2u8; 32]),
            Err(Error::ShortRandom { got: 31, want: 32 })
        ));
    }

    #[test]
    fn typable_form_round_trips_and_is_lenient_on_input() {
        let s = RecoverySecret::generate().unwrap();
        let t = s.to_typable();
        assert_eq!(t.len(), 79);
        assert_eq!(t.matches('-').count(), 15);
        let back = RecoverySecret::parse_typable(&t.to_uppercase().replace('-', " ")).unwrap();
        assert_eq!(back.expose_secret(), s.expose_secret());
        assert!(RecoverySecret::parse_typable(&t[..78]).is_err());
        assert!(RecoverySecret::parse_typable(&format!("{}0", &*t)).is_err());
        assert!(RecoverySecret::parse_typable(&t.replace('a', "g")).is_err() || !t.contains('a'));
    }

    #[test]
    fn debug_never_shows_bytes() {
        let s = SealedSecret::mix(&[0xab; 32], &[0xcd; 32]).unwrap();
        let r = RecoverySecret::from_slice(&[0xab; 32]).unwrap();
        let v = VolumeKey::from_vec(Zeroizing::new(vec![0xab; 64]));
        for text in [format!("{s:?}"), format!("{r:?}"), format!("{v:?}")] {
            assert!(!text.contains("ab") && !text.contains("171"), "{text}");
        }
    }
}
