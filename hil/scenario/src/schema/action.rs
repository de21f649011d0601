//! What a step does (`do = "…"`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Timeout;

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn default_command() -> String {
    "id -un".into()
}

fn is_default_command(c: &String) -> bool {
    *c == default_command()
}

/// What a step does; the variant is the step's `do` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Power on and wait until the board is up (sshd ready), sealed, or off again.
    Boot {
        /// The board.
        board: String,
    },
    /// Power on and return at once (the console is attached; nothing is awaited).
    PowerOn {
        /// The board.
        board: String,
    },
    /// Shut the guest down cleanly and power off.
    PowerOff {
        /// The board.
        board: String,
    },
    /// Cut power at once (no shutdown).
    PowerCut {
        /// The board.
        board: String,
    },
    /// Provision the board: seal the root key with its Zymkey (`keybound provision`).
    Provision {
        /// The board.
        board: String,
    },
    /// Pull the card from one board and put it in another's empty slot.
    MoveCard {
        /// The board giving the card.
        from: String,
        /// The board receiving it.
        to: String,
    },
    /// Copy a board's card bit for bit onto a new card in another board's empty slot (the copy
    /// is another card: it has its own card id).
    CopyCard {
        /// The board holding the original.
        from: String,
        /// The board receiving the copy.
        to: String,
    },
    /// Take the card out; it waits on a shelf under a name.
    RemoveCard {
        /// The board.
        board: String,
        /// The shelf name (default: the board's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shelf: Option<String>,
    },
    /// Put a card from the shelf into a board's empty slot.
    InsertCard {
        /// The board.
        board: String,
        /// The shelf name (default: the board's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shelf: Option<String>,
    },
    /// Write an image of a card taken earlier (a card on the shelf, e.g. from `copy-card` then
    /// `remove-card`) back onto the card in a board's slot: the same card (its id unchanged), old
    /// content. The shelf card stays on the shelf.
    RestoreCard {
        /// The board whose card is overwritten (board off).
        board: String,
        /// The shelf holding the old image.
        shelf: String,
    },
    /// The vendor, at the desk, builds and signs a new `boot.img` from the card's current boot
    /// files (a release of a signed-boot product); only for `signed-boot` boards.
    VendorSignBoot {
        /// The board whose card is signed (board off).
        board: String,
    },
    /// Edit a file on the card's FAT boot partition, as anyone with a card reader can.
    EditBootFile {
        /// The board whose card is edited (board off).
        board: String,
        /// The file on the boot partition (e.g. `cmdline.txt`).
        file: String,
        /// The edit.
        edit: CardEdit,
    },
    /// Read the whole card on the host (raw, hex and base64) looking for key material.
    ScanCard {
        /// The board whose card is scanned (board off).
        board: String,
    },
    /// Cut the Zymkey's binding tab: production mode, bound for good.
    ZymkeyCutTab {
        /// The board carrying the module.
        board: String,
    },
    /// Break a perimeter circuit of the Zymkey.
    ZymkeyBreach {
        /// The board carrying the module.
        board: String,
        /// The perimeter channel (0 or 1).
        #[serde(default)]
        channel: u8,
    },
    /// Make the Zymkey misbehave.
    ZymkeyFault {
        /// The board carrying the module.
        board: String,
        /// The fault.
        fault: ZymkeyFault,
    },
    /// Make the module's host software report another board's fingerprint (its board id and the
    /// id of the card it holds now), as an attacker with a writable-CID card and faked ids can.
    ZymkeySpoof {
        /// The board carrying the module.
        board: String,
        /// The board whose fingerprint is forged.
        like: String,
    },
    /// Clip a logic analyser onto the board's GPIO header: every frame between the host and the
    /// Zymkey from now on is recorded for the attacker (a later `scan-card` with
    /// `key-exfiltrated` tries what it saw against the card).
    ZymkeySniff {
        /// The board carrying the module.
        board: String,
    },
    /// Seat the module on its board again (the harness reports the board's true ids).
    ZymkeyAttach {
        /// The board.
        board: String,
    },
    /// Take the module off its board's header (it answers nothing).
    ZymkeyDetach {
        /// The board.
        board: String,
    },
    /// Move the Zymkey from one board's header to another's (both off).
    ZymkeyMove {
        /// The board giving the module.
        from: String,
        /// The board receiving it (it must have none).
        to: String,
    },
    /// Plug a token into a board's USB port.
    TokenPlug {
        /// The token.
        token: String,
        /// The board.
        board: String,
    },
    /// Unplug a token.
    TokenUnplug {
        /// The token.
        token: String,
    },
    /// How the token answers user-presence checks from now on (a new token is touched).
    TokenPresence {
        /// The token.
        token: String,
        /// Touch, deny, or never answer.
        answer: Presence,
    },
    /// Make the token misbehave on its next replies (a broken or hostile token), or clear that.
    TokenFault {
        /// The token.
        token: String,
        /// The misbehaviour.
        fault: TokenFault,
        /// How many replies in a row (default 1; a login exchanges several).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        count: u32,
    },
    /// Clone a token's state into another declared token (an attacker's copy).
    TokenClone {
        /// The original.
        token: String,
        /// The clone (declared in `[tokens]`).
        into: String,
    },
    /// Type text on the serial console (`\n` is Enter).
    ConsoleSend {
        /// The board.
        board: String,
        /// What to type.
        text: String,
    },
    /// Wait for a line matching a regex on the console (from the step's start).
    ConsoleExpect {
        /// The board.
        board: String,
        /// The regex.
        pattern: String,
    },
    /// Log in over the production sshd as a person would (keyboard-interactive).
    SshLogin {
        /// The board.
        board: String,
        /// The account.
        user: String,
        /// Answers to the prompts, in order (a password, a PIN…).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answers: Vec<String>,
        /// The command run once logged in.
        #[serde(
            default = "default_command",
            skip_serializing_if = "is_default_command"
        )]
        command: String,
    },
    /// Log in on the serial console's getty as a person would.
    ConsoleLogin {
        /// The board.
        board: String,
        /// The account.
        user: String,
        /// The password typed.
        password: String,
    },
    /// Run a command as root over the test-only maintenance channel (a harness check, not an
    /// attack: production images have no such channel).
    MaintenanceExec {
        /// The board.
        board: String,
        /// The shell command.
        command: String,
    },
    /// Let time pass.
    Wait {
        /// How long (`"5s"`, `"500ms"`, `"2m"`).
        duration: Timeout,
    },
}

/// An edit of a boot-partition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum CardEdit {
    /// Append text to the file's first line (what editing `cmdline.txt` means).
    Append(String),
    /// Replace the whole file.
    Content(String),
    /// Replace every occurrence of the first string by the second.
    Replace([String; 2]),
    /// Replace the whole file by a file the harness provides (an attacker's tool, e.g.
    /// `attacker-initramfs`: an initramfs that unseals the key and writes it to the boot
    /// partition).
    HarnessFile(String),
}

/// A Zymkey fault (zymkey-emu's control protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ZymkeyFault {
    /// The next `count` calls fail with `code` (negative).
    Fail {
        /// How many calls.
        count: u32,
        /// The error code returned.
        code: i32,
    },
    /// The next `count` calls are answered `ms` late.
    Delay {
        /// How many calls.
        count: u32,
        /// The delay in milliseconds.
        ms: u32,
    },
    /// The next `count` answers carrying data get one bit flipped.
    BitFlip {
        /// How many calls.
        count: u32,
    },
    /// The next `count` calls: the connection is dropped, no answer.
    Drop {
        /// How many calls.
        count: u32,
    },
    /// The next call kills the module's emulator mid-call (no answer); it runs again, on the
    /// same state, from the board's next power-on (a power cycle restarts a real module).
    Crash,
    /// Every fault removed (spoofing included).
    Clear,
}

/// A token misbehaving on its next reply (virtual-fido's faults; a rig needs a hostile token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TokenFault {
    /// The reply's payload is scrambled (its status byte kept).
    Corrupt,
    /// The reply is longer than a CTAPHID message may be.
    Oversize,
    /// No reply at all.
    Stall,
    /// The token is pulled half-way through the reply.
    Drop,
    /// The next assertion is signed for another relying party (`evil.example`).
    WrongRp,
    /// Every armed misbehaviour removed.
    Clear,
}

impl TokenFault {
    /// The name in scenario files (and virtual-fido's control protocol).
    pub fn name(self) -> &'static str {
        match self {
            TokenFault::Corrupt => "corrupt",
            TokenFault::Oversize => "oversize",
            TokenFault::Stall => "stall",
            TokenFault::Drop => "drop",
            TokenFault::WrongRp => "wrong-rp",
            TokenFault::Clear => "clear",
        }
    }
}

/// How a token answers a user-presence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// The user touches it.
    Touch,
    /// The user refuses.
    Deny,
    /// Nobody touches it (the check times out).
    Timeout,
}

macro_rules! kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The kind of a step, without its parameters (what targets report support for).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ActionKind {
            $(
                #[doc = concat!("`do = \"", $name, "\"`")]
                $variant,
            )*
        }

        impl ActionKind {
            /// Every kind.
            pub const ALL: &[ActionKind] = &[$(ActionKind::$variant),*];

            /// The `do` value.
            pub fn name(self) -> &'static str {
                match self {
                    $(ActionKind::$variant => $name,)*
                }
            }
        }

        impl Action {
            /// The step's kind.
            pub fn kind(&self) -> ActionKind {
                match self {
                    $(Action::$variant { .. } => ActionKind::$variant,)*
                }
            }
        }
    };
}

kinds! {
    Boot => "boot",
    PowerOn => "power-on",
    PowerOff => "power-off",
    PowerCut => "power-cut",
    Provision => "provision",
    MoveCard => "move-card",
    CopyCard => "copy-card",
    RemoveCard => "remove-card",
    InsertCard => "insert-card",
    RestoreCard => "restore-card",
    VendorSignBoot => "vendor-sign-boot",
    EditBootFile => "edit-boot-file",
    ScanCard => "scan-card",
    ZymkeyCutTab => "zymkey-cut-tab",
    ZymkeyBreach => "zymkey-breach",
    ZymkeyFault => "zymkey-fault",
    ZymkeySpoof => "zymkey-spoof",
    ZymkeySniff => "zymkey-sniff",
    ZymkeyAttach => "zymkey-attach",
    ZymkeyDetach => "zymkey-detach",
    ZymkeyMove => "zymkey-move",
    TokenPlug => "token-plug",
    TokenUnplug => "token-unplug",
    TokenPresence => "token-presence",
    TokenClone => "token-clone",
    TokenFault => "token-fault",
    ConsoleSend => "console-send",
    ConsoleExpect => "console-expect",
    SshLogin => "ssh-login",
    ConsoleLogin => "console-login",
    MaintenanceExec => "maintenance-exec",
    Wait => "wait",
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Action {
    /// The boards this step names, with the field naming each.
    pub fn boards(&self) -> Vec<(&'static str, &str)> {
        use Action::*;
        match self {
            Boot { board }
            | PowerOn { board }
            | PowerOff { board }
            | PowerCut { board }
            | Provision { board }
            | RemoveCard { board, .. }
            | InsertCard { board, .. }
            | RestoreCard { board, .. }
            | VendorSignBoot { board }
            | EditBootFile { board, .. }
            | ScanCard { board }
            | ZymkeyCutTab { board }
            | ZymkeyBreach { board, .. }
            | ZymkeyFault { board, .. }
            | ZymkeyAttach { board }
            | ZymkeyDetach { board }
            | ZymkeySniff { board }
            | TokenPlug { board, .. }
            | ConsoleSend { board, .. }
            | ConsoleExpect { board, .. }
            | SshLogin { board, .. }
            | ConsoleLogin { board, .. }
            | MaintenanceExec { board, .. } => vec![("board", board)],
            ZymkeySpoof { board, like } => vec![("board", board), ("like", like)],
            MoveCard { from, to } | CopyCard { from, to } | ZymkeyMove { from, to } => {
                vec![("from", from), ("to", to)]
            }
            TokenUnplug { .. }
            | TokenPresence { .. }
            | TokenFault { .. }
            | TokenClone { .. }
            | Wait { .. } => vec![],
        }
    }

    /// The tokens this step names, with the field naming each.
    pub fn tokens(&self) -> Vec<(&'static str, &str)> {
        use Action::*;
        match self {
            TokenPlug { token, .. }
            | TokenUnplug { token }
            | TokenPresence { token, .. }
            | TokenFault { token, .. } => vec![("token", token)],
            TokenClone { token, into } => vec![("token", token), ("into", into)],
            _ => vec![],
        }
    }

    /// The board whose console, power state and logins the step's expectations look at.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Action::MoveCard { to, .. }
            | Action::CopyCard { to, .. }
            | Action::ZymkeyMove { to, .. } => Some(to),
            _ => self.boards().first().map(|(_, b)| *b),
        }
    }

    /// The step's own time limit when the file gives none.
    pub fn default_timeout(&self) -> std::time::Duration {
        use std::time::Duration;
        match self {
            Action::Boot { .. } => Duration::from_secs(180),
            Action::Provision { .. } => Duration::from_secs(300),
            Action::PowerOff { .. } => Duration::from_secs(60),
            Action::SshLogin { .. } | Action::ConsoleLogin { .. } => Duration::from_secs(90),
            Action::ConsoleExpect { .. } | Action::MaintenanceExec { .. } => {
                Duration::from_secs(120)
            }
            Action::Wait { duration } => duration.0 + Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }
}
