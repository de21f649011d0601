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
    let sig = BootSig::sign(&key, &img, now())?;
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

/// `sign --card IMG`: signs the boot files of a raw card image's boot partition and writes
/// `boot.img` and `boot.sig` beside them.
pub(crate) fn sign_card(key: &Path, card: &Path) -> Result<()> {
    let key = BootKey::read(key)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(card)
        .with_context(|| format!("opening {}", card.display()))?;
    let layout = card::CardLayout::read_mbr(&mut file, card)?;
    let mut part = fscommon::StreamSlice::new(
        &mut file,
        layout.boot.offset,
        layout.boot.offset + layout.boot.size,
    )
    .with_context(|| format!("the boot partition of {}", card.display()))?;
    let available = card::boot_fs::list(&mut part)?;
    let files = BootFiles::select(&available, |name| card::boot_fs::read(&mut part, name))?;
    let img = build_boot_img(&files)?;
    let sig = BootSig::sign(&key, &img, now())?;
    card::boot_fs::write(&mut part, "boot.img", &img)?;
    card::boot_fs::write(&mut part, "boot.sig", sig.to_text().as_bytes())?;
    file.sync_all()
        .with_context(|| format!("writing {}", card.display()))?;
    let names: Vec<&str> = files.files().map(|(n, _)| n).collect();
    eprintln!(
        "keybound-vendor: signed boot.img ({} bytes: {}) and boot.sig onto {}",
        img.len(),
        names.join(", "),
        card.display()
    );
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
