//! COSE keys (RFC 9052/9053) with `coset`: credential public keys out, key agreement keys in.

use ciborium::Value;
use coset::iana::{self, EnumI64};
use coset::{AsCborValue, CoseKey, CoseKeyBuilder, KeyType, Label};

use super::Status;

/// COSE algorithm ES256 (ECDSA P-256 with SHA-256).
pub const ES256: i64 = -7;
/// COSE algorithm EdDSA (Ed25519 here).
pub const EDDSA: i64 = -8;
/// COSE algorithm ECDH-ES+HKDF-256, the label CTAP2 puts on key agreement keys.
pub const ECDH_ES_HKDF_256: i64 = -25;

/// A P-256 public key as COSE (kty EC2, crv P-256), with algorithm `alg`.
pub fn p256_key(x: &[u8; 32], y: &[u8; 32], alg: i64) -> Value {
    let mut key =
        CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, x.to_vec(), y.to_vec()).build();
    key.alg = Some(coset::Algorithm::Assigned(
        iana::Algorithm::from_i64(alg).unwrap_or(iana::Algorithm::ES256),
    ));
    to_value(key)
}

/// An Ed25519 public key as COSE (kty OKP, crv Ed25519, alg EdDSA).
pub fn ed25519_key(public: &[u8; 32]) -> Value {
    let key = CoseKeyBuilder::new_okp_key()
        .param(
            iana::OkpKeyParameter::Crv as i64,
            Value::from(iana::EllipticCurve::Ed25519 as i64),
        )
        .param(
            iana::OkpKeyParameter::X as i64,
            Value::Bytes(public.to_vec()),
        )
        .algorithm(iana::Algorithm::EdDSA)
        .build();
    to_value(key)
}

fn to_value(key: CoseKey) -> Value {
    key.to_cbor_value()
        .expect("a COSE key built here always encodes")
}

/// Parses the platform's key agreement key (COSE EC2 on P-256) into uncompressed coordinates.
pub fn parse_p256_key(value: &Value) -> Result<([u8; 32], [u8; 32]), Status> {
    let key = CoseKey::from_cbor_value(value.clone()).map_err(|_| Status::InvalidParameter)?;
    if key.kty != KeyType::Assigned(iana::KeyType::EC2) {
        return Err(Status::InvalidParameter);
    }
    let param = |label: iana::Ec2KeyParameter| {
        key.params
            .iter()
            .find(|(l, _)| *l == Label::Int(label as i64))
            .map(|(_, v)| v)
    };
    let crv = param(iana::Ec2KeyParameter::Crv)
        .and_then(|v| v.as_integer())
        .and_then(|i| i64::try_from(i).ok());
    if crv != Some(iana::EllipticCurve::P_256 as i64) {
        return Err(Status::InvalidParameter);
    }
    let coord = |label| -> Result<[u8; 32], Status> {
        param(label)
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or(Status::InvalidParameter)
    };
    Ok((
        coord(iana::Ec2KeyParameter::X)?,
        coord(iana::Ec2KeyParameter::Y)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_keys_round_trip_and_encode_canonically() {
        let value = p256_key(&[1; 32], &[2; 32], ECDH_ES_HKDF_256);
        assert_eq!(parse_p256_key(&value).unwrap(), ([1; 32], [2; 32]));
        let keys: Vec<i64> = value
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| i64::try_from(k.as_integer().unwrap()).unwrap())
            .collect();
        assert_eq!(keys, [1, 3, -1, -2, -3]);
    }

    #[test]
    fn wrong_curves_and_types_are_refused() {
        assert_eq!(
            parse_p256_key(&ed25519_key(&[0; 32])),
            Err(Status::InvalidParameter)
        );
        assert_eq!(
            parse_p256_key(&Value::Integer(3.into())),
            Err(Status::InvalidParameter)
        );
    }
}
