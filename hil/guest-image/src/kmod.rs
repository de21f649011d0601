//! Kernel modules: find them in an unpacked kernel package and order them after their
//! dependencies, read from each module's own `.modinfo` (there is no `modules.dep` in the deb and
//! no depmod for arm64 on the host).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::ImageError;

/// The modules of one kernel release.
pub(crate) struct ModuleIndex {
    release: String,
    by_name: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// Module names treat `-` and `_` alike.
fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

impl ModuleIndex {
    /// Indexes `ROOT/lib/modules/<release>/` of an unpacked kernel package.
    pub(crate) fn open(root: &Path) -> Result<Self, ImageError> {
        let base = root.join("lib/modules");
        let release = fs::read_dir(&base)
            .map_err(ImageError::io("listing kernel modules", &base))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max()
            .ok_or_else(|| {
                ImageError::Corrupt(base.clone(), "no kernel release directory".into())
            })?;
        let dir = base.join(&release);
        let mut by_name = BTreeMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(ImageError::io("listing", &d))? {
                let path = entry.map_err(ImageError::io("listing", &d))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    by_name.insert(normalise(stem), path);
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(normalise))
            .collect();
        Ok(Self {
            release,
            by_name,
            builtin,
        })
    }

    /// The kernel release, e.g. `6.1.0-50-arm64`.
    pub(crate) fn release(&self) -> &str {
        &self.release
    }

    /// The modules to load for `wanted`, dependencies first, each once, skipping built-ins and
    /// anything in `already`.
    pub(crate) fn resolve(
        &self,
        wanted: &[String],
        already: &BTreeSet<String>,
    ) -> Result<Vec<(String, PathBuf)>, ImageError> {
        let mut order = Vec::new();
        let mut seen: BTreeSet<String> = already.clone();
        for name in wanted {
            self.visit(&normalise(name), &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<(), ImageError> {
        if seen.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        let path = self
            .by_name
            .get(name)
            .ok_or_else(|| ImageError::NoSuchModule {
                name: name.into(),
                kernel: self.release.clone(),
            })?;
        if depth > 64 {
            return Err(ImageError::BadModule(
                path.clone(),
                "dependency chain too deep (cycle?)".into(),
            ));
        }
        seen.insert(name.to_string());
        for dep in depends(path)? {
            self.visit(&dep, seen, order, depth + 1)?;
        }
        order.push((name.to_string(), path.clone()));
        Ok(())
    }
}

/// Reads `depends=` from a module's `.modinfo` section.
fn depends(path: &Path) -> Result<Vec<String>, ImageError> {
    let bytes = fs::read(path).map_err(ImageError::io("reading module", path))?;
    let file = object::File::parse(&*bytes)
        .map_err(|e| ImageError::BadModule(path.into(), e.to_string()))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| ImageError::BadModule(path.into(), "no .modinfo section".into()))?;
    let data = section
        .data()
        .map_err(|e| ImageError::BadModule(path.into(), e.to_string()))?;
    Ok(data
        .split(|b| *b == 0)
        .filter_map(|field| field.strip_prefix(b"depends="))
        .flat_map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(normalise)
                .collect::<Vec<_>>()
        })
        .collect())
}
