//! A board's emulated hardware outside QEMU: the Zymkey daemon on its GPIO header and the FIDO2
//! token on its USB port. Each emulator is its own process (as swtpm is), started with a
//! readiness pipe and a lifeline, so it dies with the board and can be killed on its own (a
//! crashed or pulled module).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use daemon_kit::{ControlClient, Daemon};
use serde_json::{Value, json};

use board::BoardError;

/// Finds a host-built harness binary (`zymkey-emu`, `virtual-fido`): `$KEYBOUND_<NAME>` (upper
/// case, `-` → `_`), else next to the running executable or one level up (cargo's `deps/`).
pub fn host_tool(name: &str) -> Result<PathBuf, BoardError> {
    let var = format!("KEYBOUND_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return Ok(PathBuf::from(path));
    }
    let exe =
        std::env::current_exe().map_err(BoardError::io("locating the running executable", "."))?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BoardError::Emulator {
            what: format!("{name} not found"),
            detail: format!("build it (cargo build -p {name}) or set {var}"),
        })
}

/// What both emulator handles share: the daemon process, its control socket, its state.
#[derive(Debug)]
struct EmulatorDaemon {
    /// What it is, for error messages ("Zymkey emulator", "virtual token").
    what: &'static str,
    daemon: Daemon,
    control: PathBuf,
    state_dir: PathBuf,
    /// How it was started, to start it again after it died.
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    restarts: u32,
}

impl EmulatorDaemon {
    /// Starts `program --state-dir S --control C ARGS…` and waits until it is ready.
    fn start(
        what: &'static str,
        program: &Path,
        state_dir: &Path,
        control: PathBuf,
        args: &[&std::ffi::OsStr],
    ) -> Result<Self, BoardError> {
        let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.to_os_string()).collect();
        let daemon = Self::spawn(what, program, state_dir, &control, &args, 0)?;
        Ok(Self {
            what,
            daemon,
            control,
            state_dir: state_dir.to_path_buf(),
            program: program.to_path_buf(),
            args,
            restarts: 0,
        })
    }

    /// Spawns the daemon; its log is `STATE_DIR.log` (`STATE_DIR.N.log` after N restarts).
    fn spawn(
        what: &'static str,
        program: &Path,
        state_dir: &Path,
        control: &Path,
        args: &[std::ffi::OsString],
        restarts: u32,
    ) -> Result<Daemon, BoardError> {
        let mut command = Command::new(program);
        command
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--control")
            .arg(control)
            .args(args);
        let log = match restarts {
            0 => state_dir.with_extension("log"),
            n => state_dir.with_extension(format!("{n}.log")),
        };
        Daemon::spawn(command, &log, Duration::from_secs(20)).map_err(|e| BoardError::Emulator {
            what: format!("starting the {what}"),
            detail: e.to_string(),
        })
    }

    /// Starts the daemon again on the same state and sockets if it died; whether it did.
    fn restart_if_dead(&mut self) -> Result<bool, BoardError> {
        if self.daemon.is_running() {
            return Ok(false);
        }
        self.restarts += 1;
        self.daemon = Self::spawn(
            self.what,
            &self.program,
            &self.state_dir,
            &self.control,
            &self.args,
            self.restarts,
        )?;
        Ok(true)
    }

    fn control(&self, request: Value) -> Result<Value, BoardError> {
        let failed = |what: String, e: &dyn std::fmt::Display| BoardError::Emulator {
            what,
            detail: e.to_string(),
        };
        let mut client = ControlClient::connect(&self.control, Duration::from_secs(60))
            .map_err(|e| failed(format!("{} control socket", self.what), &e))?;
        client
            .request(&request)
            .map_err(|e| failed(format!("{} control {request}", self.what), &e))
    }
}

/// A Zymkey emulator daemon serving one module.
#[derive(Debug)]
pub struct ZymkeyModule {
    inner: EmulatorDaemon,
    guest: PathBuf,
}

impl ZymkeyModule {
    /// Starts a module whose state lives in `state_dir` (a new module if empty), with sockets in
    /// `socket_dir` (keep it short: unix socket paths are limited to 108 bytes).
    pub fn start(state_dir: &Path, socket_dir: &Path) -> Result<Self, BoardError> {
        Self::start_program(&host_tool("zymkey-emu")?, state_dir, socket_dir)
    }

    /// Like [`ZymkeyModule::start`] with an explicit `zymkey-emu` binary.
    pub fn start_program(
        program: &Path,
        state_dir: &Path,
        socket_dir: &Path,
    ) -> Result<Self, BoardError> {
        std::fs::create_dir_all(socket_dir).map_err(BoardError::io("creating", socket_dir))?;
        let guest = socket_dir.join("zk-guest");
        let args = [std::ffi::OsStr::new("--guest-socket"), guest.as_os_str()];
        let inner = EmulatorDaemon::start(
            "Zymkey emulator",
            program,
            state_dir,
            socket_dir.join("zk-control"),
            &args,
        )?;
        Ok(Self { inner, guest })
    }

    /// The socket QEMU's virtio-serial port connects to.
    pub fn guest_socket(&self) -> &Path {
        &self.guest
    }

    /// The module's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Sends one control request (see the zymkey-emu README) and returns its result.
    pub fn control(&self, request: Value) -> Result<Value, BoardError> {
        self.inner.control(request)
    }

    /// Seats the module on a board: the host software will measure this board and card.
    pub fn attach(&self, board_serial: &str, card_serial: &str) -> Result<(), BoardError> {
        self.control(json!({"cmd": "attach", "board": board_serial, "card": card_serial}))
            .map(|_| ())
    }

    /// Kills the daemon at once (a module that stops answering).
    pub fn kill(&mut self) {
        self.inner.daemon.kill();
    }

    /// Starts the daemon again on its state directory and sockets if it died (killed, or a
    /// `crash` fault), as power-cycling the board restarts a real module. Whether it did.
    pub fn restart_if_dead(&mut self) -> Result<bool, BoardError> {
        self.inner.restart_if_dead()
    }
}

/// A virtual FIDO2 token daemon (`virtual-fido`), reachable by QEMU's usb-redir device.
#[derive(Debug)]
pub struct VirtualToken {
    inner: EmulatorDaemon,
    usbredir: PathBuf,
}

impl VirtualToken {
    /// Starts a token whose state lives in `state_dir` (a new token if empty), with sockets in
    /// `socket_dir`, presence policy `presence` (`accept`, `deny`, `wait-for-touch`, …).
    pub fn start(state_dir: &Path, socket_dir: &Path, presence: &str) -> Result<Self, BoardError> {
        Self::start_program(&host_tool("virtual-fido")?, state_dir, socket_dir, presence)
    }

    /// Like [`VirtualToken::start_program`], and a presence wait (`timeout`, `wait-for-touch`)
    /// lasts `presence_limit` before the token gives up by itself (virtual-fido's default is
    /// 30 s). A limit longer than the host's own lets a test tell who ended the wait.
    pub fn start_program_with_presence_limit(
        program: &Path,
        state_dir: &Path,
        socket_dir: &Path,
        presence: &str,
        presence_limit: std::time::Duration,
    ) -> Result<Self, BoardError> {
        let limit_ms = presence_limit.as_millis().to_string();
        Self::start_with_args(
            program,
            state_dir,
            socket_dir,
            presence,
            &["--presence-timeout-ms", &limit_ms],
        )
    }

    /// Like [`VirtualToken::start`] with an explicit `virtual-fido` binary.
    pub fn start_program(
        program: &Path,
        state_dir: &Path,
        socket_dir: &Path,
        presence: &str,
    ) -> Result<Self, BoardError> {
        Self::start_with_args(program, state_dir, socket_dir, presence, &[])
    }

    fn start_with_args(
        program: &Path,
        state_dir: &Path,
        socket_dir: &Path,
        presence: &str,
        extra: &[&str],
    ) -> Result<Self, BoardError> {
        std::fs::create_dir_all(socket_dir).map_err(BoardError::io("creating", socket_dir))?;
        let usbredir = socket_dir.join("tok-usb");
        let mut args = vec![
            std::ffi::OsStr::new("--usbredir-socket"),
            usbredir.as_os_str(),
            std::ffi::OsStr::new("--presence"),
            std::ffi::OsStr::new(presence),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let inner = EmulatorDaemon::start(
            "virtual token",
            program,
            state_dir,
            socket_dir.join("tok-control"),
            &args,
        )?;
        Ok(Self { inner, usbredir })
    }

    /// The usb-redir socket QEMU connects to when the token is plugged.
    pub fn usbredir_socket(&self) -> &Path {
        &self.usbredir
    }

    /// The token's state directory (copying its state file clones the token).
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Sends one control request (see the virtual-fido README) and returns its result.
    pub fn control(&self, request: Value) -> Result<Value, BoardError> {
        self.inner.control(request)
    }

    /// Kills the daemon at once.
    pub fn kill(&mut self) {
        self.inner.daemon.kill();
    }
}
