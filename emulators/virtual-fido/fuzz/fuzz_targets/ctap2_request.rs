//! Arbitrary CTAP2 requests: the parser and the authenticator (accepting presence) never
//! panic, and every response starts with a status byte, followed by valid CBOR on success.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtual_fido::ctap2::{Request, cbor};
use virtual_fido::presence::{Presence, PresencePolicy, Silent};
use virtual_fido::state::{MemoryStore, TokenState};
use virtual_fido::{AttestationMode, Authenticator};

fuzz_target!(|data: &[u8]| {
    let _ = Request::parse(data);
    let mut auth = Authenticator::with_state(
        TokenState::fresh_with_aaguid([0; 16]),
        Box::new(MemoryStore),
        AttestationMode::None,
    );
    let presence = Presence::new(PresencePolicy::Accept, std::time::Duration::from_millis(1));
    let out = auth.handle_cbor(data, &presence, &Silent);
    assert!(!out.is_empty());
    if out[0] == 0 && out.len() > 1 {
        cbor::decode(&out[1..]).expect("a success response is one CBOR item");
    }
    let u2f = auth.handle_apdu(data, &presence);
    assert!(u2f.len() >= 2);
});
