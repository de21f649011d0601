//! The card: MBR, partition 1 FAT32 with the boot files (as Raspberry Pi OS lays them out),
//! partition 2 the root filesystem, copied sparsely.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use card::{CardLayout, boot_fs};

use crate::apt::Resolved;
use crate::cache::{Cache, Key};
use crate::initramfs::BootFiles;
use crate::rootfs::RootFs;
use crate::{BuildOptions, ImageError, ImageManifest, Progress, Recipe};

/// The file names the Pi firmware loads on a 64-bit Pi 4 (`config.txt` names them too).
pub(crate) const KERNEL_NAME: &str = "kernel8.img";
/// The initramfs file name (`initramfs initramfs8 followkernel` in `config.txt`).
pub(crate) const INITRAMFS_NAME: &str = "initramfs8";

/// Assembles (or finds) the card; returns its path, manifest and whether it was cached.
pub(crate) fn assemble(
    cache: &Cache,
    options: &BuildOptions,
    recipe: &Recipe,
    resolved: &Resolved,
    boot: &BootFiles,
    root: &RootFs,
    progress: &Progress,
) -> Result<(PathBuf, ImageManifest, bool), ImageError> {
    let boot_fixtures = options.repo.join("fixtures/guest/boot");
    let key = Key::new("card")
        .add("boot", &boot.key)
        .add("root", &root.key)
        .add("boot_mib", recipe.card.boot_mib.to_string())
        .add_tree("boot-files", &boot_fixtures)?
        .finish();
    let card = cache.entry("card", &format!("{key}.img"))?;
    let record = cache.entry("card", &format!("{key}.json"))?;
    if cache.verified(&card, progress)?
        && let Some(manifest) = fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Ok((card, manifest, true));
    }

    let bar = progress.step("writing card image", None);
    let root_size = fs::metadata(&root.image)
        .map_err(ImageError::io("reading", &root.image))?
        .len();
    let signature = u32::from_str_radix(&root.key[..8], 16).expect("hex key");
    let layout = CardLayout::plan(signature, recipe.card.boot_mib, root_size);

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in fs::read_dir(&boot_fixtures).map_err(ImageError::io("listing", &boot_fixtures))? {
        let path = entry
            .map_err(ImageError::io("listing", &boot_fixtures))?
            .path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut bytes = fs::read(&path).map_err(ImageError::io("reading", &path))?;
        if name == "cmdline.txt" {
            bytes = String::from_utf8_lossy(&bytes)
                .replace("@ROOT_PARTUUID@", &layout.root_partuuid())
                .into_bytes();
        }
        files.push((name, bytes));
    }
    let read = |p: &Path| fs::read(p).map_err(ImageError::io("reading", p));
    files.push((KERNEL_NAME.into(), read(&boot.kernel)?));
    files.push((INITRAMFS_NAME.into(), read(&boot.initramfs)?));

    let tmp = card.with_extension("img.partial");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(ImageError::io("creating", &tmp))?;
    file.set_len(layout.card_size())
        .map_err(ImageError::io("sizing", &tmp))?;
    layout.write_mbr(&mut file)?;
    {
        let slice = fscommon::StreamSlice::new(
            &mut file,
            layout.boot.offset,
            layout.boot.offset + layout.boot.size,
        )
        .map_err(ImageError::io("opening boot partition", &tmp))?;
        let borrowed: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        boot_fs::format(fscommon::BufStream::new(slice), &borrowed)?;
    }
    copy_sparse(&root.image, &mut file, layout.root.offset, &tmp)?;
    file.sync_all().map_err(ImageError::io("syncing", &tmp))?;
    drop(file);
    let card_sha256 = cache.commit(&tmp, &card)?;

    let mut stages = BTreeMap::new();
    stages.insert("boot".to_string(), boot.key.clone());
    stages.insert("root".to_string(), root.key.clone());
    stages.insert("card".to_string(), key);
    let manifest = ImageManifest {
        profile: options.profile,
        card: card.clone(),
        card_sha256,
        layout,
        kernel_release: boot.release.clone(),
        host_key: root.host_key.clone(),
        packages: resolved.packages.clone(),
        binaries: root.binaries.clone(),
        stages,
    };
    cache.write_plain(
        &record,
        &serde_json::to_vec_pretty(&manifest).expect("serialises"),
    )?;
    bar.finish_and_clear();
    Ok((card, manifest, false))
}

/// Copies `src` into `dest` at `offset`, skipping all-zero blocks so the card stays sparse.
fn copy_sparse(
    src: &Path,
    dest: &mut File,
    offset: u64,
    dest_name: &Path,
) -> Result<(), ImageError> {
    let mut input = File::open(src).map_err(ImageError::io("reading", src))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = offset;
    loop {
        let n = read_full(&mut input, &mut buf).map_err(ImageError::io("reading", src))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|b| *b != 0) {
            dest.seek(SeekFrom::Start(pos))
                .map_err(ImageError::io("seeking", dest_name))?;
            dest.write_all(&buf[..n])
                .map_err(ImageError::io("writing", dest_name))?;
        }
        pos += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
