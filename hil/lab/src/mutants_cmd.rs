//! `keybound-lab mutants`: the planted bugs (DESIGN.md §8, listed in `hil/lab/mutants.toml`)
//! against the scenarios that must catch them.
//!
//! 1. **Clean**: the scenarios run `--clean-runs` times on the normal test image; each must pass
//!    every time (the whole suite without `--only`, the selected mutants' scenarios with it).
//! 2. **Mutants**: each mutant is cross-built with `KEYBOUND_MUTANT=NAME` in
//!    `target/mutants/build/NAME` (the hooked crates' build scripts turn it into
//!    `--cfg keybound_mutant="NAME"`; the normal `target/guest` stays warm), gets an image of
//!    its own (the content-addressed cache keeps it apart; it is never recorded as the current
//!    image), and its scenario runs `--mutant-runs` times.
//! 3. **Verdict**: a mutant is caught only if its scenario was green every clean run and failed
//!    *by an expectation* in every mutant run. A pass is an escape; a step error, crash or
//!    time-out is not a catch.
//!
//! The table goes to standard output and, as markdown, to `target/mutants/table.md`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use guest_image::{BuiltImage, CrossBuild, Profile, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scenario::LoadedScenario;
use scenario::engine::{self, EngineOptions, Observer, ScenarioResult, Target, Verdict};
use serde::Deserialize;

use crate::qemu_target::QemuTarget;

/// The mapping of planted bugs to scenarios, relative to the repository.
pub(crate) const MAPPING: &str = "hil/lab/mutants.toml";
/// Where mutant builds, their runs and the table go, relative to the repository.
const OUT_DIR: &str = "target/mutants";

/// `keybound-lab mutants` options.
#[derive(Args)]
pub(crate) struct MutantsArgs {
    /// Only this mutant (repeatable); the clean runs then cover only the selected mutants'
    /// scenarios unless --whole-suite is given.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Clean runs of the scenarios, each of which must pass.
    #[arg(long, default_value_t = 3)]
    clean_runs: usize,
    /// Runs of each mutant's scenario, each of which must fail by an expectation.
    #[arg(long, default_value_t = 2)]
    mutant_runs: usize,
    /// Scenarios (or runs of one mutant's scenario) at the same time.
    #[arg(long, short, default_value_t = 2)]
    jobs: usize,
    /// Run the whole suite (every scenario under scenarios/) in the clean runs, even with --only.
    #[arg(long)]
    whole_suite: bool,
    /// List the mutants and their scenarios; build and run nothing.
    #[arg(long)]
    list: bool,
    /// Only build the selected mutants' images (print their hashes); run nothing.
    #[arg(long)]
    build_only: bool,
}

/// The mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    /// Every planted bug.
    mutant: Vec<Mutant>,
}

/// One planted bug and the scenario that must catch it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mutant {
    /// The `keybound_mutant` cfg value.
    name: String,
    /// The production crate holding the hook.
    #[serde(rename = "crate")]
    krate: String,
    /// What the planted bug breaks, in one sentence.
    breaks: String,
    /// The scenario that must catch it (`attacks/…`, name under scenarios/).
    scenario: String,
}

fn load_mapping(repo: &Path) -> anyhow::Result<Vec<Mutant>> {
    let path = repo.join(MAPPING);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mapping: Mapping =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut seen = std::collections::BTreeSet::new();
    for m in &mapping.mutant {
        anyhow::ensure!(
            seen.insert(m.name.clone()),
            "{}: mutant {} is listed twice",
            path.display(),
            m.name
        );
    }
    Ok(mapping.mutant)
}

/// How one run of a scenario ended, for the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunClass {
    /// Every step and expectation held.
    Pass,
    /// The first failure is a failed expectation (`what` names it), and nothing crashed or
    /// timed out.
    FailedExpectation(String),
    /// A step's action failed, the harness crashed, or a step or the scenario timed out.
    Broken(String),
    /// The scenario skipped (the target cannot do a step) or did not run.
    Skipped(String),
}

/// Classifies a scenario result.
pub(crate) fn classify(result: &ScenarioResult) -> RunClass {
    let first_line = |s: &str| s.lines().next().unwrap_or_default().to_string();
    match &result.verdict {
        Verdict::Pass => RunClass::Pass,
        Verdict::Skip(r) | Verdict::NotRun(r) => RunClass::Skipped(first_line(r)),
        Verdict::Error(r) => RunClass::Broken(first_line(r)),
        Verdict::Fail(r) => {
            if let Some(s) = result
                .steps
                .iter()
                .find(|s| matches!(s.verdict, Verdict::Error(_)))
            {
                return RunClass::Broken(format!(
                    "step {} errored: {}",
                    s.number,
                    first_line(s.verdict.reason().unwrap_or_default())
                ));
            }
            let Some(step) = result.steps.iter().find(|s| s.verdict.is_failure()) else {
                return RunClass::Broken(first_line(r));
            };
            match step
                .expectations
                .iter()
                .find(|e| matches!(e.verdict, Verdict::Fail(_)))
            {
                Some(e) => RunClass::FailedExpectation(format!(
                    "step {}: expected {}: {}",
                    step.number,
                    e.text,
                    first_line(e.verdict.reason().unwrap_or_default())
                )),
                None => RunClass::Broken(format!(
                    "step {} ({}) failed: {}",
                    step.number,
                    step.text,
                    first_line(step.verdict.reason().unwrap_or_default())
                )),
            }
        }
    }
}

/// A mutant's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MutantVerdict {
    /// Every mutant run failed by an expectation (the first run's is kept).
    Caught(String),
    /// At least one mutant run passed.
    Escaped,
    /// The runs failed, but not (all) by an expectation: a crash, step error or time-out.
    NotCaught(String),
    /// The scenario was not green without the mutant.
    CleanNotGreen(String),
    /// There is no working scenario for it yet (missing file, or it skips on this target).
    NoScenario(String),
    /// The hook is not in the production code, or the mutant changed nothing in the image.
    NoHook(String),
    /// Building the mutant failed.
    BuildFailed(String),
}

impl MutantVerdict {
    /// The word in the table.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            MutantVerdict::Caught(_) => "caught",
            MutantVerdict::Escaped => "ESCAPED",
            MutantVerdict::NotCaught(_) => "NOT CAUGHT",
            MutantVerdict::CleanNotGreen(_) => "CLEAN RED",
            MutantVerdict::NoScenario(_) => "no scenario yet",
            MutantVerdict::NoHook(_) => "NO HOOK",
            MutantVerdict::BuildFailed(_) => "BUILD FAILED",
        }
    }

    /// The detail column: the failed expectation when caught, otherwise why not.
    pub(crate) fn detail(&self) -> &str {
        match self {
            MutantVerdict::Escaped => "a run passed with the planted bug",
            MutantVerdict::Caught(s)
            | MutantVerdict::NotCaught(s)
            | MutantVerdict::CleanNotGreen(s)
            | MutantVerdict::NoScenario(s)
            | MutantVerdict::NoHook(s)
            | MutantVerdict::BuildFailed(s) => s,
        }
    }
}

/// Why the clean runs of a scenario disqualify it (`None`: green every time).
pub(crate) fn clean_problem(clean: &[RunClass]) -> Option<MutantVerdict> {
    if let Some(RunClass::Skipped(r)) = clean.iter().find(|c| matches!(c, RunClass::Skipped(_))) {
        return Some(MutantVerdict::NoScenario(format!(
            "the scenario skips: {r}"
        )));
    }
    if clean.is_empty() {
        return Some(MutantVerdict::CleanNotGreen("no clean run".into()));
    }
    let bad = clean.iter().find(|c| **c != RunClass::Pass)?;
    let why = match bad {
        RunClass::FailedExpectation(s) | RunClass::Broken(s) | RunClass::Skipped(s) => s,
        RunClass::Pass => "",
    };
    let failed = clean.iter().filter(|c| **c != RunClass::Pass).count();
    Some(MutantVerdict::CleanNotGreen(format!(
        "{failed}/{} clean runs failed: {why}",
        clean.len()
    )))
}

/// The verdict from the clean runs of the scenario and the runs with the mutant.
pub(crate) fn verdict(clean: &[RunClass], mutant: &[RunClass]) -> MutantVerdict {
    if let Some(problem) = clean_problem(clean) {
        return problem;
    }
    if mutant.is_empty() {
        return MutantVerdict::NotCaught("no run with the mutant".into());
    }
    if mutant.contains(&RunClass::Pass) {
        return MutantVerdict::Escaped;
    }
    if let Some(other) = mutant
        .iter()
        .find(|m| !matches!(m, RunClass::FailedExpectation(_)))
    {
        let why = match other {
            RunClass::Broken(s) => format!("not by an expectation: {s}"),
            RunClass::Skipped(s) => format!("skipped: {s}"),
            _ => String::new(),
        };
        return MutantVerdict::NotCaught(why);
    }
    match &mutant[0] {
        RunClass::FailedExpectation(what) => MutantVerdict::Caught(what.clone()),
        _ => unreachable!("every run failed by an expectation"),
    }
}

/// One row of the table.
struct Row {
    mutant: Mutant,
    clean: Vec<RunClass>,
    runs: Vec<RunClass>,
    verdict: MutantVerdict,
}

fn tally(runs: &[RunClass]) -> String {
    if runs.is_empty() {
        return "-".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *counts
            .entry(match r {
                RunClass::Pass => "pass",
                RunClass::FailedExpectation(_) => "fail(expect)",
                RunClass::Broken(_) => "broken",
                RunClass::Skipped(_) => "skip",
            })
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n}/{} {k}", runs.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table in markdown.
fn markdown(rows: &[Row], header: &str) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!(
        "{header}\n\n| mutant | crate | scenario | clean runs | mutant runs | verdict | failed expectation / why |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.mutant.name),
            cell(&r.mutant.krate),
            cell(&r.mutant.scenario),
            tally(&r.clean),
            tally(&r.runs),
            r.verdict.word(),
            cell(r.verdict.detail()),
        ));
    }
    out.push_str("\nWhat each planted bug breaks:\n\n");
    for r in rows {
        out.push_str(&format!("- `{}`: {}\n", r.mutant.name, r.mutant.breaks));
    }
    out
}

fn print_table(rows: &[Row]) {
    let w = |f: &dyn Fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let (wn, ws) = (
        w(&|r| r.mutant.name.len(), 6),
        w(&|r| r.mutant.scenario.len(), 8),
    );
    let (wc, wm) = (
        w(&|r| tally(&r.clean).len(), 10),
        w(&|r| tally(&r.runs).len(), 11),
    );
    println!(
        "\n{:<wn$}  {:<ws$}  {:<wc$}  {:<wm$}  {:<15}  failed expectation / why",
        "mutant", "scenario", "clean runs", "mutant runs", "verdict"
    );
    for r in rows {
        let detail: String = r.verdict.detail().chars().take(160).collect();
        println!(
            "{:<wn$}  {:<ws$}  {:<wc$}  {:<wm$}  {:<15}  {detail}",
            r.mutant.name,
            r.mutant.scenario,
            tally(&r.clean),
            tally(&r.runs),
            r.verdict.word(),
        );
    }
}

/// One progress line for the whole job: the phase, and the running scenario's step.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        if std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix}: {msg}")
                .expect("template"),
        );
        bar.enable_steady_tick(Duration::from_millis(150));
        Self(bar)
    }

    fn phase(&self, text: String) {
        if self.0.is_hidden() {
            eprintln!("{text}");
        }
        self.0.set_prefix(text);
        self.0.set_message("");
    }

    fn say(&self, line: String) {
        if self.0.is_hidden() {
            eprintln!("{line}");
        } else {
            self.0.println(line);
        }
    }
}

impl Observer for Bar {
    fn step_started(&self, name: &str, number: usize, text: &str) {
        let text: String = text.chars().take(60).collect();
        self.0.set_message(format!("{name} step {number}: {text}"));
    }

    fn scenario_finished(&self, result: &ScenarioResult) {
        self.say(format!(
            "  {:>7} {} ({:.1} s)",
            result.verdict.word(),
            result.name,
            result.duration.as_secs_f64()
        ));
    }
}

fn load_scenarios(repo: &Path, names: &[String]) -> anyhow::Result<Vec<LoadedScenario>> {
    let root = repo.join("scenarios");
    let files = if names.is_empty() {
        scenario::discover(std::slice::from_ref(&root))?
    } else {
        names
            .iter()
            .map(|n| root.join(format!("{n}.toml")))
            .collect()
    };
    files
        .iter()
        .map(|f| scenario::load(f, &root).map_err(|e| anyhow::anyhow!("{}", e.render(false))))
        .collect()
}

/// Runs `scenarios` `runs` times (one run directory each); per scenario, each run's class.
fn run_repeatedly(
    target: &Arc<dyn Target>,
    scenarios: &[LoadedScenario],
    runs: usize,
    jobs: usize,
    dir: &Path,
    bar: &Arc<Bar>,
) -> BTreeMap<String, Vec<RunClass>> {
    let observer: Arc<dyn Observer> = bar.clone();
    let mut out: BTreeMap<String, Vec<RunClass>> = BTreeMap::new();
    let mut record = |results: Vec<ScenarioResult>| {
        for r in results {
            out.entry(r.name.clone()).or_default().push(classify(&r));
        }
    };
    if scenarios.len() == 1 && jobs > 1 {
        // One scenario: its runs side by side, each in its own directory.
        for chunk in (0..runs).collect::<Vec<_>>().chunks(jobs) {
            let results: Vec<Vec<ScenarioResult>> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|i| {
                        let (target, observer) = (Arc::clone(target), Arc::clone(&observer));
                        let run_dir = dir.join(format!("run-{}", i + 1));
                        scope.spawn(move || {
                            engine::run_all(
                                &target,
                                scenarios,
                                1,
                                &run_dir,
                                &EngineOptions::default(),
                                &observer,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a run thread panicked"))
                    .collect()
            });
            results.into_iter().for_each(&mut record);
        }
    } else {
        for i in 0..runs {
            bar.0.set_message(format!("run {}/{runs}", i + 1));
            record(engine::run_all(
                target,
                scenarios,
                jobs,
                &dir.join(format!("run-{}", i + 1)),
                &EngineOptions::default(),
                &observer,
            ));
        }
    }
    out
}

/// Whether the production source of `krate` holds a hook for `name`.
fn has_hook(repo: &Path, krate: &str, name: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p, needle)
            } else {
                p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p).is_ok_and(|t| t.contains(needle))
            }
        })
    }
    let needle = format!("keybound_mutant = \"{name}\"");
    let Ok(dirs) = std::fs::read_dir(repo.join("bins")) else {
        return false;
    };
    dirs.flatten().any(|d| {
        let manifest = std::fs::read_to_string(d.path().join("Cargo.toml")).unwrap_or_default();
        manifest.contains(&format!("name = \"{krate}\"")) && walk(&d.path().join("src"), &needle)
    })
}

fn build_mutant(repo: &Path, name: &str) -> anyhow::Result<BuiltImage> {
    // One target directory per mutant: a second build of the same mutant is a no-op for cargo.
    let dir = repo.join(OUT_DIR).join("build").join(name);
    let guest = CrossBuild::new(repo).target_dir();
    if !dir.exists() && guest.is_dir() {
        // A mutant's first build starts from a copy of the normal guest build (cargo's
        // fingerprints survive the copy): only the hooked crates and their dependants compile.
        std::fs::create_dir_all(repo.join(OUT_DIR).join("build"))?;
        let tmp = repo
            .join(OUT_DIR)
            .join("build")
            .join(format!("{name}.copying"));
        let _ = std::fs::remove_dir_all(&tmp);
        let status = std::process::Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&guest)
            .arg(&tmp)
            .status()?;
        anyhow::ensure!(status.success(), "copying {} failed", guest.display());
        std::fs::rename(&tmp, &dir)?;
    }
    let cross = CrossBuild::mutant(repo, name, dir);
    Ok(guest_image::build_with(
        &cross,
        Profile::Test,
        false,
        &Progress::stderr(),
    )?)
}

/// `keybound-lab mutants`: returns whether every selected mutant was caught.
pub(crate) fn run(repo: &Path, args: MutantsArgs) -> anyhow::Result<bool> {
    let wall = Instant::now();
    let all = load_mapping(repo)?;
    for name in &args.only {
        anyhow::ensure!(
            all.iter().any(|m| &m.name == name),
            "no mutant {name} in {MAPPING} (known: {})",
            all.iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let selected: Vec<Mutant> = all
        .into_iter()
        .filter(|m| args.only.is_empty() || args.only.contains(&m.name))
        .collect();
    let scenario_exists = |m: &Mutant| {
        repo.join("scenarios")
            .join(format!("{}.toml", m.scenario))
            .is_file()
    };
    if args.list {
        for m in &selected {
            println!(
                "{:<22} {:<14} {}{}\n    {}",
                m.name,
                m.krate,
                m.scenario,
                if scenario_exists(m) {
                    ""
                } else {
                    " (no scenario yet)"
                },
                m.breaks
            );
        }
        return Ok(true);
    }
    if args.build_only {
        let clean = crate::image_cmd::build_image(repo, Profile::Test, false)?;
        println!("clean image    sha256 {}", clean.manifest.card_sha256);
        for m in &selected {
            let started = Instant::now();
            let image = build_mutant(repo, &m.name)?;
            println!(
                "{:<22} sha256 {}{} ({:.0} s)",
                m.name,
                image.manifest.card_sha256,
                if image.manifest.card_sha256 == clean.manifest.card_sha256 {
                    " = the clean image: the hook is not on the guest"
                } else {
                    ""
                },
                started.elapsed().as_secs_f64()
            );
        }
        return Ok(true);
    }
    anyhow::ensure!(
        args.clean_runs >= 1 && args.mutant_runs >= 1,
        "--clean-runs and --mutant-runs must be at least 1"
    );
    let out = repo.join(OUT_DIR);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let runs_dir = out
        .join("runs")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&runs_dir)?;
    let jobs = args.jobs.max(1);

    // The clean runs: the whole suite, or the scenarios the selected mutants name.
    let mut names: Vec<String> = selected
        .iter()
        .filter(|m| scenario_exists(m))
        .map(|m| m.scenario.clone())
        .collect();
    names.sort();
    names.dedup();
    let whole = args.whole_suite || args.only.is_empty();
    let scenarios = load_scenarios(repo, if whole { &[] } else { &names })?;
    crate::boot_cmd::build_host_tools(repo)?;
    let bar = Arc::new(Bar::new());
    let clean_image = crate::image_cmd::build_image(repo, Profile::Test, false)?;
    let clean_sha = clean_image.manifest.card_sha256.clone();
    let mut clean = BTreeMap::new();
    if !scenarios.is_empty() {
        bar.phase(format!(
            "clean: {} scenario(s) × {} run(s) on image {}",
            scenarios.len(),
            args.clean_runs,
            &clean_sha[..12.min(clean_sha.len())]
        ));
        let target: Arc<dyn Target> = Arc::new(QemuTarget::new(clean_image, repo));
        clean = run_repeatedly(
            &target,
            &scenarios,
            args.clean_runs,
            jobs,
            &runs_dir.join("clean"),
            &bar,
        );
    }
    let suite_green = clean.values().flatten().all(|c| *c == RunClass::Pass);
    if !suite_green {
        let red: Vec<&str> = clean
            .iter()
            .filter(|(_, v)| v.iter().any(|c| *c != RunClass::Pass))
            .map(|(k, _)| k.as_str())
            .collect();
        bar.say(format!(
            "the clean runs are not green ({}): mutants whose scenario is not green are not run",
            red.join(", ")
        ));
    }

    // The mutants.
    let mut rows = Vec::new();
    for (i, m) in selected.iter().enumerate() {
        let clean_runs = clean.get(&m.scenario).cloned().unwrap_or_default();
        let mut row = Row {
            mutant: m.clone(),
            clean: clean_runs.clone(),
            runs: Vec::new(),
            verdict: MutantVerdict::NoScenario(format!(
                "scenarios/{}.toml does not exist",
                m.scenario
            )),
        };
        let prefix = format!("mutant {}/{} {}", i + 1, selected.len(), m.name);
        if !has_hook(repo, &m.krate, &m.name) {
            row.verdict = MutantVerdict::NoHook(format!(
                "no `keybound_mutant = \"{}\"` in {}'s source",
                m.name, m.krate
            ));
        } else if scenario_exists(m) {
            if let Some(problem) = clean_problem(&clean_runs) {
                row.verdict = problem;
            } else {
                // Green without the mutant: build it and run its scenario.
                bar.phase(format!("{prefix}: building"));
                row.verdict = match build_mutant(repo, &m.name) {
                    Err(e) => MutantVerdict::BuildFailed(format!("{e:#}")),
                    Ok(image) if image.manifest.card_sha256 == clean_sha => {
                        MutantVerdict::NoHook(format!(
                            "the image is the clean one: {} is not on the guest",
                            m.krate
                        ))
                    }
                    Ok(image) => {
                        bar.phase(format!(
                            "{prefix}: {} × {} (image {})",
                            m.scenario,
                            args.mutant_runs,
                            &image.manifest.card_sha256[..12]
                        ));
                        let target: Arc<dyn Target> = Arc::new(QemuTarget::new(image, repo));
                        let scenario = load_scenarios(repo, std::slice::from_ref(&m.scenario))?;
                        let runs = run_repeatedly(
                            &target,
                            &scenario,
                            args.mutant_runs,
                            jobs,
                            &runs_dir.join(&m.name),
                            &bar,
                        );
                        row.runs = runs.into_values().flatten().collect();
                        verdict(&clean_runs, &row.runs)
                    }
                };
            }
        }
        bar.say(format!(
            "{prefix}: {} {}",
            row.verdict.word(),
            row.verdict.detail().lines().next().unwrap_or_default()
        ));
        rows.push(row);
    }
    bar.0.finish_and_clear();

    print_table(&rows);
    let caught = rows
        .iter()
        .filter(|r| matches!(r.verdict, MutantVerdict::Caught(_)))
        .count();
    let header = format!(
        "# Planted bugs ({caught}/{} caught)\n\nkeybound-lab mutants, clean image sha256 {clean_sha}, {} clean run(s) of {} scenario(s) ({}), {} run(s) per mutant; wall time {:.0} s. A mutant is caught only if its scenario passed every clean run and failed by an expectation in every run with it.",
        rows.len(),
        args.clean_runs,
        scenarios.len(),
        if suite_green {
            "all green"
        } else {
            "NOT all green"
        },
        args.mutant_runs,
        wall.elapsed().as_secs_f64()
    );
    let table = out.join("table.md");
    std::fs::write(&table, markdown(&rows, &header))?;
    println!("\ntable: {}\nruns: {}", table.display(), runs_dir.display());
    println!(
        "mutants: {caught} caught, {} not caught, of {}; wall time {:.1} s",
        rows.len() - caught,
        rows.len(),
        wall.elapsed().as_secs_f64()
    );
    Ok(suite_green && caught == rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scenario::engine::{ExpectResult, StepResult};
    use std::path::PathBuf;

    const GREEN: [RunClass; 3] = [RunClass::Pass, RunClass::Pass, RunClass::Pass];

    fn step(number: usize, verdict: Verdict, expectations: Vec<ExpectResult>) -> StepResult {
        StepResult {
            number,
            text: format!("step {number}"),
            board: Some("pi".into()),
            started: None,
            duration: None,
            verdict,
            expectations,
            detail: None,
        }
    }

    fn result(verdict: Verdict, steps: Vec<StepResult>) -> ScenarioResult {
        ScenarioResult {
            name: "faults/x".into(),
            title: "x".into(),
            path: PathBuf::from("x.toml"),
            target: "qemu".into(),
            verdict,
            duration: Duration::from_secs(1),
            steps,
            boards: Vec::new(),
            work_dir: PathBuf::new(),
        }
    }

    fn expectation_failure() -> ScenarioResult {
        let failed = ExpectResult {
            text: "the board to stay sealed".into(),
            verdict: Verdict::Fail("expected sealed, but the board was Up".into()),
        };
        result(
            Verdict::Fail("step 2 (boot): expected sealed".into()),
            vec![
                step(1, Verdict::Pass, vec![]),
                step(2, Verdict::Fail("expected sealed".into()), vec![failed]),
                step(
                    3,
                    Verdict::NotRun("board pi: did not come up".into()),
                    vec![],
                ),
            ],
        )
    }

    #[test]
    fn a_failed_expectation_is_a_catch_and_names_the_expectation() {
        match classify(&expectation_failure()) {
            RunClass::FailedExpectation(what) => {
                assert!(what.contains("step 2"), "{what}");
                assert!(what.contains("the board to stay sealed"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        let c = classify(&expectation_failure());
        assert!(matches!(
            verdict(&GREEN, &[c.clone(), c]),
            MutantVerdict::Caught(_)
        ));
    }

    #[test]
    fn a_crash_a_timeout_or_a_failed_action_is_not_a_catch() {
        let crash = result(Verdict::Error("panicked: boom".into()), vec![]);
        let timeout = result(
            Verdict::Fail("step 3: expected unlocked".into()),
            vec![
                step(
                    2,
                    Verdict::Fail("expected x".into()),
                    vec![ExpectResult {
                        text: "x".into(),
                        verdict: Verdict::Fail("no".into()),
                    }],
                ),
                step(
                    3,
                    Verdict::Error("step 3 overran its time limit of 150s: boards killed".into()),
                    vec![],
                ),
            ],
        );
        let action = result(
            Verdict::Fail("step 1 (boot): console closed".into()),
            vec![step(1, Verdict::Fail("console closed".into()), vec![])],
        );
        for r in [&crash, &timeout, &action] {
            let c = classify(r);
            assert!(matches!(c, RunClass::Broken(_)), "{c:?}");
            let caught = RunClass::FailedExpectation("x".into());
            assert!(matches!(
                verdict(&GREEN, &[caught, c]),
                MutantVerdict::NotCaught(_)
            ));
        }
    }

    #[test]
    fn a_pass_with_the_mutant_is_an_escape() {
        let pass = classify(&result(Verdict::Pass, vec![step(1, Verdict::Pass, vec![])]));
        assert_eq!(pass, RunClass::Pass);
        let caught = RunClass::FailedExpectation("x".into());
        assert_eq!(
            verdict(&GREEN, &[caught, pass.clone()]),
            MutantVerdict::Escaped
        );
        assert_eq!(
            verdict(&GREEN, &[pass.clone(), pass]),
            MutantVerdict::Escaped
        );
    }

    #[test]
    fn a_scenario_not_green_without_the_mutant_or_skipping_catches_nothing() {
        let caught = RunClass::FailedExpectation("x".into());
        let red = [
            RunClass::Pass,
            RunClass::Broken("flaky".into()),
            RunClass::Pass,
        ];
        assert!(matches!(
            verdict(&red, &[caught.clone(), caught.clone()]),
            MutantVerdict::CleanNotGreen(_)
        ));
        let skipping = [RunClass::Skipped("provision is not wired".into())];
        assert!(matches!(
            verdict(&skipping, std::slice::from_ref(&caught)),
            MutantVerdict::NoScenario(_)
        ));
        assert!(matches!(
            verdict(&[], &[caught]),
            MutantVerdict::CleanNotGreen(_)
        ));
        assert!(matches!(
            verdict(&GREEN, &[RunClass::Skipped("x".into())]),
            MutantVerdict::NotCaught(_)
        ));
    }

    /// The mapping, the workspace's check-cfg list and the hooks in the production source agree.
    #[test]
    fn the_mapping_names_every_declared_mutant_once_with_an_existing_crate() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mapping = load_mapping(&repo).unwrap();
        let workspace = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
        let line = workspace
            .lines()
            .find(|l| l.contains("cfg(keybound_mutant, values("))
            .expect("the check-cfg line");
        let declared: Vec<&str> = line
            .split("values(")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .collect();
        let mut mapped: Vec<&str> = mapping.iter().map(|m| m.name.as_str()).collect();
        let mut declared_sorted = declared.clone();
        mapped.sort();
        declared_sorted.sort();
        assert_eq!(mapped, declared_sorted, "{MAPPING} vs Cargo.toml check-cfg");
        for m in &mapping {
            assert!(!m.breaks.trim().is_empty() && !m.scenario.trim().is_empty());
            assert!(
                [
                    "sealed-root",
                    "keybound-init",
                    "pam-keybound",
                    "keybound-admin"
                ]
                .contains(&m.krate.as_str()),
                "{}: crate {}",
                m.name,
                m.krate
            );
        }
    }
}
