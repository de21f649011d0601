//! The power relay driver: on, off (after the board halted) and cut (at once, no shutdown).

use std::time::Duration;

use crate::RigError;
use crate::gpio::OutputLine;

/// The relay's last commanded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Powered.
    On,
    /// Not powered.
    Off,
}

/// A board's power relay on a GPIO line (asserted = powered).
#[derive(Debug)]
pub struct PowerRelay {
    line: OutputLine,
    state: RelayState,
    off_time: Duration,
}

impl PowerRelay {
    /// A relay on `line`, switched off at once so the board starts from a known state.
    pub fn new(line: OutputLine, off_time: Duration) -> Result<Self, RigError> {
        line.set(false)?;
        Ok(Self {
            line,
            state: RelayState::Off,
            off_time,
        })
    }

    /// Powers the board; a board already powered is switched off for the off time first, so it
    /// really resets.
    pub fn on(&mut self) -> Result<(), RigError> {
        if self.state == RelayState::On {
            self.cut()?;
            std::thread::sleep(self.off_time);
        }
        self.line.set(true)?;
        self.state = RelayState::On;
        Ok(())
    }

    /// Removes power at once: what `cut` and `off` (once the board halted) end with.
    pub fn cut(&mut self) -> Result<(), RigError> {
        // Marked off first: a failed line leaves the state unknown, never "on" by mistake.
        self.state = RelayState::Off;
        self.line.set(false)
    }

    /// The last commanded state.
    pub fn state(&self) -> RelayState {
        self.state
    }

    /// How long the relay stays off before a re-power.
    pub fn off_time(&self) -> Duration {
        self.off_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpio::{FakeGpio, Level, shared};
    use crate::rigfile::{Active, GpioLine};

    #[test]
    fn an_active_low_relay_starts_off_and_repowers_through_off() {
        let fake = FakeGpio::new();
        let state = fake.state();
        let line = OutputLine::new(
            shared(fake),
            GpioLine {
                chip: "gpiochip0".into(),
                line: 5,
                active: Active::Low,
            },
        );
        let mut relay = PowerRelay::new(line, Duration::from_millis(1)).unwrap();
        relay.on().unwrap();
        relay.on().unwrap();
        relay.cut().unwrap();
        let levels: Vec<Level> = state.lock().unwrap().history.iter().map(|h| h.2).collect();
        // off (start), on, off+on (re-power), off.
        use Level::*;
        assert_eq!(levels, [High, Low, High, Low, High]);
        assert_eq!(relay.state(), RelayState::Off);
    }
}
