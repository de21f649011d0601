//! A plug-aware front end for USB HID transports (usb-redir, USB/IP, a gadget): the glue that
//! an interrupt-endpoint device implementation wraps. It owns one [`CtapHid`] engine per plug,
//! checks its timers on a small ticker thread, and accepts OUT reports with or without the
//! leading report-id byte a hidraw write carries.
//!
//! Glue for a device crate exposing `on_output_report(&[u8], &InputReports)`,
//! `on_plugged(&InputReports)` and `on_unplugged()` (as `usbredir-device` does):
//! `on_plugged` → [`UsbHidFrontend::plug`] with a [`ReportSink`] that forwards to
//! `InputReports::send`; `on_output_report` → [`UsbHidFrontend::out_report`];
//! `on_unplugged` → [`UsbHidFrontend::unplug`]. Identity: [`VENDOR_ID`], [`PRODUCT_ID`],
//! [`PRODUCT`] and [`super::FIDO_HID_REPORT_DESCRIPTOR`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{HidReportDevice, ReportSink};
use crate::ctaphid::{CtapHid, EngineConfig, REPORT_LEN};
use crate::token::Token;

/// USB vendor id: pid.codes (open-source hardware).
pub const VENDOR_ID: u16 = 0x1209;
/// USB product id: the pid.codes test PID (never in products).
pub const PRODUCT_ID: u16 = 0x0001;
/// Manufacturer string.
pub const MANUFACTURER: &str = "keybound";
/// Product string.
pub const PRODUCT: &str = "keybound virtual-fido (TEST)";

/// How often timers are checked while plugged.
const TICK: Duration = Duration::from_millis(50);

/// Why an OUT report was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutReportError {
    /// Not 64 bytes, nor 65 with a zero report id first.
    #[error("OUT report of {0} bytes (expected 64, or 65 with report id 0)")]
    BadLength(usize),
    /// No host is plugged in.
    #[error("the token is not plugged in")]
    Unplugged,
}

struct Plugged {
    hid: Arc<Mutex<CtapHid>>,
    alive: Arc<AtomicBool>,
}

/// One token as a USB HID device.
pub struct UsbHidFrontend {
    token: Arc<Token>,
    config: EngineConfig,
    plugged: Option<Plugged>,
}

impl UsbHidFrontend {
    /// A front end for `token`, unplugged.
    pub fn new(token: Arc<Token>, config: EngineConfig) -> Self {
        Self {
            token,
            config,
            plugged: None,
        }
    }

    /// A host connected: a fresh CTAPHID engine (no channels) writing IN reports to `sink`.
    pub fn plug(&mut self, sink: Arc<dyn ReportSink>) {
        self.unplug();
        let backend: Arc<dyn crate::ctaphid::engine::Backend> = self.token.clone();
        let hid = Arc::new(Mutex::new(CtapHid::new(backend, sink, self.config.clone())));
        let alive = Arc::new(AtomicBool::new(true));
        let (ticker_hid, ticker_alive) = (Arc::clone(&hid), Arc::clone(&alive));
        let _ = thread::Builder::new()
            .name("usb-hid-tick".into())
            .spawn(move || {
                while ticker_alive.load(Ordering::SeqCst) {
                    thread::sleep(TICK);
                    ticker_hid.lock().unwrap_or_else(|e| e.into_inner()).poll();
                }
            });
        self.plugged = Some(Plugged { hid, alive });
    }

    /// The host went away: a request waiting for the user is cancelled, channels are forgotten.
    pub fn unplug(&mut self) {
        if let Some(p) = self.plugged.take() {
            p.alive.store(false, Ordering::SeqCst);
            p.hid.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
        }
    }

    /// Whether a host is plugged in.
    pub fn is_plugged(&self) -> bool {
        self.plugged.is_some()
    }

    /// One OUT report: 64 bytes, or 65 with a leading report id 0 (as hidraw writes them).
    pub fn out_report(&mut self, report: &[u8]) -> Result<(), OutReportError> {
        let report: &[u8; REPORT_LEN] = match report.len() {
            REPORT_LEN => report
                .try_into()
                .map_err(|_| OutReportError::BadLength(64))?,
            65 if report[0] == 0 => report[1..]
                .try_into()
                .map_err(|_| OutReportError::BadLength(65))?,
            n => return Err(OutReportError::BadLength(n)),
        };
        let plugged = self.plugged.as_ref().ok_or(OutReportError::Unplugged)?;
        plugged
            .hid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_out_report(report);
        Ok(())
    }
}

impl Drop for UsbHidFrontend {
    fn drop(&mut self) {
        self.unplug();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctaphid::{Packet, fragment};
    use crate::token::TokenConfig;
    use crate::transport::ChannelSink;

    #[test]
    fn plugged_front_end_answers_init_with_and_without_report_id() {
        let token = Token::in_memory(TokenConfig::default());
        let mut front = UsbHidFrontend::new(token, EngineConfig::default());
        let init = fragment(0xFFFF_FFFF, 0x06, &[4; 8])[0];
        assert_eq!(front.out_report(&init), Err(OutReportError::Unplugged));
        let (sink, rx) = ChannelSink::new();
        front.plug(Arc::new(sink));
        front.out_report(&init).unwrap();
        let with_id = [&[0u8][..], &init].concat();
        front.out_report(&with_id).unwrap();
        for _ in 0..2 {
            let reply = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert!(matches!(
                Packet::parse(&reply),
                Packet::Init { cmd: 0x06, .. }
            ));
        }
        assert_eq!(
            front.out_report(&[0; 63]),
            Err(OutReportError::BadLength(63))
        );
        front.unplug();
        assert!(!front.is_plugged());
    }
}
