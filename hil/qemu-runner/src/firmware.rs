//! The Pi boot firmware, played by the harness: `config.txt` and `cmdline.txt` from the card's
//! boot partition decide what boots ([`UnsignedFirmware`]), or, with secure boot on
//! ([`SignedFirmware`]), the same files read from inside a verified `boot.img`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use card::{Card, CardError};
use keybound_vendor::boot::{
    BootError, BootFiles, BootKey, BootPublicKey, BootSig, MAX_SIG_FILE, build_boot_img,
};

/// What the firmware decided to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// The kernel Image, copied out of the card.
    pub kernel: PathBuf,
    /// The initramfs, copied out of the card (none if `config.txt` names none).
    pub initramfs: Option<PathBuf>,
    /// The kernel command line (first line of the cmdline file).
    pub cmdline: String,
    /// Which boot partition files were used, for the transcript.
    pub files: Vec<String>,
    /// `config.txt` says `enable_jtag_gpio=1`: the firmware opens the SoC's JTAG debug port on
    /// the GPIO header (played by QEMU's gdb stub).
    pub debug_port: bool,
}

/// Why the firmware refused or failed to boot.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The card could not be read.
    #[error(transparent)]
    Card(#[from] card::CardError),
    /// A file could not be written to the board's directory.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The boot image was rejected (signed boot).
    #[error("boot refused: {0}")]
    Refused(String),
}

/// Decides what a board boots from its card: the Pi's firmware, with or without signed boot.
pub trait BootVerifier: Send + Sync {
    /// Reads the card's boot partition and returns what to boot, writing files into `dir`.
    fn plan(&self, card: &Card, dir: &Path) -> Result<BootPlan, FirmwareError>;
}

/// The firmware without signed boot: whatever the boot partition says boots.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnsignedFirmware;

/// The settings of `config.txt` the firmware honours here.
#[derive(Debug, Default, PartialEq, Eq)]
struct Config {
    kernel: Option<String>,
    initramfs: Option<String>,
    cmdline: Option<String>,
    jtag: bool,
}

/// Parses `config.txt`: `key=value` lines, `initramfs NAME [followkernel]`, `#` comments. Section
/// filters (`[pi4]`, `[all]`…) apply as on a Pi 4: `[pi4]`, `[all]` and `[none]`-free sections.
fn parse_config(text: &str) -> Config {
    let mut config = Config::default();
    let mut active = true;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            active = matches!(section, "all" | "pi4");
            continue;
        }
        if !active {
            continue;
        }
        if let Some(rest) = line.strip_prefix("initramfs ") {
            config.initramfs = rest.split_whitespace().next().map(String::from);
        } else if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "kernel" => config.kernel = Some(value.trim().into()),
                "cmdline" => config.cmdline = Some(value.trim().into()),
                "enable_jtag_gpio" => config.jtag = value.trim() == "1",
                _ => {}
            }
        }
    }
    config
}

/// Plans a boot from a set of boot files (`read` returns one by name): `config.txt` (optional),
/// the kernel and cmdline it names (defaults `kernel8.img`, `cmdline.txt`), its initramfs.
fn plan_from(
    mut read: impl FnMut(&str) -> Result<Vec<u8>, CardError>,
    dir: &Path,
) -> Result<BootPlan, FirmwareError> {
    let config = match read("config.txt") {
        Ok(bytes) => parse_config(&String::from_utf8_lossy(&bytes)),
        Err(CardError::NoSuchBootFile(_)) => Config::default(),
        Err(e) => return Err(e.into()),
    };
    let kernel_name = config.kernel.unwrap_or_else(|| "kernel8.img".into());
    let cmdline_name = config.cmdline.unwrap_or_else(|| "cmdline.txt".into());
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, FirmwareError> {
        let path = dir.join(name.replace('/', "_"));
        std::fs::write(&path, bytes).map_err(|e| FirmwareError::Io(path.clone(), e))?;
        Ok(path)
    };
    let kernel = write("kernel", &read(&kernel_name)?)?;
    let initramfs = match &config.initramfs {
        Some(name) => Some(write("initramfs", &read(name)?)?),
        None => None,
    };
    let cmdline_bytes = read(&cmdline_name)?;
    let cmdline = String::from_utf8_lossy(&cmdline_bytes)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut files = vec!["config.txt".to_string(), kernel_name, cmdline_name];
    files.extend(config.initramfs);
    Ok(BootPlan {
        kernel,
        initramfs,
        cmdline,
        files,
        debug_port: config.jtag,
    })
}

impl BootVerifier for UnsignedFirmware {
    fn plan(&self, card: &Card, dir: &Path) -> Result<BootPlan, FirmwareError> {
        plan_from(|name| card.read_boot_file(name), dir)
    }
}

/// The firmware with Raspberry Pi secure boot on (Pi 4/CM4/Pi 5): the boot ROM reads only
/// `boot.img` and `boot.sig` from the boot partition, boots only if the signature verifies
/// against the board's key (RSA-2048, PKCS#1 v1.5 over SHA-256, `rpi-eeprom-digest` format),
/// and then takes config.txt, cmdline, kernel and initramfs from inside `boot.img` only.
#[derive(Debug, Clone)]
pub struct SignedFirmware {
    /// The key the board's OTP was programmed with.
    pub public_key: BootPublicKey,
}

impl SignedFirmware {
    /// Secure boot with `public_key` burnt into the board.
    pub fn new(public_key: BootPublicKey) -> Self {
        Self { public_key }
    }

    /// Reads one of the two files the ROM looks at; absent is a refusal.
    fn read(card: &Card, name: &str) -> Result<Vec<u8>, FirmwareError> {
        match card.read_boot_file(name) {
            Ok(bytes) => Ok(bytes),
            Err(CardError::NoSuchBootFile(_)) => Err(FirmwareError::Refused(format!(
                "secure boot: no {name} on the boot partition"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

impl BootVerifier for SignedFirmware {
    fn plan(&self, card: &Card, dir: &Path) -> Result<BootPlan, FirmwareError> {
        let mut image = Self::read(card, "boot.img")?;
        let sig_bytes = Self::read(card, "boot.sig")?;
        if sig_bytes.len() > MAX_SIG_FILE {
            return Err(FirmwareError::Refused(
                "secure boot: boot.sig is too large".into(),
            ));
        }
        let sig = BootSig::parse(&sig_bytes)
            .map_err(|e| FirmwareError::Refused(format!("secure boot: {e}")))?;
        sig.verify(&self.public_key, &image)
            .map_err(|e| FirmwareError::Refused(format!("secure boot: {e}")))?;
        // Verified: from here on only the image's contents count.
        let mut plan = plan_from(
            |name| {
                card::boot_fs::read(Cursor::new(image.as_mut_slice()), name).map_err(|e| match e {
                    CardError::NoSuchBootFile(n) => {
                        CardError::NoSuchBootFile(format!("boot.img:{n}"))
                    }
                    other => other,
                })
            },
            dir,
        )
        .map_err(|e| match e {
            FirmwareError::Card(CardError::NoSuchBootFile(name)) => {
                FirmwareError::Refused(format!("secure boot: the signed image has no {name}"))
            }
            other => other,
        })?;
        plan.files = ["boot.img".to_string(), "boot.sig".to_string()]
            .into_iter()
            .chain(plan.files.iter().map(|f| format!("boot.img:{f}")))
            .collect();
        Ok(plan)
    }
}

/// Why a card's boot files could not be signed onto it.
#[derive(Debug, thiserror::Error)]
pub enum SignCardError {
    /// The card could not be read or written.
    #[error(transparent)]
    Card(#[from] CardError),
    /// The boot image could not be built or signed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A temporary file could not be made.
    #[error("temporary boot partition: {0}")]
    Io(std::io::Error),
}

/// The vendor's desk, for a test card: builds `boot.img` from the card's boot files (as
/// `keybound-vendor sign` does from a boot directory), signs it with `key` stamped `ts`, and
/// writes `boot.img` and `boot.sig` onto the card's boot partition beside the originals.
pub fn sign_card(card: &Card, key: &BootKey, ts: u64) -> Result<(), SignCardError> {
    let tmp = tempfile::NamedTempFile::new().map_err(SignCardError::Io)?;
    let layout = card.export_boot_partition(tmp.path())?;
    let mut part = tmp.reopen().map_err(SignCardError::Io)?;
    let available = card::boot_fs::list(&mut part)?;
    let files = BootFiles::select(&available, |name| card::boot_fs::read(&mut part, name))?;
    let image = build_boot_img(&files)?;
    let sig = BootSig::sign(key, &image, ts)?;
    card::boot_fs::write(&mut part, "boot.img", &image)?;
    card::boot_fs::write(&mut part, "boot.sig", sig.to_text().as_bytes())?;
    drop(part);
    card.write_range(layout.boot, tmp.path())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybound_vendor::boot::{BootFiles, BootKey, build_boot_img};
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::OnceLock;

    fn vendor_key() -> &'static BootKey {
        static KEY: OnceLock<BootKey> = OnceLock::new();
        KEY.get_or_init(|| BootKey::generate().unwrap())
    }

    const CONFIG: &[u8] = b"kernel=kernel8.img\ninitramfs initramfs8 followkernel\n";

    /// A card (qcow2 overlay over a sparse raw image) whose 96 MiB boot partition holds a Pi's
    /// boot files and, when `signed`, a boot.img + boot.sig signed with [`vendor_key`].
    fn card(dir: &Path, signed: bool) -> Card {
        let layout = card::CardLayout::plan(0x0b00_7123, 96, 1 << 20);
        let boot_part = dir.join("boot.part");
        let files: [(&str, &[u8]); 4] = [
            ("config.txt", CONFIG),
            ("cmdline.txt", b"console=ttyAMA0 signed\n"),
            ("kernel8.img", b"KERNEL"),
            ("initramfs8", b"INITRAMFS"),
        ];
        {
            let mut part = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&boot_part)
                .unwrap();
            part.set_len(layout.boot.size).unwrap();
            let mut all: Vec<(&str, &[u8])> = files.to_vec();
            let (img, sig);
            if signed {
                let available: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
                let picked = BootFiles::select(&available, |name| {
                    Ok::<_, keybound_vendor::boot::BootError>(
                        files.iter().find(|(n, _)| *n == name).unwrap().1.to_vec(),
                    )
                })
                .unwrap();
                img = build_boot_img(&picked).unwrap();
                sig = BootSig::sign(vendor_key(), &img, 1_764_000_000)
                    .unwrap()
                    .to_text();
                all.push(("boot.img", &img));
                all.push(("boot.sig", sig.as_bytes()));
            }
            card::boot_fs::format(&mut part, &all).unwrap();
        }
        let raw = dir.join("base.img");
        let mut file = std::fs::File::create(&raw).unwrap();
        file.set_len(layout.card_size()).unwrap();
        layout.write_mbr(&mut file).unwrap();
        file.seek(SeekFrom::Start(layout.boot.offset)).unwrap();
        file.write_all(&std::fs::read(&boot_part).unwrap()).unwrap();
        drop(file);
        Card::overlay(&raw, "raw", dir.join("card.qcow2")).unwrap()
    }

    fn firmware() -> SignedFirmware {
        SignedFirmware::new(vendor_key().public_key())
    }

    fn refusal(result: Result<BootPlan, FirmwareError>) -> String {
        match result {
            Err(FirmwareError::Refused(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn signed_firmware_boots_only_what_is_inside_a_verified_boot_img() {
        let tmp = tempfile::tempdir().unwrap();
        let card = card(tmp.path(), true);
        // Edits beside boot.img: an attacker's cmdline.txt and kernel.
        card.write_boot_file("cmdline.txt", b"console=ttyAMA0 init=/bin/sh\n")
            .unwrap();
        card.write_boot_file("kernel8.img", b"EVIL").unwrap();
        let plan = firmware().plan(&card, tmp.path()).unwrap();
        assert_eq!(plan.cmdline, "console=ttyAMA0 signed");
        assert_eq!(std::fs::read(&plan.kernel).unwrap(), b"KERNEL");
        assert_eq!(
            std::fs::read(plan.initramfs.as_ref().unwrap()).unwrap(),
            b"INITRAMFS"
        );
        assert_eq!(plan.files[..2], ["boot.img", "boot.sig"]);
        assert!(plan.files.contains(&"boot.img:cmdline.txt".to_string()));
        // The unsigned firmware honours the edit (the risk row).
        let unsigned = UnsignedFirmware.plan(&card, tmp.path()).unwrap();
        assert_eq!(unsigned.cmdline, "console=ttyAMA0 init=/bin/sh");
    }

    #[test]
    fn signed_firmware_refuses_missing_changed_or_foreign_images() {
        let tmp = tempfile::tempdir().unwrap();
        let unsigned_card = card(&subdir(tmp.path(), "a"), false);
        let reason = refusal(firmware().plan(&unsigned_card, tmp.path()));
        assert_eq!(reason, "secure boot: no boot.img on the boot partition");

        let card = card(&subdir(tmp.path(), "b"), true);
        let mut img = card.read_boot_file("boot.img").unwrap();
        let sig = card.read_boot_file("boot.sig").unwrap();
        // A foreign key (another vendor's board) refuses the genuine image.
        let stranger = SignedFirmware::new(BootKey::generate().unwrap().public_key());
        assert!(refusal(stranger.plan(&card, tmp.path())).contains("does not verify"));
        // One flipped byte in boot.img.
        let last = img.len() - 1;
        img[last] ^= 0x80;
        card.write_boot_file("boot.img", &img).unwrap();
        assert!(refusal(firmware().plan(&card, tmp.path())).contains("does not match the sha256"));
        // The attacker restates the digest: the signature still fails.
        let mut forged = BootSig::parse(&sig).unwrap();
        forged.digest = BootSig::sign(vendor_key(), &img, 0).unwrap().digest;
        card.write_boot_file("boot.sig", forged.to_text().as_bytes())
            .unwrap();
        assert!(refusal(firmware().plan(&card, tmp.path())).contains("does not verify"));
        card.write_boot_file("boot.sig", b"garbage").unwrap();
        assert!(refusal(firmware().plan(&card, tmp.path())).contains("malformed"));
    }

    fn subdir(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn config_txt_names_kernel_initramfs_and_cmdline_with_pi4_sections() {
        let text = "# comment\narm_64bit=1\nkernel=kernel8.img\ninitramfs initramfs8 followkernel\n[pi5]\nkernel=kernel_2712.img\n[all]\ncmdline=alt.txt # trailing\n";
        assert_eq!(
            parse_config(text),
            Config {
                kernel: Some("kernel8.img".into()),
                initramfs: Some("initramfs8".into()),
                cmdline: Some("alt.txt".into()),
                jtag: false,
            }
        );
        assert_eq!(parse_config(""), Config::default());
        assert!(parse_config("enable_jtag_gpio=1\n").jtag);
        assert!(!parse_config("enable_jtag_gpio=0\n").jtag);
        assert!(!parse_config("[pi5]\nenable_jtag_gpio=1\n").jtag);
    }
}
