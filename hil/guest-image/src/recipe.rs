//! The guest image recipe (`fixtures/guest/recipe.toml`), parsed strictly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ImageError;

/// Which kind of image to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// For the harness: includes the test-only maintenance channel (`fixtures/guest/test-channel`).
    Test,
    /// What ships: no maintenance channel.
    Production,
}

impl Profile {
    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Test => "test",
            Profile::Production => "production",
        }
    }
}

/// The recipe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// apt source lines without `deb` and options: `URI SUITE COMPONENT…`.
    pub mirrors: Vec<String>,
    /// The kernel metapackage.
    pub kernel_package: String,
    /// Root filesystem packages.
    pub packages: Vec<String>,
    /// Kernel modules to load, by stage.
    pub modules: Modules,
    /// What the initramfs runs as /init.
    pub initramfs: InitramfsSpec,
    /// Card geometry.
    pub card: CardSpec,
    /// Our cross-built binaries.
    #[serde(default)]
    pub binaries: Vec<Binary>,
    /// Guest accounts.
    #[serde(default)]
    pub users: Vec<User>,
    /// Files from the repository put in the root as they are.
    #[serde(default)]
    pub files: Vec<RepoFile>,
}

/// A file from the repository and its place in the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoFile {
    /// Path relative to the repository.
    pub src: String,
    /// Absolute destination in the guest.
    pub dest: String,
    /// File mode, octal text (e.g. `"0755"`).
    pub mode: String,
}

impl RepoFile {
    /// The mode as a number, or why it is not one.
    pub fn mode_bits(&self) -> Result<u32, String> {
        u32::from_str_radix(&self.mode, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                format!(
                    "file {:?}: mode {:?} is not an octal file mode",
                    self.src, self.mode
                )
            })
    }
}

/// Kernel modules by boot stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Modules {
    /// Loaded by the initramfs.
    pub initramfs: Vec<String>,
    /// Loaded by the root filesystem's boot script.
    pub root: Vec<String>,
    /// Also put the initramfs modules in the root as a Debian module tree
    /// (`/lib/modules/<release>/kernel/…` with `modules.order`, `modules.builtin*` and
    /// `/boot/config-<release>`), for Debian tools that expect one (initramfs-tools in the
    /// Raspberry Pi OS mode builds its initrd from it); `depmod` runs in the guest.
    #[serde(default)]
    pub debian_tree: bool,
}

/// The initramfs's /init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitramfsInit {
    /// The foundation's busybox script (`fixtures/guest/initramfs/init`) with a static busybox.
    Busybox,
    /// keybound-init, the shell-free Rust /init, with exactly the libraries it links.
    KeyboundInit,
}

/// The initramfs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitramfsSpec {
    /// What runs as /init.
    pub init: InitramfsInit,
    /// Programs of the recipe's Debian packages copied into the initramfs at the same path, with
    /// their shared-library closure (e.g. `/sbin/e2fsck` for first-boot provisioning). Only
    /// with `init = "keybound-init"`, which runs them itself: the initramfs still has no shell.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// Where a binary goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The root filesystem.
    #[default]
    Root,
    /// The initramfs (with the shared libraries it links).
    Initramfs,
    /// No card: built with the guest binaries for the harness to place itself (TEST-ONLY
    /// attacker tools, e.g. `attacker_initramfs`). Never on a card, test or production.
    Harness,
}

/// Card geometry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// Boot partition size in MiB.
    pub boot_mib: u64,
    /// Free space left in the root filesystem, in MiB.
    pub root_free_mib: u64,
}

/// A cross-built binary and its place in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    /// The file name cargo produces.
    pub artifact: String,
    /// The workspace package that builds it.
    pub package: String,
    /// Absolute destination in the guest.
    pub dest: String,
    /// Root filesystem or initramfs.
    #[serde(default)]
    pub stage: Stage,
}

/// A guest account (test images only carry public test passwords).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User and group id.
    pub uid: u32,
    /// The password (test fixture, public).
    pub password: String,
}

impl Recipe {
    /// Reads and validates the recipe at `path`.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = std::fs::read_to_string(path).map_err(ImageError::io("reading recipe", path))?;
        Self::parse(&text, path)
    }

    /// Parses recipe text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ImageError> {
        let err = |message: String| ImageError::Recipe {
            path: path.into(),
            message,
        };
        let recipe: Recipe = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if recipe.packages.is_empty() {
            return Err(err("`packages` is empty".into()));
        }
        if recipe.card.boot_mib < 64 {
            return Err(err(format!(
                "card.boot_mib = {} is below the 64 MiB FAT32 minimum",
                recipe.card.boot_mib
            )));
        }
        for b in &recipe.binaries {
            if !b.dest.starts_with('/') || b.dest.contains("..") {
                return Err(err(format!(
                    "binary {:?}: dest {:?} must be an absolute path",
                    b.artifact, b.dest
                )));
            }
        }
        for f in &recipe.files {
            if !f.dest.starts_with('/') || f.dest.contains("..") {
                return Err(err(format!(
                    "file {:?}: dest {:?} must be an absolute path",
                    f.src, f.dest
                )));
            }
            if f.src.starts_with('/') || f.src.contains("..") {
                return Err(err(format!(
                    "file {:?}: src must be a path inside the repository",
                    f.src
                )));
            }
            f.mode_bits().map_err(err)?;
        }
        Ok(recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_recipe_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guest/recipe.toml");
        let recipe = Recipe::load(&path).unwrap();
        assert!(recipe.packages.iter().any(|p| p == "openssh-server"));
    }

    #[test]
    fn repository_files_need_an_inside_source_an_absolute_destination_and_an_octal_mode() {
        let base = "suite = \"bookworm\"\nmirrors = []\nkernel_package = \"k\"\npackages = [\"a\"]\n[modules]\ninitramfs = []\nroot = []\n[initramfs]\ninit = \"busybox\"\n[card]\nboot_mib = 256\nroot_free_mib = 16\n";
        let with = |src: &str, dest: &str, mode: &str| {
            Recipe::parse(
                &format!(
                    "{base}[[files]]\nsrc = \"{src}\"\ndest = \"{dest}\"\nmode = \"{mode}\"\n"
                ),
                Path::new("r.toml"),
            )
        };
        let ok = with("fixtures/a", "/etc/a", "0755").unwrap();
        assert_eq!(ok.files[0].mode_bits(), Ok(0o755));
        for (src, dest, mode, says) in [
            ("fixtures/a", "etc/a", "0644", "absolute"),
            ("../a", "/etc/a", "0644", "inside the repository"),
            ("/etc/shadow", "/etc/a", "0644", "inside the repository"),
            ("fixtures/a", "/etc/a", "rwx", "octal"),
            ("fixtures/a", "/etc/a", "17777", "octal"),
        ] {
            let err = with(src, dest, mode).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("r.toml"), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let text = "suite = \"bookworm\"\nmirrors = []\nkernel_package = \"k\"\npackages = [\"a\"]\nbogus = 1\n";
        let err = Recipe::parse(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.toml") && err.contains("bogus") && err.contains("line 5"),
            "{err}"
        );
    }
}
