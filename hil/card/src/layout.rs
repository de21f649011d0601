//! The card's partition layout: MBR, partition 1 FAT32 boot, partition 2 root.

use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};

use crate::CardError;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Where partition 1 starts: 4 MiB, aligned for SD erase blocks as Raspberry Pi OS does.
const FIRST_PARTITION: u64 = 4 << 20;
const MIB: u64 = 1 << 20;

/// A partition's place on the card, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRange {
    /// Offset from the start of the card.
    pub offset: u64,
    /// Length.
    pub size: u64,
}

/// How much of a LUKS2 partition holds its header (both metadata copies and the keyslot area):
/// cryptsetup's default is 16 MiB, keybound's in-place encryption reserves 32 MiB.
pub const LUKS2_HEADER_ROOM: u64 = 32 << 20;

impl PartitionRange {
    /// The start of the partition that holds a LUKS2 header: enough for `cryptsetup luksDump`,
    /// `--test-passphrase` and token reads, without copying the data area.
    pub fn luks2_header(self) -> PartitionRange {
        PartitionRange {
            offset: self.offset,
            size: self.size.min(LUKS2_HEADER_ROOM),
        }
    }
}

/// The card's layout: disk signature (the PARTUUID prefix), boot and root partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardLayout {
    /// The MBR disk signature; partition N's PARTUUID is `{signature:08x}-{N:02x}`.
    pub disk_signature: u32,
    /// Partition 1: FAT32 boot partition.
    pub boot: PartitionRange,
    /// Partition 2: root filesystem.
    pub root: PartitionRange,
}

impl CardLayout {
    /// Plans a card with a boot partition of `boot_mib` MiB and a root partition of at least
    /// `root_bytes` (rounded up to whole MiB).
    pub fn plan(disk_signature: u32, boot_mib: u64, root_bytes: u64) -> Self {
        let boot = PartitionRange {
            offset: FIRST_PARTITION,
            size: boot_mib * MIB,
        };
        let root = PartitionRange {
            offset: boot.offset + boot.size,
            size: root_bytes.div_ceil(MIB) * MIB,
        };
        Self {
            disk_signature,
            boot,
            root,
        }
    }

    /// The whole card's size in bytes.
    pub fn card_size(&self) -> u64 {
        self.root.offset + self.root.size
    }

    /// The root partition's PARTUUID as the kernel and `cmdline.txt` spell it.
    pub fn root_partuuid(&self) -> String {
        format!("{:08x}-02", self.disk_signature)
    }

    /// Writes the MBR (disk signature and the two partitions) at the start of `disk`.
    pub fn write_mbr<D: Read + Write + Seek>(&self, disk: &mut D) -> Result<(), CardError> {
        let fat = |e: mbrman::Error| CardError::Fat(format!("writing the partition table: {e}"));
        let mut mbr = mbrman::MBR::new_from(disk, SECTOR as u32, self.disk_signature.to_le_bytes())
            .map_err(fat)?;
        let entry = |sys, range: PartitionRange, boot: bool| mbrman::MBRPartitionEntry {
            boot: if boot {
                mbrman::BOOT_ACTIVE
            } else {
                mbrman::BOOT_INACTIVE
            },
            first_chs: mbrman::CHS::empty(),
            sys,
            last_chs: mbrman::CHS::empty(),
            starting_lba: (range.offset / SECTOR) as u32,
            sectors: (range.size / SECTOR) as u32,
        };
        mbr[1] = entry(0x0c, self.boot, false);
        mbr[2] = entry(0x83, self.root, false);
        mbr.write_into(disk).map_err(fat)
    }

    /// Reads the layout back from a card's first sector. `what` names the card in errors.
    pub fn read_mbr<D: Read + Seek>(
        disk: &mut D,
        what: &std::path::Path,
    ) -> Result<Self, CardError> {
        let layout_err = |reason: String| CardError::Layout {
            path: what.into(),
            reason,
        };
        let mbr = mbrman::MBR::read_from(disk, SECTOR as u32)
            .map_err(|e| layout_err(format!("no readable MBR: {e}")))?;
        let range = |i: usize| {
            let p = &mbr[i];
            (p.is_used()).then(|| PartitionRange {
                offset: u64::from(p.starting_lba) * SECTOR,
                size: u64::from(p.sectors) * SECTOR,
            })
        };
        let boot = range(1).ok_or_else(|| layout_err("partition 1 (boot) is missing".into()))?;
        let root = range(2).ok_or_else(|| layout_err("partition 2 (root) is missing".into()))?;
        Ok(Self {
            disk_signature: u32::from_le_bytes(mbr.header.disk_signature),
            boot,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    proptest::proptest! {
        #[test]
        fn layout_round_trips_through_the_mbr(sig: u32, boot_mib in 1u64..512, root in 1u64..(1 << 32)) {
            let layout = CardLayout::plan(sig, boot_mib, root);
            let mut disk = Cursor::new(vec![0u8; 4096]);
            layout.write_mbr(&mut disk).unwrap();
            disk.set_position(0);
            let back = CardLayout::read_mbr(&mut disk, "test".as_ref()).unwrap();
            proptest::prop_assert_eq!(back, layout);
            proptest::prop_assert!(layout.root.size >= root);
            proptest::prop_assert_eq!(layout.root.offset, layout.boot.offset + layout.boot.size);
        }
    }

    #[test]
    fn partuuid_is_signature_then_partition_number() {
        assert_eq!(
            CardLayout::plan(0xdead_beef, 1, 1).root_partuuid(),
            "deadbeef-02"
        );
    }

    #[test]
    fn a_blank_disk_has_no_layout() {
        let mut disk = Cursor::new(vec![0u8; 4096]);
        assert!(matches!(
            CardLayout::read_mbr(&mut disk, "blank".as_ref()),
            Err(CardError::Layout { .. })
        ));
    }
}
