//! Answers to control transfers on ep0 that QEMU forwards (standard requests other than
//! SET_ADDRESS and SET/GET_CONFIGURATION/INTERFACE, which QEMU handles or turns into their own
//! messages, and HID class requests).

use crate::descriptors::{
    DT_CONFIG, DT_DEVICE, DT_HID, DT_REPORT, DT_STRING, Descriptors, EP_IN, EP_OUT,
    INTERFACE_NUMBER,
};

/// bmRequestType direction bit: device to host.
const DIR_IN: u8 = 0x80;
const TYPE_MASK: u8 = 0x60;
const TYPE_STANDARD: u8 = 0x00;
const TYPE_CLASS: u8 = 0x20;
const RECIPIENT_MASK: u8 = 0x1f;
const RECIPIENT_DEVICE: u8 = 0;
const RECIPIENT_INTERFACE: u8 = 1;
const RECIPIENT_ENDPOINT: u8 = 2;

const REQ_GET_STATUS: u8 = 0x00;
const REQ_CLEAR_FEATURE: u8 = 0x01;
const REQ_SET_FEATURE: u8 = 0x03;
const REQ_GET_DESCRIPTOR: u8 = 0x06;

const HID_GET_REPORT: u8 = 0x01;
const HID_GET_IDLE: u8 = 0x02;
const HID_GET_PROTOCOL: u8 = 0x03;
const HID_SET_REPORT: u8 = 0x09;
const HID_SET_IDLE: u8 = 0x0a;
const HID_SET_PROTOCOL: u8 = 0x0b;
const HID_REPORT_TYPE_OUTPUT: u8 = 2;

const FEATURE_ENDPOINT_HALT: u16 = 0;

/// The setup stage of a control transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setup {
    /// bmRequestType.
    pub(crate) request_type: u8,
    /// bRequest.
    pub(crate) request: u8,
    /// wValue.
    pub(crate) value: u16,
    /// wIndex.
    pub(crate) index: u16,
    /// wLength.
    pub(crate) length: u16,
}

/// HID class state that control requests read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HidClassState {
    /// Idle rate from SET_IDLE.
    pub(crate) idle: u8,
    /// Protocol from SET_PROTOCOL (1 = report protocol).
    pub(crate) protocol: u8,
}

impl Default for HidClassState {
    fn default() -> Self {
        HidClassState {
            idle: 0,
            protocol: 1,
        }
    }
}

/// How to answer a control transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Device-to-host data (already cut to wLength).
    Data(Vec<u8>),
    /// Host-to-device request accepted.
    Ack,
    /// SET_REPORT of an output report: accepted, and the application gets the report.
    OutputReport(Vec<u8>),
    /// Request not supported or invalid: STALL.
    Stall,
}

/// Answers one control transfer. `data` is the data stage of host-to-device requests.
pub(crate) fn handle(
    setup: Setup,
    data: &[u8],
    descriptors: &Descriptors,
    hid: &mut HidClassState,
) -> Outcome {
    let outcome = match setup.request_type & TYPE_MASK {
        TYPE_STANDARD => standard(setup, descriptors),
        TYPE_CLASS => class(setup, data, hid),
        _ => Outcome::Stall,
    };
    match outcome {
        Outcome::Data(mut bytes) => {
            bytes.truncate(usize::from(setup.length));
            Outcome::Data(bytes)
        }
        other => other,
    }
}

fn is_our_interface(index: u16) -> bool {
    index == u16::from(INTERFACE_NUMBER)
}

fn is_our_endpoint(index: u16) -> bool {
    index == u16::from(EP_IN) || index == u16::from(EP_OUT) || index == 0 || index == 0x80
}

fn standard(setup: Setup, descriptors: &Descriptors) -> Outcome {
    let recipient = setup.request_type & RECIPIENT_MASK;
    let dir_in = setup.request_type & DIR_IN != 0;
    let [desc_index, desc_type] = setup.value.to_le_bytes();
    match (dir_in, recipient, setup.request) {
        (true, RECIPIENT_DEVICE, REQ_GET_DESCRIPTOR) => match desc_type {
            DT_DEVICE => Outcome::Data(descriptors.device().to_vec()),
            DT_CONFIG if desc_index == 0 => Outcome::Data(descriptors.config().to_vec()),
            DT_STRING => descriptors
                .string(desc_index)
                .map_or(Outcome::Stall, |s| Outcome::Data(s.to_vec())),
            // Device qualifier, BOS, other speed...: a full-speed-only device stalls.
            _ => Outcome::Stall,
        },
        (true, RECIPIENT_INTERFACE, REQ_GET_DESCRIPTOR) if is_our_interface(setup.index) => {
            match desc_type {
                DT_HID => Outcome::Data(descriptors.hid().to_vec()),
                DT_REPORT => Outcome::Data(descriptors.report().to_vec()),
                _ => Outcome::Stall,
            }
        }
        (true, RECIPIENT_DEVICE, REQ_GET_STATUS) => Outcome::Data(vec![0, 0]),
        (true, RECIPIENT_INTERFACE, REQ_GET_STATUS) if is_our_interface(setup.index) => {
            Outcome::Data(vec![0, 0])
        }
        (true, RECIPIENT_ENDPOINT, REQ_GET_STATUS) if is_our_endpoint(setup.index) => {
            Outcome::Data(vec![0, 0])
        }
        (false, RECIPIENT_ENDPOINT, REQ_CLEAR_FEATURE | REQ_SET_FEATURE)
            if setup.value == FEATURE_ENDPOINT_HALT && is_our_endpoint(setup.index) =>
        {
            Outcome::Ack
        }
        _ => Outcome::Stall,
    }
}

fn class(setup: Setup, data: &[u8], hid: &mut HidClassState) -> Outcome {
    if setup.request_type & RECIPIENT_MASK != RECIPIENT_INTERFACE || !is_our_interface(setup.index)
    {
        return Outcome::Stall;
    }
    let dir_in = setup.request_type & DIR_IN != 0;
    let [_, value_high] = setup.value.to_le_bytes();
    match (dir_in, setup.request) {
        (false, HID_SET_IDLE) => {
            hid.idle = value_high;
            Outcome::Ack
        }
        (true, HID_GET_IDLE) => Outcome::Data(vec![hid.idle]),
        (false, HID_SET_PROTOCOL) => {
            hid.protocol = (setup.value & 0xff) as u8;
            Outcome::Ack
        }
        (true, HID_GET_PROTOCOL) => Outcome::Data(vec![hid.protocol]),
        (false, HID_SET_REPORT) if value_high == HID_REPORT_TYPE_OUTPUT => {
            Outcome::OutputReport(data.to_vec())
        }
        // Input and feature reports are only delivered on the interrupt endpoint.
        (true, HID_GET_REPORT) | (false, HID_SET_REPORT) => Outcome::Stall,
        _ => Outcome::Stall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptors::HidIdentity;

    fn descriptors() -> Descriptors {
        Descriptors::build(&HidIdentity {
            vendor_id: 1,
            product_id: 2,
            device_release: 0x100,
            manufacturer: "M".into(),
            product: "P".into(),
            serial_number: None,
            report_descriptor: vec![0xa1, 0x01, 0xc0],
        })
        .unwrap()
    }

    fn setup(request_type: u8, request: u8, value: u16, index: u16, length: u16) -> Setup {
        Setup {
            request_type,
            request,
            value,
            index,
            length,
        }
    }

    #[test]
    fn descriptors_are_cut_to_wlength() {
        let d = descriptors();
        let mut hid = HidClassState::default();
        let out = handle(setup(0x80, 6, 0x0100, 0, 8), &[], &d, &mut hid);
        assert_eq!(out, Outcome::Data(d.device()[..8].to_vec()));
        let out = handle(setup(0x80, 6, 0x0200, 0, 255), &[], &d, &mut hid);
        assert_eq!(out, Outcome::Data(d.config().to_vec()));
        let out = handle(setup(0x81, 6, 0x2200, 0, 255), &[], &d, &mut hid);
        assert_eq!(out, Outcome::Data(vec![0xa1, 0x01, 0xc0]));
    }

    #[test]
    fn unknown_requests_stall() {
        let d = descriptors();
        let mut hid = HidClassState::default();
        // Device qualifier, missing string, foreign interface, vendor request.
        for s in [
            setup(0x80, 6, 0x0600, 0, 10),
            setup(0x80, 6, 0x0309, 0x409, 255),
            setup(0x81, 6, 0x2200, 1, 255),
            setup(0xc0, 1, 0, 0, 4),
            setup(0xa1, HID_GET_REPORT, 0x0100, 0, 64),
        ] {
            assert_eq!(handle(s, &[], &d, &mut hid), Outcome::Stall, "{s:?}");
        }
    }

    #[test]
    fn hid_class_requests() {
        let d = descriptors();
        let mut hid = HidClassState::default();
        assert_eq!(
            handle(setup(0x21, HID_SET_IDLE, 0x0400, 0, 0), &[], &d, &mut hid),
            Outcome::Ack
        );
        assert_eq!(
            handle(setup(0xa1, HID_GET_IDLE, 0, 0, 1), &[], &d, &mut hid),
            Outcome::Data(vec![4])
        );
        assert_eq!(
            handle(
                setup(0x21, HID_SET_REPORT, 0x0200, 0, 3),
                &[1, 2, 3],
                &d,
                &mut hid
            ),
            Outcome::OutputReport(vec![1, 2, 3])
        );
    }
}
