//! CTAP1/U2F over `CTAPHID_MSG`: version, register, authenticate (raw APDUs).

use p256::ecdsa::signature::Signer as _;

use super::Authenticator;
use crate::crypto::{
    Algorithm, CredentialKey, TEST_ATTESTATION_CERT, random, test_attestation_key,
};
use crate::presence::Presence;
use crate::state::StoredCredential;

/// ISO 7816 status words.
mod sw {
    pub(super) const NO_ERROR: u16 = 0x9000;
    pub(super) const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub(super) const WRONG_DATA: u16 = 0x6A80;
    pub(super) const WRONG_LENGTH: u16 = 0x6700;
    pub(super) const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub(super) const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub(super) const UNKNOWN: u16 = 0x6F00;
}

/// A parsed command APDU.
struct Apdu<'a> {
    ins: u8,
    p1: u8,
    data: &'a [u8],
}

/// Parses short and extended-length encodings; `Err` carries the status word.
fn parse_apdu(apdu: &[u8]) -> Result<Apdu<'_>, u16> {
    if apdu.len() < 4 {
        return Err(sw::WRONG_LENGTH);
    }
    if apdu[0] != 0 {
        return Err(sw::CLA_NOT_SUPPORTED);
    }
    let (ins, p1) = (apdu[1], apdu[2]);
    let rest = &apdu[4..];
    let data = match rest.len() {
        0 => &rest[..0],
        1 => &rest[..0], // Le only
        _ if rest[0] == 0 => {
            // Extended: 00 Lc1 Lc2 data [Le1 Le2] or 00 Le1 Le2.
            if rest.len() < 3 {
                return Err(sw::WRONG_LENGTH);
            }
            let lc = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            if rest.len() == 3 {
                &rest[..0]
            } else if rest.len() == 3 + lc || rest.len() == 5 + lc {
                &rest[3..3 + lc]
            } else {
                return Err(sw::WRONG_LENGTH);
            }
        }
        _ => {
            let lc = usize::from(rest[0]);
            if rest.len() == 1 + lc || rest.len() == 2 + lc {
                &rest[1..1 + lc]
            } else {
                return Err(sw::WRONG_LENGTH);
            }
        }
    };
    Ok(Apdu { ins, p1, data })
}

fn with_sw(mut data: Vec<u8>, status: u16) -> Vec<u8> {
    data.extend_from_slice(&status.to_be_bytes());
    data
}

impl Authenticator {
    /// Handles one U2F APDU, returning response data and status word.
    pub fn handle_apdu(&mut self, apdu: &[u8], presence: &Presence) -> Vec<u8> {
        self.pending = None;
        let apdu = match parse_apdu(apdu) {
            Ok(apdu) => apdu,
            Err(status) => return with_sw(Vec::new(), status),
        };
        let result = match apdu.ins {
            0x01 => self.u2f_register(apdu.data, presence),
            0x02 => self.u2f_authenticate(apdu.p1, apdu.data, presence),
            0x03 if apdu.data.is_empty() => Ok(b"U2F_V2".to_vec()),
            0x03 => Err(sw::WRONG_LENGTH),
            _ => Err(sw::INS_NOT_SUPPORTED),
        };
        match result {
            Ok(data) => with_sw(data, sw::NO_ERROR),
            Err(status) => with_sw(Vec::new(), status),
        }
    }

    fn u2f_register(&mut self, data: &[u8], presence: &Presence) -> Result<Vec<u8>, u16> {
        if data.len() != 64 {
            return Err(sw::WRONG_LENGTH);
        }
        let (challenge, application) = data.split_at(32);
        if !presence.check_now() {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        }
        let key = CredentialKey::generate(Algorithm::Es256);
        let public = key.sec1_public_key().ok_or(sw::UNKNOWN)?;
        let handle = random::<64>().to_vec();
        let mut app = [0u8; 32];
        app.copy_from_slice(application);
        let created = self.state.next_created;
        self.state.next_created += 1;
        self.state.credentials.push(StoredCredential {
            id: handle.clone(),
            rp_id: String::new(),
            rp_id_hash: app,
            user_id: Vec::new(),
            user_name: None,
            user_display_name: None,
            alg: Algorithm::Es256.cose(),
            private_key: key.to_bytes().into(),
            discoverable: false,
            cred_protect: 1,
            cred_random: None,
            created,
            u2f: true,
        });
        self.save().map_err(|_| sw::UNKNOWN)?;
        let signed = [&[0x00], application, challenge, &handle, &public].concat();
        let sig: p256::ecdsa::Signature = test_attestation_key().sign(&signed);
        let mut out = vec![0x05];
        out.extend_from_slice(&public);
        out.push(handle.len() as u8);
        out.extend_from_slice(&handle);
        out.extend_from_slice(TEST_ATTESTATION_CERT);
        out.extend_from_slice(sig.to_der().as_bytes());
        Ok(out)
    }

    fn u2f_authenticate(
        &mut self,
        p1: u8,
        data: &[u8],
        presence: &Presence,
    ) -> Result<Vec<u8>, u16> {
        if data.len() < 65 || data.len() != 65 + usize::from(data[64]) {
            return Err(sw::WRONG_LENGTH);
        }
        let (challenge, application, handle) = (&data[..32], &data[32..64], &data[65..]);
        let cred = self
            .state
            .credentials
            .iter()
            .find(|c| {
                c.id == handle
                    && c.rp_id_hash[..] == *application
                    && c.alg == Algorithm::Es256.cose()
            })
            .ok_or(sw::WRONG_DATA)?;
        let key = CredentialKey::from_bytes(Algorithm::Es256, &cred.private_key)
            .map_err(|_| sw::UNKNOWN)?;
        let up = match p1 {
            0x07 => return Err(sw::CONDITIONS_NOT_SATISFIED),
            0x03 => {
                if !presence.check_now() {
                    return Err(sw::CONDITIONS_NOT_SATISFIED);
                }
                true
            }
            0x08 => false,
            _ => return Err(sw::WRONG_DATA),
        };
        let counter = self.next_counter();
        self.save().map_err(|_| sw::UNKNOWN)?;
        let flags = u8::from(up);
        let signed = [application, &[flags], &counter.to_be_bytes(), challenge].concat();
        let mut out = vec![flags];
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend(key.sign(&signed));
        Ok(out)
    }
}
