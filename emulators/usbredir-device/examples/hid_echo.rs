//! An echo HID device: every output report comes back as an input report.
//!
//! ```text
//! cargo run -p usbredir-device --example hid_echo -- /tmp/ur/token.sock
//! qemu-system-aarch64 ... -device qemu-xhci,id=xhci \
//!   -chardev socket,id=ur0,path=/tmp/ur/token.sock -device usb-redir,chardev=ur0,id=tok0
//! ```
//!
//! With `--connect`, connects to a QEMU chardev started with `server=on,wait=off` instead.

use usbredir_device::{DeviceServer, HidDevice, HidIdentity, InputReports};

/// FIDO-style report descriptor: vendor page 0xF1D0, 64-byte input and output reports.
const REPORT_DESCRIPTOR: &[u8] = &[
    0x06, 0xd0, 0xf1, // Usage Page (0xF1D0)
    0x09, 0x01, // Usage (1)
    0xa1, 0x01, // Collection (Application)
    0x09, 0x20, //   Usage (input report data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x81, 0x02, //   Input (Data, Var, Abs)
    0x09, 0x21, //   Usage (output report data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x91, 0x02, //   Output (Data, Var, Abs)
    0xc0, // End Collection
];

struct Echo {
    echoed: u64,
}

impl HidDevice for Echo {
    fn identity(&self) -> HidIdentity {
        HidIdentity {
            vendor_id: 0x1209,
            product_id: 0x000e,
            device_release: 0x0100,
            manufacturer: "keybound".into(),
            product: "usbredir echo".into(),
            serial_number: Some("echo-0001".into()),
            report_descriptor: REPORT_DESCRIPTOR.to_vec(),
        }
    }

    fn on_output_report(&mut self, report: &[u8], input: &InputReports) {
        self.echoed += 1;
        if let Err(err) = input.send(report) {
            eprintln!("hid_echo: cannot echo: {err}");
        }
    }

    fn on_plugged(&mut self, _input: &InputReports) {
        eprintln!("hid_echo: plugged");
    }

    fn on_unplugged(&mut self) {
        eprintln!("hid_echo: unplugged after {} reports", self.echoed);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut connect = false;
    let mut path = None;
    for arg in args.by_ref() {
        match arg.as_str() {
            "--connect" => connect = true,
            _ => path = Some(arg),
        }
    }
    let path = path.ok_or("usage: hid_echo [--connect] SOCKET")?;
    let device = Echo { echoed: 0 };
    let server = if connect {
        DeviceServer::connect(&path, device)?
    } else {
        DeviceServer::listen(&path, device)?
    };
    server.run()?;
    Ok(())
}
