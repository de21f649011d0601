//! Field-bug bundles: `run --save-bundle DIR` keeps, for each failing scenario, what it takes to
//! replay it (the scenario file, the exact image by content hash, the emulator and token state
//! files and transcripts of the run); `keybound-lab repro BUNDLE` replays it on the same image.

use std::path::{Path, PathBuf};

use guest_image::{BuiltImage, ImageManifest};
use scenario::engine::ScenarioResult;

/// File names inside a bundle.
const SCENARIO_FILE: &str = "scenario.toml";
const IMAGE_FILE: &str = "image.json";
const RUN_DIR: &str = "run";

/// Writes one bundle per failing scenario under `dir`; returns their paths.
pub(crate) fn save(
    dir: &Path,
    image: &ImageManifest,
    failures: &[&ScenarioResult],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for result in failures {
        let bundle = dir.join(result.name.replace('/', "__"));
        if bundle.exists() {
            std::fs::remove_dir_all(&bundle)?;
        }
        std::fs::create_dir_all(&bundle)?;
        std::fs::copy(&result.path, bundle.join(SCENARIO_FILE))?;
        std::fs::write(bundle.join(IMAGE_FILE), serde_json::to_vec_pretty(image)?)?;
        copy_run_files(&result.work_dir, &bundle.join(RUN_DIR))?;
        written.push(bundle);
    }
    Ok(written)
}

/// Copies a scenario's run directory: state files, transcripts, logs and card overlays; sockets
/// and other special files are left out.
fn copy_run_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_run_files(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != "lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The bundle's scenario file.
pub(crate) fn scenario_file(bundle: &Path) -> PathBuf {
    bundle.join(SCENARIO_FILE)
}

/// The image the bundle was recorded on: found in the image cache by path and verified by
/// content hash, or an error naming the hash to rebuild.
pub(crate) fn image(bundle: &Path) -> anyhow::Result<BuiltImage> {
    let path = bundle.join(IMAGE_FILE);
    let manifest: ImageManifest = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        manifest.card.is_file(),
        "the bundle's image (card sha256 {}) is not in this machine's cache at {}: build the image at the commit the bundle came from, or copy that card file there",
        manifest.card_sha256,
        manifest.card.display()
    );
    let actual = guest_image::sha256_file(&manifest.card)?;
    anyhow::ensure!(
        actual == manifest.card_sha256,
        "{} has sha256 {actual}, the bundle was recorded on {}: not the same image",
        manifest.card.display(),
        manifest.card_sha256
    );
    Ok(BuiltImage {
        card: manifest.card.clone(),
        manifest,
        diff: None,
        cached: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(card: &Path, sha: &str) -> ImageManifest {
        ImageManifest {
            profile: guest_image::Profile::Test,
            card: card.to_path_buf(),
            card_sha256: sha.into(),
            layout: card::CardLayout::plan(1, 64, 1 << 20),
            kernel_release: "6.1.0-test".into(),
            host_key: "ssh-ed25519 AAAA".into(),
            packages: Vec::new(),
            binaries: Vec::new(),
            stages: Default::default(),
        }
    }

    #[test]
    fn a_bundle_replays_only_on_the_exact_image() {
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join("card.img");
        std::fs::write(&card, b"the image").unwrap();
        let right = guest_image::sha256_file(&card).unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let write = |m: &ImageManifest| {
            std::fs::write(bundle.join(IMAGE_FILE), serde_json::to_vec(m).unwrap()).unwrap()
        };

        write(&manifest(&card, &right));
        assert_eq!(image(&bundle).unwrap().manifest.card_sha256, right);

        write(&manifest(&card, &"0".repeat(64)));
        let err = image(&bundle).unwrap_err().to_string();
        assert!(err.contains("not the same image"), "{err}");

        write(&manifest(&dir.path().join("gone.img"), &right));
        let err = image(&bundle).unwrap_err().to_string();
        assert!(
            err.contains("not in this machine's cache") && err.contains(&right),
            "{err}"
        );
    }
}
