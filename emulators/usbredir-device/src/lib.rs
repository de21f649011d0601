//! Device side of the usbredir protocol: a software USB HID device that a QEMU guest sees on
//! its USB bus through `-device usb-redir,chardev=...`.
//!
//! Layers, each usable alone:
//! - [`wire`]: typed usbredir messages and framing (no USB semantics, never panics on input);
//! - [`descriptors`] and the control-request answers: a full-speed HID device with one
//!   interface and interrupt IN/OUT endpoints (64-byte packets, bInterval 1);
//! - [`session`]: the sans-I/O state machine of one connection;
//! - [`server`]: a unix-socket server that runs a [`HidDevice`] for one connection at a time.
//!
//! The application implements [`HidDevice`]; it sees output reports and pushes input reports
//! through an [`InputReports`] handle.

mod control;
pub mod descriptors;
mod device;
pub mod server;
pub mod session;
pub mod wire;

pub use descriptors::{DescriptorError, Descriptors, HidIdentity};
pub use device::{HidDevice, InputError, InputReports};
pub use server::{DeviceServer, ServerError, ServerHandle};
pub use session::{Event, Session, SessionError};
