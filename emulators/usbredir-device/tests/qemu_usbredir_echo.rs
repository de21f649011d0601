//! End to end against real QEMU: an echo HID device served by this crate appears in an arm64
//! guest as /dev/hidraw* through `-device usb-redir`; a busybox script writes a 64-byte report
//! and reads the echo back, the device is unplugged (usbredir device_disconnect) and the node
//! disappears, plugged again and echoes again.
//!
//! Uses the guest image's kernel, modules and busybox (`guest_image::guest_kernel`), or these:
//! - `KEYBOUND_GUEST_KERNEL`: an arm64 kernel `Image` (Debian's `linux-image-*-arm64`
//!   `vmlinuz-*` is one);
//! - `KEYBOUND_GUEST_MODULES`: a directory holding that kernel's modules anywhere below it
//!   (default: `lib/modules` next to the kernel's `boot/` directory, as `dpkg -x` unpacks it);
//!   needs usb-common, usbcore, xhci-hcd, xhci-pci, hid, usbhid, hid-generic as plain `.ko`;
//! - `KEYBOUND_GUEST_BUSYBOX`: a static arm64 busybox (Debian's `busybox-static:arm64`);
//! - `qemu-system-aarch64` on `PATH`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use usbredir_device::{DeviceServer, HidDevice, HidIdentity, InputReports};

const MODULES: [&str; 7] = [
    "usb-common",
    "usbcore",
    "xhci-hcd",
    "xhci-pci",
    "hid",
    "usbhid",
    "hid-generic",
];

const PAYLOAD_1: &str = "keybound-usbredir-echo-first-0123456789abcdefghijklmnopqrstuvwxy";
const PAYLOAD_2: &str = "keybound-usbredir-echo-again-0123456789abcdefghijklmnopqrstuvwxy";

const _: () = assert!(PAYLOAD_1.len() == 64 && PAYLOAD_2.len() == 64);

const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in usb-common usbcore xhci-hcd xhci-pci hid usbhid hid-generic; do
  insmod /lib/modules/$m.ko || echo "KB_INSMOD_FAILED $m"
done
echo KB_READY
wait_hidraw() {
  i=0
  H=
  while [ -z "$H" ]; do
    for n in /dev/hidraw*; do [ -e "$n" ] && H=$n; done
    [ -n "$H" ] && break
    usleep 5000; i=$((i + 1))
    if [ $i -gt 12000 ]; then echo KB_NO_HIDRAW; ls /dev; poweroff -f; fi
  done
}
echo_once() {
  exec 3<"$H"
  printf '\000%s' "$1" > /tmp/req
  dd if=/tmp/req of="$H" bs=65 count=1 2>/dev/null
  timeout 20 dd bs=64 count=1 of=/tmp/resp <&3 2>/dev/null
  exec 3<&-
  [ "$(cat /tmp/resp)" = "$1" ]
}
wait_hidraw
echo "KB_HIDRAW_UP $H"
if echo_once "@P1@"; then echo KB_ECHO_OK; else echo KB_ECHO_BAD; od -c /tmp/resp; fi
while [ -e "$H" ]; do usleep 2000; done
echo "KB_HIDRAW_GONE $H"
wait_hidraw
echo "KB_HIDRAW_BACK $H"
if echo_once "@P2@"; then echo KB_ECHO2_OK; else echo KB_ECHO2_BAD; od -c /tmp/resp; fi
poweroff -f
"#;

/// Echo device counting the output reports it saw.
struct Echo {
    reports: Vec<Vec<u8>>,
}

impl HidDevice for Echo {
    fn identity(&self) -> HidIdentity {
        HidIdentity {
            vendor_id: 0x1209,
            product_id: 0x000e,
            device_release: 0x0100,
            manufacturer: "keybound".into(),
            product: "usbredir echo test".into(),
            serial_number: Some("qemu-test".into()),
            report_descriptor: vec![
                0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xff, 0x00,
                0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75,
                0x08, 0x95, 0x40, 0x91, 0x02, 0xc0,
            ],
        }
    }

    fn on_output_report(&mut self, report: &[u8], input: &InputReports) {
        self.reports.push(report.to_vec());
        input.send(report).expect("server running");
    }
}

/// Appends one newc cpio entry.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    let wanted = format!("{name}.ko");
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            if let Some(found) = find_module(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == wanted.as_str()) {
            return Some(path);
        }
    }
    None
}

fn build_initramfs(busybox: &Path, modules: &Path, out: &Path) {
    const DIR: u32 = 0o040_755;
    const FILE: u32 = 0o100_755;
    let mut cpio = Vec::new();
    let mut ino = 1;
    for dir in ["bin", "proc", "sys", "dev", "tmp", "lib", "lib/modules"] {
        cpio_entry(&mut cpio, ino, dir, DIR, &[]);
        ino += 1;
    }
    let busybox = std::fs::read(busybox).expect("KEYBOUND_GUEST_BUSYBOX readable");
    cpio_entry(&mut cpio, ino, "bin/busybox", FILE, &busybox);
    ino += 1;
    let init = GUEST_INIT
        .replace("@P1@", PAYLOAD_1)
        .replace("@P2@", PAYLOAD_2);
    cpio_entry(&mut cpio, ino, "init", FILE, init.as_bytes());
    ino += 1;
    for name in MODULES {
        let path = find_module(modules, name)
            .unwrap_or_else(|| panic!("module {name}.ko not found under {}", modules.display()));
        let bytes = std::fs::read(&path).unwrap();
        cpio_entry(
            &mut cpio,
            ino,
            &format!("lib/modules/{name}.ko"),
            0o100_644,
            &bytes,
        );
        ino += 1;
    }
    cpio_entry(&mut cpio, ino, "TRAILER!!!", 0, &[]);
    std::fs::write(out, cpio).unwrap();
}

struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
    transcript: Vec<String>,
}

impl Guest {
    fn wait_for(&mut self, marker: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("guest: {line}");
                    let hit = line.contains(marker);
                    let bad = line.contains("_BAD") || line.contains("KB_NO_HIDRAW");
                    self.transcript.push(line);
                    assert!(
                        !bad,
                        "guest failed; transcript:\n{}",
                        self.transcript.join("\n")
                    );
                    if hit {
                        return start.elapsed();
                    }
                }
                Err(_) => panic!(
                    "no {marker} within {timeout:?}; transcript:\n{}",
                    self.transcript.join("\n")
                ),
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn qemu_usbredir_echo() {
    // The kernel, modules and busybox of the guest image unless the environment names others.
    let image_kernel = || {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        guest_image::guest_kernel(&repo).expect("unpacking the guest image's kernel and busybox")
    };
    let (kernel, modules, busybox) = match std::env::var_os("KEYBOUND_GUEST_KERNEL")
        .map(PathBuf::from)
    {
        Some(kernel) => {
            let modules = std::env::var_os("KEYBOUND_GUEST_MODULES")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    kernel
                        .parent()
                        .and_then(Path::parent)
                        .map(|root| root.join("lib/modules"))
                        .expect("kernel path has a parent")
                });
            let busybox = std::env::var_os("KEYBOUND_GUEST_BUSYBOX")
                .map(PathBuf::from)
                .expect("KEYBOUND_GUEST_BUSYBOX must name a static arm64 busybox when KEYBOUND_GUEST_KERNEL is set");
            (kernel, modules, busybox)
        }
        None => {
            let k = image_kernel();
            (k.kernel, k.modules, k.busybox)
        }
    };

    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.cpio");
    build_initramfs(&busybox, &modules, &initrd);

    let sock = dir.path().join("token.sock");
    let server = DeviceServer::listen(
        &sock,
        Echo {
            reports: Vec::new(),
        },
    )
    .unwrap();
    let handle = server.handle();
    let runner = thread::spawn(move || server.run());

    let chardev = format!("socket,id=ur0,path={},reconnect-ms=200", sock.display());
    let mut child = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "512",
            "-smp",
            "1",
            "-accel",
            "tcg",
        ])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0 quiet"])
        .args(["-device", "qemu-xhci,id=xhci", "-chardev", &chardev])
        .args(["-device", "usb-redir,chardev=ur0,id=tok0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-aarch64 on PATH");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim_end().to_owned()).is_err() {
                break;
            }
        }
    });
    let mut guest = Guest {
        child,
        lines,
        transcript: Vec::new(),
    };

    let long = Duration::from_secs(180);
    guest.wait_for("KB_READY", long);
    guest.wait_for("KB_HIDRAW_UP", long);
    guest.wait_for("KB_ECHO_OK", long);
    // A real USB disconnect: usbredir device_disconnect; the guest's node must go away.
    handle.unplug();
    guest.wait_for("KB_HIDRAW_GONE", long);
    handle.plug();
    guest.wait_for("KB_ECHO2_OK", long);

    let deadline = Instant::now() + Duration::from_secs(60);
    while guest.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    handle.shutdown();
    let device = runner.join().unwrap().unwrap();
    assert_eq!(
        device.reports,
        [PAYLOAD_1.as_bytes().to_vec(), PAYLOAD_2.as_bytes().to_vec()],
        "the device saw exactly the two reports the guest wrote"
    );
}
