//! TEST-ONLY: the attacker's initramfs for the threat-matrix row "initramfs or kernel swapped on
//! the boot partition | unsigned | risk: key exfiltrated" (DESIGN.md §7). A gzip'd newc cpio for
//! the image's kernel: static busybox, `hil/attack-kit/initramfs/init`, the attacker's tool
//! (`keybound-attack-unseal`, recipe stage `harness`) and `libzk_app_utils.so` with their
//! library closure, and the modules keybound-init loads. Content-addressed in the cache
//! (`attacker/<key>.cpio.gz`); never part of any card this crate builds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{Cache, Key, sha256_file};
use crate::error::run;
use crate::initramfs::{kernel_package, unpack, write_initramfs};
use crate::kmod::ModuleIndex;
use crate::recipe::Stage;
use crate::rootfs::Unpacked;
use crate::{BuiltImage, CrossBuild, ImageError, Progress, Recipe, apt, elfdeps};

/// The attacker's tool: its artifact and where the init script runs it from.
const TOOL: (&str, &str) = ("keybound-attack-unseal", "usr/bin/keybound-attack-unseal");
/// The Zymkey library: artifact and the path the loader finds it at (as in keybound-init's
/// initramfs).
const ZK_LIBRARY: (&str, &str) = ("libzk_app_utils.so", "usr/lib/libzk_app_utils.so");
/// The init script, relative to the repository.
const INIT_DIR: &str = "hil/attack-kit/initramfs";

/// TEST-ONLY. Builds (or finds in the cache) the attacker's initramfs for `image`'s kernel and
/// returns its path: put it on a card's boot partition as `initramfs8`. Cross-builds the
/// recipe's binaries first (a no-op when they are current).
pub fn attacker_initramfs(
    repo: &Path,
    image: &BuiltImage,
    progress: &Progress,
) -> Result<PathBuf, ImageError> {
    attacker_initramfs_with(&CrossBuild::new(repo), image, progress)
}

/// [`attacker_initramfs`] with a given cross build (its target directory supplies the tool).
pub fn attacker_initramfs_with(
    cross: &CrossBuild,
    image: &BuiltImage,
    progress: &Progress,
) -> Result<PathBuf, ImageError> {
    let repo = &cross.repo;
    let recipe = Recipe::load(&repo.join("fixtures/guest/recipe.toml"))?;
    let built = cross.build(&recipe.binaries, progress)?;
    let artifact = |name: &str, harness: bool| {
        built
            .iter()
            .find(|(b, _)| b.artifact == name && (!harness || b.stage == Stage::Harness))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ImageError::MissingBinary(name.into()))
    };
    let tool = artifact(TOOL.0, true)?;
    let library = artifact(ZK_LIBRARY.0, false)?;
    let init_dir = repo.join(INIT_DIR);

    let cache = Cache::open(&crate::default_cache(repo), progress)?;
    let resolved = apt::resolve_and_fetch(&cache, &recipe, false, progress)?;
    let kernel_pkg = kernel_package(&resolved)?;
    if !image
        .manifest
        .packages
        .iter()
        .any(|p| p.name == kernel_pkg.name && p.sha256 == kernel_pkg.sha256)
    {
        return Err(ImageError::Corrupt(
            image.card.clone(),
            format!(
                "the image was built with another kernel than the current resolution's {} {}: rebuild the image",
                kernel_pkg.name, kernel_pkg.version
            ),
        ));
    }
    let key = Key::new("attacker-initramfs")
        .add("modules", recipe.modules.initramfs.join(","))
        .add(
            "packages",
            resolved
                .packages
                .iter()
                .map(|p| format!("{} {}\n", p.name, p.sha256))
                .collect::<String>(),
        )
        .add_tree("init", &init_dir)?
        .add("tool", sha256_file(&tool)?)
        .add("library", sha256_file(&library)?)
        .finish();
    let out = cache.entry("attacker", &format!("{key}.cpio.gz"))?;
    if cache.verified(&out, progress)? {
        return Ok(out);
    }

    let bar = progress.step("building the attacker's initramfs (TEST-ONLY)", None);
    let scratch = cache.scratch("attacker")?;
    let read = |p: &Path| fs::read(p).map_err(ImageError::io("reading", p));
    let kdir = scratch.path().join("kernel");
    unpack(&resolved.debs[&kernel_pkg.name], &kdir)?;
    let index = ModuleIndex::open(&kdir)?;
    if index.release() != image.manifest.kernel_release {
        return Err(ImageError::Corrupt(
            image.card.clone(),
            format!(
                "kernel release {} on the card, {} in the package",
                image.manifest.kernel_release,
                index.release()
            ),
        ));
    }
    let modules = index.resolve(&recipe.modules.initramfs, &Default::default())?;
    let busybox = resolved
        .debs
        .get("busybox-static")
        .ok_or_else(|| ImageError::Tool {
            tool: "resolve".into(),
            detail: "busybox-static is not in the recipe's packages".into(),
        })?;
    let bdir = scratch.path().join("busybox");
    unpack(busybox, &bdir)?;

    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        ("init".into(), read(&init_dir.join("init"))?, 0o755),
        (
            "bin/busybox".into(),
            read(&bdir.join("bin/busybox"))?,
            0o755,
        ),
        (TOOL.1.into(), read(&tool)?, 0o755),
        (ZK_LIBRARY.1.into(), read(&library)?, 0o755),
    ];
    let mut unpacked = Unpacked::new(&cache, &resolved, progress);
    let root = unpacked.get()?;
    for (guest, host) in elfdeps::closure(root, &[tool.clone(), library.clone()])? {
        files.push((guest, read(&host)?, 0o755));
    }
    for (name, path) in &modules {
        files.push((format!("lib/modules/{name}.ko"), read(path)?, 0o644));
    }
    let load_list: String = modules.iter().map(|(n, _)| format!("{n}.ko\n")).collect();
    files.push((
        "lib/modules/load.list".into(),
        load_list.into_bytes(),
        0o644,
    ));
    let cpio = scratch.path().join("attacker.cpio");
    write_initramfs(&cpio, &files)?;
    run(
        Command::new("gzip").args(["-9", "-n"]).arg(&cpio),
        "gzip",
        "gzip",
    )?;
    cache.commit(&scratch.path().join("attacker.cpio.gz"), &out)?;
    bar.finish_and_clear();
    Ok(out)
}
