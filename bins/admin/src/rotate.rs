//! `keybound rotate`: after a field recovery, a new volume key (the root re-encrypted online,
//! while the system runs), a new recovery secret for the vendor, and the Zymkey slot re-sealed
//! to the new key (`sealed_root::rotate`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The active dm-crypt mapping on `device` (its name under /dev/mapper), if any.
fn active_mapping(device: &Path) -> Option<String> {
    let real = std::fs::canonicalize(device).ok()?;
    let base = real.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("dm-"))
        .find(|e| e.path().join("slaves").join(&base).exists())
        .and_then(|e| std::fs::read_to_string(e.path().join("dm/name")).ok())
        .map(|n| n.trim().to_string())
}

/// The device under the dm-crypt mapping mounted at `/`.
fn root_backing_device() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("reading /proc/self/mounts: {e}"))?;
    let dev = mounts
        .lines()
        .rev()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (dir == "/" && fstype != "rootfs").then(|| dev.to_string())
        })
        .ok_or("no root filesystem in /proc/self/mounts")?;
    let dm = std::fs::canonicalize(&dev).map_err(|e| format!("{dev}: {e}"))?;
    let name = dm.file_name().map(|n| n.to_string_lossy().into_owned());
    let slaves = name
        .map(|n| format!("/sys/block/{n}/slaves"))
        .and_then(|p| std::fs::read_dir(p).ok())
        .ok_or_else(|| format!("root ({dev}) is not a dm-crypt mapping: nothing to rotate"))?;
    slaves
        .filter_map(|e| e.ok())
        .map(|e| Path::new("/dev").join(e.file_name()))
        .next()
        .ok_or_else(|| format!("root ({dev}) has no device under it"))
}

fn rotate(
    device: Option<&Path>,
    recipient: &str,
) -> Result<(PathBuf, sealed_root::Rotation), String> {
    let vendor: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e| format!("--recipient: not an age X25519 recipient: {e}"))?;
    let device = match device {
        Some(d) => d.to_path_buf(),
        None => root_backing_device()?,
    };
    let name = active_mapping(&device);
    let lib = zymkey::Library::load().map_err(|e| format!("Zymkey: {e}"))?;
    let zk = zymkey::Zymkey::open(&lib).map_err(|e| format!("Zymkey: {e}"))?;
    eprintln!(
        "keybound rotate: re-encrypting {} {} (this takes a while; the system stays usable)",
        device.display(),
        match &name {
            Some(n) => format!("online through /dev/mapper/{n}"),
            None => "offline (not open)".into(),
        }
    );
    let started = std::time::Instant::now();
    let mut shown = 0u64;
    let mut progress = |done: u64, total: u64| {
        let pct = (done * 100).checked_div(total).unwrap_or(0);
        if pct >= shown + 10 {
            shown = pct - pct % 10;
            eprintln!("keybound rotate: re-encrypted {shown}%");
        }
        true
    };
    let r = sealed_root::rotate(
        &device,
        name.as_deref(),
        &zk,
        &vendor,
        sealed_root::RecoveryKdf::Production,
        Some(&mut progress),
    )
    .map_err(|e| e.to_string())?;
    // Prove the new binding before reporting success.
    sealed_root::unseal(&device, &zk)
        .and_then(|u| u.verify_volume(&device))
        .map_err(|e| format!("rotated, but the new binding does not verify: {e}"))?;
    eprintln!(
        "keybound rotate: re-encrypted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((device, r))
}

/// Runs `keybound rotate`.
pub(crate) fn run(device: Option<&Path>, recipient: &str) -> ExitCode {
    match rotate(device, recipient) {
        Ok((device, r)) => {
            let removed: Vec<String> = r.removed_keyslots.iter().map(u32::to_string).collect();
            println!(
                "rotated {}{}: new volume key ({}), sealed keyslot {}, recovery keyslot {}, \
                 old keyslots {} destroyed, volume check verified",
                device.display(),
                if r.resumed {
                    " (finished an interrupted rotation)"
                } else {
                    ""
                },
                if r.online { "online" } else { "offline" },
                r.sealed_keyslot,
                r.recovery_keyslot,
                if removed.is_empty() {
                    "none".into()
                } else {
                    removed.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keybound rotate: {e}");
            ExitCode::FAILURE
        }
    }
}
