//! Tokens of the QEMU target: a virtual-fido daemon per scenario token, plugged into boards over
//! usb-redir (the guest kernel sees a USB HID device and makes `/dev/hidraw*`).

use std::any::Any;
use std::path::{Path, PathBuf};

use qemu_runner::VirtualToken;
use scenario::engine::{ScenarioToken, StepError};
use scenario::{Presence, TokenFault};
use serde_json::json;

/// The committed TEST-ONLY token enrolled for the test image's technician (its authfile line and
/// counter are in the test image): a scenario's first token declared `enrolled-on` a board starts
/// as a copy of it, so no enrolment step has to run in the guest.
pub(crate) fn enrolled_test_token(repo: &Path) -> PathBuf {
    board_kit::test_token_state(repo)
}

/// How long a scenario token waits for a touch that never comes before giving up by itself:
/// longer than any login step's time limit, so a module that ignores its own `timeout=` hangs
/// the client (and the `login-denied` expectation fails) instead of being rescued by the token.
const PRESENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

/// One scenario token.
pub(crate) struct QemuToken {
    token: VirtualToken,
    /// Already enrolled for the technician in the test image's authfile.
    pub(crate) preenrolled: bool,
    _sockets: tempfile::TempDir,
}

impl QemuToken {
    /// Starts a token in `dir`: a copy of `state` (a state file) or, without one, a new token.
    pub(crate) fn start(
        program: &Path,
        dir: &Path,
        state: Option<&Path>,
    ) -> Result<Self, StepError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            StepError::Failed(format!("{what} in {}: {e}", dir.display()))
        };
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| failed("creating the state directory", &e))?;
        if let Some(state) = state {
            std::fs::copy(state, state_dir.join("token.json"))
                .map_err(|e| failed(&format!("copying {}", state.display()), &e))?;
        }
        // Unix socket paths are short: the sockets live in their own short temporary directory.
        let sockets = tempfile::Builder::new()
            .prefix("kbt-")
            .tempdir()
            .map_err(|e| failed("socket directory", &e))?;
        let token = VirtualToken::start_program_with_presence_limit(
            program,
            &state_dir,
            sockets.path(),
            "accept",
            PRESENCE_LIMIT,
        )?;
        Ok(Self {
            token,
            preenrolled: state.is_some(),
            _sockets: sockets,
        })
    }

    /// The usb-redir socket a board's QEMU connects to when the token is plugged.
    pub(crate) fn usbredir_socket(&self) -> &Path {
        self.token.usbredir_socket()
    }

    /// Puts the token's USB connector back in working order (after a `drop` fault pulled it).
    pub(crate) fn reconnect(&self) -> Result<(), StepError> {
        self.control(json!({"cmd": "plug"})).map(|_| ())
    }

    fn control(&self, request: serde_json::Value) -> Result<serde_json::Value, StepError> {
        Ok(self.token.control(request)?)
    }
}

impl ScenarioToken for QemuToken {
    fn presence(&mut self, answer: Presence) -> Result<String, StepError> {
        let policy = match answer {
            Presence::Touch => "accept",
            Presence::Deny => "deny",
            Presence::Timeout => "timeout",
        };
        self.control(json!({"cmd": "presence", "policy": policy}))?;
        Ok(format!("presence policy {policy}"))
    }

    fn fault(&mut self, fault: TokenFault, count: u32) -> Result<String, StepError> {
        if fault == TokenFault::Clear {
            self.control(json!({"cmd": "clear-faults"}))?;
            return Ok("faults cleared".into());
        }
        for _ in 0..count {
            self.control(json!({"cmd": "fault", "fault": fault.name()}))?;
        }
        Ok(format!("{} armed for {count} repl(ies)", fault.name()))
    }

    fn clone_from(&mut self, original: &dyn ScenarioToken) -> Result<(), StepError> {
        let original = original
            .as_any()
            .downcast_ref::<QemuToken>()
            .ok_or_else(|| StepError::Failed("a token from another target".into()))?;
        let state = original.control(json!({"cmd": "export-state"}))?;
        self.control(json!({"cmd": "import-state", "state": state}))?;
        self.preenrolled = original.preenrolled;
        Ok(())
    }

    fn requests(&self) -> Result<u64, StepError> {
        let status = self.control(json!({"cmd": "status"}))?;
        status["requests"].as_u64().ok_or_else(|| {
            StepError::Failed(format!("virtual-fido status without requests: {status}"))
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
