//! Property tests: the parser never panics on untrusted bytes, and messages round-trip.

mod common;

use common::{QEMU_CAPS, identity};
use proptest::prelude::*;
use usbredir_device::wire::{
    Caps, ControlPacket, FrameReader, IdWidth, InterruptPacket, Message, Negotiated, Sender,
    Status, encode_frame,
};
use usbredir_device::{Descriptors, Session};

fn negotiated() -> impl Strategy<Value = Negotiated> {
    (any::<bool>(), any::<u32>()).prop_map(|(wide, caps)| Negotiated {
        id_width: if wide {
            IdWidth::Bits64
        } else {
            IdWidth::Bits32
        },
        caps: Caps(caps),
    })
}

/// Messages a host sends, with consistent lengths.
fn host_message() -> impl Strategy<Value = Message> {
    let control = (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(request, request_type, value, index, in_len, data)| {
            let dir_in = request_type & 0x80 != 0;
            Message::ControlPacket(ControlPacket {
                endpoint: request_type & 0x80,
                request,
                request_type,
                status: Status::Success,
                value,
                index,
                length: if dir_in { in_len } else { data.len() as u16 },
                data: if dir_in { Vec::new() } else { data },
            })
        });
    let interrupt =
        (0u8..16, proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(ep, data)| {
            Message::InterruptPacket(InterruptPacket {
                endpoint: ep,
                status: Status::Success,
                length: data.len() as u16,
                data,
            })
        });
    prop_oneof![
        Just(Message::Reset),
        Just(Message::GetConfiguration),
        Just(Message::CancelDataPacket),
        Just(Message::FilterReject),
        Just(Message::DeviceDisconnectAck),
        any::<u8>().prop_map(|configuration| Message::SetConfiguration { configuration }),
        (any::<u8>(), any::<u8>())
            .prop_map(|(interface, alt)| Message::SetAltSetting { interface, alt }),
        any::<u8>().prop_map(|interface| Message::GetAltSetting { interface }),
        any::<u8>().prop_map(|endpoint| Message::StartInterruptReceiving { endpoint }),
        any::<u8>().prop_map(|endpoint| Message::StopInterruptReceiving { endpoint }),
        proptest::collection::vec(1u8..=255, 0..40).prop_map(Message::FilterFilter),
        control,
        interrupt,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any byte string, in any layout, from either side: frames or errors, never a panic.
    #[test]
    fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), n in negotiated(), host in any::<bool>()) {
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let sender = if host { Sender::Host } else { Sender::Device };
        for _ in 0..bytes.len() + 1 {
            match reader.next_frame(n, sender) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Well-framed packets of every known type with random bodies: decoded or refused,
    /// never a panic, in both layouts and from both sides.
    #[test]
    fn framed_garbage_never_panics(
        packet_type in prop_oneof![0u32..30, 98u32..106, any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..400),
        n in negotiated(),
        host in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&packet_type.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&[7u8; 8][..n.id_width.header_len() - 8]);
        bytes.extend_from_slice(&body);
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let sender = if host { Sender::Host } else { Sender::Device };
        if let Ok(frame) = reader.next_frame(n, sender) {
            prop_assert!(frame.is_some(), "a whole frame was pushed");
            prop_assert_eq!(reader.pending(), 0);
        }
    }

    /// Garbage after a valid hello reaches the session: errors are fine, panics are not.
    #[test]
    fn session_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..600) {
        let mut s = Session::new(Descriptors::build(&identity()).unwrap());
        let host = common::FakeHost::new(QEMU_CAPS);
        s.receive(&host.hello()).unwrap();
        let split = split.min(bytes.len());
        if s.receive(&bytes[..split]).is_ok() {
            let _ = s.receive(&bytes[split..]);
        }
        let _ = s.take_outgoing();
    }

    /// Valid host messages after a valid hello never make the session fail.
    #[test]
    fn session_accepts_every_valid_host_message(messages in proptest::collection::vec(host_message(), 1..20)) {
        let mut s = Session::new(Descriptors::build(&identity()).unwrap());
        let mut host = common::FakeHost::new(QEMU_CAPS);
        host.receive(&s.take_outgoing());
        s.receive(&host.hello()).unwrap();
        host.receive(&s.take_outgoing());
        for message in &messages {
            let (_, bytes) = host.request(message);
            prop_assert!(s.receive(&bytes).is_ok(), "{message:?}");
            // Whatever the device answers decodes on the host side.
            host.receive(&s.take_outgoing());
        }
    }

    /// Encoding then decoding gives back the message and id, however the bytes are split.
    #[test]
    fn host_messages_round_trip(message in host_message(), id in any::<u32>(), wide in any::<bool>(), split in 0usize..400) {
        let n = Negotiated { id_width: if wide { IdWidth::Bits64 } else { IdWidth::Bits32 }, caps: QEMU_CAPS };
        let mut bytes = Vec::new();
        encode_frame(n, u64::from(id), &message, &mut bytes).unwrap();
        let split = split.min(bytes.len());
        let mut reader = FrameReader::new();
        reader.push(&bytes[..split]);
        let first = reader.next_frame(n, Sender::Host).unwrap();
        let frame = match first {
            Some(frame) => frame,
            None => {
                reader.push(&bytes[split..]);
                reader.next_frame(n, Sender::Host).unwrap().expect("a whole frame")
            }
        };
        prop_assert_eq!(frame.id, u64::from(id));
        prop_assert_eq!(frame.message, message);
        prop_assert_eq!(reader.pending(), 0);
    }
}
