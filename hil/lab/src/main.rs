//! keybound-lab: the lab CLI over the harness libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod boot_cmd;
mod bundle_cmd;
mod card_scan;
mod image_cmd;
mod mutants_cmd;
mod provisioned_cache;
mod qemu_target;
mod qemu_token;
mod rig_target;
mod scenario_cmd;
mod warm_up;

/// The keybound lab: build guest images, boot boards, run scenarios, measure.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The repository root (default: found from the current directory).
    #[arg(long, global = true, env = "KEYBOUND_REPO")]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Guest images.
    Image {
        #[command(subcommand)]
        command: image_cmd::ImageCommand,
    },
    /// Cross-build the guest binaries for aarch64 with Debian's Rust.
    CrossBuild,
    /// Build the image, boot one board to sshd, show what the guest reports, power it off.
    Boot,
    /// Run scenarios (default: every file under scenarios/), with a table and reports.
    Run(scenario_cmd::RunArgs),
    /// Replay a field-bug bundle written by `run --save-bundle` on its exact image.
    Repro(scenario_cmd::ReproArgs),
    /// Planted bugs: build each one (hil/lab/mutants.toml), run the scenario that must catch
    /// it, print the table (also target/mutants/table.md).
    Mutants(mutants_cmd::MutantsArgs),
    /// List the scenarios with their tags and titles.
    List {
        /// Files or directories (default: scenarios/).
        paths: Vec<PathBuf>,
    },
    /// Say what a scenario does, step by step, in words.
    Explain {
        /// The scenario file.
        file: PathBuf,
    },
    /// Validate scenario files without running anything.
    Check {
        /// Files or directories (default: scenarios/).
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of scenario files.
    Schema,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// QEMU start → first init line → sshd ready, median of several boots.
    Boot {
        /// How many boots.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// FIDO2 assertions in the guest through the virtual token on the USB bus.
    Token {
        /// How many assertions.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

/// The repository root: `--repo`, or the nearest ancestor of the current directory holding
/// `fixtures/guest/recipe.toml`.
fn repo_root(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(repo) = given {
        return Ok(repo);
    }
    let cwd = std::env::current_dir()?;
    cwd.ancestors()
        .find(|d| d.join("fixtures/guest/recipe.toml").is_file())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("not inside the keybound repository ({} has no fixtures/guest/recipe.toml above it); pass --repo", cwd.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = repo_root(cli.repo).and_then(|repo| match cli.command {
        Command::Image { command } => image_cmd::run(&repo, command),
        Command::CrossBuild => image_cmd::cross_build(&repo).map(|_| ()),
        Command::Boot => boot_cmd::boot(&repo),
        Command::Run(args) => scenario_cmd::run(&repo, args).and_then(|ok| {
            anyhow::ensure!(ok, "the run failed (see above)");
            Ok(())
        }),
        Command::Repro(args) => scenario_cmd::repro(&repo, args).and_then(|ok| {
            anyhow::ensure!(ok, "the replayed scenario failed again (see above)");
            Ok(())
        }),
        Command::Mutants(args) => mutants_cmd::run(&repo, args).and_then(|ok| {
            anyhow::ensure!(ok, "not every planted bug was caught (see the table)");
            Ok(())
        }),
        Command::List { paths } => scenario_cmd::list(&repo, &paths),
        Command::Explain { file } => scenario_cmd::explain(&repo, &file),
        Command::Check { paths } => scenario_cmd::check(&repo, &paths),
        Command::Schema => {
            println!("{:#}", scenario::Scenario::json_schema());
            Ok(())
        }
        Command::Bench {
            what: BenchCommand::Boot { runs },
        } => boot_cmd::bench_boot(&repo, runs.max(1)),
        Command::Bench {
            what: BenchCommand::Token { runs },
        } => boot_cmd::bench_token(&repo, runs.max(1)),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybound-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
