//! Builds the guest card image: Debian arm64 packages resolved and fetched by name, unpacked
//! without installing, our cross-built binaries and the `fixtures/guest` files added, written as a
//! card (partition 1 FAT boot, partition 2 ext4 root) through a content-addressed cache.
//!
//! Stages and what each one's cache key covers:
//! 1. **resolve** (`apt.rs`): the recipe's package names → exact versions (the manifest). Cached;
//!    `refresh` asks the mirror again and the caller prints the manifest diff.
//! 2. **fetch**: the `.deb` files, verified by apt against the signed index, kept in the cache.
//! 3. **boot files** (`initramfs.rs`): kernel + initramfs, keyed by kernel package, module list
//!    and initramfs fixtures.
//! 4. **root** (`rootfs.rs`): the ext4 root, keyed by the manifest, root fixtures and binaries.
//! 5. **card** (`assemble.rs`): both put together, keyed by the two above and the boot fixtures.
//!
//! Every cache entry carries a sha256 sidecar checked on use: a corrupted entry is rebuilt.
//!
//! TEST-ONLY, on no card: [`attacker_initramfs`] (`attacker.rs`) builds the initramfs of the
//! threat-matrix row "initramfs swapped on the boot partition" for an image's kernel, keyed by
//! packages, modules, `hil/attack-kit/initramfs` and the recipe's `harness` binaries.

mod apt;
mod assemble;
mod attacker;
mod cache;
mod cross;
mod elfdeps;
mod error;
mod initramfs;
mod kernel_files;
mod kmod;
mod manifest;
mod progress;
mod recipe;
mod rootfs;

pub use attacker::{attacker_initramfs, attacker_initramfs_with};
pub use cache::sha256_file;
pub use cross::{CrossBuild, GUEST_TARGET, is_aarch64_elf};
pub use error::ImageError;
pub use kernel_files::{GuestKernel, guest_kernel};
pub use manifest::{ImageManifest, ManifestDiff, PackageEntry};
pub use progress::Progress;
pub use recipe::{Binary, InitramfsInit, Profile, Recipe, RepoFile, Stage};

use std::path::{Path, PathBuf};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The repository root (holds `fixtures/`).
    pub repo: PathBuf,
    /// The cache directory (default `target/keybound-cache`).
    pub cache: PathBuf,
    /// Test images carry the harness's maintenance channel; production images do not.
    pub profile: Profile,
    /// Ask the mirror for current versions even if a resolution is cached.
    pub refresh: bool,
    /// The cross-built binaries, by artifact name (see [`CrossBuild`]).
    pub binaries: Vec<(Binary, PathBuf)>,
    /// Record the card as the profile's current image (`image-<profile>.json`, what `--no-build`
    /// and the tests' boards use). Off for planted-bug images: their binaries differ, so the
    /// content-addressed cache keeps them apart, and they must never become "current".
    pub record_current: bool,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The raw card image in the cache (never write to it: boards use overlays).
    pub card: PathBuf,
    /// What is on it.
    pub manifest: ImageManifest,
    /// How the package set differs from the previous resolution, if it was re-resolved.
    pub diff: Option<ManifestDiff>,
    /// Whether the card came straight from the cache.
    pub cached: bool,
}

impl BuildOptions {
    /// Options for `repo` with the default cache directory and the test profile.
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        Self {
            cache: default_cache(&repo),
            repo,
            profile: Profile::Test,
            refresh: false,
            binaries: Vec::new(),
            record_current: true,
        }
    }
}

/// The default cache directory for a repository: `$KEYBOUND_CACHE` or `REPO/target/keybound-cache`.
pub fn default_cache(repo: &Path) -> PathBuf {
    std::env::var_os("KEYBOUND_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/keybound-cache"))
}

/// Where the last built image of a profile is recorded (`image-<profile>.json` in the cache), so
/// boards and tests find the current card without rebuilding.
pub fn current_image_record(cache: &Path, profile: Profile) -> PathBuf {
    cache.join(format!("image-{}.json", profile.name()))
}

/// Reads the record of the last built image of `profile`.
pub fn current_image(cache: &Path, profile: Profile) -> Result<BuiltImage, ImageError> {
    let record = current_image_record(cache, profile);
    let bytes = std::fs::read(&record).map_err(|_| ImageError::NoImage(record.clone()))?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Corrupt(record.clone(), e.to_string()))?;
    Ok(BuiltImage {
        card: manifest.card.clone(),
        manifest,
        diff: None,
        cached: true,
    })
}

/// Builds (or finds in the cache) the card image.
pub fn build(options: &BuildOptions, progress: &Progress) -> Result<BuiltImage, ImageError> {
    let recipe = Recipe::load(&options.repo.join("fixtures/guest/recipe.toml"))?;
    rootfs::require_root()?;
    let cache = cache::Cache::open(&options.cache, progress)?;
    let resolved = apt::resolve_and_fetch(&cache, &recipe, options.refresh, progress)?;
    let mut unpacked = rootfs::Unpacked::new(&cache, &resolved, progress);
    let boot =
        initramfs::build_boot_files(&cache, options, &recipe, &resolved, &mut unpacked, progress)?;
    let root = rootfs::build_root(
        &cache,
        options,
        &recipe,
        &resolved,
        &boot,
        &mut unpacked,
        progress,
    )?;
    let (card, manifest, cached) =
        assemble::assemble(&cache, options, &recipe, &resolved, &boot, &root, progress)?;
    if options.record_current {
        let record = current_image_record(&options.cache, options.profile);
        cache.write_plain(
            &record,
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
    }
    Ok(BuiltImage {
        card,
        manifest,
        diff: resolved.diff,
        cached,
    })
}

/// Cross-builds the recipe's binaries, then builds (or finds) the image: what `keybound-lab image
/// build` and the tests that boot boards run.
pub fn build_all(
    repo: &Path,
    profile: Profile,
    refresh: bool,
    progress: &Progress,
) -> Result<BuiltImage, ImageError> {
    build_with(&CrossBuild::new(repo), profile, refresh, progress)
}

/// Like [`build_all`] with a given cross build. A planted-bug build ([`CrossBuild::mutant`])
/// makes an image of its own that is not recorded as the profile's current image.
pub fn build_with(
    cross: &CrossBuild,
    profile: Profile,
    refresh: bool,
    progress: &Progress,
) -> Result<BuiltImage, ImageError> {
    let repo = &cross.repo;
    let recipe = Recipe::load(&repo.join("fixtures/guest/recipe.toml"))?;
    let binaries = cross.build(&recipe.binaries, progress)?;
    let mut options = BuildOptions::new(repo);
    options.profile = profile;
    options.refresh = refresh;
    options.binaries = binaries;
    options.record_current = cross.mutant.is_none();
    build(&options, progress)
}

/// The test-only key of the harness's maintenance channel (`fixtures/test-keys`).
pub fn maintenance_key(repo: &Path) -> PathBuf {
    repo.join("fixtures/test-keys/harness_ed25519")
}
