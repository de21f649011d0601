//! Real Raspberry Pi rigs, labgrid-style: what hardware exists ([`rigfile`], the resources read
//! from a rig file) apart from how to use it (drivers: [`gpio`], [`power`], [`serial`],
//! [`sdmux`], [`token_port`]) apart from how to reach a state ([`strategy`]: boot, clean off,
//! cut, card access through the SD mux).
//!
//! The scenario engine's rig target (`keybound-lab run --target rig:NAME`) is built on this
//! crate; what a rig cannot do (move a Zymkey, fault it, clone a key…) is decided there, before
//! anything powers on.

pub mod gpio;
pub mod power;
pub mod rigfile;
pub mod sdmux;
pub mod serial;
pub mod strategy;
pub mod switch;
pub mod token_port;

mod error;

pub use error::RigError;
pub use rigfile::{RigFile, RigFileError};
pub use strategy::{RigBoard, RigBoot};
