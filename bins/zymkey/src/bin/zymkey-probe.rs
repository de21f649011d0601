//! `zymkey-probe`: a guest smoke test of the whole Zymkey path. Prints the module's model and
//! serial, draws 32 random bytes and makes a lock/unlock round trip through the production
//! client; exits 0 on success, 1 with a one-line reason otherwise.
//!
//! Usage: `zymkey-probe [PATH-TO-libzk_app_utils.so]` (default: the loader's search path).

use std::process::ExitCode;

use zymkey::{Library, LockKey, Zymkey};

fn probe() -> zymkey::Result<()> {
    let lib = match std::env::args_os().nth(1) {
        Some(path) => Library::load_from(path)?,
        None => Library::load()?,
    };
    let zk = Zymkey::open(&lib)?;
    println!("model: {}", zk.model()?);
    println!("serial: {}", zk.serial()?);
    println!("firmware: {}", zk.firmware()?);
    let secret = zk.random_bytes(32)?;
    println!("random: {} bytes", secret.len());
    let blob = zk.lock(&secret, LockKey::OneWay)?;
    let back = zk.unlock(&blob, LockKey::OneWay)?;
    if back != secret {
        eprintln!("zymkey-probe: unlock returned different bytes");
        return Err(zymkey::Error::Protocol);
    }
    println!("lock/unlock: ok ({} byte blob)", blob.len());
    Ok(())
}

fn main() -> ExitCode {
    match probe() {
        Ok(()) => {
            println!("zymkey-probe: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zymkey-probe: {e}");
            ExitCode::FAILURE
        }
    }
}
