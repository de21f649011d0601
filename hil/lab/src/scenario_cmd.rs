//! `keybound-lab run | list | explain | check`: scenario files through the engine.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use scenario::allowlist::{self, SkipAllowList};
use scenario::engine::{self, EngineOptions, Observer, ScenarioResult, Target, Verdict};
use scenario::{LoadedScenario, ScenarioError};

use crate::qemu_target::QemuTarget;
use crate::rig_target::RigTarget;

/// `keybound-lab run` options.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Scenario files or directories (default: the repository's scenarios/).
    paths: Vec<PathBuf>,
    /// Where to run: `qemu` or `rig:NAME` (a real Pi rig described by `rigs/NAME.toml`).
    #[arg(long, default_value = "qemu")]
    target: String,
    /// The rig file for `--target rig:NAME` (default: `rigs/NAME.toml` in the repository).
    #[arg(long, value_name = "PATH")]
    rig_file: Option<PathBuf>,
    /// Only scenarios whose name contains this text or that carry this tag.
    #[arg(long)]
    filter: Option<String>,
    /// Scenarios run at the same time.
    #[arg(long, short, default_value_t = 2)]
    jobs: usize,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Use the last built test image and host tools (zymkey-emu, virtual-fido, keybound-vendor)
    /// as they are, without cross-building and rebuilding (say so when the working tree does not
    /// build right now).
    #[arg(long)]
    no_build: bool,
    /// The run's directory (boards' files, transcripts, report.html); default under
    /// target/keybound-runs/.
    #[arg(long)]
    report: Option<PathBuf>,
    /// For each failing scenario, write a field-bug bundle (scenario, image hash, emulator and
    /// token state, transcripts) under this directory; `keybound-lab repro BUNDLE` replays it.
    #[arg(long)]
    save_bundle: Option<PathBuf>,
}

/// `keybound-lab repro` options.
#[derive(Args)]
pub(crate) struct ReproArgs {
    /// The bundle directory written by `run --save-bundle`.
    bundle: PathBuf,
    /// The run's directory (default under target/keybound-runs/).
    #[arg(long)]
    report: Option<PathBuf>,
}

fn colour() -> bool {
    std::io::stderr().is_terminal()
}

fn scenario_root(repo: &Path, path: &Path) -> PathBuf {
    let scenarios = repo.join("scenarios");
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if abs.starts_with(&scenarios) {
        scenarios
    } else if abs.is_dir() {
        abs
    } else {
        abs.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Loads every scenario under `paths`; prints every problem and fails if any file is bad.
fn load_all(repo: &Path, paths: &[PathBuf]) -> anyhow::Result<Vec<LoadedScenario>> {
    let paths = if paths.is_empty() {
        vec![repo.join("scenarios")]
    } else {
        paths.to_vec()
    };
    let mut loaded = Vec::new();
    let mut bad: Vec<ScenarioError> = Vec::new();
    for root in &paths {
        let base = scenario_root(repo, root);
        for file in scenario::discover(std::slice::from_ref(root))? {
            let file = std::path::absolute(&file)?;
            match scenario::load(&file, &base) {
                Ok(s) => loaded.push(s),
                Err(e) => bad.push(e),
            }
        }
    }
    if !bad.is_empty() {
        for e in &bad {
            eprint!("{}", e.render(colour()));
        }
        anyhow::bail!("{} scenario file(s) have problems", bad.len());
    }
    Ok(loaded)
}

/// `check FILES`: validate only.
pub(crate) fn check(repo: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let loaded = load_all(repo, paths)?;
    for s in &loaded {
        println!("ok  {}  ({} steps)", s.name, s.scenario.steps.len());
    }
    Ok(())
}

/// `list`: every scenario with its tags and title.
pub(crate) fn list(repo: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let loaded = load_all(repo, paths)?;
    let width = loaded.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &loaded {
        println!(
            "{:<width$}  {:<28}  {}",
            s.name,
            s.scenario.tags.join(","),
            s.scenario.title
        );
    }
    Ok(())
}

/// `explain FILE`: the steps in words.
pub(crate) fn explain(repo: &Path, file: &Path) -> anyhow::Result<()> {
    let loaded = load_all(repo, &[file.to_path_buf()])?;
    for s in loaded {
        print!("{}", scenario::explain::explain(&s.scenario));
    }
    Ok(())
}

/// Progress bars: one for the run, one spinner per running scenario.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    running: Mutex<BTreeMap<String, (ProgressBar, usize)>>,
}

impl Bars {
    fn new(count: usize) -> Self {
        let multi = MultiProgress::new();
        if !colour() {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let total = multi.add(ProgressBar::new(count as u64));
        total.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} scenarios {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        total.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            total,
            running: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Observer for Bars {
    fn scenario_started(&self, name: &str, steps: usize) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {elapsed:>4} {prefix}: {msg}")
                .expect("template"),
        );
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (bar, steps));
    }

    fn step_started(&self, name: &str, number: usize, text: &str) {
        if let Some((bar, steps)) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            let text: String = text.chars().take(70).collect();
            bar.set_message(format!("step {number}/{steps} {text}"));
        }
    }

    fn scenario_finished(&self, result: &ScenarioResult) {
        if result.verdict == Verdict::Pass {
            // A passing scenario's cards (hundreds of MiB once provisioned) are not needed:
            // transcripts and reports stay; failing scenarios keep everything for bundles.
            remove_cards(&result.work_dir);
        }
        if let Some((bar, _)) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&result.name)
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.total.inc(1);
        let line = format!(
            "{:>7} {} ({:.1} s)",
            result.verdict.word(),
            result.name,
            result.duration.as_secs_f64()
        );
        if colour() {
            self.total.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

/// Removes the card images (`*.qcow2`, `*.raw`) under `dir`, keeping every other file.
fn remove_cards(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_cards(&path);
        } else if path.extension().is_some_and(|e| e == "qcow2" || e == "raw") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A run's target, and the same target as a QEMU one when it is (for the warm-up pass).
type Targets = (Arc<dyn Target>, Option<Arc<QemuTarget>>);

/// The target `spec` names (`qemu` or `rig:NAME`).
fn make_target(
    repo: &Path,
    spec: &str,
    rig_file: Option<&Path>,
    no_build: bool,
) -> anyhow::Result<Targets> {
    match spec.split_once(':') {
        None if spec == "qemu" => {
            if !no_build {
                crate::boot_cmd::build_host_tools(repo)?;
            }
            let image = if no_build {
                let cache = guest_image::default_cache(repo);
                let image = guest_image::current_image(&cache, guest_image::Profile::Test)?;
                eprintln!(
                    "--no-build: using the last built image {} (sha256 {})",
                    image.card.display(),
                    image.manifest.card_sha256
                );
                image
            } else {
                crate::image_cmd::build_image(repo, guest_image::Profile::Test, false)?
            };
            let qemu = Arc::new(QemuTarget::new(image, repo));
            Ok((qemu.clone(), Some(qemu)))
        }
        Some(("rig", name)) if !name.is_empty() => {
            Ok((Arc::new(RigTarget::new(repo, name, rig_file)?), None))
        }
        _ => anyhow::bail!("unknown target {spec:?}: use qemu or rig:NAME"),
    }
}

fn run_dir(repo: &Path, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(d) => d,
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            repo.join("target/keybound-runs")
                .join(format!("run-{stamp}-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir)?;
    Ok(std::path::absolute(dir)?)
}

fn matches(s: &LoadedScenario, filter: &str) -> bool {
    s.name.contains(filter) || s.scenario.tags.iter().any(|t| t == filter)
}

/// `run`: every scenario on the target; a table, the reports, and the exit status.
pub(crate) fn run(repo: &Path, args: RunArgs) -> anyhow::Result<bool> {
    let wall = Instant::now();
    let mut scenarios = load_all(repo, &args.paths)?;
    if let Some(f) = &args.filter {
        scenarios.retain(|s| matches(s, f));
    }
    anyhow::ensure!(!scenarios.is_empty(), "no scenario to run");
    anyhow::ensure!(
        args.rig_file.is_none() || args.target.starts_with("rig:"),
        "--rig-file is for --target rig:NAME"
    );
    let (target, qemu) = make_target(repo, &args.target, args.rig_file.as_deref(), args.no_build)?;
    let image = qemu.as_ref().map(|q| q.manifest().clone());
    // A rig's boards are physical: one scenario at a time.
    let jobs = if target.is_emulated() { args.jobs } else { 1 };
    let options = RunOptions {
        jobs,
        junit: args.junit,
        report: args.report,
        save_bundle: args.save_bundle,
        warm_up: qemu,
    };
    run_scenarios(repo, scenarios, target, image, options, wall)
}

/// `repro BUNDLE`: replays a field-bug bundle's scenario on the bundle's exact image.
pub(crate) fn repro(repo: &Path, args: ReproArgs) -> anyhow::Result<bool> {
    let wall = Instant::now();
    let scenarios = load_all(repo, &[crate::bundle_cmd::scenario_file(&args.bundle)])?;
    let image = crate::bundle_cmd::image(&args.bundle)?;
    eprintln!(
        "replaying {} on image sha256 {}",
        args.bundle.display(),
        image.manifest.card_sha256
    );
    crate::boot_cmd::build_host_tools(repo)?;
    let manifest = image.manifest.clone();
    let target: Arc<dyn Target> = Arc::new(QemuTarget::new(image, repo));
    let options = RunOptions {
        jobs: 1,
        junit: None,
        report: args.report,
        save_bundle: None,
        warm_up: None,
    };
    run_scenarios(repo, scenarios, target, Some(manifest), options, wall)
}

/// What `run` and `repro` share after choosing scenarios and target.
struct RunOptions {
    jobs: usize,
    junit: Option<PathBuf>,
    report: Option<PathBuf>,
    save_bundle: Option<PathBuf>,
    /// Make the provisioned cards the scenarios start from before they start (QEMU target).
    warm_up: Option<Arc<QemuTarget>>,
}

fn run_scenarios(
    repo: &Path,
    scenarios: Vec<LoadedScenario>,
    target: Arc<dyn Target>,
    image: Option<guest_image::ImageManifest>,
    args: RunOptions,
    wall: Instant,
) -> anyhow::Result<bool> {
    let allow = SkipAllowList::load(&repo.join("scenarios").join(allowlist::FILE_NAME))
        .map_err(anyhow::Error::msg)?;
    let dir = run_dir(repo, args.report)?;
    eprintln!(
        "running {} scenario(s) on {}, {} at a time, in {}",
        scenarios.len(),
        target.name(),
        args.jobs.max(1),
        dir.display()
    );
    let warm_up = args.warm_up.as_ref().map(|qemu| {
        let warm_dir = dir.join("warm-up");
        let done = crate::warm_up::run(qemu, &scenarios, args.jobs.max(1), &warm_dir);
        if done.failed.is_empty() {
            remove_cards(&warm_dir);
        }
        eprintln!("{}", done.summary());
        done
    });
    let bars = Arc::new(Bars::new(scenarios.len()));
    let observer: Arc<dyn Observer> = bars.clone();
    let results = engine::run_all(
        &target,
        &scenarios,
        args.jobs.max(1),
        &dir,
        &EngineOptions::default(),
        &observer,
    );
    bars.total.finish_and_clear();
    let wall = wall.elapsed();

    // The table.
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "\n{:<width$}  {:<7}  {:>8}  note",
        "scenario", "result", "time"
    );
    let mut unallowed = Vec::new();
    for r in &results {
        let mut note = r
            .verdict
            .reason()
            .map(|s| s.lines().next().unwrap_or_default().to_string())
            .unwrap_or_default();
        if let Verdict::Skip(_) = r.verdict {
            match allow.allows(&r.name) {
                Some(reason) => note = format!("{note} [allowed: {reason}]"),
                None if target.is_emulated() => {
                    unallowed.push(r.name.clone());
                    note = format!("{note} [NOT on the skip allow-list]");
                }
                None => {}
            }
        } else if allow.allows(&r.name).is_some() && r.verdict == Verdict::Pass {
            note = "passes: remove it from the skip allow-list".into();
        }
        let note: String = note.chars().take(150).collect();
        println!(
            "{:<width$}  {:<7}  {:>6.1} s  {note}",
            r.name,
            r.verdict.word(),
            r.duration.as_secs_f64()
        );
    }
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count();
    let (passed, failed, skipped) = (
        count(|v| *v == Verdict::Pass),
        count(Verdict::is_failure),
        count(|v| matches!(v, Verdict::Skip(_) | Verdict::NotRun(_))),
    );

    // Reports.
    let html = scenario::report::html(&target.name(), &results, wall, &dir);
    std::fs::write(dir.join("report.html"), html)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    if let Some(junit) = &args.junit {
        std::fs::write(junit, scenario::report::junit(&target.name(), &results))?;
        println!("JUnit: {}", junit.display());
    }
    println!("report: {}", dir.join("report.html").display());
    for r in results.iter().filter(|r| r.verdict.is_failure()) {
        println!(
            "\n--- {} ---\n{}",
            r.name,
            r.failure_message().unwrap_or_default()
        );
    }
    if !unallowed.is_empty() {
        println!(
            "\nskipped on {} but not on scenarios/{}: {}",
            target.name(),
            allowlist::FILE_NAME,
            unallowed.join(", ")
        );
    }
    if let (Some(bundles), Some(image)) = (&args.save_bundle, &image) {
        let failures: Vec<&ScenarioResult> =
            results.iter().filter(|r| r.verdict.is_failure()).collect();
        for bundle in crate::bundle_cmd::save(bundles, image, &failures)? {
            println!(
                "bundle: {} (replay: keybound-lab repro {})",
                bundle.display(),
                bundle.display()
            );
        }
    }
    // Last, in the plain form CI reads.
    println!(
        "\n{} scenario(s), wall time {:.1} s",
        results.len(),
        wall.as_secs_f64()
    );
    if let Some(warm_up) = &warm_up {
        println!("{}", warm_up.summary());
    }
    println!("scenarios: {passed} passed, {failed} failed, {skipped} skipped");
    Ok(failed == 0 && unallowed.is_empty())
}
