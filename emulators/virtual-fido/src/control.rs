//! The control protocol (JSON lines over daemon-kit's control socket).
//!
//! Requests are objects with a `cmd` field; replies are `{"ok":true,"result":…}` or
//! `{"ok":false,"error":"…"}`. See the crate README for the full list.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::presence::PresencePolicy;
use crate::state::TokenState;
use crate::token::Token;

/// One control request.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// `{"cmd":"status"}`: the token's summary.
    Status,
    /// `{"cmd":"presence","policy":"accept"|"deny"|"timeout"|"wait-for-touch"}` or
    /// `{"cmd":"presence","policy":"delay","ms":N}`.
    Presence {
        /// The new policy.
        #[serde(flatten)]
        policy: PresencePolicy,
    },
    /// `{"cmd":"touch"}`: touch the button (kept until a presence check consumes it).
    Touch,
    /// `{"cmd":"plug"}`.
    Plug,
    /// `{"cmd":"unplug"}`: open connections close, new ones are closed at once.
    Unplug,
    /// `{"cmd":"set-counter","value":N}`.
    SetCounter {
        /// The new signature counter.
        value: u32,
    },
    /// `{"cmd":"export-state"}`: the whole state file as JSON (private keys included).
    ExportState,
    /// `{"cmd":"import-state","state":{…}}`: replace the state (a clone, or an older copy).
    ImportState {
        /// A state as exported.
        state: serde_json::Value,
    },
    /// `{"cmd":"fault","fault":"corrupt"|"oversize"|"stall"|"drop"}`: arm a one-shot fault.
    Fault {
        /// The fault.
        fault: Fault,
    },
    /// `{"cmd":"clear-faults"}`.
    ClearFaults,
}

/// The control socket's handler.
pub struct Control(pub Arc<Token>);

/// Replies are JSON values.
pub type ControlReply = serde_json::Value;

fn json<T: Serialize>(value: T) -> Result<ControlReply, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

impl daemon_kit::ControlHandler for Control {
    type Request = ControlRequest;
    type Reply = ControlReply;

    fn handle(&self, request: ControlRequest) -> Result<ControlReply, String> {
        let token = &self.0;
        match request {
            ControlRequest::Status => json(token.status()),
            ControlRequest::Presence { policy } => {
                token.presence().set_policy(policy);
                json(token.status())
            }
            ControlRequest::Touch => {
                token.presence().touch();
                json(token.status())
            }
            ControlRequest::Plug => {
                token.set_plugged(true);
                json(token.status())
            }
            ControlRequest::Unplug => {
                token.set_plugged(false);
                json(token.status())
            }
            ControlRequest::SetCounter { value } => {
                token.set_counter(value).map_err(|e| e.to_string())?;
                json(token.status())
            }
            ControlRequest::ExportState => json(token.export_state()),
            ControlRequest::ImportState { state } => {
                let bytes = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
                let state = TokenState::from_json(&bytes).map_err(|e| e.to_string())?;
                token.import_state(state).map_err(|e| e.to_string())?;
                json(token.status())
            }
            ControlRequest::Fault { fault } => {
                token.faults().arm(fault);
                json(token.status())
            }
            ControlRequest::ClearFaults => {
                token.faults().clear();
                json(token.status())
            }
        }
    }
}
