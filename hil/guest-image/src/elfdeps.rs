//! The shared-library closure of ELF programs: what an initramfs must carry for them to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object::read::elf::{Dyn, FileHeader, SectionHeader};

use crate::ImageError;

/// Where the guest's loader looks for libraries (multiarch first), relative to the root.
const LIBRARY_DIRS: &[&str] = &[
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib",
    "usr/lib",
];
/// The aarch64 dynamic loader.
pub(crate) const INTERPRETER: &str = "lib/ld-linux-aarch64.so.1";

/// The `DT_NEEDED` entries of an ELF file.
pub(crate) fn needed(path: &Path) -> Result<Vec<String>, ImageError> {
    let bad = |e: object::Error| {
        ImageError::BadModule(path.into(), format!("not a readable ELF file: {e}"))
    };
    let data = std::fs::read(path).map_err(ImageError::io("reading", path))?;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, &*data).map_err(bad)?;
    let Some((entries, link)) = sections.dynamic(endian, &*data).map_err(bad)? else {
        return Ok(Vec::new());
    };
    let strings = sections
        .section(link)
        .map_err(bad)?
        .strings(endian, &*data)
        .map_err(bad)?;
    let Some(strings) = strings else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        if entry.tag32(endian) == Some(object::elf::DT_NEEDED) {
            let name = entry.string(endian, strings).map_err(bad)?;
            out.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(out)
}

/// Resolves the libraries `programs` need, transitively, inside the unpacked root `root`.
/// Returns guest path (relative, e.g. `lib/aarch64-linux-gnu/libc.so.6`) → host file (symlinks
/// followed), the loader included.
pub(crate) fn closure(
    root: &Path,
    programs: &[PathBuf],
) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let mut found = BTreeMap::new();
    let interp = root.join(INTERPRETER);
    found.insert(INTERPRETER.to_string(), resolve_link(root, &interp)?);
    let mut queue: Vec<PathBuf> = programs.to_vec();
    while let Some(file) = queue.pop() {
        for lib in needed(&file)? {
            if found
                .keys()
                .any(|k| k.rsplit('/').next() == Some(lib.as_str()))
            {
                continue;
            }
            let (guest, host) = LIBRARY_DIRS
                .iter()
                .map(|d| (format!("{d}/{lib}"), root.join(d).join(&lib)))
                .find(|(_, p)| p.exists())
                .ok_or_else(|| {
                    ImageError::Corrupt(
                        file.clone(),
                        format!("needs {lib}, which no recipe package provides"),
                    )
                })?;
            let host = resolve_link(root, &host)?;
            queue.push(host.clone());
            found.insert(guest, host);
        }
    }
    Ok(found)
}

/// Follows symlinks inside the unpacked root (absolute targets are relative to `root`).
fn resolve_link(root: &Path, path: &Path) -> Result<PathBuf, ImageError> {
    let mut current = path.to_path_buf();
    for _ in 0..16 {
        match std::fs::read_link(&current) {
            Ok(target) if target.is_absolute() => {
                current = root.join(target.strip_prefix("/").unwrap_or(&target))
            }
            Ok(target) => current = current.parent().unwrap_or(root).join(target),
            Err(_) => return Ok(current),
        }
    }
    Err(ImageError::Corrupt(path.into(), "symlink loop".into()))
}
