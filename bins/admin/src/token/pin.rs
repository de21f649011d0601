//! Reading a token PIN: `KEYBOUND_PIN` from the environment (automation), else the terminal with
//! echo off. The PIN lives in a zeroizing buffer.

use std::io::{BufRead, Write};

use zeroize::Zeroizing;

/// Reads the PIN (without the newline).
pub(crate) fn read_pin(prompt: &str) -> std::io::Result<Zeroizing<String>> {
    if let Ok(pin) = std::env::var("KEYBOUND_PIN") {
        return Ok(Zeroizing::new(pin));
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: an all-zero termios is a valid out-parameter value.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is stdin; saved is a valid out-pointer.
    let is_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if is_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: fd is stdin; quiet is a valid termios.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = Zeroizing::new(String::new());
    let result = std::io::stdin().lock().read_line(&mut line);
    if is_tty {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        let _ = writeln!(stderr);
    }
    result?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}
