//! The control socket's commands (JSON lines over daemon-kit's [`daemon_kit::ControlServer`]):
//! what the harness does to the module from outside — plug it on a board, cut its tab, breach
//! its perimeter, inject faults, read the bus trace. Documented in the crate README.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::binding::{Host, Mode, Verdict};
use crate::device::Emulator;
use crate::faults::Fault;
use crate::state::Persisted;

/// An accelerometer axis, for `tap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// X.
    X,
    /// Y.
    Y,
    /// Z (default).
    #[default]
    Z,
}

/// One control request: `{"cmd": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// The module's state (never secrets).
    Status,
    /// The module sits on a board: the harness reports the true ids its host software measures.
    Attach {
        /// Board id.
        board: String,
        /// Card id.
        card: String,
    },
    /// The module is taken off its board.
    Detach,
    /// Cut the tab: production mode, bound to the current fingerprint, permanent.
    CutTab,
    /// A perimeter breach on channel 0 or 1.
    Breach {
        /// The channel.
        channel: usize,
    },
    /// A tap along an axis.
    Tap {
        /// The axis (default z).
        #[serde(default)]
        axis: Axis,
    },
    /// Remove the backup battery.
    RemoveBattery,
    /// Put a backup battery back.
    InsertBattery,
    /// Arm a fault (`{"cmd":"fault","kind":"fail","count":1,"code":-5}` etc.).
    Fault(Fault),
    /// Turn the bus trace on or off.
    BusTrace {
        /// On or off.
        on: bool,
    },
    /// Read the bus trace.
    BusTraceRead {
        /// Clear it after reading.
        #[serde(default)]
        clear: bool,
    },
    /// New secret, binding and settings cleared: developer mode only.
    FactoryReset,
    /// The whole persistent state, secret included (the harness's cache only).
    Snapshot,
    /// Replace the whole persistent state with a snapshot (the harness's cache only).
    Restore {
        /// A document returned by `snapshot`.
        state: Value,
    },
}

/// The module's status as JSON.
pub fn status(emu: &Emulator) -> Value {
    let dev = emu.device();
    let matches = dev.measured().map(|m| {
        matches!(
            crate::binding::check(dev.p.mode, dev.p.bound, Some(m)),
            Verdict::Allowed { rebind: None }
        )
    });
    json!({
        "serial": dev.p.serial,
        "model": dev.p.model,
        "firmware": dev.p.firmware,
        "mode": dev.p.mode,
        "bound": dev.p.bound.is_some(),
        "attached": dev.attached,
        "fingerprint_matches": matches,
        "destroyed": dev.destroyed(),
        "destroyed_at": dev.p.destroyed_at,
        "battery_present": dev.p.battery_present,
        "led": dev.led,
        "i2c_addr": dev.p.i2c_addr,
        "perimeter": dev.p.perimeter.iter().map(|c| json!({
            "actions": c.actions, "first_breach": c.first_breach,
        })).collect::<Vec<_>>(),
        "tap_sensitivity": dev.p.tap_sensitivity,
        "faults": dev.faults,
        "bus_trace": dev.trace.is_on(),
    })
}

impl daemon_kit::ControlHandler for Emulator {
    type Request = ControlRequest;
    type Reply = Value;

    fn handle(&self, request: ControlRequest) -> Result<Value, String> {
        let result = match request {
            ControlRequest::Status => return Ok(status(self)),
            ControlRequest::Attach { board, card } => {
                let mut dev = self.device();
                dev.attached = Some(Host { board, card });
                if dev.p.mode == Mode::Developer {
                    // Developer mode follows the host; a failure here is reported, not fatal.
                    let _ = dev.check_binding();
                }
                json!({})
            }
            ControlRequest::Detach => {
                self.device().attached = None;
                json!({})
            }
            ControlRequest::CutTab => {
                let mut dev = self.device();
                if dev.p.mode == Mode::Production {
                    return Ok(json!({"mode": "production", "already": true}));
                }
                let measured = dev
                    .measured()
                    .ok_or("the module must be attached to a board to bind")?;
                dev.p.mode = Mode::Production;
                dev.p.bound = Some(measured);
                dev.save().map_err(|e| e.to_string())?;
                json!({"mode": "production"})
            }
            ControlRequest::Breach { channel } => {
                let destroyed = self.device().breach(channel)?;
                self.notify();
                json!({"self_destructed": destroyed})
            }
            ControlRequest::Tap { axis } => {
                let seen = self.device().tap(axis as usize);
                self.notify();
                json!({"detected": seen})
            }
            ControlRequest::RemoveBattery => {
                json!({"self_destructed": self.device().remove_battery()?})
            }
            ControlRequest::InsertBattery => {
                let mut dev = self.device();
                dev.p.battery_present = true;
                dev.save().map_err(|e| e.to_string())?;
                json!({})
            }
            ControlRequest::Fault(fault) => {
                self.device().faults.arm(fault)?;
                json!({})
            }
            ControlRequest::BusTrace { on } => {
                self.device().trace.set(on);
                json!({})
            }
            ControlRequest::BusTraceRead { clear } => {
                json!({"entries": self.device().trace.read(clear)})
            }
            ControlRequest::FactoryReset => {
                let mut dev = self.device();
                if dev.p.mode != Mode::Developer {
                    return Err("factory reset is refused in production mode".into());
                }
                if dev.destroyed() {
                    return Err("the module self-destructed: that is permanent".into());
                }
                let mut fresh = Persisted::fresh();
                fresh.serial = dev.p.serial.clone();
                dev.replace(fresh).map_err(|e| e.to_string())?;
                json!({})
            }
            ControlRequest::Snapshot => {
                let dev = self.device();
                let doc: Value = serde_json::from_slice(&dev.p.to_json())
                    .map_err(|e| format!("snapshot: {e}"))?;
                json!({"state": doc})
            }
            ControlRequest::Restore { state } => {
                let bytes = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
                let p = Persisted::from_json(&bytes)?;
                self.device().replace(p).map_err(|e| e.to_string())?;
                json!({})
            }
        };
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daemon_kit::ControlHandler;
    use proptest::prelude::*;

    fn parse(line: &str) -> Result<ControlRequest, serde_json::Error> {
        serde_json::from_str(line)
    }

    #[test]
    fn documented_requests_parse() {
        assert_eq!(
            parse(r#"{"cmd":"fault","kind":"fail","count":2,"code":-5}"#).unwrap(),
            ControlRequest::Fault(Fault::Fail { count: 2, code: -5 })
        );
        assert_eq!(
            parse(r#"{"cmd":"fault","kind":"spoof","board":"b","card":"c"}"#).unwrap(),
            ControlRequest::Fault(Fault::Spoof {
                board: "b".into(),
                card: "c".into()
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"tap"}"#).unwrap(),
            ControlRequest::Tap { axis: Axis::Z }
        );
        assert_eq!(
            parse(r#"{"cmd":"attach","board":"pi","card":"sd"}"#).unwrap(),
            ControlRequest::Attach {
                board: "pi".into(),
                card: "sd".into()
            }
        );
        assert!(parse(r#"{"cmd":"fault","kind":"melt"}"#).is_err());
        assert!(parse(r#"{"cmd":"breach"}"#).is_err());
    }

    #[test]
    fn cut_tab_needs_a_board_and_factory_reset_needs_developer_mode() {
        let emu = Emulator::in_memory(None);
        assert!(emu.handle(ControlRequest::CutTab).is_err());
        emu.handle(ControlRequest::Attach {
            board: "b".into(),
            card: "c".into(),
        })
        .unwrap();
        emu.handle(ControlRequest::FactoryReset).unwrap();
        emu.handle(ControlRequest::CutTab).unwrap();
        assert!(emu.handle(ControlRequest::FactoryReset).is_err());
        assert_eq!(status(&emu)["mode"], "production");
    }

    #[test]
    fn snapshot_restores_the_same_module() {
        let a = Emulator::in_memory(None);
        let snap = a.handle(ControlRequest::Snapshot).unwrap();
        let b = Emulator::in_memory(None);
        b.handle(ControlRequest::Restore {
            state: snap["state"].clone(),
        })
        .unwrap();
        assert_eq!(status(&a)["serial"], status(&b)["serial"]);
    }

    proptest! {
        #[test]
        fn garbage_control_lines_are_refused_without_panicking(line in "\\PC{0,200}") {
            let _ = parse(&line);
        }

        #[test]
        fn json_shaped_garbage_is_refused_without_panicking(
            cmd in "[a-z-]{0,16}", key in "[a-z]{0,8}", n in any::<i64>()
        ) {
            let line = format!(r#"{{"cmd":"{cmd}","{key}":{n}}}"#);
            if let Ok(req) = parse(&line) {
                // Whatever parses must also be handled without panicking.
                let emu = Emulator::in_memory(Some([9; 32]));
                let _ = emu.handle(req);
            }
        }
    }
}
