//! The microSD card as the harness sees it: the MBR layout ([`CardLayout`]), the FAT boot
//! partition ([`boot_fs`]), and cards as qcow2 overlays ([`Card`]) that can be copied, moved and
//! have their boot files read or edited without mounting anything.

pub mod boot_fs;
mod error;
mod layout;
mod overlay;

pub use error::CardError;
pub use layout::{CardLayout, LUKS2_HEADER_ROOM, PartitionRange, SECTOR};
pub use overlay::Card;
