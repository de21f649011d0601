//! The boot files: the kernel Image and the initramfs (busybox /init for now, the modules root
//! needs, their load order).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::Resolved;
use crate::cache::{Cache, Key, sha256_file};
use crate::error::run;
use crate::kmod::ModuleIndex;
use crate::recipe::{InitramfsInit, Stage};
use crate::rootfs::Unpacked;
use crate::{BuildOptions, elfdeps};
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
    options: &BuildOptions,
    recipe: &Recipe,
    resolved: &Resolved,
    unpacked: &mut Unpacked<'_>,
    progress: &Progress,
) -> Result<BootFiles, ImageError> {
    let kernel_pkg = kernel_package(resolved)?;
    let init_dir = options.repo.join("fixtures/guest/initramfs");
    let programs = initramfs_binaries(options, recipe)?;
    let mut key = Key::new("boot")
        .add("kernel", &kernel_pkg.sha256)
        .add("modules", recipe.modules.initramfs.join(","))
        .add("init", format!("{:?}", recipe.initramfs.init))
        .add("tools", recipe.initramfs.tools.join(","));
    key = match recipe.initramfs.init {
        InitramfsInit::Busybox => key.add_tree("initramfs", &init_dir)?,
        // The libraries come from the packages: any package change may change them.
        InitramfsInit::KeyboundInit => key.add(
            "packages",
            resolved
                .packages
                .iter()
                .map(|p| format!("{} {}\n", p.name, p.sha256))
                .collect::<String>(),
        ),
    };
    for (dest, path) in &programs {
        key = key.add(dest, sha256_file(path)?);
    }
    let key = key.finish();
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
    let index = ModuleIndex::open(&kdir)?;
    let modules = index.resolve(&recipe.modules.initramfs, &BTreeSet::new())?;
    let vmlinuz = kdir.join(format!("boot/vmlinuz-{}", index.release()));

    let read = |p: &Path| fs::read(p).map_err(ImageError::io("reading", p));
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    match recipe.initramfs.init {
        InitramfsInit::Busybox => {
            let busybox = resolved
                .debs
                .get("busybox-static")
                .ok_or_else(|| ImageError::Tool {
                    tool: "resolve".into(),
                    detail: "busybox-static is not in the recipe's packages".into(),
                })?;
            let bdir = scratch.path().join("busybox");
            unpack(busybox, &bdir)?;
            files.push(("init".into(), read(&init_dir.join("init"))?, 0o755));
            files.push((
                "bin/busybox".into(),
                read(&bdir.join("bin/busybox"))?,
                0o755,
            ));
        }
        InitramfsInit::KeyboundInit => {
            if !programs.iter().any(|(dest, _)| dest == "/init") {
                return Err(ImageError::MissingBinary("keybound-init (a [[binaries]] entry with stage = \"initramfs\" and dest = \"/init\")".into()));
            }
            let root = unpacked.get()?;
            let mut hosts: Vec<_> = programs.iter().map(|(_, p)| p.clone()).collect();
            for tool in &recipe.initramfs.tools {
                let guest = tool.trim_start_matches('/');
                let host = root.join(guest);
                if !host.is_file() {
                    return Err(ImageError::MissingBinary(format!(
                        "initramfs tool {tool} (not in the recipe's packages)"
                    )));
                }
                files.push((guest.to_string(), read(&host)?, 0o755));
                hosts.push(host);
            }
            for (guest, host) in elfdeps::closure(root, &hosts)? {
                files.push((guest, read(&host)?, 0o755));
            }
        }
    }
    for (dest, path) in &programs {
        files.push((dest.trim_start_matches('/').to_string(), read(path)?, 0o755));
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

    let cpio_tmp = scratch.path().join("initramfs.cpio");
    write_initramfs(&cpio_tmp, &files)?;
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

/// The recipe's initramfs binaries: guest path → cross-built file.
fn initramfs_binaries(
    options: &BuildOptions,
    recipe: &Recipe,
) -> Result<Vec<(String, PathBuf)>, ImageError> {
    recipe
        .binaries
        .iter()
        .filter(|b| b.stage == Stage::Initramfs)
        .map(|b| {
            options
                .binaries
                .iter()
                .find(|(have, _)| have == b)
                .map(|(_, p)| (b.dest.clone(), p.clone()))
                .ok_or_else(|| ImageError::MissingBinary(b.artifact.clone()))
        })
        .collect()
}

/// Writes a newc cpio: the directories every file needs, `/dev/console`, then the files.
pub(crate) fn write_initramfs(
    out: &Path,
    files: &[(String, Vec<u8>, u32)],
) -> Result<(), ImageError> {
    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "root", "newroot", "bin", "lib"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for (path, _, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    let file = File::create(out).map_err(ImageError::io("creating", out))?;
    let mut w = BufWriter::new(file);
    let io = |e| ImageError::io("writing initramfs", out)(e);
    let mut ino = 0u32;
    let mut next = || {
        ino += 1;
        ino
    };
    for dir in &dirs {
        cpio::newc::Builder::new(dir)
            .ino(next())
            .mode(0o040755)
            .nlink(2)
            .write(&mut w, 0)
            .finish()
            .map_err(io)?;
    }
    cpio::newc::Builder::new("dev/console")
        .ino(next())
        .mode(0o020600)
        .rdev_major(5)
        .rdev_minor(1)
        .nlink(1)
        .write(&mut w, 0)
        .finish()
        .map_err(io)?;
    for (path, data, mode) in files {
        let mut fw = cpio::newc::Builder::new(path)
            .ino(next())
            .mode(0o100000 | mode)
            .nlink(1)
            .write(&mut w, data.len() as u32);
        fw.write_all(data).map_err(io)?;
        fw.finish().map_err(io)?;
    }
    cpio::newc::trailer(&mut w).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(())
}
