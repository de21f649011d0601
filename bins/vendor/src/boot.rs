//! Raspberry Pi secure boot, the vendor's half: the boot key, the `boot.img` FAT image and its
//! `boot.sig` (the format of `rpi-eeprom-digest`). Never run on a device.

mod image;
mod key;
mod sig;

pub use image::{BootFiles, build_boot_img};
pub use key::{BootKey, BootPublicKey};
pub use sig::{BootSig, MAX_SIG_FILE, SigError};

/// Why building or signing a boot image failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file or directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file the boot needs is not in the boot directory.
    #[error("the boot directory has no {0} (named by config.txt or required)")]
    MissingFile(String),
    /// The FAT image could not be built.
    #[error("building boot.img: {0}")]
    Image(#[from] card::CardError),
    /// The key file is not an RSA-2048 private key in PEM (PKCS#8 or PKCS#1).
    #[error("{0}: not an RSA-2048 private key in PEM form (PKCS#8 or PKCS#1)")]
    BadKey(std::path::PathBuf),
    /// The public key is not an RSA-2048 public key in PEM (SPKI or PKCS#1).
    #[error("not an RSA-2048 public key in PEM form")]
    BadPublicKey,
    /// The files do not fit in memory as one image.
    #[error("{0} bytes of boot files do not fit in one image")]
    TooLarge(u64),
    /// The RSA operation failed.
    #[error("RSA: {0}")]
    Rsa(String),
}

impl BootError {
    /// An I/O error with its context.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
}
