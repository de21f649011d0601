//! Cross-building the guest binaries for aarch64 with Debian's Rust (`rustc-web`, `cargo-web`,
//! `libstd-rust-web-dev:arm64`), in a target directory of its own so host builds stay on the
//! default toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Binary, ImageError, Progress};

/// The guest's target triple.
pub const GUEST_TARGET: &str = "aarch64-unknown-linux-gnu";
/// The cargo profile for guest binaries (workspace Cargo.toml).
const PROFILE: &str = "guest";

/// A cross build of the guest binaries.
#[derive(Debug, Clone)]
pub struct CrossBuild {
    /// The repository root.
    pub repo: PathBuf,
    /// Debian's cargo (`/usr/bin/cargo` from cargo-web).
    pub cargo: PathBuf,
    /// Debian's rustc.
    pub rustc: PathBuf,
    /// Where cargo builds (default `target/guest`; planted-bug builds use their own, so the
    /// normal guest build stays warm).
    pub target_dir: PathBuf,
    /// A planted bug to compile in (`KEYBOUND_MUTANT`, read by the hooked crates' build
    /// scripts; DESIGN.md §8). `None` removes the variable: a stray `KEYBOUND_MUTANT` in the
    /// caller's environment never reaches a normal image.
    pub mutant: Option<String>,
}

impl CrossBuild {
    /// A cross build for the repository at `repo` with Debian's toolchain in `/usr/bin`.
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        Self {
            target_dir: repo.join("target/guest"),
            repo,
            cargo: "/usr/bin/cargo".into(),
            rustc: "/usr/bin/rustc".into(),
            mutant: None,
        }
    }

    /// A cross build with the planted bug `name` compiled in, in `target_dir` (the runner of
    /// `keybound-lab mutants` uses `target/mutants`).
    pub fn mutant(repo: impl Into<PathBuf>, name: &str, target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            mutant: Some(name.to_string()),
            ..Self::new(repo)
        }
    }

    /// The target directory of guest builds.
    pub fn target_dir(&self) -> PathBuf {
        self.target_dir.clone()
    }

    /// The command that builds `packages` (the environment Debian's cross toolchain needs).
    pub fn command(&self, packages: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.repo)
            .args([
                "build",
                "--locked",
                "--profile",
                PROFILE,
                "--target",
                GUEST_TARGET,
            ])
            .arg("--target-dir")
            .arg(self.target_dir());
        for p in packages {
            cmd.args(["--package", p]);
        }
        // Whatever the calling cargo (rustup's) set must not leak into Debian's.
        for var in [
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MAKEFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_HOME_OVERRIDE",
            "KEYBOUND_MUTANT",
        ] {
            cmd.env_remove(var);
        }
        if let Some(name) = &self.mutant {
            cmd.env("KEYBOUND_MUTANT", name);
        }
        cmd.env("RUSTC", &self.rustc)
            .env("RUSTDOC", self.rustc.with_file_name("rustdoc"))
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            )
            .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
            .env("AR_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-ar")
            .env("PKG_CONFIG_ALLOW_CROSS", "1")
            .env(
                "PKG_CONFIG_LIBDIR",
                "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig",
            )
            .env(
                "BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu",
                "--target=aarch64-linux-gnu -I/usr/include/aarch64-linux-gnu",
            );
        cmd
    }

    /// Builds the packages of `binaries` and returns each binary with its artifact path.
    pub fn build(
        &self,
        binaries: &[Binary],
        progress: &Progress,
    ) -> Result<Vec<(Binary, PathBuf)>, ImageError> {
        if !self.cargo.exists() || !self.rustc.exists() {
            return Err(ImageError::MissingTool {
                tool: "/usr/bin/cargo (Debian's)",
                package: "cargo-web rustc-web libstd-rust-web-dev:arm64",
            });
        }
        let mut packages: Vec<&str> = binaries.iter().map(|b| b.package.as_str()).collect();
        packages.sort();
        packages.dedup();
        let planted = self
            .mutant
            .as_ref()
            .map(|m| format!(" with planted bug {m}"))
            .unwrap_or_default();
        let bar = progress.step(
            format!(
                "cross-building {} for {GUEST_TARGET}{planted}",
                packages.join(", ")
            ),
            None,
        );
        let status = self
            .command(&packages)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| ImageError::Tool {
                tool: self.cargo.display().to_string(),
                detail: e.to_string(),
            })?;
        bar.finish_and_clear();
        if !status.status.success() {
            return Err(ImageError::Tool {
                tool: "cross build".into(),
                detail: String::from_utf8_lossy(&status.stderr)
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        let out = self.artifact_dir();
        binaries
            .iter()
            .map(|b| {
                let path = out.join(&b.artifact);
                if path.exists() {
                    Ok((b.clone(), path))
                } else {
                    Err(ImageError::MissingBinary(b.artifact.clone()))
                }
            })
            .collect()
    }

    /// Where the built artifacts land.
    pub fn artifact_dir(&self) -> PathBuf {
        self.target_dir().join(GUEST_TARGET).join(PROFILE)
    }
}

/// Whether `path` is an aarch64 ELF file (a quick check for tests and the builder).
pub fn is_aarch64_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    bytes.len() > 20
        && &bytes[..4] == b"\x7fELF"
        && u16::from_le_bytes([bytes[18], bytes[19]]) == 183
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutant_env(cmd: &Command) -> Option<Option<String>> {
        cmd.get_envs()
            .find(|(k, _)| *k == "KEYBOUND_MUTANT")
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn normal_builds_drop_a_stray_mutant_and_mutant_builds_use_their_own_target_dir() {
        let normal = CrossBuild::new("/repo");
        assert_eq!(normal.target_dir(), Path::new("/repo/target/guest"));
        assert_eq!(mutant_env(&normal.command(&["x"])), Some(None));
        let planted = CrossBuild::mutant("/repo", "init-honoured", "/repo/target/mutants");
        assert_eq!(
            planted.artifact_dir(),
            Path::new("/repo/target/mutants/aarch64-unknown-linux-gnu/guest")
        );
        assert_eq!(
            mutant_env(&planted.command(&["x"])),
            Some(Some("init-honoured".into()))
        );
    }
}
