//! The warm-up pass of `keybound-lab run` on the QEMU target: before any scenario starts, it makes
//! every provisioned card the scenarios will ask the provisioned-card cache for and the cache
//! lacks, each once, `jobs` at a time.
//!
//! Without it, a cold cache (every CI run) made the first scenario wanting a card provision in the
//! guest, and a second one wanting the same card at the same time waited on the entry's lock for
//! the whole provisioning, its slot idle. A card is made exactly as the scenario's own `provision`
//! step makes it (the same board name and spec through the target's `create_board` and
//! `provision`), so the scenarios then restore it from the cache. A card that cannot be made is
//! reported; its scenarios provision in the guest themselves and pass or fail on their own.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scenario::engine::{StepError, Target};
use scenario::{Action, BoardSpec, CardSlot, LoadedScenario, Scenario};

use crate::qemu_target::QemuTarget;

/// A card to make, as the first scenario wanting it declares its board.
struct Wanted<'a> {
    key: String,
    scenario: &'a str,
    board: &'a str,
    spec: &'a BoardSpec,
    limit: Duration,
}

impl Wanted<'_> {
    /// The board in words, e.g. `victim (pi5, production Zymkey, signed boot) of attacks/x`.
    fn describe(&self) -> String {
        let mut what = format!("{:?}", self.spec.profile).to_lowercase();
        if let Some(zymkey) = &self.spec.zymkey {
            what.push_str(&format!(
                ", {} Zymkey",
                format!("{:?}", zymkey.binding).to_lowercase()
            ));
            if let Some(perimeter) = &zymkey.perimeter {
                what.push_str(&format!(", perimeter {perimeter}"));
            }
        }
        if self.spec.signed_boot {
            what.push_str(", signed boot");
        }
        format!("{} ({what}) of {}", self.board, self.scenario)
    }
}

/// What the warm-up pass did.
#[derive(Debug)]
pub(crate) struct WarmUp {
    /// The distinct provisioned cards the scenarios start from.
    pub(crate) wanted: usize,
    /// Of those, the cards the cache held already.
    pub(crate) cached: usize,
    /// The cards that could not be made, each with its reason.
    pub(crate) failed: Vec<String>,
    /// How long the pass took.
    pub(crate) duration: Duration,
}

impl WarmUp {
    /// The pass in one line, for the run's summary.
    pub(crate) fn summary(&self) -> String {
        format!(
            "warm-up: {} provisioned card(s) wanted: {} made in the guest, {} from the cache, {} \
             failed, in {:.1} s",
            self.wanted,
            self.wanted - self.cached - self.failed.len(),
            self.cached,
            self.failed.len(),
            self.duration.as_secs_f64()
        )
    }
}

/// The boards of `scenario` whose first step is `provision` on a fresh card (those a cached card
/// stands in for), with that step's time limit.
fn first_provisions(scenario: &Scenario) -> impl Iterator<Item = (&str, &BoardSpec, Duration)> {
    scenario
        .boards
        .iter()
        .filter(|(_, spec)| spec.card == CardSlot::Fresh)
        .filter_map(|(name, spec)| {
            let first = scenario
                .steps
                .iter()
                .find(|step| step.action.boards().iter().any(|(_, b)| b == name))?;
            matches!(first.action, Action::Provision { .. })
                .then(|| (name.as_str(), spec, first.time_limit()))
        })
}

/// Makes the provisioned cards `scenarios` want and the cache lacks, `jobs` at a time, each board
/// working under `dir`; prints a line per card on stderr.
pub(crate) fn run(
    target: &QemuTarget,
    scenarios: &[LoadedScenario],
    jobs: usize,
    dir: &Path,
) -> WarmUp {
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    let mut todo = Vec::new();
    let mut cached = 0;
    for loaded in scenarios {
        for (board, spec, limit) in first_provisions(&loaded.scenario) {
            let Some((key, is_cached)) = target.provisioned_entry(board, spec) else {
                continue;
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            if is_cached {
                cached += 1;
            } else {
                todo.push(Wanted {
                    key,
                    scenario: &loaded.name,
                    board,
                    spec,
                    limit,
                });
            }
        }
    }
    if !todo.is_empty() {
        eprintln!(
            "warm-up: provisioning {} card(s) the scenarios start from, {} at a time ({cached} \
             cached already)",
            todo.len(),
            jobs.max(1)
        );
    }
    let count = todo.len();
    let queue = Mutex::new(todo.into_iter());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(wanted) = next else { break };
                    let began = Instant::now();
                    let board_dir = dir.join(format!("{}-{}", wanted.board, &wanted.key[..12]));
                    match make(target, &wanted, &board_dir) {
                        Ok(()) => eprintln!(
                            "warm-up: {} provisioned in {:.1} s",
                            wanted.describe(),
                            began.elapsed().as_secs_f64()
                        ),
                        Err(e) => {
                            let line = format!("{}: {e}", wanted.describe());
                            eprintln!(
                                "warm-up: FAILED {line} (its scenarios provision themselves)"
                            );
                            failed.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                        }
                    }
                }
            });
        }
    });
    WarmUp {
        wanted: seen.len(),
        cached,
        failed: failed.into_inner().unwrap_or_else(|p| p.into_inner()),
        duration: started.elapsed(),
    }
}

/// Makes one card: the scenario's board, provisioned as its `provision` step does (which stores
/// the card in the cache), then dropped (its emulator and QEMU stop).
fn make(target: &QemuTarget, wanted: &Wanted<'_>, dir: &Path) -> Result<(), StepError> {
    let mut board = target.create_board(wanted.board, wanted.spec, dir)?;
    board.provision(wanted.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boards_whose_first_step_provisions_a_fresh_card_are_wanted() {
        let scenario = scenario::parse(
            Path::new("t.toml"),
            r#"
title = "t"
[boards.first]
zymkey = { binding = "production" }
[boards.later]
zymkey = {}
[boards.spare]
card = "empty"
zymkey = {}

[[steps]]
do = "provision"
board = "first"
timeout = "7m"

[[steps]]
do = "boot"
board = "later"

[[steps]]
do = "provision"
board = "later"

[[steps]]
do = "provision"
board = "spare"
"#,
        )
        .unwrap();
        let wanted: Vec<_> = first_provisions(&scenario)
            .map(|(name, _, limit)| (name, limit))
            .collect();
        assert_eq!(wanted, [("first", Duration::from_secs(420))]);
    }
}
