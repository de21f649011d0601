//! TEST-ONLY: the attacker's side of the threat matrix (DESIGN.md §7), so "risk" rows can show
//! the risk instead of asserting it. Nothing here is production code and nothing here goes on a
//! production card; `guest_image::attacker_initramfs` packs it into the initramfs an attacker
//! swaps onto an unsigned boot partition.
//!
//! [`header`] reads a LUKS2 header with no library (binary header, checksum, JSON area) and
//! [`unseal`] does what an attacker who copied keybound-init's open logic does: take the
//! `keybound-zymkey` token's blob, have the board's Zymkey unlock it, and decode the sealed
//! payload into the keyslot passphrase.

pub mod header;
pub mod unseal;

pub use header::{HeaderError, Luks2Header, read_header};
pub use unseal::{UnsealError, passphrase_hex, unseal_passphrase};
