//! authenticatorClientPIN: retries, key agreement, set/change PIN, pinUvAuthToken.

use ciborium::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Authenticator, PERMISSION_GA, PERMISSION_MC, PinToken, map};
use crate::ctap2::{ClientPinRequest, Status};
use crate::pin_protocol::{PinProtocol, SharedSecret};
use crate::state::MAX_PIN_RETRIES;

/// Consecutive wrong PINs before a power cycle is required.
const MAX_CONSECUTIVE_FAILURES: u8 = 3;
/// Shortest PIN, in Unicode code points.
const MIN_PIN_LEN: usize = 4;

/// Sub-command numbers.
mod sub {
    pub(super) const GET_PIN_RETRIES: u64 = 0x01;
    pub(super) const GET_KEY_AGREEMENT: u64 = 0x02;
    pub(super) const SET_PIN: u64 = 0x03;
    pub(super) const CHANGE_PIN: u64 = 0x04;
    pub(super) const GET_PIN_TOKEN: u64 = 0x05;
    pub(super) const GET_PIN_UV_AUTH_TOKEN_USING_PIN_WITH_PERMISSIONS: u64 = 0x09;
}

impl Authenticator {
    pub(super) fn client_pin(&mut self, req: &ClientPinRequest) -> Result<Option<Value>, Status> {
        if req.sub_command == sub::GET_PIN_RETRIES {
            return Ok(Some(map(vec![(
                0x03,
                Value::Integer(self.state.pin_retries.into()),
            )])));
        }
        let protocol =
            PinProtocol::from_number(req.pin_uv_auth_protocol.ok_or(Status::MissingParameter)?)?;
        match req.sub_command {
            sub::GET_KEY_AGREEMENT => Ok(Some(map(vec![(
                0x01,
                self.key_agreement.cose_public_key(),
            )]))),
            sub::SET_PIN => self.set_pin(protocol, req).map(|()| None),
            sub::CHANGE_PIN => self.change_pin(protocol, req).map(|()| None),
            sub::GET_PIN_TOKEN => {
                if req.permissions.is_some() || req.rp_id.is_some() {
                    return Err(Status::InvalidParameter);
                }
                self.get_pin_token(protocol, req, PERMISSION_MC | PERMISSION_GA, None)
                    .map(Some)
            }
            sub::GET_PIN_UV_AUTH_TOKEN_USING_PIN_WITH_PERMISSIONS => {
                let permissions = req.permissions.ok_or(Status::MissingParameter)?;
                if permissions == 0 {
                    return Err(Status::InvalidParameter);
                }
                if permissions & !(PERMISSION_MC | PERMISSION_GA) != 0 {
                    return Err(Status::UnauthorizedPermission);
                }
                self.get_pin_token(protocol, req, permissions, req.rp_id.clone())
                    .map(Some)
            }
            _ => Err(Status::InvalidSubcommand),
        }
    }

    fn shared_secret(
        &self,
        protocol: PinProtocol,
        req: &ClientPinRequest,
    ) -> Result<SharedSecret, Status> {
        let peer = req.key_agreement.as_ref().ok_or(Status::MissingParameter)?;
        self.key_agreement.shared_secret(protocol, peer)
    }

    fn set_pin(&mut self, protocol: PinProtocol, req: &ClientPinRequest) -> Result<(), Status> {
        let param = req
            .pin_uv_auth_param
            .as_ref()
            .ok_or(Status::MissingParameter)?;
        let new_pin_enc = req.new_pin_enc.as_ref().ok_or(Status::MissingParameter)?;
        let shared = self.shared_secret(protocol, req)?;
        if self.state.pin_hash.is_some() {
            return Err(Status::NotAllowed);
        }
        if !shared.verify(new_pin_enc, param) {
            return Err(Status::PinAuthInvalid);
        }
        let hash = new_pin_hash(&shared, new_pin_enc)?;
        self.state.pin_hash = Some(hash);
        self.state.pin_retries = MAX_PIN_RETRIES;
        self.save()
    }

    fn change_pin(&mut self, protocol: PinProtocol, req: &ClientPinRequest) -> Result<(), Status> {
        let param = req
            .pin_uv_auth_param
            .as_ref()
            .ok_or(Status::MissingParameter)?;
        let new_pin_enc = req.new_pin_enc.as_ref().ok_or(Status::MissingParameter)?;
        let pin_hash_enc = req.pin_hash_enc.as_ref().ok_or(Status::MissingParameter)?;
        let shared = self.shared_secret(protocol, req)?;
        if !shared.verify(&[new_pin_enc.as_slice(), pin_hash_enc].concat(), param) {
            return Err(Status::PinAuthInvalid);
        }
        self.check_pin_hash(&shared, pin_hash_enc)?;
        let hash = new_pin_hash(&shared, new_pin_enc)?;
        self.state.pin_hash = Some(hash);
        self.pin_token = PinToken::fresh();
        self.save()
    }

    fn get_pin_token(
        &mut self,
        protocol: PinProtocol,
        req: &ClientPinRequest,
        permissions: u64,
        rp_id: Option<String>,
    ) -> Result<Value, Status> {
        let pin_hash_enc = req.pin_hash_enc.as_ref().ok_or(Status::MissingParameter)?;
        let shared = self.shared_secret(protocol, req)?;
        self.check_pin_hash(&shared, pin_hash_enc)?;
        self.pin_token = PinToken::fresh();
        self.pin_token.permissions = permissions;
        self.pin_token.rp_id = rp_id;
        Ok(map(vec![(
            0x02,
            Value::Bytes(shared.encrypt(&self.pin_token.token[..])),
        )]))
    }

    /// Checks an encrypted PIN hash against the stored one, with retries and lockout.
    fn check_pin_hash(&mut self, shared: &SharedSecret, pin_hash_enc: &[u8]) -> Result<(), Status> {
        let stored = self.state.pin_hash.ok_or(Status::PinNotSet)?;
        if self.state.pin_retries == 0 {
            return Err(Status::PinBlocked);
        }
        if self.consecutive_pin_failures >= MAX_CONSECUTIVE_FAILURES {
            return Err(Status::PinAuthBlocked);
        }
        let given = shared
            .decrypt(pin_hash_enc)
            .ok_or(Status::InvalidParameter)?;
        if given.len() != 16 {
            return Err(Status::InvalidParameter);
        }
        self.state.pin_retries -= 1;
        self.save()?;
        if !bool::from(given[..].ct_eq(&stored[..])) {
            self.key_agreement = crate::pin_protocol::KeyAgreement::generate();
            self.consecutive_pin_failures += 1;
            return Err(if self.state.pin_retries == 0 {
                Status::PinBlocked
            } else if self.consecutive_pin_failures >= MAX_CONSECUTIVE_FAILURES {
                Status::PinAuthBlocked
            } else {
                Status::PinInvalid
            });
        }
        self.consecutive_pin_failures = 0;
        self.state.pin_retries = MAX_PIN_RETRIES;
        self.save()
    }
}

/// Decrypts a padded new PIN, checks the policy, and returns LEFT(SHA-256(PIN), 16).
fn new_pin_hash(shared: &SharedSecret, new_pin_enc: &[u8]) -> Result<[u8; 16], Status> {
    let padded = shared
        .decrypt(new_pin_enc)
        .ok_or(Status::InvalidParameter)?;
    if padded.len() != 64 {
        return Err(Status::InvalidParameter);
    }
    let end = padded.iter().position(|&b| b == 0).unwrap_or(padded.len());
    let pin = &padded[..end];
    let code_points = std::str::from_utf8(pin)
        .map_err(|_| Status::PinPolicyViolation)?
        .chars()
        .count();
    if code_points < MIN_PIN_LEN || pin.len() > 63 {
        return Err(Status::PinPolicyViolation);
    }
    let digest = Sha256::digest(pin);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    Ok(hash)
}
