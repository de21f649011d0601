//! `keybound status`: what protects this board's root filesystem — the running root's mapping,
//! the LUKS2 header behind it (keyslots, tokens, cipher), the binding, signed boot, and the
//! protection level in words. Public facts only: no salts, digests, blobs or key bytes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sealed_root::{SlotRole, VolumeSummary};
use serde_json::{Value, json};

/// Where the Raspberry Pi bootloader reports signed boot to Linux (a big-endian u32 in the
/// device tree; bit 0 set when the bootloader verified `boot.img` against `boot.sig`).
const SIGNED_BOOT_DT: &str = "/proc/device-tree/chosen/bootloader/signed";

/// The running root filesystem.
struct RootMount {
    /// The device mounted at `/` (e.g. `/dev/dm-0`).
    device: String,
    /// Its filesystem type.
    fstype: String,
    /// When root is a dm-crypt mapping: the device under it (e.g. `/dev/mmcblk0p2`).
    backing: Option<PathBuf>,
}

/// Signed boot as seen from Linux.
struct SignedBoot {
    enabled: bool,
    how: String,
}

fn root_mount(mounts: &str) -> Option<(String, String)> {
    mounts.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let (dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (dir == "/" && fstype != "rootfs").then(|| (dev.to_string(), fstype.to_string()))
    })
}

/// The device under a dm-crypt mapping (`/sys/block/dm-N/slaves/*`), or `None` when `device`
/// is not a crypt mapping.
fn crypt_backing(device: &str) -> Option<PathBuf> {
    let name = std::fs::canonicalize(device)
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let uuid = std::fs::read_to_string(format!("/sys/block/{name}/dm/uuid")).ok()?;
    if !uuid.starts_with("CRYPT-") {
        return None;
    }
    let slave = std::fs::read_dir(format!("/sys/block/{name}/slaves"))
        .ok()?
        .filter_map(|e| e.ok())
        .next()?;
    Some(Path::new("/dev").join(slave.file_name()))
}

fn running_root() -> Option<RootMount> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let (device, fstype) = root_mount(&mounts)?;
    let backing = crypt_backing(&device);
    Some(RootMount {
        device,
        fstype,
        backing,
    })
}

fn signed_boot() -> SignedBoot {
    match std::fs::read(SIGNED_BOOT_DT) {
        Ok(bytes) if bytes.len() >= 4 => {
            let v = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            SignedBoot {
                enabled: v & 1 == 1,
                how: format!("{SIGNED_BOOT_DT} = {v:#x}"),
            }
        }
        Ok(_) => SignedBoot {
            enabled: false,
            how: format!("{SIGNED_BOOT_DT} is malformed"),
        },
        Err(_) => SignedBoot {
            enabled: false,
            how: format!("{SIGNED_BOOT_DT} absent (bootloader did not verify boot.img)"),
        },
    }
}

/// The binding mode of a volume: which keyslots can open it.
fn binding(v: &VolumeSummary) -> &'static str {
    match (v.zymkey_token, v.recovery_token) {
        (true, true) => "zymkey+recovery",
        (true, false) => "zymkey (no recovery slot)",
        (false, true) => "recovery only (not bound to a Zymkey)",
        (false, false) => "none (no keybound tokens)",
    }
}

/// The protection level: a short id and the sentence for people.
fn protection(
    encrypted: bool,
    volume: Option<&VolumeSummary>,
    signed: &SignedBoot,
) -> (&'static str, String) {
    if !encrypted {
        return ("none", "none: root is not encrypted".into());
    }
    let Some(v) = volume else {
        return (
            "unknown",
            "encrypted root, but its LUKS2 header could not be read (run as root)".into(),
        );
    };
    let others: Vec<String> = v
        .keyslots
        .iter()
        .filter(|k| k.role == SlotRole::Other)
        .map(|k| k.keyslot.to_string())
        .collect();
    if !v.zymkey_token {
        return (
            "encrypted-unbound",
            "encrypted root not bound to a Zymkey: whoever knows a passphrase opens it".into(),
        );
    }
    if !others.is_empty() {
        return (
            "weakened",
            format!(
                "encrypted root, weakened: keyslot {} is not keybound's; its passphrase opens the \
                 card anywhere",
                others.join(", ")
            ),
        );
    }
    if signed.enabled {
        (
            "card-theft-and-boot-edits",
            "encrypted root bound to this Zymkey, against card theft and boot-partition edits: \
             a pulled card is useless, and the bootloader runs only the vendor-signed boot.img"
                .into(),
        )
    } else {
        (
            "card-theft-only",
            "encrypted root bound to this Zymkey, against card theft only: a pulled card is \
             useless off this board, but without signed boot whoever can edit the boot \
             partition changes what runs before root is unlocked"
                .into(),
        )
    }
}

fn volume_json(device: &Path, v: &VolumeSummary) -> Value {
    let mut j = v.to_json();
    j["device"] = Value::String(device.display().to_string());
    j
}

/// The whole report as JSON (also the source of the text form).
fn report(root: Option<&RootMount>, device: Option<&Path>) -> Result<Value, String> {
    let header = device.or_else(|| root.and_then(|r| r.backing.as_deref()));
    let volume = match header {
        Some(dev) => Some(sealed_root::summarize(dev).map_err(|e| e.to_string())?),
        None => None,
    };
    // With --device the header is what is asked about, whatever the running root is.
    let encrypted = device.is_some() || root.is_some_and(|r| r.backing.is_some());
    let signed = signed_boot();
    let (level, text) = protection(encrypted, volume.as_ref(), &signed);
    Ok(json!({
        "root": root.map(|r| json!({
            "device": r.device,
            "fstype": r.fstype,
            "encrypted": r.backing.is_some(),
            "backing_device": r.backing.as_ref().map(|b| b.display().to_string()),
        })),
        "volume": match (header, &volume) {
            (Some(dev), Some(v)) => volume_json(dev, v),
            _ => Value::Null,
        },
        "binding": volume.as_ref().map(binding),
        "signed_boot": { "enabled": signed.enabled, "detected_by": signed.how },
        "protection": { "level": level, "text": text },
    }))
}

fn print_text(r: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    if let Some(root) = r["root"].as_object() {
        println!(
            "root:         {} ({}){}",
            s(&root["device"]),
            s(&root["fstype"]),
            root["backing_device"]
                .as_str()
                .map(|b| format!(", dm-crypt on {b}"))
                .unwrap_or_default()
        );
    }
    if let Some(v) = r["volume"].as_object() {
        println!(
            "volume:       {} (LUKS2 {})",
            s(&v["device"]),
            s(&v["uuid"])
        );
        println!(
            "cipher:       {}, {}-bit volume key",
            s(&v["cipher"]),
            v["volume_key_bits"]
        );
        for k in v["keyslots"].as_array().into_iter().flatten() {
            let kdf = if k["kdf"] == "pbkdf2" {
                format!("pbkdf2, {} iterations", k["kdf_time"])
            } else {
                format!(
                    "{}, t={} m={} KiB",
                    s(&k["kdf"]),
                    k["kdf_time"],
                    k["kdf_memory_kib"]
                )
            };
            println!("keyslot {}:    {} ({kdf})", k["keyslot"], s(&k["role"]));
        }
        let t = &v["tokens"];
        let yes = |b: &Value| if b == true { "present" } else { "absent" };
        println!(
            "tokens:       keybound-zymkey {}, keybound-recovery {}",
            yes(&t["keybound-zymkey"]),
            yes(&t["keybound-recovery"])
        );
        println!("binding:      {}", s(&r["binding"]));
    }
    println!(
        "signed boot:  {} ({})",
        if r["signed_boot"]["enabled"] == true {
            "yes"
        } else {
            "no"
        },
        s(&r["signed_boot"]["detected_by"])
    );
    println!("protection:   {}", s(&r["protection"]["text"]));
}

/// Prints the status of the running root, or of the LUKS2 header at `device`; exit code 0 when
/// it could be read.
pub(crate) fn run(json: bool, device: Option<&Path>) -> ExitCode {
    let root = if device.is_some() {
        None
    } else {
        running_root()
    };
    match report(root.as_ref(), device) {
        Ok(r) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).expect("status serialises")
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            print_text(&r);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keybound status: {e}");
            ExitCode::FAILURE
        }
    }
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

    fn summary(zymkey: bool, other_slot: bool) -> VolumeSummary {
        let slot = |keyslot, role| sealed_root::KeyslotSummary {
            keyslot,
            role,
            kdf: "pbkdf2".into(),
            kdf_time: 1000,
            kdf_memory_kib: 0,
        };
        let mut keyslots = vec![slot(0, SlotRole::Sealed), slot(1, SlotRole::Recovery)];
        if other_slot {
            keyslots.push(slot(2, SlotRole::Other));
        }
        VolumeSummary {
            uuid: "u".into(),
            cipher: "aes-xts-plain64".into(),
            volume_key_bits: 512,
            keyslots,
            zymkey_token: zymkey,
            recovery_token: true,
        }
    }

    #[test]
    fn protection_levels() {
        let off = SignedBoot {
            enabled: false,
            how: String::new(),
        };
        let on = SignedBoot {
            enabled: true,
            how: String::new(),
        };
        assert_eq!(protection(false, None, &off).0, "none");
        assert_eq!(protection(true, None, &off).0, "unknown");
        let v = summary(true, false);
        assert_eq!(protection(true, Some(&v), &off).0, "card-theft-only");
        assert_eq!(
            protection(true, Some(&v), &on).0,
            "card-theft-and-boot-edits"
        );
        let (level, text) = protection(true, Some(&summary(true, true)), &on);
        assert_eq!(level, "weakened");
        assert!(text.contains("keyslot 2"), "{text}");
        assert_eq!(
            protection(true, Some(&summary(false, false)), &on).0,
            "encrypted-unbound"
        );
    }
}
