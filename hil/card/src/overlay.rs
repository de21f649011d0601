//! Cards as qcow2 overlays: cheap copies and moves, boot files read and edited through qemu-img.

use std::fs::{self, File};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{CardError, CardLayout, PartitionRange, boot_fs};

/// A card: a qcow2 file, usually an overlay over a base image in the image cache.
///
/// A card must not be in a running board while it is copied or edited; qemu-img's image locking
/// refuses such access with an error rather than corrupting anything.
#[derive(Debug)]
pub struct Card {
    path: PathBuf,
    serial: String,
}

fn qemu_img(args: &[&str]) -> Result<(), CardError> {
    let out = Command::new("qemu-img").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CardError::NoQemuImg
        } else {
            CardError::QemuImg {
                args: args.join(" "),
                stderr: e.to_string(),
            }
        }
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CardError::QemuImg {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CardError> {
    std::path::absolute(path).map_err(CardError::io("resolving", path))
}

impl Card {
    /// Makes a new card at `path`: a qcow2 overlay over `base` (format `raw` or `qcow2`). Writes
    /// to the card never touch `base`.
    pub fn overlay(
        base: &Path,
        base_format: &str,
        path: impl Into<PathBuf>,
    ) -> Result<Self, CardError> {
        let path = absolute(&path.into())?;
        let base = absolute(base)?;
        let (base_s, path_s) = (base.to_string_lossy(), path.to_string_lossy());
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            &base_s,
            "-F",
            base_format,
            &path_s,
        ])?;
        let serial = serial_for(&path);
        Ok(Self { path, serial })
    }

    /// Opens an existing qcow2 card.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, CardError> {
        let path = absolute(&path.into())?;
        fs::metadata(&path).map_err(CardError::io("opening card", &path))?;
        let serial = serial_for(&path);
        Ok(Self { path, serial })
    }

    /// The card's qcow2 file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The card's serial number (an SD card's CID serial): it moves with the card; a copy made on
    /// another card has its own.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Reports another serial, as an attacker's writable-CID card can.
    pub fn set_serial(&mut self, serial: impl Into<String>) {
        self.serial = serial.into();
    }

    /// Copies `range` of the card into the raw file `out`.
    pub fn read_range(&self, range: PartitionRange, out: &Path) -> Result<(), CardError> {
        let opts = self.range_opts(range);
        qemu_img(&[
            "convert",
            "--image-opts",
            &opts,
            "-O",
            "raw",
            &out.to_string_lossy(),
        ])
    }

    /// Writes the raw file `from` (exactly `range.size` bytes) over `range` of the card.
    pub fn write_range(&self, range: PartitionRange, from: &Path) -> Result<(), CardError> {
        let opts = self.range_opts(range);
        qemu_img(&[
            "convert",
            "-n",
            "-f",
            "raw",
            &from.to_string_lossy(),
            "--target-image-opts",
            &opts,
        ])
    }

    fn range_opts(&self, range: PartitionRange) -> String {
        // Commas in a path must be doubled in QEMU option strings.
        let file = self.path.to_string_lossy().replace(',', ",,");
        format!(
            "driver=raw,offset={},size={},file.driver=qcow2,file.file.filename={file}",
            range.offset, range.size
        )
    }

    /// Reads the card's partition table.
    pub fn layout(&self) -> Result<CardLayout, CardError> {
        let tmp = TempFile::new(&self.path, "mbr")?;
        self.read_range(
            PartitionRange {
                offset: 0,
                size: crate::SECTOR,
            },
            &tmp.0,
        )?;
        let bytes = fs::read(&tmp.0).map_err(CardError::io("reading", &tmp.0))?;
        CardLayout::read_mbr(&mut Cursor::new(bytes), &self.path)
    }

    /// Copies the boot partition out to the raw file `out` and returns the layout.
    pub fn export_boot_partition(&self, out: &Path) -> Result<CardLayout, CardError> {
        let layout = self.layout()?;
        self.read_range(layout.boot, out)?;
        Ok(layout)
    }

    /// Reads one file from the boot partition, as the Pi firmware or a card reader would.
    pub fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, CardError> {
        let tmp = TempFile::new(&self.path, "boot")?;
        self.export_boot_partition(&tmp.0)?;
        let mut file = tmp.open()?;
        boot_fs::read(&mut file, name)
    }

    /// Lists the files on the boot partition.
    pub fn list_boot_files(&self) -> Result<Vec<String>, CardError> {
        let tmp = TempFile::new(&self.path, "boot")?;
        self.export_boot_partition(&tmp.0)?;
        boot_fs::list(&mut tmp.open()?)
    }

    /// Replaces (or creates) one file on the boot partition, as a customer with a card reader
    /// could.
    pub fn write_boot_file(&self, name: &str, bytes: &[u8]) -> Result<(), CardError> {
        let tmp = TempFile::new(&self.path, "boot")?;
        let layout = self.export_boot_partition(&tmp.0)?;
        boot_fs::write(&mut tmp.open()?, name, bytes)?;
        self.write_range(layout.boot, &tmp.0)
    }

    /// Writes the whole card as one raw image (for host-side scans and `cryptsetup`).
    pub fn export_raw(&self, out: &Path) -> Result<(), CardError> {
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            &self.path.to_string_lossy(),
            "-O",
            "raw",
            &out.to_string_lossy(),
        ])
    }

    /// Copies the card to `dest`: both this card and the copy become overlays over a frozen
    /// snapshot of the current content, so later writes to either never reach the other.
    pub fn copy_to(&mut self, dest: impl Into<PathBuf>) -> Result<Card, CardError> {
        let dest = absolute(&dest.into())?;
        let frozen = self.frozen_name()?;
        fs::rename(&self.path, &frozen).map_err(CardError::io("freezing card", &self.path))?;
        let mut mine = Card::overlay(&frozen, "qcow2", self.path.clone())?;
        mine.serial = std::mem::take(&mut self.serial);
        let copy = Card::overlay(&frozen, "qcow2", dest)?;
        *self = mine;
        Ok(copy)
    }

    fn frozen_name(&self) -> Result<PathBuf, CardError> {
        let stem = self
            .path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        (0u32..)
            .map(|n| self.path.with_file_name(format!("{stem}.frozen{n}.qcow2")))
            .find(|p| !p.exists())
            .ok_or_else(|| CardError::Layout {
                path: self.path.clone(),
                reason: "no free snapshot name".into(),
            })
    }

    /// Moves the card file to `dest` (a card pulled from one board and put in another).
    pub fn move_to(self, dest: impl Into<PathBuf>) -> Result<Card, CardError> {
        let dest = absolute(&dest.into())?;
        fs::rename(&self.path, &dest).map_err(CardError::io("moving card", &self.path))?;
        Ok(Card {
            path: dest,
            serial: self.serial,
        })
    }
}

/// A card serial derived from the card file's path: stable for a card, distinct between cards.
fn serial_for(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    format!("SD{:08X}", h.finish() as u32)
}

/// A scratch file next to the card, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(card: &Path, what: &str) -> Result<Self, CardError> {
        let dir = card.parent().unwrap_or(Path::new("."));
        let name = format!(
            ".{}.{what}.{}.{:?}.tmp",
            card.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], "");
        Ok(Self(dir.join(name)))
    }

    fn open(&self) -> Result<File, CardError> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.0)
            .map_err(CardError::io("opening", &self.0))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// A small raw card with the keybound layout and a boot partition holding cmdline.txt.
    fn raw_card(dir: &Path) -> PathBuf {
        let path = dir.join("base.img");
        let layout = CardLayout::plan(0x1234_5678, 40, 1 << 20);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(layout.card_size()).unwrap();
        layout.write_mbr(&mut file).unwrap();
        let slice = fscommon::StreamSlice::new(
            &mut file,
            layout.boot.offset,
            layout.boot.offset + layout.boot.size,
        )
        .unwrap();
        boot_fs::format(slice, &[("cmdline.txt", b"console=ttyAMA0 quiet\n")]).unwrap();
        file.seek(SeekFrom::Start(layout.root.offset)).unwrap();
        file.write_all(b"ROOTDATA").unwrap();
        path
    }

    #[test]
    fn overlay_reads_layout_and_boot_files_and_edits_leave_the_base_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let base = raw_card(tmp.path());
        let base_bytes = fs::read(&base).unwrap();
        let card = Card::overlay(&base, "raw", tmp.path().join("card.qcow2")).unwrap();
        assert_eq!(card.layout().unwrap().root_partuuid(), "12345678-02");
        assert_eq!(
            card.read_boot_file("cmdline.txt").unwrap(),
            b"console=ttyAMA0 quiet\n"
        );
        card.write_boot_file("cmdline.txt", b"init=/bin/sh\n")
            .unwrap();
        assert_eq!(
            card.read_boot_file("cmdline.txt").unwrap(),
            b"init=/bin/sh\n"
        );
        assert_eq!(card.list_boot_files().unwrap(), vec!["cmdline.txt"]);
        assert!(
            fs::read(&base).unwrap() == base_bytes,
            "the base image changed"
        );
    }

    #[test]
    fn a_copy_is_independent_of_later_edits_to_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let base = raw_card(tmp.path());
        let mut card = Card::overlay(&base, "raw", tmp.path().join("card.qcow2")).unwrap();
        card.write_boot_file("cmdline.txt", b"before copy").unwrap();
        let copy = card.copy_to(tmp.path().join("copy.qcow2")).unwrap();
        card.write_boot_file("cmdline.txt", b"original after copy")
            .unwrap();
        copy.write_boot_file("cmdline.txt", b"copy after copy")
            .unwrap();
        assert_eq!(
            card.read_boot_file("cmdline.txt").unwrap(),
            b"original after copy"
        );
        assert_eq!(
            copy.read_boot_file("cmdline.txt").unwrap(),
            b"copy after copy"
        );
        assert_ne!(copy.serial(), card.serial(), "a copy is another card");
        let copy_serial = copy.serial().to_string();
        let moved = copy.move_to(tmp.path().join("moved.qcow2")).unwrap();
        assert_eq!(moved.serial(), copy_serial, "a moved card keeps its serial");
        assert_eq!(
            moved.read_boot_file("cmdline.txt").unwrap(),
            b"copy after copy"
        );
        let raw = tmp.path().join("export.raw");
        moved.export_raw(&raw).unwrap();
        let bytes = fs::read(&raw).unwrap();
        let root = moved.layout().unwrap().root.offset as usize;
        assert_eq!(&bytes[root..root + 8], b"ROOTDATA");
    }
}
