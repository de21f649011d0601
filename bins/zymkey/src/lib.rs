//! The production client of a Zymbit ZYMKEY4: loads `libzk_app_utils.so` at run time
//! ([`Library`]) and offers safe, typed wrappers on an open context ([`Zymkey`]). This is the
//! only way production code reaches a secure element; it is the same bytes on a Pi (Zymbit's
//! library) and in a QEMU guest (keybound's drop-in library).
//!
//! ```no_run
//! let lib = zymkey::Library::load()?;
//! let zk = zymkey::Zymkey::open(&lib)?;
//! let secret = zk.random_bytes(32)?;
//! let blob = zk.lock(&secret, zymkey::LockKey::OneWay)?;
//! assert_eq!(zk.unlock(&blob, zymkey::LockKey::OneWay)?, secret);
//! # Ok::<(), zymkey::Error>(())
//! ```

mod client;
mod error;
mod library;
mod types;

pub use client::Zymkey;
pub use error::{BlobRejection, Error, Result};
pub use library::{LIBRARY_NAME, Library};
pub use types::{
    AxisReading, AxisSelect, BindingInfo, LockKey, PerimeterActions, PerimeterChannel, Slot,
};
