//! Injected faults: what a scenario asks the module to do wrong on its next guest calls.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::binding::Host;

/// One fault request (control command `fault`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// The next `count` calls fail with `code` (negative).
    Fail {
        /// How many calls.
        count: u32,
        /// The return code.
        code: i32,
    },
    /// The next `count` calls are answered `ms` milliseconds late.
    Delay {
        /// How many calls.
        count: u32,
        /// Delay in milliseconds.
        ms: u64,
    },
    /// The next `count` calls that return data get one random bit flipped in it.
    BitFlip {
        /// How many calls.
        count: u32,
    },
    /// The next `count` calls get no answer: the module drops the connection.
    Drop {
        /// How many calls.
        count: u32,
    },
    /// The next call kills the emulator process (SIGKILL, mid-call: no answer, nothing flushed),
    /// as a module that loses power or a daemon that dies during an unlock. The harness starts
    /// it again from its state directory.
    Crash,
    /// From now on the host software measures this forged fingerprint.
    Spoof {
        /// Forged board id.
        board: String,
        /// Forged card id.
        card: String,
    },
    /// Removes every fault, spoofing included.
    Clear,
}

/// Armed faults.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Faults {
    /// Calls left to fail, and the code.
    pub fail: Option<(u32, i32)>,
    /// Calls left to delay, and the delay in ms.
    pub delay: Option<(u32, u64)>,
    /// Calls left with a bit flip.
    pub bit_flip: u32,
    /// Calls left to drop.
    pub drop: u32,
    /// The next call kills the process.
    pub crash: bool,
    /// A forged fingerprint.
    pub spoof: Option<Host>,
}

/// What to do with the next guest call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Close the connection without answering.
    Drop,
    /// Kill the whole emulator process without answering.
    Crash,
    /// Answer, possibly late, failed or with a flipped bit.
    Answer {
        /// Sleep first.
        delay: Option<Duration>,
        /// Fail with this code instead of executing.
        fail: Option<i32>,
        /// Flip a bit of returned data.
        flip: bool,
    },
}

fn take(count: &mut u32) -> bool {
    if *count > 0 {
        *count -= 1;
        true
    } else {
        false
    }
}

impl Faults {
    /// Arms a fault; refuses a non-negative failure code.
    pub fn arm(&mut self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Fail { code, .. } if code >= 0 => {
                return Err(format!("fault code must be negative, got {code}"));
            }
            Fault::Fail { count, code } => self.fail = Some((count, code)),
            Fault::Delay { count, ms } => self.delay = Some((count, ms)),
            Fault::BitFlip { count } => self.bit_flip = count,
            Fault::Drop { count } => self.drop = count,
            Fault::Crash => self.crash = true,
            Fault::Spoof { board, card } => self.spoof = Some(Host { board, card }),
            Fault::Clear => *self = Faults::default(),
        }
        Ok(())
    }

    /// Consumes the faults for one call.
    pub fn plan(&mut self) -> Plan {
        if std::mem::take(&mut self.crash) {
            return Plan::Crash;
        }
        if take(&mut self.drop) {
            return Plan::Drop;
        }
        let delay = match &mut self.delay {
            Some((n, ms)) => take(n).then(|| Duration::from_millis(*ms)),
            None => None,
        };
        let fail = match &mut self.fail {
            Some((n, code)) => take(n).then_some(*code),
            None => None,
        };
        Plan::Answer {
            delay,
            fail,
            flip: take(&mut self.bit_flip),
        }
    }
}
