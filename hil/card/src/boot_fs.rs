//! The FAT32 boot partition: format it with files, read, list and replace files on it.
//!
//! Works on anything `Read + Write + Seek` holding exactly the partition (a slice of a card file,
//! or the partition copied out of a qcow2 card). Paths are `/`-separated, relative to the root.

use std::io::{Read, Seek, Write};

use crate::CardError;

/// Opens the file system; fatfs wants the volume positioned at its start.
fn open<V: Read + Write + Seek>(mut volume: V) -> Result<fatfs::FileSystem<V>, CardError> {
    volume
        .seek(std::io::SeekFrom::Start(0))
        .map_err(fat_err("seeking"))?;
    fatfs::FileSystem::new(volume, fatfs::FsOptions::new()).map_err(fat_err("opening"))
}

fn fat_err(what: &str) -> impl FnOnce(std::io::Error) -> CardError + '_ {
    move |e| CardError::Fat(format!("{what}: {e}"))
}

/// Formats `volume` as FAT32 (label `bootfs`, as Raspberry Pi OS) and writes `files` into it,
/// creating parent directories.
pub fn format<V: Read + Write + Seek>(
    mut volume: V,
    files: &[(&str, &[u8])],
) -> Result<(), CardError> {
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .volume_label(*b"bootfs     ");
    volume
        .seek(std::io::SeekFrom::Start(0))
        .map_err(fat_err("seeking"))?;
    fatfs::format_volume(&mut volume, options).map_err(fat_err("formatting"))?;
    let fs = open(volume)?;
    for (path, bytes) in files {
        write_in(&fs, path, bytes)?;
    }
    fs.unmount().map_err(fat_err("flushing"))
}

fn write_in<IO: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<IO>,
    path: &str,
    bytes: &[u8],
) -> Result<(), CardError> {
    let mut dir = fs.root_dir();
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let name = parts
        .pop()
        .ok_or_else(|| CardError::Fat(format!("empty file name {path:?}")))?;
    for part in parts {
        dir = match dir.open_dir(part) {
            Ok(d) => d,
            Err(_) => dir
                .create_dir(part)
                .map_err(fat_err("creating a directory"))?,
        };
    }
    let mut file = dir.create_file(name).map_err(fat_err("creating a file"))?;
    file.truncate().map_err(fat_err("truncating a file"))?;
    file.write_all(bytes).map_err(fat_err("writing a file"))?;
    file.flush().map_err(fat_err("writing a file"))
}

/// Reads one file from the partition.
pub fn read<V: Read + Write + Seek>(volume: V, path: &str) -> Result<Vec<u8>, CardError> {
    let fs = open(volume)?;
    let mut file = fs
        .root_dir()
        .open_file(path.trim_start_matches('/'))
        .map_err(|_| CardError::NoSuchBootFile(path.into()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(fat_err("reading a file"))?;
    Ok(bytes)
}

/// Replaces (or creates) one file on the partition.
pub fn write<V: Read + Write + Seek>(volume: V, path: &str, bytes: &[u8]) -> Result<(), CardError> {
    let fs = open(volume)?;
    write_in(&fs, path, bytes)?;
    fs.unmount().map_err(fat_err("flushing"))
}

/// Lists every file on the partition (directories walked), as `/`-separated paths.
pub fn list<V: Read + Write + Seek>(volume: V) -> Result<Vec<String>, CardError> {
    let fs = open(volume)?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry.map_err(fat_err("listing"))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                stack.push((format!("{path}/"), entry.to_dir()));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn volume() -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; 40 << 20])
    }

    #[test]
    fn files_written_at_format_read_back_and_can_be_replaced() {
        let mut vol = volume();
        format(
            &mut vol,
            &[
                ("cmdline.txt", b"console=ttyAMA0\n"),
                ("overlays/x.dtbo", b"dt"),
            ],
        )
        .unwrap();
        assert_eq!(read(&mut vol, "cmdline.txt").unwrap(), b"console=ttyAMA0\n");
        assert_eq!(read(&mut vol, "overlays/x.dtbo").unwrap(), b"dt");
        write(&mut vol, "cmdline.txt", b"init=/bin/sh").unwrap();
        assert_eq!(read(&mut vol, "cmdline.txt").unwrap(), b"init=/bin/sh");
        assert_eq!(
            list(&mut vol).unwrap(),
            vec!["cmdline.txt", "overlays/x.dtbo"]
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let mut vol = volume();
        format(&mut vol, &[]).unwrap();
        match read(&mut vol, "config.txt") {
            Err(CardError::NoSuchBootFile(name)) => assert_eq!(name, "config.txt"),
            other => panic!("{other:?}"),
        }
    }
}
