//! The locked-blob format, version 1 (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       4     magic "ZKLB"
//! 4       1     format version (1)
//! 5       1     AEAD: 1 = AES-256-GCM
//! 6       1     key: 0 = one-way, 1 = shared (use_shared_key)
//! 7       1     reserved, 0
//! 8       16    module tag (derived from the module secret; names the module, reveals nothing)
//! 24      12    nonce (random)
//! 36      4     n = ciphertext length, including the 16-byte GCM tag
//! 40      n     ciphertext (AAD = bytes 0..40)
//! 40+n    64    ECDSA P-256 signature r||s over SHA-256(bytes 0..40+n), module blob key
//! ```
//!
//! Unlocking checks, in order: length and magic, version, structure, module tag
//! ([`BlobError::ForeignModule`]), key kind, signature and AEAD ([`BlobError::Modified`]).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::{Signer, Verifier};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::{KeyKind, ModuleKeys};

/// The blob magic.
pub const MAGIC: [u8; 4] = *b"ZKLB";
/// The current format version.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 40;
/// Signature trailer length.
pub const SIG_LEN: usize = 64;
/// AEAD tag length.
pub const AEAD_TAG_LEN: usize = 16;
const AEAD_AES256GCM: u8 = 1;

/// Why a blob does not unlock. Each has its own return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Locked by another module.
    #[error("blob was locked by another module")]
    ForeignModule,
    /// Modified: bad magic or structure, bad signature, or failed authentication.
    #[error("blob was modified")]
    Modified,
    /// Shorter than its header says.
    #[error("blob is truncated")]
    Truncated,
    /// Unknown format version.
    #[error("blob format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Locked with the other key kind.
    #[error("blob was locked with the other key (use_shared_key differs)")]
    WrongKey,
}

/// A blob's fields, borrowed; parsing checks structure only, no keys.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedBlob<'a> {
    /// Key kind byte.
    pub key: KeyKind,
    /// Module tag.
    pub tag: &'a [u8],
    /// Nonce.
    pub nonce: &'a [u8],
    /// Header (the AAD).
    pub header: &'a [u8],
    /// Ciphertext with GCM tag.
    pub ciphertext: &'a [u8],
    /// Signed part (header and ciphertext).
    pub signed: &'a [u8],
    /// Signature.
    pub signature: &'a [u8],
}

/// Parses a blob's structure.
pub fn parse(blob: &[u8]) -> Result<ParsedBlob<'_>, BlobError> {
    if blob.len() < 5 {
        return Err(BlobError::Truncated);
    }
    if blob[..4] != MAGIC {
        return Err(BlobError::Modified);
    }
    if blob[4] != VERSION {
        return Err(BlobError::UnsupportedVersion(blob[4]));
    }
    if blob.len() < HEADER_LEN {
        return Err(BlobError::Truncated);
    }
    if blob[5] != AEAD_AES256GCM || blob[7] != 0 {
        return Err(BlobError::Modified);
    }
    let key = match blob[6] {
        0 => KeyKind::OneWay,
        1 => KeyKind::Shared,
        _ => return Err(BlobError::Modified),
    };
    let n = u32::from_be_bytes([blob[36], blob[37], blob[38], blob[39]]) as usize;
    if n < AEAD_TAG_LEN {
        return Err(BlobError::Modified);
    }
    let total = HEADER_LEN
        .checked_add(n)
        .and_then(|t| t.checked_add(SIG_LEN))
        .ok_or(BlobError::Modified)?;
    if blob.len() < total {
        return Err(BlobError::Truncated);
    }
    if blob.len() > total {
        return Err(BlobError::Modified);
    }
    Ok(ParsedBlob {
        key,
        tag: &blob[8..24],
        nonce: &blob[24..36],
        header: &blob[..HEADER_LEN],
        ciphertext: &blob[HEADER_LEN..HEADER_LEN + n],
        signed: &blob[..HEADER_LEN + n],
        signature: &blob[HEADER_LEN + n..],
    })
}

fn cipher(keys: &ModuleKeys, kind: KeyKind) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(keys.lock_key(kind)).expect("32-byte key")
}

/// Locks `plaintext` with the module's keys.
pub fn lock(keys: &ModuleKeys, kind: KeyKind, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("the OS random number generator failed");
    let ct_len = plaintext.len() + AEAD_TAG_LEN;
    let mut out = Vec::with_capacity(HEADER_LEN + ct_len + SIG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, AEAD_AES256GCM, kind.byte(), 0]);
    out.extend_from_slice(keys.tag());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(ct_len as u32).to_be_bytes());
    let ct = cipher(keys, kind)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &out[..HEADER_LEN],
            },
        )
        .expect("AES-GCM encryption of a bounded plaintext");
    out.extend_from_slice(&ct);
    let sig: Signature = keys.blob_signer().sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    out
}

/// Verifies and decrypts a blob made by [`lock`] on this module with the same key kind.
pub fn unlock(
    keys: &ModuleKeys,
    kind: KeyKind,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BlobError> {
    let parsed = parse(blob)?;
    if !bool::from(parsed.tag.ct_eq(keys.tag())) {
        return Err(BlobError::ForeignModule);
    }
    if parsed.key != kind {
        return Err(BlobError::WrongKey);
    }
    let sig = Signature::from_slice(parsed.signature).map_err(|_| BlobError::Modified)?;
    keys.blob_verifier()
        .verify(parsed.signed, &sig)
        .map_err(|_| BlobError::Modified)?;
    cipher(keys, kind)
        .decrypt(
            &Nonce::from(<[u8; 12]>::try_from(parsed.nonce).map_err(|_| BlobError::Modified)?),
            Payload {
                msg: parsed.ciphertext,
                aad: parsed.header,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| BlobError::Modified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ModuleSecret;
    use proptest::prelude::*;
    use std::sync::OnceLock;
    use zk_app_utils::wire::MAX_LOCK_PLAINTEXT;

    fn keys() -> &'static (ModuleKeys, ModuleKeys) {
        static KEYS: OnceLock<(ModuleKeys, ModuleKeys)> = OnceLock::new();
        KEYS.get_or_init(|| {
            (
                ModuleKeys::derive(&ModuleSecret::from_bytes([1; 32])),
                ModuleKeys::derive(&ModuleSecret::from_bytes([2; 32])),
            )
        })
    }

    #[test]
    fn the_three_rejections_are_distinct() {
        let (a, b) = keys();
        let blob = lock(a, KeyKind::OneWay, b"root secret");
        assert_eq!(
            unlock(b, KeyKind::OneWay, &blob),
            Err(BlobError::ForeignModule)
        );
        let mut modified = blob.clone();
        modified[HEADER_LEN + 2] ^= 0x10;
        assert_eq!(
            unlock(a, KeyKind::OneWay, &modified),
            Err(BlobError::Modified)
        );
        assert_eq!(
            unlock(a, KeyKind::OneWay, &blob[..blob.len() - 1]),
            Err(BlobError::Truncated)
        );
        assert_eq!(unlock(a, KeyKind::Shared, &blob), Err(BlobError::WrongKey));
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert_eq!(
            unlock(a, KeyKind::OneWay, &v2),
            Err(BlobError::UnsupportedVersion(2))
        );
        assert_eq!(
            &unlock(a, KeyKind::OneWay, &blob).unwrap()[..],
            b"root secret"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_for_every_allowed_size(
            len in 1usize..=MAX_LOCK_PLAINTEXT, shared in any::<bool>(), seed in any::<u8>()
        ) {
            let (a, _) = keys();
            let kind = KeyKind::from_shared(shared);
            let pt: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let blob = lock(a, kind, &pt);
            prop_assert_eq!(blob.len(), HEADER_LEN + len + AEAD_TAG_LEN + SIG_LEN);
            prop_assert_eq!(&unlock(a, kind, &blob).unwrap()[..], &pt[..]);
        }

        #[test]
        fn any_single_bit_flip_fails(len in 1usize..200, bit in any::<prop::sample::Index>()) {
            let (a, _) = keys();
            let blob = lock(a, KeyKind::OneWay, &vec![0x5a; len]);
            let mut bad = blob.clone();
            let i = bit.index(blob.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert!(unlock(a, KeyKind::OneWay, &bad).is_err());
        }

        #[test]
        fn any_truncation_fails(len in 1usize..200, cut in any::<prop::sample::Index>()) {
            let (a, _) = keys();
            let blob = lock(a, KeyKind::Shared, &vec![0xa5; len]);
            let keep = cut.index(blob.len());
            prop_assert!(unlock(a, KeyKind::Shared, &blob[..keep]).is_err());
        }

        #[test]
        fn blobs_do_not_move_between_modules(len in 1usize..300, shared in any::<bool>()) {
            let (a, b) = keys();
            let kind = KeyKind::from_shared(shared);
            let blob = lock(a, kind, &vec![7; len]);
            prop_assert_eq!(unlock(b, kind, &blob), Err(BlobError::ForeignModule));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (a, _) = keys();
            prop_assert!(unlock(a, KeyKind::OneWay, &bytes).is_err());
        }
    }
}
