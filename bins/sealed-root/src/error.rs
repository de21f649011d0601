//! Errors of the sealed root. None carries key bytes: secrets never reach a message.

use std::path::PathBuf;

use crate::token::TokenError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on and no secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libcryptsetup refused an operation.
    #[error("{op} on {device}: {reason}")]
    Cryptsetup {
        /// The operation (e.g. "loading the LUKS2 header").
        op: &'static str,
        /// The device or image.
        device: PathBuf,
        /// libcryptsetup's reason (an errno text; never key material).
        reason: String,
    },
    /// A keybound token in the header is malformed or inconsistent with the header.
    #[error("{device}: {source}")]
    Token {
        /// The device or image.
        device: PathBuf,
        /// The parser's finding, naming the field.
        source: TokenError,
    },
    /// The header carries no token of this type.
    #[error("{device}: no `{kind}` token in the LUKS2 header")]
    MissingToken {
        /// The device or image.
        device: PathBuf,
        /// The token type.
        kind: &'static str,
    },
    /// More than one token of this type (the header must be unambiguous).
    #[error("{device}: more than one `{kind}` token in the LUKS2 header")]
    DuplicateToken {
        /// The device or image.
        device: PathBuf,
        /// The token type.
        kind: &'static str,
    },
    /// The secure element failed.
    #[error("Zymkey: {0}")]
    Zymkey(#[from] zymkey::Error),
    /// The Zymkey returned fewer random bytes than asked for.
    #[error("the Zymkey returned {got} random bytes, {want} needed")]
    ShortRandom {
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        want: usize,
    },
    /// The operating system's random source failed.
    #[error("getrandom: {0}")]
    OsRandom(String),
    /// The unsealed payload is not a payload this version understands.
    #[error("the unsealed payload is malformed: {0}")]
    Payload(&'static str),
    /// The unsealed secret does not open the keyslot named by the token.
    #[error("{device}: the unsealed secret does not open keyslot {keyslot}")]
    WrongSecret {
        /// The device or image.
        device: PathBuf,
        /// The keyslot tried.
        keyslot: u32,
    },
    /// The volume is not the one the secret was sealed for.
    #[error("{device}: volume check failed: {what}")]
    VolumeCheck {
        /// The device or image.
        device: PathBuf,
        /// Which part differs ("LUKS2 UUID" or "volume key digest").
        what: &'static str,
    },
    /// Encrypting to the vendor's recipient failed.
    #[error("encrypting the recovery secret to the vendor's key: {0}")]
    AgeEncrypt(String),
    /// Decrypting the recovery token failed (wrong identity or damaged ciphertext).
    #[error("decrypting the recovery token: {0}")]
    AgeDecrypt(String),
    /// A recovery secret as typed is not one.
    #[error("recovery secret: {0}")]
    RecoveryFormat(&'static str),
    /// The header is not in a state this operation accepts.
    #[error("{device}: {reason}")]
    State {
        /// The device or image.
        device: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
