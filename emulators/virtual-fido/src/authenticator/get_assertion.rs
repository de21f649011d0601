//! authenticatorGetAssertion, authenticatorGetNextAssertion and the hmac-secret extension.

use std::time::{Duration, Instant};

use ciborium::Value;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{
    Authenticator, HmacRequest, PERMISSION_GA, PendingAssertions, rp_id_hash, user_presence,
};
use crate::crypto::{Algorithm, CredentialKey};
use crate::ctap2::response::{self, AuthenticatorData, UserOut};
use crate::ctap2::{GetAssertionRequest, HmacSecretInput, Status};
use crate::pin_protocol::PinProtocol;
use crate::presence::{Interaction, Presence};
use crate::state::StoredCredential;

/// How long getNextAssertion stays possible after getAssertion.
const NEXT_ASSERTION_WINDOW: Duration = Duration::from_secs(30);

impl Authenticator {
    pub(super) fn get_assertion(
        &mut self,
        req: &GetAssertionRequest,
        presence: &Presence,
        io: &dyn Interaction,
    ) -> Result<Value, Status> {
        if req.pin_uv_auth_param.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.empty_pin_auth(presence, io));
        }
        if req.options.uv == Some(true) && req.pin_uv_auth_param.is_none() {
            return Err(Status::InvalidOption);
        }
        if req.options.rk.is_some() {
            return Err(Status::UnsupportedOption);
        }
        let uv = match &req.pin_uv_auth_param {
            Some(param) => {
                self.verify_pin_uv_auth(
                    req.pin_uv_auth_protocol,
                    param,
                    &req.client_data_hash,
                    PERMISSION_GA,
                    &req.rp_id,
                )?;
                true
            }
            None => false,
        };
        let up = req.options.up.unwrap_or(true);
        let rp_hash = rp_id_hash(&req.rp_id);
        let with_allow_list = !req.allow_list.is_empty();
        let mut matches: Vec<&StoredCredential> = if with_allow_list {
            req.allow_list
                .iter()
                .filter_map(|d| {
                    self.state.credentials.iter().find(|c| {
                        c.id == d.id && c.rp_id_hash == rp_hash && (c.cred_protect < 3 || uv)
                    })
                })
                .take(1)
                .collect()
        } else {
            let mut found: Vec<_> = self
                .state
                .credentials
                .iter()
                .filter(|c| {
                    c.discoverable && c.rp_id_hash == rp_hash && (c.cred_protect == 1 || uv)
                })
                .collect();
            found.sort_by_key(|c| std::cmp::Reverse(c.created));
            found
        };
        if matches.is_empty() {
            return Err(Status::NoCredentials);
        }
        let hmac = req
            .hmac_secret
            .as_ref()
            .map(|input| self.decrypt_hmac_secret(input))
            .transpose()?;
        let ids: Vec<Vec<u8>> = matches.drain(..).map(|c| c.id.clone()).collect();
        if up {
            user_presence(presence, io)?;
        }
        let total = ids.len();
        let mut pending = PendingAssertions {
            credential_ids: ids,
            client_data_hash: req.client_data_hash.clone(),
            up,
            uv,
            hmac,
            expires: Instant::now() + NEXT_ASSERTION_WINDOW,
        };
        let first = pending.credential_ids.remove(0);
        let number = (!with_allow_list && total > 1).then_some(total);
        let response = self.assert_one(&first, &pending, !with_allow_list, number)?;
        if !pending.credential_ids.is_empty() {
            self.pending = Some(pending);
        }
        Ok(response)
    }

    pub(super) fn get_next_assertion(&mut self) -> Result<Value, Status> {
        let mut pending = self.pending.take().ok_or(Status::NotAllowed)?;
        if Instant::now() > pending.expires || pending.credential_ids.is_empty() {
            return Err(Status::NotAllowed);
        }
        let next = pending.credential_ids.remove(0);
        let response = self.assert_one(&next, &pending, true, None)?;
        if !pending.credential_ids.is_empty() {
            self.pending = Some(pending);
        }
        Ok(response)
    }

    fn decrypt_hmac_secret(&self, input: &HmacSecretInput) -> Result<HmacRequest, Status> {
        let protocol = PinProtocol::from_number(input.pin_uv_auth_protocol.unwrap_or(1))?;
        let shared = self
            .key_agreement
            .shared_secret(protocol, &input.key_agreement)?;
        if !shared.verify(&input.salt_enc, &input.salt_auth) {
            return Err(Status::PinAuthInvalid);
        }
        let salts = shared
            .decrypt(&input.salt_enc)
            .ok_or(Status::InvalidLength)?;
        if salts.len() != 32 && salts.len() != 64 {
            return Err(Status::InvalidLength);
        }
        Ok(HmacRequest { shared, salts })
    }

    /// Signs one assertion with the credential `id`.
    fn assert_one(
        &mut self,
        id: &[u8],
        pending: &PendingAssertions,
        discoverable_flow: bool,
        number: Option<usize>,
    ) -> Result<Value, Status> {
        let sign_count = self.next_counter();
        let cred = self
            .state
            .credentials
            .iter()
            .find(|c| c.id == id)
            .ok_or(Status::NoCredentials)?;
        let alg = Algorithm::from_cose(cred.alg).ok_or(Status::Other)?;
        let key = CredentialKey::from_bytes(alg, &cred.private_key).map_err(|_| Status::Other)?;
        let mut extensions = Vec::new();
        if let (Some(hmac), Some(cred_random)) = (&pending.hmac, &cred.cred_random) {
            let secret = if pending.uv {
                &cred_random.with_uv
            } else {
                &cred_random.without_uv
            };
            let mut outputs = Zeroizing::new(Vec::with_capacity(64));
            for salt in hmac.salts.chunks(32) {
                outputs.extend(hmac_sha256(secret, salt));
            }
            extensions.push(("hmac-secret", Value::Bytes(hmac.shared.encrypt(&outputs))));
        }
        let rp_id_hash = if std::mem::take(&mut self.wrong_rp) {
            rp_id_hash(WRONG_RP)
        } else {
            cred.rp_id_hash
        };
        let auth_data = AuthenticatorData {
            rp_id_hash,
            up: pending.up,
            uv: pending.uv,
            sign_count,
            attested: None,
            extensions,
        }
        .to_bytes();
        let signature = key.sign(&[auth_data.as_slice(), &pending.client_data_hash].concat());
        let user = (discoverable_flow || cred.discoverable).then(|| UserOut {
            id: cred.user_id.clone(),
            name: cred.user_name.clone().filter(|_| pending.uv),
            display_name: cred.user_display_name.clone().filter(|_| pending.uv),
        });
        let user = user.filter(|u| !u.id.is_empty());
        let response = response::get_assertion(&cred.id, auth_data, signature, user, number);
        self.save()?;
        Ok(response)
    }
}

/// The relying party a `wrong-rp` fault claims.
const WRONG_RP: &str = "evil.example";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}
