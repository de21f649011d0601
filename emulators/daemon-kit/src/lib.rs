//! What both emulators share: a locked state directory with atomic writes ([`StateDir`]), a
//! JSON-lines control socket ([`ControlServer`]), readiness notification ([`notify_ready`]) and
//! exit when the board goes away ([`watch_lifeline`], [`die_with_parent`]); and the parent's side
//! of that contract ([`Daemon`]).

mod control;
mod lifecycle;
mod spawn;
mod state_dir;

pub use control::{ControlClient, ControlError, ControlHandler, ControlServer, MAX_LINE};
pub use lifecycle::{die_with_parent, notify_ready, watch_lifeline};
pub use spawn::{Daemon, SpawnError};
pub use state_dir::{StateDir, StateDirError};
