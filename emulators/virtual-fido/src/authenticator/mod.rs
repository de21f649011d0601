//! The authenticator: CTAP2.1 and CTAP1/U2F logic over a [`TokenState`]. It sees parsed
//! requests (from [`crate::ctap2`]) and a [`Presence`] button, never reports or sockets.

mod client_pin;
mod get_assertion;
mod info;
mod make_credential;
mod u2f;

use std::str::FromStr;
use std::time::Instant;

use ciborium::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::random;
use crate::ctap2::{Request, Status, cbor};
use crate::pin_protocol::{KeyAgreement, PinProtocol, SharedSecret};
use crate::presence::{Interaction, Presence, PresenceError};
use crate::state::{StateError, Store, TokenState};

pub use info::{ALGORITHMS, EXTENSIONS, MAX_MSG_SIZE, VERSIONS};

/// pinUvAuthToken permission: makeCredential.
pub const PERMISSION_MC: u64 = 0x01;
/// pinUvAuthToken permission: getAssertion.
pub const PERMISSION_GA: u64 = 0x02;
/// The most credentials the token stores.
pub const MAX_CREDENTIALS: usize = 10_000;

/// Which attestation makeCredential returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttestationMode {
    /// `packed` with the TEST-ONLY attestation certificate (fixtures/test-keys).
    Packed,
    /// `packed` self attestation (signed by the credential key, no certificate).
    #[serde(rename = "self")]
    SelfAttestation,
    /// `none`.
    None,
}

impl FromStr for AttestationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "packed" => Ok(Self::Packed),
            "self" => Ok(Self::SelfAttestation),
            "none" => Ok(Self::None),
            _ => Err(format!("unknown attestation {s:?} (packed, self, none)")),
        }
    }
}

/// The current pinUvAuthToken and what it may do.
struct PinToken {
    token: Zeroizing<[u8; 32]>,
    /// Permissions granted; 0 means no token has been issued.
    permissions: u64,
    rp_id: Option<String>,
}

impl PinToken {
    fn fresh() -> Self {
        Self {
            token: Zeroizing::new(random()),
            permissions: 0,
            rp_id: None,
        }
    }
}

/// An hmac-secret request decrypted once, reused by getNextAssertion.
struct HmacRequest {
    shared: SharedSecret,
    salts: Zeroizing<Vec<u8>>,
}

struct PendingAssertions {
    credential_ids: Vec<Vec<u8>>,
    client_data_hash: Vec<u8>,
    up: bool,
    uv: bool,
    hmac: Option<HmacRequest>,
    expires: Instant,
}

/// The authenticator.
pub struct Authenticator {
    state: TokenState,
    store: Box<dyn Store>,
    attestation: AttestationMode,
    key_agreement: KeyAgreement,
    pin_token: PinToken,
    consecutive_pin_failures: u8,
    pending: Option<PendingAssertions>,
    /// The next assertion claims another relying party (fault `wrong-rp`).
    wrong_rp: bool,
}

impl Authenticator {
    /// Makes the next assertion claim the relying party `evil.example` (fault `wrong-rp`).
    pub fn lie_about_rp_once(&mut self) {
        self.wrong_rp = true;
    }

    /// Loads the state from `store` (a fresh token when it has none, saved at once).
    pub fn open(store: Box<dyn Store>, attestation: AttestationMode) -> Result<Self, StateError> {
        let state = match store.load()? {
            Some(state) => state,
            None => {
                let state = TokenState::fresh();
                store.save(&state)?;
                state
            }
        };
        Ok(Self::with_state(state, store, attestation))
    }

    /// An authenticator over a given state.
    pub fn with_state(
        state: TokenState,
        store: Box<dyn Store>,
        attestation: AttestationMode,
    ) -> Self {
        Self {
            state,
            store,
            attestation,
            key_agreement: KeyAgreement::generate(),
            pin_token: PinToken::fresh(),
            consecutive_pin_failures: 0,
            pending: None,
            wrong_rp: false,
        }
    }

    /// The persistent state.
    pub fn state(&self) -> &TokenState {
        &self.state
    }

    /// Replaces the persistent state (control `import-state`, `set-counter`) and saves it. Volatile
    /// PIN state is reset as at power-up.
    pub fn replace_state(&mut self, state: TokenState) -> Result<(), StateError> {
        self.store.save(&state)?;
        self.state = state;
        self.power_cycle();
        Ok(())
    }

    /// Forgets volatile state, as when the token is unplugged and plugged again.
    pub fn power_cycle(&mut self) {
        self.key_agreement = KeyAgreement::generate();
        self.pin_token = PinToken::fresh();
        self.consecutive_pin_failures = 0;
        self.pending = None;
    }

    /// Handles one CTAP2 request (`command || CBOR`), returning `status || CBOR`.
    pub fn handle_cbor(
        &mut self,
        request: &[u8],
        presence: &Presence,
        io: &dyn Interaction,
    ) -> Vec<u8> {
        let result = Request::parse(request).and_then(|request| {
            if !matches!(request, Request::GetNextAssertion) {
                self.pending = None;
            }
            match request {
                Request::GetInfo => Ok(Some(self.get_info())),
                Request::MakeCredential(r) => self.make_credential(&r, presence, io).map(Some),
                Request::GetAssertion(r) => self.get_assertion(&r, presence, io).map(Some),
                Request::GetNextAssertion => self.get_next_assertion().map(Some),
                Request::ClientPin(r) => self.client_pin(&r),
                Request::Reset => self.reset(presence, io).map(|()| None),
                Request::Selection => user_presence(presence, io).map(|()| None),
            }
        });
        match result {
            Ok(None) => vec![Status::Success as u8],
            Ok(Some(value)) => {
                let mut out = vec![Status::Success as u8];
                out.extend(cbor::encode(&value));
                out
            }
            Err(status) => vec![status as u8],
        }
    }

    fn save(&self) -> Result<(), Status> {
        self.store.save(&self.state).map_err(|e| {
            tracing::error!("saving the token state failed: {e}");
            Status::Other
        })
    }

    /// Increments the signature counter and returns the new value (saved by the caller).
    fn next_counter(&mut self) -> u32 {
        self.state.counter = self.state.counter.saturating_add(1);
        self.state.counter
    }

    fn reset(&mut self, presence: &Presence, io: &dyn Interaction) -> Result<(), Status> {
        user_presence(presence, io)?;
        let mut fresh = TokenState::fresh_with_aaguid(self.state.aaguid);
        fresh.counter = self.state.counter;
        self.state = fresh;
        self.power_cycle();
        self.save()
    }

    /// Checks a pinUvAuthParam over `client_data_hash` against the current token, its
    /// permission `permission` and RP binding; binds the token to `rp_id` on first use.
    fn verify_pin_uv_auth(
        &mut self,
        protocol: Option<u64>,
        param: &[u8],
        client_data_hash: &[u8],
        permission: u64,
        rp_id: &str,
    ) -> Result<(), Status> {
        let protocol = PinProtocol::from_number(protocol.ok_or(Status::MissingParameter)?)?;
        if self.pin_token.permissions == 0
            || !protocol.verify_with_key(&self.pin_token.token[..], client_data_hash, param)
        {
            return Err(Status::PinAuthInvalid);
        }
        if self.pin_token.permissions & permission == 0 {
            return Err(Status::PinAuthInvalid);
        }
        match &self.pin_token.rp_id {
            Some(bound) if bound != rp_id => Err(Status::PinAuthInvalid),
            Some(_) => Ok(()),
            None => {
                self.pin_token.rp_id = Some(rp_id.to_owned());
                Ok(())
            }
        }
    }

    /// The answer to a zero-length pinUvAuthParam (a platform asking for a touch to pick a
    /// token): touch, then PIN_INVALID when a PIN is set, PIN_NOT_SET otherwise.
    fn empty_pin_auth(&self, presence: &Presence, io: &dyn Interaction) -> Status {
        if let Err(status) = user_presence(presence, io) {
            return status;
        }
        if self.state.pin_hash.is_some() {
            Status::PinInvalid
        } else {
            Status::PinNotSet
        }
    }
}

/// Waits for presence, mapping the outcome to CTAP2 status codes.
fn user_presence(presence: &Presence, io: &dyn Interaction) -> Result<(), Status> {
    presence.wait(io).map_err(|e| match e {
        PresenceError::Denied => Status::OperationDenied,
        PresenceError::TimedOut => Status::UserActionTimeout,
        PresenceError::Cancelled => Status::KeepaliveCancel,
    })
}

/// SHA-256 of an RP id.
pub fn rp_id_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

/// An int-keyed CBOR map (keys in ascending order), for the response builders.
fn map(entries: Vec<(i64, Value)>) -> Value {
    cbor::int_map(entries)
}
