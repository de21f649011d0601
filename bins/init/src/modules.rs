//! Loading the kernel modules listed (in dependency order, at image build) in
//! `/lib/modules/load.list`.

use std::ffi::CString;
use std::fs::File;

use nix::kmod::{ModuleInitFlags, finit_module};

/// Loads every module of the list; a module already loaded (or built in) is fine.
pub(crate) fn load_all(dir: &str) -> Result<usize, String> {
    let list = std::fs::read_to_string(format!("{dir}/load.list"))
        .map_err(|e| format!("module list: {e}"))?;
    let params = CString::default();
    let mut loaded = 0;
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("{dir}/{name}");
        let file = File::open(&path).map_err(|e| format!("module {name}: {e}"))?;
        match finit_module(&file, &params, ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("module {name}: {e}")),
        }
    }
    Ok(loaded)
}
