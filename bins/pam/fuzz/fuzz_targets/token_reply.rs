//! Any bytes a token could return as (CBOR-wrapped authenticator data, signature): no panic,
//! and nothing verifies without the private key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_keybound::authfile::{CoseType, PublicKey};
use pam_keybound::verify::{Requirements, unwrap_cbor_bytes, verify_assertion};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n).min(rest.len());
    let (wrapped, sig) = rest.split_at(n);
    let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let es = PublicKey::from_bytes(CoseType::Es256, point.as_bytes()).unwrap();
    let ed = PublicKey::EdDsa([0x11; 32]);
    let req = Requirements {
        rp_id: "pam://keybound".into(),
        presence: false,
        verification: false,
    };
    for ad in [unwrap_cbor_bytes(wrapped), Some(wrapped)].into_iter().flatten() {
        assert!(verify_assertion(&es, &req, &[0; 32], ad, sig).is_err());
        let _ = verify_assertion(&ed, &req, &[0; 32], ad, sig);
    }
});
