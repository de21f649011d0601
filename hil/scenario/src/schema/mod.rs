//! The scenario file's types (serde), as DESIGN.md §9 sketches them.
//!
//! A scenario names its boards (`[boards.NAME]`) and tokens (`[tokens.NAME]`), then lists steps
//! (`[[steps]]` with `do = "…"`). Every step may carry an `id` (so other steps can refer to it),
//! `expect` (one expectation or a list) and a `timeout`.

mod action;
mod expect;
mod step;
mod timeout;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use action::{Action, ActionKind, CardEdit, Presence, TokenFault, ZymkeyFault};
pub use expect::{ExpectKind, Expectation};
pub use step::{FieldSpans, Step};
pub use timeout::Timeout;

/// One scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, in one line.
    pub title: String,
    /// The attack or behaviour in one paragraph a security reviewer understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Tags for `--filter` (e.g. `attack`, `card`, `login`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The whole scenario's time limit (default 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// The boards, by name.
    pub boards: BTreeMap<String, BoardSpec>,
    /// The FIDO2 tokens, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, TokenSpec>,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// A board: a Raspberry Pi or its emulated twin, each with a fresh card from the current image.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoardSpec {
    /// A Zymkey on the GPIO header (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zymkey: Option<ZymkeySpec>,
    /// Emulated Raspberry Pi secure boot: only a signed `boot.img` boots.
    #[serde(default, skip_serializing_if = "is_false")]
    pub signed_boot: bool,
    /// Which Pi the board stands for.
    #[serde(default, skip_serializing_if = "is_default_profile")]
    pub profile: BoardProfile,
    /// What is in the card slot at the start.
    #[serde(default, skip_serializing_if = "is_default_slot")]
    pub card: CardSlot,
}

fn is_default_slot(c: &CardSlot) -> bool {
    *c == CardSlot::default()
}

/// The card slot at the start of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CardSlot {
    /// A fresh card from the current image.
    #[default]
    Fresh,
    /// No card (a spare board waiting for someone else's).
    Empty,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default_profile(p: &BoardProfile) -> bool {
    *p == BoardProfile::default()
}

/// The Raspberry Pi model a board stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BoardProfile {
    /// Raspberry Pi 4 / CM4.
    #[default]
    Pi4,
    /// Raspberry Pi 5.
    Pi5,
}

/// A Zymkey module seated on a board.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZymkeySpec {
    /// Developer mode (tab intact, the module follows its host) or production (tab cut: bound to
    /// the board and card it first sees, for good).
    #[serde(default)]
    pub binding: Binding,
    /// The perimeter (tamper) policy provisioning arms, as `keybound provision --perimeter`
    /// takes it (e.g. `ch0=self-destruct` or `ch0=notify,ch1=self-destruct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perimeter: Option<String>,
}

/// A Zymkey's binding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Binding {
    /// Tab intact: the module rebinds to whatever host it sits on.
    #[default]
    Developer,
    /// Tab cut: bound to the first board and card, permanently.
    Production,
}

/// A FIDO2 token (the virtual-fido emulator on QEMU, a real key on a rig).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenSpec {
    /// Boards whose login stack has this token enrolled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrolled_on: Vec<String>,
}

impl Scenario {
    /// The JSON Schema of scenario files (what editors complete against).
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Scenario>();
        serde_json::to_value(schema).expect("a schema is JSON")
    }
}
