//! CTAP2 wire types: command codes, status codes, requests parsed from CBOR and responses
//! encoded to canonical CBOR. No authenticator logic lives here.

pub mod cbor;
pub mod cose;
pub mod request;
pub mod response;
pub mod status;

pub use request::{
    ClientPinRequest, CredentialDescriptor, GetAssertionRequest, HmacSecretInput,
    MakeCredentialRequest, Options, Request,
};
pub use status::Status;

/// CTAP2 command bytes.
pub mod command {
    /// authenticatorMakeCredential.
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    /// authenticatorGetAssertion.
    pub const GET_ASSERTION: u8 = 0x02;
    /// authenticatorGetInfo.
    pub const GET_INFO: u8 = 0x04;
    /// authenticatorClientPIN.
    pub const CLIENT_PIN: u8 = 0x06;
    /// authenticatorReset.
    pub const RESET: u8 = 0x07;
    /// authenticatorGetNextAssertion.
    pub const GET_NEXT_ASSERTION: u8 = 0x08;
    /// authenticatorSelection.
    pub const SELECTION: u8 = 0x0B;
}
