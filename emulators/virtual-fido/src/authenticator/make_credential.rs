//! authenticatorMakeCredential.

use ciborium::Value;
use p256::ecdsa::signature::Signer as _;

use super::{
    AttestationMode, Authenticator, MAX_CREDENTIALS, PERMISSION_MC, rp_id_hash, user_presence,
};
use crate::crypto::{
    Algorithm, CredentialKey, TEST_ATTESTATION_CERT, random, test_attestation_key,
};
use crate::ctap2::cbor::text_map;
use crate::ctap2::response::{self, AttestedCredential, AuthenticatorData};
use crate::ctap2::{MakeCredentialRequest, Status};
use crate::presence::{Interaction, Presence};
use crate::state::{CredRandom, SecretBytes, StoredCredential};

impl Authenticator {
    pub(super) fn make_credential(
        &mut self,
        req: &MakeCredentialRequest,
        presence: &Presence,
        io: &dyn Interaction,
    ) -> Result<Value, Status> {
        if req.pin_uv_auth_param.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.empty_pin_auth(presence, io));
        }
        let alg = req
            .algorithms
            .iter()
            .find_map(|a| Algorithm::from_cose(*a))
            .ok_or(Status::UnsupportedAlgorithm)?;
        if req.enterprise_attestation.is_some() {
            return Err(Status::InvalidParameter);
        }
        if req.options.up == Some(false) {
            return Err(Status::InvalidOption);
        }
        if req.options.uv == Some(true) && req.pin_uv_auth_param.is_none() {
            return Err(Status::InvalidOption);
        }
        let discoverable = req.options.rk.unwrap_or(false);
        let uv = match &req.pin_uv_auth_param {
            Some(param) => {
                self.verify_pin_uv_auth(
                    req.pin_uv_auth_protocol,
                    param,
                    &req.client_data_hash,
                    PERMISSION_MC,
                    &req.rp_id,
                )?;
                true
            }
            None if self.state.pin_hash.is_some() && discoverable => {
                return Err(Status::PuatRequired);
            }
            None => false,
        };
        let rp_hash = rp_id_hash(&req.rp_id);
        let excluded = req.exclude_list.iter().any(|d| {
            self.state
                .credentials
                .iter()
                .any(|c| c.id == d.id && c.rp_id_hash == rp_hash && (c.cred_protect < 3 || uv))
        });
        if excluded {
            user_presence(presence, io)?;
            return Err(Status::CredentialExcluded);
        }
        if self.state.credentials.len() >= MAX_CREDENTIALS {
            return Err(Status::KeyStoreFull);
        }
        user_presence(presence, io)?;

        let key = CredentialKey::generate(alg);
        let id = random::<32>().to_vec();
        let cred_protect = req.cred_protect.filter(|l| (1..=3).contains(l));
        let cred_random = req.hmac_secret.then(|| CredRandom {
            with_uv: SecretBytes::new(random::<32>().to_vec()),
            without_uv: SecretBytes::new(random::<32>().to_vec()),
        });
        let created = self.state.next_created;
        self.state.next_created += 1;
        if discoverable {
            self.state.credentials.retain(|c| {
                !(c.discoverable && c.rp_id_hash == rp_hash && c.user_id == req.user_id)
            });
        }
        self.state.credentials.push(StoredCredential {
            id: id.clone(),
            rp_id: req.rp_id.clone(),
            rp_id_hash: rp_hash,
            user_id: req.user_id.clone(),
            user_name: req.user_name.clone(),
            user_display_name: req.user_display_name.clone(),
            alg: alg.cose(),
            private_key: key.to_bytes().into(),
            discoverable,
            cred_protect: cred_protect.map_or(1, |l| l as u8),
            cred_random,
            created,
            u2f: false,
        });
        let sign_count = self.next_counter();
        self.save()?;

        let mut extensions = Vec::new();
        if let Some(level) = cred_protect {
            extensions.push(("credProtect", Value::Integer(level.into())));
        }
        if req.hmac_secret {
            extensions.push(("hmac-secret", Value::Bool(true)));
        }
        let auth_data = AuthenticatorData {
            rp_id_hash: rp_hash,
            up: true,
            uv,
            sign_count,
            attested: Some(AttestedCredential {
                aaguid: self.state.aaguid,
                credential_id: id,
                public_key: key.cose_public_key(),
            }),
            extensions,
        }
        .to_bytes();
        let signed = [auth_data.as_slice(), &req.client_data_hash].concat();
        let (fmt, att_stmt) = match self.attestation {
            AttestationMode::None => ("none", text_map(vec![])),
            AttestationMode::SelfAttestation => (
                "packed",
                text_map(vec![
                    ("alg", Value::Integer(alg.cose().into())),
                    ("sig", Value::Bytes(key.sign(&signed))),
                ]),
            ),
            AttestationMode::Packed => {
                let sig: p256::ecdsa::Signature = test_attestation_key().sign(&signed);
                (
                    "packed",
                    text_map(vec![
                        ("alg", Value::Integer(crate::ctap2::cose::ES256.into())),
                        ("sig", Value::Bytes(sig.to_der().as_bytes().to_vec())),
                        (
                            "x5c",
                            Value::Array(vec![Value::Bytes(TEST_ATTESTATION_CERT.to_vec())]),
                        ),
                    ]),
                )
            }
        };
        Ok(response::make_credential(fmt, auth_data, att_stmt))
    }
}
