//! The two LUKS2 tokens, parsed strictly. The header is checksummed, not authenticated: every
//! field is checked for its exact type and value, unknown fields are refused, and the keyslot a
//! token names is only a hint that the caller checks against the header. No policy (cipher, KDF,
//! whether to verify) is ever read from a token.
//!
//! ```json
//! {"type":"keybound-zymkey","keyslots":["0"],"version":1,"sealed-blob":"<base64>"}
//! {"type":"keybound-recovery","keyslots":["1"],"version":1,"age-ciphertext":"<base64>"}
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

/// Token type of the Zymkey-sealed keyslot.
pub const ZYMKEY_TOKEN: &str = "keybound-zymkey";
/// Token type of the vendor recovery keyslot.
pub const RECOVERY_TOKEN: &str = "keybound-recovery";
/// The only token version this code reads and writes.
pub const TOKEN_VERSION: u64 = 1;
/// LUKS2 has at most 32 keyslots.
pub const MAX_KEYSLOTS: u32 = 32;
/// Upper bound of a decoded blob or ciphertext (ours are a few hundred bytes).
pub const MAX_PAYLOAD: usize = 4096;

/// A token that is not what this version writes. Messages name the token and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not JSON.
    #[error("token is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("{token} token: not a JSON object")]
    NotObject {
        /// Token type expected.
        token: &'static str,
    },
    /// A required field is absent.
    #[error("{token} token: field `{field}` is missing")]
    Missing {
        /// Token type expected.
        token: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field this version does not know (refused: nothing unknown is trusted).
    #[error("{token} token: unknown field {field:?}")]
    Unknown {
        /// Token type expected.
        token: &'static str,
        /// The field name as found (truncated to 64 characters).
        field: String,
    },
    /// A field has the wrong type or value.
    #[error("{token} token: field `{field}`: {reason}")]
    Invalid {
        /// Token type expected.
        token: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The `keybound-zymkey` token: which keyslot the sealed secret opens, and the Zymkey-locked
/// payload (secret and volume check).
#[derive(Clone, PartialEq, Eq)]
pub struct ZymkeyToken {
    /// The keyslot (a hint, checked against the header before use).
    pub keyslot: u32,
    /// The blob `zkLockData` returned (ciphertext; safe to store in the header).
    pub sealed_blob: Vec<u8>,
    /// Planted bug (issue 8): a token field that switches the volume check off.
    #[cfg(keybound_mutant = "token-metadata-policy")]
    pub skip_volume_check: bool,
}

/// The `keybound-recovery` token: which keyslot the recovery secret opens, and the secret
/// encrypted to the vendor's age X25519 recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryToken {
    /// The keyslot (a hint, checked against the header before use).
    pub keyslot: u32,
    /// The binary age file holding the 32-byte recovery secret.
    pub age_ciphertext: Vec<u8>,
}

impl std::fmt::Debug for ZymkeyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZymkeyToken")
            .field("keyslot", &self.keyslot)
            .field("sealed_blob_len", &self.sealed_blob.len())
            .finish()
    }
}

impl std::fmt::Debug for RecoveryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryToken")
            .field("keyslot", &self.keyslot)
            .field("age_ciphertext_len", &self.age_ciphertext.len())
            .finish()
    }
}

/// One token's fields, checked off as they are read so leftovers are reported as unknown.
struct Fields<'a> {
    token: &'static str,
    map: &'a Map<String, Value>,
    allowed: &'static [&'static str],
}

impl<'a> Fields<'a> {
    fn new(
        token: &'static str,
        value: &'a Value,
        allowed: &'static [&'static str],
    ) -> Result<Self, TokenError> {
        let map = value.as_object().ok_or(TokenError::NotObject { token })?;
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(TokenError::Unknown {
                token,
                field: k.chars().take(64).collect(),
            });
        }
        Ok(Self {
            token,
            map,
            allowed,
        })
    }

    fn get(&self, field: &'static str) -> Result<&'a Value, TokenError> {
        debug_assert!(self.allowed.contains(&field));
        self.map.get(field).ok_or(TokenError::Missing {
            token: self.token,
            field,
        })
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> TokenError {
        TokenError::Invalid {
            token: self.token,
            field,
            reason: reason.into(),
        }
    }

    fn check_type(&self) -> Result<(), TokenError> {
        match self.get("type")? {
            Value::String(s) if s == self.token => Ok(()),
            Value::String(_) => Err(self.invalid("type", format!("must be \"{}\"", self.token))),
            _ => Err(self.invalid("type", "must be a string")),
        }
    }

    fn check_version(&self) -> Result<(), TokenError> {
        match self.get("version")?.as_u64() {
            Some(TOKEN_VERSION) => Ok(()),
            Some(v) => Err(self.invalid(
                "version",
                format!("version {v} is not supported (this build reads {TOKEN_VERSION})"),
            )),
            None => Err(self.invalid("version", "must be a non-negative integer")),
        }
    }

    fn keyslot(&self) -> Result<u32, TokenError> {
        let list = self
            .get("keyslots")?
            .as_array()
            .ok_or_else(|| self.invalid("keyslots", "must be an array"))?;
        let [Value::String(s)] = list.as_slice() else {
            return Err(self.invalid(
                "keyslots",
                "must hold exactly one keyslot number as a string",
            ));
        };
        let canonical = s == "0" || (!s.starts_with('0') && s.len() <= 2);
        match s.parse::<u32>() {
            Ok(n) if canonical && n < MAX_KEYSLOTS => Ok(n),
            _ => Err(self.invalid("keyslots", "keyslot must be a decimal number 0..=31")),
        }
    }

    fn base64(&self, field: &'static str) -> Result<Vec<u8>, TokenError> {
        let s = self
            .get(field)?
            .as_str()
            .ok_or_else(|| self.invalid(field, "must be a string"))?;
        if s.len() > MAX_PAYLOAD * 4 / 3 + 4 {
            return Err(self.invalid(field, format!("longer than {MAX_PAYLOAD} bytes")));
        }
        let bytes = B64
            .decode(s)
            .map_err(|_| self.invalid(field, "must be canonical padded base64"))?;
        if bytes.is_empty() {
            return Err(self.invalid(field, "must not be empty"));
        }
        Ok(bytes)
    }
}

fn parse_text(text: &str) -> Result<Value, TokenError> {
    serde_json::from_str(text).map_err(|e| TokenError::NotJson(e.to_string()))
}

impl ZymkeyToken {
    #[cfg(not(keybound_mutant = "token-metadata-policy"))]
    const FIELDS: &'static [&'static str] = &["type", "keyslots", "version", "sealed-blob"];
    #[cfg(keybound_mutant = "token-metadata-policy")]
    const FIELDS: &'static [&'static str] =
        &["type", "keyslots", "version", "sealed-blob", "volume-check"];

    /// A token for `keyslot` holding `sealed_blob`.
    pub fn new(keyslot: u32, sealed_blob: Vec<u8>) -> Self {
        Self {
            keyslot,
            sealed_blob,
            #[cfg(keybound_mutant = "token-metadata-policy")]
            skip_volume_check: false,
        }
    }

    /// Parses a token as libcryptsetup returns it.
    pub fn from_json(value: &Value) -> Result<Self, TokenError> {
        let f = Fields::new(ZYMKEY_TOKEN, value, Self::FIELDS)?;
        f.check_type()?;
        f.check_version()?;
        let keyslot = f.keyslot()?;
        let sealed_blob = f.base64("sealed-blob")?;
        // Planted bug token-metadata-policy (issue 8): policy read from the (unauthenticated)
        // header. Caught by scenario attacks/token-field-cannot-skip-volume-check.
        #[cfg(keybound_mutant = "token-metadata-policy")]
        let skip_volume_check = value.get("volume-check").and_then(Value::as_str) == Some("skip");
        Ok(Self {
            keyslot,
            sealed_blob,
            #[cfg(keybound_mutant = "token-metadata-policy")]
            skip_volume_check,
        })
    }

    /// Parses token JSON text.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        Self::from_json(&parse_text(text)?)
    }

    /// The token's JSON, as stored in the header.
    pub fn to_json(&self) -> Value {
        json!({
            "type": ZYMKEY_TOKEN,
            "keyslots": [self.keyslot.to_string()],
            "version": TOKEN_VERSION,
            "sealed-blob": B64.encode(&self.sealed_blob),
        })
    }
}

impl RecoveryToken {
    const FIELDS: &'static [&'static str] = &["type", "keyslots", "version", "age-ciphertext"];

    /// Parses a token as libcryptsetup returns it.
    pub fn from_json(value: &Value) -> Result<Self, TokenError> {
        let f = Fields::new(RECOVERY_TOKEN, value, Self::FIELDS)?;
        f.check_type()?;
        f.check_version()?;
        let keyslot = f.keyslot()?;
        let age_ciphertext = f.base64("age-ciphertext")?;
        if !age_ciphertext.starts_with(b"age-encryption.org/v1\n") {
            return Err(f.invalid("age-ciphertext", "not a binary age file"));
        }
        Ok(Self {
            keyslot,
            age_ciphertext,
        })
    }

    /// Parses token JSON text.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        Self::from_json(&parse_text(text)?)
    }

    /// The token's JSON, as stored in the header.
    pub fn to_json(&self) -> Value {
        json!({
            "type": RECOVERY_TOKEN,
            "keyslots": [self.keyslot.to_string()],
            "version": TOKEN_VERSION,
            "age-ciphertext": B64.encode(&self.age_ciphertext),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zk() -> Value {
        ZymkeyToken::new(3, vec![1, 2, 3, 4]).to_json()
    }

    fn rec() -> Value {
        RecoveryToken {
            keyslot: 1,
            age_ciphertext: b"age-encryption.org/v1\n-> X25519 ...".to_vec(),
        }
        .to_json()
    }

    fn with(mut v: Value, field: &str, new: Value) -> Value {
        v[field] = new;
        v
    }

    #[test]
    fn valid_tokens_round_trip() {
        assert_eq!(ZymkeyToken::from_json(&zk()).unwrap().to_json(), zk());
        assert_eq!(RecoveryToken::from_json(&rec()).unwrap().to_json(), rec());
        assert_eq!(ZymkeyToken::parse(&zk().to_string()).unwrap().keyslot, 3);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (with(zk(), "version", json!(2)), "`version`: version 2"),
            (with(zk(), "version", json!(1.0)), "`version`"),
            (with(zk(), "version", json!("1")), "`version`"),
            (with(zk(), "type", json!("keybound-recovery")), "`type`"),
            (with(zk(), "keyslots", json!(["01"])), "`keyslots`"),
            (with(zk(), "keyslots", json!(["32"])), "`keyslots`"),
            (with(zk(), "keyslots", json!([3])), "`keyslots`"),
            (with(zk(), "keyslots", json!(["1", "2"])), "`keyslots`"),
            (with(zk(), "keyslots", json!("3")), "`keyslots`"),
            (with(zk(), "sealed-blob", json!("AQID B")), "`sealed-blob`"),
            (with(zk(), "sealed-blob", json!("AQIDBA")), "`sealed-blob`"),
            (with(zk(), "sealed-blob", json!("")), "`sealed-blob`"),
            (
                with(zk(), "cipher", json!("aes")),
                "unknown field \"cipher\"",
            ),
            (with(zk(), "volume-check", json!("skip")), "unknown field"),
        ];
        for (v, want) in cases {
            let e = ZymkeyToken::from_json(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{v} gave {e:?}, wanted {want:?}");
            assert!(e.starts_with("keybound-zymkey token"), "{e}");
        }
        let mut missing = zk();
        missing.as_object_mut().unwrap().remove("sealed-blob");
        assert_eq!(
            ZymkeyToken::from_json(&missing).unwrap_err(),
            TokenError::Missing {
                token: ZYMKEY_TOKEN,
                field: "sealed-blob"
            }
        );
        let e = RecoveryToken::from_json(&with(rec(), "age-ciphertext", json!("AQIDBA==")))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("`age-ciphertext`: not a binary age file")
        );
        assert!(ZymkeyToken::parse("[]").is_err());
        assert!(matches!(
            ZymkeyToken::parse("{"),
            Err(TokenError::NotJson(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn garbage_text_never_panics(s in ".{0,400}") {
            let _ = ZymkeyToken::parse(&s);
            let _ = RecoveryToken::parse(&s);
        }

        #[test]
        fn mutated_fields_never_panic_and_never_pass_silently(
            field in proptest::sample::select(vec!["type", "keyslots", "version", "sealed-blob", "x"]),
            value in proptest::prop_oneof![
                proptest::prelude::any::<i64>().prop_map(|n| json!(n)),
                ".{0,40}".prop_map(|s| json!(s)),
                proptest::prelude::any::<bool>().prop_map(|b| json!(b)),
                proptest::collection::vec(".{0,4}", 0..3).prop_map(|v| json!(v)),
                proptest::prelude::Just(Value::Null),
            ],
        ) {
            let v = with(zk(), field, value);
            if let Ok(t) = ZymkeyToken::from_json(&v) {
                // Anything accepted must be exactly what it serialises to.
                proptest::prop_assert_eq!(t.to_json(), v);
            }
        }

        #[test]
        fn valid_tokens_round_trip_for_any_content(
            keyslot in 0u32..32,
            blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..600),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let t = ZymkeyToken::new(keyslot, blob);
            let text = t.to_json().to_string();
            proptest::prop_assert!(ZymkeyToken::parse(&text).unwrap() == t);
            let mut ct = b"age-encryption.org/v1\n".to_vec();
            ct.extend(tail);
            let r = RecoveryToken { keyslot, age_ciphertext: ct };
            proptest::prop_assert!(RecoveryToken::parse(&r.to_json().to_string()).unwrap() == r);
        }
    }
}
