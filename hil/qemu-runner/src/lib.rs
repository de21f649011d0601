//! One [`board::Board`] = one `qemu-system-aarch64` process plus QMP, booted from a card the way
//! the Raspberry Pi firmware boots it.

mod args;
mod debug_port;
mod emulators;
mod firmware;
mod process;
mod qemu_board;
mod qmp;

pub use args::MachineArgs;
pub use emulators::{VirtualToken, ZymkeyModule, host_tool};
pub use firmware::{
    BootPlan, BootVerifier, FirmwareError, SignCardError, SignedFirmware, UnsignedFirmware,
    sign_card,
};
pub use qemu_board::{QemuBoard, QemuBoardConfig};
