//! Framing: the packet header and a streaming frame reader.

use super::error::WireError;
use super::message::{Message, Sender};
use super::types::{Cap, Caps};

/// Largest body this crate accepts: a full 64 KiB control transfer plus its header, with room
/// to spare for a long hello. Anything larger is an error, never an allocation.
pub const MAX_BODY: u32 = 0x1_0000 + 1024;

/// Width of the id field in packet headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdWidth {
    /// 32-bit ids: always for the hellos, and afterwards unless both sides have `64bits_ids`.
    Bits32,
    /// 64-bit ids.
    Bits64,
}

impl IdWidth {
    /// Length of a whole header (type, length, id) with this id width.
    pub fn header_len(self) -> usize {
        match self {
            IdWidth::Bits32 => 12,
            IdWidth::Bits64 => 16,
        }
    }
}

/// What both sides agreed on in the hello exchange; decides header and body layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Header id width.
    pub id_width: IdWidth,
    /// Capabilities both sides advertised.
    pub caps: Caps,
}

impl Negotiated {
    /// The layout before (and for) the hellos: 32-bit ids, no capabilities.
    pub const INITIAL: Negotiated = Negotiated {
        id_width: IdWidth::Bits32,
        caps: Caps(0),
    };

    /// The layout after both hellos, from each side's advertised capabilities.
    pub fn from_hellos(ours: Caps, theirs: Caps) -> Negotiated {
        let caps = ours.intersect(theirs);
        let id_width = if caps.has(Cap::Ids64) {
            IdWidth::Bits64
        } else {
            IdWidth::Bits32
        };
        Negotiated { id_width, caps }
    }
}

/// One decoded packet: its id and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Packet id (matches answers to requests).
    pub id: u64,
    /// The message.
    pub message: Message,
}

/// Encodes `message` with `id` as one whole packet appended to `out`.
pub fn encode_frame(
    negotiated: Negotiated,
    id: u64,
    message: &Message,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut body = Vec::new();
    message.encode_body(negotiated.caps, &mut body)?;
    let packet_type = message.packet_type();
    let length = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= MAX_BODY)
        .ok_or(WireError::TooLong {
            packet_type,
            length: u32::MAX,
            max: MAX_BODY,
        })?;
    out.extend_from_slice(&packet_type.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    match negotiated.id_width {
        IdWidth::Bits32 => {
            let id = u32::try_from(id).map_err(|_| WireError::UnsupportedEncode { packet_type })?;
            out.extend_from_slice(&id.to_le_bytes());
        }
        IdWidth::Bits64 => out.extend_from_slice(&id.to_le_bytes()),
    }
    out.extend_from_slice(&body);
    Ok(())
}

/// Reassembles packets from a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole packet sent by `sender`, decoded with `negotiated`; `Ok(None)` when more
    /// bytes are needed. After an error the stream is out of sync and must be dropped.
    pub fn next_frame(
        &mut self,
        negotiated: Negotiated,
        sender: Sender,
    ) -> Result<Option<Frame>, WireError> {
        let avail = &self.buf[self.start..];
        let header_len = negotiated.id_width.header_len();
        let Some(header) = avail.get(..header_len) else {
            return Ok(None);
        };
        let packet_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if length > MAX_BODY {
            return Err(WireError::TooLong {
                packet_type,
                length,
                max: MAX_BODY,
            });
        }
        let id = match negotiated.id_width {
            IdWidth::Bits32 => u64::from(u32::from_le_bytes([
                header[8], header[9], header[10], header[11],
            ])),
            IdWidth::Bits64 => {
                let mut id = [0u8; 8];
                id.copy_from_slice(&header[8..16]);
                u64::from_le_bytes(id)
            }
        };
        // `length` <= MAX_BODY, so this cannot overflow.
        let total = header_len + length as usize;
        let Some(body) = avail.get(header_len..total) else {
            return Ok(None);
        };
        let message = Message::decode_body(packet_type, body, negotiated.caps, sender)?;
        self.start += total;
        if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(Frame { id, message }))
    }
}
