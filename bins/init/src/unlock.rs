//! Unlocking a sealed LUKS2 root: the Zymkey unseals the keyslot secret (bounded retry while the
//! module is absent or silent), the volume check is verified against the volume key actually
//! activated, and the mapping appears as `/dev/mapper/keybound-root`.

use std::path::Path;
use std::time::Duration;

use sealed_root::{Error, Unsealed};
use zymkey::{Library, Zymkey};

/// The device-mapper name of the unlocked root.
pub(crate) const MAPPING: &str = "keybound-root";
/// Attempts at reaching the Zymkey before giving up (transient errors only).
const ATTEMPTS: u32 = 20;
/// Pause between attempts.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// Whether the partition starts with a LUKS header.
pub(crate) fn is_luks(partition: &Path) -> Result<bool, String> {
    let mut magic = [0u8; 6];
    let mut file = std::fs::File::open(partition)
        .map_err(|e| format!("opening {}: {e}", partition.display()))?;
    std::io::Read::read_exact(&mut file, &mut magic)
        .map_err(|e| format!("reading {}: {e}", partition.display()))?;
    Ok(&magic == b"LUKS\xba\xbe")
}

/// Unseals, activates and verifies the root; returns the device to mount.
pub(crate) fn unlock(partition: &Path) -> Result<String, String> {
    // libcryptsetup's lock directory; the initramfs is a writable rootfs.
    let _ = std::fs::create_dir_all("/run/cryptsetup");
    // A `keybound rotate` cut short (power cut) is finished first, offline, with the Zymkey
    // alone; with no rotation under way this reads the header and writes nothing.
    if with_zymkey(|zk| sealed_root::finish_rotation(partition, None, zk, None))
        .map_err(|e| reason(&e))?
        .is_some()
    {
        crate::console::say("keybound-init: finished an interrupted key rotation");
    }
    let unsealed = unseal_with_retry(partition).map_err(|e| reason(&e))?;
    // Planted bug secret-on-boot: caught by scenario attacks/boot-partition-holds-no-unlock-secret.
    #[cfg(keybound_mutant = "secret-on-boot")]
    leak_to_boot_partition(partition, &unsealed);
    activate(partition, &unsealed).map_err(|e| reason(&e))?;
    Ok(dm_node(MAPPING).unwrap_or_else(|| format!("/dev/mapper/{MAPPING}")))
}

/// The kernel's `/dev/dm-N` for a mapping (without udev, `/dev/mapper/NAME` is a plain node,
/// and tools resolve the kernel name better).
pub(crate) fn dm_node(name: &str) -> Option<String> {
    std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|e| {
            let dm = e.file_name().to_string_lossy().into_owned();
            let n = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            (dm.starts_with("dm-")
                && n.trim() == name
                && std::path::Path::new(&format!("/dev/{dm}")).exists())
            .then(|| format!("/dev/{dm}"))
        })
}

/// Unseals, retrying only while the Zymkey is absent or silent (its port may still be coming
/// up). Binding and blob failures are final at once.
fn unseal_with_retry(partition: &Path) -> Result<Unsealed, Error> {
    with_zymkey(|zk| sealed_root::unseal(partition, zk))
}

/// Runs `op` with the Zymkey, retrying only while the module is absent or silent.
pub(crate) fn with_zymkey<T>(op: impl Fn(&Zymkey) -> Result<T, Error>) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        let result = Library::load()
            .and_then(|lib| Zymkey::open(&lib))
            .map_err(Error::from)
            .and_then(|zk| op(&zk));
        match result {
            Err(Error::Zymkey(e)) if e.is_transient() && attempt < ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(RETRY_DELAY);
            }
            other => return other,
        }
    }
}

/// Planted bug: a "debug dump" of the unsealed passphrase (hex) on the unencrypted boot
/// partition, where anyone with a card reader finds it.
#[cfg(keybound_mutant = "secret-on-boot")]
fn leak_to_boot_partition(partition: &Path, unsealed: &Unsealed) {
    use nix::mount::{MsFlags, mount, umount};
    let name = partition.to_string_lossy();
    let boot = format!("{}1", name.trim_end_matches(|c: char| c.is_ascii_digit()));
    let _ = std::fs::create_dir_all("/boot");
    if mount(
        Some(boot.as_str()),
        "/boot",
        Some("vfat"),
        MsFlags::empty(),
        None::<&str>,
    )
    .is_ok()
    {
        let hex: String = unsealed
            .passphrase()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = std::fs::write("/boot/keybound-unlock.dbg", hex);
        nix::unistd::sync();
        let _ = umount("/boot");
    }
}

/// Activates with the volume check verified against the very volume key activated, then checks
/// the active mapping's header once more.
#[cfg(not(keybound_mutant = "volume-check-skipped"))]
fn activate(partition: &Path, unsealed: &Unsealed) -> Result<(), Error> {
    sealed_root::activate(partition, MAPPING, unsealed)?;
    unsealed.verify_active(MAPPING)
}

/// Planted bug: activates with the unsealed passphrase and never verifies the volume check, so
/// a swapped partition carrying a copied token boots. Caught by scenario
/// attacks/root-header-swapped-powers-off.
#[cfg(keybound_mutant = "volume-check-skipped")]
fn activate(partition: &Path, unsealed: &Unsealed) -> Result<(), Error> {
    use libcryptsetup_rs::consts::flags::CryptActivate;
    use libcryptsetup_rs::consts::vals::EncryptionFormat;
    let fail = |op: &'static str| {
        move |e: libcryptsetup_rs::LibcryptErr| Error::Cryptsetup {
            op,
            device: partition.into(),
            reason: e.to_string(),
        }
    };
    let mut dev = libcryptsetup_rs::CryptInit::init(partition).map_err(fail("opening"))?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(fail("loading the LUKS2 header"))?;
    dev.activate_handle()
        .activate_by_passphrase(
            Some(MAPPING),
            Some(unsealed.keyslot()),
            unsealed.passphrase(),
            CryptActivate::empty(),
        )
        .map(|_| ())
        .map_err(fail("activating the volume"))
}

/// The one-line reason for the console: names what failed, never a secret.
pub(crate) fn reason(e: &Error) -> String {
    use zymkey::Error as Zk;
    match e {
        Error::Zymkey(Zk::BindingFailed) => "zymkey binding failed".into(),
        Error::Zymkey(Zk::BlobRejected(r)) => format!("sealed blob refused by the zymkey: {r}"),
        Error::Zymkey(Zk::Destroyed) => {
            "zymkey destroyed its keys (perimeter breach with self-destruct)".into()
        }
        Error::Zymkey(Zk::ModuleAbsent) => "no zymkey".into(),
        Error::Zymkey(Zk::NotAnswering) => "zymkey not answering".into(),
        Error::Zymkey(Zk::LibraryNotInstalled { .. }) => "zymkey library missing".into(),
        Error::Zymkey(other) => format!("zymkey: {other}"),
        Error::VolumeCheck { .. } => "volume check failed".into(),
        Error::WrongSecret { .. } => "the unsealed secret does not open the root".into(),
        Error::MissingToken { .. } => "root is not sealed to a zymkey".into(),
        Error::Token { .. } | Error::DuplicateToken { .. } => {
            "root's keybound token is invalid".into()
        }
        Error::Payload(_) => "unsealed payload malformed".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_failure_in_one_line() {
        let cases = [
            (
                Error::Zymkey(zymkey::Error::BindingFailed),
                "zymkey binding failed",
            ),
            (
                Error::VolumeCheck {
                    device: "/dev/vda2".into(),
                    what: "LUKS2 UUID",
                },
                "volume check failed",
            ),
            (
                Error::Zymkey(zymkey::Error::BlobRejected(
                    zymkey::BlobRejection::ForeignModule,
                )),
                "sealed blob refused by the zymkey: locked by another module",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(reason(&e), want);
            assert!(!reason(&e).contains('\n'));
        }
    }

    #[test]
    fn luks_magic_is_recognised() {
        let dir = std::env::temp_dir().join(format!("kb-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let luks = dir.join("luks");
        std::fs::write(&luks, b"LUKS\xba\xbe\0\x02rest").unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, [0u8; 16]).unwrap();
        assert!(is_luks(&luks).unwrap());
        assert!(!is_luks(&plain).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
