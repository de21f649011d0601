//! Scenario files: the TOML schema ([`Scenario`]), strict validation with `file:line:col` errors
//! ([`load`]), a scenario in words ([`explain`]), the backend-agnostic engine ([`engine`]) and
//! its reports ([`report`]).

pub mod allowlist;
pub mod engine;
pub mod explain;
pub mod load;
pub mod report;
mod schema;
mod validate;

pub use load::{LoadedScenario, Problem, ScenarioError, discover, load, parse};
pub use schema::Presence;
pub use schema::{
    Action, ActionKind, Binding, BoardProfile, BoardSpec, CardEdit, CardSlot, ExpectKind,
    Expectation, FieldSpans, Scenario, Step, Timeout, TokenFault, TokenSpec, ZymkeyFault,
    ZymkeySpec,
};
pub use validate::applies;
