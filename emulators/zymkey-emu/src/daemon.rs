//! Wiring a daemon: state directory, emulator, control socket, guest socket.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::device::{Emulator, StateError};
use crate::guest::GuestServer;

/// Where a daemon keeps its state and listens.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The state directory (locked for the daemon's lifetime).
    pub state_dir: PathBuf,
    /// The control socket path.
    pub control: PathBuf,
    /// The guest socket path (QEMU's virtio-serial chardev connects here).
    pub guest_socket: PathBuf,
}

/// Errors starting a daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// State directory or state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// State directory lock.
    #[error(transparent)]
    Dir(#[from] daemon_kit::StateDirError),
    /// Control socket.
    #[error(transparent)]
    Control(#[from] daemon_kit::ControlError),
    /// Guest socket.
    #[error("guest socket {path}: {source}")]
    Guest {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running daemon (its threads live until the process exits).
pub struct Daemon {
    /// The emulated module.
    pub emulator: Arc<Emulator>,
}

impl Daemon {
    /// Opens the state, binds both sockets and starts serving.
    pub fn start(config: &DaemonConfig) -> Result<Self, DaemonError> {
        let dir = daemon_kit::StateDir::open(&config.state_dir)?;
        let emulator = Arc::new(Emulator::open(dir)?);
        daemon_kit::ControlServer::bind(&config.control, Arc::clone(&emulator))?.spawn();
        GuestServer::bind(&config.guest_socket, Arc::clone(&emulator))
            .map_err(|source| DaemonError::Guest {
                path: config.guest_socket.clone(),
                source,
            })?
            .spawn();
        Ok(Self { emulator })
    }
}

/// What `--print-capabilities` prints.
pub fn capabilities() -> Value {
    json!({
        "type": "zymkey-emu",
        "version": env!("CARGO_PKG_VERSION"),
        "model": "ZYMKEY4",
        "wire": {
            "transport": "unix socket, daemon listens; QEMU virtio-serial chardev connects",
            "port_name": zk_app_utils::transport::PORT_NAME,
            "versions": [zk_app_utils::wire::PROTOCOL_VERSION],
            "max_frame": zk_app_utils::wire::MAX_FRAME,
            "max_lock_plaintext": zk_app_utils::wire::MAX_LOCK_PLAINTEXT,
        },
        "blob": {"format_versions": [crate::blob::VERSION], "aead": "AES-256-GCM", "signature": "ECDSA P-256"},
        "ecdsa_slots": zk_app_utils::wire::ECDSA_SLOTS,
        "perimeter_channels": 2,
        "binding_modes": ["developer", "production"],
        "control_commands": [
            "status", "attach", "detach", "cut-tab", "breach", "tap", "remove-battery",
            "insert-battery", "fault", "bus-trace", "bus-trace-read", "factory-reset",
            "snapshot", "restore"
        ],
        "faults": ["fail", "delay", "bit-flip", "drop", "crash", "spoof", "clear"],
        "unsupported": ["zkLockBinding (HSM only)", "foreign key slots (HSM6 only)"],
    })
}
