//! A fake usbredir host (the QEMU side) that speaks the protocol through the wire module.

#![allow(dead_code, unreachable_pub)]

use usbredir_device::HidIdentity;
use usbredir_device::wire::{
    Caps, ControlPacket, Frame, FrameReader, Hello, InterruptPacket, Message, Negotiated, Sender,
    Status, encode_frame,
};

/// QEMU 10 advertises every capability up to bulk_receiving.
pub const QEMU_CAPS: Caps = Caps(0xff);

pub fn identity() -> HidIdentity {
    HidIdentity {
        vendor_id: 0x1209,
        product_id: 0x000e,
        device_release: 0x0123,
        manufacturer: "keybound".into(),
        product: "test hid".into(),
        serial_number: Some("42".into()),
        report_descriptor: vec![
            0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xff, 0x00,
            0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75,
            0x08, 0x95, 0x40, 0x91, 0x02, 0xc0,
        ],
    }
}

/// The host half: encodes requests, decodes what the device sends.
pub struct FakeHost {
    pub caps: Caps,
    pub negotiated: Negotiated,
    reader: FrameReader,
    next_id: u64,
}

impl FakeHost {
    pub fn new(caps: Caps) -> FakeHost {
        FakeHost {
            caps,
            negotiated: Negotiated::INITIAL,
            reader: FrameReader::new(),
            next_id: 0x4000_0000,
        }
    }

    /// The host's hello bytes (always 32-bit ids).
    pub fn hello(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let hello = Message::Hello(Hello {
            version: "qemu usb-redir guest 10.0.2".into(),
            caps: self.caps,
        });
        encode_frame(Negotiated::INITIAL, 0, &hello, &mut out).unwrap();
        out
    }

    /// Encodes `message` with a fresh id; returns (id, bytes).
    pub fn request(&mut self, message: &Message) -> (u64, Vec<u8>) {
        self.next_id += 1;
        let mut out = Vec::new();
        encode_frame(self.negotiated, self.next_id, message, &mut out).unwrap();
        (self.next_id, out)
    }

    /// Decodes every whole frame in `bytes`. The first frame must be the device's hello, after
    /// which the layout is negotiated.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.reader.push(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = self
            .reader
            .next_frame(self.negotiated, Sender::Device)
            .unwrap()
        {
            if let Message::Hello(hello) = &frame.message {
                self.negotiated = Negotiated::from_hellos(self.caps, hello.caps);
            }
            frames.push(frame);
        }
        frames
    }

    pub fn get_descriptor(
        &mut self,
        request_type: u8,
        value: u16,
        index: u16,
        length: u16,
    ) -> (u64, Vec<u8>) {
        self.request(&Message::ControlPacket(ControlPacket {
            endpoint: 0x80,
            request: 6,
            request_type,
            status: Status::Success,
            value,
            index,
            length,
            data: Vec::new(),
        }))
    }

    pub fn interrupt_out(&mut self, data: &[u8]) -> (u64, Vec<u8>) {
        self.request(&Message::InterruptPacket(InterruptPacket {
            endpoint: 0x01,
            status: Status::Success,
            length: data.len() as u16,
            data: data.to_vec(),
        }))
    }
}
