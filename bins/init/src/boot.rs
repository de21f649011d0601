//! The boot sequence: kernel file systems, modules, root, switch_root.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use crate::{cmdline, console, disks, modules, provision, switch, unlock};

/// How long to wait for the root device to appear (rootwait).
const ROOT_WAIT: Duration = Duration::from_secs(10);
/// Where root is mounted before switch_root.
const NEW_ROOT: &str = "/newroot";

fn mount_fs(source: &str, target: &str, fstype: &str, flags: MsFlags) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("creating {target}: {e}"))?;
    mount(Some(source), target, Some(fstype), flags, None::<&str>)
        .map_err(|e| format!("mounting {target}: {e}"))
}

/// The program PID 1 becomes: always `/sbin/init`; `init=` on the (editable) command line is
/// ignored.
#[cfg(not(keybound_mutant = "init-honoured"))]
fn init_program(_cmdline: &str) -> String {
    switch::REAL_INIT.to_string()
}

/// Planted bug: honours `init=` from the command line. Caught by scenario
/// attacks/cmdline-init-override-ignored.
#[cfg(keybound_mutant = "init-honoured")]
fn init_program(cmdline: &str) -> String {
    cmdline
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("init="))
        .next_back()
        .unwrap_or(switch::REAL_INIT)
        .to_string()
}

/// Runs the boot; returns only with the reason it failed.
pub(crate) fn run() -> Result<Infallible, String> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs("proc", "/proc", "proc", nosuid)?;
    mount_fs("sysfs", "/sys", "sysfs", nosuid)?;
    mount_fs("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID)?;
    console::say("keybound-init: start");
    modules::load_all("/lib/modules")?;

    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("reading the kernel command line: {e}"))?;
    let spec = cmdline::parse(&cmdline).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + ROOT_WAIT;
    let root = loop {
        if let Some(root) = disks::find_root(&spec) {
            break root;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "root partition {:08x}-{:02x} not found on the internal card",
                spec.disk_signature, spec.partition
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    provision::run_if_planned(&root)?;
    let device = unlock_root(&root)?;
    mount_fs(&device, NEW_ROOT, &spec.fstype, MsFlags::empty())?;
    console::say(&format!(
        "keybound-init: root mounted from {}",
        root.display()
    ));
    Err(switch::switch_root(NEW_ROOT, &init_program(&cmdline)))
}

/// The block device to mount as root: a LUKS2 root is unsealed with the Zymkey, activated and
/// verified; a plain root (an unprovisioned card) is mounted as it is.
fn unlock_root(partition: &std::path::Path) -> Result<String, String> {
    if unlock::is_luks(partition)? {
        console::say("keybound-init: unlocking the sealed root");
        return unlock::unlock(partition);
    }
    Ok(partition.to_string_lossy().into_owned())
}
