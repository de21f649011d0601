//! Two-state devices (SD mux side, hub-port power) switched by a command or a GPIO line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RigError;
use crate::gpio::{OutputLine, SharedGpio};
use crate::rigfile::Switch;

/// How long a control command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A switch driver: asserting runs the command with the "on" word or asserts the line.
#[derive(Debug, Clone)]
pub enum SwitchDriver {
    /// A command with `{}` replaced by the state word.
    Command(crate::rigfile::CommandLine),
    /// A GPIO line.
    Gpio(OutputLine),
}

impl SwitchDriver {
    /// The driver for a rig file's switch.
    pub fn new(switch: &Switch, gpio: &SharedGpio) -> Self {
        match switch {
            Switch::Command(c) => Self::Command(c.clone()),
            Switch::Gpio(line) => Self::Gpio(OutputLine::new(gpio.clone(), line.clone())),
        }
    }

    /// Switches: `asserted` picks the line level, or the word (`on_word`/`off_word`) in the
    /// command.
    pub fn set(&self, asserted: bool, on_word: &str, off_word: &str) -> Result<(), RigError> {
        match self {
            Self::Gpio(line) => line.set(asserted),
            Self::Command(c) => run(&c.with(if asserted { on_word } else { off_word })).map(|_| ()),
        }
    }
}

/// Runs a control command to completion (at most 30 s); its stdout.
pub fn run(argv: &[String]) -> Result<String, RigError> {
    let shown = argv.join(" ");
    let err = |reason: String| RigError::Command {
        command: shown.clone(),
        reason,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| err("empty command".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("could not start: {e}")))?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| err(e.to_string()))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("did not finish within {COMMAND_LIMIT:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if status.success() {
        Ok(stdout)
    } else {
        Err(err(format!("{status}: {}", stderr.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rigfile::CommandLine;

    #[test]
    fn the_state_word_fills_the_placeholder_and_failures_say_why() {
        let ok = SwitchDriver::Command(CommandLine(vec![
            "sh".into(),
            "-c".into(),
            "test {} = on".into(),
        ]));
        ok.set(true, "on", "off").unwrap();
        let err = ok.set(false, "on", "off").unwrap_err().to_string();
        assert!(err.contains("test off = on"), "{err}");
        let missing = run(&["/nonexistent/uhubctl".into()])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("could not start"), "{missing}");
    }
}
