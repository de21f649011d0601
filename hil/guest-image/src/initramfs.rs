//! The boot files: the kernel Image and the initramfs (busybox /init for now, the modules root
//! needs, their load order).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::Resolved;
use crate::cache::{Cache, Key};
use crate::error::run;
use crate::kmod::ModuleIndex;
use crate::{ImageError, Progress, Recipe};

/// The boot files of an image, in the cache.
pub(crate) struct BootFiles {
    /// The kernel Image.
    pub(crate) kernel: PathBuf,
    /// The initramfs (newc cpio).
    pub(crate) initramfs: PathBuf,
    /// The kernel release.
    pub(crate) release: String,
    /// The modules the initramfs loads (root need not load them again).
    pub(crate) loaded: BTreeSet<String>,
    /// The stage's cache key.
    pub(crate) key: String,
}

/// The kernel package: the one `linux-image-*` with a version number in its name.
pub(crate) fn kernel_package(resolved: &Resolved) -> Result<&crate::PackageEntry, ImageError> {
    resolved
        .packages
        .iter()
        .find(|p| {
            p.name.starts_with("linux-image-")
                && p.name.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
        })
        .ok_or_else(|| ImageError::Tool {
            tool: "resolve".into(),
            detail: "no linux-image-<version> package resolved".into(),
        })
}

/// Unpacks a `.deb` into `dest`.
pub(crate) fn unpack(deb: &Path, dest: &Path) -> Result<(), ImageError> {
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest),
        "dpkg-deb",
        "dpkg",
    )?;
    Ok(())
}

/// Builds (or finds) the kernel and initramfs.
pub(crate) fn build_boot_files(
    cache: &Cache,
    repo: &Path,
    recipe: &Recipe,
    resolved: &Resolved,
    progress: &Progress,
) -> Result<BootFiles, ImageError> {
    let kernel_pkg = kernel_package(resolved)?;
    let busybox = resolved
        .packages
        .iter()
        .find(|p| p.name == "busybox-static")
        .ok_or_else(|| ImageError::Tool {
            tool: "resolve".into(),
            detail: "busybox-static is not in the recipe's packages".into(),
        })?;
    let init_dir = repo.join("fixtures/guest/initramfs");
    let key = Key::new("boot")
        .add("kernel", &kernel_pkg.sha256)
        .add("busybox", &busybox.sha256)
        .add("modules", recipe.modules.initramfs.join(","))
        .add_tree("initramfs", &init_dir)?
        .finish();
    let kernel = cache.entry("boot", &format!("{key}.kernel"))?;
    let initramfs = cache.entry("boot", &format!("{key}.initramfs"))?;
    let meta = cache.entry("boot", &format!("{key}.json"))?;
    if cache.verified(&kernel, progress)?
        && cache.verified(&initramfs, progress)?
        && let Some((release, loaded)) = fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Ok(BootFiles {
            kernel,
            initramfs,
            release,
            loaded,
            key,
        });
    }

    let bar = progress.step("building kernel and initramfs", None);
    let scratch = cache.scratch("boot")?;
    let kdir = scratch.path().join("kernel");
    unpack(&resolved.debs[&kernel_pkg.name], &kdir)?;
    let bdir = scratch.path().join("busybox");
    unpack(&resolved.debs[&busybox.name], &bdir)?;
    let index = ModuleIndex::open(&kdir)?;
    let modules = index.resolve(&recipe.modules.initramfs, &BTreeSet::new())?;
    let vmlinuz = kdir.join(format!("boot/vmlinuz-{}", index.release()));

    let cpio_tmp = scratch.path().join("initramfs.cpio");
    write_initramfs(
        &cpio_tmp,
        &init_dir.join("init"),
        &bdir.join("bin/busybox"),
        &modules,
    )?;
    let kernel_tmp = scratch.path().join("kernel.img");
    fs::copy(&vmlinuz, &kernel_tmp).map_err(ImageError::io("copying kernel", &vmlinuz))?;
    cache.commit(&kernel_tmp, &kernel)?;
    cache.commit(&cpio_tmp, &initramfs)?;
    let loaded: BTreeSet<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let release = index.release().to_string();
    cache.write_plain(
        &meta,
        &serde_json::to_vec(&(&release, &loaded)).expect("serialises"),
    )?;
    bar.finish_and_clear();
    Ok(BootFiles {
        kernel,
        initramfs,
        release,
        loaded,
        key,
    })
}

/// One entry of the initramfs.
enum Entry<'a> {
    Dir,
    File { mode: u32, data: &'a [u8] },
    CharDev { major: u32, minor: u32 },
}

fn write_initramfs(
    out: &Path,
    init: &Path,
    busybox: &Path,
    modules: &[(String, PathBuf)],
) -> Result<(), ImageError> {
    let read = |p: &Path| fs::read(p).map_err(ImageError::io("reading", p));
    let init = read(init)?;
    let busybox = read(busybox)?;
    let mut module_bytes = Vec::new();
    for (name, path) in modules {
        module_bytes.push((format!("lib/modules/{name}.ko"), read(path)?));
    }
    let load_list: String = modules.iter().map(|(n, _)| format!("{n}.ko\n")).collect();

    let mut entries: Vec<(String, Entry)> =
        ["bin", "dev", "proc", "sys", "root", "lib", "lib/modules"]
            .iter()
            .map(|d| (d.to_string(), Entry::Dir))
            .collect();
    entries.push(("dev/console".into(), Entry::CharDev { major: 5, minor: 1 }));
    entries.push((
        "init".into(),
        Entry::File {
            mode: 0o755,
            data: &init,
        },
    ));
    entries.push((
        "bin/busybox".into(),
        Entry::File {
            mode: 0o755,
            data: &busybox,
        },
    ));
    entries.push((
        "lib/modules/load.list".into(),
        Entry::File {
            mode: 0o644,
            data: load_list.as_bytes(),
        },
    ));
    for (name, data) in &module_bytes {
        entries.push((name.clone(), Entry::File { mode: 0o644, data }));
    }

    let file = File::create(out).map_err(ImageError::io("creating", out))?;
    let mut w = BufWriter::new(file);
    let io = |e| ImageError::io("writing initramfs", out)(e);
    for (ino, (name, entry)) in entries.iter().enumerate() {
        let builder = cpio::newc::Builder::new(name)
            .ino(ino as u32 + 1)
            .uid(0)
            .gid(0)
            .nlink(1);
        match entry {
            Entry::Dir => {
                builder
                    .mode(0o040755)
                    .nlink(2)
                    .write(&mut w, 0)
                    .finish()
                    .map_err(io)?;
            }
            Entry::CharDev { major, minor } => {
                builder
                    .mode(0o020600)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .write(&mut w, 0)
                    .finish()
                    .map_err(io)?;
            }
            Entry::File { mode, data } => {
                let mut fw = builder
                    .mode(0o100000 | mode)
                    .write(&mut w, data.len() as u32);
                fw.write_all(data).map_err(io)?;
                fw.finish().map_err(io)?;
            }
        }
    }
    cpio::newc::trailer(&mut w).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(())
}
