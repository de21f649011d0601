//! CTAPHID: the FIDO HID framing (64-byte reports, channels, fragmentation) and the engine that
//! runs transactions on top of it.
//!
//! [`packet`] parses and builds single reports, [`message`] splits and reassembles messages with
//! sequence checks, [`engine`] allocates channels and dispatches commands.

pub mod engine;
pub mod message;
pub mod packet;

pub use engine::{CtapHid, EngineConfig};
pub use message::{Reassembler, ReassemblyError, fragment};
pub use packet::{Packet, REPORT_LEN};

/// The broadcast channel, used only by `INIT` to allocate a channel.
pub const BROADCAST_CID: u32 = 0xFFFF_FFFF;

/// The largest message: one initialisation packet and 128 continuation packets.
pub const MAX_MESSAGE_LEN: usize = (REPORT_LEN - 7) + 128 * (REPORT_LEN - 5);

/// CTAPHID command codes (without the initialisation-packet bit 0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// Echo the payload.
    Ping = 0x01,
    /// A CTAP1/U2F APDU.
    Msg = 0x03,
    /// Lock the device to one channel for up to 10 s.
    Lock = 0x04,
    /// Allocate or resynchronise a channel.
    Init = 0x06,
    /// Identify the device (blink).
    Wink = 0x08,
    /// A CTAP2 CBOR request.
    Cbor = 0x10,
    /// Cancel the channel's outstanding request.
    Cancel = 0x11,
    /// Sent by the device while processing or waiting for the user.
    Keepalive = 0x3B,
    /// An error reply.
    Error = 0x3F,
}

impl Command {
    /// The command for a code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::Ping,
            0x03 => Self::Msg,
            0x04 => Self::Lock,
            0x06 => Self::Init,
            0x08 => Self::Wink,
            0x10 => Self::Cbor,
            0x11 => Self::Cancel,
            0x3B => Self::Keepalive,
            0x3F => Self::Error,
            _ => return None,
        })
    }
}

/// CTAPHID error codes, sent in a `CTAPHID_ERROR` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HidError {
    /// The command is not known.
    InvalidCmd = 0x01,
    /// A parameter is invalid.
    InvalidPar = 0x02,
    /// The length is invalid.
    InvalidLen = 0x03,
    /// A continuation packet came out of sequence.
    InvalidSeq = 0x04,
    /// The message did not complete in time.
    MsgTimeout = 0x05,
    /// The device is busy with another channel.
    ChannelBusy = 0x06,
    /// The command needs a lock.
    LockRequired = 0x0A,
    /// The channel is not allocated or not allowed.
    InvalidChannel = 0x0B,
    /// Any other error.
    Other = 0x7F,
}

/// Keepalive status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeepaliveStatus {
    /// The authenticator is still processing.
    Processing = 0x01,
    /// The authenticator waits for user presence.
    UpNeeded = 0x02,
}

/// Capability flags in the `INIT` reply.
pub mod capability {
    /// Implements `WINK`.
    pub const WINK: u8 = 0x01;
    /// Implements `CBOR` (CTAP2).
    pub const CBOR: u8 = 0x04;
    /// Does NOT implement `MSG` (CTAP1); not set here: we implement it.
    pub const NMSG: u8 = 0x08;
}
