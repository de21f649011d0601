//! Credential creation, as pamu2fcfg does it (shared with `keybound token enroll`): a
//! makeCredential for the origin on one device, checked, and turned into an authfile
//! [`Credential`] plus the signature counter the token showed (recorded for clone detection).

use std::ffi::CStr;

use sha2::{Digest, Sha256};

use crate::authfile::{CoseType, Credential, CredentialOptions, KeyHandle, PublicKey};
use crate::fido::{Device, FidoError, MakeCredRequest, Opt};
use crate::verify::{FLAG_AT, FLAG_UP, FLAG_UV};

/// What to create (pamu2fcfg's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The user name.
    pub user: String,
    /// Relying party id (`-o`).
    pub origin: String,
    /// Relying party name (`-i`, default: the origin).
    pub appid: Option<String>,
    /// Resident credential (`-r`): stored as `*`.
    pub resident: bool,
    /// Key type (`-t`).
    pub cose_type: CoseType,
    /// `+pin` (`-N`).
    pub pin: bool,
    /// `+verification` (`-V`).
    pub verification: bool,
    /// Drop `+presence` (`-P`).
    pub no_presence: bool,
}

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The device refused or failed.
    #[error("makeCredential failed: {0}")]
    Device(#[from] FidoError),
    /// rs256 is not created by this tool.
    #[error("key type rs256 is not supported")]
    Unsupported,
    /// The token's reply did not check out.
    #[error("token reply rejected: {0}")]
    Reply(&'static str),
    /// No randomness.
    #[error("no randomness")]
    Random,
}

/// A new credential and the counter it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The authfile credential.
    pub credential: Credential,
    /// The signature counter at creation (0 for tokens without a counter).
    pub counter: u32,
}

/// Creates a credential on `dev`. `pin` is the token PIN when it has one (or `+pin` is asked).
pub fn enroll(
    dev: &mut Device,
    req: &EnrollRequest,
    pin: Option<&CStr>,
) -> Result<Enrolled, EnrollError> {
    if req.cose_type == CoseType::Rs256 {
        return Err(EnrollError::Unsupported);
    }
    let mut cdh = [0u8; 32];
    let mut user_id = [0u8; 32];
    getrandom::fill(&mut cdh).map_err(|_| EnrollError::Random)?;
    getrandom::fill(&mut user_id).map_err(|_| EnrollError::Random)?;
    let made = dev.make_cred(
        &MakeCredRequest {
            rp_id: &req.origin,
            rp_name: req.appid.as_deref().unwrap_or(&req.origin),
            user: &req.user,
            user_id,
            client_data_hash: cdh,
            eddsa: req.cose_type == CoseType::EdDsa,
            resident: req.resident,
            uv: if req.verification && !req.pin {
                Opt::True
            } else {
                Opt::Omit
            },
        },
        pin,
    )?;
    let ad = &made.auth_data;
    let rp_hash: [u8; 32] = Sha256::digest(req.origin.as_bytes()).into();
    if ad.len() < 37 || ad[..32] != rp_hash {
        return Err(EnrollError::Reply("rpId hash mismatch"));
    }
    let flags = ad[32];
    if flags & FLAG_AT == 0 {
        return Err(EnrollError::Reply("no attested credential data"));
    }
    if !req.no_presence && flags & FLAG_UP == 0 {
        return Err(EnrollError::Reply("user presence flag missing"));
    }
    if (req.verification || req.pin) && flags & FLAG_UV == 0 {
        return Err(EnrollError::Reply("user verification flag missing"));
    }
    let counter = u32::from_be_bytes([ad[33], ad[34], ad[35], ad[36]]);
    let public_key = PublicKey::from_bytes(req.cose_type, &made.public_key)
        .ok_or(EnrollError::Reply("public key of the wrong size"))?;
    if let PublicKey::Es256(point) = &public_key {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| EnrollError::Reply("public key not on P-256"))?;
    }
    Ok(Enrolled {
        credential: Credential {
            key_handle: if req.resident {
                KeyHandle::Resident
            } else {
                KeyHandle::Id(made.id)
            },
            public_key,
            options: CredentialOptions {
                presence: !req.no_presence,
                verification: req.verification,
                pin: req.pin,
            },
            old_format: false,
        },
        counter,
    })
}
