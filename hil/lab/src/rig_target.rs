//! `--target rig:NAME`: real Raspberry Pi rigs. The rig driver (relay, SD mux, serial console,
//! token port; `hil/rig`) is not built yet, so every board reports that, and each scenario skips
//! with the reason instead of pretending.

use std::path::Path;

use scenario::engine::{ScenarioBoard, StepError, Target};
use scenario::{BoardSpec, Scenario, Step};

/// A named rig.
pub(crate) struct RigTarget {
    name: String,
}

impl RigTarget {
    pub(crate) fn new(name: &str) -> Self {
        Self { name: name.into() }
    }
}

impl Target for RigTarget {
    fn name(&self) -> String {
        format!("rig:{}", self.name)
    }

    fn is_emulated(&self) -> bool {
        false
    }

    fn support(&self, _: &Scenario, _: &Step) -> Result<(), String> {
        Err(format!(
            "rig {}: the rig driver (hil/rig: relay, SD mux, serial console) is not built yet",
            self.name
        ))
    }

    fn create_board(
        &self,
        name: &str,
        _: &BoardSpec,
        _: &Path,
    ) -> Result<Box<dyn ScenarioBoard>, StepError> {
        Err(StepError::Unsupported(format!(
            "rig {}: no driver for board {name} yet",
            self.name
        )))
    }
}
