//! The QEMU target of the scenario engine: boards are `qemu-runner` boards with a fresh overlay
//! card of the current test image, a Zymkey emulator daemon when the scenario gives them one, and
//! the test-only maintenance channel for harness checks.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use board::milestones::{self, BootEnd};
use board::{Board, Console, Mark};
use card::Card;
use guest_image::BuiltImage;
use keybound_vendor::boot::BootKey;
use qemu_runner::{QemuBoard, QemuBoardConfig, SignedFirmware, ZymkeyModule};
use scenario::engine::{
    BootOutcome, KillSwitch, LoginFacts, Loot, ScenarioBoard, ScenarioCard, ScenarioToken, Secret,
    StepError, Target, ZymkeyOp,
};
use scenario::{
    Binding, BoardProfile, BoardSpec, CardSlot, Scenario, Step, TokenSpec, ZymkeyFault,
};

use crate::card_scan;
use crate::provisioned_cache::ProvisionedCache;
use crate::qemu_token::{self, QemuToken};
use serde_json::json;

/// The harness's TEST-ONLY vendor recovery identity (age X25519): boards are provisioned for its
/// recipient, and the harness decrypts recovery secrets with it (fixtures/test-keys/README.md).
const VENDOR_IDENTITY: &str = "fixtures/test-keys/vendor-recovery.agekey";

/// QEMU boards from the current guest image.
pub(crate) struct QemuTarget {
    image: BuiltImage,
    repo: PathBuf,
    maintenance_key: PathBuf,
    zymkey_emu: Option<PathBuf>,
    virtual_fido: Option<PathBuf>,
    /// The vendor's secure-boot key for this run (made on first use by a signed-boot board).
    boot_key: OnceLock<Arc<BootKey>>,
    cache: ProvisionedCache,
    /// What provisioning needs (read once per run, shared by every board).
    provision: OnceLock<Option<Arc<ProvisionInputs>>>,
    /// Where harness files come from (shared by every board).
    harness: Arc<HarnessFiles>,
    /// The first token declared enrolled in each scenario starts as the image's enrolled token.
    preenrolled_taken: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
}

impl QemuTarget {
    pub(crate) fn new(image: BuiltImage, repo: &Path) -> Self {
        Self {
            image: image.clone(),
            repo: repo.to_path_buf(),
            maintenance_key: guest_image::maintenance_key(repo),
            zymkey_emu: qemu_runner::host_tool("zymkey-emu").ok(),
            virtual_fido: qemu_runner::host_tool("virtual-fido").ok(),
            boot_key: OnceLock::new(),
            cache: ProvisionedCache::new(guest_image::default_cache(repo).join("provisioned")),
            preenrolled_taken: Default::default(),
            provision: OnceLock::new(),
            harness: Arc::new(HarnessFiles {
                repo: repo.to_path_buf(),
                image,
            }),
        }
    }

    /// What a provisioned card of a board depends on besides the board's own id and module mode.
    fn provision_inputs(&self) -> Result<ProvisionInputs, StepError> {
        let identity = self.repo.join(VENDOR_IDENTITY);
        let text = std::fs::read_to_string(&identity)
            .map_err(|e| StepError::Failed(format!("reading {}: {e}", identity.display())))?;
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .ok_or_else(|| {
                StepError::Failed(format!("{} names no public key", identity.display()))
            })?
            .trim()
            .to_string();
        let emulator = self
            .zymkey_emu
            .as_ref()
            .and_then(|p| guest_image::sha256_file(p).ok())
            .unwrap_or_default();
        Ok(ProvisionInputs {
            cache: self.cache.clone(),
            image: self.image.card.to_string_lossy().into_owned(),
            emulator,
            recipient,
            identity,
        })
    }

    /// The manifest of the image the boards' cards come from.
    pub(crate) fn manifest(&self) -> &guest_image::ImageManifest {
        &self.image.manifest
    }

    /// The provisioned-card cache key a `provision` step uses for a pristine board `name`
    /// declared as `spec`, and whether the cache holds that card already (waiting while another
    /// run makes it). `None`: the board cannot be provisioned (no Zymkey, no vendor identity).
    pub(crate) fn provisioned_entry(&self, name: &str, spec: &BoardSpec) -> Option<(String, bool)> {
        // The board's id comes from its name, as create_board's config makes it.
        let board_id = QemuBoardConfig::new(name, PathBuf::new(), "").board_serial;
        let key = self.shared_provision_inputs()?.cache_key(&board_id, spec)?;
        let cached = self
            .cache
            .lock(&key)
            .is_ok_and(|lock| self.cache.get(&key, &lock).is_some());
        Some((key, cached))
    }

    /// The run's provisioning inputs, read on first use (`None`: the vendor identity is missing).
    fn shared_provision_inputs(&self) -> Option<Arc<ProvisionInputs>> {
        self.provision
            .get_or_init(|| self.provision_inputs().ok().map(Arc::new))
            .clone()
    }

    /// The run's vendor key for signed boot (RSA-2048, generated once per run).
    fn boot_key(&self) -> Result<&Arc<BootKey>, StepError> {
        if let Some(key) = self.boot_key.get() {
            return Ok(key);
        }
        let key = BootKey::generate()
            .map_err(|e| StepError::Failed(format!("generating the vendor boot key: {e}")))?;
        Ok(self.boot_key.get_or_init(|| Arc::new(key)))
    }
}

/// `keybound provision --profile`'s name for a board profile.
fn profile_name(profile: BoardProfile) -> &'static str {
    match profile {
        BoardProfile::Pi4 => "pi4",
        BoardProfile::Pi5 => "pi5",
    }
}

/// What provisioning a QEMU board needs from its target.
#[derive(Clone)]
struct ProvisionInputs {
    cache: ProvisionedCache,
    /// The image's card (content-addressed path).
    image: String,
    /// The Zymkey emulator build (its state format).
    emulator: String,
    /// The vendor's age recipient.
    recipient: String,
    /// The vendor's identity file (TEST-ONLY).
    identity: PathBuf,
}

impl ProvisionInputs {
    /// The provisioned-card cache key of the board with id `board_id` declared as `spec`:
    /// everything that shapes its provisioned card (`None`: no Zymkey, nothing to seal with).
    fn cache_key(&self, board_id: &str, spec: &BoardSpec) -> Option<String> {
        let zymkey = spec.zymkey.as_ref()?;
        Some(ProvisionedCache::key(&[
            &self.image,
            board_id,
            &format!("{:?}", zymkey.binding),
            profile_name(spec.profile),
            &self.recipient,
            &self.emulator,
            zymkey.perimeter.as_deref().unwrap_or(""),
            if spec.signed_boot {
                "signed"
            } else {
                "unsigned"
            },
        ]))
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
        if !step.action.tokens().is_empty() && self.virtual_fido.is_none() {
            return Err("virtual-fido is not built (cargo build -p virtual-fido)".into());
        }
        for (_, board) in step.action.boards() {
            let spec = scenario.boards.get(board);
            if spec.is_some_and(|s| s.zymkey.is_some()) && self.zymkey_emu.is_none() {
                return Err("zymkey-emu is not built (cargo build -p zymkey-emu)".into());
            }
        }
        Ok(())
    }

    fn create_token(
        &self,
        name: &str,
        spec: &TokenSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioToken>, StepError> {
        let program = self
            .virtual_fido
            .as_ref()
            .ok_or_else(|| StepError::Unsupported("virtual-fido is not built".into()))?;
        // The scenario's first token declared enrolled is the one the test image enrols; any
        // other declared enrolled is enrolled in the guest on its first plug.
        let scenario_dir = dir.parent().and_then(Path::parent).unwrap_or(dir);
        let first_enrolled = !spec.enrolled_on.is_empty()
            && self
                .preenrolled_taken
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(scenario_dir.to_path_buf());
        let state = qemu_token::enrolled_test_token(&self.repo);
        let token = QemuToken::start(program, dir, first_enrolled.then_some(state.as_path()))?;
        let _ = name;
        Ok(Box::new(token))
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
                qemu_runner::sign_card(&card, self.boot_key()?.as_ref(), unix_now())
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
            pristine: spec.card == CardSlot::Fresh,
            spec: spec.clone(),
            provision: self.shared_provision_inputs(),
            provisioned_secrets: Vec::new(),
            plugged_hidraw: 0,
            detached: false,
            harness: Arc::clone(&self.harness),
            boot_key: spec
                .signed_boot
                .then(|| self.boot_key().cloned())
                .transpose()?,
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
    /// The card in the slot is the image's, untouched (a provisioned copy may come from the
    /// cache).
    pristine: bool,
    /// The board as the scenario declares it (Zymkey binding and perimeter, profile, signed boot).
    spec: BoardSpec,
    provision: Option<Arc<ProvisionInputs>>,
    /// What the harness learnt when it provisioned this board's card (searched for by scans).
    provisioned_secrets: Vec<Secret>,
    /// How many tokens are plugged (the guest's hidraw nodes to wait for).
    plugged_hidraw: usize,
    /// The module was taken off the header (`zymkey-detach`): power-on does not seat it again.
    detached: bool,
    /// The vendor's boot-signing key, for a signed-boot board.
    boot_key: Option<Arc<BootKey>>,
    /// Where harness files (an attacker's tools) come from.
    harness: Arc<HarnessFiles>,
}

/// What harness files are built from: the repository and the image under test.
struct HarnessFiles {
    repo: PathBuf,
    image: BuiltImage,
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
        let found = card_scan::scan_file(&raw, secrets);
        let _ = std::fs::remove_file(&raw);
        found.map_err(|e| StepError::Failed(format!("reading the card image: {e}")))
    }

    fn restore_from(&mut self, image: &mut dyn ScenarioCard) -> Result<(), StepError> {
        let image = image
            .as_any_mut()
            .downcast_mut::<QemuCard>()
            .ok_or_else(|| StepError::Failed("a card from another target".into()))?;
        let path = self.0.path().to_path_buf();
        let serial = self.0.serial().to_string();
        std::fs::remove_file(&path)
            .map_err(|e| StepError::Failed(format!("removing {}: {e}", path.display())))?;
        let mut restored = image.0.copy_to(&path).map_err(card_err)?;
        restored.set_serial(serial);
        self.0 = restored;
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn exfiltration_proof(&self, loot: &[Loot]) -> Result<Option<String>, StepError> {
        card_scan::exfiltration_proof(&self.0, loot)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Seconds since the epoch (a boot.sig's timestamp).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The QMP id of a token's USB device.
fn usb_id(token: &str) -> String {
    let clean: String = token
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("tok-{clean}")
}

impl QemuScenarioBoard {
    /// Waits until the guest lists exactly `count` `/dev/hidraw*` nodes (the kernel has bound the
    /// plugged tokens, or let go of an unplugged one), over the test-only maintenance channel.
    fn wait_for_hidraw(&self, count: usize) -> Result<(), StepError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self
                .board
                .maintenance_exec("ls /dev | grep -c '^hidraw' || true")?;
            if list.trim().parse::<usize>().ok() == Some(count) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StepError::Failed(format!(
                    "{}: the guest shows {} hidraw node(s) after 30 s, expected {count}",
                    self.name,
                    list.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Puts an overlay of a cached provisioned card in the slot (with the card id the module
    /// was bound with) and gives the module the cached state.
    fn restore_provisioned(
        &mut self,
        entry: &crate::provisioned_cache::Entry,
    ) -> Result<(), StepError> {
        let old = self.board.remove_card()?;
        let path = old.path().to_path_buf();
        drop(old);
        std::fs::remove_file(&path)
            .map_err(|e| StepError::Failed(format!("removing {}: {e}", path.display())))?;
        let mut card = Card::overlay(&entry.card, "qcow2", &path).map_err(card_err)?;
        card.set_serial(entry.card_serial.clone());
        if let Some(key) = &self.boot_key {
            // The cached card was signed with an earlier run's key: the vendor signs it again.
            qemu_runner::sign_card(&card, key.as_ref(), unix_now())
                .map_err(|e| StepError::Failed(format!("signing the card's boot image: {e}")))?;
        }
        self.board.insert_card(card)?;
        self.module()?
            .control(json!({"cmd": "restore", "state": entry.module_state}))?;
        Ok(())
    }

    /// Provisions as an ISV engineer does on a fresh board: boots it, runs `keybound provision`
    /// (the plan goes to the boot partition), reboots so keybound-init encrypts root in place and
    /// seals the key with the Zymkey, waits until it is up on the encrypted root, powers off.
    fn provision_in_guest(&mut self, args: &str, deadline: Instant) -> Result<(), StepError> {
        let left = || deadline.saturating_duration_since(Instant::now());
        let up = |b: &mut Self, what: &str| -> Result<(), StepError> {
            let mark = b.board.console().mark();
            b.power_on()?;
            match b.wait_boot(mark, left())? {
                BootOutcome::Up => Ok(()),
                other => Err(StepError::Failed(format!(
                    "{}: {what}: the board did not come up ({other:?}); last console lines:\n{}",
                    b.name,
                    b.board.console().tail(15)
                ))),
            }
        };
        up(self, "booting to provision")?;
        let out = self.board.maintenance_exec(&format!(
            "keybound provision {args} 2>&1; echo exit=$?; sync"
        ))?;
        if !out.trim_end().ends_with("exit=0") {
            return Err(StepError::Failed(format!(
                "{}: `keybound provision` failed: {}",
                self.name,
                out.trim()
            )));
        }
        self.power_off()?;
        let mark = self.board.console().mark();
        up(self, "encrypting root in place")?;
        self.board
            .console()
            .expect_guest_after(mark, "keybound-init: provisioning: done", Duration::ZERO)
            .map_err(|_| {
                StepError::Failed(format!(
                    "{}: came up without keybound-init saying `provisioning: done`",
                    self.name
                ))
            })?;
        self.power_off()
    }

    /// Learns the provisioned card's recovery secret (the vendor's tool with the TEST-ONLY
    /// identity) and volume key (`cryptsetup luksDump --dump-volume-key` with that secret), so
    /// scans can look for them. Best effort: a failure is noted on the console, and a scan then
    /// simply knows fewer secrets.
    fn learn_secrets(&mut self, inputs: &ProvisionInputs) {
        match self.read_card_secrets(&inputs.identity) {
            Ok(secrets) => self.provisioned_secrets = secrets,
            Err(e) => self.board.console().note(&format!(
                "provision: the harness could not read the card's secrets: {e}"
            )),
        }
    }

    fn read_card_secrets(&self, identity: &Path) -> Result<Vec<Secret>, String> {
        let card = self.board.card().ok_or("no card")?;
        let dir = tempfile::Builder::new()
            .prefix("kb-secrets-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let header = dir.path().join("root-header.img");
        let range = card
            .layout()
            .map_err(|e| e.to_string())?
            .root
            .luks2_header();
        card.read_range(range, &header).map_err(|e| e.to_string())?;
        let vendor = qemu_runner::host_tool("keybound-vendor").map_err(|e| e.to_string())?;
        let out = std::process::Command::new(vendor)
            .arg("recovery-secret")
            .arg("--card")
            .arg(&header)
            .arg("--identity")
            .arg(identity)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "keybound-vendor recovery-secret: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let recovery = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let key_file = dir.path().join("recovery");
        std::fs::write(&key_file, &recovery).map_err(|e| e.to_string())?;
        let dump = std::process::Command::new("cryptsetup")
            .args([
                "luksDump",
                "--dump-volume-key",
                "--batch-mode",
                "--key-file",
            ])
            .arg(&key_file)
            .arg(&header)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&dump.stdout);
        let mut volume_key = String::new();
        let mut in_key = false;
        for line in text.lines() {
            if let Some(rest) = line
                .split_once("MK dump:")
                .or_else(|| line.split_once("Volume key:"))
            {
                in_key = true;
                volume_key.push_str(rest.1);
            } else if in_key && line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
                volume_key.push_str(line);
            } else {
                in_key = false;
            }
        }
        let volume_key = hex::decode(volume_key.split_whitespace().collect::<String>())
            .map_err(|_| "could not read the volume key from luksDump".to_string())?;
        Ok(vec![
            Secret {
                label: format!("{}'s recovery secret", self.name),
                bytes: recovery.into_bytes(),
            },
            Secret {
                label: format!("{}'s root volume key", self.name),
                bytes: volume_key,
            },
        ])
    }

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
        self.pristine = false;
        if let Some(module) = &mut self.module
            && module.module.restart_if_dead()?
        {
            // The board's power cycle restarts its module (after a `crash` fault).
            self.board
                .console()
                .note("zymkey: the module's emulator had died; started again on its state");
        }
        if self.module.is_some() && !self.detached {
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
        let console = self.board.console();
        let end = match console.expect_guest_after(from, milestones::BOOT_END, timeout) {
            Ok((line, at)) => {
                // The match may be on a line still arriving: read it again once it is whole.
                let whole = console.whole_line_at(at, Duration::from_secs(2));
                Ok(milestones::classify(if whole.len() > line.len() {
                    &whole
                } else {
                    &line
                }))
            }
            Err(e) => Err(e),
        };
        match end {
            Ok(BootEnd::Up) => Ok(BootOutcome::Up),
            Ok(BootEnd::Sealed { reason }) => Ok(BootOutcome::Sealed { reason }),
            Ok(BootEnd::Stopped { .. }) | Err(board::BoardError::ConsoleClosed { .. }) => {
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
        self.pristine = false;
        Ok(Box::new(QemuCard(self.board.remove_card()?)))
    }

    fn insert_card(&mut self, card: Box<dyn ScenarioCard>) -> Result<(), StepError> {
        self.pristine = false;
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
        Ok(LoginFacts {
            granted: outcome.granted,
            messages: outcome.seen_messages(),
            prompts: outcome.prompts,
            stdout: outcome.stdout,
            timed_out: outcome.timed_out,
        })
    }

    fn maintenance_exec(&mut self, command: &str, timeout: Duration) -> Result<String, StepError> {
        Ok(self.board.maintenance_exec_for(command, timeout)?)
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
                ZymkeyFault::Crash => json!({"cmd": "fault", "kind": "crash"}),
                ZymkeyFault::Clear => json!({"cmd": "fault", "kind": "clear"}),
            },
            ZymkeyOp::Spoof { board_id, card_id } => {
                json!({"cmd": "fault", "kind": "spoof", "board": board_id, "card": card_id})
            }
            ZymkeyOp::Attach => {
                self.detached = false;
                let card = ScenarioBoard::card_serial(self).unwrap_or_else(|| "no-card".into());
                json!({"cmd": "attach", "board": self.board_id(), "card": card})
            }
            ZymkeyOp::Detach => {
                self.detached = true;
                json!({"cmd": "detach"})
            }
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
        self.detached = false;
        Ok(())
    }

    fn provision(&mut self, timeout: Duration) -> Result<(), StepError> {
        let deadline = Instant::now() + timeout;
        let inputs = self.provision.clone().ok_or_else(|| {
            StepError::Failed(format!(
                "the vendor's TEST-ONLY identity {VENDOR_IDENTITY} is missing or unreadable"
            ))
        })?;
        let (Some(zymkey), Some(key)) = (
            self.spec.zymkey.clone(),
            inputs.cache_key(&self.board_id(), &self.spec),
        ) else {
            return Err(StepError::Failed(format!(
                "{} has no Zymkey to seal the root with",
                self.name
            )));
        };
        let lock = inputs
            .cache
            .lock(&key)
            .map_err(|e| StepError::Failed(format!("locking the provisioned-card cache: {e}")))?;
        if self.pristine
            && let Some(entry) = inputs.cache.get(&key, &lock)
        {
            match self.restore_provisioned(&entry) {
                Ok(()) => {
                    self.board.console().note(&format!(
                        "provision: card and module restored from the provisioned-card cache ({key})"
                    ));
                    self.learn_secrets(&inputs);
                    return Ok(());
                }
                Err(e) => self.board.console().note(&format!(
                    "provision: cache entry {key} unusable ({e}); provisioning in the guest"
                )),
            }
        }
        let cacheable = self.pristine;
        let mut args = format!(
            "--recipient {} --profile {}",
            inputs.recipient,
            profile_name(self.spec.profile)
        );
        if let Some(perimeter) = &zymkey.perimeter {
            args.push_str(&format!(" --perimeter {perimeter}"));
        }
        // A vendor shipping production modules demands it in the plan: keybound-init then
        // refuses to seal to a module whose tab is intact.
        if zymkey.binding == Binding::Production {
            args.push_str(" --binding production");
        }
        self.provision_in_guest(&args, deadline)?;
        self.learn_secrets(&inputs);
        if cacheable {
            let state = self.module()?.control(json!({"cmd": "snapshot"}))?;
            let card = self
                .board
                .card()
                .ok_or_else(|| StepError::Failed(format!("{} has no card", self.name)))?;
            if let Err(e) =
                inputs
                    .cache
                    .put(&key, &lock, card.path(), card.serial(), &state["state"])
            {
                self.board
                    .console()
                    .note(&format!("provision: not cached ({e})"));
            }
        }
        Ok(())
    }

    fn plug_token(&mut self, name: &str, token: &dyn ScenarioToken) -> Result<(), StepError> {
        let token = token
            .as_any()
            .downcast_ref::<QemuToken>()
            .ok_or_else(|| StepError::Failed("a token from another target".into()))?;
        token.reconnect()?;
        self.board
            .plug_usb_redir(&usb_id(name), token.usbredir_socket())?;
        self.plugged_hidraw += 1;
        self.wait_for_hidraw(self.plugged_hidraw)
    }

    fn unplug_token(&mut self, name: &str) -> Result<(), StepError> {
        self.board.unplug_usb(&usb_id(name))?;
        self.plugged_hidraw = self.plugged_hidraw.saturating_sub(1);
        self.wait_for_hidraw(self.plugged_hidraw)
    }

    fn enrol_token(
        &mut self,
        _name: &str,
        token: &dyn ScenarioToken,
        user: &str,
    ) -> Result<String, StepError> {
        let preenrolled = token
            .as_any()
            .downcast_ref::<QemuToken>()
            .is_some_and(|t| t.preenrolled);
        if preenrolled {
            return Ok("the test image enrols this token already".into());
        }
        let out = self.board.maintenance_exec(&format!(
            "keybound token enroll --user {user} 2>&1; echo exit=$?"
        ))?;
        if out.trim_end().ends_with("exit=0") {
            Ok(out)
        } else {
            Err(StepError::Failed(format!(
                "`keybound token enroll --user {user}` failed: {}",
                out.trim()
            )))
        }
    }

    fn harness_file(&mut self, name: &str) -> Result<Vec<u8>, StepError> {
        if name != "attacker-initramfs" {
            return Err(StepError::Failed(format!(
                "no harness file {name} (there is: attacker-initramfs)"
            )));
        }
        let path = guest_image::attacker_initramfs(
            &self.harness.repo,
            &self.harness.image,
            &guest_image::Progress::hidden(),
        )
        .map_err(|e| StepError::Failed(format!("building the attacker's initramfs: {e}")))?;
        std::fs::read(&path)
            .map_err(|e| StepError::Failed(format!("reading {}: {e}", path.display())))
    }

    fn vendor_sign_boot(&mut self) -> Result<String, StepError> {
        let key = self.boot_key.clone().ok_or_else(|| {
            StepError::Failed(format!("{} is not a signed-boot board", self.name))
        })?;
        let card = self
            .board
            .card()
            .ok_or_else(|| StepError::Failed(format!("{} has no card", self.name)))?;
        qemu_runner::sign_card(card, key.as_ref(), unix_now())
            .map_err(|e| StepError::Failed(format!("signing the card's boot image: {e}")))?;
        Ok("boot.img and boot.sig written (signed with the vendor's key)".into())
    }

    fn zymkey_sniff(&mut self) -> Result<String, StepError> {
        self.module()?
            .control(json!({"cmd": "bus-trace", "on": true}))?;
        Ok("recording the Zymkey bus".into())
    }

    fn attacker_loot(&mut self) -> Vec<Loot> {
        let mut loot = self
            .transcript()
            .map(|path| console_loot(&self.name, &path))
            .unwrap_or_default();
        loot.extend(self.bus_loot());
        loot
    }

    fn known_secrets(&mut self) -> Vec<Secret> {
        let mut out = self.provisioned_secrets.clone();
        let Ok(module) = self.module() else {
            return out;
        };
        let Ok(reply) = module.control(json!({"cmd": "snapshot"})) else {
            return out;
        };
        out.extend(
            reply["state"]["secret"]
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .map(|bytes| Secret {
                    label: format!("{}'s Zymkey module secret", self.name),
                    bytes,
                }),
        );
        out
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

impl QemuScenarioBoard {
    /// What a sniffer on the Zymkey bus decodes with the (documented) wire format: the data the
    /// module sent.
    fn bus_loot(&mut self) -> Vec<Loot> {
        let Ok(module) = self.module() else {
            return Vec::new();
        };
        let Ok(reply) = module.control(json!({"cmd": "bus-trace-read"})) else {
            return Vec::new();
        };
        let mut loot = Vec::new();
        for entry in reply["entries"].as_array().into_iter().flatten() {
            if entry["dir"] != "module-to-host" {
                continue;
            }
            let Some(body) = entry["hex"].as_str().and_then(|h| hex::decode(h).ok()) else {
                continue;
            };
            if let Ok(zk_app_utils::wire::FromModule::Response {
                result: Ok(zk_app_utils::wire::Reply::Bytes(bytes)),
                ..
            }) = zk_app_utils::wire::FromModule::decode(&body)
            {
                loot.push(Loot {
                    label: format!(
                        "{}'s Zymkey bus (frame {})",
                        self.name,
                        entry["seq"].as_u64().unwrap_or_default()
                    ),
                    bytes: bytes.to_vec(),
                });
            }
        }
        loot
    }
}

/// What someone at the board's serial console read off it: every run of exactly 64 hex digits
/// (a 32-byte key as `od`/`xxd` print it) in the console transcript.
fn console_loot(board: &str, transcript: &Path) -> Vec<Loot> {
    let Ok(text) = std::fs::read_to_string(transcript) else {
        return Vec::new();
    };
    let run = regex::Regex::new(r"(?:^|[^0-9A-Fa-f])([0-9A-Fa-f]{64})(?:[^0-9A-Fa-f]|$)")
        .expect("a valid regex");
    text.lines()
        .enumerate()
        .flat_map(|(n, line)| {
            run.captures_iter(line)
                .filter_map(|c| hex::decode(&c[1]).ok())
                .map(move |bytes| Loot {
                    label: format!("{board}'s serial console (transcript line {})", n + 1),
                    bytes,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_loot_is_every_run_of_exactly_64_hex_digits_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join("console.log");
        let key = "0123456789abcdef".repeat(4);
        std::fs::write(
            &transcript,
            format!(
                "[   1.000] / # keyscript | od\n[   1.100] {key}\n[   1.200] {key}ff too long\n[   1.300] {} too short\n[   1.400] sha256={}\n",
                &key[1..],
                key.to_uppercase()
            ),
        )
        .unwrap();
        let loot = console_loot("victim", &transcript);
        let labels: Vec<&str> = loot.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "victim's serial console (transcript line 2)",
                "victim's serial console (transcript line 5)"
            ]
        );
        assert!(loot.iter().all(|l| l.bytes == hex::decode(&key).unwrap()));
        assert!(console_loot("victim", &dir.path().join("missing.log")).is_empty());
    }
}
