//! The guest kernel's files unpacked for tools that build their own minimal guests (e.g. a test
//! booting a bare initramfs): the kernel Image, its module tree and a static busybox.

use std::path::PathBuf;

use crate::apt::resolve_and_fetch;
use crate::cache::Cache;
use crate::initramfs::{kernel_package, unpack};
use crate::{ImageError, Progress, Recipe};

/// Unpacked kernel and busybox of the recipe's current resolution.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    /// The kernel Image (`boot/vmlinuz-<release>`).
    pub kernel: PathBuf,
    /// The module tree (`lib/modules`).
    pub modules: PathBuf,
    /// A static arm64 busybox.
    pub busybox: PathBuf,
}

/// Unpacks (once, into the cache) the kernel and busybox packages the image uses.
pub fn guest_kernel(repo: &std::path::Path) -> Result<GuestKernel, ImageError> {
    let progress = Progress::hidden();
    let recipe = Recipe::load(&repo.join("fixtures/guest/recipe.toml"))?;
    let cache = Cache::open(&crate::default_cache(repo), &progress)?;
    let resolved = resolve_and_fetch(&cache, &recipe, false, &progress)?;
    let kernel_pkg = kernel_package(&resolved)?;
    let busybox_pkg = resolved
        .packages
        .iter()
        .find(|p| p.name == "busybox-static")
        .ok_or_else(|| ImageError::MissingBinary("busybox-static package".into()))?;
    let dir = cache.entry(
        "unpacked",
        &format!("{}-{}", &kernel_pkg.sha256[..16], &busybox_pkg.sha256[..16]),
    )?;
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        unpack(&resolved.debs[&kernel_pkg.name], &dir)?;
        unpack(&resolved.debs[&busybox_pkg.name], &dir)?;
        std::fs::write(&done, b"").map_err(ImageError::io("writing", &done))?;
    }
    let boot = dir.join("boot");
    let kernel = std::fs::read_dir(&boot)
        .map_err(ImageError::io("listing", &boot))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| {
            ImageError::Corrupt(boot.clone(), "no vmlinuz in the kernel package".into())
        })?;
    Ok(GuestKernel {
        kernel,
        modules: dir.join("lib/modules"),
        busybox: dir.join("bin/busybox"),
    })
}
