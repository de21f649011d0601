//! Transports: how 64-byte HID reports reach a [`crate::ctaphid::CtapHid`] engine.
//!
//! The report-level boundary is [`HidReportDevice`] (OUT reports in) plus [`ReportSink`] (IN
//! reports out). [`raw_socket`] carries reports over a unix socket for host tests; the usb-redir
//! device side (crate `usbredir-device`) glues its interrupt endpoints to the same two traits,
//! using [`FIDO_HID_REPORT_DESCRIPTOR`] for the interface's HID report descriptor.

pub mod raw_socket;
pub mod usb_hid;
pub mod usbredir;

use crate::ctaphid::REPORT_LEN;

/// A HID device that receives 64-byte OUT reports (interrupt OUT endpoint, or a hidraw write
/// without its report-id byte).
pub trait HidReportDevice: Send {
    /// Handles one OUT report. IN reports it causes go to the device's [`ReportSink`].
    fn on_out_report(&mut self, report: &[u8; REPORT_LEN]);
    /// Lets the device check its timers; call every few tens of milliseconds while idle.
    fn poll(&mut self);
}

/// Where a device sends its 64-byte IN reports (interrupt IN endpoint). Thread-safe: keepalives
/// are sent from the worker while the transport delivers OUT reports.
pub trait ReportSink: Send + Sync {
    /// Queues one IN report for the host.
    fn send_report(&self, report: [u8; REPORT_LEN]);
    /// Drops the connection to the host (the `drop` fault: a token pulled mid-transaction).
    fn disconnect(&self) {}
}

/// The HID report descriptor of a FIDO authenticator: usage page 0xF1D0 (FIDO Alliance), usage
/// 0x01 (CTAPHID), one 64-byte input report (usage 0x20) and one 64-byte output report (usage
/// 0x21), no report ids.
pub const FIDO_HID_REPORT_DESCRIPTOR: [u8; 34] = [
    0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance, 0xF1D0)
    0x09, 0x01, // Usage (CTAPHID)
    0xA1, 0x01, // Collection (Application)
    0x09, 0x20, //   Usage (Input Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8 bits)
    0x95, 0x40, //   Report Count (64)
    0x81, 0x02, //   Input (Data, Variable, Absolute)
    0x09, 0x21, //   Usage (Output Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8 bits)
    0x95, 0x40, //   Report Count (64)
    0x91, 0x02, //   Output (Data, Variable, Absolute)
    0xC0, // End Collection
];

/// A sink collecting reports in memory: for in-process tests and embedding.
#[derive(Debug, Default)]
pub struct ChannelSink {
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<[u8; REPORT_LEN]>>>,
}

impl ChannelSink {
    /// A sink and the receiver of its reports. After [`ReportSink::disconnect`] the receiver
    /// sees the channel closed.
    pub fn new() -> (Self, std::sync::mpsc::Receiver<[u8; REPORT_LEN]>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (
            Self {
                tx: std::sync::Mutex::new(Some(tx)),
            },
            rx,
        )
    }
}

impl ReportSink for ChannelSink {
    fn send_report(&self, report: [u8; REPORT_LEN]) {
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(report);
        }
    }
    fn disconnect(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
