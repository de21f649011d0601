//! Checks on what a token returned — all of it untrusted input. The module does its own
//! verification (not libfido2's) so that every rule is visible and tested here: the exact
//! authenticator-data layout, the rpId hash (constant-time compare), UP and UV flags, and the
//! signature over `authenticatorData ‖ clientDataHash` with the enrolled public key. A U2F
//! response, as libfido2 hands it over, has the same shape (appId hash, flags, counter).

use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authfile::PublicKey;

/// User present.
pub const FLAG_UP: u8 = 0x01;
/// User verified.
pub const FLAG_UV: u8 = 0x04;
/// Attested credential data included (never in an assertion).
pub const FLAG_AT: u8 = 0x40;
/// Extension data included.
pub const FLAG_ED: u8 = 0x80;
/// Largest authenticator data accepted.
pub const MAX_AUTH_DATA: usize = 1024;

/// The fixed part of authenticator data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthData {
    /// SHA-256 of the relying party id.
    pub rp_id_hash: [u8; 32],
    /// Flags byte.
    pub flags: u8,
    /// Signature counter.
    pub counter: u32,
}

/// What the assertion must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// The relying party id the credential was made for.
    pub rp_id: String,
    /// UP must be set.
    pub presence: bool,
    /// UV must be set (userverification or PIN).
    pub verification: bool,
}

/// Why an assertion was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not well-formed authenticator data (length, flags, CBOR wrapping).
    #[error("malformed authenticator data")]
    Malformed,
    /// For another relying party.
    #[error("rpId hash mismatch")]
    RpIdMismatch,
    /// UP required but not set.
    #[error("user presence flag missing")]
    PresenceMissing,
    /// UV required but not set.
    #[error("user verification flag missing")]
    VerificationMissing,
    /// Signature malformed or wrong.
    #[error("bad signature")]
    BadSignature,
    /// A key this module does not verify (rs256) or not a valid key.
    #[error("unsupported or invalid public key")]
    UnsupportedKey,
}

/// Strips a CBOR byte-string header (libfido2's `fido_assert_authdata_ptr` form), requiring the
/// declared length to be exactly the rest.
pub fn unwrap_cbor_bytes(b: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = b.split_first()?;
    if first >> 5 != 2 {
        return None;
    }
    let (len, body) = match first & 0x1f {
        n @ 0..=23 => (usize::from(n), rest),
        24 => (usize::from(*rest.first()?), rest.get(1..)?),
        25 => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    (body.len() == len).then_some(body)
}

/// Parses raw authenticator data of an assertion.
pub fn parse_auth_data(raw: &[u8]) -> Result<AuthData, VerifyError> {
    if raw.len() < 37 || raw.len() > MAX_AUTH_DATA {
        return Err(VerifyError::Malformed);
    }
    let flags = raw[32];
    if flags & FLAG_AT != 0
        || (flags & FLAG_ED == 0 && raw.len() != 37)
        || (flags & FLAG_ED != 0 && raw.len() == 37)
    {
        return Err(VerifyError::Malformed);
    }
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&raw[..32]);
    let counter = u32::from_be_bytes([raw[33], raw[34], raw[35], raw[36]]);
    Ok(AuthData {
        rp_id_hash,
        flags,
        counter,
    })
}

fn rp_id_matches(expected: &[u8; 32], got: &[u8; 32]) -> bool {
    // Planted bug wrong-rpid-accepted: caught by scenario login/wrong-rpid.
    #[cfg(keybound_mutant = "wrong-rpid-accepted")]
    {
        let _ = (expected, got);
        return true;
    }
    #[allow(unreachable_code)]
    bool::from(expected.ct_eq(got))
}

fn check_signature(pk: &PublicKey, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    match pk {
        PublicKey::Es256(point) => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| VerifyError::UnsupportedKey)?;
            if sig.len() > 72 {
                return Err(VerifyError::BadSignature);
            }
            let sig =
                p256::ecdsa::Signature::from_der(sig).map_err(|_| VerifyError::BadSignature)?;
            key.verify(message, &sig)
                .map_err(|_| VerifyError::BadSignature)
        }
        PublicKey::EdDsa(bytes) => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                .map_err(|_| VerifyError::UnsupportedKey)?;
            let sig =
                ed25519_dalek::Signature::from_slice(sig).map_err(|_| VerifyError::BadSignature)?;
            key.verify_strict(message, &sig)
                .map_err(|_| VerifyError::BadSignature)
        }
        PublicKey::Rs256(_) => Err(VerifyError::UnsupportedKey),
    }
}

/// Verifies one assertion: authenticator data (raw, not CBOR-wrapped), flags, rpId hash and the
/// signature over `auth_data ‖ client_data_hash`. Returns the parsed data (the counter is checked
/// by the caller against the store).
pub fn verify_assertion(
    pk: &PublicKey,
    req: &Requirements,
    client_data_hash: &[u8; 32],
    auth_data: &[u8],
    sig: &[u8],
) -> Result<AuthData, VerifyError> {
    let parsed = parse_auth_data(auth_data)?;
    let expected: [u8; 32] = Sha256::digest(req.rp_id.as_bytes()).into();
    if !rp_id_matches(&expected, &parsed.rp_id_hash) {
        return Err(VerifyError::RpIdMismatch);
    }
    if req.presence && parsed.flags & FLAG_UP == 0 {
        return Err(VerifyError::PresenceMissing);
    }
    if req.verification && parsed.flags & FLAG_UV == 0 {
        return Err(VerifyError::VerificationMissing);
    }
    let mut message = Vec::with_capacity(auth_data.len() + 32);
    message.extend_from_slice(auth_data);
    message.extend_from_slice(client_data_hash);
    check_signature(pk, &message, sig)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use proptest::prelude::*;

    fn es256() -> (p256::ecdsa::SigningKey, PublicKey) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        (
            sk,
            PublicKey::from_bytes(crate::authfile::CoseType::Es256, point.as_bytes()).unwrap(),
        )
    }

    fn auth_data(rp: &str, flags: u8, counter: u32) -> Vec<u8> {
        let mut v = Sha256::digest(rp.as_bytes()).to_vec();
        v.push(flags);
        v.extend_from_slice(&counter.to_be_bytes());
        v
    }

    fn req(presence: bool, verification: bool) -> Requirements {
        Requirements {
            rp_id: "pam://keybound".into(),
            presence,
            verification,
        }
    }

    fn sign_es(sk: &p256::ecdsa::SigningKey, ad: &[u8], cdh: &[u8; 32]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = sk.sign(&[ad, cdh].concat());
        sig.to_der().as_bytes().to_vec()
    }

    #[test]
    fn es256_good_and_bad() {
        let (sk, pk) = es256();
        let cdh = [9u8; 32];
        let ad = auth_data("pam://keybound", FLAG_UP, 7);
        let sig = sign_es(&sk, &ad, &cdh);
        let got = verify_assertion(&pk, &req(true, false), &cdh, &ad, &sig).unwrap();
        assert_eq!(got.counter, 7);
        // Another challenge, tampered data, another key.
        assert_eq!(
            verify_assertion(&pk, &req(true, false), &[8; 32], &ad, &sig),
            Err(VerifyError::BadSignature)
        );
        let mut ad2 = ad.clone();
        ad2[36] ^= 1;
        assert_eq!(
            verify_assertion(&pk, &req(true, false), &cdh, &ad2, &sig),
            Err(VerifyError::BadSignature)
        );
        let other = p256::ecdsa::SigningKey::from_slice(&[0x43; 32]).unwrap();
        let sig2 = sign_es(&other, &ad, &cdh);
        assert_eq!(
            verify_assertion(&pk, &req(true, false), &cdh, &ad, &sig2),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn flags_and_rpid() {
        let (sk, pk) = es256();
        let cdh = [1u8; 32];
        let ad = auth_data("pam://keybound", 0, 1);
        let sig = sign_es(&sk, &ad, &cdh);
        assert_eq!(
            verify_assertion(&pk, &req(true, false), &cdh, &ad, &sig),
            Err(VerifyError::PresenceMissing)
        );
        assert!(verify_assertion(&pk, &req(false, false), &cdh, &ad, &sig).is_ok());
        let ad = auth_data("pam://keybound", FLAG_UP, 1);
        let sig = sign_es(&sk, &ad, &cdh);
        assert_eq!(
            verify_assertion(&pk, &req(true, true), &cdh, &ad, &sig),
            Err(VerifyError::VerificationMissing)
        );
        let ad = auth_data("pam://other", FLAG_UP | FLAG_UV, 1);
        let sig = sign_es(&sk, &ad, &cdh);
        assert_eq!(
            verify_assertion(&pk, &req(true, true), &cdh, &ad, &sig),
            Err(VerifyError::RpIdMismatch)
        );
    }

    #[test]
    fn eddsa() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let pk = PublicKey::EdDsa(sk.verifying_key().to_bytes());
        let cdh = [3u8; 32];
        let ad = auth_data("pam://keybound", FLAG_UP | FLAG_UV, 2);
        let sig = ed25519_dalek::Signer::sign(&sk, &[&ad[..], &cdh].concat());
        assert!(verify_assertion(&pk, &req(true, true), &cdh, &ad, &sig.to_bytes()).is_ok());
        assert_eq!(
            verify_assertion(&pk, &req(true, true), &cdh, &ad, &sig.to_bytes()[..63]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn malformed_auth_data() {
        let ad = auth_data("x", FLAG_UP, 1);
        assert!(parse_auth_data(&ad[..36]).is_err());
        let mut long = ad.clone();
        long.push(0);
        assert!(parse_auth_data(&long).is_err());
        let mut at = ad.clone();
        at[32] |= FLAG_AT;
        assert!(parse_auth_data(&at).is_err());
        let mut ed = ad.clone();
        ed[32] |= FLAG_ED;
        assert!(parse_auth_data(&ed).is_err());
        ed.extend_from_slice(&[0xa0]);
        assert!(parse_auth_data(&ed).is_ok());
    }

    #[test]
    fn cbor_unwrap() {
        let body = [7u8; 37];
        let mut w = vec![0x58, 37];
        w.extend_from_slice(&body);
        assert_eq!(unwrap_cbor_bytes(&w), Some(&body[..]));
        assert_eq!(unwrap_cbor_bytes(&[0x43, 1, 2, 3]), Some(&[1u8, 2, 3][..]));
        assert_eq!(unwrap_cbor_bytes(&w[..w.len() - 1]), None);
        assert_eq!(unwrap_cbor_bytes(&[0x63, 1, 2, 3]), None);
        assert_eq!(unwrap_cbor_bytes(&[]), None);
    }

    proptest! {
        #[test]
        fn untrusted_input_never_panics(ad in proptest::collection::vec(any::<u8>(), 0..200),
                                        sig in proptest::collection::vec(any::<u8>(), 0..100),
                                        wrapped in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (_, pk) = es256();
            let _ = unwrap_cbor_bytes(&wrapped);
            prop_assert!(verify_assertion(&pk, &req(true, false), &[0; 32], &ad, &sig).is_err());
            let ek = PublicKey::EdDsa([1; 32]);
            prop_assert!(verify_assertion(&ek, &req(false, false), &[0; 32], &ad, &sig).is_err());
        }
    }
}
