//! Errors of the wire layer.

/// A malformed or unrepresentable usbredir packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The header announces a body longer than this side accepts.
    #[error(
        "packet type {packet_type} announces a {length}-byte body, more than the {max}-byte limit"
    )]
    TooLong {
        /// Packet type from the header.
        packet_type: u32,
        /// Announced body length.
        length: u32,
        /// Largest accepted body.
        max: u32,
    },
    /// A body whose length does not fit its type.
    #[error("packet type {packet_type} has a {got}-byte body, expected {expected}")]
    BadLength {
        /// Packet type.
        packet_type: u32,
        /// Expected (minimum, for data packets) length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A data packet whose data length differs from its length field.
    #[error("packet type {packet_type}: length field {header} but {data} data bytes")]
    DataLengthMismatch {
        /// Packet type.
        packet_type: u32,
        /// Length field.
        header: u16,
        /// Data bytes present.
        data: usize,
    },
    /// A data packet carrying data in the direction that must not carry any.
    #[error(
        "packet type {packet_type} on endpoint {endpoint:#04x} carries {data} unexpected data bytes"
    )]
    UnexpectedData {
        /// Packet type.
        packet_type: u32,
        /// Endpoint address.
        endpoint: u8,
        /// Data bytes present.
        data: usize,
    },
    /// A data packet sent in a direction the protocol does not allow.
    #[error("packet type {packet_type} on endpoint {endpoint:#04x} sent in the wrong direction")]
    WrongDirection {
        /// Packet type.
        packet_type: u32,
        /// Endpoint address.
        endpoint: u8,
    },
    /// interface_info with more than 32 interfaces.
    #[error("interface_info announces {0} interfaces (at most 32)")]
    BadInterfaceCount(u32),
    /// filter_filter without its terminating NUL.
    #[error("filter_filter rules are not NUL-terminated")]
    UnterminatedFilter,
    /// A packet type that usbredir does not define.
    #[error("unknown packet type {0}")]
    UnknownType(u32),
    /// Asked to encode a message this crate cannot encode.
    #[error("cannot encode packet type {packet_type}")]
    UnsupportedEncode {
        /// Packet type.
        packet_type: u32,
    },
}
