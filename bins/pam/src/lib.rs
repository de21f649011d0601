//! `pam_keybound.so`: after the password, a FIDO2 (or U2F) assertion from a token plugged into
//! the machine. pam_u2f-compatible authfiles and options, a timeout on every wait, no oracle
//! without a token, and signature-counter clone detection.
//!
//! Layers (each one job):
//! - [`options`]: module arguments and the `conf=` file (unknown → failure, never a skip);
//! - [`authfile`]: pam_u2f authfile lines (new and old formats), parse and format;
//! - [`safe_file`]: hardened opening of authfiles, config and state (no symlinks, owner, mode);
//! - [`counters`]: the signature-counter store (flock, atomic replace, clone detection);
//! - [`verify`]: authenticator data and signature checks on untrusted device output;
//! - [`fido`]: libfido2 through a small hand-written FFI (device discovery, assertion,
//!   credential creation, custom I/O for tests);
//! - [`enroll`]: credential creation as pamu2fcfg does it (used by `keybound token enroll`);
//! - [`auth`]: the authentication flow, over a [`auth::Conversation`] and a device source;
//! - [`log`]: syslog (LOG_AUTHPRIV) and the `debug`/`debug_file` sink;
//! - [`pam`]: the exported `pam_sm_*` entry points (no panic crosses the C ABI).

pub mod auth;
pub mod authfile;
pub mod counters;
pub mod enroll;
pub mod fido;
pub mod log;
pub mod options;
pub mod pam;
pub mod safe_file;
pub mod verify;

pub use auth::{AuthOutcome, Authenticator};
