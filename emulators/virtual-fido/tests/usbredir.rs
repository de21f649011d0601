//! The token behind the usb-redir device side, driven by a fake QEMU host over a real socket
//! (usbredir-device's wire codec): plug, CTAPHID over interrupt endpoints, unplug and plug
//! through the control protocol. (The guest-side check with a real kernel is the lead's
//! QEMU test.)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use usbredir_device::wire::{
    Caps, Frame, FrameReader, Hello, InterruptPacket, Message, Negotiated, Sender, Status,
    encode_frame,
};
use virtual_fido::ctaphid::{EngineConfig, Packet, fragment};
use virtual_fido::transport::usbredir;
use virtual_fido::{Token, TokenConfig};

struct FakeQemu {
    stream: UnixStream,
    caps: Caps,
    negotiated: Negotiated,
    reader: FrameReader,
    next_id: u64,
}

impl FakeQemu {
    fn connect(path: &std::path::Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut host = Self {
            stream,
            caps: Caps(0xff),
            negotiated: Negotiated::INITIAL,
            reader: FrameReader::new(),
            next_id: 0x1000,
        };
        let mut hello = Vec::new();
        let message = Message::Hello(Hello {
            version: "fake qemu".into(),
            caps: host.caps,
        });
        encode_frame(Negotiated::INITIAL, 0, &message, &mut hello).unwrap();
        host.stream.write_all(&hello).unwrap();
        host
    }

    fn send(&mut self, message: &Message) {
        self.next_id += 1;
        let mut out = Vec::new();
        encode_frame(self.negotiated, self.next_id, message, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self
                .reader
                .next_frame(self.negotiated, Sender::Device)
                .unwrap()
            {
                if let Message::Hello(hello) = &frame.message {
                    self.negotiated = Negotiated::from_hellos(self.caps, hello.caps);
                }
                return frame;
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).expect("frames from the device");
            assert!(n > 0, "device closed the connection");
            self.reader.push(&buf[..n]);
        }
    }

    /// Waits for the device_connect that ends a plug.
    fn until_connected(&mut self) {
        while !matches!(self.frame().message, Message::DeviceConnect(_)) {}
    }

    /// The next IN report on endpoint 0x81 (other frames skipped).
    fn in_report(&mut self) -> [u8; 64] {
        loop {
            if let Message::InterruptPacket(p) = self.frame().message
                && p.endpoint == 0x81
            {
                assert_eq!(p.status, Status::Success);
                return p.data.try_into().expect("64-byte IN report");
            }
        }
    }

    fn out_report(&mut self, report: &[u8; 64]) {
        self.send(&Message::InterruptPacket(InterruptPacket {
            endpoint: 0x01,
            status: Status::Success,
            length: 64,
            data: report.to_vec(),
        }));
    }

    /// One CTAPHID transaction: returns the reply's command and payload.
    fn ctaphid(&mut self, cid: u32, cmd: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        for report in fragment(cid, cmd, payload) {
            self.out_report(&report);
        }
        let Packet::Init {
            cid: rcid,
            cmd,
            bcnt,
            data,
        } = Packet::parse(&self.in_report())
        else {
            panic!("continuation first")
        };
        assert_eq!(rcid, cid);
        let len = usize::from(bcnt);
        let mut out = data[..len.min(data.len())].to_vec();
        while out.len() < len {
            let Packet::Cont { data, .. } = Packet::parse(&self.in_report()) else {
                panic!("init inside a message")
            };
            out.extend_from_slice(&data[..(len - out.len()).min(data.len())]);
        }
        (cmd, out)
    }
}

#[test]
fn ctaphid_over_usbredir_with_plug_and_unplug() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("usbredir.sock");
    let token = Token::in_memory(TokenConfig::default());
    let handle = usbredir::serve(&path, token.clone(), EngineConfig::default()).unwrap();
    let mut qemu = FakeQemu::connect(&path);
    qemu.until_connected();
    qemu.send(&Message::SetConfiguration { configuration: 1 });
    qemu.send(&Message::StartInterruptReceiving { endpoint: 0x81 });

    let (cmd, init) = qemu.ctaphid(0xFFFF_FFFF, 0x06, &[7; 8]);
    assert_eq!(cmd, 0x06);
    assert_eq!(&init[..8], &[7; 8]);
    let cid = u32::from_be_bytes(init[8..12].try_into().unwrap());
    let (cmd, info) = qemu.ctaphid(cid, 0x10, &[0x04]);
    assert_eq!((cmd, info[0]), (0x10, 0x00));
    assert!(info.len() > 64, "getInfo spans several IN reports");
    let (cmd, echo) = qemu.ctaphid(cid, 0x01, b"over usb-redir");
    assert_eq!((cmd, echo.as_slice()), (0x01, &b"over usb-redir"[..]));

    // The control protocol's unplug is a USB disconnect; plug connects again.
    token.set_plugged(false);
    while !matches!(qemu.frame().message, Message::DeviceDisconnect) {}
    qemu.send(&Message::DeviceDisconnectAck);
    token.set_plugged(true);
    qemu.until_connected();
    qemu.send(&Message::SetConfiguration { configuration: 1 });
    qemu.send(&Message::StartInterruptReceiving { endpoint: 0x81 });
    let (cmd, init) = qemu.ctaphid(0xFFFF_FFFF, 0x06, &[9; 8]);
    assert_eq!((cmd, &init[..8]), (0x06, &[9u8; 8][..]));
    handle.shutdown();
}

#[test]
fn the_usb_identity_is_a_fido_hid_device() {
    let id = usbredir::identity();
    assert_eq!(&id.report_descriptor[..3], &[0x06, 0xD0, 0xF1]);
    usbredir_device::Descriptors::build(&id).expect("valid USB descriptors");
}
