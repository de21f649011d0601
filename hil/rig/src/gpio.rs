//! GPIO: the narrow [`Gpio`] trait every line-driven resource goes through, an in-memory
//! [`FakeGpio`] for tests and dry runs, and (cargo feature `rppal`) `RppalGpio` for a rig
//! controller that is itself a Raspberry Pi.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::RigError;
use crate::rigfile::{Active, GpioLine};

/// A line's electrical level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Driven high.
    High,
    /// Driven low.
    Low,
}

/// Drives output lines of the rig controller. One implementation per GPIO driver; everything
/// above it (relay, SD mux, hub ports) knows only this.
pub trait Gpio: Send {
    /// Drives `line` of `chip` to `level` (claiming it as an output on first use).
    fn set(&mut self, chip: &str, line: u32, level: Level) -> Result<(), RigError>;
}

/// A GPIO driver shared by every resource of a rig.
pub type SharedGpio = Arc<Mutex<Box<dyn Gpio>>>;

/// Wraps a driver for sharing.
pub fn shared(gpio: impl Gpio + 'static) -> SharedGpio {
    Arc::new(Mutex::new(Box::new(gpio)))
}

/// One resource's line with its polarity: asserting drives the active level.
#[derive(Clone)]
pub struct OutputLine {
    gpio: SharedGpio,
    spec: GpioLine,
}

impl std::fmt::Debug for OutputLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputLine")
            .field("spec", &self.spec)
            .finish()
    }
}

impl OutputLine {
    /// The line `spec` driven through `gpio`.
    pub fn new(gpio: SharedGpio, spec: GpioLine) -> Self {
        Self { gpio, spec }
    }

    /// The level that asserts (or, with `false`, deasserts) this line.
    pub fn level(&self, asserted: bool) -> Level {
        match (self.spec.active, asserted) {
            (Active::High, true) | (Active::Low, false) => Level::High,
            (Active::High, false) | (Active::Low, true) => Level::Low,
        }
    }

    /// Asserts or deasserts the line.
    pub fn set(&self, asserted: bool) -> Result<(), RigError> {
        let level = self.level(asserted);
        self.gpio.lock().unwrap_or_else(|e| e.into_inner()).set(
            &self.spec.chip,
            self.spec.line,
            level,
        )
    }

    /// The line's place and polarity.
    pub fn spec(&self) -> &GpioLine {
        &self.spec
    }
}

/// What a [`FakeGpio`] was told, in order, and where each line is now.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every `set`, in order: (chip, line, level).
    pub history: Vec<(String, u32, Level)>,
    /// The current level of each line driven so far.
    pub levels: BTreeMap<(String, u32), Level>,
}

/// A callback told of every line change (a test's simulated board reacting to its relay).
pub type Watcher = Box<dyn FnMut(&str, u32, Level) + Send>;

/// In-memory GPIO: records every change; optionally fails a chosen line, or calls a watcher.
#[derive(Default)]
pub struct FakeGpio {
    state: Arc<Mutex<FakeState>>,
    watcher: Option<Watcher>,
    broken: Option<(String, u32)>,
}

impl FakeGpio {
    /// A fake with every line undriven.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on what it was told (for assertions).
    pub fn state(&self) -> Arc<Mutex<FakeState>> {
        Arc::clone(&self.state)
    }

    /// Calls `watcher` after every change.
    pub fn with_watcher(mut self, watcher: Watcher) -> Self {
        self.watcher = Some(watcher);
        self
    }

    /// Makes every `set` of this line fail (a line another process holds).
    pub fn with_broken_line(mut self, chip: &str, line: u32) -> Self {
        self.broken = Some((chip.to_string(), line));
        self
    }
}

impl Gpio for FakeGpio {
    fn set(&mut self, chip: &str, line: u32, level: Level) -> Result<(), RigError> {
        if self
            .broken
            .as_ref()
            .is_some_and(|(c, l)| c == chip && *l == line)
        {
            return Err(RigError::Gpio {
                chip: chip.into(),
                line,
                reason: "line busy (fake)".into(),
            });
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.history.push((chip.to_string(), line, level));
            state.levels.insert((chip.to_string(), line), level);
        }
        if let Some(w) = self.watcher.as_mut() {
            w(chip, line, level);
        }
        Ok(())
    }
}

/// The rig controller's own GPIO header through rppal (the controller is a Raspberry Pi).
///
/// rppal drives the SoC's GPIO bank by BCM number: `line` is the BCM GPIO number, and `chip`
/// must name that bank (`gpiochip0`; `gpiochip4` on a Pi 5 with kernels before 6.6.45). Lines
/// stay at their last level when the harness exits (a relay does not flip on a crash).
#[cfg(feature = "rppal")]
pub struct RppalGpio {
    gpio: rppal::gpio::Gpio,
    pins: BTreeMap<u32, rppal::gpio::OutputPin>,
}

#[cfg(feature = "rppal")]
impl RppalGpio {
    /// Chips rppal can stand for.
    pub const CHIPS: &[&str] = &["gpiochip0", "gpiochip4"];

    /// Opens the controller's GPIO.
    pub fn new() -> Result<Self, RigError> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| RigError::Gpio {
            chip: "gpiochip0".into(),
            line: 0,
            reason: format!("opening the Pi's GPIO with rppal: {e}"),
        })?;
        Ok(Self {
            gpio,
            pins: BTreeMap::new(),
        })
    }
}

#[cfg(feature = "rppal")]
impl Gpio for RppalGpio {
    fn set(&mut self, chip: &str, line: u32, level: Level) -> Result<(), RigError> {
        let err = |reason: String| RigError::Gpio {
            chip: chip.into(),
            line,
            reason,
        };
        if !Self::CHIPS.contains(&chip) {
            return Err(err(format!(
                "rppal drives only the SoC's GPIO bank ({})",
                Self::CHIPS.join(" or ")
            )));
        }
        let bcm = u8::try_from(line).map_err(|_| err("not a BCM GPIO number".into()))?;
        if !self.pins.contains_key(&line) {
            let mut pin = self
                .gpio
                .get(bcm)
                .map_err(|e| err(format!("claiming: {e}")))?
                .into_output();
            pin.set_reset_on_drop(false);
            self.pins.insert(line, pin);
        }
        let pin = self
            .pins
            .get_mut(&line)
            .ok_or_else(|| err("not claimed".into()))?;
        match level {
            Level::High => pin.set_high(),
            Level::Low => pin.set_low(),
        }
        Ok(())
    }
}

/// Opens the driver a rig file names.
pub fn open(backend: crate::rigfile::GpioBackend) -> Result<SharedGpio, RigError> {
    match backend {
        crate::rigfile::GpioBackend::Fake => Ok(shared(FakeGpio::new())),
        #[cfg(feature = "rppal")]
        crate::rigfile::GpioBackend::Rppal => Ok(shared(RppalGpio::new()?)),
        #[cfg(not(feature = "rppal"))]
        crate::rigfile::GpioBackend::Rppal => Err(RigError::Gpio {
            chip: "gpiochip0".into(),
            line: 0,
            reason: "this build has no rppal driver: rebuild with `--features rig/rppal` on the \
                     rig controller (or set gpio = \"fake\" for a dry run)"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(active: Active) -> GpioLine {
        GpioLine {
            chip: "gpiochip0".into(),
            line: 17,
            active,
        }
    }

    #[test]
    fn polarity_picks_the_level() {
        let fake = FakeGpio::new();
        let state = fake.state();
        let gpio = shared(fake);
        let low = OutputLine::new(gpio.clone(), line(Active::Low));
        low.set(true).unwrap();
        low.set(false).unwrap();
        let high = OutputLine::new(gpio, line(Active::High));
        high.set(true).unwrap();
        let history: Vec<Level> = state.lock().unwrap().history.iter().map(|h| h.2).collect();
        assert_eq!(history, [Level::Low, Level::High, Level::High]);
    }
}
