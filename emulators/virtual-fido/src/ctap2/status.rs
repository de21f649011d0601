//! CTAP2 status codes (the first byte of every response).

/// A CTAP2 status code. `Success` is 0; every other variant is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(u8)]
#[allow(missing_docs)] // the names are the specification's
pub enum Status {
    #[error("success")]
    Success = 0x00,
    #[error("invalid command")]
    InvalidCommand = 0x01,
    #[error("invalid parameter")]
    InvalidParameter = 0x02,
    #[error("invalid length")]
    InvalidLength = 0x03,
    #[error("unexpected CBOR type")]
    CborUnexpectedType = 0x11,
    #[error("invalid CBOR")]
    InvalidCbor = 0x12,
    #[error("missing parameter")]
    MissingParameter = 0x14,
    #[error("limit exceeded")]
    LimitExceeded = 0x15,
    #[error("credential excluded")]
    CredentialExcluded = 0x19,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm = 0x26,
    #[error("operation denied")]
    OperationDenied = 0x27,
    #[error("key store full")]
    KeyStoreFull = 0x28,
    #[error("unsupported option")]
    UnsupportedOption = 0x2B,
    #[error("invalid option")]
    InvalidOption = 0x2C,
    #[error("keepalive cancel")]
    KeepaliveCancel = 0x2D,
    #[error("no credentials")]
    NoCredentials = 0x2E,
    #[error("user action timeout")]
    UserActionTimeout = 0x2F,
    #[error("not allowed")]
    NotAllowed = 0x30,
    #[error("PIN invalid")]
    PinInvalid = 0x31,
    #[error("PIN blocked")]
    PinBlocked = 0x32,
    #[error("PIN auth invalid")]
    PinAuthInvalid = 0x33,
    #[error("PIN auth blocked")]
    PinAuthBlocked = 0x34,
    #[error("PIN not set")]
    PinNotSet = 0x35,
    #[error("pinUvAuthToken required")]
    PuatRequired = 0x36,
    #[error("PIN policy violation")]
    PinPolicyViolation = 0x37,
    #[error("request too large")]
    RequestTooLarge = 0x39,
    #[error("invalid subcommand")]
    InvalidSubcommand = 0x3E,
    #[error("unauthorized permission")]
    UnauthorizedPermission = 0x40,
    #[error("other error")]
    Other = 0x7F,
}
