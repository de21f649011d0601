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
    // Planted bug shell-on-failure: caught by scenario faults/boot-failure-no-shell.
    #[cfg(keybound_mutant = "shell-on-failure")]
    fake_shell();
    std::thread::sleep(FAIL_DELAY);
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Power off failed (not PID 1, or no permission): stay here, doing nothing, forever.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Planted bug: a "rescue shell" on the console after a failure (the initramfs has no shell, so
/// this stands in for exec'ing one: a prompt, `echo` with `$((a*b))`/`$((a+b))` expansion).
#[cfg(keybound_mutant = "shell-on-failure")]
fn fake_shell() {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    loop {
        eprint!("# ");
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(rest) = line.trim().strip_prefix("echo ") {
            eprintln!("{}", expand(rest));
        }
    }
}

#[cfg(keybound_mutant = "shell-on-failure")]
fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$((") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("))") else {
            break;
        };
        let expr = &rest[start + 3..start + end];
        let value = expr
            .split_once('*')
            .map(|(a, b)| (a, b, true))
            .or_else(|| expr.split_once('+').map(|(a, b)| (a, b, false)))
            .and_then(|(a, b, mul)| {
                let (a, b) = (a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?);
                Some(if mul { a * b } else { a + b })
            });
        out.push_str(&value.map(|v| v.to_string()).unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}
