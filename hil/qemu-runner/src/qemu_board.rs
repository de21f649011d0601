//! A QEMU board: the [`Board`] implementation.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use board::{Board, BoardError, Capabilities, Console, SshEndpoint};
use card::Card;

use crate::MachineArgs;
use crate::firmware::{BootPlan, BootVerifier, UnsignedFirmware};
use crate::process::QemuProcess;
use crate::qmp::{Qmp, forwarded_ports};

/// The guest port of the production sshd.
const SSH_PORT: u16 = 22;
/// The guest port of the test-only maintenance sshd.
const MAINTENANCE_PORT: u16 = 2222;

/// How to build a QEMU board.
#[derive(Clone)]
pub struct QemuBoardConfig {
    /// The board's name.
    pub name: String,
    /// The board's serial (a Pi's CPU serial).
    pub board_serial: String,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// QEMU CPU model.
    pub cpu: String,
    /// Where the transcript, QEMU's log and the booted files go.
    pub work_dir: PathBuf,
    /// The guest's ssh host public key (checked strictly by every ssh session).
    pub host_key: String,
    /// The test-only maintenance key (none: no maintenance channel).
    pub maintenance_key: Option<PathBuf>,
    /// The Zymkey emulator's guest socket (none: no module on the header).
    pub zymkey_socket: Option<PathBuf>,
    /// The boot firmware (signed boot plugs in here).
    pub firmware: Arc<dyn BootVerifier>,
    /// The QEMU binary.
    pub qemu: String,
}

impl std::fmt::Debug for QemuBoardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuBoardConfig")
            .field("name", &self.name)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl QemuBoardConfig {
    /// A Pi-like board named `name` working in `work_dir`, for an image with `host_key`.
    pub fn new(name: &str, work_dir: impl Into<PathBuf>, host_key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            board_serial: format!("10000000{:08x}", fnv(name)),
            memory_mib: 512,
            cpu: "cortex-a72".into(),
            work_dir: work_dir.into(),
            host_key: host_key.into(),
            maintenance_key: None,
            zymkey_socket: None,
            firmware: Arc::new(UnsignedFirmware),
            qemu: "qemu-system-aarch64".into(),
        }
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

struct Running {
    process: QemuProcess,
    qmp: Qmp,
    ports: BTreeMap<u16, u16>,
    _sockets: tempfile::TempDir,
}

/// A board that is one QEMU process while powered.
pub struct QemuBoard {
    config: QemuBoardConfig,
    card: Option<Card>,
    console: Console,
    running: Option<Running>,
    last_plan: Option<BootPlan>,
}

/// How long a maintenance command may take unless the caller says otherwise.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(60);

impl QemuBoard {
    /// Runs a command over the test-only maintenance channel, giving up after `timeout` (the
    /// [`Board::maintenance_exec`] of the trait allows 60 s); its stdout on success.
    pub fn maintenance_exec_for(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<String, BoardError> {
        let key = self
            .config
            .maintenance_key
            .as_ref()
            .ok_or_else(|| BoardError::Unsupported {
                board: self.config.name.clone(),
                what: "use a maintenance channel (production image)".into(),
            })?;
        let endpoint = self
            .endpoint(MAINTENANCE_PORT)
            .ok_or_else(|| self.state_error("not powered"))?;
        board::ssh::exec_with_key(
            &endpoint,
            key,
            command,
            timeout,
            &self.config.work_dir.join("maintenance"),
        )
    }

    /// A powered-off board with an empty card slot.
    pub fn new(config: QemuBoardConfig) -> Result<Self, BoardError> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(BoardError::io("creating board directory", &config.work_dir))?;
        let console = Console::new(Some(&config.work_dir.join("console.log")))?;
        Ok(Self {
            config,
            card: None,
            console,
            running: None,
            last_plan: None,
        })
    }

    /// The board's configuration.
    pub fn config(&self) -> &QemuBoardConfig {
        &self.config
    }

    /// Connects the board's Zymkey header to another module's guest socket, or leaves it empty
    /// (`None`): a module moved between boards. The board must be off.
    pub fn set_zymkey_socket(&mut self, socket: Option<PathBuf>) -> Result<(), BoardError> {
        if self.is_powered() {
            return Err(self.state_error("cannot re-seat a Zymkey while powered"));
        }
        self.config.zymkey_socket = socket;
        Ok(())
    }

    /// QEMU's pid while powered.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.process.pid())
    }

    /// What the firmware booted last.
    pub fn last_boot_plan(&self) -> Option<&BootPlan> {
        self.last_plan.as_ref()
    }

    /// Plugs a USB device whose device side speaks usb-redir on the unix socket `socket` into the
    /// board's xHCI bus (QMP `chardev-add` + `device_add`), as `id`. QEMU connects to the socket
    /// and keeps retrying if the device side is not listening yet.
    pub fn plug_usb_redir(&mut self, id: &str, socket: &Path) -> Result<(), BoardError> {
        let name = self.config.name.clone();
        let running = self.running.as_mut().ok_or_else(|| BoardError::State {
            board: name.clone(),
            reason: "not powered".into(),
        })?;
        let qmp_err = |e: String| BoardError::Emulator {
            what: format!("board {name}: USB plug"),
            detail: e,
        };
        let chardev = format!("chr-{id}");
        running
            .qmp
            .execute(
                "chardev-add",
                serde_json::json!({"id": chardev, "backend": {"type": "socket", "data": {
                    "addr": {"type": "unix", "data": {"path": socket.to_string_lossy()}},
                    "server": false, "reconnect-ms": 200}}}),
            )
            .map_err(qmp_err)?;
        running
            .qmp
            .execute("device_add", serde_json::json!({"driver": "usb-redir", "chardev": chardev, "id": id, "bus": "xhci.0"}))
            .map_err(qmp_err)?;
        self.console.note(&format!("USB device {id} plugged"));
        Ok(())
    }

    /// Unplugs the USB device `id` (QMP `device_del`; its chardev goes with it): a real USB
    /// disconnect as the guest sees it.
    pub fn unplug_usb(&mut self, id: &str) -> Result<(), BoardError> {
        let name = self.config.name.clone();
        let running = self.running.as_mut().ok_or_else(|| BoardError::State {
            board: name.clone(),
            reason: "not powered".into(),
        })?;
        running
            .qmp
            .execute("device_del", serde_json::json!({"id": id}))
            .map_err(|e| BoardError::Emulator {
                what: format!("board {name}: USB unplug"),
                detail: e,
            })?;
        self.console.note(&format!("USB device {id} unplugged"));
        Ok(())
    }

    /// Throttles the card's I/O to `bytes_per_second` (reads and writes together; 0 lifts the
    /// limit) with QMP `block_set_io_throttle` on the running board: a slow card, so that a
    /// power cut lands in the middle of a long write (e.g. in-place encryption). The limit
    /// lasts until the board powers off.
    pub fn throttle_card(&mut self, bytes_per_second: u64) -> Result<(), BoardError> {
        let name = self.config.name.clone();
        let running = self.running.as_mut().ok_or_else(|| BoardError::State {
            board: name.clone(),
            reason: "not powered".into(),
        })?;
        running
            .qmp
            .execute(
                "block_set_io_throttle",
                serde_json::json!({"device": "card", "bps": bytes_per_second, "bps_rd": 0,
                    "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}),
            )
            .map_err(|e| BoardError::Emulator {
                what: format!("board {name}: card throttle"),
                detail: e,
            })?;
        self.console
            .note(&format!("card throttled to {bytes_per_second} bytes/s"));
        Ok(())
    }

    fn state_error(&self, reason: &str) -> BoardError {
        BoardError::State {
            board: self.config.name.clone(),
            reason: reason.into(),
        }
    }

    fn emulator_error(&self, what: &str, log: &Path) -> BoardError {
        let stderr = std::fs::read_to_string(log).unwrap_or_default();
        BoardError::Emulator {
            what: format!("board {}: {what}", self.config.name),
            detail: format!(
                "QEMU stderr:\n{}\nlast console lines:\n{}",
                stderr.trim(),
                self.console.tail(15)
            ),
        }
    }

    fn endpoint(&self, guest_port: u16) -> Option<SshEndpoint> {
        let running = self.running.as_ref()?;
        Some(SshEndpoint {
            host: "127.0.0.1".into(),
            port: *running.ports.get(&guest_port)?,
            host_key: self.config.host_key.clone(),
        })
    }

    fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.process.kill();
        }
    }
}

/// Connects to a unix socket QEMU is about to create, while QEMU is alive.
fn connect_when_ready(
    path: &Path,
    process: &mut QemuProcess,
    timeout: Duration,
) -> Option<UnixStream> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && process.running() {
        if let Ok(stream) = UnixStream::connect(path) {
            return Some(stream);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Board for QemuBoard {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            power_cut: true,
            card_handling: true,
            maintenance_channel: self.config.maintenance_key.is_some(),
        }
    }

    fn power_on(&mut self) -> Result<(), BoardError> {
        if self.is_powered() {
            return Err(self.state_error("already powered on"));
        }
        let card = self.card.as_ref().ok_or_else(|| {
            self.state_error("no card in the slot: the firmware has nothing to boot")
        })?;
        let boot_dir = self.config.work_dir.join("boot");
        std::fs::create_dir_all(&boot_dir).map_err(BoardError::io("creating", &boot_dir))?;
        let plan = match self.config.firmware.plan(card, &boot_dir) {
            Ok(plan) => plan,
            Err(e) => {
                self.console.note(&format!("firmware: {e}"));
                return Err(BoardError::Emulator {
                    what: format!("board {}: firmware", self.config.name),
                    detail: e.to_string(),
                });
            }
        };
        self.console.note(&format!(
            "power on; firmware boots {} with cmdline: {}",
            plan.files.join(", "),
            plan.cmdline
        ));

        let sockets = tempfile::Builder::new()
            .prefix("kb-")
            .tempdir()
            .map_err(BoardError::io("creating socket dir", std::env::temp_dir()))?;
        let machine = MachineArgs {
            memory_mib: self.config.memory_mib,
            cpu: self.config.cpu.clone(),
            kernel: plan.kernel.clone(),
            initramfs: plan.initramfs.clone(),
            cmdline: plan.cmdline.clone(),
            card: card.path().to_path_buf(),
            card_serial: card.serial().to_string(),
            board_serial: self.config.board_serial.clone(),
            console_socket: sockets.path().join("con"),
            qmp_socket: sockets.path().join("qmp"),
            zymkey_socket: self.config.zymkey_socket.clone(),
            forwarded_ports: vec![SSH_PORT, MAINTENANCE_PORT],
            debug_socket: plan.debug_port.then(|| sockets.path().join("jtag")),
        };
        let log = self.config.work_dir.join("qemu.log");
        let mut process =
            QemuProcess::spawn(&self.config.qemu, &machine.to_args(), &log).map_err(|e| {
                BoardError::Emulator {
                    what: format!("board {}: starting {}", self.config.name, self.config.qemu),
                    detail: format!("{e} (install qemu-system-arm: scripts/setup)"),
                }
            })?;
        let Some(console) = connect_when_ready(
            &machine.console_socket,
            &mut process,
            Duration::from_secs(20),
        ) else {
            drop(process);
            return Err(self.emulator_error("QEMU exited or never opened its console", &log));
        };
        let writer = console
            .try_clone()
            .map_err(BoardError::io("console socket", &machine.console_socket))?;
        self.console.attach(console, writer);
        let Some(qmp_stream) =
            connect_when_ready(&machine.qmp_socket, &mut process, Duration::from_secs(20))
        else {
            drop(process);
            return Err(self.emulator_error("QEMU exited or never opened QMP", &log));
        };
        let mut qmp = Qmp::connect(qmp_stream)
            .map_err(|e| self.emulator_error(&format!("QMP: {e}"), &log))?;
        let usernet = qmp
            .hmp("info usernet")
            .map_err(|e| self.emulator_error(&format!("QMP: {e}"), &log))?;
        let ports: BTreeMap<u16, u16> = forwarded_ports(&usernet)
            .into_iter()
            .map(|(host, guest)| (guest, host))
            .collect();
        self.last_plan = Some(plan);
        if let Some(debug) = &machine.debug_socket {
            self.console.firmware(
                "enable_jtag_gpio=1: JTAG debug port open on the GPIO header (QEMU's gdb stub)",
            );
            self.console.note(&crate::debug_port::probe(debug));
        }
        self.running = Some(Running {
            process,
            qmp,
            ports,
            _sockets: sockets,
        });
        Ok(())
    }

    fn power_off(&mut self) -> Result<(), BoardError> {
        if !self.is_powered() {
            self.stop();
            return Ok(());
        }
        self.console.note("clean power off requested");
        if self.config.maintenance_key.is_some() {
            // The connection drops as the guest halts: the result of this call is not the signal.
            let _ = self.maintenance_exec("poweroff");
        } else if let Some(running) = self.running.as_mut() {
            let _ = running
                .qmp
                .execute("system_powerdown", serde_json::json!({}));
        }
        let stopped = self
            .running
            .as_mut()
            .is_some_and(|r| r.process.wait_exit(Duration::from_secs(30)));
        if !stopped {
            self.console
                .note("guest did not power off within 30 s: cutting power");
        }
        self.stop();
        Ok(())
    }

    fn power_cut(&mut self) -> Result<(), BoardError> {
        self.console.note("power cut");
        self.stop();
        Ok(())
    }

    fn is_powered(&mut self) -> bool {
        let alive = self.running.as_mut().is_some_and(|r| r.process.running());
        if !alive && self.running.is_some() {
            self.console.note("board powered off");
            self.stop();
        }
        alive
    }

    fn console(&self) -> &Console {
        &self.console
    }

    fn insert_card(&mut self, card: Card) -> Result<(), BoardError> {
        if self.is_powered() {
            return Err(self.state_error("cannot change cards while powered"));
        }
        if self.card.is_some() {
            return Err(self.state_error("the slot already holds a card"));
        }
        self.card = Some(card);
        Ok(())
    }

    fn remove_card(&mut self) -> Result<Card, BoardError> {
        if self.is_powered() {
            return Err(self.state_error("cannot pull the card while powered"));
        }
        self.card
            .take()
            .ok_or_else(|| self.state_error("the slot is empty"))
    }

    fn card(&self) -> Option<&Card> {
        self.card.as_ref()
    }

    fn ssh(&self) -> Option<SshEndpoint> {
        self.endpoint(SSH_PORT)
    }

    fn maintenance_exec(&self, command: &str) -> Result<String, BoardError> {
        self.maintenance_exec_for(command, MAINTENANCE_TIMEOUT)
    }
}

impl Drop for QemuBoard {
    fn drop(&mut self) {
        self.stop();
    }
}
