//! authenticatorGetInfo: advertises exactly what this authenticator implements.

use ciborium::Value;

use super::{Authenticator, map};
use crate::ctap2::cbor::text_map;
use crate::ctap2::cose;

/// Protocol versions.
pub const VERSIONS: &[&str] = &["U2F_V2", "FIDO_2_0", "FIDO_2_1"];
/// Extensions.
pub const EXTENSIONS: &[&str] = &["credProtect", "hmac-secret"];
/// Credential algorithms, in preference order.
pub const ALGORITHMS: &[i64] = &[cose::ES256, cose::EDDSA];
/// The largest CTAP2 message accepted (CTAPHID's maximum rounded down).
pub const MAX_MSG_SIZE: u64 = 7609;

impl Authenticator {
    /// The getInfo response map.
    pub(super) fn get_info(&self) -> Value {
        let text_array =
            |items: &[&str]| Value::Array(items.iter().map(|s| Value::Text((*s).into())).collect());
        let options = text_map(vec![
            ("rk", Value::Bool(true)),
            ("up", Value::Bool(true)),
            ("plat", Value::Bool(false)),
            ("clientPin", Value::Bool(self.state.pin_hash.is_some())),
            ("pinUvAuthToken", Value::Bool(true)),
            ("makeCredUvNotRqd", Value::Bool(true)),
        ]);
        let algorithms = Value::Array(
            ALGORITHMS
                .iter()
                .map(|alg| {
                    text_map(vec![
                        ("alg", Value::Integer((*alg).into())),
                        ("type", Value::Text("public-key".into())),
                    ])
                })
                .collect(),
        );
        map(vec![
            (0x01, text_array(VERSIONS)),
            (0x02, text_array(EXTENSIONS)),
            (0x03, Value::Bytes(self.state.aaguid.to_vec())),
            (0x04, options),
            (0x05, Value::Integer(MAX_MSG_SIZE.into())),
            (
                0x06,
                Value::Array(vec![Value::Integer(2.into()), Value::Integer(1.into())]),
            ),
            (0x07, Value::Integer(8.into())),
            (0x08, Value::Integer(64.into())),
            (0x09, text_array(&["usb"])),
            (0x0A, algorithms),
            (0x0D, Value::Integer(4.into())),
            (0x0E, Value::Integer(1.into())),
        ])
    }
}
