//! `keybound-keyscript`: the crypttab `keyscript=` for the Raspberry Pi OS mode (see
//! fixtures/rpios/README.md). cryptroot runs it in the initramfs with `CRYPTTAB_SOURCE` set to
//! the LUKS2 device and pipes its standard output into `cryptsetup --key-file=-`; so, as that
//! contract requires, it writes the unsealed passphrase — and nothing else — to stdout.
//!
//! Same code as keybound-init: the `keybound-zymkey` token is read strictly, the blob is
//! unsealed by this board's Zymkey, the secret must open the token's keyslot, and the volume
//! check (LUKS2 UUID + digest of the volume key) must match the header cryptsetup is about to
//! use. Any failure: one line `keybound: sealed: <reason>` on stderr, nothing on stdout, exit 1.
//! No key byte ever reaches stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn device() -> Result<PathBuf, String> {
    // An explicit argument (for a manual test) or cryptroot's environment.
    let from_arg = std::env::args_os().nth(1).filter(|a| a != "none");
    let dev = from_arg
        .or_else(|| std::env::var_os("CRYPTTAB_SOURCE"))
        .ok_or("no device: CRYPTTAB_SOURCE is not set (run from crypttab keyscript=)")?;
    Ok(PathBuf::from(dev))
}

fn unseal() -> Result<sealed_root::Unsealed, String> {
    let device = device()?;
    sealed_root::silence_libcryptsetup_log();
    let lib = zymkey::Library::load().map_err(|e| format!("Zymkey: {e}"))?;
    let zk = zymkey::Zymkey::open(&lib).map_err(|e| format!("Zymkey: {e}"))?;
    let unsealed = sealed_root::unseal(&device, &zk).map_err(|e| e.to_string())?;
    unsealed
        .verify_volume(&device)
        .map_err(|_| "volume check failed".to_string())?;
    Ok(unsealed)
}

fn main() -> ExitCode {
    match unseal() {
        Ok(unsealed) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(unsealed.passphrase())
                .and_then(|()| out.flush())
                .is_err()
            {
                eprintln!("keybound: sealed: cannot write the key to cryptsetup");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("keybound: sealed: {reason}");
            ExitCode::FAILURE
        }
    }
}
