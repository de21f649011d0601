//! The Pi boot firmware, played by the harness: `config.txt` and `cmdline.txt` from the card's
//! boot partition decide what boots ([`UnsignedFirmware`]), or, with secure boot on
//! ([`SignedFirmware`]), the same files read from inside a verified `boot.img`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use card::{Card, CardError};
use keybound_vendor::boot::{BootPublicKey, BootSig, MAX_SIG_FILE};

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
                    CardError::NoSuchBootFile(n) => CardError::NoSuchBootFile(format!("boot.img:{n}")),
                    other => other,
                })
            },
            dir,
        )
        .map_err(|e| match e {
            FirmwareError::Card(CardError::NoSuchBootFile(name)) => FirmwareError::Refused(
                format!("secure boot: the signed image has no {name}"),
            ),
            other => other,
        })?;
        plan.files = ["boot.img".to_string(), "boot.sig".to_string()]
            .into_iter()
            .chain(plan.files.iter().map(|f| format!("boot.img:{f}")))
            .collect();
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_txt_names_kernel_initramfs_and_cmdline_with_pi4_sections() {
        let text = "# comment\narm_64bit=1\nkernel=kernel8.img\ninitramfs initramfs8 followkernel\n[pi5]\nkernel=kernel_2712.img\n[all]\ncmdline=alt.txt # trailing\n";
        assert_eq!(
            parse_config(text),
            Config {
                kernel: Some("kernel8.img".into()),
                initramfs: Some("initramfs8".into()),
                cmdline: Some("alt.txt".into())
            }
        );
        assert_eq!(parse_config(""), Config::default());
    }
}
