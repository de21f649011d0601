//! Software ZYMKEY4: the device model ([`device`]), its keys ([`keys`]) and blob format
//! ([`blob`]), binding rules ([`binding`]), persistent state ([`state`]), faults ([`faults`]),
//! bus trace ([`trace`]), control commands ([`control`]), the guest wire server ([`guest`]) and
//! the daemon wiring ([`daemon`]). The wire types live in `zk_app_utils::wire`.

pub mod binding;
pub mod blob;
pub mod control;
pub mod daemon;
pub mod device;
pub mod faults;
pub mod guest;
pub mod keys;
pub mod state;
pub mod trace;

pub use daemon::{Daemon, DaemonConfig, capabilities};
pub use device::Emulator;
pub use zk_app_utils::{codes, wire};
