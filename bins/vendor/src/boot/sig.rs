//! `boot.sig`, in the format of Raspberry Pi's `rpi-eeprom-digest`:
//!
//! ```text
//! <sha256 of boot.img, 64 hex digits>
//! ts: <unix time of signing>
//! rsa2048: <PKCS#1 v1.5 RSA-2048 signature over SHA-256 of boot.img, 512 hex digits>
//! ```

use rsa::sha2::{Digest, Sha256};

use super::{BootError, BootKey, BootPublicKey};

/// Bytes in an RSA-2048 signature.
const SIG_LEN: usize = 256;
/// Largest `boot.sig` read: the real one is under 600 bytes.
pub const MAX_SIG_FILE: usize = 4096;

/// A parsed `boot.sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSig {
    /// SHA-256 of `boot.img`, as the first line states it.
    pub digest: [u8; 32],
    /// When it was signed (unix seconds), if stated.
    pub ts: Option<u64>,
    /// The RSA-2048 signature.
    pub signature: Vec<u8>,
}

/// Why a `boot.sig` was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The file is not in the `rpi-eeprom-digest` format.
    #[error("boot.sig is malformed: {0}")]
    Malformed(&'static str),
    /// The digest line does not match `boot.img`.
    #[error("boot.img does not match the sha256 in boot.sig")]
    DigestMismatch,
    /// The signature does not verify against the board's key.
    #[error("boot.sig's rsa2048 signature does not verify against the board's key")]
    BadSignature,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl BootSig {
    /// Signs `boot_img` with the vendor's key, stamped `ts`.
    pub fn sign(key: &BootKey, boot_img: &[u8], ts: u64) -> Result<Self, BootError> {
        Ok(Self {
            digest: sha256(boot_img),
            ts: Some(ts),
            signature: key.sign(boot_img)?,
        })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n", hex::encode(self.digest));
        if let Some(ts) = self.ts {
            text.push_str(&format!("ts: {ts}\n"));
        }
        text.push_str(&format!("rsa2048: {}\n", hex::encode(&self.signature)));
        text
    }

    /// Parses the file; anything but the format above is [`SigError::Malformed`].
    pub fn parse(bytes: &[u8]) -> Result<Self, SigError> {
        if bytes.len() > MAX_SIG_FILE {
            return Err(SigError::Malformed("too large"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SigError::Malformed("not text"))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let digest_hex = lines.next().ok_or(SigError::Malformed("empty"))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(digest_hex, &mut digest)
            .map_err(|_| SigError::Malformed("first line is not a sha256 in hex"))?;
        let (mut ts, mut signature) = (None, None);
        for line in lines {
            let (key, value) = line
                .split_once(':')
                .ok_or(SigError::Malformed("a line is not `key: value`"))?;
            let value = value.trim();
            match key.trim() {
                "ts" if ts.is_none() => {
                    ts = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| SigError::Malformed("ts is not a unix time"))?,
                    );
                }
                "rsa2048" if signature.is_none() => {
                    let sig = hex::decode(value)
                        .map_err(|_| SigError::Malformed("rsa2048 is not hex"))?;
                    if sig.len() != SIG_LEN {
                        return Err(SigError::Malformed("rsa2048 is not 256 bytes"));
                    }
                    signature = Some(sig);
                }
                _ => return Err(SigError::Malformed("unknown or repeated line")),
            }
        }
        Ok(Self {
            digest,
            ts,
            signature: signature.ok_or(SigError::Malformed("no rsa2048 line"))?,
        })
    }

    /// Checks `boot_img` against this signature and the board's key: the stated digest must be
    /// the image's, and the signature must verify over the image's own SHA-256.
    pub fn verify(&self, key: &BootPublicKey, boot_img: &[u8]) -> Result<(), SigError> {
        let digest = sha256(boot_img);
        if digest != self.digest {
            return Err(SigError::DigestMismatch);
        }
        if !key.verify_digest(&digest, &self.signature) {
            return Err(SigError::BadSignature);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// Key generation is slow in debug builds: one key for the module.
    fn key() -> &'static BootKey {
        static KEY: OnceLock<BootKey> = OnceLock::new();
        KEY.get_or_init(|| BootKey::generate().unwrap())
    }

    #[test]
    fn signed_image_round_trips_and_verifies() {
        let img = b"a boot image".to_vec();
        let sig = BootSig::sign(key(), &img, 1_700_000_000).unwrap();
        let text = sig.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], hex::encode(Sha256::digest(&img)));
        assert_eq!(lines[1], "ts: 1700000000");
        assert!(lines[2].starts_with("rsa2048: ") && lines[2].len() == 9 + 512);
        let parsed = BootSig::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, sig);
        parsed.verify(&key().public_key(), &img).unwrap();
    }

    #[test]
    fn changed_image_wrong_key_or_forged_digest_are_refused() {
        let img = b"a boot image".to_vec();
        let sig = BootSig::sign(key(), &img, 1).unwrap();
        let mut other = img.clone();
        other[0] ^= 1;
        assert_eq!(
            sig.verify(&key().public_key(), &other),
            Err(SigError::DigestMismatch)
        );
        // An attacker restating the digest of their image still lacks the signature.
        let forged = BootSig {
            digest: sha256(&other),
            ..sig.clone()
        };
        assert_eq!(
            forged.verify(&key().public_key(), &other),
            Err(SigError::BadSignature)
        );
        let stranger = BootKey::generate().unwrap();
        assert_eq!(
            sig.verify(&stranger.public_key(), &img),
            Err(SigError::BadSignature)
        );
    }

    #[test]
    fn malformed_files_are_named() {
        let good = BootSig::sign(key(), b"x", 5).unwrap().to_text();
        let digest_line = good.lines().next().unwrap();
        for (text, what) in [
            ("", "empty"),
            ("zz\n", "first line is not a sha256 in hex"),
            (digest_line, "no rsa2048 line"),
            (
                &format!("{digest_line}\nts: soon\n"),
                "ts is not a unix time",
            ),
            (
                &format!("{digest_line}\nrsa2048: abcd\n"),
                "rsa2048 is not 256 bytes",
            ),
            (&format!("{good}ts: 6\n"), "unknown or repeated line"),
        ] {
            assert_eq!(
                BootSig::parse(text.as_bytes()),
                Err(SigError::Malformed(what)),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = BootSig::parse(&bytes);
        }

        #[test]
        fn mutated_sig_files_never_panic(pos in 0usize..600, byte in any::<u8>()) {
            let mut text = BootSig::sign(key(), b"x", 5).unwrap().to_text().into_bytes();
            let at = pos % text.len();
            text[at] = byte;
            if let Ok(sig) = BootSig::parse(&text) {
                let _ = sig.verify(&key().public_key(), b"x");
            }
        }
    }
}
