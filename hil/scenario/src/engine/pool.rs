//! Scenarios in parallel: `jobs` threads take scenarios from a queue, each in its own directory.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{EngineOptions, Observer, ScenarioResult, Target, run_scenario, scenario_dir};
use crate::LoadedScenario;

/// Runs every scenario on `target`, at most `jobs` at a time; results in input order.
pub fn run_all(
    target: &Arc<dyn Target>,
    scenarios: &[LoadedScenario],
    jobs: usize,
    run_dir: &Path,
    options: &EngineOptions,
    observer: &Arc<dyn Observer>,
) -> Vec<ScenarioResult> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..scenarios.len()).collect());
    let results: Mutex<Vec<Option<ScenarioResult>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, scenarios.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some(i) = next else { break };
                    let loaded = &scenarios[i];
                    let dir = scenario_dir(run_dir, &loaded.name);
                    let result = run_scenario(target, loaded, &dir, options, observer);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every scenario ran"))
        .collect()
}
