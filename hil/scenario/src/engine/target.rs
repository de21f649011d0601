//! What a backend provides: a [`Target`] makes boards from their specs and says what it can do;
//! a [`ScenarioBoard`] is one board with the whole scenario vocabulary.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use board::{BoardError, Console};

use crate::{BoardSpec, Presence, Scenario, Step, TokenFault, TokenSpec, ZymkeyFault};

/// Why a step did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The target cannot do this: the scenario is skipped here, with the reason.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The action failed; the board's state is unknown afterwards.
    #[error("{0}")]
    Failed(String),
}

impl From<BoardError> for StepError {
    fn from(e: BoardError) -> Self {
        match e {
            BoardError::Unsupported { board, what } => {
                Self::Unsupported(format!("board {board} cannot {what} on this target"))
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// Up on its root file system (sshd ready).
    Up,
    /// The init refused to unlock, with its stated reason.
    Sealed {
        /// The reason the board gave.
        reason: String,
    },
    /// The board powered itself off before coming up.
    Off,
}

/// What a login looked like from the client's side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginFacts {
    /// Whether the login was granted.
    pub granted: bool,
    /// Every prompt, in order.
    pub prompts: Vec<String>,
    /// What the client printed besides prompts (banners, PAM messages, errors).
    pub messages: String,
    /// The command's output.
    pub stdout: String,
    /// The client gave up at the time limit.
    pub timed_out: bool,
}

/// A Zymkey control operation on the module seated on a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZymkeyOp<'a> {
    /// Cut the tab (production binding).
    CutTab,
    /// Break a perimeter channel.
    Breach(u8),
    /// Inject a fault.
    Fault(&'a ZymkeyFault),
    /// Report forged ids.
    Spoof {
        /// The forged board id.
        board_id: String,
        /// The forged card id.
        card_id: String,
    },
    /// Seat the module (report the board's true ids).
    Attach,
    /// Take it off the header.
    Detach,
}

/// Bytes an attacker captured (candidate keys), with where they came from; never printed.
#[derive(Clone)]
pub struct Loot {
    /// Where it came from (e.g. "victim's Zymkey bus, frame 12").
    pub label: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A secret the harness knows and looks for on cards; never printed.
#[derive(Clone)]
pub struct Secret {
    /// What it is (e.g. "victim's Zymkey module secret").
    pub label: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, {} bytes)", self.label, self.bytes.len())
    }
}

/// Stops whatever a board is doing (kills its emulator): the engine's way out of a step that
/// overran its time limit.
pub type KillSwitch = Arc<dyn Fn() + Send + Sync>;

/// A card as the engine handles it.
pub trait ScenarioCard: Send {
    /// The card's id (an SD card's CID serial).
    fn serial(&self) -> String;
    /// Copies the card bit for bit onto a new card named `label` (which has its own id).
    fn copy(&mut self, label: &str) -> Result<Box<dyn ScenarioCard>, StepError>;
    /// Reads a file on the boot partition.
    fn read_boot_file(&self, name: &str) -> Result<Vec<u8>, StepError>;
    /// Writes a file on the boot partition.
    fn write_boot_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), StepError>;
    /// Reads the whole card and returns the labels of the `secrets` found on it (raw, hex or
    /// base64).
    fn scan(&self, secrets: &[Secret]) -> Result<Vec<String>, StepError>;
    /// Proves on the host, without the harness's own knowledge of any secret, that something an
    /// attacker left on the card's boot partition opens its root volume: the proof in words, or
    /// `None` when nothing there does.
    /// `loot` is what attackers captured elsewhere (e.g. a bus trace), each with a label.
    fn exfiltration_proof(&self, loot: &[Loot]) -> Result<Option<String>, StepError> {
        let _ = loot;
        Err(StepError::Unsupported(
            "this target cannot prove an exfiltrated key on the host".into(),
        ))
    }
    /// Overwrites this card with the content of `image` (another card of the same target),
    /// keeping this card's id: an old image written back onto the same card.
    fn restore_from(&mut self, image: &mut dyn ScenarioCard) -> Result<(), StepError> {
        let _ = image;
        Err(StepError::Unsupported(
            "this target cannot write a card image back".into(),
        ))
    }
    /// For the target's own downcast (mutable) when two of its cards meet.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// For the target's own downcast when the card goes into one of its boards.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// A FIDO2 token as the engine handles it (virtual-fido on QEMU, a real key on a rig).
pub trait ScenarioToken: Send {
    /// How it answers presence checks from now on.
    fn presence(&mut self, answer: Presence) -> Result<String, StepError>;
    /// Arms a misbehaviour for its next `count` replies (or clears every armed one).
    fn fault(&mut self, fault: TokenFault, count: u32) -> Result<String, StepError>;
    /// Makes this token an exact copy of `original` (credentials, keys, signature counter).
    fn clone_from(&mut self, original: &dyn ScenarioToken) -> Result<(), StepError>;
    /// How many requests (CTAP2 or U2F) it has answered so far.
    fn requests(&self) -> Result<u64, StepError>;
    /// For the target's own downcast when the token is plugged into one of its boards.
    fn as_any(&self) -> &dyn Any;
}

/// One board with the scenario vocabulary. Dropping it must release everything it runs.
pub trait ScenarioBoard: Send {
    /// The board's name in the scenario.
    fn name(&self) -> &str;
    /// Its board id (a Pi's CPU serial).
    fn board_id(&self) -> String;
    /// The serial console.
    fn console(&self) -> &Console;
    /// The console transcript on disk, if kept.
    fn transcript(&self) -> Option<PathBuf>;
    /// Powers on; returns once the console is attached.
    fn power_on(&mut self) -> Result<(), StepError>;
    /// Waits for the boot's outcome, looking at the console after `from`.
    fn wait_boot(&mut self, from: board::Mark, timeout: Duration)
    -> Result<BootOutcome, StepError>;
    /// Clean shutdown.
    fn power_off(&mut self) -> Result<(), StepError>;
    /// Hard power cut.
    fn power_cut(&mut self) -> Result<(), StepError>;
    /// Whether it runs.
    fn is_powered(&mut self) -> bool;
    /// Takes the card out (board off).
    fn remove_card(&mut self) -> Result<Box<dyn ScenarioCard>, StepError>;
    /// Puts a card in (board off, slot empty).
    fn insert_card(&mut self, card: Box<dyn ScenarioCard>) -> Result<(), StepError>;
    /// The id of the card in the slot (also while powered).
    fn card_serial(&self) -> Option<String>;
    /// Runs `f` on the card in the slot (board off): by default it is taken out and put back.
    fn with_card(
        &mut self,
        f: &mut dyn FnMut(&mut dyn ScenarioCard) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        let mut card = self.remove_card()?;
        let result = f(&mut *card);
        self.insert_card(card)?;
        result
    }
    /// Logs in over the production sshd as a person would.
    fn ssh_login(
        &mut self,
        user: &str,
        answers: &[&str],
        command: &str,
        timeout: Duration,
        workdir: &Path,
    ) -> Result<LoginFacts, StepError>;
    /// Runs a command over the test-only maintenance channel; its output.
    fn maintenance_exec(&mut self, command: &str, timeout: Duration) -> Result<String, StepError>;
    /// Drives the Zymkey seated on the board; a summary of the module's answer.
    fn zymkey(&mut self, op: ZymkeyOp<'_>) -> Result<String, StepError>;
    /// Takes the Zymkey off this board's header, to seat it elsewhere.
    fn take_zymkey(&mut self) -> Result<Box<dyn Any + Send>, StepError>;
    /// Seats a Zymkey taken from another board of the same target.
    fn seat_zymkey(&mut self, module: Box<dyn Any + Send>) -> Result<(), StepError>;
    /// Provisions the board (seals the root key); the board is off before and after.
    fn provision(&mut self, timeout: Duration) -> Result<(), StepError>;
    /// Plugs `token` (named `name`) into a USB port; returns once the board's system sees it.
    fn plug_token(&mut self, name: &str, token: &dyn ScenarioToken) -> Result<(), StepError>;
    /// Unplugs the token named `name`; returns once the board's system no longer sees it.
    fn unplug_token(&mut self, name: &str) -> Result<(), StepError>;
    /// Enrols the plugged token `name` for `user` in the board's login stack (the harness's
    /// setup for a token declared `enrolled-on` this board, done with `keybound token enroll`).
    fn enrol_token(
        &mut self,
        name: &str,
        token: &dyn ScenarioToken,
        user: &str,
    ) -> Result<String, StepError>;
    /// Secrets the harness knows for this board (searched for by `scan-card`).
    fn known_secrets(&mut self) -> Vec<Secret>;
    /// A file the harness provides for an attacker's edit (`edit = { harness-file = NAME }`).
    fn harness_file(&mut self, name: &str) -> Result<Vec<u8>, StepError> {
        Err(StepError::Unsupported(format!(
            "this target has no harness file {name}"
        )))
    }
    /// The vendor signs a new boot image from the card's boot files (signed-boot boards).
    fn vendor_sign_boot(&mut self) -> Result<String, StepError> {
        Err(StepError::Unsupported(
            "this target cannot sign boot images".into(),
        ))
    }
    /// Starts recording the Zymkey bus for the attacker (`zymkey-sniff`).
    fn zymkey_sniff(&mut self) -> Result<String, StepError> {
        Err(StepError::Unsupported(
            "this target cannot record the Zymkey bus".into(),
        ))
    }
    /// What attackers captured on this board so far (candidate keys from a sniffed bus, or read
    /// off its console).
    fn attacker_loot(&mut self) -> Vec<Loot> {
        Vec::new()
    }
    /// A handle that stops the board from another thread.
    fn kill_switch(&self) -> KillSwitch;
}

/// A backend: QEMU boards, a real Pi rig, or a fake in tests.
pub trait Target: Send + Sync {
    /// `qemu`, `rig:NAME`, `fake`.
    fn name(&self) -> String;
    /// Whether this is an emulated target (its skips must be on the allow-list).
    fn is_emulated(&self) -> bool;
    /// Whether the target can run `step` of `scenario`; the reason if not. Asked for every step
    /// before anything boots.
    fn support(&self, scenario: &Scenario, step: &Step) -> Result<(), String>;
    /// Makes a powered-off board with a fresh card, working in `dir`.
    fn create_board(
        &self,
        name: &str,
        spec: &BoardSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioBoard>, StepError>;
    /// Makes a token, not plugged anywhere, working in `dir`.
    fn create_token(
        &self,
        name: &str,
        spec: &TokenSpec,
        dir: &Path,
    ) -> Result<Box<dyn ScenarioToken>, StepError> {
        let _ = (name, spec, dir);
        Err(StepError::Unsupported(
            "this target has no FIDO2 tokens".into(),
        ))
    }
}
