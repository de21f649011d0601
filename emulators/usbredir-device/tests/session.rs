//! Drives the sans-I/O session with a fake host that speaks usbredir.

mod common;

use common::{FakeHost, QEMU_CAPS, identity};
use usbredir_device::wire::{
    Cap, Caps, ControlPacket, Frame, IdWidth, InterruptPacket, Message, Status, WireError,
    ep_index, ep_type, packet_type, speed,
};
use usbredir_device::{Descriptors, Event, Session, SessionError};

fn session() -> Session {
    Session::new(Descriptors::build(&identity()).unwrap())
}

/// A session and host after the hello exchange; returns the frames the device sent.
fn plugged(caps: Caps) -> (Session, FakeHost, Vec<Frame>) {
    let mut s = session();
    let mut host = FakeHost::new(caps);
    let mut frames = host.receive(&s.take_outgoing());
    s.receive(&host.hello()).unwrap();
    frames.extend(host.receive(&s.take_outgoing()));
    (s, host, frames)
}

fn exchange(s: &mut Session, host: &mut FakeHost, bytes: &[u8]) -> Vec<Frame> {
    s.receive(bytes).unwrap();
    host.receive(&s.take_outgoing())
}

fn control_answer(frames: &[Frame], id: u64) -> ControlPacket {
    match frames {
        [
            Frame {
                id: got,
                message: Message::ControlPacket(cp),
            },
        ] if *got == id => cp.clone(),
        other => panic!("expected one control answer with id {id}, got {other:?}"),
    }
}

#[test]
fn hello_is_sent_first_with_32_bit_ids() {
    let mut s = session();
    let out = s.take_outgoing();
    // Header: type 0, length 64 + 4, 32-bit id 0.
    assert_eq!(&out[..12], &[0, 0, 0, 0, 68, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(out.len(), 12 + 68);
    assert!(out[12..].starts_with(b"keybound usbredir-device"));
    assert_eq!(out[12 + 63], 0, "version string is NUL-terminated");
    let caps = u32::from_le_bytes(out[76..80].try_into().unwrap());
    assert_eq!(caps, Caps::DEVICE.0);
    assert!(Caps(caps).has(Cap::Ids64) && Caps(caps).has(Cap::EpInfoMaxPacketSize));
    assert!(!Caps(caps).has(Cap::BulkStreams));
    assert!(!s.is_plugged());
}

#[test]
fn plug_sends_ep_info_interface_info_device_connect_in_order() {
    let (mut s, host, frames) = plugged(QEMU_CAPS);
    assert_eq!(host.negotiated.id_width, IdWidth::Bits64);
    let types: Vec<u32> = frames.iter().map(|f| f.message.packet_type()).collect();
    assert_eq!(
        types,
        [
            packet_type::HELLO,
            packet_type::EP_INFO,
            packet_type::INTERFACE_INFO,
            packet_type::DEVICE_CONNECT
        ]
    );
    let Message::EpInfo(ep) = &frames[1].message else {
        unreachable!()
    };
    for address in [0x81u8, 0x01] {
        let i = ep_index(address);
        assert_eq!(ep.ep_type[i], ep_type::INTERRUPT, "{address:#x}");
        assert_eq!(ep.interval[i], 1, "QEMU rejects interval 0");
        assert_eq!(ep.max_packet_size[i], 64);
        assert_eq!(ep.interface[i], 0);
    }
    assert_eq!(ep.ep_type[ep_index(0x00)], ep_type::CONTROL);
    assert_eq!(ep.ep_type[ep_index(0x82)], ep_type::INVALID);
    let Message::InterfaceInfo(ii) = &frames[2].message else {
        unreachable!()
    };
    assert_eq!((ii.interface_count, ii.interface_class[0]), (1, 3));
    let Message::DeviceConnect(dc) = &frames[3].message else {
        unreachable!()
    };
    assert_eq!(dc.speed, speed::FULL);
    assert_eq!(
        (dc.vendor_id, dc.product_id, dc.device_version_bcd),
        (0x1209, 0x000e, 0x0123)
    );
    assert!(s.is_plugged());
    assert_eq!(
        s.poll_event(),
        Some(Event::Plugged {
            host_version: "qemu usb-redir guest 10.0.2".into()
        })
    );
}

#[test]
fn host_without_64_bit_ids_keeps_32_bit_headers() {
    // Only ep_info_max_packet_size and connect_device_version.
    let (mut s, mut host, frames) = plugged(Caps(1 << 4 | 1 << 1));
    assert_eq!(host.negotiated.id_width, IdWidth::Bits32);
    assert_eq!(frames.len(), 4);
    let (id, bytes) = host.get_descriptor(0x80, 0x0100, 0, 18);
    assert_eq!(bytes.len(), 12 + 10, "32-bit header");
    let answer = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!(answer.data.len(), 18);
}

#[test]
fn get_descriptor_answers() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let d = Descriptors::build(&identity()).unwrap();

    let (id, bytes) = host.get_descriptor(0x80, 0x0100, 0, 64);
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!((cp.status, cp.length, cp.request), (Status::Success, 18, 6));
    assert_eq!(cp.data, d.device());

    let (id, bytes) = host.get_descriptor(0x80, 0x0200, 0, 9);
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!(cp.data, &d.config()[..9]);
    assert_eq!(u16::from_le_bytes([cp.data[2], cp.data[3]]), 41);

    let (id, bytes) = host.get_descriptor(0x80, 0x0302, 0x0409, 255);
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    let text: Vec<u16> = cp.data[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&text).unwrap(), "test hid");

    let (id, bytes) = host.get_descriptor(0x81, 0x2200, 0, 255);
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!(cp.data, identity().report_descriptor);

    // Device qualifier: a full-speed device stalls.
    let (id, bytes) = host.get_descriptor(0x80, 0x0600, 0, 10);
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!((cp.status, cp.length, cp.data.len()), (Status::Stall, 0, 0));
}

#[test]
fn set_idle_and_set_report_are_control_out() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let _ = s.poll_event();
    let (id, bytes) = host.request(&Message::ControlPacket(ControlPacket {
        endpoint: 0,
        request: 0x0a,
        request_type: 0x21,
        status: Status::Success,
        value: 0,
        index: 0,
        length: 0,
        data: Vec::new(),
    }));
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!(
        (cp.status, cp.length, cp.data.len()),
        (Status::Success, 0, 0)
    );

    let report = vec![7u8; 64];
    let (id, bytes) = host.request(&Message::ControlPacket(ControlPacket {
        endpoint: 0,
        request: 0x09,
        request_type: 0x21,
        status: Status::Success,
        value: 0x0200,
        index: 0,
        length: 64,
        data: report.clone(),
    }));
    let cp = control_answer(&exchange(&mut s, &mut host, &bytes), id);
    assert_eq!(
        (cp.status, cp.length, cp.data.len()),
        (Status::Success, 64, 0)
    );
    assert_eq!(s.poll_event(), Some(Event::OutputReport(report)));
}

#[test]
fn configuration_and_alt_setting() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let (id, bytes) = host.request(&Message::GetConfiguration);
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::ConfigurationStatus {
                status: Status::Success,
                configuration: 0
            }
        }]
    );
    let (id, bytes) = host.request(&Message::SetConfiguration { configuration: 1 });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::ConfigurationStatus {
                status: Status::Success,
                configuration: 1
            }
        }]
    );
    let (id, bytes) = host.request(&Message::SetConfiguration { configuration: 2 });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::ConfigurationStatus {
                status: Status::Stall,
                configuration: 1
            }
        }]
    );
    let (id, bytes) = host.request(&Message::SetAltSetting {
        interface: 0,
        alt: 0,
    });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::AltSettingStatus {
                status: Status::Success,
                interface: 0,
                alt: 0
            }
        }]
    );
    let (id, bytes) = host.request(&Message::GetAltSetting { interface: 1 });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::AltSettingStatus {
                status: Status::Stall,
                interface: 1,
                alt: 0xff
            }
        }]
    );
}

fn configure(s: &mut Session, host: &mut FakeHost) {
    let (_, bytes) = host.request(&Message::SetConfiguration { configuration: 1 });
    exchange(s, host, &bytes);
}

#[test]
fn interrupt_out_reaches_the_app_and_completes_at_once() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let _ = s.poll_event();
    configure(&mut s, &mut host);
    let report: Vec<u8> = (0..64).collect();
    let (id, bytes) = host.interrupt_out(&report);
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::InterruptPacket(InterruptPacket {
                endpoint: 0x01,
                status: Status::Success,
                length: 64,
                data: Vec::new()
            })
        }]
    );
    assert_eq!(s.poll_event(), Some(Event::OutputReport(report)));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn interrupt_out_before_set_configuration_stalls() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let _ = s.poll_event();
    let (_, bytes) = host.interrupt_out(&[1, 2, 3]);
    let frames = exchange(&mut s, &mut host, &bytes);
    let Message::InterruptPacket(ip) = &frames[0].message else {
        panic!("{frames:?}")
    };
    assert_eq!(ip.status, Status::Stall);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn input_reports_wait_for_start_interrupt_receiving() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    configure(&mut s, &mut host);
    s.send_input_report(&[1; 64]).unwrap();
    s.send_input_report(&[2; 64]).unwrap();
    assert!(
        !s.has_outgoing(),
        "nothing is sent while the host does not receive"
    );
    assert_eq!(s.queued_input_reports(), 2);

    let (id, bytes) = host.request(&Message::StartInterruptReceiving { endpoint: 0x81 });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames[0],
        Frame {
            id,
            message: Message::InterruptReceivingStatus {
                status: Status::Success,
                endpoint: 0x81
            }
        }
    );
    for (frame, fill) in frames[1..].iter().zip([1u8, 2]) {
        let Message::InterruptPacket(ip) = &frame.message else {
            panic!("{frame:?}")
        };
        assert_eq!(
            (ip.endpoint, ip.status, ip.length),
            (0x81, Status::Success, 64)
        );
        assert_eq!(ip.data, vec![fill; 64]);
    }
    assert!(s.is_receiving());

    // While receiving, reports go out at once.
    s.send_input_report(&[3; 64]).unwrap();
    let frames = host.receive(&s.take_outgoing());
    let Message::InterruptPacket(ip) = &frames[0].message else {
        panic!("{frames:?}")
    };
    assert_eq!(ip.data, vec![3; 64]);

    // After stop, they queue again; a reset drops them.
    let (_, bytes) = host.request(&Message::StopInterruptReceiving { endpoint: 0x81 });
    exchange(&mut s, &mut host, &bytes);
    s.send_input_report(&[4; 64]).unwrap();
    assert!(!s.has_outgoing());
    assert_eq!(s.queued_input_reports(), 1);
    let (_, bytes) = host.request(&Message::Reset);
    assert!(
        exchange(&mut s, &mut host, &bytes).is_empty(),
        "reset has no answer"
    );
    assert_eq!(s.queued_input_reports(), 0);
    assert!(
        s.poll_event()
            .into_iter()
            .chain(s.poll_event())
            .any(|e| e == Event::Reset)
    );
}

#[test]
fn oversized_input_reports_are_refused() {
    let (mut s, _host, _) = plugged(QEMU_CAPS);
    assert_eq!(
        s.send_input_report(&[0; 65]),
        Err(SessionError::ReportTooLong { len: 65 })
    );
    let mut before_hello = session();
    assert_eq!(
        before_hello.send_input_report(&[0; 8]),
        Err(SessionError::NotPlugged)
    );
}

#[test]
fn input_queue_is_bounded() {
    let (mut s, _host, _) = plugged(QEMU_CAPS);
    for i in 0..300u32 {
        s.send_input_report(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(
        s.queued_input_reports(),
        usbredir_device::session::MAX_QUEUED_INPUT_REPORTS
    );
    assert_eq!(s.dropped_input_reports(), 300 - 256);
}

#[test]
fn unplug_waits_for_ack_then_replugs() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    s.unplug();
    let frames = host.receive(&s.take_outgoing());
    assert_eq!(
        frames
            .iter()
            .map(|f| f.message.packet_type())
            .collect::<Vec<_>>(),
        [packet_type::DEVICE_DISCONNECT]
    );
    assert!(!s.is_plugged());
    s.plug();
    // Packets for the old device are dropped until the host acknowledges.
    let (_, bytes) = host.get_descriptor(0x80, 0x0100, 0, 18);
    assert!(exchange(&mut s, &mut host, &bytes).is_empty());
    let (_, bytes) = host.request(&Message::DeviceDisconnectAck);
    let frames = exchange(&mut s, &mut host, &bytes);
    let types: Vec<u32> = frames.iter().map(|f| f.message.packet_type()).collect();
    assert_eq!(
        types,
        [
            packet_type::EP_INFO,
            packet_type::INTERFACE_INFO,
            packet_type::DEVICE_CONNECT
        ]
    );
    assert!(s.is_plugged());
}

#[test]
fn filter_reject_unplugs() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let _ = s.poll_event();
    let (_, bytes) = host.request(&Message::FilterReject);
    assert!(exchange(&mut s, &mut host, &bytes).is_empty());
    assert_eq!(s.poll_event(), Some(Event::Rejected));
    assert!(!s.is_plugged());
}

#[test]
fn cancel_of_a_completed_packet_is_ignored() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let (_, bytes) = host.request(&Message::CancelDataPacket);
    assert!(exchange(&mut s, &mut host, &bytes).is_empty());
    assert!(s.is_plugged());
}

#[test]
fn protocol_violations_are_errors() {
    // First packet must be a hello.
    let mut s = session();
    let mut host = FakeHost::new(QEMU_CAPS);
    let (_, bytes) = host.request(&Message::Reset);
    assert_eq!(
        s.receive(&bytes),
        Err(SessionError::ExpectedHello {
            packet_type: packet_type::RESET
        })
    );

    // A host never sends device_disconnect.
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    let (_, bytes) = host.request(&Message::DeviceDisconnect);
    assert_eq!(
        s.receive(&bytes),
        Err(SessionError::UnexpectedMessage {
            packet_type: packet_type::DEVICE_DISCONNECT
        })
    );

    // Nor a second hello.
    let (mut s, host, _) = plugged(QEMU_CAPS);
    let hello_64 = {
        let mut out = Vec::new();
        usbredir_device::wire::encode_frame(
            host.negotiated,
            0,
            &Message::Hello(usbredir_device::wire::Hello {
                version: "again".into(),
                caps: QEMU_CAPS,
            }),
            &mut out,
        )
        .unwrap();
        out
    };
    assert!(matches!(
        s.receive(&hello_64),
        Err(SessionError::UnexpectedMessage { .. })
    ));

    // Interrupt packets to an IN endpoint travel only device-to-host.
    let (mut s, _host, _) = plugged(QEMU_CAPS);
    let mut raw = Vec::new();
    raw.extend_from_slice(&103u32.to_le_bytes());
    raw.extend_from_slice(&4u32.to_le_bytes());
    raw.extend_from_slice(&9u64.to_le_bytes());
    raw.extend_from_slice(&[0x81, 0, 0, 0]);
    assert!(matches!(
        s.receive(&raw),
        Err(SessionError::Wire(WireError::WrongDirection {
            endpoint: 0x81,
            ..
        }))
    ));

    // A body larger than the limit is refused before it is buffered.
    let (mut s, _host, _) = plugged(QEMU_CAPS);
    let mut raw = Vec::new();
    raw.extend_from_slice(&100u32.to_le_bytes());
    raw.extend_from_slice(&u32::MAX.to_le_bytes());
    raw.extend_from_slice(&1u64.to_le_bytes());
    assert!(matches!(
        s.receive(&raw),
        Err(SessionError::Wire(WireError::TooLong { .. }))
    ));

    // Control OUT data must match its length field.
    let (mut s, _host, _) = plugged(QEMU_CAPS);
    let mut raw = Vec::new();
    raw.extend_from_slice(&100u32.to_le_bytes());
    raw.extend_from_slice(&12u32.to_le_bytes());
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.extend_from_slice(&[0, 9, 0x21, 0, 0, 2, 0, 0, 8, 0, 1, 2]);
    assert!(matches!(
        s.receive(&raw),
        Err(SessionError::Wire(WireError::DataLengthMismatch {
            header: 8,
            data: 2,
            ..
        }))
    ));
}

#[test]
fn bytes_may_arrive_one_at_a_time() {
    let mut s = session();
    let mut host = FakeHost::new(QEMU_CAPS);
    host.receive(&s.take_outgoing());
    for b in host.hello() {
        s.receive(&[b]).unwrap();
    }
    host.receive(&s.take_outgoing());
    let (id, bytes) = host.get_descriptor(0x80, 0x0100, 0, 18);
    for b in &bytes {
        s.receive(std::slice::from_ref(b)).unwrap();
    }
    let cp = control_answer(&host.receive(&s.take_outgoing()), id);
    assert_eq!(cp.data.len(), 18);
}

#[test]
fn interrupt_receiving_on_a_foreign_endpoint_is_refused() {
    let (mut s, mut host, _) = plugged(QEMU_CAPS);
    configure(&mut s, &mut host);
    let (id, bytes) = host.request(&Message::StartInterruptReceiving { endpoint: 0x82 });
    let frames = exchange(&mut s, &mut host, &bytes);
    assert_eq!(
        frames,
        [Frame {
            id,
            message: Message::InterruptReceivingStatus {
                status: Status::Inval,
                endpoint: 0x82
            }
        }]
    );
    assert!(!s.is_receiving());
    s.send_input_report(&[5; 64]).unwrap();
    assert!(
        !s.has_outgoing(),
        "still queued: the IN endpoint was not started"
    );
}
