//! `keybound reseal`: bind the sealed root to a replacement Zymkey with the vendor's recovery
//! secret, read from stdin and never echoed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use zeroize::Zeroizing;

/// Turns terminal echo off while alive (stdin is a terminal), restores it on drop.
struct NoEcho {
    saved: Option<libc::termios>,
}

impl NoEcho {
    fn new() -> Self {
        // SAFETY: a zeroed termios is valid storage for tcgetattr to fill.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid termios pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return Self { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ECHO | libc::ECHONL);
        // SAFETY: fd 0 and a valid termios.
        let ok = unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &t) } == 0;
        Self {
            saved: ok.then_some(saved),
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring the attributes read in `new` on fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &t) };
        }
    }
}

fn read_secret() -> Result<sealed_root::RecoverySecret, String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut line = Zeroizing::new(String::new());
    {
        let _no_echo = tty.then(NoEcho::new);
        if tty {
            eprint!("Recovery secret (from keybound-vendor; not echoed): ");
            let _ = std::io::stderr().flush();
        }
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the recovery secret: {e}"))?;
    }
    if tty {
        eprintln!();
    }
    sealed_root::RecoverySecret::parse_typable(&line).map_err(|e| e.to_string())
}

fn reseal(device: &Path) -> Result<u32, String> {
    let secret = read_secret()?;
    let lib = zymkey::Library::load().map_err(|e| format!("Zymkey: {e}"))?;
    let zk = zymkey::Zymkey::open(&lib).map_err(|e| format!("Zymkey: {e}"))?;
    let keyslot = sealed_root::reseal(device, &secret, &zk).map_err(|e| e.to_string())?;
    // Prove the new binding before reporting success: unseal and verify the volume check.
    sealed_root::unseal(device, &zk)
        .and_then(|u| u.verify_volume(device))
        .map_err(|e| format!("resealed, but the new binding does not verify: {e}"))?;
    Ok(keyslot)
}

/// Runs `keybound reseal --device DEV`.
pub(crate) fn run(device: &Path) -> ExitCode {
    match reseal(device) {
        Ok(keyslot) => {
            println!(
                "resealed {} to this Zymkey: keyslot {keyslot}, volume check verified",
                device.display()
            );
            eprintln!(
                "keybound: the recovery secret has been exposed; run `keybound rotate` to replace it"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keybound reseal: {e}");
            ExitCode::FAILURE
        }
    }
}
