//! TEST-ONLY attacker tool (threat matrix: "initramfs or kernel swapped on the boot partition").
//! `keybound-attack-unseal DEVICE [LIBRARY]`: reads DEVICE's LUKS2 header, has the board's
//! Zymkey unlock the `keybound-zymkey` token's blob, and prints the sealed keyslot's passphrase
//! as hex on stdout (exit 0), or the reason on stderr (exit 1). LIBRARY is an explicit
//! `libzk_app_utils.so` (default: the loader's search path, as on the board).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (device, library) = match args.as_slice() {
        [device] => (device, None),
        [device, library] => (device, Some(library.as_path())),
        _ => {
            eprintln!("usage: keybound-attack-unseal DEVICE [LIBZK_APP_UTILS.SO]");
            return ExitCode::from(2);
        }
    };
    match attack_kit::unseal_passphrase(device, library) {
        Ok(passphrase) => {
            let hex = attack_kit::passphrase_hex(&passphrase);
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", hex.as_str())
                .and_then(|_| out.flush())
                .is_err()
            {
                eprintln!("keybound-attack-unseal: writing stdout failed");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keybound-attack-unseal: {e}");
            ExitCode::FAILURE
        }
    }
}
