//! The strategy: one board of a rig with its drivers, reaching states the way a lab engineer
//! would. Boot = relay on, then the console milestones every target waits for
//! ([`board::milestones`]); clean off = ask the board to halt, see it halt on the console, then
//! relay off; cut = relay off, nothing asked; card access = board off, SD mux to the controller,
//! edit, SD mux back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use board::milestones::{self, BootEnd};
use board::{Console, Mark, SshEndpoint};

use crate::RigError;
use crate::gpio::{OutputLine, SharedGpio};
use crate::power::{PowerRelay, RelayState};
use crate::rigfile::BoardResources;
use crate::sdmux::{MuxedCard, SdMux};
use crate::serial::SerialConsole;
use crate::token_port::TokenPort;

/// What the kernel prints as the board halts (`poweroff`, or keybound-init powering off).
pub const HALTED: &str = r"reboot: Power down|reboot: System halted|System halted";

/// How long a clean power-off waits for the halt line before cutting.
const HALT_WAIT: Duration = Duration::from_secs(30);

/// How a boot on a rig ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RigBoot {
    /// Up: sshd ready.
    Up,
    /// keybound-init refused to unlock, with its reason.
    Sealed {
        /// The reason it stated.
        reason: String,
    },
    /// The board halted before coming up.
    Off,
}

/// One board of a rig with its drivers.
pub struct RigBoard {
    name: String,
    resources: BoardResources,
    rig_dir: PathBuf,
    work_dir: PathBuf,
    console: Console,
    serial: Option<SerialConsole>,
    relay: Option<Arc<Mutex<PowerRelay>>>,
    mux: Option<SdMux>,
    ports: BTreeMap<String, TokenPort>,
    /// The console position at the last power-on (halt lines are looked for after it).
    powered_at: Option<Mark>,
}

impl std::fmt::Debug for RigBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RigBoard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn lock(relay: &Mutex<PowerRelay>) -> std::sync::MutexGuard<'_, PowerRelay> {
    relay.lock().unwrap_or_else(|e| e.into_inner())
}

impl RigBoard {
    /// Takes charge of board `name`: relay off, SD mux to the board, every token port off (a
    /// known start). The console transcript goes to `work_dir/console.log`; relative paths of the
    /// rig file are resolved from `rig_dir`. The serial port is opened at the first power-on.
    pub fn new(
        name: &str,
        resources: &BoardResources,
        gpio: &SharedGpio,
        rig_dir: &Path,
        work_dir: &Path,
    ) -> Result<Self, RigError> {
        std::fs::create_dir_all(work_dir).map_err(RigError::io("creating", work_dir))?;
        let console = Console::new(Some(&work_dir.join("console.log")))?;
        let relay = resources
            .power
            .as_ref()
            .map(|p| {
                PowerRelay::new(OutputLine::new(gpio.clone(), p.relay.clone()), p.off_time())
                    .map(|r| Arc::new(Mutex::new(r)))
            })
            .transpose()?;
        let mux = resources
            .sd_mux
            .as_ref()
            .map(|m| SdMux::new(m, gpio))
            .transpose()?;
        let mut ports = BTreeMap::new();
        for (key, resource) in resources.token_ports.iter().flatten() {
            let mut port = TokenPort::new(key, resource, gpio);
            port.set(false)?;
            ports.insert(key.clone(), port);
        }
        Ok(Self {
            name: name.to_string(),
            resources: resources.clone(),
            rig_dir: rig_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            console,
            serial: None,
            relay,
            mux,
            ports,
            powered_at: None,
        })
    }

    /// The board's name in the rig file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the rig file says about it.
    pub fn resources(&self) -> &BoardResources {
        &self.resources
    }

    /// The console (transcript and expect API).
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// The transcript file.
    pub fn transcript(&self) -> PathBuf {
        self.work_dir.join("console.log")
    }

    /// Feeds an already open port into the console instead of opening the rig file's device
    /// (tests use a pseudo-terminal).
    pub fn attach_serial(&mut self, port: serialport::TTYPort) -> Result<(), RigError> {
        let device = self.resources.console.device.clone();
        self.serial = Some(SerialConsole::attach(port, &device, &self.console)?);
        Ok(())
    }

    fn ensure_console(&mut self) -> Result<(), RigError> {
        if self.serial.is_none() || self.console.is_closed() {
            let c = &self.resources.console;
            self.serial = Some(SerialConsole::open(&c.device, c.baud, &self.console)?);
        }
        Ok(())
    }

    fn relay(&self) -> Result<&Arc<Mutex<PowerRelay>>, RigError> {
        self.relay.as_ref().ok_or_else(|| RigError::Missing {
            board: self.name.clone(),
            what: "power relay (power = \"none\")".into(),
        })
    }

    fn relay_on(&self) -> bool {
        self.relay
            .as_ref()
            .is_some_and(|r| lock(r).state() == RelayState::On)
    }

    fn halted_since_power_on(&self) -> bool {
        self.powered_at.is_some_and(|mark| {
            self.console
                .expect_guest_after(mark, HALTED, Duration::ZERO)
                .is_ok()
        })
    }

    /// Powers the board on (re-powering it through the off time if the relay was on); returns
    /// once the relay is on and the console attached, as `Board::power_on` does.
    pub fn power_on(&mut self) -> Result<(), RigError> {
        let relay = Arc::clone(self.relay()?);
        if self
            .mux
            .as_ref()
            .is_some_and(|m| m.side() != crate::sdmux::MuxSide::Dut)
        {
            return Err(RigError::State {
                board: self.name.clone(),
                reason: "the card is on the controller's side of the SD mux".into(),
            });
        }
        self.ensure_console()?;
        self.console.note("power on (relay)");
        let mark = self.console.mark();
        lock(&relay).on()?;
        self.powered_at = Some(mark);
        Ok(())
    }

    /// Waits for the boot's end on the console after `from`: sshd ready, sealed (with the
    /// reason from the whole line), or halted. A boot that stopped (no root, panic) must halt
    /// within 10 s to count as off.
    pub fn wait_boot(&mut self, from: Mark, timeout: Duration) -> Result<RigBoot, RigError> {
        let pattern = format!("{}|{HALTED}", milestones::BOOT_END);
        let (line, at) = self.console.expect_guest_after(from, &pattern, timeout)?;
        if regex_match(HALTED, &line) {
            return Ok(RigBoot::Off);
        }
        let whole = self.console.whole_line_at(at, Duration::from_secs(2));
        let line = if whole.len() > line.len() {
            whole
        } else {
            line
        };
        match milestones::classify(&line) {
            BootEnd::Up => Ok(RigBoot::Up),
            BootEnd::Sealed { reason } => Ok(RigBoot::Sealed { reason }),
            BootEnd::Stopped { line } => {
                match self
                    .console
                    .expect_guest_after(at, HALTED, Duration::from_secs(10))
                {
                    Ok(_) => Ok(RigBoot::Off),
                    Err(_) => Err(RigError::State {
                        board: self.name.clone(),
                        reason: format!(
                            "stopped booting ({line}) but did not halt; last console lines:\n{}",
                            self.console.tail(15)
                        ),
                    }),
                }
            }
        }
    }

    /// Whether the board runs: the relay is on and the board has not halted since power-on
    /// (seen on the console; a rig senses no power draw).
    pub fn is_powered(&mut self) -> bool {
        self.relay_on() && !self.halted_since_power_on()
    }

    /// Clean power-off: `request_halt` asks the board to halt (the maintenance channel's
    /// `poweroff`; its error is only noted, the connection drops as the board halts), the
    /// console must show the halt within 30 s, then the relay goes off. Without a halt in time
    /// the power is cut, and the transcript says so.
    pub fn power_off(
        &mut self,
        request_halt: &mut dyn FnMut() -> Result<(), RigError>,
    ) -> Result<(), RigError> {
        let relay = Arc::clone(self.relay()?);
        if lock(&relay).state() == RelayState::Off {
            return Ok(());
        }
        if !self.halted_since_power_on() {
            self.console.note("clean power off requested");
            let mark = self.console.mark();
            if let Err(e) = request_halt() {
                self.console.note(&format!("halt request: {e}"));
            }
            if self
                .console
                .expect_guest_after(mark, HALTED, HALT_WAIT)
                .is_err()
            {
                self.console
                    .note("board did not halt within 30 s: cutting power");
            }
        }
        self.console.note("relay off");
        lock(&relay).cut()
    }

    /// Cuts power at once: no halt is asked for, writes in flight are lost.
    pub fn power_cut(&mut self) -> Result<(), RigError> {
        let relay = Arc::clone(self.relay()?);
        self.console.note("power cut (relay off)");
        lock(&relay).cut()
    }

    /// A handle that cuts this board's power from another thread (the engine's way out of an
    /// overrun step); does nothing for a board without a relay.
    pub fn kill_switch(&self) -> Arc<dyn Fn() + Send + Sync> {
        let relay = self.relay.clone();
        Arc::new(move || {
            if let Some(r) = &relay {
                let _ = lock(r).cut();
            }
        })
    }

    /// Runs `f` on the card with the SD mux on the controller's side, then gives the card back
    /// (also when `f` fails). Refused while the board runs; a board that halted with its relay
    /// on is cut first.
    pub fn with_card<T>(
        &mut self,
        f: impl FnOnce(MuxedCard) -> Result<T, RigError>,
    ) -> Result<T, RigError> {
        if self.mux.is_none() {
            return Err(RigError::Missing {
                board: self.name.clone(),
                what: "SD mux".into(),
            });
        }
        if self.relay_on() {
            if !self.halted_since_power_on() {
                return Err(RigError::State {
                    board: self.name.clone(),
                    reason: "powered: the SD mux does not take the card from a running board"
                        .into(),
                });
            }
            self.power_cut()?;
        }
        let mux = self.mux.as_mut().ok_or_else(|| RigError::Missing {
            board: self.name.clone(),
            what: "SD mux".into(),
        })?;
        self.console.note("SD mux: card to the controller");
        mux.to_host()?;
        let result = mux.card().and_then(f);
        self.console.note("SD mux: card back to the board");
        let back = mux.to_dut();
        let value = result?;
        back?;
        Ok(value)
    }

    /// Powers a token port on or off (the key appears to or leaves the board).
    pub fn set_token_port(&mut self, key: &str, on: bool) -> Result<(), RigError> {
        let port = self.ports.get_mut(key).ok_or_else(|| RigError::Missing {
            board: self.name.clone(),
            what: format!("token port {key}"),
        })?;
        self.console.note(&format!(
            "token port {key}: {}",
            if on { "power on" } else { "power off" }
        ));
        port.set(on)
    }

    /// The production sshd, if the rig file names one.
    pub fn ssh(&self) -> Option<SshEndpoint> {
        self.resources.sshd.as_ref().map(|s| SshEndpoint {
            host: s.address.host.clone(),
            port: s.address.port,
            host_key: s.host_key.clone(),
        })
    }

    /// The test-only maintenance channel, if the rig file names one.
    pub fn maintenance(&self) -> Option<Maintenance> {
        let m = self.resources.maintenance.as_ref()?;
        let host_key = m
            .host_key
            .clone()
            .or_else(|| self.resources.sshd.as_ref().map(|s| s.host_key.clone()))
            .unwrap_or_default();
        Some(Maintenance {
            endpoint: SshEndpoint {
                host: m.address.host.clone(),
                port: m.address.port,
                host_key,
            },
            key: self.rig_dir.join(&m.key),
            workdir: self.work_dir.join("maintenance"),
        })
    }

    /// Runs `command` as root over the test-only maintenance sshd.
    pub fn maintenance_exec(&self, command: &str, timeout: Duration) -> Result<String, RigError> {
        self.maintenance()
            .ok_or_else(|| RigError::Missing {
                board: self.name.clone(),
                what: "maintenance channel".into(),
            })?
            .exec(command, timeout)
    }

    /// [`RigBoard::power_off`] with the halt asked for over the maintenance channel (`poweroff`);
    /// without one nothing is asked, and the power is cut after the wait.
    pub fn power_off_clean(&mut self) -> Result<(), RigError> {
        let maintenance = self.maintenance();
        self.power_off(&mut || match &maintenance {
            Some(m) => m.exec("poweroff", Duration::from_secs(20)).map(|_| ()),
            None => Ok(()),
        })
    }
}

/// The test-only maintenance sshd of a board: where it is, the key, the session directory.
#[derive(Debug, Clone)]
pub struct Maintenance {
    endpoint: SshEndpoint,
    key: PathBuf,
    workdir: PathBuf,
}

impl Maintenance {
    /// Runs `command` as root; its stdout.
    pub fn exec(&self, command: &str, timeout: Duration) -> Result<String, RigError> {
        Ok(board::ssh::exec_with_key(
            &self.endpoint,
            &self.key,
            command,
            timeout,
            &self.workdir,
        )?)
    }
}

fn regex_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text))
}

impl Drop for RigBoard {
    fn drop(&mut self) {
        // Nothing is left powered or plugged when the harness lets go of a board.
        if self.relay_on() {
            self.console.note("teardown: power cut (relay off)");
            if let Some(r) = &self.relay {
                let _ = lock(r).cut();
            }
        }
        for port in self.ports.values_mut() {
            if port.is_powered() {
                let _ = port.set(false);
            }
        }
    }
}
