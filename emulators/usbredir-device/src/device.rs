//! What the application implements ([`HidDevice`]) and how it pushes input reports
//! ([`InputReports`]).

use std::sync::mpsc;

use crate::descriptors::{HidIdentity, MAX_PACKET};
use crate::server::LoopMsg;

/// A HID device's behaviour. The server calls these from its own loop, one call at a time.
///
/// The crate owns the USB side (descriptors for one HID interface with interrupt IN and OUT
/// endpoints of 64-byte packets); the application decides its identity and report descriptor
/// and handles reports.
pub trait HidDevice {
    /// USB identity and HID report descriptor; asked once, when the server is created.
    fn identity(&self) -> HidIdentity;

    /// An output report from the host (interrupt OUT, or SET_REPORT on ep0). Answer with
    /// [`InputReports::send`] now or later, from any thread.
    fn on_output_report(&mut self, report: &[u8], input: &InputReports);

    /// The device was plugged into the host (a new connection, or a replug).
    fn on_plugged(&mut self, _input: &InputReports) {}

    /// The device was unplugged (connection closed, unplug requested, or rejected).
    fn on_unplugged(&mut self) {}

    /// The host reset the device; input reports not yet received were dropped.
    fn on_reset(&mut self) {}
}

/// Why an input report was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Longer than the interrupt IN endpoint's max packet size.
    #[error("input report of {0} bytes exceeds the {MAX_PACKET}-byte maximum")]
    TooLong(usize),
    /// The server stopped.
    #[error("the device server stopped")]
    Stopped,
}

/// A cloneable handle that sends input reports to the host (device to host, interrupt IN).
///
/// Reports sent while the host does not poll the endpoint are queued (QEMU asks only while a
/// guest has the hidraw node open); reports sent while no host is connected are dropped.
#[derive(Debug, Clone)]
pub struct InputReports {
    tx: mpsc::Sender<LoopMsg>,
}

impl InputReports {
    pub(crate) fn new(tx: mpsc::Sender<LoopMsg>) -> InputReports {
        InputReports { tx }
    }

    /// Sends one input report (at most 64 bytes).
    pub fn send(&self, report: impl Into<Vec<u8>>) -> Result<(), InputError> {
        let report = report.into();
        if report.len() > usize::from(MAX_PACKET) {
            return Err(InputError::TooLong(report.len()));
        }
        self.tx
            .send(LoopMsg::Input(report))
            .map_err(|_| InputError::Stopped)
    }
}
