//! `--target rig:NAME`: real Raspberry Pi rigs through `hil/rig`. Boards come from the rig file
//! (`rigs/NAME.toml`, or `--rig-file`); what a rig cannot do — move, fault or sniff a real
//! Zymkey, clone or fault a real key, move or image cards between boards, sign boot images, scan
//! cards for secrets it cannot know — is refused by [`RigTarget::support`] with the precise reason
//! before anything powers on, so the scenario is skipped, never passed silently. Provisioning
//! runs the QEMU target's flow (boot, `keybound provision` over the maintenance channel, reboot,
//! `provisioning: done`) without its cache.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use board::{Console, Mark};
use rig::gpio::SharedGpio;
use rig::rigfile::{BoardResources, Model};
use rig::{RigBoard, RigBoot, RigError, RigFile};
use scenario::engine::{
    BootOutcome, KillSwitch, LoginFacts, ScenarioBoard, ScenarioCard, ScenarioToken, Secret,
    StepError, Target, ZymkeyOp,
};
use scenario::{
    Action, Binding, BoardProfile, BoardSpec, CardEdit, CardSlot, Expectation, Presence, Scenario,
    Step, TokenFault, TokenSpec,
};

/// A named rig and its boards.
pub(crate) struct RigTarget {
    name: String,
    rig: RigFile,
    rig_dir: PathBuf,
    gpio: SharedGpio,
    /// Per scenario run directory: the rig boards and token ports its boards and tokens took.
    taken: Mutex<BTreeMap<PathBuf, Taken>>,
    /// Rig boards held by a live scenario board (one scenario at a time per board).
    in_use: Arc<Mutex<BTreeSet<String>>>,
    /// The vendor's age recipient for provisioning, or why there is none.
    recipient: Result<String, String>,
}

/// The harness's TEST-ONLY vendor recovery identity (as on the QEMU target): rig boards running
/// the test image are provisioned for its recipient unless the rig file names another.
const VENDOR_IDENTITY: &str = "fixtures/test-keys/vendor-recovery.agekey";

/// The recipient (`# public key: age1…` line) of an age identity file.
fn identity_recipient(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(|r| r.trim().to_string())
        .ok_or_else(|| format!("{} names no public key", path.display()))
}

/// What one scenario run took of the rig.
#[derive(Default)]
struct Taken {
    boards: BTreeSet<String>,
    ports: BTreeSet<(String, String)>,
}

/// The rig board `name` maps to: the one of the same name if free, else the first free one in
/// name order. Engine and pre-flight both take scenario boards in name order, so both agree.
fn pick_board(rig: &RigFile, name: &str, taken: &BTreeSet<String>) -> Option<String> {
    if rig.boards.contains_key(name) && !taken.contains(name) {
        return Some(name.to_string());
    }
    rig.boards.keys().find(|b| !taken.contains(*b)).cloned()
}

/// The token port (rig board, port) a scenario token maps to: a port of the same name if free,
/// else the first free port.
fn pick_port(
    rig: &RigFile,
    name: &str,
    taken: &BTreeSet<(String, String)>,
) -> Option<(String, String)> {
    let ports: Vec<(String, String)> = rig
        .boards
        .iter()
        .flat_map(|(b, r)| {
            r.token_ports
                .iter()
                .flatten()
                .map(move |(p, _)| (b.clone(), p.clone()))
        })
        .filter(|k| !taken.contains(k))
        .collect();
    ports
        .iter()
        .find(|(_, p)| p == name)
        .or_else(|| ports.first())
        .cloned()
}

fn profile_name(p: BoardProfile) -> &'static str {
    match p {
        BoardProfile::Pi4 => "Pi 4",
        BoardProfile::Pi5 => "Pi 5",
    }
}

fn model_name(m: Model) -> &'static str {
    match m {
        Model::Pi4 => "Pi 4",
        Model::Pi5 => "Pi 5",
    }
}

fn binding_name(b: Binding) -> &'static str {
    match b {
        Binding::Developer => "developer-mode",
        Binding::Production => "production-mode",
    }
}

fn rig_binding_name(b: rig::rigfile::Binding) -> &'static str {
    match b {
        rig::rigfile::Binding::Developer => "developer-mode",
        rig::rigfile::Binding::Production => "production-mode",
    }
}

/// The reason a step's kind cannot run on any rig, if so.
fn unsupported_kind(action: &Action) -> Option<String> {
    let zymkey = |what: &str| {
        Some(format!(
            "{what}: the harness cannot do this to a real Zymkey"
        ))
    };
    let card = || {
        Some(format!(
            "{}: a rig board's card stays in its SD mux; the harness cannot move, copy, shelve or image cards between rig boards",
            action.kind()
        ))
    };
    match action {
        Action::MoveCard { .. }
        | Action::CopyCard { .. }
        | Action::RemoveCard { .. }
        | Action::InsertCard { .. }
        | Action::RestoreCard { .. } => card(),
        Action::VendorSignBoot { .. } => Some(
            "vendor-sign-boot: needs the vendor's real boot key and a board with it in OTP; rig boards are not fused".into(),
        ),
        Action::EditBootFile {
            edit: CardEdit::HarnessFile(name),
            ..
        } => Some(format!(
            "edit-boot-file with harness file {name}: harness files are built from the QEMU test image and offered on the QEMU target only"
        )),
        Action::ScanCard { .. } => Some(
            "scan-card: the rig knows no secret to search for (a real Zymkey's module secret cannot be read out, and the harness does not provision rig boards)".into(),
        ),
        Action::ZymkeyCutTab { .. } => zymkey("zymkey-cut-tab (a physical, permanent cut)"),
        Action::ZymkeyBreach { .. } => zymkey("zymkey-breach (no perimeter circuit is wired to the controller)"),
        Action::ZymkeyFault { .. } => zymkey("zymkey-fault (faults need zymkey-emu)"),
        Action::ZymkeySpoof { .. } => zymkey("zymkey-spoof (forged ids need zymkey-emu)"),
        Action::ZymkeySniff { .. } => zymkey("zymkey-sniff (no logic analyser on the rig's GPIO header)"),
        Action::ZymkeyAttach { .. } | Action::ZymkeyDetach { .. } => {
            zymkey(&format!("{} (a real module is seated by hand)", action.kind()))
        }
        Action::ZymkeyMove { .. } => zymkey("zymkey-move (moving a real module between boards)"),
        Action::TokenPresence {
            answer: Presence::Deny | Presence::Timeout,
            ..
        } => Some(
            "token-presence deny/timeout: a real key has no scripted presence answer (the rig has no touch actuator)".into(),
        ),
        Action::TokenFault { fault, .. } if *fault != TokenFault::Clear => Some(format!(
            "token-fault {}: a real key cannot be made to misbehave (token faults need virtual-fido)",
            fault.name()
        )),
        Action::TokenClone { .. } => {
            Some("token-clone: a real key's credentials cannot be copied".into())
        }
        _ => None,
    }
}

/// The reason an expectation cannot be judged on a rig, if so.
fn unsupported_expectation(expect: &Expectation) -> Option<String> {
    match expect {
        Expectation::TokenNotAsked(token) => Some(format!(
            "token-not-asked {token}: a real key reports no count of the requests it answered"
        )),
        // Written `\[firmware\]` in a regex.
        Expectation::ConsoleRegex(pattern) if pattern.replace('\\', "").contains("[firmware]") => {
            Some(format!(
                "console-regex /{pattern}/: [firmware] lines are the QEMU target's firmware emulation; a real Pi's bootloader prints its own"
            ))
        }
        _ => None,
    }
}

impl RigTarget {
    /// The rig `name` from `rig_file` (default `rigs/NAME.toml` under `repo`).
    pub(crate) fn new(repo: &Path, name: &str, rig_file: Option<&Path>) -> anyhow::Result<Self> {
        let path = rig_file.map_or_else(|| RigFile::default_path(repo, name), Path::to_path_buf);
        let rig = RigFile::load(&path).map_err(|e| anyhow::anyhow!("{}", e.render(false)))?;
        let gpio = rig::gpio::open(rig.gpio)
            .map_err(|e| anyhow::anyhow!("rig {name} ({}): {e}", path.display()))?;
        let rig_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut target = Self::with_gpio(name, rig, &rig_dir, gpio);
        if target.rig.vendor_recipient.is_none() {
            target.recipient = identity_recipient(&repo.join(VENDOR_IDENTITY));
        }
        Ok(target)
    }

    /// A rig from a parsed file, with its GPIO driver given (tests hand in a fake that plays the
    /// board).
    pub(crate) fn with_gpio(name: &str, rig: RigFile, rig_dir: &Path, gpio: SharedGpio) -> Self {
        Self {
            name: name.to_string(),
            rig_dir: rig_dir.to_path_buf(),
            gpio,
            recipient: rig.vendor_recipient.clone().ok_or_else(|| {
                "the rig file names no vendor-recipient and no TEST-ONLY identity was read".into()
            }),
            rig,
            taken: Mutex::new(BTreeMap::new()),
            in_use: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// Which rig board each scenario board gets, or why it gets none.
    fn board_map(&self, scenario: &Scenario) -> BTreeMap<String, Result<String, String>> {
        let mut taken = BTreeSet::new();
        let mut out = BTreeMap::new();
        for name in scenario.boards.keys() {
            let got = pick_board(&self.rig, name, &taken).ok_or_else(|| {
                format!(
                    "the scenario needs {} board(s); rig {} has {} ({})",
                    scenario.boards.len(),
                    self.name,
                    self.rig.boards.len(),
                    self.rig
                        .boards
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            if let Ok(b) = &got {
                taken.insert(b.clone());
            }
            out.insert(name.clone(), got);
        }
        out
    }

    /// Which token port each scenario token gets, or why it gets none.
    fn token_map(&self, scenario: &Scenario) -> BTreeMap<String, Result<(String, String), String>> {
        let mut taken = BTreeSet::new();
        let mut out = BTreeMap::new();
        for name in scenario.tokens.keys() {
            let got = pick_port(&self.rig, name, &taken).ok_or_else(|| {
                format!(
                    "the scenario needs {} token(s); rig {} has fewer switchable token ports",
                    scenario.tokens.len(),
                    self.name
                )
            });
            if let Ok(k) = &got {
                taken.insert(k.clone());
            }
            out.insert(name.clone(), got);
        }
        out
    }

    /// Why scenario board `name` (spec `spec`) cannot be rig board `rig_board`, if so.
    fn board_mismatch(&self, name: &str, spec: &BoardSpec, rig_board: &str) -> Option<String> {
        let res = &self.rig.boards[rig_board];
        if spec.signed_boot {
            return Some(format!(
                "board {name} has signed boot: that needs a Pi with the vendor's key in OTP, and rig board {rig_board} is not fused"
            ));
        }
        if spec.card == CardSlot::Empty {
            return Some(format!(
                "board {name} starts with an empty slot; rig board {rig_board}'s card stays in its SD mux"
            ));
        }
        let model = match res.model {
            Model::Pi4 => BoardProfile::Pi4,
            Model::Pi5 => BoardProfile::Pi5,
        };
        if model != spec.profile {
            return Some(format!(
                "board {name} stands for a {}; rig board {rig_board} is a {}",
                profile_name(spec.profile),
                model_name(res.model)
            ));
        }
        match (&spec.zymkey, &res.zymkey) {
            (Some(_), None) => Some(format!(
                "board {name} needs a Zymkey; rig board {rig_board} has none"
            )),
            (Some(want), Some(have))
                if binding_name(want.binding) != rig_binding_name(have.binding) =>
            {
                Some(format!(
                    "board {name} needs a {} Zymkey; the one on rig board {rig_board} is {} (the harness cannot cut a binding tab)",
                    binding_name(want.binding),
                    rig_binding_name(have.binding)
                ))
            }
            _ => None,
        }
    }

    /// Why rig board `rig_board` lacks what `action` needs, if so.
    fn missing_resource(action: &Action, rig_board: &str, res: &BoardResources) -> Option<String> {
        let lacks = |what: &str| {
            Some(format!(
                "{}: rig board {rig_board} has no {what} in the rig file",
                action.kind()
            ))
        };
        match action {
            Action::Boot { .. } | Action::PowerOn { .. } | Action::PowerCut { .. }
                if res.power.is_none() =>
            {
                lacks("power relay")
            }
            Action::PowerOff { .. } if res.power.is_none() => lacks("power relay"),
            Action::PowerOff { .. } if res.maintenance.is_none() => {
                lacks("maintenance channel (a clean power-off asks the board to halt over it)")
            }
            Action::Provision { .. } if res.power.is_none() => lacks("power relay"),
            Action::Provision { .. } if res.maintenance.is_none() => {
                lacks("maintenance channel (provisioning runs `keybound provision` over it)")
            }
            Action::EditBootFile { .. } if res.sd_mux.is_none() => lacks("SD mux"),
            Action::SshLogin { .. } if res.sshd.is_none() => lacks("sshd"),
            Action::MaintenanceExec { .. } if res.maintenance.is_none() => {
                lacks("maintenance channel")
            }
            _ => None,
        }
    }
}

impl Target for RigTarget {
    fn name(&self) -> String {
        format!("rig:{}", self.name)
    }

    fn is_emulated(&self) -> bool {
        false
    }

    fn support(&self, scenario: &Scenario, step: &Step) -> Result<(), String> {
        if let Some(reason) = unsupported_kind(&step.action) {
            return Err(reason);
        }
        if let Some(reason) = step.expect.iter().find_map(unsupported_expectation) {
            return Err(reason);
        }
        let boards = self.board_map(scenario);
        for (_, board) in step.action.boards() {
            let rig_board = boards
                .get(board)
                .cloned()
                .unwrap_or_else(|| Err(format!("no board {board}")))?;
            if let Some(spec) = scenario.boards.get(board)
                && let Some(reason) = self.board_mismatch(board, spec, &rig_board)
            {
                return Err(reason);
            }
            if let Some(reason) =
                Self::missing_resource(&step.action, &rig_board, &self.rig.boards[&rig_board])
            {
                return Err(reason);
            }
        }
        if let Action::TokenPlug { token, board } = &step.action {
            let (port_board, port) = self
                .token_map(scenario)
                .get(token)
                .cloned()
                .unwrap_or_else(|| Err(format!("no token {token}")))?;
            let rig_board = boards
                .get(board)
                .cloned()
                .unwrap_or_else(|| Err(format!("no board {board}")))?;
            if port_board != rig_board {
                return Err(format!(
                    "token-plug {token} into {board}: the rig's key {port} sits in a port of rig board {port_board}, not of {rig_board} (moving a key between boards needs a USB mux)"
                ));
            }
            let enrolled = self.rig.boards[&port_board]
                .token_ports
                .as_ref()
                .is_some_and(|p| p[&port].enrolled);
            let wanted = scenario
                .tokens
                .get(token)
                .is_some_and(|t| t.enrolled_on.iter().any(|b| b == board));
            if wanted && !enrolled {
                return Err(format!(
                    "token {token} must be enrolled on {board}, and the rig's key {port} is not (enrolment needs a touch: enrol it by hand, then set enrolled = true)"
                ));
            }
            if !wanted && enrolled {
                return Err(format!(
                    "token {token} must not be enrolled on {board}, and the rig's key {port} is"
                ));
            }
        }
        for (_, token) in step.action.tokens() {
            if let Some(Err(reason)) = self.token_map(scenario).get(token) {
                return Err(reason.clone());
            }
        }
        Ok(())
    }

    fn create_board(
        &self,
        name: &str,
        spec: &BoardSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioBoard>, StepError> {
        let run = dir.parent().unwrap_or(dir).to_path_buf();
        let rig_board = {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            let taken = taken.entry(run).or_default();
            let b = pick_board(&self.rig, name, &taken.boards).ok_or_else(|| {
                StepError::Unsupported(format!("rig {} has no free board for {name}", self.name))
            })?;
            taken.boards.insert(b.clone());
            b
        };
        if let Some(reason) = self.board_mismatch(name, spec, &rig_board) {
            return Err(StepError::Unsupported(reason));
        }
        if !self
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rig_board.clone())
        {
            return Err(StepError::Failed(format!(
                "rig board {rig_board} is in use by another scenario (a rig runs one scenario at a time)"
            )));
        }
        let hold = Hold {
            board: rig_board.clone(),
            in_use: Arc::clone(&self.in_use),
        };
        let board = RigBoard::new(
            &rig_board,
            &self.rig.boards[&rig_board],
            &self.gpio,
            &self.rig_dir,
            dir,
        )
        .map_err(|e| StepError::Failed(e.to_string()))?;
        board.console().note(&format!(
            "scenario board {name} is rig {} board {rig_board}",
            self.name
        ));
        if spec.zymkey.is_none() && self.rig.boards[&rig_board].zymkey.is_some() {
            // Nothing a rig can run provisions, so an unsealed card never asks the module.
            board.console().note(&format!(
                "the scenario gives {name} no Zymkey; rig board {rig_board} has one seated (the harness cannot take it off)"
            ));
        }
        let profile = match spec.profile {
            BoardProfile::Pi4 => "pi4",
            BoardProfile::Pi5 => "pi5",
        };
        let recipient = match &spec.zymkey {
            Some(_) => self.recipient.clone(),
            None => Err("the scenario gives it no Zymkey to seal the root with".into()),
        };
        let provision = recipient.map(|recipient| {
            let mut args = format!("--recipient {recipient} --profile {profile}");
            if let Some(perimeter) = spec.zymkey.as_ref().and_then(|z| z.perimeter.as_ref()) {
                args.push_str(&format!(" --perimeter {perimeter}"));
            }
            // As on the QEMU target: a production module's plan demands a production binding.
            if spec
                .zymkey
                .as_ref()
                .is_some_and(|z| z.binding == Binding::Production)
            {
                args.push_str(" --binding production");
            }
            args
        });
        Ok(Box::new(RigScenarioBoard {
            name: name.to_string(),
            board,
            plugged: BTreeMap::new(),
            provision,
            _hold: hold,
        }))
    }

    fn create_token(
        &self,
        name: &str,
        _spec: &TokenSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioToken>, StepError> {
        // dir is RUN/tokens/NAME.
        let run = dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(dir)
            .to_path_buf();
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let taken = taken.entry(run).or_default();
        let (board, port) = pick_port(&self.rig, name, &taken.ports).ok_or_else(|| {
            StepError::Unsupported(format!(
                "rig {} has no free token port for {name}",
                self.name
            ))
        })?;
        taken.ports.insert((board.clone(), port.clone()));
        Ok(Box::new(RigToken { board, port }))
    }
}

/// Frees a rig board for the next scenario when its scenario board goes.
struct Hold {
    board: String,
    in_use: Arc<Mutex<BTreeSet<String>>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.board);
    }
}

/// A real FIDO2 key in a switchable port of a rig board.
struct RigToken {
    board: String,
    port: String,
}

impl ScenarioToken for RigToken {
    fn presence(&mut self, answer: Presence) -> Result<String, StepError> {
        match answer {
            Presence::Touch => Ok(
                "a person at the rig touches the key when it blinks (the rig has no touch actuator)"
                    .into(),
            ),
            _ => Err(StepError::Unsupported(
                "a real key has no scripted presence answer".into(),
            )),
        }
    }

    fn fault(&mut self, fault: TokenFault, _count: u32) -> Result<String, StepError> {
        match fault {
            TokenFault::Clear => Ok("a real key has no armed misbehaviour".into()),
            other => Err(StepError::Unsupported(format!(
                "a real key cannot be made to {}",
                other.name()
            ))),
        }
    }

    fn clone_from(&mut self, _original: &dyn ScenarioToken) -> Result<(), StepError> {
        Err(StepError::Unsupported(
            "a real key's credentials cannot be copied".into(),
        ))
    }

    fn requests(&self) -> Result<u64, StepError> {
        Err(StepError::Unsupported(
            "a real key reports no request count".into(),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The card of a rig board while the SD mux has it on the controller's side.
struct RigCard {
    card: rig::sdmux::MuxedCard,
    serial: String,
}

fn rig_err(e: RigError) -> StepError {
    match e {
        RigError::Missing { board, what } => {
            StepError::Unsupported(format!("rig board {board} has no {what}"))
        }
        other => StepError::Failed(other.to_string()),
    }
}

impl ScenarioCard for RigCard {
    fn serial(&self) -> String {
        self.serial.clone()
    }

    fn copy(&mut self, _label: &str) -> Result<Box<dyn ScenarioCard>, StepError> {
        Err(StepError::Unsupported(
            "a rig cannot copy a card onto another card".into(),
        ))
    }

    fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, StepError> {
        self.card.read_boot_file(name).map_err(rig_err)
    }

    fn write_boot_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), StepError> {
        self.card.write_boot_file(name, bytes).map_err(rig_err)
    }

    fn scan(&self, _secrets: &[Secret]) -> Result<Vec<String>, StepError> {
        Err(StepError::Unsupported(
            "the rig knows no secret to search for".into(),
        ))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// A scenario board on a rig board.
struct RigScenarioBoard {
    name: String,
    board: RigBoard,
    /// Plugged scenario tokens and their ports.
    plugged: BTreeMap<String, String>,
    /// `keybound provision`'s arguments for this board, or why it cannot be provisioned.
    provision: Result<String, String>,
    _hold: Hold,
}

impl RigScenarioBoard {
    fn unsupported<T>(&self, what: &str) -> Result<T, StepError> {
        Err(StepError::Unsupported(format!(
            "{} (rig board {}): {what}",
            self.name,
            self.board.name()
        )))
    }

    /// Waits until the board lists `count` hidraw nodes (over the maintenance channel), or, without
    /// one, gives the kernel a moment and says so.
    fn wait_for_hidraw(&self, count: usize) -> Result<(), StepError> {
        if self.board.resources().maintenance.is_none() {
            self.board
                .console()
                .note("no maintenance channel: waiting 3 s for the key to enumerate");
            std::thread::sleep(Duration::from_secs(3));
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self
                .board
                .maintenance_exec(
                    "ls /dev | grep -c '^hidraw' || true",
                    Duration::from_secs(20),
                )
                .map_err(rig_err)?;
            if list.trim().parse::<usize>().ok() == Some(count) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StepError::Failed(format!(
                    "{}: the board shows {} hidraw node(s) after 30 s, expected {count}",
                    self.name,
                    list.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl ScenarioBoard for RigScenarioBoard {
    fn name(&self) -> &str {
        &self.name
    }

    fn board_id(&self) -> String {
        format!("rig board {}", self.board.name())
    }

    fn console(&self) -> &Console {
        self.board.console()
    }

    fn transcript(&self) -> Option<PathBuf> {
        Some(self.board.transcript())
    }

    fn power_on(&mut self) -> Result<(), StepError> {
        self.board.power_on().map_err(rig_err)
    }

    fn wait_boot(&mut self, from: Mark, timeout: Duration) -> Result<BootOutcome, StepError> {
        match self.board.wait_boot(from, timeout) {
            Ok(RigBoot::Up) => Ok(BootOutcome::Up),
            Ok(RigBoot::Sealed { reason }) => Ok(BootOutcome::Sealed { reason }),
            Ok(RigBoot::Off) => Ok(BootOutcome::Off),
            Err(e) => Err(rig_err(e)),
        }
    }

    fn power_off(&mut self) -> Result<(), StepError> {
        self.board.power_off_clean().map_err(rig_err)
    }

    fn power_cut(&mut self) -> Result<(), StepError> {
        self.board.power_cut().map_err(rig_err)
    }

    fn is_powered(&mut self) -> bool {
        self.board.is_powered()
    }

    fn remove_card(&mut self) -> Result<Box<dyn ScenarioCard>, StepError> {
        self.unsupported("its card stays in the SD mux")
    }

    fn insert_card(&mut self, _card: Box<dyn ScenarioCard>) -> Result<(), StepError> {
        self.unsupported("its card stays in the SD mux")
    }

    fn card_serial(&self) -> Option<String> {
        Some(
            self.board
                .resources()
                .card_id
                .clone()
                .unwrap_or_else(|| format!("card of rig board {}", self.board.name())),
        )
    }

    fn with_card(
        &mut self,
        f: &mut dyn FnMut(&mut dyn ScenarioCard) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        let serial = self.card_serial().unwrap_or_default();
        let mut result = Ok(());
        self.board
            .with_card(|card| {
                let mut card = RigCard { card, serial };
                result = f(&mut card);
                Ok(())
            })
            .map_err(rig_err)?;
        result
    }

    fn ssh_login(
        &mut self,
        user: &str,
        answers: &[&str],
        command: &str,
        timeout: Duration,
        workdir: &Path,
    ) -> Result<LoginFacts, StepError> {
        let endpoint = match self.board.ssh() {
            Some(e) => e,
            None => return self.unsupported("no sshd in the rig file"),
        };
        if !self.board.is_powered() {
            return Err(StepError::Failed(format!("{} is not powered", self.name)));
        }
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
            prompts: outcome.prompts.clone(),
            messages: outcome.seen_messages(),
            stdout: outcome.stdout,
            timed_out: outcome.timed_out,
        })
    }

    fn maintenance_exec(&mut self, command: &str, timeout: Duration) -> Result<String, StepError> {
        if !self.board.is_powered() {
            return Err(StepError::Failed(format!("{} is not powered", self.name)));
        }
        self.board
            .maintenance_exec(command, timeout)
            .map_err(rig_err)
    }

    fn zymkey(&mut self, op: ZymkeyOp<'_>) -> Result<String, StepError> {
        self.unsupported(&format!("the harness cannot drive a real Zymkey ({op:?})"))
    }

    fn take_zymkey(&mut self) -> Result<Box<dyn Any + Send>, StepError> {
        self.unsupported("a real Zymkey cannot be moved by the harness")
    }

    fn seat_zymkey(&mut self, _module: Box<dyn Any + Send>) -> Result<(), StepError> {
        self.unsupported("a real Zymkey cannot be moved by the harness")
    }

    /// As an ISV engineer provisions a fresh board, and as the QEMU target does without its
    /// cache: boot, `keybound provision` over the maintenance channel (the plan goes to the boot
    /// partition), reboot so keybound-init encrypts root in place and seals the key with the
    /// board's real Zymkey, see `provisioning: done`, power off.
    fn provision(&mut self, timeout: Duration) -> Result<(), StepError> {
        let args = self
            .provision
            .clone()
            .map_err(|why| StepError::Failed(format!("{}: cannot provision: {why}", self.name)))?;
        let deadline = Instant::now() + timeout;
        let left = move || deadline.saturating_duration_since(Instant::now());
        let up = |b: &mut Self, what: &str| -> Result<Mark, StepError> {
            let mark = b.board.console().mark();
            b.power_on()?;
            match b.wait_boot(mark, left())? {
                BootOutcome::Up => Ok(mark),
                other => Err(StepError::Failed(format!(
                    "{}: {what}: the board did not come up ({other:?}); last console lines:\n{}",
                    b.name,
                    b.board.console().tail(15)
                ))),
            }
        };
        up(self, "booting to provision")?;
        let out = self
            .board
            .maintenance_exec(
                &format!("keybound provision {args} 2>&1; echo exit=$?; sync"),
                left(),
            )
            .map_err(rig_err)?;
        if !out.trim_end().ends_with("exit=0") {
            return Err(StepError::Failed(format!(
                "{}: `keybound provision` failed: {}",
                self.name,
                out.trim()
            )));
        }
        self.power_off()?;
        let mark = up(self, "encrypting root in place")?;
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

    fn plug_token(&mut self, name: &str, token: &dyn ScenarioToken) -> Result<(), StepError> {
        let token = token
            .as_any()
            .downcast_ref::<RigToken>()
            .ok_or_else(|| StepError::Failed("a token from another target".into()))?;
        if token.board != self.board.name() {
            return self.unsupported(&format!(
                "the key {} sits in a port of rig board {}",
                token.port, token.board
            ));
        }
        self.board
            .set_token_port(&token.port, true)
            .map_err(rig_err)?;
        self.plugged.insert(name.to_string(), token.port.clone());
        self.wait_for_hidraw(self.plugged.len())
    }

    fn unplug_token(&mut self, name: &str) -> Result<(), StepError> {
        let port = self
            .plugged
            .remove(name)
            .ok_or_else(|| StepError::Failed(format!("token {name} is not plugged")))?;
        self.board.set_token_port(&port, false).map_err(rig_err)?;
        self.wait_for_hidraw(self.plugged.len())
    }

    fn enrol_token(
        &mut self,
        _name: &str,
        token: &dyn ScenarioToken,
        _user: &str,
    ) -> Result<String, StepError> {
        let token = token
            .as_any()
            .downcast_ref::<RigToken>()
            .ok_or_else(|| StepError::Failed("a token from another target".into()))?;
        let enrolled = self
            .board
            .resources()
            .token_ports
            .as_ref()
            .and_then(|p| p.get(&token.port))
            .is_some_and(|p| p.enrolled);
        if enrolled {
            Ok(format!(
                "the rig's key {} is enrolled on this card already (rig file: enrolled = true)",
                token.port
            ))
        } else {
            self.unsupported(&format!(
                "the rig's key {} is not enrolled, and enrolment needs a touch",
                token.port
            ))
        }
    }

    fn known_secrets(&mut self) -> Vec<Secret> {
        Vec::new()
    }

    fn kill_switch(&self) -> KillSwitch {
        self.board.kill_switch()
    }
}

#[cfg(test)]
mod tests {
    //! The rig target through the engine, with no hardware: a fake GPIO controller whose
    //! watcher plays the Pi on a pseudo-terminal, a card image file behind the "SD mux", and the
    //! committed scenarios for the skips.

    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;

    use rig::gpio::{FakeGpio, Level, shared};
    use scenario::engine::{self, EngineOptions, Observer, Silent, Verdict};

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    const RELAY: u32 = 17;

    /// One Pi 4 with every resource and a developer-mode Zymkey; its console is `uart`, its
    /// card `card`, its mux's control command logs to `mux_log`.
    fn rig_text(uart: &Path, card: &Path, mux_log: &Path) -> String {
        format!(
            r#"
gpio = "fake"

[boards.pi]
model = "pi4"
power = {{ relay = {{ chip = "gpiochip0", line = {RELAY}, active = "low" }}, off-time = "10ms" }}
console = {{ device = "{}" }}
sd-mux = {{ device = "{}", switch = {{ command = ["sh", "-c", "echo {{}} >> {}"] }}, settle = "1s" }}
sshd = {{ address = "127.0.0.1:1", host-key = "ssh-ed25519 AAAA" }}
maintenance = {{ address = "127.0.0.1:2", key = "harness_ed25519" }}
zymkey = {{ binding = "developer" }}

[boards.pi.token-ports.key]
switch = {{ command = ["true", "{{}}"] }}
enrolled = true
"#,
            uart.display(),
            card.display(),
            mux_log.display()
        )
    }

    fn target(text: &str, gpio: SharedGpio) -> Arc<dyn Target> {
        let rig = RigFile::parse(Path::new("rigs/test.toml"), text)
            .unwrap_or_else(|e| panic!("{}", e.short()));
        Arc::new(RigTarget::with_gpio("test", rig, Path::new("."), gpio))
    }

    fn run(target: &Arc<dyn Target>, loaded: &scenario::LoadedScenario) -> engine::ScenarioResult {
        let dir = tempfile::tempdir().unwrap();
        let observer: Arc<dyn Observer> = Arc::new(Silent);
        engine::run_scenario(
            target,
            loaded,
            &dir.path().join("run"),
            &EngineOptions::default(),
            &observer,
        )
    }

    fn committed(name: &str) -> scenario::LoadedScenario {
        let root = repo().join("scenarios");
        scenario::load(&root.join(format!("{name}.toml")), &root)
            .unwrap_or_else(|e| panic!("{}", e.short()))
    }

    fn unwired() -> Arc<dyn Target> {
        let text = rig_text(
            Path::new("/dev/keybound-no-uart"),
            Path::new("/dev/keybound-no-card"),
            Path::new("/dev/null"),
        );
        target(&text, shared(FakeGpio::new()))
    }

    fn step_reason(result: &engine::ScenarioResult, kind: &str) -> String {
        let step = result
            .steps
            .iter()
            .find(|s| s.text.contains(kind) || s.verdict.reason().is_some_and(|r| r.contains(kind)))
            .unwrap_or_else(|| panic!("no {kind} step in {:#?}", result.steps));
        match &step.verdict {
            Verdict::Skip(r) => r.clone(),
            other => panic!("step {} was {other:?}, not skipped", step.number),
        }
    }

    #[test]
    fn boards_and_ports_are_matched_by_name_then_in_name_order() {
        let text = r#"
gpio = "fake"
[boards.alpha]
model = "pi4"
power = "none"
console = { device = "/dev/null" }
zymkey = "none"
[boards.alpha.token-ports.red]
switch = { command = ["true", "{}"] }
[boards.pi]
model = "pi4"
power = "none"
console = { device = "/dev/null" }
zymkey = "none"
[boards.pi.token-ports.key]
switch = { command = ["true", "{}"] }
"#;
        let rig = RigFile::parse(Path::new("rigs/t.toml"), text).unwrap();
        let mut taken = BTreeSet::new();
        for (want, got) in [("pi", "pi"), ("victim", "alpha")] {
            let b = pick_board(&rig, want, &taken).unwrap();
            assert_eq!(b, got, "{want}");
            taken.insert(b);
        }
        assert_eq!(pick_board(&rig, "spare", &taken), None);
        let mut ports = BTreeSet::new();
        let key = pick_port(&rig, "key", &ports).unwrap();
        assert_eq!(key, ("pi".to_string(), "key".to_string()));
        ports.insert(key);
        let other = pick_port(&rig, "copy", &ports).unwrap();
        assert_eq!(other, ("alpha".to_string(), "red".to_string()));
    }

    #[test]
    fn a_scenario_moving_a_zymkey_is_skipped_with_the_reason_before_anything_powers_on() {
        let result = run(
            &unwired(),
            &committed("attacks/zymkey-moved-developer-follows"),
        );
        assert!(
            matches!(result.verdict, Verdict::Skip(_)),
            "{:?}",
            result.verdict
        );
        let reason = step_reason(&result, "zymkey-move");
        assert!(reason.contains("real Zymkey"), "{reason}");
        // Pre-flight: no board was made, nothing was switched.
        assert!(result.boards.is_empty());
        // Every other rig-impossible step says why too.
        assert!(step_reason(&result, "move-card").contains("SD mux"));
    }

    #[test]
    fn qemu_only_expectations_and_mismatched_boards_skip_with_their_reasons() {
        let target = unwired();
        let jtag = run(
            &target,
            &committed("attacks/jtag-enabled-debug-port-opened"),
        );
        let reason = jtag.verdict.reason().unwrap_or_default().to_string();
        assert!(reason.contains("[firmware] lines"), "{reason}");
        let login = run(&target, &committed("boot/boots-to-login"));
        assert!(
            step_reason(&login, "token-not-asked").contains("real key reports no count"),
            "{:?}",
            login.verdict
        );
        // The test rig's Zymkey is in developer mode: production scenarios cannot use it.
        let production = run(
            &target,
            &committed("attacks/boot-partition-holds-no-unlock-secret"),
        );
        assert!(
            production.steps.iter().any(|s| s
                .verdict
                .reason()
                .is_some_and(|r| r.contains("production-mode Zymkey"))),
            "{:#?}",
            production.steps
        );
    }

    /// A Pi played on a pseudo-terminal: boots to sshd when its relay powers it, answers
    /// `got: LINE` to every line typed, halts on `poweroff`.
    struct PlayedPi {
        gpio: SharedGpio,
        uart: PathBuf,
        _slave: std::os::fd::OwnedFd,
    }

    fn played_pi() -> PlayedPi {
        let pair = nix::pty::openpty(None, None).unwrap();
        let uart = nix::unistd::ttyname(&pair.slave).unwrap();
        let master = File::from(pair.master);
        let mut on_power = master.try_clone().unwrap();
        let gpio = shared(FakeGpio::new().with_watcher(Box::new(move |_, line, level| {
            if line == RELAY && level == Level::Low {
                let _ = on_power.write_all(
                    b"[    0.000000] Booting Linux on physical CPU 0x0\r\nkeybound-init: unlocked\r\nkeybound-guest: sshd ready\r\n",
                );
            }
        })));
        let mut answer = master.try_clone().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(master).lines() {
                let Ok(line) = line else { break };
                let _ = answer.write_all(format!("got: {}\r\n", line.trim()).as_bytes());
            }
        });
        PlayedPi {
            gpio,
            uart,
            _slave: pair.slave,
        }
    }

    fn card_image(path: &Path) {
        let layout = card::CardLayout::plan(0x00c0_ffee, 64, 1 << 20);
        let mut file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        file.set_len(layout.card_size()).unwrap();
        layout.write_mbr(&mut file).unwrap();
        let slice = fscommon::StreamSlice::new(
            file,
            layout.boot.offset,
            layout.boot.offset + layout.boot.size,
        )
        .unwrap();
        card::boot_fs::format(slice, &[("cmdline.txt", b"console=serial0,115200\n")]).unwrap();
    }

    const SMOKE: &str = r#"
title = "rig smoke: card edit through the SD mux, boot on the relay, console both ways, cut"

[boards.pi]
zymkey = {}

[[steps]]
do = "edit-boot-file"
board = "pi"
file = "cmdline.txt"
edit = { append = "quiet" }

[[steps]]
do = "boot"
board = "pi"
expect = ["unlocked", { console-regex = "Booting Linux" }]

[[steps]]
do = "console-send"
board = "pi"
text = "ping\n"

[[steps]]
do = "console-expect"
board = "pi"
pattern = "^got: ping$"

[[steps]]
do = "power-cut"
board = "pi"
expect = "powered-off"
"#;

    #[test]
    fn a_supported_scenario_runs_through_the_engine_on_a_played_pi() {
        let dir = tempfile::tempdir().unwrap();
        let pi = played_pi();
        let card = dir.path().join("card.img");
        card_image(&card);
        let mux_log = dir.path().join("mux.log");
        let target = target(&rig_text(&pi.uart, &card, &mux_log), pi.gpio.clone());
        let path = dir.path().join("smoke.toml");
        let loaded = scenario::LoadedScenario {
            scenario: scenario::parse(&path, SMOKE).unwrap_or_else(|e| panic!("{}", e.short())),
            name: "smoke".into(),
            path,
        };
        let result = run(&target, &loaded);
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{:#?}\n{:#?}",
            result.steps,
            result.boards
        );
        assert_eq!(
            std::fs::read_to_string(&mux_log).unwrap(),
            "dut\nhost\ndut\n",
            "the mux: to the board at start, to the controller for the edit, back"
        );
        let mut file = File::options().read(true).write(true).open(&card).unwrap();
        let layout = card::CardLayout::read_mbr(&mut file, &card).unwrap();
        let slice = fscommon::StreamSlice::new(
            file,
            layout.boot.offset,
            layout.boot.offset + layout.boot.size,
        )
        .unwrap();
        assert_eq!(
            card::boot_fs::read(slice, "cmdline.txt").unwrap(),
            b"console=serial0,115200 quiet\n"
        );
    }
}
