//! The QEMU target of the scenario engine: boards are `qemu-runner` boards with a fresh overlay
//! card of the current test image, a Zymkey emulator daemon when the scenario gives them one, and
//! the test-only maintenance channel for harness checks.

use std::any::Any;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use board::{Board, Console, Mark};
use card::Card;
use guest_image::BuiltImage;
use keybound_vendor::boot::BootKey;
use qemu_runner::{QemuBoard, QemuBoardConfig, SignedFirmware, ZymkeyModule};
use scenario::engine::{
    BootOutcome, KillSwitch, LoginFacts, ScenarioBoard, ScenarioCard, Secret, StepError, Target,
    ZymkeyOp,
};
use scenario::{ActionKind, Binding, BoardSpec, CardSlot, ExpectKind, Scenario, Step, ZymkeyFault};
use serde_json::json;

/// What ends a boot on the console: up, sealed (keybound-init's `keybound: sealed: REASON` before
/// it powers off), or given up.
const BOOT_END: &str = r"keybound-guest: sshd ready|keybound(-init)?: sealed.*|keybound-guest: root PARTUUID=.* not found|keybound-guest: mounting .* failed|Kernel panic.*";

/// QEMU boards from the current guest image.
pub(crate) struct QemuTarget {
    image: BuiltImage,
    maintenance_key: PathBuf,
    zymkey_emu: Option<PathBuf>,
    /// The vendor's secure-boot key for this run (made on first use by a signed-boot board).
    boot_key: OnceLock<BootKey>,
}

impl QemuTarget {
    pub(crate) fn new(image: BuiltImage, repo: &Path) -> Self {
        Self {
            image,
            maintenance_key: guest_image::maintenance_key(repo),
            zymkey_emu: qemu_runner::host_tool("zymkey-emu").ok(),
            boot_key: OnceLock::new(),
        }
    }

    /// The run's vendor key for signed boot (RSA-2048, generated once per run).
    fn boot_key(&self) -> Result<&BootKey, StepError> {
        if let Some(key) = self.boot_key.get() {
            return Ok(key);
        }
        let key = BootKey::generate()
            .map_err(|e| StepError::Failed(format!("generating the vendor boot key: {e}")))?;
        Ok(self.boot_key.get_or_init(|| key))
    }
}

fn unsupported_action(kind: ActionKind) -> Option<&'static str> {
    use ActionKind::*;
    match kind {
        Provision => Some("is not wired to `keybound provision` on QEMU boards yet"),
        TokenPlug | TokenUnplug | TokenPresence | TokenClone => {
            Some("needs virtual-fido wired to QEMU boards (usb-redir hot-plug; not built yet)")
        }
        _ => None,
    }
}

impl Target for QemuTarget {
    fn name(&self) -> String {
        "qemu".into()
    }

    fn is_emulated(&self) -> bool {
        true
    }

    fn support(&self, scenario: &Scenario, step: &Step) -> Result<(), String> {
        if let Some(reason) = unsupported_action(step.action.kind()) {
            return Err(format!("`{}` {reason}", step.action.kind()));
        }
        for (_, board) in step.action.boards() {
            let spec = scenario.boards.get(board);
            if spec.is_some_and(|s| s.zymkey.is_some()) && self.zymkey_emu.is_none() {
                return Err("zymkey-emu is not built (cargo build -p zymkey-emu)".into());
            }
        }
        if step
            .expect
            .iter()
            .any(|e| e.kind() == ExpectKind::KeyExfiltrated)
        {
            return Err("host-side proof of an exfiltrated key is not built yet".into());
        }
        Ok(())
    }

    fn create_board(
        &self,
        name: &str,
        spec: &BoardSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioBoard>, StepError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| StepError::Failed(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| failed("creating the board directory", &e))?;
        let mut config = QemuBoardConfig::new(name, dir, self.image.manifest.host_key.clone());
        config.maintenance_key = Some(self.maintenance_key.clone());
        if spec.signed_boot {
            config.firmware = Arc::new(SignedFirmware::new(self.boot_key()?.public_key()));
        }
        let zymkey = match &spec.zymkey {
            None => None,
            Some(z) => {
                let program = self
                    .zymkey_emu
                    .as_ref()
                    .ok_or_else(|| StepError::Unsupported("zymkey-emu is not built".into()))?;
                let sockets = tempfile::Builder::new()
                    .prefix("kbz-")
                    .tempdir()
                    .map_err(|e| failed("socket directory", &e))?;
                let module =
                    ZymkeyModule::start_program(program, &dir.join("zymkey"), sockets.path())?;
                config.zymkey_socket = Some(module.guest_socket().to_path_buf());
                Some((
                    Module {
                        module,
                        _sockets: sockets,
                    },
                    z.binding,
                ))
            }
        };
        let mut board = QemuBoard::new(config)?;
        if spec.card == CardSlot::Fresh {
            let card = Card::overlay(&self.image.card, "raw", dir.join("card.qcow2"))
                .map_err(|e| failed("making the card", &e))?;
            if spec.signed_boot {
                // The vendor signed this card's boot files at the desk: boot.img + boot.sig.
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                qemu_runner::sign_card(&card, self.boot_key()?, ts)
                    .map_err(|e| failed("signing the card's boot image", &e))?;
            }
            board.insert_card(card)?;
        }
        let mut out = QemuScenarioBoard {
            name: name.to_string(),
            board,
            module: None,
            pid: Arc::new(AtomicI32::new(0)),
            refused: false,
        };
        if let Some((module, binding)) = zymkey {
            out.module = Some(module);
            out.zymkey(ZymkeyOp::Attach)?;
            if binding == Binding::Production {
                out.zymkey(ZymkeyOp::CutTab)?;
            }
        }
        Ok(Box::new(out))
    }
}

/// A Zymkey daemon and its socket directory.
struct Module {
    module: ZymkeyModule,
    _sockets: tempfile::TempDir,
}

struct QemuScenarioBoard {
    name: String,
    board: QemuBoard,
    module: Option<Module>,
    /// QEMU's pid while powered (0 otherwise), for the kill switch.
    pid: Arc<AtomicI32>,
    /// The secure-boot ROM refused the card at the last power-on (the board stayed dark).
    refused: bool,
}

/// A card of a QEMU board.
struct QemuCard(Card);

fn card_err(e: card::CardError) -> StepError {
    StepError::Failed(e.to_string())
}

impl ScenarioCard for QemuCard {
    fn serial(&self) -> String {
        self.0.serial().to_string()
    }

    fn copy(&mut self, label: &str) -> Result<Box<dyn ScenarioCard>, StepError> {
        let dir = self
            .0
            .path()
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let copy = self
            .0
            .copy_to(dir.join(format!("{label}.qcow2")))
            .map_err(card_err)?;
        Ok(Box::new(QemuCard(copy)))
    }

    fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, StepError> {
        self.0.read_boot_file(name).map_err(card_err)
    }

    fn write_boot_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), StepError> {
        self.0.write_boot_file(name, bytes).map_err(card_err)
    }

    fn scan(&self, secrets: &[Secret]) -> Result<Vec<String>, StepError> {
        if secrets.is_empty() {
            return Ok(Vec::new());
        }
        let raw = self.0.path().with_extension("scan.raw");
        self.0.export_raw(&raw).map_err(card_err)?;
        let found = scan_file(&raw, secrets);
        let _ = std::fs::remove_file(&raw);
        found.map_err(|e| StepError::Failed(format!("reading the card image: {e}")))
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The forms a secret may take on a card: raw, hex (both cases), base64 at each alignment.
fn needles(secret: &Secret) -> Vec<Vec<u8>> {
    let b = &secret.bytes;
    let mut out = vec![
        b.clone(),
        hex::encode(b).into_bytes(),
        hex::encode_upper(b).into_bytes(),
    ];
    for skip in 0..3 {
        if b.len() > skip + 6 {
            let enc = base64_core(&b[skip..]);
            // The middle of the encoding does not depend on what precedes or follows.
            out.push(enc.as_bytes()[4..enc.len().saturating_sub(4)].to_vec());
        }
    }
    out
}

fn base64_core(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn scan_file(path: &Path, secrets: &[Secret]) -> std::io::Result<Vec<String>> {
    let forms: Vec<(usize, Vec<u8>)> = secrets
        .iter()
        .enumerate()
        .flat_map(|(i, s)| needles(s).into_iter().map(move |n| (i, n)))
        .collect();
    let pattern = forms
        .iter()
        .map(|(_, n)| n.iter().map(|b| format!("\\x{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("|");
    let pattern = format!("(?-u){pattern}");
    let re =
        regex::bytes::Regex::new(&pattern).map_err(|e| std::io::Error::other(e.to_string()))?;
    let overlap = forms.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(8 << 20);
    let mut found = vec![false; secrets.len()];
    let mut chunk = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        for m in re.find_iter(&buf) {
            if let Some((i, _)) = forms.iter().find(|(_, f)| f.as_slice() == m.as_bytes()) {
                found[*i] = true;
            }
        }
        let keep = buf.len().saturating_sub(overlap);
        buf.drain(..keep);
    }
    Ok(secrets
        .iter()
        .zip(found)
        .filter(|(_, f)| *f)
        .map(|(s, _)| s.label.clone())
        .collect())
}

impl QemuScenarioBoard {
    fn module(&self) -> Result<&ZymkeyModule, StepError> {
        self.module
            .as_ref()
            .map(|m| &m.module)
            .ok_or_else(|| StepError::Failed(format!("{} has no Zymkey", self.name)))
    }
}

impl ScenarioBoard for QemuScenarioBoard {
    fn name(&self) -> &str {
        &self.name
    }

    fn board_id(&self) -> String {
        self.board.config().board_serial.clone()
    }

    fn console(&self) -> &Console {
        self.board.console()
    }

    fn transcript(&self) -> Option<PathBuf> {
        Some(self.board.config().work_dir.join("console.log"))
    }

    fn power_on(&mut self) -> Result<(), StepError> {
        if self.module.is_some() {
            // The module's host software measures this board and the card in the slot now.
            self.zymkey(ZymkeyOp::Attach)?;
        }
        self.refused = false;
        match self.board.power_on() {
            Ok(()) => {}
            // Secure boot refused the card: the board stays dark, as a Pi does; the transcript
            // has the ROM's reason (`[harness] firmware: boot refused: …`).
            Err(board::BoardError::Emulator { detail, .. })
                if detail.starts_with("boot refused:") && !self.board.is_powered() =>
            {
                self.refused = true;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(pid) = self.board.qemu_pid() {
            self.pid.store(pid as i32, Ordering::SeqCst);
        }
        Ok(())
    }

    fn wait_boot(&mut self, from: Mark, timeout: Duration) -> Result<BootOutcome, StepError> {
        if self.refused {
            return Ok(BootOutcome::Off);
        }
        match self
            .board
            .console()
            .expect_guest_after(from, BOOT_END, timeout)
        {
            Ok((line, _)) if line.contains("sshd ready") => Ok(BootOutcome::Up),
            Ok((line, _)) if line.contains(": sealed") => Ok(BootOutcome::Sealed {
                reason: line
                    .split_once(": sealed")
                    .map(|(_, r)| r.trim_start_matches([':', ' ']).to_string())
                    .unwrap_or_default(),
            }),
            Ok(_) | Err(board::BoardError::ConsoleClosed { .. }) => {
                // Stopped on its way up: give it a moment to power itself off.
                for _ in 0..100 {
                    if !self.board.is_powered() {
                        return Ok(BootOutcome::Off);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StepError::Failed(format!(
                    "{} stopped booting but did not power off; last console lines:\n{}",
                    self.name,
                    self.board.console().tail(15)
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn power_off(&mut self) -> Result<(), StepError> {
        self.board.power_off()?;
        self.pid.store(0, Ordering::SeqCst);
        Ok(())
    }

    fn power_cut(&mut self) -> Result<(), StepError> {
        self.board.power_cut()?;
        self.pid.store(0, Ordering::SeqCst);
        Ok(())
    }

    fn is_powered(&mut self) -> bool {
        self.board.is_powered()
    }

    fn remove_card(&mut self) -> Result<Box<dyn ScenarioCard>, StepError> {
        Ok(Box::new(QemuCard(self.board.remove_card()?)))
    }

    fn insert_card(&mut self, card: Box<dyn ScenarioCard>) -> Result<(), StepError> {
        let card = card
            .into_any()
            .downcast::<QemuCard>()
            .map_err(|_| StepError::Failed("a card from another target".into()))?;
        self.board.insert_card(card.0)?;
        Ok(())
    }

    fn card_serial(&self) -> Option<String> {
        self.board.card().map(|c| c.serial().to_string())
    }

    fn ssh_login(
        &mut self,
        user: &str,
        answers: &[&str],
        command: &str,
        timeout: Duration,
        workdir: &Path,
    ) -> Result<LoginFacts, StepError> {
        let endpoint = self
            .board
            .ssh()
            .ok_or_else(|| StepError::Failed(format!("{} is not powered", self.name)))?;
        let outcome = board::ssh::login(
            &endpoint,
            &board::ssh::Login {
                user,
                answers,
                command,
                timeout,
            },
            workdir,
        )?;
        // With `-E` ssh writes its own messages ("Permission denied …") to the log file: the
        // non-debug lines there are what a person at a terminal would have seen.
        let mut messages = outcome.messages.trim_end().to_string();
        for line in outcome.verbose.lines() {
            if !line.starts_with("debug") && !line.starts_with("OpenSSH_") && !line.is_empty() {
                if !messages.is_empty() {
                    messages.push('\n');
                }
                messages.push_str(line);
            }
        }
        Ok(LoginFacts {
            granted: outcome.granted,
            prompts: outcome.prompts,
            messages,
            stdout: outcome.stdout,
            timed_out: outcome.timed_out,
        })
    }

    fn maintenance_exec(&mut self, command: &str, _timeout: Duration) -> Result<String, StepError> {
        Ok(self.board.maintenance_exec(command)?)
    }

    fn zymkey(&mut self, op: ZymkeyOp<'_>) -> Result<String, StepError> {
        let request = match op {
            ZymkeyOp::CutTab => json!({"cmd": "cut-tab"}),
            ZymkeyOp::Breach(channel) => json!({"cmd": "breach", "channel": channel}),
            ZymkeyOp::Fault(fault) => match fault {
                ZymkeyFault::Fail { count, code } => {
                    json!({"cmd": "fault", "kind": "fail", "count": count, "code": code})
                }
                ZymkeyFault::Delay { count, ms } => {
                    json!({"cmd": "fault", "kind": "delay", "count": count, "ms": ms})
                }
                ZymkeyFault::BitFlip { count } => {
                    json!({"cmd": "fault", "kind": "bit-flip", "count": count})
                }
                ZymkeyFault::Drop { count } => {
                    json!({"cmd": "fault", "kind": "drop", "count": count})
                }
                ZymkeyFault::Clear => json!({"cmd": "fault", "kind": "clear"}),
            },
            ZymkeyOp::Spoof { board_id, card_id } => {
                json!({"cmd": "fault", "kind": "spoof", "board": board_id, "card": card_id})
            }
            ZymkeyOp::Attach => {
                let card = ScenarioBoard::card_serial(self).unwrap_or_else(|| "no-card".into());
                json!({"cmd": "attach", "board": self.board_id(), "card": card})
            }
            ZymkeyOp::Detach => json!({"cmd": "detach"}),
        };
        let reply = self.module()?.control(request)?;
        Ok(reply.to_string())
    }

    fn take_zymkey(&mut self) -> Result<Box<dyn Any + Send>, StepError> {
        let module = self
            .module
            .take()
            .ok_or_else(|| StepError::Failed(format!("{} has no Zymkey", self.name)))?;
        self.board.set_zymkey_socket(None)?;
        Ok(Box::new(module))
    }

    fn seat_zymkey(&mut self, module: Box<dyn Any + Send>) -> Result<(), StepError> {
        if self.module.is_some() {
            return Err(StepError::Failed(format!(
                "{} already has a Zymkey",
                self.name
            )));
        }
        let module = module
            .downcast::<Module>()
            .map_err(|_| StepError::Failed("a module from another target".into()))?;
        self.board
            .set_zymkey_socket(Some(module.module.guest_socket().to_path_buf()))?;
        self.module = Some(*module);
        Ok(())
    }

    fn provision(&mut self, _timeout: Duration) -> Result<(), StepError> {
        Err(StepError::Unsupported(
            unsupported_action(ActionKind::Provision)
                .unwrap_or_default()
                .into(),
        ))
    }

    fn known_secrets(&mut self) -> Vec<Secret> {
        let Ok(module) = self.module() else {
            return Vec::new();
        };
        let Ok(reply) = module.control(json!({"cmd": "snapshot"})) else {
            return Vec::new();
        };
        reply["state"]["secret"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .map(|bytes| Secret {
                label: format!("{}'s Zymkey module secret", self.name),
                bytes,
            })
            .into_iter()
            .collect()
    }

    fn kill_switch(&self) -> KillSwitch {
        let pid = Arc::clone(&self.pid);
        Arc::new(move || {
            let p = pid.swap(0, Ordering::SeqCst);
            if p > 0 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        })
    }
}
