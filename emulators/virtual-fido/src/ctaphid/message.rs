//! Messages over reports: [`fragment`] splits a message into reports, [`Reassembler`] joins the
//! reports of one incoming message and checks their sequence.

use super::MAX_MESSAGE_LEN;
use super::packet::{CONT_PAYLOAD, INIT_PAYLOAD, Packet, REPORT_LEN};

/// Splits `payload` into the reports of one message on channel `cid`. Payloads longer than
/// [`MAX_MESSAGE_LEN`] are only produced by the `oversize` fault: the length field saturates at
/// 65535 and sequence numbers wrap, as a broken device would send them.
pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Vec<[u8; REPORT_LEN]> {
    let bcnt = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let first = payload.len().min(INIT_PAYLOAD);
    let mut data = [0u8; INIT_PAYLOAD];
    data[..first].copy_from_slice(&payload[..first]);
    let mut reports = vec![
        Packet::Init {
            cid,
            cmd: cmd & 0x7F,
            bcnt,
            data,
        }
        .to_report(),
    ];
    for (seq, chunk) in payload[first..].chunks(CONT_PAYLOAD).enumerate() {
        let mut data = [0u8; CONT_PAYLOAD];
        data[..chunk.len()].copy_from_slice(chunk);
        reports.push(
            Packet::Cont {
                cid,
                seq: (seq & 0x7F) as u8,
                data,
            }
            .to_report(),
        );
    }
    reports
}

/// Why a message could not be reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The declared length exceeds [`MAX_MESSAGE_LEN`].
    #[error("declared length {0} exceeds the maximum message size")]
    TooLong(u16),
    /// A continuation packet carried the wrong sequence number.
    #[error("continuation packet with sequence {got}, expected {expected}")]
    BadSequence {
        /// The expected sequence number.
        expected: u8,
        /// The one received.
        got: u8,
    },
}

/// A message being received: the initialisation packet has arrived, continuations may follow.
#[derive(Debug, Clone)]
pub struct Reassembler {
    cid: u32,
    cmd: u8,
    expected_len: usize,
    next_seq: u8,
    buf: Vec<u8>,
}

/// What one packet did to a [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More continuation packets are needed.
    NeedMore,
    /// The message is complete: command and payload.
    Complete {
        /// Command code.
        cmd: u8,
        /// The whole payload.
        payload: Vec<u8>,
    },
}

impl Reassembler {
    /// Starts a message from its initialisation packet. Returns the reassembler, or the whole
    /// message at once when it fits in one packet.
    pub fn start(
        cid: u32,
        cmd: u8,
        bcnt: u16,
        data: &[u8; INIT_PAYLOAD],
    ) -> Result<(Self, Progress), ReassemblyError> {
        let len = usize::from(bcnt);
        if len > MAX_MESSAGE_LEN {
            return Err(ReassemblyError::TooLong(bcnt));
        }
        let take = len.min(INIT_PAYLOAD);
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&data[..take]);
        let this = Self {
            cid,
            cmd,
            expected_len: len,
            next_seq: 0,
            buf,
        };
        let progress = this.progress();
        Ok((this, progress))
    }

    /// The channel this message arrives on.
    pub fn cid(&self) -> u32 {
        self.cid
    }

    /// Adds a continuation packet's payload with sequence number `seq`.
    pub fn push(
        &mut self,
        seq: u8,
        data: &[u8; CONT_PAYLOAD],
    ) -> Result<Progress, ReassemblyError> {
        if seq != self.next_seq {
            return Err(ReassemblyError::BadSequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let take = (self.expected_len - self.buf.len()).min(CONT_PAYLOAD);
        self.buf.extend_from_slice(&data[..take]);
        Ok(self.progress())
    }

    fn progress(&self) -> Progress {
        if self.buf.len() >= self.expected_len {
            Progress::Complete {
                cmd: self.cmd,
                payload: self.buf.clone(),
            }
        } else {
            Progress::NeedMore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reassemble(reports: &[[u8; REPORT_LEN]]) -> Result<Option<(u8, Vec<u8>)>, ReassemblyError> {
        let mut iter = reports.iter().map(Packet::parse);
        let Some(Packet::Init {
            cid,
            cmd,
            bcnt,
            data,
        }) = iter.next()
        else {
            panic!("first report is not an init packet");
        };
        let (mut r, mut progress) = Reassembler::start(cid, cmd, bcnt, &data)?;
        for p in iter {
            let Packet::Cont { seq, data, .. } = p else {
                panic!("init packet in the middle")
            };
            progress = r.push(seq, &data)?;
        }
        Ok(match progress {
            Progress::Complete { cmd, payload } => Some((cmd, payload)),
            Progress::NeedMore => None,
        })
    }

    #[test]
    fn every_size_up_to_the_maximum_round_trips() {
        for len in 0..=MAX_MESSAGE_LEN {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let reports = fragment(0x0102_0304, 0x10, &payload);
            let expected_reports = if len <= INIT_PAYLOAD {
                1
            } else {
                1 + (len - INIT_PAYLOAD).div_ceil(CONT_PAYLOAD)
            };
            assert_eq!(reports.len(), expected_reports, "len {len}");
            assert_eq!(
                reassemble(&reports).unwrap(),
                Some((0x10, payload)),
                "len {len}"
            );
        }
    }

    #[test]
    fn one_byte_past_the_maximum_is_refused() {
        let data = [0u8; INIT_PAYLOAD];
        assert_eq!(
            Reassembler::start(1, 0x10, (MAX_MESSAGE_LEN + 1) as u16, &data).unwrap_err(),
            ReassemblyError::TooLong((MAX_MESSAGE_LEN + 1) as u16)
        );
    }

    proptest! {
        #[test]
        fn random_payloads_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE_LEN), cid in any::<u32>(), cmd in 0u8..0x80) {
            let reports = fragment(cid, cmd, &payload);
            prop_assert!(reports.iter().all(|r| Packet::parse(r).cid() == cid));
            prop_assert_eq!(reassemble(&reports).unwrap(), Some((cmd, payload)));
        }

        #[test]
        fn a_wrong_sequence_number_is_rejected(len in (INIT_PAYLOAD + 1)..=MAX_MESSAGE_LEN, pick in any::<prop::sample::Index>(), bad in 0u8..0x80) {
            let payload = vec![0xA5u8; len];
            let mut reports = fragment(7, 0x10, &payload);
            let i = 1 + pick.index(reports.len() - 1);
            let expected = (i - 1) as u8;
            prop_assume!(bad != expected);
            reports[i][4] = bad;
            prop_assert_eq!(
                reassemble(&reports),
                Err(ReassemblyError::BadSequence { expected, got: bad })
            );
        }

        #[test]
        fn a_dropped_continuation_is_rejected(len in (INIT_PAYLOAD + CONT_PAYLOAD + 1)..=MAX_MESSAGE_LEN, pick in any::<prop::sample::Index>()) {
            let payload = vec![0x5Au8; len];
            let mut reports = fragment(7, 0x10, &payload);
            let i = 1 + pick.index(reports.len() - 2);
            reports.remove(i);
            let is_seq_error = matches!(reassemble(&reports), Err(ReassemblyError::BadSequence { .. }));
            prop_assert!(is_seq_error);
        }
    }
}
