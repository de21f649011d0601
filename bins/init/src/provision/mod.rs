//! First-boot provisioning: the plan `keybound provision` left on the boot partition, carried
//! out before root is mounted (a mounted root cannot be encrypted in place).
//!
//! In place: `e2fsck`, a room check (abort before touching data), `resize2fs` shrink by the
//! header room, `cryptsetup reencrypt --encrypt --reduce-device-size` with checksum resilience
//! under a fresh volume key and a temporary keyslot, then sealed-root's enrolment (Zymkey slot
//! and vendor recovery slot), the temporary keyslot destroyed, the plan removed. The plan file
//! holds no secret.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use nix::mount::{MsFlags, mount, umount};
use sealed_root::{BoardProfile, RecoveryKdf, VolumeKey};
use zeroize::Zeroizing;

use crate::{console, unlock};

/// The plan's file name on the boot partition.
pub(crate) const PLAN_FILE: &str = "keybound-provision.plan";
/// Where the boot partition is mounted while provisioning.
const BOOT_MOUNT: &str = "/boot";
/// Room taken from the end of the filesystem for the LUKS2 header (twice the 16 MiB header,
/// as cryptsetup recommends for `--reduce-device-size`).
const HEADER_ROOM: u64 = 32 << 20;
/// Scratch for the volume key and temporary passphrase files (the initramfs is RAM).
const SCRATCH: &str = "/run/keybound-provision";

/// What the plan asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The vendor's age recipient for the recovery slot.
    pub(crate) recipient: String,
    /// The data cipher by board.
    pub(crate) profile: BoardProfile,
    /// Format fresh (destroys the data) instead of encrypting in place.
    pub(crate) fresh: bool,
    /// Replace an existing enrolment.
    pub(crate) re_enrol: bool,
}

/// Parses a plan (`key=value` lines, `#` comments; version 1).
pub(crate) fn parse(text: &str) -> Result<Plan, String> {
    let (mut version, mut recipient, mut profile, mut mode, mut re_enrol) =
        (None, None, None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("plan line without '=': {line}"))?;
        let slot = match key.trim() {
            "version" => &mut version,
            "recipient" => &mut recipient,
            "profile" => &mut profile,
            "mode" => &mut mode,
            "re-enrol" => &mut re_enrol,
            other => return Err(format!("unknown plan key {other}")),
        };
        if slot.replace(value.trim().to_string()).is_some() {
            return Err(format!("plan key {} given twice", key.trim()));
        }
    }
    if version.as_deref() != Some("1") {
        return Err("plan version is not 1".into());
    }
    let recipient = recipient.ok_or("plan has no recipient")?;
    age::x25519::Recipient::from_str(&recipient)
        .map_err(|_| "plan recipient is not an age X25519 recipient".to_string())?;
    let profile = match profile.as_deref() {
        Some("pi5") => BoardProfile::AesXts,
        Some("pi4") => BoardProfile::Adiantum,
        _ => return Err("plan profile must be pi4 or pi5".into()),
    };
    let fresh = match mode.as_deref() {
        Some("in-place") => false,
        Some("fresh") => true,
        _ => return Err("plan mode must be in-place or fresh".into()),
    };
    let re_enrol = match re_enrol.as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(_) => return Err("plan re-enrol must be yes or no".into()),
    };
    Ok(Plan {
        recipient,
        profile,
        fresh,
        re_enrol,
    })
}

/// The boot partition next to root (partition 1 of the same disk).
fn boot_partition(root: &Path) -> PathBuf {
    let name = root.to_string_lossy();
    let disk = name.trim_end_matches(|c: char| c.is_ascii_digit());
    PathBuf::from(format!("{disk}1"))
}

/// Carries out a plan if the boot partition holds one; returns at once otherwise.
pub(crate) fn run_if_planned(root: &Path) -> Result<(), String> {
    let boot = boot_partition(root);
    let _ = std::fs::create_dir_all(BOOT_MOUNT);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    if mount(Some(&boot), BOOT_MOUNT, Some("vfat"), flags, None::<&str>).is_err() {
        return Ok(());
    }
    let plan_path = Path::new(BOOT_MOUNT).join(PLAN_FILE);
    let result = match std::fs::read_to_string(&plan_path) {
        Ok(text) => carry_out(root, &text, &plan_path),
        Err(_) => Ok(()),
    };
    nix::unistd::sync();
    let _ = umount(BOOT_MOUNT);
    result
}

fn carry_out(root: &Path, text: &str, plan_path: &Path) -> Result<(), String> {
    let plan = parse(text).map_err(|e| format!("provisioning plan refused: {e}"))?;
    if unlock::is_luks(root)? {
        console::say(if plan.re_enrol {
            "keybound: provisioning refused: re-enrolment of a sealed root is not in this initramfs"
        } else {
            "keybound: provisioning refused: root is already sealed (use --re-enrol)"
        });
        return remove_plan(plan_path);
    }
    if plan.fresh {
        return Err("provisioning: fresh formatting is not in this initramfs".into());
    }
    console::say("keybound-init: provisioning: encrypting root in place");
    in_place(root, &plan)?;
    remove_plan(plan_path)?;
    console::say("keybound-init: provisioning: done");
    Ok(())
}

fn remove_plan(plan_path: &Path) -> Result<(), String> {
    std::fs::remove_file(plan_path).map_err(|e| format!("removing the provisioning plan: {e}"))
}

/// Runs a tool of the initramfs; `ok` says which exit codes are success.
fn tool(program: &str, args: &[&str], ok: &[i32]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("provisioning: running {program}: {e}"))?;
    match out.status.code() {
        Some(c) if ok.contains(&c) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        code => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim();
            Err(format!("provisioning: {program} failed ({code:?}): {last}"))
        }
    }
}

/// The partition's size in bytes (sysfs counts 512-byte sectors).
fn partition_bytes(root: &Path) -> Result<u64, String> {
    let name = root.file_name().unwrap_or_default().to_string_lossy();
    let sectors = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .map_err(|e| format!("provisioning: size of {name}: {e}"))?;
    sectors
        .trim()
        .parse::<u64>()
        .map(|s| s * 512)
        .map_err(|_| format!("provisioning: size of {name} unreadable"))
}

/// `resize2fs -P`: the filesystem's minimum size in bytes (it prints blocks; the block size
/// comes from the superblock).
fn minimum_fs_bytes(root: &Path) -> Result<u64, String> {
    let dev = root.to_string_lossy();
    let out = tool("/sbin/resize2fs", &["-P", &dev], &[0])?;
    let blocks = out
        .lines()
        .find_map(|l| l.split_once("minimum size of the filesystem:"))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .ok_or("provisioning: resize2fs -P gave no minimum size")?;
    let mut sb = [0u8; 1024];
    let mut f = std::fs::File::open(root).map_err(|e| format!("provisioning: {e}"))?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1024))
        .and_then(|_| std::io::Read::read_exact(&mut f, &mut sb))
        .map_err(|e| format!("provisioning: reading the superblock: {e}"))?;
    let log = u32::from_le_bytes([sb[0x18], sb[0x19], sb[0x1a], sb[0x1b]]);
    if log > 6 {
        return Err("provisioning: root is not an ext filesystem".into());
    }
    Ok(blocks * (1024u64 << log))
}

fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("provisioning: scratch file: {e}"))?;
    f.write_all(bytes)
        .map_err(|e| format!("provisioning: scratch file: {e}"))
}

/// Overwrites and removes a scratch secret file.
fn wipe(path: &Path) {
    if let Ok(len) = std::fs::metadata(path).map(|m| m.len()) {
        let _ = std::fs::write(path, vec![0u8; len as usize]);
    }
    let _ = std::fs::remove_file(path);
}

fn in_place(root: &Path, plan: &Plan) -> Result<(), String> {
    let dev = root.to_string_lossy().into_owned();
    // Checked before anything is written: a damaged filesystem or no room aborts here.
    tool("/sbin/e2fsck", &["-f", "-y", &dev], &[0, 1])?;
    let size = partition_bytes(root)?;
    let minimum = minimum_fs_bytes(root)?;
    let target = size.saturating_sub(HEADER_ROOM);
    if minimum > target {
        return Err(format!(
            "provisioning aborted, data untouched: no room (filesystem needs {} MiB, {} MiB left after the header)",
            minimum >> 20,
            target >> 20
        ));
    }
    tool(
        "/sbin/resize2fs",
        &[&dev, &format!("{}K", target / 1024)],
        &[0],
    )?;

    let recipient = age::x25519::Recipient::from_str(&plan.recipient)
        .map_err(|_| "provisioning: bad recipient".to_string())?;
    let volume_key =
        VolumeKey::generate(plan.profile.key_bytes()).map_err(|e| format!("provisioning: {e}"))?;
    let temp = VolumeKey::generate(32).map_err(|e| format!("provisioning: {e}"))?;
    let temp_pass: Zeroizing<String> = Zeroizing::new(
        temp.expose_secret()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    let scratch = Path::new(SCRATCH);
    std::fs::create_dir_all(scratch).map_err(|e| format!("provisioning: {e}"))?;
    let vk_file = scratch.join("vk");
    let pass_file = scratch.join("pass");
    write_secret_file(&vk_file, volume_key.expose_secret())?;
    write_secret_file(&pass_file, temp_pass.as_bytes())?;
    let key_bits = (plan.profile.key_bytes() * 8).to_string();
    let cipher = plan.profile.cipher_spec();
    let result = tool(
        "/sbin/cryptsetup",
        &[
            "reencrypt",
            "--encrypt",
            "--type",
            "luks2",
            "--batch-mode",
            "--cipher",
            &cipher,
            "--key-size",
            &key_bits,
            "--reduce-device-size",
            "32M",
            "--resilience",
            "checksum",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--label",
            "keybound-root",
            "--volume-key-file",
            &vk_file.to_string_lossy(),
            "--key-file",
            &pass_file.to_string_lossy(),
            "--key-slot",
            "0",
            &dev,
        ],
        &[0],
    );
    wipe(&vk_file);
    wipe(&pass_file);
    result?;

    unlock::with_zymkey(|zk| {
        sealed_root::enroll(root, &volume_key, zk, &recipient, RecoveryKdf::Production)
    })
    .map_err(|e| format!("provisioning: enrolment: {}", unlock::reason(&e)))?;
    destroy_keyslot(root, 0)
}

fn destroy_keyslot(root: &Path, keyslot: u32) -> Result<(), String> {
    use libcryptsetup_rs::consts::vals::EncryptionFormat;
    let fail = |e: libcryptsetup_rs::LibcryptErr| format!("provisioning: temporary keyslot: {e}");
    let mut dev = libcryptsetup_rs::CryptInit::init(root).map_err(fail)?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(fail)?;
    dev.keyslot_handle().destroy(keyslot).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn plans_parse_strictly() {
        let plan = parse(&format!(
            "# keybound\nversion=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=in-place\n"
        ))
        .unwrap();
        assert_eq!(plan.profile, BoardProfile::AesXts);
        assert!(!plan.fresh && !plan.re_enrol);
        for bad in [
            format!("recipient={RECIPIENT}\nprofile=pi5\nmode=in-place\n"),
            "version=1\nrecipient=age1nope\nprofile=pi5\nmode=in-place\n".to_string(),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi3\nmode=in-place\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=wipe\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nmode=in-place\n"),
            format!("version=1\nrecipient={RECIPIENT}\nprofile=pi5\nmode=fresh\nshell=yes\n"),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boot_is_partition_one_of_the_same_disk() {
        assert_eq!(
            boot_partition(Path::new("/dev/vda2")),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            boot_partition(Path::new("/dev/mmcblk0p2")),
            Path::new("/dev/mmcblk0p1")
        );
    }
}
