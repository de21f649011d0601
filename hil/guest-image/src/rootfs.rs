//! The root filesystem: Debian packages unpacked (no maintainer scripts), trimmed, our fixtures and
//! binaries added, accounts and host key made, written as ext4 with `mke2fs -d` (no loop mounts).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::apt::Resolved;
use crate::cache::{Cache, Key, Scratch, sha256_file};
use crate::error::run;
use crate::initramfs::{BootFiles, kernel_package, unpack};
use crate::kmod::ModuleIndex;
use crate::manifest::BinaryEntry;
use crate::recipe::Stage;
use crate::{BuildOptions, ImageError, Profile, Progress, Recipe};

/// The root filesystem image in the cache.
pub(crate) struct RootFs {
    /// The ext4 image.
    pub(crate) image: PathBuf,
    /// The guest's ssh host public key line.
    pub(crate) host_key: String,
    /// Our binaries in it.
    pub(crate) binaries: Vec<BinaryEntry>,
    /// The stage's cache key.
    pub(crate) key: String,
}

/// The recipe's packages unpacked once per build, shared by the stages that need them (the
/// initramfs takes libraries from it, the root filesystem is made from it, last).
pub(crate) struct Unpacked<'a> {
    cache: &'a Cache,
    resolved: &'a Resolved,
    progress: &'a Progress,
    tree: Option<(Scratch, PathBuf)>,
}

impl<'a> Unpacked<'a> {
    /// Nothing unpacked yet.
    pub(crate) fn new(cache: &'a Cache, resolved: &'a Resolved, progress: &'a Progress) -> Self {
        Self {
            cache,
            resolved,
            progress,
            tree: None,
        }
    }

    /// The unpacked tree (every package but the kernel), unpacking it on first use.
    pub(crate) fn get(&mut self) -> Result<&Path, ImageError> {
        if self.tree.is_none() {
            let scratch = self.cache.scratch("root")?;
            let root = scratch.path().join("root");
            fs::create_dir_all(&root).map_err(ImageError::io("creating", &root))?;
            let debs: Vec<&PathBuf> = self
                .resolved
                .debs
                .iter()
                .filter(|(n, _)| !n.starts_with("linux-image-"))
                .map(|(_, p)| p)
                .collect();
            unpack_all(&debs, &root, self.progress)?;
            self.tree = Some((scratch, root));
        }
        Ok(&self.tree.as_ref().expect("just unpacked").1)
    }

    /// A scratch directory next to the tree.
    fn scratch_dir(&mut self) -> Result<PathBuf, ImageError> {
        self.get()?;
        Ok(self.tree.as_ref().expect("unpacked").0.path().to_path_buf())
    }
}

/// Fails unless running as root: unpacked files must be owned by root and the guest's users.
pub(crate) fn require_root() -> Result<(), ImageError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(ImageError::NotRoot)
    }
}

/// Changes whenever this module changes what it puts in a root built from the same inputs (the
/// cache key covers inputs, not this code). 3: a module tree comes with the kernel's config.
const ROOT_LAYOUT: &str = "3";

/// Paths dropped from the root filesystem: documentation, caches, the kernel's own files.
const TRIM: &[&str] = &[
    "boot",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// Builds (or finds) the root filesystem.
pub(crate) fn build_root(
    cache: &Cache,
    options: &BuildOptions,
    recipe: &Recipe,
    resolved: &Resolved,
    boot: &BootFiles,
    unpacked: &mut Unpacked<'_>,
    progress: &Progress,
) -> Result<RootFs, ImageError> {
    let fixtures = options.repo.join("fixtures/guest");
    let mut binaries = Vec::new();
    for b in recipe.binaries.iter().filter(|b| b.stage == Stage::Root) {
        let path = options
            .binaries
            .iter()
            .find(|(have, _)| have == b)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ImageError::MissingBinary(b.artifact.clone()))?;
        binaries.push((
            b,
            path.clone(),
            BinaryEntry {
                dest: b.dest.clone(),
                sha256: sha256_file(&path)?,
            },
        ));
    }
    let mut key = Key::new("root")
        .add(
            "packages",
            resolved
                .packages
                .iter()
                .map(|p| format!("{} {}\n", p.name, p.sha256))
                .collect::<String>(),
        )
        .add("boot", &boot.key)
        .add("modules", recipe.modules.root.join(","))
        .add("module-tree", recipe.modules.debian_tree.to_string())
        .add("free", recipe.card.root_free_mib.to_string())
        .add("layout", ROOT_LAYOUT)
        .add(
            "users",
            serde_json::to_string(&recipe.users).expect("serialises"),
        )
        .add("profile", options.profile.name())
        .add_tree("root", &fixtures.join("root"))?;
    if options.profile == Profile::Test {
        key = key.add_tree("test-channel", &fixtures.join("test-channel"))?;
    }
    for (_, _, entry) in &binaries {
        key = key.add(&entry.dest, &entry.sha256);
    }
    for f in &recipe.files {
        let src = options.repo.join(&f.src);
        key = key.add(&f.dest, format!("{} {}", sha256_file(&src)?, f.mode));
    }
    let key = key.finish();
    let image = cache.entry("root", &format!("{key}.ext4"))?;
    let host_key_file = cache.entry("root", &format!("{key}.hostkey"))?;
    if cache.verified(&image, progress)?
        && let Ok(host_key) = fs::read_to_string(&host_key_file)
    {
        let binaries = binaries.into_iter().map(|(_, _, e)| e).collect();
        return Ok(RootFs {
            image,
            host_key: host_key.trim().into(),
            binaries,
            key,
        });
    }

    let kernel_name = &kernel_package(resolved)?.name;
    let root = unpacked.get()?.to_path_buf();
    let scratch_dir = unpacked.scratch_dir()?;

    let bar = progress.step("assembling root filesystem", None);
    for t in TRIM {
        let p = root.join(t);
        if p.exists() {
            fs::remove_dir_all(&p).map_err(ImageError::io("trimming", &p))?;
        }
    }
    add_root_modules(
        &resolved.debs[kernel_name],
        &scratch_dir,
        &root,
        recipe,
        &boot.loaded,
    )?;
    link(&root, "/bin/busybox", "bin/sh")?;
    link(&root, "/bin/busybox", "sbin/init")?;
    copy_tree(&fixtures.join("root"), &root)?;
    if options.profile == Profile::Test {
        copy_tree(&fixtures.join("test-channel"), &root)?;
    }
    write_accounts(&root, recipe)?;
    for (b, src, _) in &binaries {
        let dest = root.join(b.dest.trim_start_matches('/'));
        install_file(src, &dest, 0o755)?;
    }
    for f in &recipe.files {
        let mode = f.mode_bits().map_err(|message| ImageError::Recipe {
            path: options.repo.join("fixtures/guest/recipe.toml"),
            message,
        })?;
        install_file(
            &options.repo.join(&f.src),
            &root.join(f.dest.trim_start_matches('/')),
            mode,
        )?;
    }
    for (dir, mode) in [
        ("run", 0o755),
        ("tmp", 0o1777),
        ("var/log", 0o755),
        ("root", 0o700),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("home", 0o755),
        // The token factor (bins/pam): the authfile's directory and the signature counters.
        ("etc/keybound", 0o755),
        ("var/lib/keybound", 0o700),
    ] {
        let d = root.join(dir);
        fs::create_dir_all(&d).map_err(ImageError::io("creating", &d))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("chmod", &d))?;
    }
    // Git keeps no file modes but the executable bit: the token factor's files are root-only.
    for file in ["etc/keybound/u2f_keys", "var/lib/keybound/counters"] {
        let f = root.join(file);
        if f.exists() {
            fs::set_permissions(&f, fs::Permissions::from_mode(0o600))
                .map_err(ImageError::io("chmod", &f))?;
        }
    }
    let host_key = make_host_key(&root)?;

    let used = tree_size(&root)?;
    let size_kib = (used / 1024) * 13 / 10 + recipe.card.root_free_mib * 1024 + 16 * 1024;
    let tmp = scratch_dir.join("root.ext4");
    run(
        Command::new("mke2fs")
            .args([
                "-q",
                "-t",
                "ext4",
                "-L",
                "rootfs",
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(&root)
            .arg("-F")
            .arg(&tmp)
            .arg(format!("{size_kib}k")),
        "mke2fs",
        "e2fsprogs",
    )?;
    cache.commit(&tmp, &image)?;
    cache.write_plain(&host_key_file, host_key.as_bytes())?;
    bar.finish_and_clear();
    let binaries = binaries.into_iter().map(|(_, _, e)| e).collect();
    Ok(RootFs {
        image,
        host_key,
        binaries,
        key,
    })
}

fn unpack_all(debs: &[&PathBuf], root: &Path, progress: &Progress) -> Result<(), ImageError> {
    let bar = progress.step("unpacking packages", Some(debs.len() as u64));
    let queue = Mutex::new(debs.iter());
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(deb) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    if let Err(e) = unpack(deb, root) {
                        first_error.lock().expect("error slot").get_or_insert(e);
                        break;
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn add_root_modules(
    kernel_deb: &Path,
    scratch: &Path,
    root: &Path,
    recipe: &Recipe,
    loaded: &BTreeSet<String>,
) -> Result<(), ImageError> {
    let kdir = scratch.join("kernel");
    unpack(kernel_deb, &kdir)?;
    let index = ModuleIndex::open(&kdir)?;
    let modules = index.resolve(&recipe.modules.root, loaded)?;
    let dir = root.join("lib/modules/keybound");
    fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
    let mut list = String::new();
    for (name, path) in &modules {
        install_file(path, &dir.join(format!("{name}.ko")), 0o644)?;
        list.push_str(&format!("{name}.ko\n"));
    }
    fs::write(dir.join("load.list"), list).map_err(ImageError::io("writing", &dir))?;
    if recipe.modules.debian_tree {
        add_module_tree(&kdir, root, &index, &recipe.modules.initramfs)?;
    }
    Ok(())
}

/// The Debian module tree for `wanted` (and their dependencies): each module at its path in the
/// kernel package, plus the package's `modules.order`, `modules.builtin*` and
/// `/boot/config-<release>`. No `modules.dep`: there is no arm64 depmod on the host, so the
/// guest runs `depmod`.
fn add_module_tree(
    kdir: &Path,
    root: &Path,
    index: &ModuleIndex,
    wanted: &[String],
) -> Result<(), ImageError> {
    let rel_base = Path::new("lib/modules").join(index.release());
    let from = kdir.join(&rel_base);
    let to = root.join(&rel_base);
    for (_, path) in index.resolve(wanted, &BTreeSet::new())? {
        let rel = path
            .strip_prefix(&from)
            .map_err(|_| ImageError::BadModule(path.clone(), "outside the module tree".into()))?;
        install_file(&path, &to.join(rel), 0o644)?;
    }
    for name in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let file = from.join(name);
        if file.exists() {
            install_file(&file, &to.join(name), 0o644)?;
        }
    }
    // The kernel's build configuration, where Debian keeps it (mkinitramfs reads it).
    let config = format!("boot/config-{}", index.release());
    install_file(&kdir.join(&config), &root.join(&config), 0o644)
}

fn link(root: &Path, target: &str, at: &str) -> Result<(), ImageError> {
    let p = root.join(at);
    if fs::symlink_metadata(&p).is_err() {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
        }
        symlink(target, &p).map_err(ImageError::io("linking", &p))?;
    }
    Ok(())
}

fn install_file(src: &Path, dest: &Path, mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
    }
    let _ = fs::remove_file(dest);
    fs::copy(src, dest).map_err(ImageError::io("copying", src))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", dest))?;
    std::os::unix::fs::chown(dest, Some(0), Some(0)).map_err(ImageError::io("chown", dest))
}

/// Copies a fixture tree over the root, keeping modes, owned by root.
fn copy_tree(src: &Path, dest: &Path) -> Result<(), ImageError> {
    for entry in fs::read_dir(src).map_err(ImageError::io("listing", src))? {
        let entry = entry.map_err(ImageError::io("listing", src))?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from).map_err(ImageError::io("reading", &from))?;
        if meta.is_dir() {
            fs::create_dir_all(&to).map_err(ImageError::io("creating", &to))?;
            copy_tree(&from, &to)?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&from).map_err(ImageError::io("reading", &from))?;
            // A package may ship as a directory what its maintainer script turns into a link
            // (base-files' /var/run): the overlay's link replaces it if it is empty.
            if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir(&to).map_err(ImageError::io("replacing with a link", &to))?;
            }
            let _ = fs::remove_file(&to);
            symlink(target, &to).map_err(ImageError::io("linking", &to))?;
        } else {
            install_file(&from, &to, meta.permissions().mode() & 0o7777)?;
        }
    }
    Ok(())
}

fn write_accounts(root: &Path, recipe: &Recipe) -> Result<(), ImageError> {
    let mut passwd = String::from(
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    let mut group =
        String::from("root:x:0:\ntty:x:5:\nshadow:x:42:\nutmp:x:43:\nnogroup:x:65534:\n");
    // Root has no password: the test channel uses its key, production has no root login.
    let mut shadow =
        String::from("root:*:19000:0:99999:7:::\nsshd:!:19000::::::\nnobody:!:19000::::::\n");
    for user in &recipe.users {
        let params = sha_crypt::Sha512Params::new(5000).expect("valid rounds");
        let hash =
            sha_crypt::sha512_simple(&user.password, &params).map_err(|e| ImageError::Tool {
                tool: "sha512-crypt".into(),
                detail: format!("{e:?}"),
            })?;
        passwd.push_str(&format!(
            "{0}:x:{1}:{1}::/home/{0}:/bin/sh\n",
            user.name, user.uid
        ));
        group.push_str(&format!("{}:x:{}:\n", user.name, user.uid));
        shadow.push_str(&format!("{}:{hash}:19000:0:99999:7:::\n", user.name));
        let home = root.join("home").join(&user.name);
        fs::create_dir_all(&home).map_err(ImageError::io("creating", &home))?;
        std::os::unix::fs::chown(&home, Some(user.uid), Some(user.uid))
            .map_err(ImageError::io("chown", &home))?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o750))
            .map_err(ImageError::io("chmod", &home))?;
    }
    let etc = root.join("etc");
    for (name, content, mode) in [
        ("passwd", passwd, 0o644),
        ("group", group, 0o644),
        ("shadow", shadow, 0o640),
    ] {
        let p = etc.join(name);
        fs::write(&p, content).map_err(ImageError::io("writing", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("chmod", &p))?;
        std::os::unix::fs::chown(&p, Some(0), Some(if name == "shadow" { 42 } else { 0 }))
            .map_err(ImageError::io("chown", &p))?;
    }
    Ok(())
}

fn make_host_key(root: &Path) -> Result<String, ImageError> {
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    fs::create_dir_all(key.parent().expect("has parent"))
        .map_err(ImageError::io("creating", &key))?;
    run(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "keybound-board",
                "-f",
            ])
            .arg(&key),
        "ssh-keygen",
        "openssh-client",
    )?;
    let public =
        fs::read_to_string(key.with_extension("pub")).map_err(ImageError::io("reading", &key))?;
    Ok(public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

fn tree_size(dir: &Path) -> Result<u64, ImageError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(ImageError::io("listing", dir))? {
        let entry = entry.map_err(ImageError::io("listing", dir))?;
        let meta =
            fs::symlink_metadata(entry.path()).map_err(ImageError::io("reading", entry.path()))?;
        total += if meta.is_dir() {
            tree_size(&entry.path())? + 4096
        } else {
            meta.len().div_ceil(4096) * 4096
        };
    }
    Ok(total)
}
