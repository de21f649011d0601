//! `keybound status`: what protects this board's root filesystem, as seen from the running system.

use std::process::ExitCode;

use serde::Serialize;

/// The facts `status` reports.
#[derive(Serialize)]
struct Status {
    /// The machine architecture the binary runs on.
    arch: &'static str,
    /// The device mounted at `/`, from `/proc/self/mounts`.
    root_device: Option<String>,
    /// The root filesystem type.
    root_fstype: Option<String>,
    /// Whether root sits on a device-mapper crypt target.
    root_encrypted: bool,
    /// The protection level in words.
    protection: &'static str,
}

fn root_mount(mounts: &str) -> Option<(String, String)> {
    mounts.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let (dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (dir == "/" && fstype != "rootfs").then(|| (dev.to_string(), fstype.to_string()))
    })
}

fn is_dm_crypt(device: &str) -> bool {
    let Some(name) = std::fs::canonicalize(device)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    else {
        return false;
    };
    std::fs::read_to_string(format!("/sys/block/{name}/dm/uuid"))
        .map(|uuid| uuid.starts_with("CRYPT-"))
        .unwrap_or(false)
}

/// Prints the status; exit code 0 when it could be read.
pub(crate) fn run(json: bool) -> ExitCode {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = root_mount(&mounts);
    let root_encrypted = root.as_ref().is_some_and(|(dev, _)| is_dm_crypt(dev));
    let status = Status {
        arch: std::env::consts::ARCH,
        root_device: root.as_ref().map(|r| r.0.clone()),
        root_fstype: root.map(|r| r.1),
        root_encrypted,
        protection: if root_encrypted {
            "encrypted root"
        } else {
            "none: root is not encrypted"
        },
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
    } else {
        println!("arch:        {}", status.arch);
        println!(
            "root:        {} ({})",
            status.root_device.as_deref().unwrap_or("?"),
            status.root_fstype.as_deref().unwrap_or("?")
        );
        println!("protection:  {}", status.protection);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_mount_takes_the_last_real_root_entry() {
        let mounts = "rootfs / rootfs rw 0 0\n/dev/vda2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(
            root_mount(mounts),
            Some(("/dev/vda2".into(), "ext4".into()))
        );
        assert_eq!(root_mount("proc /proc proc rw 0 0\n"), None);
    }
}
