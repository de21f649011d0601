//! Finding root: the internal card's partition whose MBR disk signature and number match the
//! PARTUUID. USB and other removable disks are never considered.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cmdline::RootSpec;

/// The kernel name of partition `n` of disk `disk` (`vda` → `vda2`, `mmcblk0` → `mmcblk0p2`).
pub(crate) fn partition_name(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// The MBR disk signature in a disk's first sector (`None` without the 0x55AA boot signature).
pub(crate) fn mbr_signature(sector: &[u8]) -> Option<u32> {
    if sector.len() < 512 || sector[510..512] != [0x55, 0xaa] {
        return None;
    }
    Some(u32::from_le_bytes([
        sector[440],
        sector[441],
        sector[442],
        sector[443],
    ]))
}

/// Whether the disk behind `/sys/block/NAME` is internal: not removable, not on USB.
fn internal(sys: &Path) -> bool {
    let removable = fs::read_to_string(sys.join("removable"))
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    let on_usb = fs::canonicalize(sys)
        .map(|p| p.to_string_lossy().contains("/usb"))
        .unwrap_or(true);
    !removable && !on_usb
}

/// Looks for the root partition once; `None` if it is not there (yet).
pub(crate) fn find_root(spec: &RootSpec) -> Option<PathBuf> {
    let mut disks: Vec<_> = fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok())
        .collect();
    disks.sort_by_key(|e| e.file_name());
    for entry in disks {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("vd")
            || name.starts_with("mmcblk")
            || name.starts_with("sd")
            || name.starts_with("nvme"))
        {
            continue;
        }
        if !internal(&entry.path()) {
            continue;
        }
        let mut sector = [0u8; 512];
        let Ok(mut dev) = fs::File::open(format!("/dev/{name}")) else {
            continue;
        };
        if dev.read_exact(&mut sector).is_err()
            || mbr_signature(&sector) != Some(spec.disk_signature)
        {
            continue;
        }
        let part = PathBuf::from(format!("/dev/{}", partition_name(&name, spec.partition)));
        if part.exists() {
            return Some(part);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_name("vda", 2), "vda2");
        assert_eq!(partition_name("mmcblk0", 2), "mmcblk0p2");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
    }

    #[test]
    fn mbr_signature_needs_the_boot_signature() {
        let mut sector = [0u8; 512];
        sector[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        assert_eq!(mbr_signature(&sector), None);
        sector[510] = 0x55;
        sector[511] = 0xaa;
        assert_eq!(mbr_signature(&sector), Some(0x1234_5678));
        assert_eq!(mbr_signature(&sector[..100]), None);
    }
}
