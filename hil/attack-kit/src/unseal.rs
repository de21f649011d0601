//! The attacker's unseal: the `keybound-zymkey` token's blob unlocked by the board's Zymkey
//! through the production client, decoded exactly as keybound-init decodes it
//! (`sealed_root::SealedPayload`; the passphrase is what `Unsealed::passphrase` returns).

use std::path::{Path, PathBuf};

use sealed_root::SecureElement;
use sealed_root::token::{ZYMKEY_TOKEN, ZymkeyToken};
use zeroize::Zeroizing;

use crate::header::{HeaderError, read_header};

/// Why the attack did not yield a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The header could not be read.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The header carries no `keybound-zymkey` token.
    #[error("{} has no keybound-zymkey token", .0.display())]
    NoToken(PathBuf),
    /// The token is not one keybound writes.
    #[error("{}: {source}", device.display())]
    BadToken {
        /// The device.
        device: PathBuf,
        /// What is wrong with the token.
        source: sealed_root::token::TokenError,
    },
    /// The Zymkey library or module is not reachable, or it refused the blob.
    #[error("zymkey: {0}")]
    Zymkey(#[from] zymkey::Error),
    /// The unlocked bytes are not a sealed payload.
    #[error("unlocked blob: {0}")]
    Payload(#[from] sealed_root::Error),
}

/// Unseals the keyslot passphrase of the sealed root `device` with the Zymkey behind `library`
/// (`None`: `libzk_app_utils.so` through the loader's search path, as on the board).
pub fn unseal_passphrase(
    device: &Path,
    library: Option<&Path>,
) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
    let header = read_header(device)?;
    let (_, json) = header
        .tokens_of_type(ZYMKEY_TOKEN)
        .into_iter()
        .next()
        .ok_or_else(|| UnsealError::NoToken(device.into()))?;
    let token = ZymkeyToken::from_json(&json).map_err(|source| UnsealError::BadToken {
        device: device.into(),
        source,
    })?;
    let lib = match library {
        Some(path) => zymkey::Library::load_from(path)?,
        None => zymkey::Library::load()?,
    };
    let zk = zymkey::Zymkey::open(&lib)?;
    // keybound-init's path: SecureElement::unlock (one-way key), then SealedPayload::decode.
    let plain = SecureElement::unlock(&zk, &token.sealed_blob)?;
    let payload = sealed_root::SealedPayload::decode(&plain)?;
    Ok(Zeroizing::new(payload.secret.expose_secret().to_vec()))
}

/// Lower-case hex of `bytes` (the loot's on-card form), in a wiping string.
pub fn passphrase_hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_complete() {
        assert_eq!(passphrase_hex(&[0x00, 0x9a, 0xff]).as_str(), "009aff");
        assert_eq!(passphrase_hex(&[]).as_str(), "");
    }
}
