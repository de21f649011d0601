//! The usbredir wire format: typed messages, little-endian packed bodies, framing.
//!
//! Kept apart from the session state machine ([`crate::session`]): nothing here knows about
//! USB devices, only about bytes. Decoding never panics and never allocates more than
//! [`MAX_BODY`] per packet, whatever the peer sends.

mod codec;
mod error;
mod message;
mod types;

pub use codec::{Frame, FrameReader, IdWidth, MAX_BODY, Negotiated, encode_frame};
pub use error::WireError;
pub use message::{
    ControlPacket, DeviceConnect, EpInfo, Hello, InterfaceInfo, InterruptPacket, MAX_ENDPOINTS,
    Message, Sender, VERSION_LEN,
};
pub use types::{Cap, Caps, Status, ep_index, ep_type, packet_type, speed};
