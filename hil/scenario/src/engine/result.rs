//! What a run produced: per scenario, per step and per expectation, with timestamps.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// How an expectation, a step or a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    /// Held / done.
    Pass,
    /// Did not hold, or the action failed.
    Fail(String),
    /// The target cannot do it (the reason says what is missing).
    Skip(String),
    /// Not attempted: an earlier failure made it meaningless.
    NotRun(String),
    /// The harness itself failed (panic, overrun).
    Error(String),
}

impl Verdict {
    /// A short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skip(_) => "skip",
            Verdict::NotRun(_) => "not run",
            Verdict::Error(_) => "ERROR",
        }
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(r) | Verdict::Skip(r) | Verdict::NotRun(r) | Verdict::Error(r) => Some(r),
        }
    }

    /// A failure or an error.
    pub fn is_failure(&self) -> bool {
        matches!(self, Verdict::Fail(_) | Verdict::Error(_))
    }
}

/// One expectation's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectResult {
    /// The expectation in words.
    pub text: String,
    /// Its verdict.
    pub verdict: Verdict,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// 1-based step number.
    pub number: usize,
    /// The step in words.
    pub text: String,
    /// The board the step is about (its lane in the timeline).
    pub board: Option<String>,
    /// When it started, since the scenario's start.
    pub started: Option<Duration>,
    /// How long it took.
    pub duration: Option<Duration>,
    /// The step's verdict (the first failed expectation's, or the action's).
    pub verdict: Verdict,
    /// Each expectation.
    pub expectations: Vec<ExpectResult>,
    /// What the action reported (boot outcome, command output…), shortened.
    pub detail: Option<String>,
}

/// A console line worth a mark on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Milestone {
    /// Since the scenario's start.
    pub at: Duration,
    /// The line.
    pub text: String,
}

/// What is kept of one board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardRecord {
    /// The board's name.
    pub name: String,
    /// Its console transcript.
    pub transcript: Option<PathBuf>,
    /// The last console lines.
    pub tail: Vec<String>,
    /// Console milestones (markers, harness notes, prompts).
    pub milestones: Vec<Milestone>,
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioResult {
    /// `boot/boots-to-login`.
    pub name: String,
    /// The title.
    pub title: String,
    /// The file.
    pub path: PathBuf,
    /// The target it ran on.
    pub target: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Wall time.
    pub duration: Duration,
    /// Every step.
    pub steps: Vec<StepResult>,
    /// Every board.
    pub boards: Vec<BoardRecord>,
    /// Where its files are.
    pub work_dir: PathBuf,
}

impl ScenarioResult {
    /// The failure message: the failed step and expectation, then the last console lines of the
    /// board it concerns.
    pub fn failure_message(&self) -> Option<String> {
        let reason = match &self.verdict {
            Verdict::Fail(r) | Verdict::Error(r) => r.clone(),
            _ => return None,
        };
        let board = self
            .steps
            .iter()
            .find(|s| s.verdict.is_failure())
            .and_then(|s| s.board.clone());
        let tail = self
            .boards
            .iter()
            .find(|b| Some(&b.name) == board.as_ref())
            .or(self.boards.first())
            .map(|b| {
                format!(
                    "\nlast console lines of {}:\n{}",
                    b.name,
                    b.tail
                        .iter()
                        .map(|l| format!("  | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .unwrap_or_default();
        Some(format!("{reason}{tail}"))
    }
}
