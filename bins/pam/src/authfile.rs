//! pam_u2f authfiles: one line per user, `user:cred[:cred…]`, the last line for a user wins.
//!
//! New format (pamu2fcfg ≥ 1.1): `KeyHandle,UserKey,CoseType,Options` — key handle in standard
//! base64 (`*` for a resident credential), public key in standard base64 (es256: 64-byte `x‖y`
//! or 65-byte `04‖x‖y`; eddsa: 32 bytes), COSE type `es256`/`rs256`/`eddsa`, options the
//! concatenation of `+presence`, `+verification`, `+pin` (possibly empty: a trailing comma).
//! Old format: `KeyHandle,UserKey` — web-safe base64 key handle, hex `04…` es256 key, presence
//! required, relying party = appid.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Longest accepted credential id (CTAP allows 1023 bytes).
pub const MAX_KEY_HANDLE: usize = 1023;

/// A credential's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoseType {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (parsed for compatibility; not verified: refused).
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl CoseType {
    /// The authfile spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CoseType::Es256 => "es256",
            CoseType::Rs256 => "rs256",
            CoseType::EdDsa => "eddsa",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "es256" => Some(CoseType::Es256),
            "rs256" => Some(CoseType::Rs256),
            "eddsa" => Some(CoseType::EdDsa),
            _ => None,
        }
    }
}

/// What the credential demands at assertion time (pamu2fcfg's `-P`, `-V`, `-N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialOptions {
    /// `+presence`: user presence (touch) required.
    pub presence: bool,
    /// `+verification`: user verification required.
    pub verification: bool,
    /// `+pin`: PIN verification required.
    pub pin: bool,
}

/// How the credential is found on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHandle {
    /// `*`: a resident (discoverable) credential, found by relying party.
    Resident,
    /// A credential id (non-empty, at most [`MAX_KEY_HANDLE`] bytes).
    Id(Vec<u8>),
}

/// The public key, validated for its type's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Uncompressed SEC1 P-256 point `04‖x‖y` (65 bytes; not yet checked to be on the curve).
    Es256([u8; 65]),
    /// Ed25519 public key.
    EdDsa([u8; 32]),
    /// RSA key bytes as pamu2fcfg wrote them (never verified by this module).
    Rs256(Vec<u8>),
}

impl PublicKey {
    /// The COSE type of this key.
    pub fn cose_type(&self) -> CoseType {
        match self {
            PublicKey::Es256(_) => CoseType::Es256,
            PublicKey::EdDsa(_) => CoseType::EdDsa,
            PublicKey::Rs256(_) => CoseType::Rs256,
        }
    }

    /// Bytes as the new format stores them (es256: 64-byte `x‖y`, like pamu2fcfg).
    pub fn stored_bytes(&self) -> &[u8] {
        match self {
            PublicKey::Es256(k) => &k[1..],
            PublicKey::EdDsa(k) => k,
            PublicKey::Rs256(k) => k,
        }
    }

    /// Builds a key from the bytes of `cose_type`.
    pub fn from_bytes(cose_type: CoseType, bytes: &[u8]) -> Option<Self> {
        match cose_type {
            CoseType::Es256 => {
                let mut k = [0u8; 65];
                match bytes.len() {
                    64 => {
                        k[0] = 4;
                        k[1..].copy_from_slice(bytes);
                    }
                    65 if bytes[0] == 4 => k.copy_from_slice(bytes),
                    _ => return None,
                }
                Some(PublicKey::Es256(k))
            }
            CoseType::EdDsa => bytes.try_into().ok().map(PublicKey::EdDsa),
            CoseType::Rs256 => {
                (bytes.len() > 64 && bytes.len() <= 1024).then(|| PublicKey::Rs256(bytes.to_vec()))
            }
        }
    }
}

/// One credential of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Where the credential lives.
    pub key_handle: KeyHandle,
    /// Its public key.
    pub public_key: PublicKey,
    /// What the assertion must show.
    pub options: CredentialOptions,
    /// Written in the old (U2F-era) format: relying party = appid.
    pub old_format: bool,
}

/// One authfile line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The user name (non-empty, no `:`).
    pub user: String,
    /// The user's credentials (at least one).
    pub credentials: Vec<Credential>,
}

/// A malformed line or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthfileError {
    /// No `:` after the user name, or an empty user name.
    #[error("line has no user name")]
    NoUser,
    /// A user with no credentials.
    #[error("user has no credentials")]
    NoCredentials,
    /// A credential with the wrong number of fields.
    #[error("credential {index}: {fields} fields (expected 2 or 4)")]
    FieldCount {
        /// Credential position (0-based).
        index: usize,
        /// Fields found.
        fields: usize,
    },
    /// A bad key handle.
    #[error("credential {0}: bad key handle")]
    KeyHandle(usize),
    /// A bad public key.
    #[error("credential {0}: bad public key")]
    PublicKey(usize),
    /// An unknown COSE type.
    #[error("credential {0}: unknown COSE type")]
    CoseType(usize),
    /// An unknown or repeated option.
    #[error("credential {0}: bad options")]
    Options(usize),
}

fn parse_options(s: &str) -> Option<CredentialOptions> {
    let mut o = CredentialOptions::default();
    if s.is_empty() {
        return Some(o);
    }
    let rest = s.strip_prefix('+')?;
    for word in rest.split('+') {
        let flag = match word {
            "presence" => &mut o.presence,
            "verification" => &mut o.verification,
            "pin" => &mut o.pin,
            _ => return None,
        };
        if *flag {
            return None;
        }
        *flag = true;
    }
    Some(o)
}

fn parse_credential(index: usize, text: &str) -> Result<Credential, AuthfileError> {
    let fields: Vec<&str> = text.split(',').collect();
    match fields.as_slice() {
        [kh, pk] => {
            let key_handle = URL_SAFE_NO_PAD
                .decode(kh.trim_end_matches('='))
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_HANDLE)
                .ok_or(AuthfileError::KeyHandle(index))?;
            let key = (pk.len() == 130)
                .then(|| hex::decode(pk).ok())
                .flatten()
                .and_then(|b| PublicKey::from_bytes(CoseType::Es256, &b))
                .filter(|_| pk.starts_with("04"))
                .ok_or(AuthfileError::PublicKey(index))?;
            Ok(Credential {
                key_handle: KeyHandle::Id(key_handle),
                public_key: key,
                options: CredentialOptions {
                    presence: true,
                    ..CredentialOptions::default()
                },
                old_format: true,
            })
        }
        [kh, pk, ty, opts] => {
            let key_handle = if *kh == "*" {
                KeyHandle::Resident
            } else {
                KeyHandle::Id(
                    STANDARD
                        .decode(kh)
                        .ok()
                        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_HANDLE)
                        .ok_or(AuthfileError::KeyHandle(index))?,
                )
            };
            let cose_type = CoseType::parse(ty).ok_or(AuthfileError::CoseType(index))?;
            let public_key = STANDARD
                .decode(pk)
                .ok()
                .and_then(|b| PublicKey::from_bytes(cose_type, &b))
                .ok_or(AuthfileError::PublicKey(index))?;
            let options = parse_options(opts).ok_or(AuthfileError::Options(index))?;
            Ok(Credential {
                key_handle,
                public_key,
                options,
                old_format: false,
            })
        }
        other => Err(AuthfileError::FieldCount {
            index,
            fields: other.len(),
        }),
    }
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Result<UserEntry, AuthfileError> {
    let line = line.trim_end_matches(['\r', ' ', '\t']);
    let (user, rest) = line.split_once(':').ok_or(AuthfileError::NoUser)?;
    if user.is_empty() {
        return Err(AuthfileError::NoUser);
    }
    if rest.is_empty() {
        return Err(AuthfileError::NoCredentials);
    }
    let credentials = rest
        .split(':')
        .enumerate()
        .map(|(i, c)| parse_credential(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UserEntry {
        user: user.to_owned(),
        credentials,
    })
}

/// The user name of a line, if it has one (comments and blank lines have none).
pub fn line_user(line: &str) -> Option<&str> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    line.split_once(':')
        .map(|(u, _)| u)
        .filter(|u| !u.is_empty())
}

/// The last line for `user` in `content`, parsed. Other users' lines are not validated.
/// `Ok(None)`: the user has no line. `Err`: the user's last line is malformed (fail, never skip).
pub fn find_user(content: &str, user: &str) -> Result<Option<UserEntry>, AuthfileError> {
    content
        .lines()
        .rfind(|l| line_user(l) == Some(user))
        .map(parse_line)
        .transpose()
}

/// Formats one credential in the new format.
pub fn format_credential(c: &Credential) -> String {
    if c.old_format
        && let (KeyHandle::Id(kh), PublicKey::Es256(pk)) = (&c.key_handle, &c.public_key)
    {
        return format!("{},{}", URL_SAFE_NO_PAD.encode(kh), hex::encode(pk));
    }
    let kh = match &c.key_handle {
        KeyHandle::Resident => "*".to_owned(),
        KeyHandle::Id(id) => STANDARD.encode(id),
    };
    format!(
        "{},{},{},{}{}{}",
        kh,
        STANDARD.encode(c.public_key.stored_bytes()),
        c.public_key.cose_type().as_str(),
        if c.options.presence { "+presence" } else { "" },
        if c.options.verification {
            "+verification"
        } else {
            ""
        },
        if c.options.pin { "+pin" } else { "" },
    )
}

/// Formats a whole line (no newline).
pub fn format_line(e: &UserEntry) -> String {
    let creds: Vec<String> = e.credentials.iter().map(format_credential).collect();
    format!("{}:{}", e.user, creds.join(":"))
}

#[cfg(test)]
mod tests;
