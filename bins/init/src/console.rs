//! The console: the only output of the initramfs, and the one way to stop.

use std::io::Write;
use std::time::Duration;

use nix::sys::reboot::{RebootMode, reboot};

/// How long the failure line stays on screen before power off.
const FAIL_DELAY: Duration = Duration::from_secs(2);

/// Prints one line on the console (and standard error, which is the console for PID 1).
pub(crate) fn say(line: &str) {
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(console, "{line}");
    } else {
        eprintln!("{line}");
    }
}

/// Prints `keybound: sealed: <reason>`, waits, powers off. Never returns, never starts anything.
pub(crate) fn fail(reason: &str) -> ! {
    say(&format!("keybound: sealed: {reason}"));
    nix::unistd::sync();
    std::thread::sleep(FAIL_DELAY);
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Power off failed (not PID 1, or no permission): stay here, doing nothing, forever.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
