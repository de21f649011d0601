//! The QEMU command line of a board, built as data so it can be checked without running QEMU.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Everything that decides a board's QEMU command line.
#[derive(Debug, Clone)]
pub struct MachineArgs {
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The CPU model (`cortex-a72`: has AES instructions, like a Pi 5 but unlike a Pi 4).
    pub cpu: String,
    /// The kernel Image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// The card (qcow2).
    pub card: PathBuf,
    /// The card's serial (what the guest sees as the block device serial).
    pub card_serial: String,
    /// The board's serial (fw_cfg `opt/io.keybound/board-serial`).
    pub board_serial: String,
    /// The console socket QEMU listens on (and waits for).
    pub console_socket: PathBuf,
    /// The QMP socket QEMU listens on.
    pub qmp_socket: PathBuf,
    /// The Zymkey emulator's guest socket QEMU connects to (none: no module on the header).
    pub zymkey_socket: Option<PathBuf>,
    /// Guest TCP ports forwarded to ephemeral ports on 127.0.0.1.
    pub forwarded_ports: Vec<u16>,
    /// The SoC's debug port (JTAG on a Pi: QEMU's gdb stub here) on this socket, if opened.
    pub debug_socket: Option<PathBuf>,
}

fn chardev_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

impl MachineArgs {
    /// The arguments after `qemu-system-aarch64`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<String> = vec![
            "-M".into(),
            "virt".into(),
            "-cpu".into(),
            self.cpu.clone(),
            "-accel".into(),
            "tcg".into(),
            "-smp".into(),
            "1".into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            // The console first: QEMU waits for the harness to connect before the guest starts.
            "-chardev".into(),
            format!(
                "socket,id=con,path={},server=on,wait=on",
                chardev_path(&self.console_socket)
            ),
            "-serial".into(),
            "chardev:con".into(),
            "-chardev".into(),
            format!(
                "socket,id=qmp,path={},server=on,wait=off",
                chardev_path(&self.qmp_socket)
            ),
            "-mon".into(),
            "chardev=qmp,mode=control".into(),
        ];
        if let Some(debug) = &self.debug_socket {
            a.push("-chardev".into());
            a.push(format!(
                "socket,id=jtag,path={},server=on,wait=off",
                chardev_path(debug)
            ));
            a.push("-gdb".into());
            a.push("chardev:jtag".into());
        }
        a.extend([
            "-kernel".into(),
            self.kernel.to_string_lossy().into(),
            "-append".into(),
            self.cmdline.clone(),
            "-drive".into(),
            format!(
                "file={},if=none,id=card,format=qcow2",
                chardev_path(&self.card)
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=card,serial={}", self.card_serial),
            "-fw_cfg".into(),
            format!(
                "name=opt/io.keybound/board-serial,string={}",
                self.board_serial
            ),
            "-device".into(),
            "qemu-xhci,id=xhci".into(),
            "-device".into(),
            "virtio-serial-pci,id=vser".into(),
        ]);
        if let Some(initramfs) = &self.initramfs {
            a.extend(["-initrd".into(), initramfs.to_string_lossy().into()]);
        }
        if let Some(zk) = &self.zymkey_socket {
            a.extend([
                "-chardev".into(),
                format!("socket,id=zk,path={},reconnect-ms=200", chardev_path(zk)),
                "-device".into(),
                "virtserialport,chardev=zk,name=io.keybound.zymkey".into(),
            ]);
        }
        let mut netdev = "user,id=net0,restrict=on".to_string();
        for port in &self.forwarded_ports {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:0-:{port}"));
        }
        a.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ]);
        a.into_iter().map(OsString::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_the_pi_like_machine_and_restricted_network() {
        let args = MachineArgs {
            memory_mib: 512,
            cpu: "cortex-a72".into(),
            kernel: "/k".into(),
            initramfs: Some("/i".into()),
            cmdline: "console=ttyAMA0 init=/bin/sh".into(),
            card: "/cards/a,b.qcow2".into(),
            card_serial: "SD0001".into(),
            board_serial: "B0001".into(),
            console_socket: "/s/con".into(),
            qmp_socket: "/s/qmp".into(),
            zymkey_socket: Some("/s/zk".into()),
            forwarded_ports: vec![22, 2222],
            debug_socket: None,
        };
        let line: Vec<String> = args
            .to_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = line.join(" ");
        for want in [
            "-M virt -cpu cortex-a72 -accel tcg -smp 1 -m 512",
            "-append console=ttyAMA0 init=/bin/sh",
            "file=/cards/a,,b.qcow2,if=none",
            "virtio-blk-pci,drive=card,serial=SD0001",
            "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22,hostfwd=tcp:127.0.0.1:0-:2222",
            "virtserialport,chardev=zk,name=io.keybound.zymkey",
            "qemu-xhci,id=xhci",
            "-initrd /i",
        ] {
            assert!(joined.contains(want), "missing {want:?} in {joined}");
        }
    }
}
