//! CTAP2 responses and authenticator data, encoded as canonical CBOR.

use ciborium::Value;

use super::cbor::{int_map, text_map};

/// Authenticator data flags.
pub mod flags {
    /// User present.
    pub const UP: u8 = 0x01;
    /// User verified.
    pub const UV: u8 = 0x04;
    /// Attested credential data included.
    pub const AT: u8 = 0x40;
    /// Extension data included.
    pub const ED: u8 = 0x80;
}

/// Attested credential data: AAGUID, credential id and COSE public key.
#[derive(Debug, Clone)]
pub struct AttestedCredential {
    /// The authenticator model.
    pub aaguid: [u8; 16],
    /// Credential id.
    pub credential_id: Vec<u8>,
    /// COSE public key.
    pub public_key: Value,
}

/// Authenticator data (WebAuthn §6.1).
#[derive(Debug, Clone)]
pub struct AuthenticatorData {
    /// SHA-256 of the RP id.
    pub rp_id_hash: [u8; 32],
    /// UP/UV flags (AT and ED are derived).
    pub up: bool,
    /// User verified.
    pub uv: bool,
    /// Signature counter.
    pub sign_count: u32,
    /// Present in makeCredential.
    pub attested: Option<AttestedCredential>,
    /// Extension outputs (text keys), if any.
    pub extensions: Vec<(&'static str, Value)>,
}

impl AuthenticatorData {
    /// The byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&self.rp_id_hash);
        let mut f = 0;
        if self.up {
            f |= flags::UP;
        }
        if self.uv {
            f |= flags::UV;
        }
        if self.attested.is_some() {
            f |= flags::AT;
        }
        if !self.extensions.is_empty() {
            f |= flags::ED;
        }
        out.push(f);
        out.extend_from_slice(&self.sign_count.to_be_bytes());
        if let Some(att) = &self.attested {
            out.extend_from_slice(&att.aaguid);
            let len = u16::try_from(att.credential_id.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&att.credential_id);
            out.extend(super::cbor::encode(&att.public_key));
        }
        if !self.extensions.is_empty() {
            out.extend(super::cbor::encode(&text_map(self.extensions.clone())));
        }
        out
    }
}

/// A `PublicKeyCredentialDescriptor` value.
pub fn credential_descriptor(id: &[u8]) -> Value {
    text_map(vec![
        ("id", Value::Bytes(id.to_vec())),
        ("type", Value::Text("public-key".into())),
    ])
}

/// The makeCredential response map.
pub fn make_credential(fmt: &str, auth_data: Vec<u8>, att_stmt: Value) -> Value {
    int_map(vec![
        (1, Value::Text(fmt.into())),
        (2, Value::Bytes(auth_data)),
        (3, att_stmt),
    ])
}

/// The user entity returned by getAssertion.
#[derive(Debug, Clone, Default)]
pub struct UserOut {
    /// User handle.
    pub id: Vec<u8>,
    /// Name (only with user verification).
    pub name: Option<String>,
    /// Display name (only with user verification).
    pub display_name: Option<String>,
}

/// The getAssertion / getNextAssertion response map.
pub fn get_assertion(
    credential_id: &[u8],
    auth_data: Vec<u8>,
    signature: Vec<u8>,
    user: Option<UserOut>,
    number_of_credentials: Option<usize>,
) -> Value {
    let mut entries = vec![
        (1, credential_descriptor(credential_id)),
        (2, Value::Bytes(auth_data)),
        (3, Value::Bytes(signature)),
    ];
    if let Some(user) = user {
        let mut u = vec![("id", Value::Bytes(user.id))];
        if let Some(name) = user.name {
            u.push(("name", Value::Text(name)));
        }
        if let Some(display_name) = user.display_name {
            u.push(("displayName", Value::Text(display_name)));
        }
        entries.push((4, text_map(u)));
    }
    if let Some(n) = number_of_credentials {
        entries.push((5, Value::Integer((n as u64).into())));
    }
    int_map(entries)
}
