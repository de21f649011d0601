//! The harness's shared vocabulary: the [`Board`] trait (power, card, console, ssh), the
//! [`Console`] with its expect API, and the [`ssh`] driver that logs in as a person would.

mod console;
mod error;
pub mod milestones;
pub mod ssh;

pub use console::{Console, ConsoleLine, Mark};
pub use error::BoardError;
pub use ssh::SshEndpoint;

use card::Card;

/// What a board target can do; a step needing something absent is skipped with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    /// Power can be cut hard (not just switched off cleanly).
    pub power_cut: bool,
    /// The card can be taken out, copied and moved by the harness.
    pub card_handling: bool,
    /// A test-only maintenance channel exists (harness checks, log collection).
    pub maintenance_channel: bool,
}

/// A board: a Raspberry Pi or its emulated twin, with a card slot, a console and sshd.
pub trait Board: Send {
    /// The board's name in the scenario.
    fn name(&self) -> &str;
    /// What this target can do.
    fn capabilities(&self) -> Capabilities;
    /// Powers the board on (boots from the card as the Pi firmware does). Returns once the
    /// console is attached, not when the guest is up: use the console to wait for that.
    fn power_on(&mut self) -> Result<(), BoardError>;
    /// Shuts the guest down cleanly and powers off; falls back to a cut if it does not stop.
    fn power_off(&mut self) -> Result<(), BoardError>;
    /// Cuts power at once (no shutdown; writes in flight are lost, as on a real Pi).
    fn power_cut(&mut self) -> Result<(), BoardError>;
    /// Whether the board is running (false once the guest powered itself off).
    fn is_powered(&mut self) -> bool;
    /// The serial console.
    fn console(&self) -> &Console;
    /// Inserts a card (board must be off).
    fn insert_card(&mut self, card: Card) -> Result<(), BoardError>;
    /// Removes the card (board must be off).
    fn remove_card(&mut self) -> Result<Card, BoardError>;
    /// The card in the slot, if any.
    fn card(&self) -> Option<&Card>;
    /// The production sshd, as a client on the host reaches it (while powered).
    fn ssh(&self) -> Option<SshEndpoint>;
    /// Runs a command over the test-only maintenance channel; its stdout on success.
    fn maintenance_exec(&self, command: &str) -> Result<String, BoardError>;
}
