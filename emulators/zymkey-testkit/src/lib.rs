//! Host-test fixture: an in-process zymkey-emu (state dir, control socket, guest socket) and the
//! built drop-in `libzk_app_utils.so`, reached through the production client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use daemon_kit::ControlClient;
use serde_json::{Value, json};
use zymkey::{Library, Zymkey};
use zymkey_emu::Emulator;

/// Finds the drop-in library next to the test binary (cargo test and nextest both put test
/// binaries in target/<profile>/deps, where the cdylib of the zk-app-utils dependency lands);
/// builds it if absent.
pub fn library_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let deps = exe.parent().expect("deps dir").to_path_buf();
        let find = || {
            [
                deps.join("libzk_app_utils.so"),
                deps.join("../libzk_app_utils.so"),
            ]
            .into_iter()
            .find(|p| p.exists())
        };
        if let Some(p) = find() {
            return p;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "zk-app-utils"])
            .status()
            .expect("running cargo build -p zk-app-utils");
        assert!(status.success(), "building libzk_app_utils.so failed");
        find().expect("libzk_app_utils.so after building it")
    })
    .clone()
}

/// The loaded library (once per process).
pub fn library() -> Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| Library::load_from(library_path()).expect("loading the drop-in library"))
        .clone()
}

/// One emulated module served on sockets in a temporary directory.
pub struct Module {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// The model, for direct inspection.
    pub emu: Arc<Emulator>,
    /// The guest socket.
    pub socket: PathBuf,
    /// Control client.
    pub control: Mutex<ControlClient>,
}

impl Module {
    /// A fresh module, attached to board `board` with card `card`.
    pub fn start(board: &str, card: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = daemon_kit::StateDir::open(tmp.path().join("state")).unwrap();
        let emu = Arc::new(Emulator::open(dir).unwrap());
        let control_path = tmp.path().join("control.sock");
        daemon_kit::ControlServer::bind(&control_path, Arc::clone(&emu))
            .unwrap()
            .spawn();
        let socket = tmp.path().join("guest.sock");
        zymkey_emu::guest::GuestServer::bind(&socket, Arc::clone(&emu))
            .unwrap()
            .spawn();
        let control = ControlClient::connect(&control_path, Duration::from_secs(10)).unwrap();
        let m = Self {
            tmp,
            emu,
            socket,
            control: Mutex::new(control),
        };
        m.ctl(json!({"cmd": "attach", "board": board, "card": card}));
        m
    }

    /// Sends a control request that must succeed.
    pub fn ctl(&self, request: Value) -> Value {
        self.try_ctl(request).expect("control request")
    }

    /// Sends a control request.
    pub fn try_ctl(&self, request: Value) -> Result<Value, daemon_kit::ControlError> {
        self.control.lock().unwrap().request(&request)
    }

    /// Opens a production-client context on this module.
    pub fn open(&self) -> zymkey::Result<Zymkey> {
        open_at(&self.socket)
    }

    /// The guest socket (what `KEYBOUND_ZK_SOCKET` names for a client in another process).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Opens a context on the socket at `path` (the environment variable is process-wide, so
/// opening is serialised; the context keeps its endpoint).
pub fn open_at(path: &Path) -> zymkey::Result<Zymkey> {
    static ENV: Mutex<()> = Mutex::new(());
    let lib = library();
    let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: every test that touches this variable holds ENV; nothing else in these test
    // binaries reads it outside zkOpen.
    unsafe { std::env::set_var("KEYBOUND_ZK_SOCKET", path) };
    Zymkey::open(&lib)
}
