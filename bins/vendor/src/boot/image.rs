//! `boot.img`: the FAT image the Pi's boot ROM loads under secure boot, holding exactly what the
//! boot needs (config.txt, cmdline, kernel, initramfs, device trees and overlays).

use std::io::Cursor;
use std::path::Path;

use super::BootError;

/// The files that go into `boot.img`, by name (`/`-separated, relative to the boot directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    files: Vec<(String, Vec<u8>)>,
}

/// The names `config.txt` makes the firmware load, in every section (a signed image may serve
/// several Pi models): `kernel=`, `initramfs NAME`, `cmdline=`, `device_tree=`. Defaults
/// (`kernel8.img`, `cmdline.txt`) apply when a key is never set.
fn named_by_config(config: &str) -> Vec<String> {
    let mut kernels = Vec::new();
    let mut cmdlines = Vec::new();
    let mut others = Vec::new();
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("initramfs ") {
            others.extend(rest.split_whitespace().next().map(String::from));
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match key.trim() {
                "kernel" => kernels.push(value),
                "cmdline" => cmdlines.push(value),
                "device_tree" => others.push(value),
                _ => {}
            }
        }
    }
    if kernels.is_empty() {
        kernels.push("kernel8.img".into());
    }
    if cmdlines.is_empty() {
        cmdlines.push("cmdline.txt".into());
    }
    let mut names = vec!["config.txt".to_string()];
    names.extend(kernels);
    names.extend(cmdlines);
    names.extend(others);
    names
}

impl BootFiles {
    /// Picks the boot files from what a boot directory (or partition) holds: `config.txt`, the
    /// files it names (all must exist), every `*.dtb` and everything under `overlays/`.
    /// `available` lists the names present; `read` reads one. `boot.img` and `boot.sig`
    /// themselves are never included.
    pub fn select<E>(
        available: &[String],
        mut read: impl FnMut(&str) -> Result<Vec<u8>, E>,
    ) -> Result<Self, BootError>
    where
        BootError: From<E>,
    {
        if !available.iter().any(|n| n == "config.txt") {
            return Err(BootError::MissingFile("config.txt".into()));
        }
        let config = read("config.txt")?;
        let mut names = named_by_config(&String::from_utf8_lossy(&config));
        names.extend(
            available
                .iter()
                .filter(|n| n.ends_with(".dtb") || n.starts_with("overlays/"))
                .cloned(),
        );
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for name in names {
            let name = name.trim_start_matches('/').to_string();
            if files.iter().any(|(n, _)| *n == name) || name == "boot.img" || name == "boot.sig" {
                continue;
            }
            if !available.contains(&name) {
                return Err(BootError::MissingFile(name));
            }
            let bytes = read(&name)?;
            files.push((name, bytes));
        }
        Ok(Self { files })
    }

    /// Picks the boot files from a directory (see [`BootFiles::select`]).
    pub fn from_dir(dir: &Path) -> Result<Self, BootError> {
        let mut available = Vec::new();
        list_dir(dir, "", &mut available)?;
        Self::select(&available, |name| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(BootError::io("reading", &path))
        })
    }

    /// The files, by name.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// Replaces (or adds) one file, e.g. to build a deliberately different image in a test.
    pub fn set(&mut self, name: &str, bytes: Vec<u8>) {
        match self.files.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = bytes,
            None => self.files.push((name.to_string(), bytes)),
        }
    }
}

fn list_dir(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), BootError> {
    for entry in std::fs::read_dir(dir).map_err(BootError::io("listing", dir))? {
        let entry = entry.map_err(BootError::io("listing", dir))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(BootError::io("listing", dir))?;
        if kind.is_dir() {
            list_dir(&entry.path(), &format!("{name}/"), out)?;
        } else if kind.is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(())
}

/// FAT32 needs at least 65 525 clusters: with fatfs's 512-byte clusters on small volumes that is
/// about 33 MiB; 40 MiB leaves room (the size `card::boot_fs` is tested with).
const MIN_IMAGE: u64 = 40 << 20;

/// Builds `boot.img`: a FAT32 image (label `bootfs`) holding the files, sized to fit them.
pub fn build_boot_img(files: &BootFiles) -> Result<Vec<u8>, BootError> {
    let payload: u64 = files.files.iter().map(|(_, b)| b.len() as u64).sum();
    // Room for FAT tables, directory entries and cluster slack, rounded up to whole MiB.
    let size = (payload + payload / 8 + (8 << 20))
        .max(MIN_IMAGE)
        .div_ceil(1 << 20)
        << 20;
    let len = usize::try_from(size).map_err(|_| BootError::TooLarge(payload))?;
    let mut volume = Cursor::new(vec![0u8; len]);
    let borrowed: Vec<(&str, &[u8])> = files.files().collect();
    card::boot_fs::format(&mut volume, &borrowed)?;
    Ok(volume.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avail(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_named_files_dtbs_and_overlays_are_selected_and_nothing_else() {
        let config =
            "kernel=kernel8.img\ninitramfs initramfs8 followkernel\n[pi5]\nkernel=k5.img\n";
        let available = avail(&[
            "config.txt",
            "cmdline.txt",
            "kernel8.img",
            "k5.img",
            "initramfs8",
            "bcm2711-rpi-4-b.dtb",
            "overlays/disable-bt.dtbo",
            "start4.elf",
            "boot.img",
        ]);
        let files = BootFiles::select(&available, |name| {
            Ok::<_, BootError>(if name == "config.txt" {
                config.as_bytes().to_vec()
            } else {
                name.as_bytes().to_vec()
            })
        })
        .unwrap();
        let mut names: Vec<&str> = files.files().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "bcm2711-rpi-4-b.dtb",
                "cmdline.txt",
                "config.txt",
                "initramfs8",
                "k5.img",
                "kernel8.img",
                "overlays/disable-bt.dtbo"
            ]
        );
    }

    #[test]
    fn a_named_file_missing_is_an_error_naming_it() {
        let err = BootFiles::select(&avail(&["config.txt", "cmdline.txt"]), |_| {
            Ok::<_, BootError>(b"arm_64bit=1\n".to_vec())
        })
        .unwrap_err();
        assert!(
            matches!(err, BootError::MissingFile(ref n) if n == "kernel8.img"),
            "{err}"
        );
    }

    #[test]
    fn boot_img_is_a_fat_image_holding_the_files() {
        let mut files = BootFiles { files: Vec::new() };
        files.set("config.txt", b"kernel=kernel8.img\n".to_vec());
        files.set("kernel8.img", vec![7u8; 100_000]);
        files.set("overlays/x.dtbo", b"dtbo".to_vec());
        let img = build_boot_img(&files).unwrap();
        assert_eq!(img.len() as u64, MIN_IMAGE);
        let mut listed = card::boot_fs::list(Cursor::new(img.clone())).unwrap();
        listed.sort();
        assert_eq!(listed, ["config.txt", "kernel8.img", "overlays/x.dtbo"]);
        assert_eq!(
            card::boot_fs::read(Cursor::new(img), "kernel8.img").unwrap(),
            vec![7u8; 100_000]
        );
    }
}
