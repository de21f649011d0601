//! Resolving package names to exact versions against the mirror, and fetching the `.deb` files,
//! with a private apt root (nothing on the host's apt state changes) for arm64.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, Key, sha256_file};
use crate::error::run;
use crate::{ImageError, ManifestDiff, PackageEntry, Progress, Recipe};

/// The packages of one resolution, fetched.
pub(crate) struct Resolved {
    /// Every package, sorted by name.
    pub(crate) packages: Vec<PackageEntry>,
    /// The `.deb` of each package, by name.
    pub(crate) debs: BTreeMap<String, PathBuf>,
    /// The diff against the previous resolution, when the mirror was asked again.
    pub(crate) diff: Option<ManifestDiff>,
}

#[derive(Serialize, Deserialize)]
struct Resolution {
    packages: Vec<PackageEntry>,
}

struct AptRoot {
    root: PathBuf,
    debs: PathBuf,
}

impl AptRoot {
    fn prepare(cache: &Cache, recipe: &Recipe) -> Result<Self, ImageError> {
        let root = cache.root().join("apt");
        for dir in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/lib/dpkg",
            "var/cache/apt/archives/partial",
        ] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(ImageError::io("creating apt root", &d))?;
        }
        let status = root.join("var/lib/dpkg/status");
        fs::write(&status, b"").map_err(ImageError::io("writing", &status))?;
        let sources: String = recipe
            .mirrors
            .iter()
            .map(|m| format!("deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {m}\n"))
            .collect();
        let list = root.join("etc/apt/sources.list");
        fs::write(&list, sources).map_err(ImageError::io("writing", &list))?;
        let debs = cache.root().join("debs");
        fs::create_dir_all(debs.join("partial")).map_err(ImageError::io("creating", &debs))?;
        Ok(Self { root, debs })
    }

    fn apt_get(&self, archives: &Path) -> Command {
        let mut cmd = Command::new("apt-get");
        let r = self.root.display();
        cmd.args([
            "-qq",
            "-o",
            &format!("Dir={r}"),
            "-o",
            &format!("Dir::State::status={r}/var/lib/dpkg/status"),
        ])
        .args([
            "-o",
            &format!("Dir::Cache::archives={}", archives.display()),
        ])
        .args([
            "-o",
            "APT::Architecture=arm64",
            "-o",
            "APT::Architectures::=arm64",
        ])
        .args([
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Install-Recommends=false",
        ])
        .args([
            "-o",
            "APT::Sandbox::User=root",
            "-o",
            "Acquire::Languages=none",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Asks the mirror for the package set: names → exact versions.
    fn resolve(
        &self,
        names: &[String],
        progress: &Progress,
    ) -> Result<Vec<PackageEntry>, ImageError> {
        let bar = progress.step("resolving packages against the mirror", None);
        run(
            self.apt_get(&self.root.join("var/cache/apt/archives"))
                .arg("update"),
            "apt-get",
            "apt",
        )?;
        let out = run(
            self.apt_get(&self.root.join("var/cache/apt/archives"))
                .args(["--print-uris", "install"])
                .args(names),
            "apt-get",
            "apt",
        )?;
        bar.finish_and_clear();
        let mut packages: Vec<PackageEntry> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_print_uris_line)
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        if packages.is_empty() {
            return Err(ImageError::Tool {
                tool: "apt-get --print-uris".into(),
                detail: "resolved no packages".into(),
            });
        }
        Ok(packages)
    }

    fn deb_path(&self, p: &PackageEntry) -> PathBuf {
        self.debs.join(format!(
            "{}_{}_{}.deb",
            p.name,
            p.version.replace(':', "%3a"),
            p.arch
        ))
    }

    /// Downloads what is not cached yet; fills in each package's sha256.
    fn fetch(&self, packages: &mut [PackageEntry], progress: &Progress) -> Result<(), ImageError> {
        let missing: Vec<String> = packages
            .iter()
            .filter(|p| {
                let path = self.deb_path(p);
                !(path.exists()
                    && (p.sha256.is_empty()
                        || sha256_file(&path).ok().as_deref() == Some(&*p.sha256)))
            })
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        if !missing.is_empty() {
            let bar = progress.step(format!("fetching {} packages", missing.len()), None);
            run(
                self.apt_get(&self.debs)
                    .args(["--download-only", "install"])
                    .args(&missing),
                "apt-get",
                "apt",
            )?;
            bar.finish_and_clear();
        }
        for p in packages.iter_mut() {
            let path = self.deb_path(p);
            let actual = sha256_file(&path)?;
            if !p.sha256.is_empty() && p.sha256 != actual {
                return Err(ImageError::Corrupt(
                    path,
                    "downloaded package does not match the manifest".into(),
                ));
            }
            p.sha256 = actual;
        }
        Ok(())
    }
}

/// Parses one `--print-uris` line: `'URI' name_version_arch.deb SIZE HASH`.
fn parse_print_uris_line(line: &str) -> Option<PackageEntry> {
    let mut fields = line.split_whitespace();
    let _uri = fields.next()?;
    let file = fields.next()?.strip_suffix(".deb")?;
    let size = fields.next()?.parse().ok()?;
    let mut parts = file.splitn(3, '_');
    let (name, version, arch) = (parts.next()?, parts.next()?, parts.next()?);
    Some(PackageEntry {
        name: name.into(),
        version: version.replace("%3a", ":"),
        arch: arch.into(),
        size,
        sha256: String::new(),
    })
}

/// Resolves the recipe's packages (from the cache unless `refresh`), fetches the `.deb` files,
/// and re-resolves once if the mirror no longer has a cached resolution's versions.
pub(crate) fn resolve_and_fetch(
    cache: &Cache,
    recipe: &Recipe,
    refresh: bool,
    progress: &Progress,
) -> Result<Resolved, ImageError> {
    let mut names = recipe.packages.clone();
    names.push(recipe.kernel_package.clone());
    let key = Key::new("resolve")
        .add("suite", &recipe.suite)
        .add("mirrors", recipe.mirrors.join("\n"))
        .add("packages", names.join("\n"))
        .finish();
    let record = cache.entry("resolved", &format!("{key}.json"))?;
    let previous: Option<Resolution> = fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let apt = AptRoot::prepare(cache, recipe)?;

    let mut asked_mirror = refresh || previous.is_none();
    let mut packages = match (&previous, refresh) {
        (Some(prev), false) => prev.packages.clone(),
        _ => apt.resolve(&names, progress)?,
    };
    if let Err(e) = apt.fetch(&mut packages, progress) {
        if asked_mirror {
            return Err(e);
        }
        progress.println(format!(
            "cached package versions are no longer fetchable ({e}); asking the mirror again"
        ));
        packages = apt.resolve(&names, progress)?;
        apt.fetch(&mut packages, progress)?;
        asked_mirror = true;
    }
    let diff = match (&previous, asked_mirror) {
        (Some(prev), true) => Some(ManifestDiff::between(&prev.packages, &packages)),
        _ => None,
    };
    let json = serde_json::to_vec_pretty(&Resolution {
        packages: packages.clone(),
    })
    .expect("serialises");
    cache.write_plain(&record, &json)?;
    let debs = packages
        .iter()
        .map(|p| (p.name.clone(), apt.deb_path(p)))
        .collect();
    Ok(Resolved {
        packages,
        debs,
        diff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris_lines_give_name_version_with_epoch_and_arch() {
        let line = "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1%3a1.35.0-4%2bb3_arm64.deb' busybox-static_1%3a1.35.0-4+b3_arm64.deb 1234 MD5Sum:00";
        let p = parse_print_uris_line(line).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_str(), p.size),
            ("busybox-static", "1:1.35.0-4+b3", "arm64", 1234)
        );
        assert!(parse_print_uris_line("garbage").is_none());
    }
}
