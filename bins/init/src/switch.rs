//! switch_root: make the mounted root `/` and hand PID 1 to its `/sbin/init`.

use std::ffi::CString;

use nix::mount::{MsFlags, mount};
use nix::unistd::{chdir, chroot, execv};

/// The one program PID 1 becomes. Fixed: `init=` on the (editable) command line is ignored.
pub(crate) const REAL_INIT: &str = "/sbin/init";

/// Moves the kernel file systems under `new_root`, makes it `/` and execs `init` there.
/// Returns only on failure.
pub(crate) fn switch_root(new_root: &str, init: &str) -> String {
    for fs in ["/dev", "/proc", "/sys"] {
        let target = format!("{new_root}{fs}");
        if let Err(e) = mount(
            Some(fs),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        ) {
            return format!("moving {fs} to the new root: {e}");
        }
    }
    if let Err(e) = chdir(new_root) {
        return format!("entering the new root: {e}");
    }
    if let Err(e) = mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>) {
        return format!("moving the new root to /: {e}");
    }
    if let Err(e) = chroot(".").and_then(|_| chdir("/")) {
        return format!("chroot to the new root: {e}");
    }
    let Ok(program) = CString::new(init) else {
        return "the init path holds a NUL byte".into();
    };
    match execv(&program, &[&program]) {
        Err(e) => format!("starting {init}: {e}"),
        Ok(never) => match never {},
    }
}
