//! The sealed LUKS2 root (DESIGN.md §4): a volume whose key is bound to a Zymkey, with a
//! vendor-only recovery slot and a volume check.
//!
//! - [`format_fresh`] formats an empty LUKS2 volume with the board's cipher ([`BoardProfile`]).
//! - [`enroll`] adds the sealed-secret keyslot (32 bytes: Zymkey RNG mixed with getrandom;
//!   minimal PBKDF) with its `keybound-zymkey` token, and the recovery keyslot (a random 256-bit
//!   secret, production argon2id) with its `keybound-recovery` token holding the secret only
//!   encrypted to the vendor's age recipient.
//! - [`unseal`] unlocks the blob with the Zymkey; [`Unsealed::verify_volume`] and [`activate`]
//!   check the sealed volume check (LUKS2 UUID + keyed digest of the volume key).
//! - [`reseal`] binds the volume to a replacement module with the recovery secret;
//!   [`rotate_recovery`] replaces the recovery secret; [`rotate`] (after a field recovery)
//!   re-encrypts the data to a new volume key, replaces the recovery secret and re-seals the
//!   volume check; [`finish_rotation`] completes one a power cut interrupted.
//! - First-boot provisioning: [`reencrypt_pending`] (an interrupted in-place encryption),
//!   [`volume_key_from_keyslot`], [`discard_partial_enrolment`], and [`re_enroll`] (new sealed
//!   and recovery secrets, same volume key).
//!
//! Tokens are parsed strictly ([`token`]); no policy is read from them. Secrets live in
//! wiping types that never print their bytes.

mod check;
mod element;
mod error;
mod luks;
mod ops;
mod payload;
mod profile;
mod provisioning;
mod rotate;
mod secret;
mod summary;
pub mod token;

pub use check::{CheckMismatch, VolumeCheck};
pub use element::SecureElement;
pub use error::{Error, Result};
pub use luks::{Luks2, silence_libcryptsetup_log};
pub use ops::{
    Enrolment, FormatParams, Tokens, Unsealed, activate, decrypt_recovery, enroll, format_fresh,
    read_tokens, recovery_ciphertext, reseal, rotate_recovery, unseal,
};
pub use payload::{PAYLOAD_VERSION, SealedPayload};
pub use profile::{BoardProfile, RecoveryKdf};
pub use provisioning::{
    discard_partial_enrolment, re_enroll, reencrypt_pending, volume_key_from_keyslot,
};
pub use rotate::{Progress, ROTATION_TOKEN, Rotation, finish_rotation, rotate};
pub use secret::{RecoverySecret, SECRET_LEN, SealedSecret, VolumeKey};
pub use summary::{KeyslotSummary, SlotRole, VolumeSummary, summarize};
