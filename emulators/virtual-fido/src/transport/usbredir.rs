//! The token as a USB HID device behind QEMU's `usb-redir` (device side from the
//! `usbredir-device` crate): the guest sees a full-speed FIDO HID device (usage page 0xF1D0) on
//! its xHCI bus and gets `/dev/hidraw*`.
//!
//! This side listens on a unix socket; QEMU's chardev connects to it (`-chardev
//! socket,id=ur0,path=SOCK -device usb-redir,chardev=ur0`, or QMP `chardev-add` with
//! `reconnect-ms` then `device_add`). One host at a time. The control socket's `unplug` sends a
//! USB disconnect (the guest's hidraw node goes away) and `plug` connects again; the `drop`
//! fault unplugs the token mid-response.

use std::path::Path;
use std::sync::Arc;
use std::thread;

use usbredir_device::{
    DeviceServer, HidDevice, HidIdentity, InputReports, ServerError, ServerHandle,
};

use super::ReportSink;
use super::usb_hid::{MANUFACTURER, PRODUCT, PRODUCT_ID, UsbHidFrontend, VENDOR_ID};
use crate::ctaphid::{EngineConfig, REPORT_LEN};
use crate::token::Token;

/// The USB identity of the virtual token.
pub fn identity() -> HidIdentity {
    HidIdentity {
        vendor_id: VENDOR_ID,
        product_id: PRODUCT_ID,
        device_release: 0x0100,
        manufacturer: MANUFACTURER.into(),
        product: PRODUCT.into(),
        serial_number: None,
        report_descriptor: super::FIDO_HID_REPORT_DESCRIPTOR.to_vec(),
    }
}

/// IN reports go to the interrupt IN endpoint.
struct InputSink {
    input: InputReports,
    token: Arc<Token>,
}

impl ReportSink for InputSink {
    fn send_report(&self, report: [u8; REPORT_LEN]) {
        if let Err(err) = self.input.send(report.to_vec()) {
            tracing::debug!(%err, "IN report not sent");
        }
    }

    fn disconnect(&self) {
        // A pulled token: USB disconnect, until the control socket plugs it again.
        self.token.set_plugged(false);
    }
}

/// The [`HidDevice`] the usb-redir server drives.
pub struct UsbRedirToken {
    token: Arc<Token>,
    front: UsbHidFrontend,
    input: Option<InputReports>,
}

impl UsbRedirToken {
    /// A device for `token`.
    pub fn new(token: Arc<Token>, config: EngineConfig) -> Self {
        Self {
            front: UsbHidFrontend::new(Arc::clone(&token), config),
            token,
            input: None,
        }
    }

    fn plug(&mut self, input: &InputReports) {
        self.input = Some(input.clone());
        self.front.plug(Arc::new(InputSink {
            input: input.clone(),
            token: Arc::clone(&self.token),
        }));
    }
}

impl HidDevice for UsbRedirToken {
    fn identity(&self) -> HidIdentity {
        identity()
    }

    fn on_output_report(&mut self, report: &[u8], _input: &InputReports) {
        if let Err(err) = self.front.out_report(report) {
            tracing::warn!(%err, "OUT report ignored");
        }
    }

    fn on_plugged(&mut self, input: &InputReports) {
        self.plug(input);
    }

    fn on_unplugged(&mut self) {
        self.front.unplug();
        self.input = None;
    }

    fn on_reset(&mut self) {
        // A USB bus reset forgets every channel and cancels what was waiting.
        if let Some(input) = self.input.clone() {
            self.plug(&input);
        }
    }
}

/// Listens for QEMU's usb-redir chardev at `path` and serves the token on a background
/// thread. The token's plug state drives USB connect/disconnect.
pub fn serve(
    path: impl AsRef<Path>,
    token: Arc<Token>,
    config: EngineConfig,
) -> Result<ServerHandle, ServerError> {
    let server = DeviceServer::listen(path, UsbRedirToken::new(Arc::clone(&token), config))?;
    let handle = server.handle();
    let follower = handle.clone();
    token.on_plug_change(move |plugged| {
        if plugged {
            follower.plug();
        } else {
            follower.unplug();
        }
    });
    thread::Builder::new()
        .name("usbredir".into())
        .spawn(move || {
            if let Err(err) = server.run() {
                tracing::error!(%err, "usb-redir server stopped");
            }
        })
        .map_err(ServerError::Setup)?;
    Ok(handle)
}
