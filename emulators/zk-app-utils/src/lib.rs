//! Drop-in `libzk_app_utils.so` for guests: Zymbit's documented C API ([`ffi`]), each call
//! forwarded over the virtio-serial port `io.keybound.zymkey` ([`transport`]) to the
//! `zymkey-emu` daemon, in the guest wire protocol ([`wire`]) with our return codes ([`codes`]).

pub mod codes;
pub mod ffi;
pub mod transport;
pub mod wire;
