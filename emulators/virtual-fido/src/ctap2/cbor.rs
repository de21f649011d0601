//! Small helpers over `ciborium::Value`: strict field access with CTAP2 status errors, and
//! canonical encoding.

use ciborium::Value;

use super::Status;

/// Decodes one CBOR item that must span the whole input.
pub fn decode(bytes: &[u8]) -> Result<Value, Status> {
    let mut reader = bytes;
    let value: Value = ciborium::from_reader(&mut reader).map_err(|_| Status::InvalidCbor)?;
    if !reader.is_empty() {
        return Err(Status::InvalidCbor);
    }
    Ok(value)
}

/// Encodes a value (callers build maps in canonical key order).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// A CBOR map seen as a parameter list.
#[derive(Debug, Clone, Copy)]
pub struct Map<'a>(pub &'a [(Value, Value)]);

impl<'a> Map<'a> {
    /// Wraps a value that must be a map.
    pub fn from_value(value: &'a Value) -> Result<Self, Status> {
        value
            .as_map()
            .map(|m| Map(m.as_slice()))
            .ok_or(Status::CborUnexpectedType)
    }

    /// The value under integer key `key`.
    pub fn int(&self, key: i64) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(key))
            .map(|(_, v)| v)
    }

    /// The value under text key `key`.
    pub fn text(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }
}

/// A byte string.
pub fn bytes(value: &Value) -> Result<Vec<u8>, Status> {
    value.as_bytes().cloned().ok_or(Status::CborUnexpectedType)
}

/// A text string.
pub fn text(value: &Value) -> Result<String, Status> {
    value
        .as_text()
        .map(str::to_owned)
        .ok_or(Status::CborUnexpectedType)
}

/// An unsigned integer.
pub fn uint(value: &Value) -> Result<u64, Status> {
    value
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or(Status::CborUnexpectedType)
}

/// A signed integer.
pub fn int(value: &Value) -> Result<i64, Status> {
    value
        .as_integer()
        .and_then(|i| i64::try_from(i).ok())
        .ok_or(Status::CborUnexpectedType)
}

/// A boolean.
pub fn boolean(value: &Value) -> Result<bool, Status> {
    value.as_bool().ok_or(Status::CborUnexpectedType)
}

/// An array.
pub fn array(value: &Value) -> Result<&[Value], Status> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or(Status::CborUnexpectedType)
}

/// Builds a map with integer keys (give them in ascending order).
pub fn int_map(entries: Vec<(i64, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Integer(k.into()), v))
            .collect(),
    )
}

/// Builds a map with text keys, sorted canonically (shorter first, then bytewise).
pub fn text_map(mut entries: Vec<(&str, Value)>) -> Value {
    entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then(a.cmp(b)));
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}
