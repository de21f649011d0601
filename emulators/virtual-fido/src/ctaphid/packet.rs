//! One 64-byte CTAPHID report: an initialisation packet or a continuation packet.

/// The size of every HID report, both directions.
pub const REPORT_LEN: usize = 64;
/// Payload bytes in an initialisation packet.
pub const INIT_PAYLOAD: usize = REPORT_LEN - 7;
/// Payload bytes in a continuation packet.
pub const CONT_PAYLOAD: usize = REPORT_LEN - 5;

/// A parsed report. Parsing never fails: every 64-byte array is one of the two kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// The first packet of a message.
    Init {
        /// Channel id.
        cid: u32,
        /// Command code (bit 0x80 removed).
        cmd: u8,
        /// Declared length of the whole message.
        bcnt: u16,
        /// This packet's payload bytes (always [`INIT_PAYLOAD`] long; the message length says
        /// how many count).
        data: [u8; INIT_PAYLOAD],
    },
    /// A continuation packet.
    Cont {
        /// Channel id.
        cid: u32,
        /// Sequence number, 0..=0x7F.
        seq: u8,
        /// Payload bytes.
        data: [u8; CONT_PAYLOAD],
    },
}

impl Packet {
    /// Parses one report.
    pub fn parse(report: &[u8; REPORT_LEN]) -> Self {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 != 0 {
            let mut data = [0u8; INIT_PAYLOAD];
            data.copy_from_slice(&report[7..]);
            Packet::Init {
                cid,
                cmd: report[4] & 0x7F,
                bcnt: u16::from_be_bytes([report[5], report[6]]),
                data,
            }
        } else {
            let mut data = [0u8; CONT_PAYLOAD];
            data.copy_from_slice(&report[5..]);
            Packet::Cont {
                cid,
                seq: report[4],
                data,
            }
        }
    }

    /// The channel id.
    pub fn cid(&self) -> u32 {
        match self {
            Packet::Init { cid, .. } | Packet::Cont { cid, .. } => *cid,
        }
    }

    /// Encodes the packet as a report.
    pub fn to_report(&self) -> [u8; REPORT_LEN] {
        let mut report = [0u8; REPORT_LEN];
        report[..4].copy_from_slice(&self.cid().to_be_bytes());
        match self {
            Packet::Init {
                cmd, bcnt, data, ..
            } => {
                report[4] = 0x80 | cmd;
                report[5..7].copy_from_slice(&bcnt.to_be_bytes());
                report[7..].copy_from_slice(data);
            }
            Packet::Cont { seq, data, .. } => {
                report[4] = seq & 0x7F;
                report[5..].copy_from_slice(data);
            }
        }
        report
    }
}
