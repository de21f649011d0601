//! `keybound-lab image …` and `keybound-lab cross-build`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use guest_image::{BuiltImage, CrossBuild, Profile, Progress, Recipe};

/// Image subcommands.
#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Build the guest card image (cross-builds the guest binaries first).
    Build {
        /// Ask the mirror for current package versions and print the manifest diff.
        #[arg(long)]
        refresh: bool,
        /// Build the production image (no test maintenance channel).
        #[arg(long)]
        production: bool,
    },
    /// Print the manifest of the last built image as JSON.
    Manifest {
        /// The production image's manifest.
        #[arg(long)]
        production: bool,
    },
}

/// Cross-builds the recipe's binaries; prints where they are.
pub(crate) fn cross_build(repo: &Path) -> anyhow::Result<Vec<(guest_image::Binary, PathBuf)>> {
    let recipe = Recipe::load(&repo.join("fixtures/guest/recipe.toml"))?;
    let built = CrossBuild::new(repo).build(&recipe.binaries, &Progress::stderr())?;
    for (b, path) in &built {
        eprintln!("{} -> {}", b.artifact, path.display());
    }
    Ok(built)
}

/// Cross-builds and builds the image; shared by `image build` and the commands that boot boards.
pub(crate) fn build_image(
    repo: &Path,
    profile: Profile,
    refresh: bool,
) -> anyhow::Result<BuiltImage> {
    let started = Instant::now();
    let image = guest_image::build_all(repo, profile, refresh, &Progress::stderr())?;
    if let Some(diff) = &image.diff {
        eprintln!("package changes since the last resolution:\n{diff}");
    }
    eprintln!(
        "card {} ({} packages, kernel {}, {}) in {:.1} s",
        image.card.display(),
        image.manifest.packages.len(),
        image.manifest.kernel_release,
        if image.cached { "from cache" } else { "built" },
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

pub(crate) fn run(repo: &Path, command: ImageCommand) -> anyhow::Result<()> {
    let profile = |production| {
        if production {
            Profile::Production
        } else {
            Profile::Test
        }
    };
    match command {
        ImageCommand::Build {
            refresh,
            production,
        } => build_image(repo, profile(production), refresh).map(|_| ()),
        ImageCommand::Manifest { production } => {
            let image =
                guest_image::current_image(&guest_image::default_cache(repo), profile(production))?;
            println!("{}", serde_json::to_string_pretty(&image.manifest)?);
            Ok(())
        }
    }
}
