//! The engine: runs a scenario's steps on a [`Target`]'s boards, timestamps every step and console
//! milestone, judges expectations, and always tears down.
//!
//! - Before anything boots, every step is offered to the target: a step it cannot do skips the
//!   scenario with the reason (never a silent pass).
//! - A failed expectation does not stop the scenario; a failed action (the board's state is then
//!   unknown) makes later steps on that board "not run".
//! - Each step has a time limit (its own, or its action's default) and the scenario has one; on
//!   overrun the boards are killed from outside, the step fails, and the rest is not run.
//! - The steps run on a thread of their own that owns the boards: on return, panic or overrun
//!   the boards are dropped there, which kills everything they run.

mod bench;
mod evaluate;
mod pool;
pub mod result;
pub mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use pool::run_all;
pub use result::{BoardRecord, ExpectResult, Milestone, ScenarioResult, StepResult, Verdict};
pub use target::{
    BootOutcome, KillSwitch, LoginFacts, Loot, ScenarioBoard, ScenarioCard, ScenarioToken, Secret,
    StepError, Target, ZymkeyOp,
};

use crate::{Expectation, LoadedScenario, Scenario, explain};
use bench::Bench;
use evaluate::{Subject, judge};

/// Limits of a run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The scenario's limit when its file gives none.
    pub scenario_timeout: Duration,
    /// After a step or scenario overran and its boards were killed, how long to wait for the
    /// step to return before abandoning it.
    pub grace: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            scenario_timeout: Duration::from_secs(600),
            grace: Duration::from_secs(20),
        }
    }
}

/// Hears about progress (progress bars); called from the scenario threads.
pub trait Observer: Send + Sync {
    /// A scenario starts.
    fn scenario_started(&self, _name: &str, _steps: usize) {}
    /// A step starts (1-based).
    fn step_started(&self, _name: &str, _number: usize, _text: &str) {}
    /// A scenario ended.
    fn scenario_finished(&self, _result: &ScenarioResult) {}
}

/// An observer that says nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// What the scenario thread and its supervisor share.
pub(crate) struct Shared {
    steps: Vec<StepResult>,
    /// The running step (index) and its deadline.
    current: Option<(usize, Instant)>,
    kills: Vec<KillSwitch>,
    boards: Vec<BoardRecord>,
    /// Set by the supervisor when it gave up on the scenario.
    aborted: Option<String>,
    setup: Option<Verdict>,
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pending_steps(scenario: &Scenario) -> Vec<StepResult> {
    scenario
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepResult {
            number: i + 1,
            text: explain::step(s),
            board: s.action.subject().map(String::from),
            started: None,
            duration: None,
            verdict: Verdict::NotRun("not reached".into()),
            expectations: Vec::new(),
            detail: None,
        })
        .collect()
}

fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The scenario's verdict from its steps'.
fn overall(steps: &[StepResult], setup: Option<&Verdict>) -> Verdict {
    if let Some(v) = setup
        && *v != Verdict::Pass
    {
        return v.clone();
    }
    if let Some(s) = steps.iter().find(|s| s.verdict.is_failure()) {
        let why = s.verdict.reason().unwrap_or_default();
        let v = format!("step {} ({}): {why}", s.number, s.text);
        return match s.verdict {
            Verdict::Error(_) => Verdict::Error(v),
            _ => Verdict::Fail(v),
        };
    }
    if let Some(s) = steps.iter().find(|s| matches!(s.verdict, Verdict::Skip(_))) {
        return Verdict::Skip(format!(
            "step {} ({}): {}",
            s.number,
            s.text,
            s.verdict.reason().unwrap_or_default()
        ));
    }
    Verdict::Pass
}

/// Runs one scenario on `target` in `work_dir` (created; one directory per board inside).
pub fn run_scenario(
    target: &Arc<dyn Target>,
    loaded: &LoadedScenario,
    work_dir: &Path,
    options: &EngineOptions,
    observer: &Arc<dyn Observer>,
) -> ScenarioResult {
    let started = Instant::now();
    let scenario = &loaded.scenario;
    observer.scenario_started(&loaded.name, scenario.steps.len());
    let mut steps = pending_steps(scenario);
    let finish = |verdict, steps, boards| {
        let result = ScenarioResult {
            name: loaded.name.clone(),
            title: scenario.title.clone(),
            path: loaded.path.clone(),
            target: target.name(),
            verdict,
            duration: started.elapsed(),
            steps,
            boards,
            work_dir: work_dir.to_path_buf(),
        };
        observer.scenario_finished(&result);
        result
    };

    // Pre-flight: what the target cannot do skips the scenario before anything boots.
    let mut unsupported = false;
    for (step, result) in scenario.steps.iter().zip(steps.iter_mut()) {
        match target.support(scenario, step) {
            Ok(()) => {
                result.verdict = Verdict::NotRun("the scenario is skipped on this target".into())
            }
            Err(reason) => {
                unsupported = true;
                result.verdict = Verdict::Skip(reason);
            }
        }
    }
    if unsupported {
        let verdict = overall(&steps, None);
        return finish(verdict, steps, Vec::new());
    }
    let steps = pending_steps(scenario);
    if let Err(e) = std::fs::create_dir_all(work_dir) {
        return finish(
            Verdict::Error(format!("creating {}: {e}", work_dir.display())),
            steps,
            Vec::new(),
        );
    }

    let shared = Arc::new(Mutex::new(Shared {
        steps,
        current: None,
        kills: Vec::new(),
        boards: Vec::new(),
        aborted: None,
        setup: None,
    }));
    let limit = scenario
        .timeout
        .map(|t| t.0)
        .unwrap_or(options.scenario_timeout);
    let worker = {
        let (target, scenario, shared, observer) = (
            Arc::clone(target),
            scenario.clone(),
            Arc::clone(&shared),
            Arc::clone(observer),
        );
        let (name, dir) = (loaded.name.clone(), work_dir.to_path_buf());
        std::thread::Builder::new()
            .name(format!("scenario {name}"))
            .spawn(move || run_steps(&*target, &scenario, &name, &dir, shared, &*observer))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            let steps = lock(&shared).steps.clone();
            return finish(Verdict::Error(format!("spawning: {e}")), steps, Vec::new());
        }
    };

    // Supervise: step and scenario deadlines; kill the boards from outside on overrun.
    let scenario_deadline = started + limit;
    let mut gave_up_at: Option<Instant> = None;
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        let mut state = lock(&shared);
        if state.aborted.is_none() {
            let overrun = match state.current {
                Some((i, deadline)) if now > deadline + options.grace => Some(format!(
                    "step {} overran its time limit of {:?}: boards killed",
                    i + 1,
                    scenario.steps[i].time_limit()
                )),
                _ if now > scenario_deadline => Some(format!(
                    "the scenario overran its time limit of {limit:?}: boards killed"
                )),
                _ => None,
            };
            if let Some(why) = overrun {
                if let Some((i, _)) = state.current {
                    state.steps[i].verdict = Verdict::Error(why.clone());
                }
                state.aborted = Some(why);
                let kills = state.kills.clone();
                drop(state);
                for kill in kills {
                    kill();
                }
                gave_up_at = Some(now);
                continue;
            }
        } else if gave_up_at.is_some_and(|t| now > t + options.grace) {
            // The step ignores the kill: abandon the thread (its boards go when it returns).
            break;
        }
    }
    let panicked = if worker.is_finished() {
        worker.join().err().map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into())
        })
    } else {
        None
    };
    let mut state = lock(&shared);
    if let Some(message) = panicked {
        let current = state.current.map(|(i, _)| i);
        match current {
            Some(i) => state.steps[i].verdict = Verdict::Error(format!("panicked: {message}")),
            None => state.setup = Some(Verdict::Error(format!("panicked: {message}"))),
        }
    }
    if let Some(why) = state.aborted.clone() {
        for s in state.steps.iter_mut() {
            if s.verdict == Verdict::NotRun("not reached".into()) {
                s.verdict = Verdict::NotRun(why.clone());
            }
        }
        if state.setup.is_none() && state.current.is_none() {
            state.setup = Some(Verdict::Error(why));
        }
    }
    let verdict = overall(&state.steps, state.setup.as_ref());
    let (steps, boards) = (state.steps.clone(), state.boards.clone());
    drop(state);
    finish(verdict, steps, boards)
}

/// The scenario thread: makes the boards, runs the steps, tears down (by dropping the bench).
fn run_steps(
    target: &dyn Target,
    scenario: &Scenario,
    name: &str,
    work_dir: &Path,
    shared: Arc<Mutex<Shared>>,
    observer: &dyn Observer,
) {
    let start = Instant::now();
    let mut bench = Bench {
        boards: BTreeMap::new(),
        created: BTreeMap::new(),
        shelf: BTreeMap::new(),
        logins: BTreeMap::new(),
        cursors: BTreeMap::new(),
        tokens: BTreeMap::new(),
        plugged: BTreeMap::new(),
        enrol_on: scenario
            .tokens
            .iter()
            .map(|(name, spec)| (name.clone(), spec.enrolled_on.clone()))
            .collect(),
        enrolled: Default::default(),
        want_proof: false,
        shared: Arc::clone(&shared),
    };
    for (board, spec) in &scenario.boards {
        let created = start.elapsed();
        match target.create_board(board, spec, &work_dir.join(board)) {
            Ok(b) => {
                lock(&shared).kills.push(b.kill_switch());
                bench.created.insert(board.clone(), created);
                bench.boards.insert(board.clone(), b);
            }
            Err(e) => {
                let verdict = match e {
                    StepError::Unsupported(r) => Verdict::Skip(format!("board {board}: {r}")),
                    StepError::Failed(r) => Verdict::Error(format!("creating board {board}: {r}")),
                };
                let mut state = lock(&shared);
                state.setup = Some(verdict.clone());
                for s in state.steps.iter_mut() {
                    s.verdict = Verdict::NotRun("the boards could not be set up".into());
                }
                return;
            }
        }
    }
    for (token, spec) in &scenario.tokens {
        match target.create_token(token, spec, &work_dir.join("tokens").join(token)) {
            Ok(t) => {
                bench.tokens.insert(token.clone(), t);
            }
            Err(e) => {
                let verdict = match e {
                    StepError::Unsupported(r) => Verdict::Skip(format!("token {token}: {r}")),
                    StepError::Failed(r) => Verdict::Error(format!("creating token {token}: {r}")),
                };
                let mut state = lock(&shared);
                state.setup = Some(verdict);
                for s in state.steps.iter_mut() {
                    s.verdict = Verdict::NotRun("the tokens could not be set up".into());
                }
                return;
            }
        }
    }
    // Boards whose state is unknown after a failed action, and why.
    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    let mut skipped: Option<String> = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        let number = i + 1;
        if let Some(why) = lock(&shared).aborted.clone() {
            let _ = why;
            break;
        }
        let touched: Vec<&str> = step.action.boards().into_iter().map(|(_, b)| b).collect();
        let blocked = skipped.clone().or_else(|| {
            touched
                .iter()
                .find_map(|b| broken.get(*b).map(|why| format!("board {b}: {why}")))
        });
        if let Some(why) = blocked {
            lock(&shared).steps[i].verdict = Verdict::NotRun(why);
            continue;
        }
        let text = explain::step(step);
        observer.step_started(name, number, &text);
        let limit = step.time_limit();
        let step_started = Instant::now();
        {
            let mut state = lock(&shared);
            state.current = Some((i, step_started + limit));
            state.steps[i].started = Some(start.elapsed());
        }
        let subject = step.action.subject().map(String::from);
        let mark = subject
            .as_ref()
            .and_then(|b| bench.boards.get(b))
            .map(|b| {
                b.console().note(&format!("step {number}: {text}"));
                b.console().mark()
            })
            .unwrap_or_default();
        let step_dir = work_dir.join(format!("step-{number:02}"));
        let aborted = || lock(&shared).aborted.is_some();
        bench.want_proof = step
            .expect
            .iter()
            .any(|e| matches!(e, Expectation::KeyExfiltrated));
        let counts_before = step
            .expect
            .iter()
            .any(|e| matches!(e, Expectation::TokenNotAsked(_)))
            .then(|| bench.token_requests());
        let outcome = bench
            .exec(&step.action, limit, &step_dir, &aborted)
            .map(|mut facts| {
                if let Some(before) = &counts_before {
                    facts.token_requests = bench
                        .token_requests()
                        .into_iter()
                        .map(|(t, n)| {
                            let delta = n.saturating_sub(before.get(&t).copied().unwrap_or(0));
                            (t, delta)
                        })
                        .collect();
                }
                facts
            });
        let duration = step_started.elapsed();
        let mut expectations = Vec::new();
        let (verdict, detail) = match outcome {
            Ok(facts) => {
                let mut subject_ref = Subject {
                    board: subject.as_ref().and_then(|b| bench.boards.get_mut(b)),
                    mark,
                };
                for expect in &step.expect {
                    let verdict = judge(expect, &facts, &mut subject_ref, &bench.logins);
                    if matches!(expect, Expectation::Unlocked)
                        && verdict.is_failure()
                        && let Some(b) = &subject
                    {
                        broken.insert(b.clone(), format!("did not come up in step {number}"));
                    }
                    expectations.push(ExpectResult {
                        text: explain::expectation(expect),
                        verdict,
                    });
                }
                if let (Some(id), Some(login)) = (&step.id, &facts.login) {
                    bench.logins.insert(id.clone(), login.clone());
                }
                let verdict = expectations
                    .iter()
                    .find(|e| e.verdict.is_failure())
                    .or_else(|| expectations.iter().find(|e| e.verdict != Verdict::Pass))
                    .map(|e| match &e.verdict {
                        Verdict::Fail(r) => Verdict::Fail(format!("expected {}: {r}", e.text)),
                        other => other.clone(),
                    })
                    .unwrap_or(Verdict::Pass);
                if let Verdict::Skip(r) = &verdict {
                    skipped = Some(format!("step {number} was skipped: {r}"));
                }
                (verdict, facts.detail)
            }
            Err(StepError::Unsupported(reason)) => {
                skipped = Some(format!("step {number} was skipped: {reason}"));
                (Verdict::Skip(reason), None)
            }
            Err(StepError::Failed(message)) => {
                for b in &touched {
                    broken.insert(b.to_string(), format!("step {number} failed"));
                }
                (Verdict::Fail(message), None)
            }
        };
        let mut state = lock(&shared);
        let result = &mut state.steps[i];
        result.duration = Some(duration);
        result.expectations = expectations;
        result.detail = detail.map(|d| shorten(&d, 400));
        // An overrun already recorded by the supervisor stands.
        if !matches!(result.verdict, Verdict::Error(_)) {
            result.verdict = verdict;
        }
        state.current = None;
    }
    drop(bench);
}

/// Where one scenario's files go under a run directory.
pub fn scenario_dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("scenarios").join(name.replace('/', "__"))
}
