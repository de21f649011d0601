//! `keygen-boot` and `sign`: the vendor's secure-boot key and signed boot images.

use std::path::Path;

use anyhow::{Context, Result};
use keybound_vendor::boot::{BootFiles, BootKey, BootSig, build_boot_img};

/// `keygen-boot`: a new RSA-2048 boot-signing key (0600, never overwriting); prints the path of
/// the public key written next to it.
pub(crate) fn keygen(out: &Path) -> Result<()> {
    if out.exists() {
        anyhow::bail!("{} exists: refusing to overwrite a key", out.display());
    }
    let key = BootKey::generate()?;
    let public = key.write_new(out)?;
    eprintln!(
        "keybound-vendor: boot-signing key written to {} (mode 0600)",
        out.display()
    );
    println!("{}", public.display());
    Ok(())
}

/// `sign`: builds `boot.img` from the boot directory's files and signs it into `boot.sig`.
pub(crate) fn sign(key: &Path, boot_dir: &Path, out: &Path) -> Result<()> {
    let key = BootKey::read(key)?;
    let files = BootFiles::from_dir(boot_dir)?;
    let img = build_boot_img(&files)?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sig = BootSig::sign(&key, &img, ts)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let img_path = out.join("boot.img");
    std::fs::write(&img_path, &img).with_context(|| format!("writing {}", img_path.display()))?;
    let sig_path = out.join("boot.sig");
    std::fs::write(&sig_path, sig.to_text())
        .with_context(|| format!("writing {}", sig_path.display()))?;
    let names: Vec<&str> = files.files().map(|(n, _)| n).collect();
    eprintln!(
        "keybound-vendor: signed {} ({} bytes: {}) and {}",
        img_path.display(),
        img.len(),
        names.join(", "),
        sig_path.display()
    );
    Ok(())
}
