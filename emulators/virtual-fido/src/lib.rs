//! A scriptable virtual FIDO2 token: CTAP2.1 and CTAP1/U2F over CTAPHID (64-byte HID reports).
//!
//! Layers, bottom up (each usable alone, as in trussed's ctap-types / fido-authenticator):
//! - [`ctaphid`]: report framing, channels, fragmentation, the transaction engine;
//! - [`ctap2`]: CTAP2 wire types (CBOR requests and responses, COSE keys), no logic;
//! - [`authenticator`]: the CTAP2.1 / U2F logic over a [`state::TokenState`];
//! - [`token`]: one authenticator shared by transports and the control socket, with its
//!   [`presence`] button and armed [`faults`];
//! - [`transport`]: the report-level boundary ([`transport::HidReportDevice`],
//!   [`transport::ReportSink`], [`transport::FIDO_HID_REPORT_DESCRIPTOR`]) and the raw socket;
//! - [`control`]: the JSON-lines control protocol.

pub mod authenticator;
pub mod control;
pub mod crypto;
pub mod ctap2;
pub mod ctaphid;
pub mod faults;
pub mod pin_protocol;
pub mod presence;
pub mod state;
pub mod token;
pub mod transport;

pub use authenticator::{AttestationMode, Authenticator};
pub use presence::PresencePolicy;
pub use token::{Token, TokenConfig};
